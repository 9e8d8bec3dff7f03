"""Entry points behind the command line: train, evaluate, generate.

A run lives in ``<run.root>/<run.name>/``:

    config.yaml            the resolved configuration
    metrics.csv            every logged metric (Lightning CSVLogger)
    checkpoints/best.ckpt  best validation checkpoint; checkpoints/last.ckpt the latest (both written
                           atomically by Lightning); checkpoints/on_exception.ckpt after an interruption
    results.json           final metrics, sizes, timings
    learning_curves.png    the curves of metrics.csv
    model/                 the best model as ``save_pretrained`` writes it (config.json + model.safetensors)
"""

from __future__ import annotations

import csv
import json
import logging
import os
import pickle
import time
import warnings
from datetime import datetime
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.trainer.states import TrainerFn
from omegaconf import DictConfig, OmegaConf

from ..data import get_dataset
from ..files import atomic_write, atomic_write_text
from ..registry import UnknownNameError
from .config import DATA_LOADER_KEYS, ConfigError, merge_overrides, save_config
from .memory import keep_freed_memory
from .task import SequenceDataModule, SequenceTask

__all__ = ["train", "evaluate", "load_task", "find_checkpoint", "build_task", "CheckpointError"]

log = logging.getLogger("statespaces")

# Lightning chatter that says nothing about this run
warnings.filterwarnings("ignore", message=r".*Experiment logs directory .* exists and is not empty.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
warnings.filterwarnings("ignore", message=r".*does not have many workers which may be a bottleneck.*")
warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty.*")


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoTips())


class _KeepingWriter(ExperimentWriter):
    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        if self._fs.isfile(self.metrics_file_path):  # continue the columns of the run being resumed
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])

    def _check_log_dir_exists(self) -> None:
        """Lightning deletes an existing metrics.csv here; a resumed run keeps its history instead."""


class RunCSVLogger(CSVLogger):
    """CSVLogger writing ``<run>/metrics.csv`` and appending to it when a run resumes."""

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written beside their target, fsynced, then moved over it (``os.replace``): a crash or a
    full disk leaves the previous checkpoint intact, whatever filesystem ``$TMPDIR`` is on."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        atomic_write(path, lambda f: torch.save(checkpoint, f))


class SaveOnInterrupt(Callback):
    """Write ``on_exception.ckpt`` when training stops on an exception or Ctrl-C, so that
    ``run.resume=<run folder>`` loses nothing.

    Only while fitting (after the final test loaded the best weights it would save those, not the last).  It
    never waits for the other processes (a DDP peer may be blocked in a collective: a barrier would hang):
    each process that sees the exception writes the same state atomically.  A failing save is logged and
    never replaces the exception that stopped training."""

    def __init__(self, dirpath: Path):
        self.path = Path(dirpath) / "on_exception.ckpt"

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return
        try:
            checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
            AtomicCheckpointIO().save_checkpoint(checkpoint, self.path)
            log.info("saved %s at step %d", self.path, trainer.global_step)
        except Exception as e:  # noqa: BLE001  (the original exception must reach the caller)
            log.warning("could not save %s after %s: %s", self.path, type(exception).__name__, e)


def _dataset(cfg: DictConfig):
    """The configured dataset; a builder's ValueError (bad option value, unreadable file) becomes a ConfigError."""
    options = {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k not in DATA_LOADER_KEYS}
    try:
        return get_dataset(str(cfg.data.name), **options)
    except UnknownNameError:
        raise
    except ValueError as e:
        raise ConfigError(f"data {cfg.data.name!r}: {e}") from e


def build_task(config: dict, spec: dict) -> SequenceTask:
    """The task of a resolved config; a bad model option becomes a :class:`ConfigError` naming the section
    (unknown names stay :class:`UnknownNameError`)."""
    try:
        return SequenceTask(config, spec)
    except UnknownNameError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(f"model: {e}") from e


def _run_dir(cfg: DictConfig) -> tuple[Path, str | None]:
    """The run folder, and the checkpoint to resume from (if any)."""
    root = Path(cfg.run.root)
    resume = cfg.run.resume
    if resume:
        if resume == "last":  # the newest run folder of this experiment that has something to resume from
            names = ("last.ckpt", "on_exception.ckpt")
            runs = sorted((p for p in root.glob(f"{cfg.experiment}-*") if any((p / "checkpoints" / n).exists() for n in names)), key=os.path.getmtime)
            if not runs:
                raise ConfigError(f"run.resume=last: no run of {cfg.experiment!r} with a checkpoint under {root}/")
            return runs[-1], str(find_checkpoint(runs[-1], prefer="last"))
        ckpt = find_checkpoint(resume, prefer="last")
        run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else Path(root) / (cfg.run.name or f"{cfg.experiment}-resumed")
        return run, str(ckpt)
    name = cfg.run.name or f"{cfg.experiment}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) != 0:
        return root / name, None  # a worker of a distributed run: rank 0 claims the folder (Lightning broadcasts it)
    return _claim(root / name), None


CLAIM = ".statespaces-run"


def _claim(run: Path) -> Path:
    """A fresh run's folder: ``run`` if it is new or empty, else ``run-2``, ``run-3`` ...  A folder is taken by
    creating its marker file exclusively (atomic on every filesystem we write to), so two runs started in the
    same second under one name (two ``compare`` processes, a script in a loop) never share a folder, a
    metrics.csv and checkpoints."""
    for i in range(1, 10_000):
        candidate = run if i == 1 else run.with_name(f"{run.name}-{i}")
        candidate.mkdir(parents=True, exist_ok=True)
        if any(p.name != CLAIM for p in candidate.iterdir()):
            continue  # an earlier run's folder
        try:
            os.close(os.open(candidate / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue  # another process claimed it first
        return candidate
    raise ConfigError(f"run folder {run} and 9,999 numbered variants exist; choose another run.name or run.root")


def find_checkpoint(path: str | Path, prefer: str = "best") -> Path:
    """A .ckpt file, or a run folder: its ``checkpoints/best.ckpt`` (``prefer='best'``), or for resuming
    (``prefer='last'``) whichever of ``last.ckpt`` and ``on_exception.ckpt`` recorded the later training step
    (not the newer file: the step is what a resume continues from)."""
    path = Path(path)
    if path.is_file():
        return path
    folder = path / "checkpoints"
    if prefer == "last":
        candidates = [folder / f"{n}.ckpt" for n in ("last", "on_exception") if (folder / f"{n}.ckpt").exists()]
        if candidates:
            return max(candidates, key=_recorded_step)  # ties keep last.ckpt (listed first)
    for name in (prefer, "last" if prefer == "best" else "best", "on_exception"):
        if (folder / f"{name}.ckpt").exists():
            return folder / f"{name}.ckpt"
    raise FileNotFoundError(f"no checkpoint at {path} (expected a .ckpt file or a run folder with checkpoints/)")


def _recorded_step(ckpt: Path) -> int:
    """The global step a checkpoint was written at (read without executing anything; -1 if unreadable)."""
    try:
        return int(torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True).get("global_step", -1))
    except Exception:  # noqa: BLE001  (a truncated or foreign file is simply not a candidate)
        return -1


def _trainer(cfg: DictConfig, run_dir: Path, task: SequenceTask, callbacks_extra=()) -> pl.Trainer:
    t = cfg.trainer
    ckpt_dir = run_dir / "checkpoints"
    callbacks = [
        ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=task.monitor, mode=task.monitor_mode, auto_insert_metric_name=False, enable_version_counter=False),
        # its own callback: Lightning's save_last refreshes last.ckpt only when the best one improves
        ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1, enable_version_counter=False),
        SaveOnInterrupt(ckpt_dir),
        LearningRateMonitor(logging_interval="step"),
        *callbacks_extra,
    ]
    if t.early_stopping:
        callbacks.append(EarlyStopping(monitor=task.monitor, mode=task.monitor_mode, patience=int(t.early_stopping)))
    loggers = [RunCSVLogger(save_dir=str(run_dir), name="", version="")]
    if cfg.run.tensorboard:
        from lightning.pytorch.loggers import TensorBoardLogger  # noqa: PLC0415

        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""))
    limits = {k: t[k] for k in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "val_check_interval") if t[k] is not None}
    return pl.Trainer(
        default_root_dir=str(run_dir),
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        max_time=t.max_time,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        gradient_clip_val=t.gradient_clip_val,
        accumulate_grad_batches=t.accumulate_grad_batches,
        log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        fast_dev_run=t.fast_dev_run,
        deterministic=t.deterministic,
        enable_progress_bar=cfg.run.progress,
        enable_model_summary=False,
        callbacks=callbacks,
        logger=loggers,
        plugins=[AtomicCheckpointIO()],
        **limits,
    )


def _apply_malloc(cfg: DictConfig) -> None:
    """``run.malloc=tuned``: glibc keeps freed heap memory (train/memory.py); configs saved before the key
    existed get the default."""
    if cfg.run.get("malloc", "tuned") == "tuned":
        keep_freed_memory()


def train(cfg: DictConfig, callbacks: tuple = ()) -> dict:
    """Train (or resume) the configured run; returns the results written to ``results.json`` (plus
    ``global_rank``). Extra Lightning ``callbacks`` join the standard ones."""
    if cfg.run.threads:
        torch.set_num_threads(int(cfg.run.threads))
    _apply_malloc(cfg)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    run_dir, resume_ckpt = _run_dir(cfg)
    splits = _dataset(cfg)
    task = build_task(OmegaConf.to_container(cfg, resolve=True), _spec_dict(splits.spec))
    if cfg.run.get("compile"):
        task.model.compile()  # in place: parameter names and checkpoints stay those of the eager model
    dm = SequenceDataModule(splits, cfg.data.batch_size, cfg.data.eval_batch_size, cfg.data.num_workers, int(cfg.seed))
    trainer = _trainer(cfg, run_dir, task, callbacks)
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        n_params = sum(p.numel() for p in task.model.parameters())
        log.info("run folder %s; %s parameters", run_dir, f"{n_params:,}")
    start = time.time()
    trainer.fit(task, datamodule=dm, ckpt_path=resume_ckpt, weights_only=True)
    fit_time = time.time() - start
    results = {
        "experiment": cfg.experiment,
        "dataset": cfg.data.name,
        "run_dir": str(run_dir),
        "parameters": sum(p.numel() for p in task.model.parameters()),
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "fit_seconds": round(fit_time, 1),
        "threads": torch.get_num_threads(),
        "world_size": trainer.world_size,
    }
    ckpt_cb = next(c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.monitor is not None)
    best = ckpt_cb.best_model_path or None
    results["best_checkpoint"] = best
    if ckpt_cb.best_model_score is not None:
        results[f"best_{task.monitor}"] = float(ckpt_cb.best_model_score)
    chosen = best
    if cfg.run.checkpoint == "last" and best:
        # the final weights: where validation is a few noisy windows, its minimum picks noise (forecast-co2)
        chosen = str(Path(best).with_name("last.ckpt"))
    results["checkpoint"] = chosen
    if cfg.run.test:  # fast_dev_run keeps no checkpoint: the weights in memory
        ckpt = None if cfg.trainer.fast_dev_run else chosen
        test = trainer.test(task, datamodule=dm, ckpt_path=ckpt, verbose=False, weights_only=True)
        results.update({k: float(v) for k, v in (test[0] if test else {}).items()})
    if trainer.is_global_zero:
        if cfg.run.export and chosen:
            best_task = load_task(chosen)
            best_task.model.save_pretrained(run_dir / "model", extra={"spec": _spec_dict(splits.spec), "experiment": cfg.experiment})
            results["model_dir"] = str(run_dir / "model")
        if cfg.run.plot:
            from .plot import plot_metrics  # noqa: PLC0415

            png = plot_metrics(run_dir / "metrics.csv", run_dir / "learning_curves.png", title=str(cfg.experiment))
            results["plot"] = str(png) if png else None
        atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # every rank waits for rank 0's exports, then the group is closed so that processes exit cleanly
        trainer.strategy.barrier("statespaces-run-end")
        torch.distributed.destroy_process_group()
    return {**results, "global_rank": trainer.global_rank}


def _spec_dict(spec) -> dict:
    return {
        "name": spec.name,
        "input": spec.input,
        "d_input": spec.d_input,
        "target": spec.target,
        "d_output": spec.d_output,
        "l_max": spec.l_max,
        "variable_length": spec.variable_length,
        "meta": _jsonable(spec.meta),
    }


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj if isinstance(obj, (str, int, float, bool)) or obj is None else str(obj)


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded safely (it holds objects other than tensors and plain data)."""


def load_task(ckpt: str | Path) -> SequenceTask:
    """The task of a checkpoint (or of a run folder's best one).  Nothing in the file is executed: it is read
    with ``weights_only=True`` (tensors, numbers, strings, lists and dicts only), and a file that holds
    anything else (code to run while unpickling) is refused with :class:`CheckpointError`."""
    path = find_checkpoint(ckpt)
    try:
        return SequenceTask.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain data, which would run code "
            f"while unpickling (only checkpoints written by statespaces are loaded). Details: {str(e).splitlines()[0]}"
        ) from None


def evaluate(ckpt: str | Path, overrides: list[str] | None = None) -> dict:
    """Test a checkpoint (or a run folder's best checkpoint) on its dataset's test split."""
    path = find_checkpoint(ckpt)
    task = load_task(path)
    cfg = merge_overrides(task.cfg, overrides or [])
    _apply_malloc(cfg)
    splits = _dataset(cfg)
    dm = SequenceDataModule(splits, cfg.data.batch_size, cfg.data.eval_batch_size, cfg.data.num_workers)
    trainer = pl.Trainer(accelerator=cfg.trainer.accelerator, devices=1, logger=False, enable_progress_bar=cfg.run.progress, enable_model_summary=False)
    out = trainer.test(task, datamodule=dm, verbose=False)
    return {"checkpoint": str(path), **{k: float(v) for k, v in (out[0] if out else {}).items()}}

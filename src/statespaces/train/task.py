"""Lightning glue: the task (model + loss + metrics + optimiser) and the data module."""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
import torchmetrics
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Sampler

from ..data import IGNORE_INDEX, Collate, DataSpec, Splits
from ..models import LanguageModel, ModelConfig, SequenceModel
from ..optim import param_groups
from .schedules import lr_multiplier

__all__ = ["SequenceTask", "SequenceDataModule", "ResumableLoader", "NonFiniteLossError", "model_config"]


def model_config(cfg: DictConfig, spec: DataSpec) -> ModelConfig:
    """The model the data asks for: input/output sizes from the spec, the rest from ``cfg.model``."""
    m = OmegaConf.to_container(cfg.model, resolve=True)
    per_step = spec.target.endswith("per_step")
    return ModelConfig.from_dict(
        {
            **m,
            "d_input": spec.d_input,
            "d_output": spec.d_output,
            "tokens": spec.input == "tokens",
            "pool": "none" if per_step else m["pool"],
        }
    )


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class SequenceTask(pl.LightningModule):
    """Trains a :class:`SequenceModel` on a dataset described by a :class:`DataSpec`."""

    def __init__(self, config: dict, spec: dict):
        super().__init__()
        self.save_hyperparameters()  # config + spec travel inside every checkpoint
        self.cfg = OmegaConf.create(config)
        self.spec = DataSpec(**spec)
        mcfg = model_config(self.cfg, self.spec)
        is_lm = self.spec.target == "class_per_step" and self.spec.input == "tokens" and mcfg.d_input == mcfg.d_output
        self.model = (LanguageModel if is_lm else SequenceModel)(mcfg)
        classification = self.spec.target.startswith("class")
        self.classification = classification
        for split in ("train", "val", "test"):
            if classification:
                metrics = {"acc": torchmetrics.Accuracy(task="multiclass", num_classes=self.spec.d_output, ignore_index=IGNORE_INDEX)}
            else:
                metrics = {"mse": torchmetrics.MeanSquaredError(), "mae": torchmetrics.MeanAbsoluteError()}
            setattr(self, f"{split}_metrics", torch.nn.ModuleDict(metrics))

    # ---- steps ------------------------------------------------------------------------------
    def forward(self, x, lengths=None):
        return self.model(x, lengths=lengths)[0]

    def _shared(self, batch, split: str):
        out = self(batch["x"], batch["lengths"] if self.spec.variable_length else None)
        y = batch["y"]
        if self.classification:
            logits = out.reshape(-1, out.shape[-1])
            target = y.reshape(-1)
            loss = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
            preds = logits
        else:
            if "mask" in batch:
                out, y = out[batch["mask"]], y[batch["mask"]]
            loss = F.mse_loss(out, y)
            preds, target = out.reshape(-1), y.reshape(-1)
        metrics = getattr(self, f"{split}_metrics")
        for name, metric in metrics.items():
            metric(preds, target)
            self.log(f"{split}/{name}", metric, on_step=False, on_epoch=True, prog_bar=split != "train", sync_dist=False)
        batch_size = batch["x"].shape[0]
        self.log(f"{split}/loss", loss, on_step=split == "train", on_epoch=True, prog_bar=True, batch_size=batch_size, sync_dist=True)
        if self.spec.input == "tokens" and self.spec.target == "class_per_step":
            self.log(f"{split}/bpt", loss / math.log(2), on_step=False, on_epoch=True, batch_size=batch_size, sync_dist=True)
        return loss

    def training_step(self, batch, batch_idx):
        loss = self._shared(batch, "train")
        # stop before the update: the weights (and last.ckpt) stay the last good ones; under DDP every process
        # learns of a bad loss on any of them, so that all stop together instead of hanging in a collective
        if self.trainer.strategy.reduce_boolean_decision(not bool(torch.isfinite(loss)), all=False):
            raise NonFiniteLossError(
                f"the training loss became {loss.item()} at step {self.global_step} (epoch {self.current_epoch}, batch "
                f"{batch_idx}); training stopped before that update, so the weights and checkpoints hold the last good "
                f"state. Try a lower optimizer.lr, trainer.gradient_clip_val=1.0, or check the data for NaN/Inf."
            )
        return loss

    # ---- the random stream travels with the checkpoint ---------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # a resumed run then draws the same dropout masks as an uninterrupted one
        checkpoint["rng_states"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        resuming = self._trainer is not None and self.trainer.state.fn == "fit"
        if not states or not resuming:  # loading weights for evaluation leaves the caller's stream alone
            return
        torch.set_rng_state(states["torch"])
        if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])

    def validation_step(self, batch, batch_idx):
        self._shared(batch, "val")

    def test_step(self, batch, batch_idx):
        self._shared(batch, "test")

    # ---- optimisation -----------------------------------------------------------------------
    def configure_optimizers(self):
        o, s = self.cfg.optimizer, self.cfg.scheduler
        groups = param_groups(self.model, lr=o.lr, weight_decay=o.weight_decay)
        if o.name in ("adamw", "adam"):
            cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
            opt = cls(groups, lr=o.lr, betas=tuple(o.betas))
        elif o.name == "sgd":
            opt = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum)
        else:
            opt = torch.optim.RMSprop(groups, lr=o.lr, momentum=o.momentum)
        if s.name == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=self.monitor_mode, factor=s.factor, patience=s.patience)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": self.monitor, "interval": "epoch"}}
        total = max(1, int(self.trainer.estimated_stepping_batches))
        # estimating built the training loader before a resumed checkpoint is restored, so Lightning would never
        # restore its position; dropping it makes Lightning build it again after the restore (ResumableLoader)
        self.trainer.fit_loop._combined_loader = None
        warmup = s.warmup_steps
        if warmup is None:
            warmup = int(0.05 * total) if s.name.endswith("_warmup") else 0
        fn = partial(lr_multiplier, s.name, total=total, warmup=int(warmup), min_ratio=s.min_lr_ratio)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, fn)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    @property
    def monitor(self) -> str:
        return self.cfg.trainer.monitor or ("val/acc" if self.classification else "val/loss")

    @property
    def monitor_mode(self) -> str:
        return "max" if self.monitor.endswith("acc") else "min"


class EpochShuffle(Sampler[int]):
    """A permutation drawn from ``(seed, epoch)``: the same order whether a run goes straight through or is
    resumed from a checkpoint (Lightning calls ``set_epoch``; under DDP it uses a DistributedSampler)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class ResumableLoader(DataLoader):
    """The training loader, whose position survives a checkpoint: Lightning saves ``state_dict()`` with the
    fit loop and calls ``load_state_dict()`` before iterating on resume.  A run resumed from a mid-epoch
    checkpoint then sets the sampler to that epoch and skips the batches already trained on (of this process's
    own stream, so it works under a DistributedSampler too), and ends exactly as an uninterrupted run.

    Args (beyond DataLoader's):
        progress: ``() -> (epoch, batches of this epoch already trained on, epoch finished)``.
    """

    def __init__(self, *args, progress: Callable[[], tuple[int, int, bool]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.progress = progress
        self._resume_at: dict | None = None

    def state_dict(self) -> dict:
        epoch, done, finished = self.progress() if self.progress is not None else (0, 0, True)
        return {"epoch": int(epoch), "batches_done": 0 if finished else int(done)}

    def load_state_dict(self, state: dict) -> None:
        self._resume_at = dict(state)
        if state.get("batches_done") and hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(int(state["epoch"]))

    def __iter__(self):
        it = super().__iter__()
        skip = (self._resume_at or {}).get("batches_done", 0)
        self._resume_at = None
        for _ in range(skip):  # the batches were consumed before the interruption (cheap: no training on them)
            next(it)
        return it


class SequenceDataModule(pl.LightningDataModule):
    def __init__(self, splits: Splits, batch_size: int, eval_batch_size: int | None = None, num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.splits, self.seed = splits, seed
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers = num_workers
        self.collate = Collate(splits.spec)

    def _progress(self) -> tuple[int, int, bool]:
        trainer = self.trainer
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return trainer.current_epoch, done, done >= trainer.num_training_batches

    def _loader(self, ds, shuffle: bool, batch_size: int) -> DataLoader:
        # a loader of its own random stream (worker seeds): starting an epoch's iteration must not draw from the
        # global one, or the dropout masks would depend on how often Lightning builds and iterates loaders
        generator = torch.Generator().manual_seed(self.seed)
        options = dict(batch_size=batch_size, num_workers=self.num_workers, collate_fn=self.collate, persistent_workers=self.num_workers > 0, generator=generator)
        if shuffle:
            return ResumableLoader(ds, sampler=EpochShuffle(len(ds), self.seed), progress=self._progress, **options)
        return DataLoader(ds, **options)

    def train_dataloader(self):
        return self._loader(self.splits.train, True, self.batch_size)

    def val_dataloader(self):
        return self._loader(self.splits.val, False, self.eval_batch_size)

    def test_dataloader(self):
        return self._loader(self.splits.test, False, self.eval_batch_size)

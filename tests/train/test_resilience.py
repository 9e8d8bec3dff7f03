"""Nothing is lost on interruption: exact mid-epoch resume, checkpoints chosen by their step, atomic files,
no save during the test phase, a failing save never hides the original error, NaN losses stop training."""

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from statespaces.cli import main
from statespaces.data.base import DataSpec, Splits, TensorSequenceDataset
from statespaces.data.registry import DATASETS, register
from statespaces.models import ModelConfig, SequenceModel
from statespaces.train.config import load_config
from statespaces.train.run import AtomicCheckpointIO, find_checkpoint, train
from statespaces.train.task import NonFiniteLossError


class _StopAt(pl.Callback):
    """Raise ``error`` (Ctrl-C by default) after training step ``step``."""

    def __init__(self, step, error=KeyboardInterrupt):
        self.step, self.error = step, error

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            raise self.error


def _state(ckpt):
    return torch.load(ckpt, map_location="cpu", weights_only=True)


def _assert_same_training_state(a, b):
    assert a["global_step"] == b["global_step"]
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=0, msg=k)
    for k, sa in a["optimizer_states"][0]["state"].items():
        sb = b["optimizer_states"][0]["state"][k]
        torch.testing.assert_close(sa["exp_avg"], sb["exp_avg"], rtol=0, atol=0)
        torch.testing.assert_close(sa["exp_avg_sq"], sb["exp_avg_sq"], rtol=0, atol=0)
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"]
    assert a["lr_schedulers"][0]["_last_lr"] == b["lr_schedulers"][0]["_last_lr"]


@pytest.mark.parametrize("schedule,how,dropout", [("cosine", "folder", 0.0), ("constant", "folder", 0.0), ("cosine", "last", 0.0), ("cosine", "folder", 0.3)])
def test_a_run_interrupted_mid_epoch_resumes_exactly(tiny_overrides, tmp_path, schedule, how, dropout):
    """6 steps per epoch: stop after step 8 (in the middle of epoch 2), resume, compare with a straight run
    (with dropout: the random stream is restored too)."""
    common = tiny_overrides + ["trainer.max_epochs=3", f"scheduler.name={schedule}", "run.test=false", "run.plot=false", "run.export=false", f"model.dropout={dropout}"]
    straight = train(load_config(common + ["run.name=straight"]))
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        train(load_config(common + ["run.name=smnist-s4d-cut"]), callbacks=(_StopAt(8),))
    run = Path(straight["run_dir"]).parent / "smnist-s4d-cut"
    assert _state(run / "checkpoints" / "on_exception.ckpt")["global_step"] == 8
    assert _state(run / "checkpoints" / "last.ckpt")["global_step"] == 6  # the end of epoch 1: older than the interruption
    resumed = train(load_config(common + [f"run.resume={run if how == 'folder' else 'last'}"]))
    assert resumed["run_dir"] == str(run)
    _assert_same_training_state(_state(Path(straight["run_dir"]) / "checkpoints" / "last.ckpt"), _state(run / "checkpoints" / "last.ckpt"))


def test_resume_picks_the_checkpoint_with_the_later_step_not_the_newer_file(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save({"global_step": 12}, folder / "last.ckpt")
    torch.save({"global_step": 7}, folder / "on_exception.ckpt")  # written later, but earlier in training
    assert find_checkpoint(tmp_path / "run", prefer="last").name == "last.ckpt"
    torch.save({"global_step": 15}, folder / "on_exception.ckpt")
    assert find_checkpoint(tmp_path / "run", prefer="last").name == "on_exception.ckpt"
    assert find_checkpoint(tmp_path / "run", prefer="best").name == "last.ckpt"  # no best.ckpt: falls back


def test_an_exception_in_the_test_phase_writes_no_interruption_checkpoint(tiny_overrides, tmp_path):
    class _FailInTest(pl.Callback):
        def on_test_batch_end(self, *args):
            raise RuntimeError("boom in test")

    with pytest.raises(RuntimeError, match="boom in test"):
        train(load_config(tiny_overrides + ["run.name=t"]), callbacks=(_FailInTest(),))
    run = Path(tiny_overrides[6].split("=", 1)[1]) / "t"
    assert (run / "checkpoints" / "last.ckpt").exists() and not (run / "checkpoints" / "on_exception.ckpt").exists()


def test_a_failing_interruption_save_never_hides_the_original_exception(tiny_overrides, monkeypatch):
    def broken(self, checkpoint, path, storage_options=None):
        raise OSError("disk full")

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", broken)
    with pytest.raises(RuntimeError, match="the original error"):
        train(load_config(tiny_overrides + ["run.name=f"]), callbacks=(_StopAt(3, RuntimeError("the original error")),))


def test_the_interruption_save_waits_for_no_other_process(tiny_overrides):
    """Under DDP a peer may sit in an all-reduce: a barrier in the save would hang; none may be called."""
    barriers = []
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        train(load_config(tiny_overrides + ["run.name=b"]), callbacks=(_RecordBarriers(barriers), _StopAt(3)))
    assert barriers == []
    run = Path(tiny_overrides[6].split("=", 1)[1]) / "b"
    assert _state(run / "checkpoints" / "on_exception.ckpt")["global_step"] == 3


class _RecordBarriers(pl.Callback):
    """From step 3 on, record every barrier the strategy is asked for."""

    def __init__(self, calls):
        self.calls = calls

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 3:
            trainer.strategy.barrier = lambda *a, **k: self.calls.append(a)


def test_an_interrupted_checkpoint_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, target)

    def half_then_crash(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("no space left on device")

    monkeypatch.setattr(torch, "save", half_then_crash)
    with pytest.raises(OSError, match="no space left"):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(3)}, target)
    monkeypatch.undo()
    assert _state(target)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_save_pretrained_interrupted_at_any_point_never_pairs_new_and_old(tmp_path, monkeypatch):
    import statespaces.models.sequence as seq

    cfg = ModelConfig(d_input=2, d_output=3, d_model=8, n_layers=1, layer_options={"d_state": 4})
    old, new = SequenceModel(cfg), SequenceModel(cfg)
    old.save_pretrained(tmp_path / "m")
    x = torch.randn(2, 5, 2)
    expected = old(x)[0]

    def crash(path, text):
        raise OSError("crashed before the config was written")

    monkeypatch.setattr(seq, "atomic_write_text", crash)  # the weights were replaced, the config was not
    with pytest.raises(OSError):
        new.save_pretrained(tmp_path / "m")
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="does not match .*config.json.*interrupted save_pretrained"):
        SequenceModel.from_pretrained(tmp_path / "m")
    old.save_pretrained(tmp_path / "m")

    real_write = seq.atomic_write

    def half_weights(path, write):
        def partial(f):
            f.write(b"\x00" * 10)
            raise OSError("killed while writing the weights")

        return real_write(path, partial)

    monkeypatch.setattr(seq, "atomic_write", half_weights)
    with pytest.raises(OSError):
        new.save_pretrained(tmp_path / "m")
    monkeypatch.undo()
    torch.testing.assert_close(SequenceModel.from_pretrained(tmp_path / "m")(x)[0], expected)  # the old model, intact


def _nan_data(*, n: int = 48, length: int = 12, seed: int = 0) -> Splits:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3 * n, length, 2, generator=g)
    y = (x[:, :, 0].sum(1) > 0).long()
    x[5, 3, 0] = float("nan")  # one bad training sequence
    parts = [TensorSequenceDataset(x[i * n : (i + 1) * n], y[i * n : (i + 1) * n]) for i in range(3)]
    return Splits(*parts, DataSpec("unit-test-nan", "continuous", 2, "class", 2, length))


if "unit-test-nan" not in DATASETS:
    register("unit-test-nan", description="test-only dataset with one NaN")(_nan_data)


def test_a_nan_loss_stops_training_naming_the_step_and_keeps_the_last_good_state(tiny_overrides, capsys):
    overrides = [o for o in tiny_overrides if not o.startswith("data.name")] + ["data.name=unit-test-nan", "run.name=nan"]
    with pytest.raises(NonFiniteLossError, match=r"the training loss became nan at step (\d+)"):
        train(load_config(overrides))
    run = Path(tiny_overrides[6].split("=", 1)[1]) / "nan"
    saved = _state(run / "checkpoints" / "on_exception.ckpt")
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())
    assert main(["train"] + overrides[:-1] + ["run.name=nan-cli"]) == 1
    err = capsys.readouterr().err
    assert f"the training loss became nan at step {saved['global_step']}" in err and "Traceback" not in err

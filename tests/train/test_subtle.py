"""Breakages a smoke test would not notice: the run trains and writes its files, but with the wrong learning
rates, the wrong exported weights, or the same batches every epoch.  Each test was checked by making the
breakage it names."""

import lightning.pytorch as pl
import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from statespaces.train.config import load_config
from statespaces.train.run import _dataset, _spec_dict, build_task, evaluate, train


def _task(overrides):
    cfg = load_config(overrides)
    return build_task(OmegaConf.to_container(cfg, resolve=True), _spec_dict(_dataset(cfg).spec))


@pytest.mark.parametrize("name", ["adamw", "sgd", "rmsprop"])
def test_the_training_optimizer_gives_ssm_tensors_their_own_lr_and_no_weight_decay(name, tiny_overrides):
    # breakage: configure_optimizers passing self.parameters() (one lr, weight decay on dt and A)
    task = _task(tiny_overrides + [f"optimizer.name={name}", "scheduler.name=plateau", "model.layer_options.lr=0.001", "optimizer.lr=0.02", "optimizer.weight_decay=0.1"])
    optimizer = task.configure_optimizers()["optimizer"]
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    params = dict(task.model.named_parameters())
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(params) == len(group_of)
    for name, p in params.items():
        if ".kernel." in name:  # dt, A, B: layer lr, no decay; C: layer lr, global decay (the reference's choice)
            expected = (1e-3, 0.1 if name.endswith(".C") else 0.0)
        elif p.dim() < 2 or ".norm." in name:
            expected = (0.02, 0.0)
        else:
            expected = (0.02, 0.1)
        group = group_of[id(p)]
        assert (group["lr"], group["weight_decay"]) == expected, name


class _WorseEachEpoch(pl.Callback):
    """A monitored metric that is best at epoch 0, so the best and the last weights differ."""

    def on_validation_epoch_end(self, trainer, pl_module):
        pl_module.log("val/fake", float(trainer.current_epoch))


@pytest.mark.parametrize("test", [True, False])
def test_the_exported_and_tested_model_is_the_best_checkpoint_not_the_last_weights(test, tiny_overrides):
    # breakages: save_pretrained of the in-memory (last) task instead of the best checkpoint's; the final test
    # run on the last weights
    from pathlib import Path

    res = train(load_config(tiny_overrides + ["trainer.monitor=val/fake", "optimizer.lr=0.05", f"run.test={test}"]), callbacks=(_WorseEachEpoch(),))
    run = Path(res["run_dir"])
    assert res["best_val/fake"] == 0.0 and res["epochs"] == 2
    exported = load_file(run / "model" / "model.safetensors")
    best = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert set(exported) == {k.removeprefix("model.") for k in best if k.startswith("model.")}
    for key, value in exported.items():
        torch.testing.assert_close(value, best["model." + key], rtol=0, atol=0, msg=key)
    assert any(not torch.equal(value, last["model." + key]) for key, value in exported.items())
    if test:
        on_best, on_last = evaluate(run / "checkpoints" / "best.ckpt"), evaluate(run / "checkpoints" / "last.ckpt")
        assert res["test/loss"] == pytest.approx(on_best["test/loss"]) and res["test/loss"] != pytest.approx(on_last["test/loss"])


class _RecordBatches(pl.Callback):
    def __init__(self):
        self.epochs: dict[int, list[torch.Tensor]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.epochs.setdefault(trainer.current_epoch, []).append(batch["x"].clone())


def _sorted_rows(x: torch.Tensor) -> torch.Tensor:
    rows = x.reshape(x.shape[0], -1)
    return rows[torch.argsort(rows[:, 0])]


def test_each_epoch_sees_every_example_once_in_a_new_order_reproducibly(tiny_overrides):
    # breakages: a sampler ignoring the epoch (the same order every epoch), sampling with replacement,
    # an order not drawn from the seed
    runs = []
    for name in ("a", "b"):
        rec = _RecordBatches()
        train(load_config(tiny_overrides + [f"run.name={name}", "run.test=false", "run.export=false"]), callbacks=(rec,))
        runs.append(rec.epochs)
    dataset = _dataset(load_config(tiny_overrides)).train
    everything = torch.stack([dataset[i]["x"] for i in range(len(dataset))])
    for epoch in (0, 1):
        seen = torch.cat(runs[0][epoch])
        assert seen.shape[0] == len(dataset)
        torch.testing.assert_close(_sorted_rows(seen), _sorted_rows(everything), rtol=0, atol=0)
    assert not torch.equal(runs[0][0][0], runs[0][1][0])  # a new order each epoch
    for epoch in (0, 1):  # the same order in a run with the same seed
        assert all(torch.equal(a, b) for a, b in zip(runs[0][epoch], runs[1][epoch]))

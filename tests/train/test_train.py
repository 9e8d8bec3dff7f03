import json

import pytest
import torch

from statespaces.models import SequenceModel
from statespaces.registry import UnknownNameError
from statespaces.train.config import ConfigError, load_config
from statespaces.train.run import evaluate, train
from statespaces.train.schedules import lr_multiplier


def test_config_names_alternatives_for_unknown_things():
    with pytest.raises(UnknownNameError, match=r"unknown experiment 'smnist-s4dd' \(did you mean 'smnist-s4d'"):
        load_config(["experiment=smnist-s4dd"])
    with pytest.raises(UnknownNameError, match=r"unknown experiment '../configs/base'"):
        load_config(["experiment=../configs/base"])  # a name, never a path
    with pytest.raises(UnknownNameError, match=r"unknown config key 'trainer.max_epoch' \(did you mean 'trainer.max_epochs'"):
        load_config(["trainer.max_epoch=3"])
    with pytest.raises(UnknownNameError, match=r"scheduler.name='cosin' is not one of .* \(did you mean 'cosine'\?\)"):
        load_config(["scheduler.name=cosin"])
    with pytest.raises(UnknownNameError, match=r"unknown dataset 'smnits'"):
        load_config(["data.name=smnits"])
    with pytest.raises(UnknownNameError, match=r"model.attn_layer: unknown layer 'mah'"):
        load_config(["model.attn_layer_idx=[1]", "model.attn_layer=mah"])
    with pytest.raises(UnknownNameError, match=r"model.layers\[1\]: unknown layer 's4dd'"):
        load_config(["model.layers=[s4d,{name: s4dd}]"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(["trainer.max_epochs"])
    with pytest.raises(UnknownNameError, match="has no option 'n_trian'"):
        load_config(["data.name=unit-test-sign", "data.n_trian=3"])


@pytest.mark.parametrize("layer", ["gru", "lstm", "mha"])
def test_any_experiment_reruns_with_a_baseline_by_one_override(layer, tiny_overrides):
    """The experiment's layer options belong to its own layer; `model.layer=<baseline>` drops them."""
    cfg = load_config(["experiment=smnist-s4d", "model.layer=" + layer])
    assert cfg.model.layer == layer and cfg.model.layer_options == {}
    plain = [o for o in tiny_overrides if "layer_options" not in o]
    res = train(load_config(plain + ["model.layer=" + layer]))
    assert 0.0 <= res["test/acc"] <= 1.0


def test_a_per_block_layer_list_trains(tiny_overrides):
    plain = [o for o in tiny_overrides if "layer_options" not in o and "n_layers" not in o]
    res = train(load_config(plain + ["model.layers=[{name: s4d, d_state: 4}, {name: mha, n_heads: 2}, gru]"]))
    assert res["parameters"] > 0 and 0.0 <= res["test/acc"] <= 1.0


def test_default_config_is_the_main_job():
    cfg = load_config([])
    assert cfg.experiment == "smnist-s4d" and cfg.data.name == "smnist" and cfg.model.layer == "s4d"


def test_schedules_are_pure_functions_of_the_step():
    assert lr_multiplier("constant", 5, 100) == 1.0
    assert lr_multiplier("cosine", 0, 100) == 1.0
    assert lr_multiplier("cosine", 100, 100, min_ratio=0.1) == pytest.approx(0.1)
    assert lr_multiplier("cosine_warmup", 4, 100, warmup=10) == pytest.approx(0.5)
    assert lr_multiplier("linear_warmup", 55, 100, warmup=10) == pytest.approx(0.5)


def test_training_writes_a_complete_run_folder(tiny_overrides):
    cfg = load_config(tiny_overrides)
    res = train(cfg)
    run = __import__("pathlib").Path(res["run_dir"])
    for f in ("config.yaml", "metrics.csv", "results.json", "learning_curves.png", "checkpoints/best.ckpt", "checkpoints/last.ckpt", "model/model.safetensors"):
        assert (run / f).exists(), f
    saved = json.loads((run / "results.json").read_text())
    assert 0.0 <= saved["test/acc"] <= 1.0 and saved["steps"] == 2 * 6
    model = SequenceModel.from_pretrained(run / "model")
    x = torch.randn(2, 24, 2)
    ev = evaluate(run)
    assert ev["test/acc"] == pytest.approx(saved["test/acc"])
    assert model(x)[0].shape == (2, 2)


def test_two_fresh_runs_under_one_name_get_two_folders(tiny_overrides, tmp_path):
    """Two compare processes started in the same second once shared a folder and broke each other's
    metrics.csv; a fresh run claims a new folder (name, name-2, ...), an empty existing one is reused, and a
    folder another process has claimed (its marker file, nothing else yet) is not."""
    import csv
    from pathlib import Path

    from statespaces.train.run import CLAIM

    (tmp_path / "empty").mkdir()
    (tmp_path / "claimed").mkdir()
    (tmp_path / "claimed" / CLAIM).touch()
    names = ("same", "same", "empty", "claimed")
    runs = [Path(train(load_config([*tiny_overrides, f"run.name={n}", "run.plot=false", "run.export=false"]))["run_dir"]) for n in names]
    assert [r.name for r in runs] == ["same", "same-2", "empty", "claimed-2"]
    for r in runs:
        with open(r / "metrics.csv", newline="") as f:
            epochs = {row["epoch"] for row in csv.DictReader(f) if row.get("val/acc")}
        assert epochs == {"0", "1"}, (r, epochs)  # each folder holds one run's two epochs, not two runs' four


def test_concurrent_claims_of_one_name_never_share_a_folder(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from statespaces.train.run import _claim

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: _claim(tmp_path / "run"), range(32)))
    assert len(set(got)) == 32


def _final_state(run_dir):
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return ckpt


def test_resume_continues_the_same_run(tiny_overrides):
    from pathlib import Path

    # a constant schedule: stopping after 2 of 3 epochs must not change the learning rates of the first part
    common = tiny_overrides + ["scheduler.name=constant"]
    straight = train(load_config(common + ["trainer.max_epochs=3", "run.name=straight"]))
    first = train(load_config(common + ["trainer.max_epochs=2", "run.name=split"]))
    assert first["steps"] == 12
    resumed = train(load_config(common + ["trainer.max_epochs=3", f"run.resume={first['run_dir']}"]))
    assert resumed["run_dir"] == first["run_dir"] and resumed["steps"] == straight["steps"] == 18
    a, b = _final_state(Path(straight["run_dir"])), _final_state(Path(resumed["run_dir"]))
    assert a["global_step"] == b["global_step"]
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], msg=k)
    sa, sb = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    for k in sa:
        torch.testing.assert_close(sa[k]["exp_avg"], sb[k]["exp_avg"])
        torch.testing.assert_close(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"])
    assert b["lr_schedulers"][0]["last_epoch"] == 18
    rows = (Path(resumed["run_dir"]) / "metrics.csv").read_text().splitlines()
    epochs = {r.split(",")[0] for r in rows[1:]}
    assert {"0", "1", "2"} <= epochs  # the first part's metrics were kept


class _Interrupt(__import__("lightning").pytorch.callbacks.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 8:
            raise KeyboardInterrupt


def test_interruption_saves_a_checkpoint_that_resumes(tiny_overrides):
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        train(load_config(tiny_overrides + ["run.name=interrupted"]), callbacks=(_Interrupt(),))
    from pathlib import Path

    run = Path(tiny_overrides[6].split("=", 1)[1]) / "interrupted"
    ckpt = torch.load(run / "checkpoints" / "on_exception.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 8
    resumed = train(load_config(tiny_overrides + [f"run.resume={run}"]))
    assert resumed["steps"] == 12


@pytest.mark.parametrize(
    "extra",
    [
        ["trainer.precision=bf16-mixed", "scheduler.name=plateau", "trainer.early_stopping=1", "trainer.max_epochs=4"],
        ["scheduler.name=linear_warmup", "optimizer.name=sgd", "trainer.gradient_clip_val=0.5", "model.norm=batch", "model.prenorm=true"],
        ["scheduler.name=cosine_warmup", "optimizer.name=rmsprop", "model.layer=s4", "model.pool=last", "model.ffn=2"],
        ["model.n_layers=3", "model.attn_layer_idx=[1]", "model.attn_options={n_heads: 2}", "model.prenorm=true"],
    ],
    ids=["bf16-plateau-earlystop", "sgd-linear-warmup", "rmsprop-cosine-warmup", "hybrid-attn-idx"],
)
def test_training_options_run(tiny_overrides, extra):
    res = train(load_config(tiny_overrides + extra))
    assert 0.0 <= res["test/acc"] <= 1.0


def test_run_compile_compiles_the_model_in_place(tiny_overrides, monkeypatch):
    """run.compile=true hands the model to torch.compile (equality with eager is tests/test_compile.py); a
    stand-in keeps this test fast and shows that the flag reaches the model and is off by default."""
    from statespaces.models.sequence import SequenceModel

    calls = []
    monkeypatch.setattr(SequenceModel, "compile", lambda self, *a, **k: calls.append(type(self).__name__), raising=False)
    train(load_config(tiny_overrides + ["trainer.max_epochs=1", "run.test=false"]))
    assert calls == []
    train(load_config(tiny_overrides + ["trainer.max_epochs=1", "run.test=false", "run.compile=true", "run.name=c"]))
    assert calls == ["SequenceModel"]


class _EpochAsMetric(__import__("lightning").pytorch.callbacks.Callback):
    """Logs the epoch as a validation metric: monitored in mode min, the first epoch is the best."""

    def on_validation_epoch_end(self, trainer, pl_module):
        pl_module.log("val/epoch", float(trainer.current_epoch))


def test_run_checkpoint_last_tests_and_exports_the_final_weights(tiny_overrides):
    from pathlib import Path

    from safetensors.torch import load_file

    common = tiny_overrides + ["trainer.max_epochs=3", "trainer.monitor=val/epoch"]
    res = train(load_config(common + ["run.checkpoint=last"]), callbacks=(_EpochAsMetric(),))
    run = Path(res["run_dir"])
    assert res["checkpoint"] == str(run / "checkpoints" / "last.ckpt")
    best, last = (torch.load(run / "checkpoints" / f"{n}.ckpt", map_location="cpu", weights_only=True) for n in ("best", "last"))
    assert best["epoch"] != last["epoch"], "the setting must make best and last differ for this test to mean anything"
    exported = load_file(run / "model" / "model.safetensors")
    for k, v in exported.items():
        torch.testing.assert_close(v, last["state_dict"]["model." + k], msg=k)
    assert res["test/loss"] == pytest.approx(evaluate(run / "checkpoints" / "last.ckpt")["test/loss"], rel=1e-5)
    with pytest.raises(ConfigError, match="run.checkpoint must be 'best'.*got 'final'"):
        load_config(["run.checkpoint=final"])

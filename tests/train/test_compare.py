"""`statespaces compare` end to end on two layers and two datasets: one run each, a table with the mean rank, JSON and
a plot; and its errors."""

import json
from pathlib import Path

import pytest

from statespaces.cli import main
from statespaces.data.registry import DATASETS, register
from statespaces.train.compare import _ranks

from .conftest import NAME, build

OTHER = "unit-test-sign-longer"
if OTHER not in DATASETS:
    register(OTHER, description="test-only dataset")(lambda **kw: build(length=32, seed=1, **{k: v for k, v in kw.items() if k == "n"}))


def test_compare_runs_each_layer_on_each_dataset_and_tabulates(tiny_overrides, tmp_path, capsys):
    rest = [o for o in tiny_overrides if not o.startswith(("data.name=", "model.layer_options"))] + ["trainer.max_epochs=1"]
    out = tmp_path / "cmp"
    assert main(["compare", "experiment=mnist1d-s4d", "layers=s4d,gru", f"data={NAME},{OTHER}", f"out={out}", *rest]) == 0
    printed = capsys.readouterr().out
    assert "| dataset | s4d | gru |" in printed and "| mean rank |" in printed
    saved = json.loads((out / "compare.json").read_text())
    assert {(r["dataset"], r["layer"]) for r in saved["rows"]} == {(d, la) for d in (NAME, OTHER) for la in ("s4d", "gru")}
    assert all(r["metric"] == "test/acc" and 0 <= r["value"] <= 1 and Path(r["run_dir"]).is_dir() for r in saved["rows"])
    assert sum(saved["mean_rank"].values()) == pytest.approx(3.0)  # ranks 1 and 2 on each dataset
    assert (out / "compare.png").stat().st_size > 0 and (out / "compare.md").read_text().startswith("test/acc")


def test_compare_with_seeds_reports_mean_and_spread(tiny_overrides, tmp_path, capsys):
    rest = [o for o in tiny_overrides if not o.startswith(("data.name=", "model.layer_options"))] + ["trainer.max_epochs=1"]
    out = tmp_path / "cmp"
    assert main(["compare", "experiment=mnist1d-s4d", "layers=s4d,gru", f"data={NAME}", "seeds=0,3", f"out={out}", *rest]) == 0
    assert "mean ± std over 2 seeds" in capsys.readouterr().out
    saved = json.loads((out / "compare.json").read_text())
    assert sorted((r["layer"], r["seed"]) for r in saved["rows"]) == [("gru", 0), ("gru", 3), ("s4d", 0), ("s4d", 3)]
    for s in saved["summary"]:
        values = [r["value"] for r in saved["rows"] if r["layer"] == s["layer"]]
        assert s["seeds"] == 2 and s["value"] == pytest.approx(sum(values) / 2) and s["std"] == pytest.approx(abs(values[0] - values[1]) / 2)
    import torch

    weights = {}
    for r in saved["rows"]:  # the seed reached the runs: the two seeds' final weights differ
        ckpt = next(Path(r["run_dir"]).glob("checkpoints/last*.ckpt"))
        weights[r["layer"], r["seed"]] = torch.load(ckpt, weights_only=True)["state_dict"]
    first = next(iter(weights["s4d", 0]))
    assert not torch.equal(weights["s4d", 0][first], weights["s4d", 3][first])


def test_mean_rank_puts_the_best_first_and_shares_ties():
    rows = [
        {"dataset": "a", "layer": "x", "value": 0.9, "higher_is_better": True},
        {"dataset": "a", "layer": "y", "value": 0.8, "higher_is_better": True},
        {"dataset": "b", "layer": "x", "value": 0.5, "higher_is_better": True},
        {"dataset": "b", "layer": "y", "value": 0.5, "higher_is_better": True},
        {"dataset": "c", "layer": "x", "value": 2.0, "higher_is_better": False},
        {"dataset": "c", "layer": "y", "value": 1.0, "higher_is_better": False},
    ]
    assert _ranks(rows) == {"x": pytest.approx((1 + 1.5 + 2) / 3), "y": pytest.approx((2 + 1.5 + 1) / 3)}


def test_compare_errors(capsys):
    assert main(["compare", "layers=s4d"]) == 2
    assert "needs experiment=NAME and layers=" in capsys.readouterr().err
    assert main(["compare", "experiment=mnist1d-s4d", "layers=s4d,gruu"]) == 2
    assert "did you mean 'gru'" in capsys.readouterr().err
    assert main(["compare", "experiment=mnist1d-s4d", "layers=s4d", "model.layer=gru"]) == 2
    assert "compare sets model.layer itself" in capsys.readouterr().err
    assert main(["compare", "experiment=mnist1d-s4d", "layers=s4d,gru", "model.layer_options.d_state=4"]) == 2  # before any run
    assert "model.layer=gru with layer_options {'d_state': 4}" in capsys.readouterr().err
    assert main(["compare", "experiment=mnist1d-s4d", "layers=s4d", "seeds=0,x"]) == 2
    assert "seeds must be integers" in capsys.readouterr().err
    assert main(["compare", "experiment=mnist1d-s4d", "layers=s4d", "seeds=1,1"]) == 2
    assert "seeds must be distinct" in capsys.readouterr().err
    assert main(["compare", "experiment=mnist1d-s4d", "layers=s4d", "seed=3"]) == 2
    assert "compare sets seed itself" in capsys.readouterr().err


def test_two_compares_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    """Two compares of one experiment with the same time stamp each keep their own table (the second used to
    overwrite the first's compare.md)."""
    import statespaces.train.compare as cmp
    import statespaces.train.run as run

    monkeypatch.setattr(cmp.time, "strftime", lambda fmt: "20260101-000000")
    monkeypatch.setattr(run, "train", lambda cfg: {"test/acc": 0.5, "parameters": 1, "run_dir": str(tmp_path)})
    monkeypatch.setattr(cmp, "_plot", lambda rows, path: None)
    first = cmp.compare("mnist1d-s4d", ["s4d"], overrides=[f"run.root={tmp_path}"])
    second = cmp.compare("mnist1d-s4d", ["gru"], overrides=[f"run.root={tmp_path}"])
    assert first["folder"] != second["folder"]
    assert "| s4d |" in (Path(first["folder"]) / "compare.md").read_text()
    assert "| gru |" in (Path(second["folder"]) / "compare.md").read_text()

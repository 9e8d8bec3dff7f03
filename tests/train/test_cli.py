import json
import subprocess
import sys

import pytest

from statespaces.cli import main


def test_help_and_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "statespaces", "--help"], capture_output=True, text=True, check=True).stdout
    assert "statespaces train" in out and "generate" in out


def test_unknown_command_suggests(capsys):
    assert main(["trian"]) == 2
    assert "did you mean 'train'" in capsys.readouterr().err


def test_experiments_lists_one_line_each(capsys):
    assert main(["experiments"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = [line.split()[0] for line in lines]
    for required in ("smnist-s4d", "scifar-s4d-minimal", "smnist-s4", "psmnist-s4d", "mnist1d-s4d", "ucr-<Name>", "listops", "charlm-s4d", "forecast-co2"):
        assert required in names, required


def test_layers_lists_the_registry_with_capabilities(capsys):
    assert main(["layers"]) == 0
    out = capsys.readouterr().out
    for name in ("s4", "s4d", "dss", "gss", "longconv", "s4d-minimal", "mha", "gru", "lstm"):
        assert f"\n{name} " in "\n" + out, name
    assert "supports: step state rate lengths" in out


def test_datasets_lists_extras(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "smnist" in out and "[data]" in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "experiment=nope"], "unknown experiment 'nope'"),
        (["train", "trainer.max_epoch=1"], "did you mean 'trainer.max_epochs'"),
        (["train", "optimizer.name=adamm"], "optimizer.name='adamm' is not one of"),
        (["train", "model.layer=s4dd"], "unknown layer 's4dd'"),
        (["train", "data.name=unit-test-sign", "model.layer_options.d_stat=4", "run.progress=false", "trainer.fast_dev_run=true"], "did you mean 'd_state'"),
        (["eval"], "missing required argument ckpt"),
        (["eval", "ckpt=/nonexistent"], "no checkpoint at /nonexistent"),
        (["generate", "prompt=hi"], "missing required argument"),
        (["generate", "ckpt=x", "prompt=hi", "temp=1"], "unknown argument 'temp'"),
    ],
)
def test_cli_errors_name_the_alternatives(args, message, capsys, tmp_path):
    args = [a if not a.startswith("run.") else a for a in args] + ([f"run.root={tmp_path}"] if args[0] == "train" else [])
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_train_eval_and_generate_through_the_cli(tmp_path, capsys):
    from statespaces.data.base import DataSpec, Splits, TensorSequenceDataset
    from statespaces.data.registry import DATASETS, register

    if "unit-test-text" not in DATASETS:

        @register("unit-test-text", description="test-only character stream")
        def _text(*, seed: int = 0) -> Splits:
            import torch

            text = "abcabdabcabd " * 40
            itos = sorted(set(text))
            ids = torch.tensor([itos.index(c) for c in text])
            x = ids[: 32 * 14].view(-1, 32)
            y = ids[1 : 32 * 14 + 1].view(-1, 32)
            ds = TensorSequenceDataset(x, y)
            return Splits(ds, ds, ds, DataSpec("unit-test-text", "tokens", len(itos), "class_per_step", len(itos), 32, meta={"itos": itos}))

    common = [f"run.root={tmp_path}", "run.progress=false", "model.d_model=16", "model.n_layers=1", "model.layer_options.d_state=8"]
    assert main(["train", "data.name=unit-test-text", "run.name=lm", "trainer.max_epochs=1", "data.batch_size=7"] + common) == 0
    out = capsys.readouterr().out
    assert "run folder" in out
    assert main(["eval", f"ckpt={tmp_path / 'lm'}"]) == 0
    assert "test/acc" in json.loads(capsys.readouterr().out)
    assert main(["generate", f"ckpt={tmp_path / 'lm'}", "prompt=abc", "n=20", "temperature=0"]) == 0
    text = capsys.readouterr().out.strip()
    assert text.startswith("abc") and len(text) == 23
    assert main(["generate", f"ckpt={tmp_path / 'lm'}", "prompt=xyz", "n=5"]) == 2
    assert "not in the model's vocabulary" in capsys.readouterr().err

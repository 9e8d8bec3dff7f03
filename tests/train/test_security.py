"""Nothing from a file is executed, and no configured path escapes its root."""

import os
import pickle

import numpy as np
import pytest
import torch

from statespaces.cli import main
from statespaces.data import get_dataset
from statespaces.train.config import ConfigError, load_config


class _Evil:
    """Unpickling this calls os.mkdir(marker): a stand-in for any code a crafted file could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_eval_and_generate_refuse_a_checkpoint_that_would_run_code(tmp_path, capsys):
    marker = tmp_path / "code-ran"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"config": _Evil(marker)}}, ckpt)
    assert main(["eval", f"ckpt={ckpt}"]) == 2
    assert "refusing to load" in capsys.readouterr().err
    assert main(["generate", f"ckpt={ckpt}", "prompt=a"]) == 2
    assert "refusing to load" in capsys.readouterr().err
    assert not marker.exists()


def test_cifar_loader_refuses_a_pickle_that_would_run_code(tmp_path):
    marker = tmp_path / "code-ran"
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]}
        if name == "data_batch_3":
            batch[b"labels"] = _Evil(marker)
        with open(tmp_path / name, "wb") as f:
            pickle.dump(batch, f)
    with pytest.raises(ValueError, match=r"data_batch_3 is not a CIFAR-10 batch: .*refusing to load the global posix.mkdir"):
        get_dataset("cifar", root=str(tmp_path), val_size=2)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../escape", "/tmp/abs", "a/b", "..", "."])
def test_run_name_is_a_folder_name_not_a_path(name):
    with pytest.raises(ConfigError, match="run.name must be a plain folder name"):
        load_config([f"run.name={name}"])


def test_eval_checks_its_overrides_like_train(tmp_path, capsys, tiny_overrides):
    from statespaces.train.run import train

    run = train(load_config(tiny_overrides + ["trainer.max_epochs=1", "run.name=r"]))["run_dir"]
    assert main(["eval", f"ckpt={run}", "data.batch_sise=4"]) == 2
    assert "has no option 'batch_sise' (did you mean 'data.batch_size'?)" in capsys.readouterr().err
    assert main(["eval", f"ckpt={run}", "trainer.max_epoch=1"]) == 2
    assert "did you mean 'trainer.max_epochs'" in capsys.readouterr().err

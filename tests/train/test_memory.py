"""run.malloc: glibc keeps freed heap memory in the training process."""

import subprocess
import sys

import pytest

from statespaces.train.config import ConfigError, load_config

FAULTS = """
import resource, sys, torch
torch.set_num_threads(1)
if sys.argv[1] == "tuned":
    from statespaces.train.memory import keep_freed_memory
    assert keep_freed_memory()
from statespaces.layers.fftconv import FFTConv
m = FFTConv(64, d_state=16)
x = torch.randn(8, 1024, 64)
with torch.no_grad():
    for _ in range(5):
        m(x)
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        m(x)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 10)
"""


def _faults(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_malloc_stops_page_faults_on_every_forward():
    # a forward allocates and frees the same ~4 MB buffers each time; with glibc's defaults each call faults
    # their pages in again (~4,600 minor faults per call measured), kept heap memory needs none
    tuned = _faults("tuned")
    assert tuned < 200, f"{tuned:.0f} page faults per forward with freed memory kept"


def test_run_malloc_is_checked():
    assert load_config(["run.malloc=default"]).run.malloc == "default"
    with pytest.raises(ConfigError, match="run.malloc"):
        load_config(["run.malloc=jemalloc"])


@pytest.mark.parametrize("choice", ["tuned", "default"])
def test_train_applies_run_malloc(tiny_overrides, monkeypatch, choice):
    import statespaces.train.run as run_module

    calls = []
    monkeypatch.setattr(run_module, "keep_freed_memory", lambda: calls.append(1) or True)
    cfg = load_config(tiny_overrides + [f"run.malloc={choice}", "trainer.max_epochs=1", "run.export=false", "run.plot=false"])
    res = run_module.train(cfg)
    assert len(calls) == (1 if choice == "tuned" else 0)
    run_module.evaluate(res["run_dir"], [f"run.malloc={choice}"])  # eval: forwards only, where it gains most
    assert len(calls) == (2 if choice == "tuned" else 0)

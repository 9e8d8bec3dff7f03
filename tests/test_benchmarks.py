"""The benchmark scripts run (tiny sizes), so that they cannot rot."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_tasks_benchmark_smoke_writes_its_table_json_and_plot(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "tasks.py"), "--smoke", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| s4d |" in out.stdout and "| gru |" in out.stdout
    rows = json.loads((tmp_path / "tasks.json").read_text())["rows"]
    assert {(r["layer"], r["task"]) for r in rows} == {(a, b) for a in ("s4d", "gru") for b in ("associative_recall", "delay")}
    assert all(r["test"] is not None for r in rows)
    assert (tmp_path / "tasks.png").stat().st_size > 0


def test_scan_layers_benchmark_smoke_prints_every_layer():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_scan_layers.py"), "--smoke"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for name in ("s5", "mamba", "mamba2"):
        assert f"| {name} |" in out.stdout


def test_bench_command_smoke_reports_floors_layers_steps_and_files(tmp_path, capsys):
    from statespaces.cli import main

    assert main(["bench", "smoke=true", "layers=s4d,mamba,gru,hyena,fftconv-s4", f"out={tmp_path}"]) == 0
    text = capsys.readouterr().out
    rows = ("| FFT floor | 64 |", "| s4d | 64 |", "| fftconv-s4 | 64 |", "| mamba | 64 |", "| s4d | 1 |", "| StreamingModel |", "| StreamingModel.step_", "| hyena (distill=16) | 1 |")
    for row in rows:
        assert row in text, row
    result = json.loads((tmp_path / "bench.json").read_text())
    kinds = {r["kind"] for r in result["conv"]}
    assert {"floor:fft", "s4d", "mamba", "gru"} <= kinds and any(k.startswith("floor:scan:") for k in kinds)
    assert all("error" not in r and r["fwd_bwd_s"] > 0 for r in result["conv"])
    assert (tmp_path / "bench.png").stat().st_size > 0
    long = {(r["kind"], r["chunks"]) for r in result["long"] if "error" not in r}
    assert long == {(k, c) for k in ("s4d", "mamba") for c in (1, 16, 64)}
    assert main(["bench", "layers=s4dd"]) == 2
    assert "unknown ['s4dd']" in capsys.readouterr().err
    assert main(["bench", "lengths=1k"]) == 2
    assert main(["bench", "compile=maybe"]) == 2
    assert "compile must be true or false" in capsys.readouterr().err


def test_bench_model_rows_include_the_compiled_streaming_step():
    from statespaces.bench import model_rows

    rows = model_rows(8, 8, steps=5, n_layers=1, compiled=True)
    impls = [r["impl"] for r in rows]
    assert "StreamingModel(compile=True)" in impls and all(r["steps_per_s"] > 0 for r in rows)


def test_bench_peak_memory_counts_a_configuration_smaller_than_an_earlier_transient():
    # ru_maxrss never goes down: a configuration that needs less than what the process once held (imports,
    # an earlier run) used to read 0 MB. The measurement resets the high-water mark first (Linux). In a fresh
    # process, as the suite runs each configuration: a long-lived one may hold freed heap pages that a new
    # tensor reuses without growing the resident set.
    import pytest

    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("resetting the resident high-water mark needs Linux /proc")
    code = (
        "import torch\n"
        "from statespaces.bench import _peak_mb, _reset_peak\n"
        "big = torch.ones(100 * 2**20 // 4); big.add_(1); del big\n"  # a 100 MB transient before the measurement
        "base = _reset_peak('cpu')\n"
        "held = torch.ones(40 * 2**20 // 4); held.add_(1)\n"  # 40 MB inside it, touched
        "print(_peak_mb('cpu') - base)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak = float(out.stdout.strip().splitlines()[-1])
    assert 35 <= peak <= 80, f"measured {peak:.1f} MB for a 40 MB tensor"

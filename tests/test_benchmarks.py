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


def test_step_benchmark_smoke_prints_layers_and_the_streaming_model(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_step.py"), "--smoke", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for row in ("| S4D | 1 |", "| S4 | 4 |", "| StreamingModel |", "| ONNX Runtime (exported step) |"):
        assert row in out.stdout, row
    result = json.loads((tmp_path / "bench_step.json").read_text())
    assert all(r["streaming"] > 0 and r["step"] > 0 for r in result["layers"])

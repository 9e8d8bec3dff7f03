"""Recurrent step throughput: the public ``step``, the fused real-arithmetic streaming step, ONNX Runtime, and
(given its path) the official S4 layer, side by side in one run.

    python benchmarks/bench_step.py                                  # H=128, N=64, B=1 and 64 (about a minute)
    python benchmarks/bench_step.py --official path/to/models/s4/s4.py  # adds the official standalone layer
    python benchmarks/bench_step.py --smoke                          # tiny sizes (run by the tests)

Layer rows: ``FFTConv(H, d_state=N)`` with the S4D ('diag') and S4 ('nplr') kernels, eval mode, no_grad; the
official file's ``FFTConv`` with the same options, in each of its step modes, the fastest reported.  Model rows:
a 4-block ``SequenceModel`` (S4D, d_model H, token input, vocabulary 256): ``model.step`` against
:class:`statespaces.streaming.StreamingModel` and its ONNX export run by onnxruntime (when installed).
Each figure is the median of 5 timed runs of ``steps`` steps after a warm-up, threads pinned (``--threads``).
Writes ``<out>/bench_step.md`` and ``.json`` when ``--out`` is given.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import torch


def _rate(step, steps: int, reps: int = 5) -> float:
    """Median steps/s of ``reps`` runs of ``steps`` calls of ``step()`` (after one warm-up run)."""
    for _ in range(min(steps, 50)):
        step()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(steps):
            step()
        times.append(time.perf_counter() - t)
    times.sort()
    return steps / times[len(times) // 2]


def _loop(fn, state):
    """A closure that advances ``state`` (a one-element list) by ``fn``."""

    def step():
        state[0] = fn(state[0])

    return step


def layer_rows(H: int, N: int, batches: list[int], steps: int, official_path: str | None) -> list[dict]:
    import statespaces as ss
    from statespaces.streaming import FusedSSMStep

    official = _load_official(official_path) if official_path else None
    rows = []
    for kind, label in (("diag", "S4D"), ("nplr", "S4")):
        torch.manual_seed(0)
        layer = ss.FFTConv(H, d_state=N, mode=kind).eval()
        layer.setup_step()
        fused = FusedSSMStep(layer)
        for B in batches:
            u = torch.randn(B, H)
            with torch.no_grad():
                ours = _rate(_loop(lambda s: layer.step(u, s)[1], [layer.default_state(B)]), steps)
                stream = _rate(_loop(lambda s: fused(u, s)[1], [torch.zeros(B, H, fused.n)]), steps)
                row = {"layer": label, "B": B, "step": ours, "streaming": stream}
                if official is not None:
                    row["official"], row["official_mode"] = _official_rate(official, kind, H, N, B, steps)
            rows.append(row)
    return rows


def _load_official(path: str):
    spec = importlib.util.spec_from_file_location("official_s4", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the user asked for this file to be run beside ours
    return module


def _official_rate(module, kind: str, H: int, N: int, B: int, steps: int) -> tuple[float, str]:
    best = (0.0, "-")
    modes = ["diagonal"] if kind == "diag" else ["dense", "linear"]
    for mode in modes:
        torch.manual_seed(0)
        layer = module.FFTConv(H, d_state=N, mode=kind, transposed=True).eval()
        try:
            layer.setup_step(mode=mode) if kind != "diag" else layer.setup_step()
        except Exception:  # noqa: BLE001  (a mode the official file cannot set up is skipped)
            continue
        u = torch.randn(B, H)
        with torch.no_grad():
            rate = _rate(_loop(lambda s: layer.step(u, s)[1], [layer.default_state(B)]), steps)
        best = max(best, (rate, mode))
    return best


def model_rows(H: int, N: int, steps: int, n_layers: int = 4) -> list[dict]:
    from statespaces.models.sequence import SequenceModel
    from statespaces.streaming import StreamingModel, export_onnx

    torch.manual_seed(0)
    model = SequenceModel(d_input=256, d_output=256, tokens=True, d_model=H, n_layers=n_layers, layer="s4d", layer_options={"d_state": N}, pool="none").eval()
    x = torch.tensor([3])
    rows = []
    with torch.no_grad():
        model.setup_step()
        rows.append({"impl": "SequenceModel.step", "steps_per_s": _rate(_loop(lambda s: model.step(x, s)[1], [model.default_state(1)]), steps)})
        stream = StreamingModel(model)
        rows.append({"impl": "StreamingModel", "steps_per_s": _rate(_loop(lambda s: stream(x, *s)[1:], [stream.initial_state(1)]), steps)})
    try:
        import onnxruntime as ort
    except ImportError:
        return rows
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "step.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()][1:]
    feed = {"x": x.numpy(), **{n: s.numpy() for n, s in zip(names, stream.initial_state(1))}}

    def ort_step():
        out = session.run(None, feed)
        feed.update(zip(names, out[1:]))

    rows.append({"impl": "ONNX Runtime (exported step)", "steps_per_s": _rate(ort_step, steps)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--official", help="path of the official state-spaces/s4 standalone file models/s4/s4.py")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="folder for bench_step.md and bench_step.json")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    H, N, batches, steps = (8, 8, [1, 4], 20) if args.smoke else (128, 64, [1, 64], 1000)
    layers = layer_rows(H, N, batches, steps, args.official)
    models = model_rows(H, N, steps)
    setup = f"H={H}, N={N}, float32, {args.threads} threads, torch {torch.__version__}; median of 5 x {steps} steps"
    lines = [f"Recurrent step, steps/s ({setup}); `python benchmarks/bench_step.py`", ""]
    has_official = any("official" in r for r in layers)
    head = "| layer | B | FFTConv.step | streaming (fused) |" + (" official FFTConv.step | streaming / official |" if has_official else "")
    lines += [head, "|---|---|---|---|" + ("---|---|" if has_official else "")]
    for r in layers:
        line = f"| {r['layer']} | {r['B']} | {r['step']:,.0f} | {r['streaming']:,.0f} |"
        if has_official:
            line += f" {r['official']:,.0f} ({r['official_mode']}) | {r['streaming'] / r['official']:.1f}x |"
        lines.append(line)
    lines += ["", f"4-block S4D language model (d_model {H}, N {N}), one token per step, B=1:", "", "| implementation | steps/s |", "|---|---|"]
    lines += [f"| {r['impl']} | {r['steps_per_s']:,.0f} |" for r in models]
    text = "\n".join(lines)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_step.md").write_text(text + "\n")
        (out / "bench_step.json").write_text(json.dumps({"setup": setup, "layers": layers, "models": models}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

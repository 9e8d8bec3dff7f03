"""Training throughput of the scan family (S5, Mamba, Mamba-2): forward + backward of one layer against the same
layer computed by its Python-loop reference, and against a floor, with peak memory.

    python benchmarks/bench_scan_layers.py            # B=8, L=2048, d_model=128 (a few minutes on 2 cores)
    python benchmarks/bench_scan_layers.py --smoke    # tiny sizes, seconds (run by the tests)

Rows, per layer at its defaults (S5: ssm_size 256 -> P = 128 complex states; Mamba: d_state 16, expand 2;
Mamba-2: d_state 64, headdim 64, expand 2, chunk 256):
  ours     the layer as shipped (ops.scan / ops.selective_scan / ops.ssd);
  loop     the same layer with its scan swapped for the reference loop (scan_ref / selective_scan_ref / ssd_ref);
  floor    one elementwise pass (addcmul) over a tensor the size of the layer's full state sequence, with its
           backward: what any method that touches every state once must at least pay.
Peak memory is the process's peak RSS growth during the measurement (each row in a fresh subprocess).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

LAYERS = {
    "s5": ("S5", {}, "statespaces.layers.s5", "scan", "statespaces.ops.scan", "scan_ref"),
    "mamba": ("Mamba", {}, "statespaces.layers.mamba", "selective_scan", "statespaces.ops.selective_scan", "selective_scan_ref"),
    "mamba2": ("Mamba2", {"d_state": 64}, "statespaces.layers.mamba2", "ssd", "statespaces.ops.ssd", "ssd_ref"),
}


def _state_numel(name: str, layer, B: int, L: int) -> tuple[int, torch.dtype]:
    if name == "s5":
        return B * L * layer.P, torch.complex64
    if name == "mamba":
        return B * L * layer.d_inner * layer.d_state, torch.float32
    return B * L * layer.nheads * layer.headdim * layer.d_state, torch.float32


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(name: str, method: str, B: int, L: int, H: int, reps: int) -> dict:
    """One row, in this process."""
    import importlib

    import statespaces as ss

    cls, options, module, attr, ref_module, ref_attr = LAYERS[name]
    torch.manual_seed(0)
    if name == "mamba2" and (2 * H) % 64:  # tiny smoke sizes: heads narrower than the default 64
        options = {**options, "headdim": 8, "chunk_size": 16}
    layer = getattr(ss, cls)(H, **options)
    mod = importlib.import_module(module)
    original = getattr(mod, attr)
    try:
        return _measure(name, method, layer, B, L, H, reps, mod, attr, ref_module, ref_attr)
    finally:
        setattr(mod, attr, original)


def _measure(name, method, layer, B, L, H, reps, mod, attr, ref_module, ref_attr) -> dict:
    import importlib

    x = torch.randn(B, L, H)
    if method == "loop":
        ref = getattr(importlib.import_module(ref_module), ref_attr)
        if name == "mamba2":
            setattr(mod, attr, lambda X, A, B, C, chunk_size, **k: ref(X, A, B, C, **k))
        else:
            setattr(mod, attr, lambda *a, chunk=None, **k: ref(*a, **k))
    if method == "floor":
        n, dtype = _state_numel(name, layer, B, L)
        a = torch.randn(n, dtype=dtype, requires_grad=True)
        b = torch.randn(n, dtype=dtype, requires_grad=True)

        def run():
            out = torch.addcmul(b, a, b)
            torch.autograd.grad(out.abs().sum() if out.is_complex() else out.sum(), (a, b))
    else:

        def run():
            y, _ = layer(x)
            y.sum().backward()

    base = _peak_mb()
    t = time.perf_counter()
    run()
    first = time.perf_counter() - t
    times = [first]
    if first < 5:
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
    return {"layer": name, "method": method, "seconds": sorted(times)[len(times) // 2], "peak_mb": _peak_mb() - base}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=2048)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--row", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.batch, args.length, args.d_model, args.reps = 2, 64, 16, 1
    if args.row:  # a child process: one measurement, printed as JSON
        name, method = args.row.split(":")
        print(json.dumps(measure(name, method, args.batch, args.length, args.d_model, args.reps)))
        return 0
    rows = []
    for name in LAYERS:
        for method in ("ours", "loop", "floor"):
            if args.smoke:  # in this process: the memory column means nothing here
                rows.append(measure(name, method, args.batch, args.length, args.d_model, args.reps))
                continue
            cmd = [sys.executable, __file__, "--row", f"{name}:{method}", "--batch", str(args.batch), "--length", str(args.length), "--d-model", str(args.d_model), "--reps", str(args.reps), "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            rows.append(json.loads(out))
    print(f"fwd+bwd, B={args.batch} L={args.length} d_model={args.d_model}, {args.threads} threads (median of {args.reps})\n")
    print("| layer | ours (s) | loop (s) | loop / ours | floor (s) | ours / floor | peak MB ours | peak MB loop |")
    print("|---|---|---|---|---|---|---|---|")
    for name in LAYERS:
        r = {row["method"]: row for row in rows if row["layer"] == name}
        o, lo, f = r["ours"], r["loop"], r["floor"]
        print(
            f"| {name} | {o['seconds']:.3f} | {lo['seconds']:.3f} | {lo['seconds'] / o['seconds']:.1f}x | {f['seconds']:.4f} | "
            f"{o['seconds'] / f['seconds']:.1f}x | {o['peak_mb']:.0f} | {lo['peak_mb']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

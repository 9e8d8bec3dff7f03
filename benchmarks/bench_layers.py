"""Speed and memory of the S4 / S4D layers against a measured floor (a bare FFT convolution of the same shape).

    python benchmarks/bench_layers.py            # the per-layer table in docs/benchmarks.md (a few minutes on 2 cores)
    python benchmarks/bench_layers.py --smoke    # tiny sizes, seconds (run by the tests so it cannot rot)

Each (layer, L) row runs in its own process so that peak RSS belongs to that configuration alone.
Setup (the same as the measurement of the official standalone layer quoted in docs/benchmarks.md): S4Block(H=128, N=64,
defaults), input (8, L, 128), float32, train mode, 2 warm-up runs then the median and min of 5;
"fwd" under no_grad, "fwd+bwd" = zero_grad + forward + y.sum().backward().  Step: eval, B=1, 1000 steps.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch


def _timeit(fn, reps: int) -> tuple[float, float]:
    for _ in range(2):
        fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2], ts[0]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(kind: str, L: int, B: int, H: int, N: int, reps: int) -> dict:
    """One configuration, in this process: 'nplr' / 'diag' layers or the 'floor'."""
    import statespaces as ss

    torch.manual_seed(0)
    base = _peak_mb()
    out = {"kind": kind, "L": L}
    if kind == "floor":
        u = torch.randn(B, H, L, requires_grad=True)
        k = torch.randn(H, L, requires_grad=True)

        def conv():
            return torch.fft.irfft(torch.fft.rfft(u, n=2 * L) * torch.fft.rfft(k, n=2 * L), n=2 * L)[..., :L]

        def fwd():
            with torch.no_grad():
                conv()

        def fwd_bwd():
            u.grad = k.grad = None
            conv().sum().backward()

    else:
        layer = ss.S4Block(H, d_state=N, mode=kind)
        x = torch.randn(B, L, H)

        def fwd():
            with torch.no_grad():
                layer(x)

        def fwd_bwd():
            layer.zero_grad()
            layer(x)[0].sum().backward()

    out["fwd"], out["fwd_min"] = _timeit(fwd, reps)
    out["fwd_bwd"], out["fwd_bwd_min"] = _timeit(fwd_bwd, reps)
    out["peak_mb"] = _peak_mb()
    out["import_mb"] = base
    return out


def run_steps(kind: str, mode: str | None, H: int, N: int, steps: int, check_L: int) -> dict:
    import statespaces as ss

    torch.manual_seed(0)
    layer = ss.FFTConv(H, d_state=N, mode=kind).eval()
    with torch.no_grad():
        x = torch.randn(1, check_L, H)
        y, _ = layer(x)
        t = time.perf_counter()
        layer.setup_step(**({} if mode is None else {"mode": mode}))
        setup = time.perf_counter() - t
        state, ys = layer.default_state(1), []
        for i in range(check_L):
            y_t, state = layer.step(x[:, i], state)
            ys.append(y_t)
        err = (torch.stack(ys, 1) - y).abs().max().item() / y.abs().max().item()
        u = torch.randn(1, H)
        state = layer.default_state(1)
        for _ in range(20):
            _, state = layer.step(u, state)
        t = time.perf_counter()
        for _ in range(steps):
            _, state = layer.step(u, state)
        rate = steps / (time.perf_counter() - t)
    return {"kind": kind, "mode": mode or "-", "steps_per_s": rate, "setup_s": setup, "rel_err": err, "state": str(tuple(state.shape)) + " " + str(state.dtype).replace("torch.", "")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    if args.smoke:
        B, H, N, lengths, reps, steps, check_L = 2, 8, 8, [64], 1, 20, 16
    else:
        B, H, N, lengths, reps, steps, check_L = 8, 128, 64, [1024, 4096], 5, 1000, 256
    if args.one:
        kind, L = args.one.split(":")
        print(json.dumps(run_one(kind, int(L), B, H, N, reps)))
        return
    rows = []
    for L in lengths:
        for kind in ("nplr", "diag", "floor"):
            cmd = [sys.executable, __file__, "--one", f"{kind}:{L}"] + (["--smoke"] if args.smoke else [])
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    floor = {(r["L"]): r for r in rows if r["kind"] == "floor"}
    name = {"nplr": "S4 (nplr)", "diag": "S4D (diag)", "floor": "FFT floor"}
    print(f"layer: S4Block(H={H}, N={N}), input ({B}, L, {H}), float32, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| layer | L | fwd median s | fwd min s | x floor | fwd+bwd median s | fwd+bwd min s | x floor | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f = floor[r["L"]]
        print(
            f"| {name[r['kind']]} | {r['L']} | {r['fwd']:.4f} | {r['fwd_min']:.4f} | {r['fwd'] / f['fwd']:.1f} | "
            f"{r['fwd_bwd']:.4f} | {r['fwd_bwd_min']:.4f} | {r['fwd_bwd'] / f['fwd_bwd']:.1f} | {r['peak_mb']:.0f} |"
        )
    print()
    print(f"step: FFTConv(H={H}, N={N}), B=1, {steps} steps; rel_err = max|conv - step| / max|conv| over {check_L} steps")
    print("| layer | step mode | steps/s | setup_step s | rel err | state |")
    print("|---|---|---|---|---|---|")
    for kind, mode in [("nplr", "linear"), ("nplr", "dense"), ("nplr", "diagonal"), ("diag", None)]:
        r = run_steps(kind, mode, H, N, steps, check_L)
        print(f"| {name[kind]} | {r['mode']} | {r['steps_per_s']:.0f} | {r['setup_s']:.3f} | {r['rel_err']:.1e} | {r['state']} |")


if __name__ == "__main__":
    main()

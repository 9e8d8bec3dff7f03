"""Speed of ``statespaces.ops.scan`` against the Python loops and a measured floor.

    python benchmarks/bench_scan.py               # the table below (several minutes on 2 cores: scan_ref is slow)
    python benchmarks/bench_scan.py --smoke       # tiny sizes, seconds (run by the tests so it cannot rot)
    python benchmarks/bench_scan.py --threads 1

Methods, on a (B, L, D) decay ``a`` and input ``b`` of the same shape:
  scan         the chunked scan with its custom backward;
  scan_ref     the reference loop (``a[:, t]`` indexing, stack) under autograd;
  unbind loop  the best hand-written autograd loop: ``for a_t, b_t in zip(a.unbind(1), b.unbind(1))``, addcmul, stack;
  floor        one elementwise pass over tensors of the same size, ``torch.addcmul(b, a, b)``, and its backward.
"fwd" runs under no_grad; "fwd+bwd" = forward + ``torch.autograd.grad`` w.r.t. a and b with a random upstream
gradient.  Median of ``reps`` runs after one warm-up; a method whose first run takes more than ``--slow`` seconds
is timed from that run (the best of it and one more when it is under 4x that) and the count is printed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from statespaces.ops.scan import scan, scan_ref


def unbind_loop(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    h = torch.zeros_like(b[:, 0])
    hs = []
    for a_t, b_t in zip(a.unbind(1), b.unbind(1)):
        h = torch.addcmul(b_t, a_t, h)
        hs.append(h)
    return torch.stack(hs, 1)


def floor(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(b, a, b)


def _timeit(fn, reps: int, slow: float) -> tuple[float, int]:
    t = time.perf_counter()
    fn()  # warm-up
    first = time.perf_counter() - t
    if first > slow:  # too slow to repeat: the first run counts (favours the slow method, if anything)
        ts = [first]
        if first < 4 * slow:
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return min(ts), len(ts)
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), reps


def bench(fn, a: torch.Tensor, b: torch.Tensor, reps: int, slow: float) -> dict:
    g = torch.randn_like(fn(a.detach(), b.detach()))

    def fwd():
        with torch.no_grad():
            fn(a, b)

    def fwd_bwd():
        torch.autograd.grad(fn(a, b), (a, b), g)

    out = {}
    out["fwd"], out["n_fwd"] = _timeit(fwd, reps, slow)
    out["fwd_bwd"], out["n_fwd_bwd"] = _timeit(fwd_bwd, reps, slow)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--slow", type=float, default=5.0, help="seconds above which a method is not repeated")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.smoke:
        cases, reps = [(2, 64, 8, torch.float32), (2, 33, 4, torch.complex64)], 1
    else:
        cases, reps = [(8, 2048, 1024, torch.float32), (8, 4096, 64, torch.float32), (8, 2048, 256, torch.complex64)], args.reps
    methods = {"scan": scan, "scan_ref": scan_ref, "unbind loop": unbind_loop, "floor": floor}
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}; times in ms, median of {reps} unless 'runs' says less")
    print("| case | method | fwd ms | x floor | fwd+bwd ms | x floor | fwd+bwd / scan | runs (fwd, fwd+bwd) |")
    print("|---|---|---|---|---|---|---|---|")
    for B, L, D, dtype in cases:
        torch.manual_seed(0)
        a = (torch.rand(B, L, D) * 0.5 + 0.5).to(dtype)
        if dtype.is_complex:
            a = a * torch.exp(1j * torch.randn(B, L, D))
        a = a.requires_grad_()
        b = torch.randn(B, L, D, dtype=dtype, requires_grad=True)
        rows = {name: bench(fn, a, b, reps, args.slow) for name, fn in methods.items()}
        case = f"({B}, {L}, {D}) {str(dtype).replace('torch.', '')}"
        f, s = rows["floor"], rows["scan"]
        for name, r in rows.items():
            print(
                f"| {case} | {name} | {r['fwd'] * 1e3:.1f} | {r['fwd'] / f['fwd']:.1f} | {r['fwd_bwd'] * 1e3:.1f} | "
                f"{r['fwd_bwd'] / f['fwd_bwd']:.1f} | {r['fwd_bwd'] / s['fwd_bwd']:.1f} | {r['n_fwd']}, {r['n_fwd_bwd']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

"""Tutorial 1: state space models from first principles.

    python tutorials/01_ssm_basics.py            # about half a minute on CPU; figures in tutorial_figures/01_ssm_basics
    python tutorials/01_ssm_basics.py --smoke    # small sizes (the test suite runs this)

A state space model maps an input signal u(t) to an output y(t) through an N-dimensional state x(t):

    x'(t) = A x(t) + B u(t)          y(t) = C x(t) + D u(t)

1. HiPPO: with the right A and B the state holds the coefficients of the input's history in a polynomial (or
   Fourier) basis, so the history can be read back from x.  We reconstruct a signal from the final state of
   LegS (the whole history, uniformly weighted: exact), LegT and FouT (sliding windows: the recent past).
2. Discretisation: a computer sees samples u_k = u(k dt); zoh and bilinear turn (A, B) into (A_bar, B_bar).
3. Duality: x_k = A_bar x_(k-1) + B_bar u_k unrolls to y = K * u with K_k = C A_bar^k B_bar: the same layer
   runs as a recurrence (one step at a time) or as a convolution (the whole sequence at once).
4. The kernels K of S4 (LegS), S4D-Lin and S4D-Inv at initialisation.
5. ``rate``: a continuous-time model can read a signal sampled at another rate by changing dt.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

import statespaces as ss
from statespaces.ops import hippo
from statespaces.ops.discretize import discretize_diag

torch.set_default_dtype(torch.float64)  # tutorial checks are exact to ~1e-12


def smooth_signal(T: int, seed: int = 0) -> torch.Tensor:
    """A band-limited random signal on [0, 1): a sum of a few random sines."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(T) / T
    freqs, phases, amps = torch.rand(6, generator=g) * 8, torch.rand(6, generator=g) * 2 * math.pi, torch.randn(6, generator=g)
    return (amps[:, None] * torch.sin(2 * math.pi * freqs[:, None] * t + phases[:, None])).sum(0) / 2


def bilinear(A: torch.Tensor, B: torch.Tensor, dt: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear (Tustin) discretisation of a dense system: A_bar = (I - dt A/2)^-1 (I + dt A/2), B_bar = (I - dt A/2)^-1 dt B."""
    eye = torch.eye(A.shape[0])
    inv = torch.linalg.inv(eye - dt / 2 * A)
    return inv @ (eye + dt / 2 * A), inv @ (dt * B)


def history_kernel(measure: str, N: int, T: int, dt: float) -> torch.Tensor:
    """K (N, T): the final state is x_T = K u, column k is what input u_k contributes.

    Computed by running the adjoint recurrence backwards (no basis formulas are used, so the reconstruction
    below checks the theory instead of assuming it).  LegS is time-varying: x' = (A x + B u) / t, discretised
    bilinearly at step k with dt = 1 / (k + 1) as in the HiPPO paper."""
    A, B = hippo.transition(measure, N)
    cols, M = [], torch.eye(N)  # M = product of the transitions after step k
    for k in reversed(range(T)):
        Ab, Bb = bilinear(A, B, 1.0 / (k + 1)) if measure == "legs" else bilinear(A, B, dt)
        cols.append(M @ Bb)
        M = M @ Ab
    return torch.stack(cols[::-1], dim=1)


def part_hippo(out: Path, T: int, N: int, plt) -> None:
    print("\n1. HiPPO: reconstruct the input's history from the final state (N = %d, T = %d)" % (N, T))
    u = smooth_signal(T)
    fig, axes = plt.subplots(3, 2, figsize=(12, 7), sharex=True, gridspec_kw={"width_ratios": [3, 1]})
    kernels = {}
    recent = T // 2  # the window of LegT and FouT: 2 time units, 2 / dt steps
    for (ax, ax_mem), measure in zip(axes, ("legs", "legt", "fout")):
        K = kernels[measure] = history_kernel(measure, N, T, dt=2.0 / recent)  # LegS ignores dt (its step is 1/t)
        x_T = K @ u
        # least-squares read-out: the history in the span of K's rows that produced x_T (for an orthogonal basis,
        # this is exactly the HiPPO projection onto the measure's polynomials)
        u_hat = torch.linalg.lstsq(K, x_T[:, None], driver="gelsd").solution[:, 0]
        err_all, err_recent = (u_hat - u).abs().max().item(), (u_hat - u)[-recent:].abs().max().item()
        print(f"  {measure}: max read-back error over the whole history {err_all:.3g}, over the window, the last {recent} steps, {err_recent:.3g}")
        ax.plot(u, color="0.6", label="input u")
        ax.plot(u_hat, color="C3", lw=1, label=f"read back from x_T ({measure})")
        ax.legend(loc="lower left", fontsize=8)
        ax_mem.plot(K.norm(dim=0), color="C0")
        ax_mem.set_title(f"{measure}: weight of u_k in x_T", fontsize=9)
    # the LegS kernel rows are the scaled Legendre polynomials: sqrt(2n+1) P_n(2s/T - 1) / T
    s = (torch.arange(T) + 0.5) / T
    n = torch.arange(4)
    legendre = torch.stack([torch.special.legendre_polynomial_p(2 * s - 1, int(i)) for i in n]) * (2 * n[:, None] + 1).sqrt() / T
    rel = ((kernels["legs"][:4] - legendre).norm(dim=1) / legendre.norm(dim=1)).max().item()
    print(f"  legs: the first 4 rows of K vs sqrt(2n+1) P_n(2s/T - 1) / T: relative error {rel:.2e} (discretisation)")
    axes[-1, 0].set_xlabel("step")
    fig.suptitle("HiPPO: the final state read back as a signal, and how much each past input weighs in it")
    fig.tight_layout()
    fig.savefig(out / "hippo_reconstruction.png", dpi=110)
    plt.close(fig)


def part_discretisation(N: int) -> None:
    print("\n2. Discretisation: zoh vs bilinear against the exact solution of x' = A x + B u")
    w, B = hippo.diagonal("lin", N)  # S4D-Lin: A = -1/2 + i pi n (one of each conjugate pair)
    w, B = w[:4], B[:4]
    t_end = 1.0
    u = lambda t: torch.cos(3 * t)  # noqa: E731
    # exact: x(t) = int_0^t exp(A (t - s)) B u(s) ds, by a fine trapezoid rule
    s = torch.linspace(0, t_end, 200_001, dtype=torch.float64)
    exact = torch.trapezoid(torch.exp(w[:, None] * (t_end - s)) * B[:, None] * u(s), s, dim=-1)
    print("     dt      zoh error    bilinear error")
    for dt in (0.1, 0.05, 0.02, 0.01, 0.005):
        steps = round(t_end / dt)
        row = []
        for disc in ("zoh", "bilinear"):
            log_dA, dB = discretize_diag(torch.tensor([dt]), w, B, disc)  # A_bar = exp(log_dA)
            dA = log_dA.exp()
            x = torch.zeros_like(w)
            for k in range(steps):  # zoh holds u over each step: sample its midpoint; bilinear averages the ends
                uk = u(torch.tensor((k + 0.5) * dt)) if disc == "zoh" else (u(torch.tensor(k * dt)) + u(torch.tensor((k + 1) * dt))) / 2
                x = dA * x + dB * uk
            row.append((x - exact).abs().max().item())
        print(f"  {dt:6.3f}   {row[0]:.3e}    {row[1]:.3e}")
    print("  both are second order here; bilinear warps the fast modes (|A dt| large), zoh does not.  S4 uses bilinear, S4D zoh")


def part_duality(L: int) -> None:
    print("\n3. Duality: the same layer as a convolution and as a recurrence")
    torch.manual_seed(0)
    for name, options in (("S4 (DPLR)", {"kernel": "nplr"}), ("S4D-Lin", {"kernel": "diag", "init": "diag-lin"})):
        layer = ss.FFTConv(4, d_state=16, **options).double().eval()
        x = torch.randn(2, L, 4)
        y_conv, _ = layer(x)
        layer.setup_step()
        state, ys = layer.default_state(2), []
        for t in range(L):
            y_t, state = layer.step(x[:, t], state)
            ys.append(y_t)
        y_rec = torch.stack(ys, dim=1)
        # the convolution written out as a sum: y_t = sum_j K_j u_(t-j) + D u_t
        k = layer.kernel(L)[0][0]  # (H, L)
        y_sum = torch.stack([(k[:, : t + 1].flip(-1) * x[:, : t + 1].transpose(1, 2)).sum(-1) for t in range(L)], dim=1)
        y_sum = y_sum + x * layer.D[0]
        print(f"  {name}: |conv - recurrence| = {(y_conv - y_rec).abs().max():.1e}, |conv - explicit sum| = {(y_conv - y_sum).abs().max():.1e}")


def part_kernels(out: Path, L: int, plt) -> None:
    print("\n4. Kernels at initialisation (feature 0, dt fixed at 0.01 for comparability)")
    fig, axes = plt.subplots(1, 3, figsize=(12, 3))
    for ax, (title, options) in zip(axes, (("S4 (LegS, DPLR)", {"kernel": "nplr", "init": "legs"}), ("S4D-Lin", {"kernel": "diag", "init": "diag-lin"}), ("S4D-Inv", {"kernel": "diag", "init": "diag-inv"}))):
        torch.manual_seed(0)
        layer = ss.FFTConv(3, d_state=64, dt_min=0.01, dt_max=0.01, **options).double()
        k = layer.kernel(L)[0][0].detach()  # (H, L)
        for h in range(3):
            ax.plot(k[h], lw=1)
        ax.set_title(title)
        ax.set_xlabel("lag")
        print(f"  {title}: |K| over the first / last tenth of {L} lags: {k[:, : L // 10].abs().mean():.3g} / {k[:, -L // 10 :].abs().mean():.3g}")
    fig.tight_layout()
    fig.savefig(out / "kernels_at_init.png", dpi=110)
    plt.close(fig)


def part_rate(out: Path, L: int, plt) -> None:
    print("\n5. rate: one continuous-time layer reads a signal sampled at twice the rate")
    torch.manual_seed(0)
    layer = ss.FFTConv(1, d_state=32, kernel="diag", init="diag-lin", dt_min=0.02, dt_max=0.02).double().eval()
    t_coarse, t_fine = torch.arange(L) / L, torch.arange(2 * L) / (2 * L)
    signal = lambda t: torch.sin(2 * math.pi * 3 * t) + 0.5 * torch.sin(2 * math.pi * 7 * t)  # noqa: E731
    y_coarse, _ = layer(signal(t_coarse)[None, :, None])
    y_fine, _ = layer(signal(t_fine)[None, :, None], rate=0.5)  # rate multiplies dt: half the step for twice the samples
    gap = (y_fine[0, 1::2, 0] - y_coarse[0, :, 0]).abs().max() / y_coarse.abs().max()
    print(f"  output at L={L} vs the same layer at 2L samples with rate=0.5, at the shared instants: relative gap {gap:.3f}")
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.plot(t_coarse, y_coarse[0, :, 0], "o", ms=3, label=f"{L} samples, rate=1")
    ax.plot(t_fine, y_fine[0, :, 0], lw=1, label=f"{2 * L} samples, rate=0.5")
    ax.set_xlabel("time")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "rate.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="tutorial_figures/01_ssm_basics", help="folder for the figures")
    parser.add_argument("--smoke", action="store_true", help="small sizes, seconds")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torch.set_grad_enabled(False)  # nothing is trained here
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    T, N, L = (200, 16, 32) if args.smoke else (1000, 64, 256)
    part_hippo(out, T, N, plt)
    part_discretisation(N)
    part_duality(L // 4 if args.smoke else 64)
    part_kernels(out, L * 4, plt)
    part_rate(out, L, plt)
    print(f"\nfigures in {out}/")


if __name__ == "__main__":
    main()

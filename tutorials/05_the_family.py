"""Tutorial 5: the family on one task: what each layer learns, and that each runs as a recurrence.

    python tutorials/05_the_family.py          # about two minutes on 2 cores; figures in tutorial_figures/05_the_family
    python tutorials/05_the_family.py --smoke  # a few steps per layer (the test suite runs this)

The task is a delay line: output the input white noise ``DELAY`` steps later.  A linear time-invariant layer
solves it with a kernel that is one spike at lag ``DELAY``; a selective layer (Mamba) or an implicit filter
(Hyena) gets there by other means.  Every layer is trained the same way (one block, d_model 32, Adam), then:

* its *filter* is read off the trained model: the output for a unit impulse at t = 0 minus the output for zeros
  (for a linear time-invariant model, exactly its kernel; for the others, the response to that one input);
* its recurrent mode is checked: ``model.step`` one sample at a time must equal the convolution / scan mode
  ``model(x)``, in float64, to rounding.

What it shows (1,500 steps each, about two minutes in all on 2 cores): S4, S4D, DSS, S5 and H3 learn the spike
(test MSE 0.0002-0.035).  GSS, Hyena, Mamba and Mamba-2 do not at this budget, and each for a reason worth
knowing: GSS fixes dt = 1 with Re(A) = -1/2, so its kernel has decayed by e^-16 at lag 32 (it relies on gating
and depth for long context); Mamba and Mamba-2 have real, non-oscillating modes (A = -exp(A_log)), and sums of
real exponentials are smooth bumps, not a sharp delayed spike (the Mamba paper notes complex SSMs suit such
continuous signals better); Hyena's implicit filters start as short decaying windows and reach lag 32 only
through its gates.  The recurrent modes all agree with the whole-sequence modes to ~1e-14.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import statespaces as ss
from statespaces.models import ModelConfig, SequenceModel

LAYERS = ("s4", "s4d", "dss", "gss", "s5", "h3", "hyena", "mamba", "mamba2")
L, DELAY = 128, 32


def options(name: str) -> dict:
    """Each layer's options: a kernel length where the family needs one, the SSM tensors at lr 1e-3."""
    opts = {}
    if "l_max" in ss.LAYERS.lookup(name)[0].example:
        opts["l_max"] = L
    if name in ("s4", "s4d", "dss", "s5", "h3"):
        opts["lr"] = 1e-3
    if name == "mamba2":
        opts.update(d_state=32, headdim=8, chunk_size=32)
    return opts


def batch(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, L, 1, generator=g)
    return x, F.pad(x, (0, 0, DELAY, 0))[:, :L]


def train(name: str, steps: int) -> tuple[SequenceModel, float, float]:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = SequenceModel(ModelConfig(d_input=1, d_output=1, d_model=32, n_layers=1, layer=name, layer_options=options(name), prenorm=True, pool="none"))
    opt = torch.optim.AdamW(ss.param_groups(model, lr=5e-3, weight_decay=0.0))
    start = time.perf_counter()
    for _ in range(steps):
        x, y = batch(16, g)
        loss = F.mse_loss(model(x)[0][:, DELAY:], y[:, DELAY:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        x, y = batch(64, torch.Generator().manual_seed(1))
        mse = F.mse_loss(model(x)[0][:, DELAY:], y[:, DELAY:]).item()
    return model, mse, seconds


@torch.no_grad()
def impulse_response(model: SequenceModel) -> torch.Tensor:
    impulse = torch.zeros(1, L, 1)
    impulse[0, 0, 0] = 1.0
    return (model(impulse)[0] - model(torch.zeros(1, L, 1))[0])[0, :, 0]


@torch.no_grad()
def step_gap(model: SequenceModel) -> float:
    """max |model(x) - stepping| in float64 on a fresh input."""
    model = model.double().eval()
    x = torch.randn(2, L, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y, _ = model(x)
    model.setup_step()
    state, ys = model.default_state(2), []
    for t in range(L):
        y_t, state = model.step(x[:, t], state)
        ys.append(y_t)
    gap = (torch.stack(ys, 1) - y).abs().max().item()
    model.float()
    return gap


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="tutorial_figures/05_the_family", help="folder for the figures")
    parser.add_argument("--smoke", action="store_true", help="a few steps per layer")
    parser.add_argument("--steps", type=int, default=1500, help="training steps per layer")
    parser.add_argument("--layers", default=",".join(LAYERS))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    names = args.layers.split(",")
    steps = 3 if args.smoke else args.steps

    print(f"delay line: y_t = x_(t-{DELAY}), L={L}; predicting 0 scores MSE 1")
    print(f"{'layer':8s} {'parameters':>10s} {'test MSE':>9s} {'train s':>8s} {'peak lag':>8s} {'|conv - step|':>14s}")
    results = []
    for name in names:
        model, mse, seconds = train(name, steps)
        response = impulse_response(model)
        gap = step_gap(model)
        peak = int(response.abs().argmax())
        params = sum(p.numel() for p in model.parameters())
        print(f"{name:8s} {params:>10,} {mse:>9.4f} {seconds:>8.1f} {peak:>8d} {gap:>14.1e}")
        results.append((name, mse, response))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 3
    rows = (len(results) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.4 * rows), sharex=True, squeeze=False)
    for ax, (name, mse, response) in zip(axes.flat, results):
        ax.plot(response, lw=1)
        ax.axvline(DELAY, color="C3", lw=0.8, ls="--")
        ax.set_title(f"{name}: test MSE {mse:.3f}", fontsize=9)
    for ax in list(axes.flat)[len(results) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("lag")
    fig.suptitle(f"What each trained layer does to a unit impulse (target: a spike at lag {DELAY})")
    fig.tight_layout()
    fig.savefig(out / "filters.png", dpi=110)
    plt.close(fig)
    print(f"\nfilters in {out / 'filters.png'}")


if __name__ == "__main__":
    main()

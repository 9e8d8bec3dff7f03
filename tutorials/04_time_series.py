"""Tutorial 4: multivariate forecasting of a real series, against the naive seasonal baselines.

    python tutorials/04_time_series.py          # about 80 s on 2 cores; figures in tutorial_figures/04_time_series
    python tutorials/04_time_series.py --smoke  # a few steps (the test suite runs this)

The series: weekly atmospheric CO2 at Mauna Loa, 1958-2001 (2,284 weeks, bundled in ``statsmodels``), with two
calendar channels (the sine and cosine of the week of the year) next to it: three channels, all forecast.  From
five years of context (256 weeks) the model forecasts the next year (52 weeks) at once: the horizon's inputs
are zero with a flag channel marking them, and a stack of S4D layers reads the whole window
(``statespaces.data.timeseries.forecast_splits`` builds the windows; the split is chronological: 70% train,
10% validation, the last 20% test, standardised with the train part's statistics).

A forecast is only good if it beats the simple ones.  For a seasonal series the yardsticks are the seasonal
naive forecast (the value one year earlier) and the seasonal naive forecast with drift (plus the change over the
last year).  The error is in ppm on the CO2 channel, over every test window.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F

import statespaces as ss
from statespaces.data.timeseries import forecast_splits
from statespaces.models import ModelConfig, SequenceModel

CONTEXT, HORIZON, SEASON = 256, 52, 52


def load_series() -> torch.Tensor:
    """(T, 3): CO2 in ppm (gaps interpolated), and the sine and cosine of the week of the year."""
    import numpy as np
    from statsmodels.datasets import co2

    frame = co2.load_pandas().data
    values = np.array(frame["co2"], dtype=np.float64)
    gaps = np.isnan(values)
    values[gaps] = np.interp(np.flatnonzero(gaps), np.flatnonzero(~gaps), values[~gaps])
    week = torch.tensor(np.array(frame.index.isocalendar().week, dtype=np.float64))
    phase = 2 * math.pi * week / 52.18
    return torch.stack([torch.from_numpy(values), phase.sin(), phase.cos()], dim=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="tutorial_figures/04_time_series", help="folder for the figures")
    parser.add_argument("--smoke", action="store_true", help="a few training steps")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    series = load_series()
    # offset='last': each window is shifted by its last context value, so the model forecasts the change from the
    # present (a trending series never leaves the range it was trained on)
    splits = forecast_splits("co2+calendar", series, context=CONTEXT, horizon=HORIZON, stride=1, offset="last")
    ppm = splits.spec.meta["std"][0]  # standardised units -> ppm on the CO2 channel
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = ((ds.x, ds.y) for ds in splits)
    x_tr, y_tr = x_tr[::2], y_tr[::2]  # every second training window: neighbours overlap in all but one week
    print(f"{len(series)} weeks x {series.shape[1]} channels; windows: {len(x_tr)} train, {len(x_va)} validation, {len(x_te)} test")

    config = ModelConfig(d_input=x_tr.shape[-1], d_output=y_tr.shape[-1], d_model=64, n_layers=3, layer="s4d", layer_options={"d_state": 64, "lr": 1e-3}, prenorm=True, pool="none")
    model = SequenceModel(config)
    opt = torch.optim.AdamW(ss.param_groups(model, lr=3e-3, weight_decay=0.01))
    epochs = 1 if args.smoke else args.epochs
    steps_per_epoch = 2 if args.smoke else math.ceil(len(x_tr) / 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=epochs * steps_per_epoch)

    def forecast(x: torch.Tensor) -> torch.Tensor:
        return model(x)[0][:, CONTEXT:]  # the horizon's outputs (B, HORIZON, 3)

    best, best_state = float("inf"), None
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_tr))
        for i in range(steps_per_epoch):
            idx = order[i * 32 : (i + 1) * 32]
            loss = F.mse_loss(forecast(x_tr[idx]), y_tr[idx, CONTEXT:])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            val = (forecast(x_va)[..., 0] - y_va[:, CONTEXT:, 0]).abs().mean().item() * ppm
        if val < best:  # keep the epoch with the best validation error
            best, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
        if epoch % 5 == 4 or epoch == epochs - 1:
            print(f"  epoch {epoch + 1}: train loss {loss.item():.4f}, validation MAE {val:.3f} ppm")
    model.load_state_dict(best_state)
    model.eval()

    with torch.no_grad():
        pred = forecast(x_te)[..., 0]
    truth = y_te[:, CONTEXT:, 0]
    context = x_te[:, :CONTEXT, 0]
    # the baselines read the same (shifted) context: the value one season before each target, plus the drift
    naive = context[:, CONTEXT - SEASON : CONTEXT - SEASON + HORIZON]
    drift = naive + (context[:, -1] - context[:, -1 - SEASON])[:, None]
    rows = [("S4D (3 layers, d_model 64)", pred), ("seasonal naive", naive), ("seasonal naive + drift", drift)]
    print(f"\ntest MAE over {len(truth)} windows x {HORIZON} weeks (ppm of CO2):")
    for name, p in rows:
        print(f"  {name:28s} {(p - truth).abs().mean().item() * ppm:.3f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(truth) - 1  # the last test window
    fig, ax = plt.subplots(figsize=(9, 3.5))
    weeks = torch.arange(-CONTEXT, HORIZON)
    # windows are offset by their last context value: the plot shows the change from the forecast origin
    ax.plot(weeks[:CONTEXT], context[k] * ppm, color="0.5", label="context")
    ax.plot(weeks[CONTEXT:], truth[k] * ppm, color="k", label="truth")
    for (name, p), color in zip(rows, ("C3", "C0", "C2")):
        ax.plot(weeks[CONTEXT:], p[k] * ppm, color=color, label=name)
    ax.set_xlabel("weeks from the forecast origin")
    ax.set_ylabel("CO2 change from the origin (ppm)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "forecast.png", dpi=110)
    plt.close(fig)
    print(f"\nforecast of the last test window in {out / 'forecast.png'}")


if __name__ == "__main__":
    main()

"""Time series: UCR/UEA classification sets bundled in aeon, and forecasting windows over single series.

``ucr/<Name>`` reads the ``.ts`` files in aeon's data folder with a small parser of its own (importing aeon
pulls in numba, seconds of start-up).  The forecasting sets (``co2``, ``sunspots``, ``forecast_synthetic``)
share :func:`forecast_splits`, which turns one series (T, D) into one-pass forecasting items::

    x     float (context + horizon, D + 1)  context values, then `horizon` zero rows; the last channel is 1
                                            on the horizon rows (so the model knows where to forecast)
    y     float (context + horizon, D)      the true values on the horizon rows, 0 on the context rows
    mask  bool  (context + horizon,)        True exactly on the horizon rows
"""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import torch

from ..registry import unknown
from .base import DataSpec, Splits, TensorSequenceDataset, require
from .registry import register

__all__ = ["UCR_SETS", "read_ts", "ucr", "forecast_splits", "co2", "sunspots", "forecast_synthetic"]

# the classification sets in aeon 1.6's datasets/data folder (regression-only sets such as Covid3Month are
# left out); ucr/<Name> also accepts any other classification set found there
UCR_SETS = (
    "ACSF1",
    "ArrowHead",
    "BasicMotions",
    "Covid3Month_disc",
    "GunPoint",
    "ItalyPowerDemand",
    "JapaneseVowels",
    "OSULeaf",
    "PickupGestureWiimoteZ",
    "UnitTest",
)


def read_ts(path: str | Path) -> tuple[list[torch.Tensor], list[str], dict[str, str]]:
    """Parse a sktime/aeon ``.ts`` file.

    Returns the cases (each float32 (L_i, C); missing values ``?`` as NaN), their class labels (strings) and
    the header (``@key value`` lines, keys lower-cased, e.g. ``{"classlabel": "true 1 2", ...}``)."""
    header: dict[str, str] = {}
    cases: list[torch.Tensor] = []
    labels: list[str] = []
    in_data = False
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if line.startswith("@"):
                    key, _, value = line[1:].partition(" ")
                    header[key.lower()] = value.strip()
                    in_data = key.lower() == "data"
                continue
            if header.get("timestamps", "false").lower() == "true":
                raise ValueError(f"{path}: time-stamped .ts files are not supported")
            *dims, label = line.split(":")
            series = [[math.nan if v == "?" else float(v) for v in dim.split(",")] for dim in dims]
            if len({len(s) for s in series}) != 1:
                raise ValueError(f"{path}:{lineno}: the dimensions of a case have different lengths")
            cases.append(torch.tensor(series, dtype=torch.float32).T)
            labels.append(label.strip())
    return cases, labels, header


def _aeon_data_dir() -> Path:
    # find_spec locates the installed package without importing it (aeon's import loads numba)
    spec = importlib.util.find_spec("aeon")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def _is_classification(folder: Path) -> bool:
    train, test = folder / f"{folder.name}_TRAIN.ts", folder / f"{folder.name}_TEST.ts"
    if not (train.is_file() and test.is_file()):
        return False
    with open(train, encoding="utf-8") as f:
        for line in f:
            if line.lower().startswith("@classlabel"):
                return line.split()[1].lower() == "true"
            if line.lower().startswith("@data"):
                return False
    return False


def _sorted_classes(labels: list[str]) -> list[str]:
    """Class labels in sorted order: numerically when all are numbers (so "10" follows "9")."""
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


def _pad(cases: list[torch.Tensor], length: int) -> torch.Tensor:
    """cases: each (L_i, C) -> (n, length, C), zeros after each case."""
    x = torch.zeros(len(cases), length, cases[0].shape[1])
    for i, c in enumerate(cases):
        x[i, : len(c)] = c
    return x


def _stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (train, val) indices of labels (n,), with round(fraction * n_c) of each class c in val."""
    g = torch.Generator().manual_seed(seed)
    in_val = torch.zeros(len(labels), dtype=torch.bool)
    for c in labels.unique():
        idx = (labels == c).nonzero().flatten()
        in_val[idx[torch.randperm(len(idx), generator=g)[: round(fraction * len(idx))]]] = True
    return (~in_val).nonzero().flatten(), in_val.nonzero().flatten()


@register(
    "ucr/",
    extra="data",
    description="UCR/UEA time-series classification sets bundled in aeon (official train/test split)",
    members=UCR_SETS,
)
def ucr(name: str, /, *, val_fraction: float = 0.2, normalize: bool = True, seed: int = 0) -> Splits:
    """A UCR/UEA classification set from aeon's bundled ``.ts`` files, e.g. ``ucr/GunPoint``.

    The official train/test split is kept; ``val_fraction`` of each class of the training cases (seeded by
    ``seed``) become validation.  Labels are 0..K-1 in the sorted order of ``spec.meta["classes"]``.
    x (L, C): C = the set's dimensions; ``normalize`` standardises each channel with the mean and std of the
    training split; missing values become 0 (the channel mean when normalised).  Sets with unequal lengths
    (JapaneseVowels) are zero-padded to the longest case, items carry ``length`` and ``spec.variable_length``
    is True."""
    require("aeon", "data", f"ucr/{name}")
    data_dir = _aeon_data_dir()
    # a set is a folder name in aeon's data directory, never a path: the name is checked before it is joined
    if not re.fullmatch(r"[A-Za-z0-9_]+", name) or not _is_classification(data_dir / name):
        raise unknown("UCR/UEA set", name, sorted(p.name for p in data_dir.iterdir() if p.is_dir() and _is_classification(p)))
    train_cases, train_labels, header = read_ts(data_dir / name / f"{name}_TRAIN.ts")
    test_cases, test_labels, _ = read_ts(data_dir / name / f"{name}_TEST.ts")

    declared = header.get("classlabel", "").split()[1:]
    classes = _sorted_classes(declared or sorted(set(train_labels) | set(test_labels)))
    index = {c: i for i, c in enumerate(classes)}
    stray = sorted(set(train_labels + test_labels) - set(index))
    if stray:
        raise ValueError(f"ucr/{name}: labels {stray} are not among the declared classes {classes}")

    cases = train_cases + test_cases
    lengths = torch.tensor([len(c) for c in cases])
    x = _pad(cases, int(lengths.max()))
    y = torch.tensor([index[c] for c in train_labels + test_labels])
    n_train = len(train_cases)
    train, val = _stratified_split(y[:n_train], val_fraction, seed)
    test = torch.arange(n_train, len(cases))

    valid = torch.arange(x.shape[1]) < lengths[:, None]  # (n, L)
    meta = {"classes": classes}
    if normalize:
        values = x[train][valid[train]]  # (steps, C): every valid step of the training cases
        mean = values.nanmean(0)
        std = (values - mean).pow(2).nanmean(0).sqrt().clamp_min(1e-8)
        x = torch.where(valid[..., None], (x - mean) / std, 0.0)
        meta.update(mean=mean.tolist(), std=std.tolist())
    x = x.nan_to_num(0.0)
    variable = bool((lengths != lengths[0]).any())
    spec = DataSpec(f"ucr/{name}", "continuous", x.shape[-1], "class", len(classes), x.shape[1], variable, meta)
    parts = [TensorSequenceDataset(x[i], y[i], lengths=lengths[i] if variable else None) for i in (train, val, test)]
    return Splits(*parts, spec)


def forecast_splits(
    name: str,
    series: torch.Tensor,
    *,
    context: int,
    horizon: int,
    stride: int,
    fractions: tuple[float, float] = (0.7, 0.1),
    meta: dict | None = None,
    offset: str = "none",
) -> Splits:
    """Forecasting windows (see the module docstring) over one series (T, D), split chronologically.

    The series is cut at ``fractions`` (train 70%, val 10%, test the rest): a split's windows have their
    targets inside its part; their context may reach back into the previous part, so no window ever sees a
    later split's targets.  Windows start every ``stride`` steps.  Values are standardised per channel with
    the train part's mean and std (``spec.meta["mean"]``, ``["std"]``).

    ``offset="last"`` subtracts each window's last context value (per channel) from the whole window, so a
    model forecasts the change from the present: trending series (CO2) then leave the range seen in
    training no more in their test part than in their train part.  Errors are unchanged by the shift."""
    if offset not in ("none", "last"):
        raise ValueError(f"{name}: offset must be 'none' or 'last', got {offset!r}")
    if context < 1 or horizon < 1 or stride < 1:
        raise ValueError(f"{name}: context, horizon and stride must be positive, got {context}, {horizon}, {stride}")
    T, D = series.shape
    n_train = int(fractions[0] * T)
    bounds = (0, n_train, n_train + int(fractions[1] * T), T)
    mean, std = series[:n_train].mean(0), series[:n_train].std(0).clamp_min(1e-8)
    z = ((series - mean) / std).float()
    W = context + horizon
    on_horizon = torch.arange(W) >= context

    parts = []
    for split, lo, hi in zip(("train", "val", "test"), bounds[:-1], bounds[1:]):
        first, last = max(lo, context), hi - horizon  # first and last target start: targets in [lo, hi)
        if last < first:
            raise ValueError(
                f"{name}: the {split} part (steps {lo}..{hi - 1} of {T}) is too short for a window of "
                f"context={context} + horizon={horizon}"
            )
        starts = torch.arange(first, last + 1, stride) - context
        w = z[starts[:, None] + torch.arange(W)]  # (n, W, D): window k covers steps starts[k] .. starts[k] + W - 1
        if offset == "last":
            w = w - w[:, context - 1 : context]
        x = torch.cat([w * ~on_horizon[:, None], on_horizon[:, None].float().expand(len(w), W, 1)], dim=-1)
        y = w * on_horizon[:, None]
        parts.append(TensorSequenceDataset(x, y, mask=on_horizon.expand(len(w), W).clone()))
    meta = {
        **(meta or {}),
        "context": context,
        "horizon": horizon,
        "stride": stride,
        "boundaries": list(bounds),
        "mean": mean.tolist(),
        "std": std.tolist(),
        "offset": offset,
    }
    spec = DataSpec(name, "continuous", D + 1, "regression_per_step", D, W, meta=meta)
    return Splits(*parts, spec)


@register("co2", extra="data", description="weekly Mauna Loa CO2 1958-2001 (statsmodels): forecast one year from five")
def co2(*, context: int = 256, horizon: int = 52, stride: int = 1, offset: str = "last") -> Splits:
    """Forecasting windows (:func:`forecast_splits`) over statsmodels' weekly Mauna Loa CO2 series (2,284
    weeks; its 59 missing weeks linearly interpolated)."""
    require("statsmodels", "data", "co2")
    import numpy as np
    from statsmodels.datasets import co2 as source

    values = np.array(source.load_pandas().data["co2"], dtype=np.float64)  # a writable copy
    missing = np.isnan(values)
    steps = np.arange(len(values))
    values[missing] = np.interp(steps[missing], steps[~missing], values[~missing])
    meta = {"source": "statsmodels.datasets.co2", "interpolated": int(missing.sum())}
    return forecast_splits("co2", torch.from_numpy(values)[:, None], context=context, horizon=horizon, stride=stride, meta=meta, offset=offset)


@register("sunspots", extra="data", description="yearly sunspot activity 1700-2008 (statsmodels): forecast one solar cycle")
def sunspots(*, context: int = 64, horizon: int = 11, stride: int = 1, offset: str = "last") -> Splits:
    """Forecasting windows (:func:`forecast_splits`) over statsmodels' yearly sunspot numbers (309 years);
    the default horizon is one ~11-year solar cycle."""
    require("statsmodels", "data", "sunspots")
    from statsmodels.datasets import sunspots as source

    values = torch.tensor(source.load_pandas().data["SUNACTIVITY"].to_numpy(), dtype=torch.float64)
    meta = {"source": "statsmodels.datasets.sunspots", "first_year": 1700}
    return forecast_splits("sunspots", values[:, None], context=context, horizon=horizon, stride=stride, meta=meta, offset=offset)


def synthetic_series(n_channels: int, length: int, seed: int) -> torch.Tensor:
    """A seeded multivariate series (length, n_channels): per channel three sinusoids (periods 12..400 steps,
    log-uniform) plus a linear trend, each channel also driven by the previous channel's periodic part 7
    steps earlier (so the other channels help forecast it), plus Gaussian noise of std 0.1."""
    g = torch.Generator().manual_seed(seed)

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return torch.empty(*shape, dtype=torch.float64).uniform_(lo, hi, generator=g)

    t = torch.arange(length, dtype=torch.float64)
    periods = uniform(math.log(12), math.log(400), n_channels, 3).exp()
    amplitudes, phases = uniform(0.3, 1.0, n_channels, 3), uniform(0, 2 * math.pi, n_channels, 3)
    periodic = (amplitudes[..., None] * torch.sin(2 * math.pi * t / periods[..., None] + phases[..., None])).sum(1)  # (C, T)
    lag = 7
    delayed = torch.zeros_like(periodic)
    delayed[:, lag:] = periodic[:, :-lag]
    coupled = periodic + uniform(0.3, 0.8, n_channels, 1) * delayed.roll(1, dims=0)
    trend = uniform(-1.0, 1.0, n_channels, 1) * t / length
    noise = 0.1 * torch.randn(n_channels, length, dtype=torch.float64, generator=g)
    return (coupled + trend + noise).T


@register("forecast_synthetic", extra=None, description="seeded multichannel series (coupled sinusoids, trends, noise)")
def forecast_synthetic(
    *, n_channels: int = 3, length: int = 4000, context: int = 192, horizon: int = 48, stride: int = 1, seed: int = 0,
    offset: str = "last",
) -> Splits:
    """Forecasting windows (:func:`forecast_splits`) over :func:`synthetic_series` (no extra packages)."""
    series = synthetic_series(n_channels, length, seed)
    return forecast_splits("forecast_synthetic", series, context=context, horizon=horizon, stride=stride, meta={"seed": seed}, offset=offset)

"""``statespaces compare``: one experiment, several layers (and datasets), the same splits, seed and budget.

    statespaces compare experiment=mnist1d-s4d layers=s4d,gru,lstm,mha [data=ucr/GunPoint,ucr/ArrowHead] [key=value ...]

Each (dataset, layer) pair is an ordinary run of ``statespaces train experiment=<name> model.layer=<layer>
[data.name=<dataset>] key=value ...`` in its own folder (the experiment's layer options belong to its own layer and
are dropped for the others, as ``model.layer=`` always does).  The comparison folder gets ``compare.md`` (test
metric, parameters and wall time per layer; with several datasets also each layer's mean rank), ``compare.json``
and ``compare.png`` (validation curves side by side).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from ..files import atomic_write_text

__all__ = ["compare", "METRICS"]

# the test metric reported, in order of preference, and whether higher is better
METRICS = (("test/acc", True), ("test/mse", False), ("test/loss", False))


def _metric(results: dict) -> tuple[str, float, bool]:
    for key, higher in METRICS:
        if results.get(key) is not None:
            return key, float(results[key]), higher
    raise ValueError(f"a run reported none of {[k for k, _ in METRICS]}: {sorted(results)}")


def _curve(run_dir: Path, key: str) -> list[tuple[int, float]]:
    path = run_dir / "metrics.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [(int(float(r["epoch"])) + 1, float(r[key])) for r in csv.DictReader(f) if r.get(key) not in (None, "")]


def compare(experiment: str, layers: list[str], datasets: list[str] | None = None, overrides: list[str] | None = None, out: str | Path | None = None) -> dict:
    """Train ``experiment`` with each layer (on each dataset) and write the comparison; returns its rows.

    Args:
        experiment: a name of ``statespaces experiments``.
        layers: layer names (the experiment's own layer included or not).
        datasets: dataset names replacing the experiment's (None: its own).
        overrides: further ``key=value`` overrides for every run (``run.root`` places the runs).
        out: the comparison folder (default: ``<run.root>/compare-<experiment>-<time>``).
    """
    from .config import load_config  # noqa: PLC0415
    from .run import train  # noqa: PLC0415

    if not layers:
        raise ValueError("compare needs at least one layer, e.g. layers=s4d,gru")
    overrides = list(overrides or [])
    for o in overrides:
        if o.split("=", 1)[0] in ("experiment", "model.layer", "data.name", "run.name", "run.resume"):
            raise ValueError(f"compare sets {o.split('=', 1)[0]} itself; remove {o!r}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    configs = []
    for data in datasets or [None]:  # every config is checked before the first run starts
        for layer in layers:
            name = "-".join(p.replace("/", "_") for p in ("compare", experiment, data or "", layer, stamp) if p)
            extra = [f"experiment={experiment}", f"model.layer={layer}", f"run.name={name}"] + ([f"data.name={data}"] if data else [])
            cfg = load_config(extra + overrides)
            _check_layer_options(cfg)
            configs.append((data, layer, cfg))
    root = Path(out) if out is not None else Path(str(configs[0][2].run.root)) / f"compare-{experiment}-{stamp}"
    rows = []
    for data, layer, cfg in configs:
        start = time.time()
        res = train(cfg)
        key, value, higher = _metric(res)
        rows.append(
            {
                "dataset": data or str(cfg.data.name),
                "layer": layer,
                "metric": key,
                "value": value,
                "higher_is_better": higher,
                "parameters": res["parameters"],
                "wall_s": round(time.time() - start, 1),
                "run_dir": res["run_dir"],
            }
        )
    summary = _ranks(rows)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "compare.json", json.dumps({"experiment": experiment, "rows": rows, "mean_rank": summary}, indent=2))
    table = _table(rows, layers, summary)
    atomic_write_text(root / "compare.md", table + "\n")
    _plot(rows, root / "compare.png")
    return {"rows": rows, "mean_rank": summary, "table": table, "folder": str(root)}


def _check_layer_options(cfg) -> None:
    """Build the configured layer once, so that a bad option fails before any run starts."""
    from omegaconf import OmegaConf  # noqa: PLC0415

    from ..layers import make_layer  # noqa: PLC0415
    from .config import ConfigError  # noqa: PLC0415

    options = OmegaConf.to_container(cfg.model.layer_options, resolve=True)
    try:
        make_layer(str(cfg.model.layer), int(cfg.model.d_model), **options)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"model.layer={cfg.model.layer} with layer_options {options}: {e}") from e


def _ranks(rows: list[dict]) -> dict[str, float]:
    """Mean rank of each layer over the datasets (1 = best; ties share the mean of their ranks)."""
    by_data: dict[str, list[dict]] = {}
    for r in rows:
        by_data.setdefault(r["dataset"], []).append(r)
    ranks: dict[str, list[float]] = {}
    for group in by_data.values():
        sign = -1 if group[0]["higher_is_better"] else 1
        values = sorted(sign * r["value"] for r in group)
        for r in group:
            v = sign * r["value"]
            positions = [i + 1 for i, w in enumerate(values) if w == v]
            ranks.setdefault(r["layer"], []).append(sum(positions) / len(positions))
    return {layer: sum(v) / len(v) for layer, v in ranks.items()}


def _table(rows: list[dict], layers: list[str], ranks: dict[str, float]) -> str:
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    by = {(r["dataset"], r["layer"]): r for r in rows}
    metric = rows[0]["metric"]
    fmt = (lambda v: f"{100 * v:.1f}%") if metric == "test/acc" else (lambda v: f"{v:.4g}")
    lines = ["| dataset | " + " | ".join(layers) + " |", "|---|" + "---|" * len(layers)]
    for d in datasets:
        cells = [f"{fmt(by[d, la]['value'])} ({by[d, la]['parameters']:,} p, {by[d, la]['wall_s']:.0f} s)" for la in layers]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    if len(datasets) > 1:
        lines.append("| mean rank | " + " | ".join(f"{ranks[la]:.2f}" for la in layers) + " |")
    return f"{metric} (parameters, wall time)\n\n" + "\n".join(lines)


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.4), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        for r in (r for r in rows if r["dataset"] == d):
            key = r["metric"].replace("test/", "val/")
            curve = _curve(Path(r["run_dir"]), key)
            if curve:
                ax.plot([e for e, _ in curve], [v for _, v in curve], marker="o", ms=3, label=f"{r['layer']} (test {r['value']:.4g})")
        ax.set_title(d, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(rows[0]["metric"].replace("test/", "val "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

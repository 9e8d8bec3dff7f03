"""``statespaces compare``: one experiment, several layers (and datasets), the same splits, seed and budget.

    statespaces compare experiment=mnist1d-s4d layers=s4d,gru,lstm,mha [data=ucr/GunPoint,ucr/ArrowHead] [seeds=0,1,2] [key=value ...]

Each (dataset, layer, seed) is an ordinary run of ``statespaces train experiment=<name> model.layer=<layer>
[data.name=<dataset>] seed=<seed> key=value ...`` in its own folder (the experiment's layer options belong to its own layer and
are dropped for the others, as ``model.layer=`` always does).  The comparison folder gets ``compare.md`` (test
metric, parameters and wall time per layer; with several seeds the mean and standard deviation over them, which
small test sets need before two layers can be told apart; with several datasets also each layer's mean rank),
``compare.json`` and ``compare.png`` (validation curves side by side, the first seed's).
"""

from __future__ import annotations

import csv
import json
import statistics
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


def compare(
    experiment: str,
    layers: list[str],
    datasets: list[str] | None = None,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    seeds: list[int] | None = None,
) -> dict:
    """Train ``experiment`` with each layer (on each dataset, with each seed) and write the comparison.

    Returns ``rows`` (one per run), ``summary`` (one per dataset and layer: mean and std over the seeds),
    ``mean_rank``, ``table`` and ``folder``.

    Args:
        experiment: a name of ``statespaces experiments``.
        layers: layer names (the experiment's own layer included or not).
        datasets: dataset names replacing the experiment's (None: its own).
        overrides: further ``key=value`` overrides for every run (``run.root`` places the runs).
        out: the comparison folder (default: ``<run.root>/compare-<experiment>-<time>``).
        seeds: values of the ``seed`` key, each run once per (dataset, layer) (None: the experiment's seed).
    """
    from .config import load_config  # noqa: PLC0415
    from .run import _claim, train  # noqa: PLC0415

    if not layers:
        raise ValueError("compare needs at least one layer, e.g. layers=s4d,gru")
    overrides = list(overrides or [])
    if seeds is not None and (not seeds or len(set(seeds)) != len(seeds)):
        raise ValueError(f"seeds must be distinct integers, e.g. seeds=0,1,2; got {seeds}")
    for o in overrides:
        if o.split("=", 1)[0] in ("experiment", "model.layer", "data.name", "run.name", "run.resume", "seed"):
            raise ValueError(f"compare sets {o.split('=', 1)[0]} itself; remove {o!r}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    configs = []
    for data in datasets or [None]:  # every config is checked before the first run starts
        for layer in layers:
            for seed in seeds or [None]:
                tag = "" if seed is None else f"seed{seed}"
                name = "-".join(p.replace("/", "_") for p in ("compare", experiment, data or "", layer, tag, stamp) if p)
                extra = [f"experiment={experiment}", f"model.layer={layer}", f"run.name={name}"]
                extra += ([f"data.name={data}"] if data else []) + ([f"seed={seed}"] if seed is not None else [])
                cfg = load_config(extra + overrides)
                _check_layer_options(cfg)
                configs.append((data, layer, cfg))
    root = Path(out) if out is not None else Path(str(configs[0][2].run.root)) / f"compare-{experiment}-{stamp}"
    if out is None:  # claimed now: two compares started in the same second must not write one folder's table
        root = _claim(root)
    rows = []
    for data, layer, cfg in configs:
        start = time.time()
        res = train(cfg)
        key, value, higher = _metric(res)
        rows.append(
            {
                "dataset": data or str(cfg.data.name),
                "layer": layer,
                "seed": int(cfg.seed),
                "metric": key,
                "value": value,
                "higher_is_better": higher,
                "parameters": res["parameters"],
                "wall_s": round(time.time() - start, 1),
                "run_dir": res["run_dir"],
            }
        )
    summary = _summarise(rows)
    ranks = _ranks(summary)
    root.mkdir(parents=True, exist_ok=True)
    record = {"experiment": experiment, "overrides": overrides, "seeds": seeds, "rows": rows, "summary": summary, "mean_rank": ranks}
    atomic_write_text(root / "compare.json", json.dumps(record, indent=2))
    table = _table(summary, layers, ranks)
    atomic_write_text(root / "compare.md", table + "\n")
    _plot([r for r in rows if r["seed"] == rows[0]["seed"]], root / "compare.png")
    return {"rows": rows, "summary": summary, "mean_rank": ranks, "table": table, "folder": str(root)}


def _summarise(rows: list[dict]) -> list[dict]:
    """One row per (dataset, layer): the metric's mean and (population) std over the seeds, the mean wall time."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["layer"]), []).append(r)
    out = []
    for (data, layer), group in groups.items():
        values = [r["value"] for r in group]
        out.append(
            {
                "dataset": data,
                "layer": layer,
                "metric": group[0]["metric"],
                "value": statistics.fmean(values),
                "std": statistics.pstdev(values),
                "seeds": len(values),
                "higher_is_better": group[0]["higher_is_better"],
                "parameters": group[0]["parameters"],
                "wall_s": round(statistics.fmean(r["wall_s"] for r in group), 1),
            }
        )
    return out


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


def _table(summary: list[dict], layers: list[str], ranks: dict[str, float]) -> str:
    datasets = list(dict.fromkeys(r["dataset"] for r in summary))
    by = {(r["dataset"], r["layer"]): r for r in summary}
    metric, n = summary[0]["metric"], summary[0]["seeds"]
    fmt = (lambda v: f"{100 * v:.1f}") if metric == "test/acc" else (lambda v: f"{v:.4g}")
    unit = "%" if metric == "test/acc" else ""

    def cell(r: dict) -> str:
        spread = f" ± {fmt(r['std'])}" if n > 1 else ""
        return f"{fmt(r['value'])}{spread}{unit} ({r['parameters']:,} p, {r['wall_s']:.0f} s)"

    lines = ["| dataset | " + " | ".join(layers) + " |", "|---|" + "---|" * len(layers)]
    for d in datasets:
        lines.append(f"| {d} | " + " | ".join(cell(by[d, la]) for la in layers) + " |")
    if len(datasets) > 1:
        lines.append("| mean rank | " + " | ".join(f"{ranks[la]:.2f}" for la in layers) + " |")
    seeds = f"mean ± std over {n} seeds, " if n > 1 else ""
    return f"{metric} ({seeds}parameters, wall time per run)\n\n" + "\n".join(lines)


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

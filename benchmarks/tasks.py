"""Every registered layer on the synthetic tasks that separate sequence models, at one fixed CPU budget.

    python benchmarks/tasks.py                      # every layer x every task (tens of minutes on 2 cores)
    python benchmarks/tasks.py --layers s4d,mha,gru --tasks induction_heads --epochs 10
    python benchmarks/tasks.py --smoke              # tiny sizes, seconds (run by the tests so it cannot rot)

Tasks (the shipped experiments, run through the normal training entry point):
    associative_recall   H3 paper: recall the value bound to the query key (L = 65, 32 tokens; trained with the
                         language-model loss of the safari synthetics, scored on the final answer)
    induction_heads      H3 paper: recall the token that followed the copy prefix (L = 128)
    selective_copying    Mamba paper: recall 16 tokens scattered among blanks (L = 256)
    delay                a 64-step delay of white noise (L = 256; regression, test MSE)

Each layer runs with its own options (``RECIPES``: the SSM tensors at lr 1e-3 as the S4 papers do, l_max where
the layer needs one) in the experiment's model (d_model 64, 2 pre-norm blocks), the same data, seed, optimizer
and number of epochs.  Writes ``<out>/tasks.md`` (layer x task table with parameters and training throughput),
``<out>/tasks.json`` and ``<out>/tasks.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

TASKS = {
    "associative_recall": ("associative-recall", "acc"),
    "induction_heads": ("induction-heads", "acc"),
    "selective_copying": ("selective-copying", "acc"),
    "delay": ("delay", "mse"),
}
SSM_LR = {"lr": 1e-3}
# SGConv's official init draws its pieces from N(0, 1): on a sequence shorter than kernel_dim the kernel is one piece
# of white noise over every tap, and SGConv stays at chance on induction heads (8.8%); smooth 'cos' pieces learn it
RECIPES = {"sgconv": {"init": "cos"}, "s4": SSM_LR, "s4d": SSM_LR, "dss": SSM_LR, "gss": {}, "s4d-minimal": SSM_LR, "lssl": SSM_LR, "liquid-s4": SSM_LR, "h3": SSM_LR, "s5": SSM_LR, "mamba": {}, "mamba2": {"d_state": 64, "headdim": 16, "chunk_size": 64}}


def layer_options(name: str, L: int) -> dict:
    """The options a layer runs with on a task of length L."""
    from statespaces.layers import LAYERS

    options = dict(RECIPES.get(name, {}))
    if "l_max" in LAYERS.lookup(name)[0].example:  # layers with a fixed kernel length need it to cover the task
        options["l_max"] = L
    return options


def run_one(layer: str, task: str, epochs: int, n_train: int, root: str, threads: int, data_options: dict | None = None) -> dict:
    from statespaces.data import dataset_options, get_dataset
    from statespaces.train.config import load_config
    from statespaces.train.run import train

    experiment, metric = TASKS[task]
    sizes = {"n_train": n_train, "n_val": max(8, n_train // 10), "n_test": max(8, n_train // 10)}
    sizes.update({k: v for k, v in (data_options or {}).items() if k in dataset_options(task)})
    L = get_dataset(task, **{k: v for k, v in sizes.items() if k in dataset_options(task)}).spec.l_max
    options = "{" + ", ".join(f"{k}: {v}" for k, v in layer_options(layer, L).items()) + "}"
    overrides = [
        f"experiment={experiment}",
        f"model.layer={layer}",
        f"model.layer_options={options}",
        f"trainer.max_epochs={epochs}",
        f"run.root={root}",
        f"run.name={layer}-{task}",
        f"run.threads={threads}",
        "run.progress=false",
        "run.plot=false",
        "run.export=false",
    ] + [f"data.{k}={v}" for k, v in sizes.items()]
    start = time.time()
    res = train(load_config(overrides))
    wall = time.time() - start
    return {
        "layer": layer,
        "task": task,
        "metric": metric,
        "test": res.get(f"test/{metric}"),
        "parameters": res["parameters"],
        "samples_per_s": round(n_train * res["epochs"] / max(res["fit_seconds"], 1e-9), 1),
        "fit_s": res["fit_seconds"],
        "wall_s": round(wall, 1),
    }


def table(rows: list[dict], layers: list[str], tasks: list[str]) -> str:
    by = {(r["layer"], r["task"]): r for r in rows}
    head = "| layer | parameters | " + " | ".join(f"{t} ({TASKS[t][1]})" for t in tasks) + " | samples/s in fit (mean) |"
    lines = [head, "|" + "---|" * (len(tasks) + 3)]
    for layer in layers:
        cells, speeds, params = [], [], ""
        for t in tasks:
            r = by.get((layer, t))
            if r is None:
                cells.append("-")
                continue
            params = f"{r['parameters']:,}"
            value = r["test"]
            cells.append("error" if value is None else (f"{100 * value:.1f}%" if r["metric"] == "acc" else f"{value:.3g}"))
            speeds.append(r["samples_per_s"])
        speed = f"{sum(speeds) / len(speeds):.0f}" if speeds else "-"
        lines.append(f"| {layer} | {params} | " + " | ".join(cells) + f" | {speed} |")
    return "\n".join(lines)


def plot(rows: list[dict], layers: list[str], tasks: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 0.35 * len(layers) + 1.5), squeeze=False)
    by = {(r["layer"], r["task"]): r for r in rows}
    for ax, t in zip(axes[0], tasks):
        values = [(by.get((layer, t)) or {}).get("test") for layer in layers]
        values = [float("nan") if v is None else v for v in values]
        ax.barh(range(len(layers)), values, color="tab:blue")
        ax.set_yticks(range(len(layers)), layers if ax is axes[0][0] else [""] * len(layers))
        ax.invert_yaxis()
        ax.set_title(f"{t}\n(test {TASKS[t][1]}{', lower is better' if TASKS[t][1] == 'mse' else ''})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    import logging

    from statespaces.layers import LAYERS

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # one JSON line per run is the progress report

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", default=",".join(LAYERS), help="comma-separated layer names (default: every registered layer)")
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, from {list(TASKS)}")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--data", default="", help="dataset options for every task that has them, e.g. seq_len=30,vocab_size=20,supervision=lm")
    p.add_argument("--smoke", action="store_true", help="two layers, two tasks, 32 training sequences, one epoch")
    args = p.parse_args(argv)
    layers, tasks = args.layers.split(","), args.tasks.split(",")
    if args.smoke:
        layers, tasks, args.epochs, args.n_train = ["s4d", "gru"], ["associative_recall", "delay"], 1, 32
    for t in tasks:
        if t not in TASKS:
            p.error(f"unknown task {t!r}; expected one of {list(TASKS)}")
    try:
        data_options = {k: int(v) if v.lstrip("-").isdigit() else v for k, v in (kv.split("=", 1) for kv in args.data.split(",") if kv)}
    except ValueError:
        p.error(f"--data takes options like seq_len=30,vocab_size=20,supervision=lm; got {args.data!r}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for layer in layers:
            for t in tasks:
                try:
                    row = run_one(layer, t, args.epochs, args.n_train, root, args.threads, data_options)
                except Exception as e:  # noqa: BLE001  (one failing layer must not hide the others' results)
                    row = {"layer": layer, "task": t, "metric": TASKS[t][1], "test": None, "error": f"{type(e).__name__}: {e}"}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    md = table(rows, layers, tasks)
    setup = f"{args.epochs} epochs, {args.n_train} training sequences, d_model 64, 2 blocks, {args.threads} threads"
    setup += f", data options {data_options}" if data_options else ""
    (out / "tasks.md").write_text(f"Synthetic tasks ({setup}); `python benchmarks/tasks.py`\n\n{md}\n")
    (out / "tasks.json").write_text(json.dumps({"setup": setup, "rows": rows}, indent=2))
    plot(rows, layers, tasks, out / "tasks.png")
    print(md)
    errors = [r for r in rows if "error" in r]
    for r in errors:
        print(f"{r['layer']} on {r['task']}: {r['error']}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

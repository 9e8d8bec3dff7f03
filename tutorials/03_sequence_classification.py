"""Tutorial 3: train a sequence classifier, and compare it with an LSTM of the same size.

    python tutorials/03_sequence_classification.py          # about a minute on 2 cores; figures in tutorial_figures/03_sequence_classification
    python tutorials/03_sequence_classification.py --smoke  # tiny budget (the test suite runs this)

Two tasks, each run through ``statespaces.train.compare`` (the function behind ``statespaces compare``):

* delayed XOR (synthetic): output at every step the XOR of the inputs 8 and 32 steps ago.  A model must hold
  bits for 32 steps and combine two of them: the memory an SSM's kernel gives for free, and that an LSTM has to
  learn through its gates.
* GunPoint (real, from the UCR archive, bundled in ``aeon``: no download): 150-step hand trajectories of 50
  training cases, "gun drawn" or "pointing"; the official test split (150 cases) stays untouched.

S4D runs with the experiment's settings; the LSTM gets the width that gives it the same number of parameters
(searched below), so the comparison is about the layer, not its size.  The learning curves go to a plot.
"""

from __future__ import annotations

import argparse
import csv
import functools
import logging
import warnings
from pathlib import Path

from statespaces.data import get_dataset
from statespaces.models import SequenceModel
from statespaces.train.compare import compare
from statespaces.train.config import load_config
from statespaces.train.task import model_config

QUIET = ["run.progress=false", "run.plot=false", "run.export=false", "run.threads=2"]


@functools.lru_cache(maxsize=None)
def data_spec(experiment: str, extra: tuple[str, ...]):
    """The dataset's spec (input and output sizes), built once per experiment."""
    cfg = load_config([f"experiment={experiment}", *extra])
    options = {k: v for k, v in dict(cfg.data).items() if k not in ("name", "batch_size", "eval_batch_size", "num_workers")}
    return get_dataset(str(cfg.data.name), **options).spec


def parameters(experiment: str, layer: str, extra: list[str]) -> int:
    cfg = load_config([f"experiment={experiment}", f"model.layer={layer}", *extra])
    spec = data_spec(experiment, tuple(o for o in extra if o.startswith("data.")))
    return sum(p.numel() for p in SequenceModel(model_config(cfg, spec)).parameters())


def matching_width(experiment: str, extra: list[str]) -> tuple[int, int, int]:
    """The LSTM d_model whose model has about as many parameters as the experiment's S4D model (the count
    grows with the width, so a bisection finds it)."""
    target = parameters(experiment, "s4d", extra)
    count = lambda d: parameters(experiment, "lstm", [*extra, f"model.d_model={d}"])  # noqa: E731
    lo, hi = 4, 512
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    best = min((lo, hi), key=lambda d: abs(count(d) - target))
    return best, target, count(best)


def curve(run_dir: str, key: str) -> list[float]:
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        return [float(r[key]) for r in csv.DictReader(f) if r.get(key) not in (None, "")]


def run_task(title: str, experiment: str, extra: list[str], out: Path, root: Path) -> list[dict]:
    width, p_s4d, p_lstm = matching_width(experiment, extra)
    print(f"\n{title}: S4D {p_s4d:,} parameters; LSTM with d_model={width}: {p_lstm:,}")
    common = [*QUIET, f"run.root={root}", *extra]
    rows = []
    for layer, own in (("s4d", []), ("lstm", [f"model.d_model={width}"])):
        result = compare(experiment, [layer], overrides=common + own, out=out / f"{experiment}-{layer}")
        row = result["rows"][0]
        rows.append({**row, "title": title})
        print(f"  {layer}: {row['metric']} {row['value']:.4f}, {row['parameters']:,} parameters, {row['wall_s']:.0f} s")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="tutorial_figures/03_sequence_classification", help="folder for the figures and runs")
    parser.add_argument("--smoke", action="store_true", help="one epoch on a few sequences")
    args = parser.parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # Lightning's start-up chatter
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = out / "runs"
    if args.smoke:
        xor = ["trainer.max_epochs=1", "data.n_train=64", "data.n_val=32", "data.n_test=32"]
        gun = ["trainer.max_epochs=1"]
    else:
        xor = ["trainer.max_epochs=10", "data.n_train=2000"]
        gun = []  # the ucr recipe: about 1,000 optimizer steps, checkpoint by validation loss
    rows = run_task("delayed XOR", "delayed-xor", xor, out, root)
    rows += run_task("GunPoint (UCR)", "ucr-GunPoint", gun, out, root)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    for ax, title in zip(axes, ("delayed XOR", "GunPoint (UCR)")):
        for r in (r for r in rows if r["title"] == title):
            values = curve(r["run_dir"], "val/acc")
            ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, label=f"{r['layer']} ({r['parameters']:,} params): test {r['value']:.3f}")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=110)
    plt.close(fig)
    print(f"\nlearning curves in {out / 'learning_curves.png'}; each run's checkpoints, metrics.csv and config under {root}/")


if __name__ == "__main__":
    main()

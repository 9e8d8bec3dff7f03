"""The ``statespaces`` command (also ``python -m statespaces``).

    statespaces train [experiment=NAME] [key=value ...]    train (default: S4D on sequential MNIST)
    statespaces eval ckpt=PATH [key=value ...]             test a checkpoint or run folder
    statespaces generate ckpt=PATH prompt=TEXT n=200 [temperature=1.0 top_p=1.0 top_k=0 seed=0]
    statespaces compare experiment=NAME layers=s4d,gru,... [data=A,B] [seeds=0,1,2] [key=value ...]
                                                           train each layer (on each dataset) and tabulate
    statespaces export ckpt=PATH out=FILE [format=onnx|pt2] [realization=... rate=...]
                                                           the recurrent step, for streaming without Python
    statespaces bench [layers=a,b] [lengths=1024,4096] [out=DIR] [official=PATH] [smoke=true]
                                                           speed and memory of every layer against measured floors
    statespaces experiments                                list the named experiments
    statespaces datasets                                   list the datasets and the extra each needs
    statespaces layers                                     list the sequence layers and what each supports
"""

from __future__ import annotations

import json
import logging
import os
import sys

from .registry import UnknownNameError, suggest

__all__ = ["main"]

COMMANDS = ("train", "eval", "generate", "compare", "export", "bench", "experiments", "datasets", "layers")


class UsageError(ValueError):
    pass


def _kv(args: list[str], allowed: dict[str, object], command: str) -> dict[str, str]:
    out = {}
    for a in args:
        if "=" not in a:
            raise UsageError(f"{command}: arguments must look like key=value, got {a!r}")
        k, v = a.split("=", 1)
        if k not in allowed:
            raise UnknownNameError(f"{command}: unknown argument {k!r}{suggest(k, allowed, 1)}; valid: {sorted(allowed)}")
        out[k] = v
    missing = [k for k, default in allowed.items() if default is ... and k not in out]
    if missing:
        raise UsageError(f"{command}: missing required argument(s) {missing}")
    return {**{k: v for k, v in allowed.items() if v is not ...}, **out}


def _number(opts: dict, key: str, kind: type):
    try:
        return kind(opts[key])
    except ValueError:
        raise UsageError(f"{key} must be {'an integer' if kind is int else 'a number'}, got {opts[key]!r}") from None


def cmd_train(args: list[str]) -> int:
    from .train.config import load_config  # noqa: PLC0415
    from .train.run import train  # noqa: PLC0415

    cfg = load_config(args)
    rank0 = int(os.environ.get("RANK", "0")) == 0  # under torchrun/DDP only rank 0 reports
    if rank0:
        print(f"experiment {cfg.experiment}: {cfg.description}")
    results = train(cfg)
    if results.pop("global_rank", 0) != 0:
        return 0
    print(json.dumps(results, indent=2))
    acc = results.get("test/acc")
    if acc is not None:
        print(f"test accuracy {acc:.4f}  ({results['fit_seconds']:.0f}s, {results['parameters']:,} parameters)")
    print(f"run folder: {results['run_dir']}")
    return 0


def cmd_eval(args: list[str]) -> int:
    from .train.run import evaluate  # noqa: PLC0415

    ckpt = [a for a in args if a.startswith("ckpt=")]
    if not ckpt:
        raise UsageError("eval: missing required argument ckpt=PATH (a .ckpt file or a run folder)")
    rest = [a for a in args if not a.startswith("ckpt=")]
    print(json.dumps(evaluate(ckpt[0].split("=", 1)[1], rest), indent=2))
    return 0


def cmd_generate(args: list[str]) -> int:
    import torch  # noqa: PLC0415

    from .models import LanguageModel  # noqa: PLC0415

    opts = _kv(args, {"ckpt": ..., "prompt": ..., "n": "200", "temperature": "1.0", "top_p": "1.0", "top_k": "0", "seed": "0"}, "generate")
    model, meta = _load_model(opts["ckpt"])
    if not isinstance(model, LanguageModel):
        raise UsageError(f"generate: {opts['ckpt']} holds a {type(model).__name__}, not a language model")
    itos = meta.get("itos")
    if not itos:
        raise UsageError("generate: the checkpoint has no vocabulary (spec.meta['itos'])")
    stoi = {c: i for i, c in enumerate(itos)}
    unknown = sorted({c for c in opts["prompt"] if c not in stoi})
    if unknown:
        raise UsageError(f"generate: prompt characters {unknown} are not in the model's vocabulary")
    if not opts["prompt"]:
        raise UsageError("generate: prompt must not be empty")
    prompt = torch.tensor([[stoi[c] for c in opts["prompt"]]])
    g = torch.Generator().manual_seed(_number(opts, "seed", int))
    try:
        out = model.generate(
            prompt,
            n=_number(opts, "n", int),
            temperature=_number(opts, "temperature", float),
            top_p=_number(opts, "top_p", float),
            top_k=_number(opts, "top_k", int) or None,
            generator=g,
        )
    except ValueError as e:  # the sampling options, checked by generate() before any work
        raise UsageError(f"generate: {e}") from None
    print("".join(itos[i] for i in out[0].tolist()))
    return 0


def cmd_compare(args: list[str]) -> int:
    from .train.compare import compare  # noqa: PLC0415

    own = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if a.split("=", 1)[0] in ("experiment", "layers", "data", "out", "seeds")}
    rest = [a for a in args if a.split("=", 1)[0] not in own]
    if "experiment" not in own or "layers" not in own:
        raise UsageError("compare: needs experiment=NAME and layers=a,b,... (e.g. layers=s4d,gru,lstm,mha)")
    datasets = own["data"].split(",") if own.get("data") else None
    try:
        seeds = [int(s) for s in own["seeds"].split(",")] if own.get("seeds") else None
    except ValueError:
        raise UsageError(f"compare: seeds must be integers separated by commas, e.g. seeds=0,1,2; got {own['seeds']!r}") from None
    try:
        result = compare(own["experiment"], own["layers"].split(","), datasets, rest, own.get("out"), seeds)
    except UnknownNameError:
        raise
    except ValueError as e:
        raise UsageError(f"compare: {e}") from None
    print(result["table"])
    print(f"comparison folder: {result['folder']}")
    return 0


def cmd_export(args: list[str]) -> int:
    import torch  # noqa: PLC0415

    from .streaming import export_onnx, export_program  # noqa: PLC0415

    opts = _kv(args, {"ckpt": ..., "out": ..., "format": "onnx", "realization": None, "rate": None}, "export")
    if opts["format"] not in ("onnx", "pt2"):
        raise UsageError(f"export: format must be 'onnx' or 'pt2' (torch.export), got {opts['format']!r}")
    step_options = {k: opts[k] for k in ("realization",) if opts[k] is not None}
    if opts["rate"] is not None:
        step_options["rate"] = _number(opts, "rate", float)
    model, _ = _load_model(opts["ckpt"])
    model.eval()
    try:
        if opts["format"] == "onnx":
            path = export_onnx(model, opts["out"], **step_options)
        else:
            torch.export.save(export_program(model, **step_options), opts["out"])
            path = opts["out"]
    except (ValueError, TypeError) as e:  # a layer the streaming step does not take, or a bad step option
        raise UsageError(f"export: {e}") from None
    names = ", ".join(["x", *(f"block{i}_state*" for i in range(len(model.blocks)))])
    print(f"wrote {path}: one step per call; inputs {names}{' and the pool sums' if model.config.pool == 'mean' else ''}; outputs y and the next states")
    return 0


def cmd_bench(args: list[str]) -> int:
    from .bench import DEFAULTS, bench  # noqa: PLC0415

    opts = _kv(args, DEFAULTS, "bench")
    for key in ("batch", "d_model", "d_state", "threads", "reps", "steps"):
        if _number(opts, key, int) < 1:
            raise UsageError(f"bench: {key} must be a positive integer, got {opts[key]!r}")
    try:
        lengths = [int(v) for v in opts["lengths"].split(",")]
    except ValueError:
        raise UsageError(f"bench: lengths must be integers separated by commas, e.g. lengths=1024,4096; got {opts['lengths']!r}") from None
    if any(v < 2 for v in lengths):
        raise UsageError(f"bench: every length must be at least 2, got {lengths}")
    for key in ("smoke", "compile"):
        if opts[key] not in ("true", "false", "1", "0", "yes", "no"):
            raise UsageError(f"bench: {key} must be true or false, got {opts[key]!r}")
    if opts["device"] not in ("cpu", "cuda"):
        raise UsageError(f"bench: device must be 'cpu' or 'cuda', got {opts['device']!r}")
    if opts["official"] and not os.path.isfile(opts["official"]):
        raise UsageError(f"bench: official={opts['official']!r} is not a file (the state-spaces/s4 models/s4/s4.py)")
    try:
        result = bench(opts)
    except ValueError as e:
        raise UsageError(f"bench: {e}") from None
    print(result["text"])
    return 0


def _load_model(path: str):
    from pathlib import Path  # noqa: PLC0415

    from .models import SequenceModel  # noqa: PLC0415

    p = Path(path)
    for folder in (p, p / "model"):
        if (folder / "config.json").exists():
            meta = json.loads((folder / "config.json").read_text())
            return SequenceModel.from_pretrained(folder), meta.get("spec", {}).get("meta", {})
    from .train.run import load_task  # noqa: PLC0415

    task = load_task(p)
    return task.model, task.spec.meta


def cmd_experiments(args: list[str]) -> int:
    from .train.config import describe_experiments  # noqa: PLC0415

    if args:
        raise UsageError("experiments takes no arguments")
    rows = describe_experiments()
    width = max(len(n) for n, _ in rows)
    for name, desc in rows:
        print(f"{name:<{width}}  {desc}")
    return 0


def cmd_layers(args: list[str]) -> int:
    from .layers import LAYERS  # noqa: PLC0415

    if args:
        raise UsageError("layers takes no arguments")
    width = max(len(n) for n in LAYERS)
    for e in LAYERS.entries():
        caps = e.obj(8, **e.example).capabilities
        flags = " ".join(f for f, on in zip(caps._fields, caps) if on and f != "bidirectional")
        print(f"{e.name:<{width}}  {e.description}\n{'':<{width}}  supports: {flags}; example options: {e.example}")
    return 0


def cmd_datasets(args: list[str]) -> int:
    from .data import list_datasets  # noqa: PLC0415

    if args:
        raise UsageError("datasets takes no arguments")
    entries = list_datasets()
    names = [e.name + ("<Name>" if e.family else "") for e in entries]
    width = max(map(len, names))
    for name, e in zip(names, entries):
        extra = f"[{e.meta['extra']}]" if e.meta["extra"] else "(core)"
        print(f"{name:<{width}}  {extra:<8}  {e.description}")
        if e.meta["members"]:
            print(f"{'':<{width}}            members: {', '.join(e.meta['members'])}")
    return 0


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a message is logged (not the stream of the first call, which
    an embedding program or a test harness may since have replaced and closed)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    log = logging.getLogger("statespaces")
    if not log.handlers:  # our messages only: Lightning has its own handler (root would print them twice)
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    command, args = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}{suggest(command, COMMANDS, 1)}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    from .data import MissingExtra  # noqa: PLC0415
    from .train.config import ConfigError  # noqa: PLC0415
    from .train.run import CheckpointError  # noqa: PLC0415
    from .train.task import NonFiniteLossError  # noqa: PLC0415

    try:
        return globals()[f"cmd_{command}"](args)
    except (UsageError, ConfigError, UnknownNameError, CheckpointError, MissingExtra, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

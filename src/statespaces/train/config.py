"""Run configuration: ``base.yaml`` <- ``experiments/<name>.yaml`` <- ``key=value`` overrides (OmegaConf).

Keys are checked against the base config; ``data.*`` keys beyond the loader's own are options of the chosen
dataset and are checked against its builder; ``model.layer_options.*`` are checked by the layer itself.
Every unknown name is an error that lists the alternatives.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..files import atomic_write_text
from ..registry import Registry, UnknownNameError, suggest
from .memory import MALLOC_CHOICES

__all__ = ["ConfigError", "experiments", "experiment_names", "describe_experiments", "load_config", "merge_overrides", "check_config", "DATA_LOADER_KEYS"]

DATA_LOADER_KEYS = ("name", "batch_size", "eval_batch_size", "num_workers")
DEFAULT_EXPERIMENT = "smnist-s4d"
# families of experiments: "<prefix><Member>" uses the template file with data.name set from the member
_FAMILIES = {"ucr-": ("ucr", "ucr/{}")}
_RUN_NAME = re.compile(r"[A-Za-z0-9._-]+")
_FREE_SECTIONS = ("model.layer_options", "model.attn_options", "model.layers")  # checked by the layers themselves


class ConfigError(ValueError):
    """A configuration value is wrong (unknown names are :class:`UnknownNameError`)."""


def _configs_dir():
    return resources.files("statespaces") / "configs"


def _load_yaml(path) -> DictConfig:
    return OmegaConf.create(path.read_text())


@functools.lru_cache(maxsize=1)
def experiments() -> Registry:
    """The shipped experiments: one entry per ``configs/experiments/<name>.yaml`` (the object is the file),
    plus a family entry per template (``ucr-<Name>``)."""
    reg: Registry = Registry("experiment")
    templates = {template: prefix for prefix, (template, _) in _FAMILIES.items()}
    for path in sorted((_configs_dir() / "experiments").iterdir(), key=lambda p: p.name):
        if path.name.endswith(".yaml"):
            name = path.name[: -len(".yaml")]
            reg.add(templates.get(name, name), path, str(_load_yaml(path).get("description", "")))
    return reg


def experiment_names() -> list[str]:
    """The named experiments (families excluded)."""
    return [e.name for e in experiments().entries() if not e.family]


def describe_experiments() -> list[tuple[str, str]]:
    return [(e.name + ("<Name>" if e.family else ""), e.description) for e in experiments().entries()]


def _experiment(name: str) -> tuple[DictConfig, bool]:
    """The experiment's config and whether it is a member of a family (whose defaults adapt to its data)."""
    entry, member = experiments().lookup(name)
    cfg = _load_yaml(entry.obj)
    if member is not None:
        cfg.data.name = _FAMILIES[entry.name][1].format(member)
    return cfg, member is not None


def _adapt_to_data(cfg: DictConfig, cli: DictConfig, own_layer: bool = True) -> None:
    """Fill in the data-dependent defaults of a family experiment (``ucr-<Name>``: :func:`.recipes.ucr_recipe`)
    for every key the command line does not set, from the dataset the run actually uses.  Layer options only
    for the experiment's own layer (``own_layer``): a baseline swapped in gets none."""
    name = str(cfg.data.name)
    if not name.startswith("ucr/"):
        return
    from ..data import get_dataset  # noqa: PLC0415
    from .recipes import ucr_recipe  # noqa: PLC0415

    options = {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k not in DATA_LOADER_KEYS}
    splits = get_dataset(name, **options)
    batch = OmegaConf.select(cli, "data.batch_size")
    for key, value in ucr_recipe(len(splits.train), splits.spec.l_max, batch, layer_options=own_layer).items():
        if OmegaConf.select(cli, key) is None:
            OmegaConf.update(cfg, key, value)


def _parse_overrides(overrides: list[str]) -> DictConfig:
    bad = [o for o in overrides if "=" not in o or o.startswith("=")]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got {bad}")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except Exception as e:  # OmegaConf's grammar errors name the offending value
        raise ConfigError(f"cannot parse overrides {overrides}: {e}") from None


def _check_keys(cfg: DictConfig, base: DictConfig, where: str = "") -> None:
    for key in cfg:
        path = f"{where}{key}"
        if path.startswith("data.") and key not in DATA_LOADER_KEYS:
            continue  # dataset options: checked against the builder
        if path in _FREE_SECTIONS:
            continue
        if key not in base:
            hint = suggest(f"{where}{key}", [f"{where}{k}" for k in base])
            raise UnknownNameError(f"unknown config key {path!r}{hint}; valid keys here: {sorted(str(k) for k in base)}")
        if isinstance(base[key], DictConfig):
            if not isinstance(cfg[key], DictConfig):
                raise ConfigError(f"config key {path!r} is a section; set its entries, e.g. {path}.{next(iter(base[key]))}=...")
            _check_keys(cfg[key], base[key], f"{path}.")


def load_config(overrides: list[str] | None = None) -> DictConfig:
    """The resolved config of ``experiment=<name>`` (default: the main job) plus overrides."""
    overrides = list(overrides or [])
    base = _load_yaml(_configs_dir() / "base.yaml")
    cli = _parse_overrides(overrides)
    name = str(cli.get("experiment") or DEFAULT_EXPERIMENT)
    exp, in_family = _experiment(name)
    for layer in (exp, cli):
        _check_keys(layer, base)
    new_layer = OmegaConf.select(cli, "model.layer")
    swapped = new_layer is not None and new_layer != OmegaConf.select(exp, "model.layer", default=base.model.layer)
    listed = OmegaConf.select(cli, "model.layers") is not None
    if (swapped or listed) and "model" in exp:
        # the experiment's layer options belong to its own layer (`model.layer=gru` reruns it with a baseline),
        # and a per-block list given here also sets the depth
        for key in ("layer_options", "layers") + (("n_layers",) if listed else ()):
            exp.model.pop(key, None)
    cfg = OmegaConf.merge(base, exp, cli)
    cfg.experiment = name
    check_config(cfg)
    if in_family:
        _adapt_to_data(cfg, cli, own_layer=not (swapped or listed))
    return cfg


def merge_overrides(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """``cfg`` (a resolved run config, e.g. a checkpoint's) with ``key=value`` overrides, checked as
    :func:`load_config` checks them."""
    cli = _parse_overrides(list(overrides))
    _check_keys(cli, _load_yaml(_configs_dir() / "base.yaml"))
    cfg = OmegaConf.merge(cfg, cli)
    check_config(cfg)
    return cfg


def check_config(cfg: DictConfig) -> None:
    """Check the values and names of a merged config (every unknown name is an error with suggestions)."""
    _check_values(cfg)
    from ..data import dataset_options  # noqa: PLC0415  (keeps `statespaces experiments` light)

    valid = dataset_options(str(cfg.data.name))
    for key in cfg.data:
        if key not in DATA_LOADER_KEYS and key not in valid:
            hint = suggest(f"data.{key}", [f"data.{v}" for v in (*valid, *DATA_LOADER_KEYS)], 1)
            raise UnknownNameError(
                f"dataset {cfg.data.name!r} has no option {key!r}{hint}; its options: {sorted(valid)}; "
                f"loader options: {list(DATA_LOADER_KEYS)}"
            )


_CHOICES = {
    "optimizer.name": ("adamw", "adam", "sgd", "rmsprop"),
    "scheduler.name": ("constant", "cosine", "cosine_warmup", "linear_warmup", "plateau"),
    "model.norm": ("layer", "batch", "rms", "none"),
    "model.pool": ("mean", "last", "none"),
}


def _check_values(cfg: DictConfig) -> None:
    for path, choices in _CHOICES.items():
        value = OmegaConf.select(cfg, path)
        if value not in choices:
            raise UnknownNameError(f"{path}={value!r} is not one of {list(choices)}{suggest(value, choices, 1)}")
    from ..layers.registry import LAYERS  # noqa: PLC0415

    m = cfg.model
    names = [("model.layer", m.layer)] + ([("model.attn_layer", m.attn_layer)] if m.attn_layer_idx else [])
    for i, entry in enumerate(m.layers or []):
        names.append((f"model.layers[{i}]", entry if isinstance(entry, str) else entry.get("name")))
    for path, name in names:
        try:
            LAYERS.lookup(str(name))
        except UnknownNameError as e:
            raise UnknownNameError(f"{path}: {e}") from None
    name = cfg.run.name
    if name is not None and (not isinstance(name, str) or not _RUN_NAME.fullmatch(name) or name in (".", "..")):
        raise ConfigError(f"run.name must be a plain folder name (letters, digits, '.', '_', '-'), not a path, got {name!r}; set run.root for the parent folder")
    if cfg.run.malloc not in MALLOC_CHOICES:
        raise ConfigError(f"run.malloc must be 'tuned' (keep freed heap memory, glibc) or 'default', got {cfg.run.malloc!r}")
    if cfg.run.checkpoint not in ("best", "last"):
        raise ConfigError(f"run.checkpoint must be 'best' (by trainer.monitor) or 'last' (the final weights), got {cfg.run.checkpoint!r}")
    for path in ("data.batch_size", "model.d_model", "model.n_layers"):
        value = OmegaConf.select(cfg, path)
        if not (value is None and path == "model.n_layers") and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{path} must be a positive integer, got {value!r}")


def save_config(cfg: DictConfig, path: Path) -> None:
    atomic_write_text(path, OmegaConf.to_yaml(cfg))

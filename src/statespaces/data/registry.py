"""Dataset registry: names -> builders, with the pip extra each one needs (see :mod:`statespaces.registry`)."""

from __future__ import annotations

import inspect

from ..registry import Entry, Registry, check_options
from .base import Builder, Splits

__all__ = ["DATASETS", "register", "get_dataset", "list_datasets", "dataset_options"]

DATASETS: Registry[Builder] = Registry("dataset")


def register(name: str, *, extra: str | None = None, description: str = "", members: tuple[str, ...] = ()):
    """Decorator: ``@register("smnist", extra="data", description="...")``.  A name ending in ``/`` is a
    family (``ucr/``) whose builder receives the member name first (``ucr/GunPoint``); ``members`` lists the
    known ones.  ``extra`` is the pip extra that provides the builder's packages (None: core only)."""
    return DATASETS.register(name, description, extra=extra, members=tuple(members))


def _builder_options(entry: Entry, member: str | None) -> dict[str, object]:
    params = list(inspect.signature(entry.obj).parameters.values())[0 if member is None else 1 :]
    return {p.name: p.default for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def dataset_options(name: str) -> dict[str, object]:
    """Keyword options of a dataset's builder with their defaults."""
    return _builder_options(*DATASETS.lookup(name))


def get_dataset(name: str, **options) -> Splits:
    """Build a dataset by name; unknown names and options raise UnknownNameError naming the valid ones."""
    entry, member = DATASETS.lookup(name)
    check_options(options, _builder_options(entry, member), f"dataset {name!r}")
    return entry.obj(*(() if member is None else (member,)), **options)


def list_datasets() -> list[Entry]:
    """The entries (``.name``, ``.description``, ``.meta['extra']``, ``.meta['members']``), sorted by name."""
    return DATASETS.entries()

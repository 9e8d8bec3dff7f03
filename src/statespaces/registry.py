"""One registry type for everything chosen by name (layers, kernels, datasets, experiments, model classes).

Every registry maps a name to an object (a class, a factory, a builder, a file) with a one-line description,
example options (what the conformance checks and the docs build it with) and free metadata.  A name ending
in a separator (``"ucr/"``, ``"ucr-"``) is a *family*: it matches any ``<prefix><member>`` and hands the
member over.  Unknown names and unknown options are one error type, :class:`UnknownNameError`, which
suggests the closest valid names; callers (the CLI) catch it by type.

This module imports nothing from the package: every tier may use it.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Callable, Generic, Iterable, Iterator, TypeVar

__all__ = ["Registry", "Entry", "UnknownNameError", "suggest", "unknown", "check_options", "signature_options"]

T = TypeVar("T")


class UnknownNameError(ValueError, TypeError):
    """An unknown name or keyword option.  It is a ValueError (a bad value was given) and a TypeError (as
    Python raises for an unexpected keyword argument), so either ``except`` clause catches it."""


def suggest(name: str, choices: Iterable[str], n: int = 2) -> str:
    """`` (did you mean 'x' or 'y'?)`` for the closest choices, or an empty string."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=n)
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""


def unknown(kind: str, name: object, choices: Iterable[object]) -> UnknownNameError:
    """The error for an unknown ``name`` of ``kind``: ``unknown disc 'euler' (did you mean ...?); expected one of [...]``."""
    choices = list(choices)
    return UnknownNameError(f"unknown {kind} {name!r}{suggest(str(name), map(str, choices))}; expected one of {choices}")


def check_options(options: Iterable[str], allowed: Iterable[str], where: str) -> None:
    """Raise :class:`UnknownNameError` for option names not in ``allowed``, suggesting the closest valid ones."""
    allowed = sorted(set(allowed))
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        hints = ", ".join(f"{u!r}{suggest(u, allowed)}" for u in unknown)
        raise UnknownNameError(f"{where} got unknown option(s) {hints}; valid options: {allowed}")


def signature_options(*callables: Callable) -> set[str]:
    """Keyword names accepted by callables (for classes: the ``__init__`` of every class in the MRO, so that
    options a subclass passes on through ``**kwargs`` count)."""
    names: set[str] = set()
    for fn in callables:
        targets = [k.__init__ for k in fn.__mro__ if "__init__" in vars(k)] if inspect.isclass(fn) else [fn]
        for target in targets:
            for n, p in inspect.signature(target).parameters.items():
                if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                    names.add(n)
    return names


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered name."""

    name: str
    obj: T
    description: str = ""
    example: dict = field(default_factory=dict)  # options that build a small working instance
    meta: dict = field(default_factory=dict)

    @property
    def family(self) -> bool:
        return self.name.endswith(("/", "-"))


class Registry(Generic[T]):
    """``name -> Entry``; ``kind`` names the things in messages ("layer", "dataset", ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, obj: T, description: str = "", *, example: dict | None = None, aliases: Iterable[str] = (), **meta) -> T:
        """Register ``obj`` under ``name`` (and ``aliases``); registering a name twice is an error."""
        for n in (name, *aliases):
            if n in self._entries or n in self._aliases:
                raise ValueError(f"{self.kind} {n!r} is registered twice")
        if not description:
            doc = (getattr(obj, "__doc__", None) or "").strip()
            description = doc.splitlines()[0] if doc else ""
        self._entries[name] = Entry(name, obj, description, dict(example or {}), meta)
        self._aliases.update({a: name for a in aliases})
        return obj

    def register(self, name: str, description: str = "", **kw) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def deco(obj: T) -> T:
            return self.add(name, obj, description, **kw)

        return deco

    def remove(self, name: str) -> None:
        self._entries.pop(name)
        self._aliases = {a: n for a, n in self._aliases.items() if n != name}

    def lookup(self, name: str) -> tuple[Entry[T], str | None]:
        """The entry for ``name`` and, for a family, the member name (else None)."""
        name = str(name)
        name = self._aliases.get(name, name)
        if name in self._entries and not self._entries[name].family:
            return self._entries[name], None
        for prefix in sorted((n for n, e in self._entries.items() if e.family), key=len, reverse=True):
            if name.startswith(prefix) and len(name) > len(prefix):
                return self._entries[prefix], name[len(prefix) :]
        choices = self.names(with_aliases=True)
        raise UnknownNameError(f"unknown {self.kind} {name!r}{suggest(name, choices, 3)}; available: {', '.join(self.names())}")

    def get(self, name: str) -> T:
        entry, member = self.lookup(name)
        if member is not None:
            raise UnknownNameError(f"{self.kind} family {entry.name!r} needs a member: call lookup()")
        return entry.obj

    def canonical(self, name: str) -> str:
        """The registered name behind an alias (the name itself otherwise)."""
        return self._aliases.get(name, name)

    def names(self, with_aliases: bool = False) -> list[str]:
        """Sorted names; families are listed as ``<prefix><Name>``."""
        out = [n + "<Name>" if e.family else n for n, e in self._entries.items()]
        if with_aliases:
            out += list(self._aliases)
        return sorted(out)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in sorted(self._entries)]

    def aliases(self, name: str) -> list[str]:
        return sorted(a for a, n in self._aliases.items() if n == name)

    def __contains__(self, name: object) -> bool:
        try:
            self.lookup(str(name))
        except UnknownNameError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"

"""Writing files so that an interruption never leaves a half-written one: write beside the target, flush,
fsync, then ``os.replace`` (atomic on one filesystem, which a temporary file in ``$TMPDIR`` may not be on).

Imports nothing from the package: every tier may use it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import IO, Callable

__all__ = ["atomic_write", "atomic_write_text", "sha256_file"]


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, make it durable, then move it over ``path``.
    On any error the target keeps its previous content and the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory handles
        return path
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

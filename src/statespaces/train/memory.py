"""Keep freed heap memory in the training process (glibc), instead of returning it to the system each step.

glibc's ``malloc`` serves every allocation above its mmap threshold (128 KiB, raised on the fly to at most
32 MiB) with a fresh ``mmap`` and returns the heap's free top to the system beyond its trim threshold.  A
training step allocates and frees the same (B, H, L) activations every time, so each step faults their pages in
again (the kernel zero-fills every 4 KiB page).  Measured on the 2-core machine (1 thread, S4 ``FFTConv``,
B=8, H=128, L=1024): the forward without gradients 31 -> 17 ms (S4) and 29 -> 11 ms (S4D) with the settings
below; the 4-block sequential-MNIST model's training step 548-565 -> 512-514 ms (one thread; the main job on
two threads, 2 epochs, showed no measurable change: 52.1 / 57.1 s against 51.7 / 57.4 s).  The price: the
process keeps its peak heap resident until it exits, which a training run reaches in its first step anyway.

``run.malloc: tuned`` (the default) applies it in ``statespaces train``, ``compare`` and ``eval``; ``default``
leaves glibc alone.  Elsewhere (macOS, musl, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["MALLOC_CHOICES", "keep_freed_memory"]

MALLOC_CHOICES = ("tuned", "default")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
_MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed value on 64-bit systems
_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: 2 GiB of free heap top kept


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True if glibc took both settings."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))

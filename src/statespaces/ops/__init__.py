"""Pure tensor math. Every fast function has a slow ``_ref`` twin with the same signature.

``ops.scan`` and ``ops.selective_scan`` are the functions (their modules stay importable by path:
``from statespaces.ops.scan import scan``).
"""

from . import cauchy, discretize, fftconv, hippo, sequence, vandermonde
from .scan import scan, scan_ref
from .selective_scan import selective_scan, selective_scan_ref

__all__ = [
    "cauchy",
    "discretize",
    "fftconv",
    "hippo",
    "sequence",
    "vandermonde",
    "scan",
    "scan_ref",
    "selective_scan",
    "selective_scan_ref",
]

"""Pure tensor math. Every fast function has a slow ``_ref`` twin with the same signature."""

from . import cauchy, discretize, fftconv, hippo, scan, selective_scan, sequence, vandermonde

__all__ = ["cauchy", "discretize", "fftconv", "hippo", "scan", "selective_scan", "sequence", "vandermonde"]

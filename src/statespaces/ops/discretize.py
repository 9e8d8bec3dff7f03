"""Discretisation of diagonal SSMs and the positivity transforms of their parameters.

For ``x' = A x + B u`` with diagonal ``A`` and step ``dt``:

* ``zoh``       dA = exp(dt A),                    dB = (exp(dt A) - 1) / A * B
* ``bilinear``  dA = (1 + dt A / 2) / (1 - dt A / 2), dB = dt B / (1 - dt A / 2)
* ``dss``       zoh, with the output normalised over the kernel length ``L`` (DSS "softmax" form,
  Gupta et al. 2022, eq. 6): ``K_l = sum_n C_n dB_n exp(dt A_n l) / (exp(dt A_n L) - 1)``.

The recurrence is returned as ``(log dA, dB)``: kernels use ``dA^l = exp(l log dA)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import unknown

__all__ = ["TRANSFORMS", "DISCS", "param_transform", "inv_transform", "discretize_diag", "dss_scale"]

TRANSFORMS = ("none", "exp", "relu", "sigmoid", "softplus")
DISCS = ("zoh", "bilinear", "dss")


def _check(kind: str, arg: str) -> None:
    if kind not in TRANSFORMS:
        raise unknown(arg, kind, TRANSFORMS)


def param_transform(x: torch.Tensor, kind: str, arg: str = "transform") -> torch.Tensor:
    """Map an unconstrained parameter to a (positive) value."""
    _check(kind, arg)
    if kind == "none":
        return x
    if kind == "exp":
        return torch.exp(x)
    if kind == "relu":
        return F.relu(x) + 1e-4
    if kind == "sigmoid":
        return torch.sigmoid(x)
    return F.softplus(x)


def inv_transform(y: torch.Tensor, kind: str, arg: str = "transform") -> torch.Tensor:
    """Inverse of :func:`param_transform` (used at initialisation)."""
    _check(kind, arg)
    if kind == "none":
        return y
    if (y <= 0).any():
        raise ValueError(f"{arg}={kind!r} cannot represent values <= 0 (min {y.min().item():.3g})")
    if kind == "exp":
        return torch.log(y)
    if kind == "relu":
        return y
    if kind == "sigmoid":
        if (y >= 1).any():
            raise ValueError(f"{arg}='sigmoid' cannot represent values >= 1 (max {y.max().item():.3g})")
        return torch.logit(y)
    return y + torch.log(-torch.expm1(-y))  # softplus^-1


def discretize_diag(dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, disc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Discretise a diagonal SSM.

    Args:
        dt: step sizes broadcastable to A (e.g. (H, 1) or (H, N)), real.
        A: (H, N) diagonal state matrix (complex, or real for real SSMs).
        B: (H, N) input vector.
        disc: 'zoh', 'bilinear' or 'dss'.
    Returns:
        ``log_dA (H, N)`` and ``dB (H, N)``.
    """
    dtA = dt * A
    if disc in ("zoh", "dss"):
        return dtA, torch.expm1(dtA) / A * B
    if disc == "bilinear":
        den = 1 - dtA / 2
        return torch.log((1 + dtA / 2) / den), dt * B / den
    raise unknown("disc", disc, DISCS)


def dss_scale(log_dA: torch.Tensor, L: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mode normalisation of the DSS kernel over length ``L``, split for numerical stability.

    Returns ``(decay, grow)`` coefficients: modes with ``Re log_dA <= 0`` contribute
    ``decay_n * dA_n^l``; modes with ``Re log_dA > 0`` (allowed in DSS) contribute
    ``grow_n * dA_n^(l - L + 1)``, i.e. ``grow_n * (1/dA_n)^(L - 1 - l)``, which never overflows.
    """
    growing = log_dA.real > 0
    safe = torch.where(growing, -log_dA, log_dA)
    # decaying: 1 / (exp(L x) - 1);  growing: exp(-x) / (1 - exp(-L x)) applied to the reversed power
    decay = torch.where(growing, torch.zeros_like(safe), 1 / torch.expm1(L * safe))
    grow = torch.where(growing, torch.exp(safe) / -torch.expm1(L * safe), torch.zeros_like(safe))
    return decay, grow

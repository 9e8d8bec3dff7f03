"""Small building blocks shared by the sequence layers: activations, sequence dropout, linear factory."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import unknown

__all__ = ["ACTIVATIONS", "activation", "SequenceDropout", "linear", "INITIALIZERS"]

ACTIVATIONS = ("id", "identity", "linear", "gelu", "relu", "silu", "swish", "tanh", "sigmoid", "elu", "softplus", "glu")


def activation(name: str | None, dim: int = -1) -> nn.Module:
    """Activation by name; None / 'id' is the identity. 'glu' halves ``dim``."""
    if name in (None, "id", "identity", "linear"):
        return nn.Identity()
    table = {
        "gelu": nn.GELU,
        "relu": nn.ReLU,
        "silu": nn.SiLU,
        "swish": nn.SiLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "elu": nn.ELU,
        "softplus": nn.Softplus,
    }
    if name == "glu":
        return nn.GLU(dim=dim)
    if name not in table:
        raise unknown("activation", name, (None, *ACTIVATIONS))
    return table[name]()


class SequenceDropout(nn.Module):
    """Dropout over (B, D, L) or (B, L, D) sequences; ``tie=True`` shares one mask along the length axis."""

    def __init__(self, p: float = 0.0, tie: bool = False, length_last: bool = True):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {p}")
        self.p, self.tie, self.length_last = p, tie, length_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if not self.tie or x.dim() < 3:  # a single step has no length axis to tie over
            return F.dropout(x, self.p, True)
        if self.length_last:
            return F.dropout1d(x, self.p, True)
        return F.dropout1d(x.transpose(-1, -2), self.p, True).transpose(-1, -2)

    def extra_repr(self) -> str:
        return f"p={self.p}, tie={self.tie}"


INITIALIZERS = (None, "uniform", "normal", "xavier", "zero", "one")


def linear(d_in: int, d_out: int, *, initializer: str | None = None, weight_norm: bool = False, bias: bool = True) -> nn.Module:
    """``nn.Linear`` with a named weight initialiser and optional weight normalisation."""
    lin = nn.Linear(d_in, d_out, bias=bias)
    with torch.no_grad():
        if initializer is None:
            pass
        elif initializer == "uniform":
            nn.init.kaiming_uniform_(lin.weight, nonlinearity="linear")
        elif initializer == "normal":
            nn.init.kaiming_normal_(lin.weight, nonlinearity="linear")
        elif initializer == "xavier":
            nn.init.xavier_normal_(lin.weight)
        elif initializer == "zero":
            nn.init.zeros_(lin.weight)
        elif initializer == "one":
            nn.init.ones_(lin.weight)
        else:
            raise unknown("initializer", initializer, INITIALIZERS)
        if bias and initializer is not None:
            nn.init.zeros_(lin.bias)
    if weight_norm:
        lin = nn.utils.parametrizations.weight_norm(lin)
    return lin

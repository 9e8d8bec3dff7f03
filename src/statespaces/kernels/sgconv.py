"""SGConv's structured global convolution kernel (Li, Cai, Zhang, Chen, Dey; ICLR 2023, "What Makes
Convolutional Models Great on Long Sequence Modeling?"; official code ctlllll/SGConv ``gconv_standalone.py``).

The kernel is built from S pieces of ``kernel_dim`` parameters each, stretched to doubling lengths by
interpolation and weighted so that nearer parts weigh more (the paper's two principles: sub-linear parameters,
decaying weights):

    mode 'cat':  k = [w_0 | w_1 | up2(w_2) | up4(w_3) | ...] with piece i scaled by multiplier^(S-1-i)
    mode 'sum':  k = sum_i pad(up_{2^i}(w_i)) multiplier^(S-1-i)

(with ``init_scale`` > 0 every stretch is 2^init_scale times longer), ``up_f`` being ``F.interpolate`` with
``scale_factor=f`` ('linear', align_corners=False, or 'nearest'), ``multiplier = linspace(decay_min, decay_max,
H)`` per feature (default 2: each piece weighs half the one before), and
``S = n_scales or 1 + ceil(log2(l_max / kernel_dim)) - init_scale``.  With ``learnable_decay`` the multiplier is
1 and the kernel is multiplied by ``(t + 1)^(-decay)`` with a learned ``decay`` per feature.

Normalisation.  The official code divides the kernel by its per-(channel, feature) norm, taken at the first
forward and stored in a buffer: a model therefore depends on when it was first called (a model loaded into a
fresh instance that ran a batch first keeps that batch's norm).  Here the norm is taken once, at construction,
from the initial kernel, and stored as a buffer that travels with the weights.  This is the value the official
code computes in training (its first forward comes before any update), without the dependence on a first batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..registry import unknown
from .base import Kernel

__all__ = ["SGConvKernel"]

MODES = ("cat", "sum")
INTERPOLATIONS = ("linear", "nearest")
INITS = ("randn", "cos")


def _parse_official_mode(mode: str) -> dict:
    """The official spelling ('cat_randn', 'sum_learnable_randn', 'cat_nearest_cos', ...) -> options."""
    tokens = set(mode.split("_"))
    combine = [t for t in tokens if t in MODES]
    if len(combine) != 1 or not tokens <= {*MODES, *INITS, "learnable", "nearest", "linear"}:
        raise unknown("SGConv mode", mode, ("cat", "sum", "cat_randn", "sum_randn", "cat_learnable_randn"))
    return {
        "mode": combine[0],
        "init": "cos" if "cos" in tokens else "randn",
        "learnable_decay": "learnable" in tokens,
        "interpolate": "nearest" if "nearest" in tokens else "linear",
    }


class SGConvKernel(Kernel):
    """SGConv kernel (C, H, L).

    Args (beyond :class:`Kernel`; ``l_max`` is required):
        kernel_dim: parameters per piece (official default 64; the official README example uses 32).
        n_scales: number of pieces S (None: just enough for l_max, see the module docstring).
        init_scale: stretch every piece by 2^init_scale more (and use that many fewer pieces).
        combine: how the pieces combine, 'cat' (official default) or 'sum' (the official option ``mode``, renamed
            because ``mode`` names the kernel in FFTConv; :class:`~statespaces.SGConv` takes ``mode``); the
            official spellings ('cat_randn', 'sum_learnable_randn', ...) are accepted too.
        interpolate: 'linear' (official default) or 'nearest'.
        init: 'randn' (official default: N(0, 1) pieces) or 'cos' (cosines of increasing frequency per feature).
        decay_min, decay_max: the per-feature multiplier range (default 2, 2); with ``learnable_decay`` the
            range of the initial decay exponents.
        learnable_decay: the ``(t + 1)^(-decay)`` envelope with learned ``decay`` instead of the multiplier.
        lr, wd: keys ``kernel`` (the pieces; official lr 0.001) and ``decay``.
    """

    optim_keys = {"kernel": None, "decay": None}
    optim_ties = {"decay": "kernel"}

    def __init__(
        self,
        d_model: int,
        channels: int = 1,
        l_max: int | None = None,
        *,
        kernel_dim: int = 64,
        n_scales: int | None = None,
        init_scale: int = 0,
        combine: str = "cat",
        interpolate: str = "linear",
        init: str = "randn",
        decay_min: float = 2.0,
        decay_max: float = 2.0,
        learnable_decay: bool = False,
        lr=0.001,
        wd=None,
    ):
        super().__init__(d_model, channels, l_max, lr, wd)
        if l_max is None:
            raise ValueError("kernel='sgconv' needs l_max (it sets the number of scales)")
        mode = combine
        if mode not in MODES:
            parsed = _parse_official_mode(mode)
            mode, init, interpolate = parsed["mode"], parsed["init"], parsed["interpolate"]
            learnable_decay = learnable_decay or parsed["learnable_decay"]
        if interpolate not in INTERPOLATIONS:
            raise unknown("interpolate", interpolate, INTERPOLATIONS)
        if init not in INITS:
            raise unknown("init", init, INITS)
        for arg, v, low in (("kernel_dim", kernel_dim, 1), ("init_scale", init_scale, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{arg} must be an int >= {low}, got {v!r}")
        if n_scales is None:
            n_scales = 1 + max(0, math.ceil(math.log2(l_max / kernel_dim))) - init_scale
        if isinstance(n_scales, bool) or not isinstance(n_scales, int) or n_scales < 1:
            raise ValueError(
                f"n_scales must be a positive int, got {n_scales!r} (l_max={l_max}, kernel_dim={kernel_dim}, init_scale={init_scale}: "
                f"lower init_scale or set n_scales)"
            )
        if not 0 < decay_min <= decay_max:
            raise ValueError(f"need 0 < decay_min <= decay_max, got decay_min={decay_min}, decay_max={decay_max}")
        self.kernel_dim, self.n_scales, self.init_scale = kernel_dim, n_scales, init_scale
        self.mode, self.interpolate, self.learnable_decay = mode, interpolate, learnable_decay
        for i in range(n_scales):
            if init == "randn":
                piece = torch.randn(channels, d_model, kernel_dim)
            else:  # feature h oscillates h times over the piece, features in random order
                t = torch.linspace(0, 2 * math.pi, kernel_dim)
                piece = torch.cos(torch.arange(d_model)[:, None] * t)[torch.randperm(d_model)].expand(channels, -1, -1).clone()
            self.register_key("kernel", f"piece_{i}", piece)
        if learnable_decay:
            self.register_key("decay", "decay", torch.rand(d_model) * (decay_max - decay_min) + decay_min)
            self.register_buffer("multiplier", torch.ones(1, d_model, 1))
        else:
            self.register_buffer("multiplier", torch.linspace(decay_min, decay_max, d_model).view(1, -1, 1))
        with torch.no_grad():
            norm = self._unnormalised().norm(dim=-1, keepdim=True)
        self.register_buffer("kernel_norm", norm)

    @property
    def length(self) -> int:
        """The kernel's natural length, kernel_dim * 2^(S - 1 + init_scale)."""
        return self.kernel_dim * 2 ** (self.n_scales - 1 + self.init_scale)

    def _unnormalised(self) -> torch.Tensor:
        S, pieces = self.n_scales, [getattr(self, f"piece_{i}") for i in range(self.n_scales)]
        parts = []
        for i, w in enumerate(pieces):
            factor = 2 ** ((i if self.mode == "sum" else max(0, i - 1)) + self.init_scale)
            k = F.interpolate(w, scale_factor=factor, mode=self.interpolate) if factor > 1 else w
            k = k * self.multiplier ** (S - 1 - i)
            parts.append(F.pad(k, (0, self.length - k.shape[-1])) if self.mode == "sum" else k)
        k = torch.cat(parts, dim=-1) if self.mode == "cat" else sum(parts)
        if self.learnable_decay:
            t = torch.arange(k.shape[-1], device=k.device, dtype=k.dtype)
            k = k * torch.exp(-self.decay.view(1, -1, 1) * torch.log1p(t))
        return k

    def forward(self, L: int, rate: float = 1.0, state=None):
        if state is not None:
            raise ValueError("SGConvKernel has no state; FFTConv keeps the input history instead")
        k = self._unnormalised() / self.kernel_norm
        k = k[..., :L]
        return (F.pad(k, (0, L - k.shape[-1])) if k.shape[-1] < L else k), None

    def extra_repr(self) -> str:
        return f"H={self.H}, channels={self.channels}, l_max={self.l_max}, kernel_dim={self.kernel_dim}, n_scales={self.n_scales}, mode={self.mode!r}"

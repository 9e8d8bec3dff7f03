"""Explicit long convolution kernel: the kernel's taps are the parameters.

"Simple Hardware-Efficient Long Convolutions for Sequence Modeling" (Fu, Epstein, Nguyen, Thomas, Zhang, Dao,
Rudra, Re; ICML 2023) show that a plain (C, H, L) kernel learns as well as an SSM kernel on long-range tasks
once it is regularised by *squash* (soft-thresholding the taps, ``k <- sign(k) max(|k| - lam, 0)``) and
*smooth* (average pooling the taps along the length).  It is the simplest kernel without a recurrence: in
:class:`~statespaces.FFTConv` its recurrent mode keeps the last ``l_max - 1`` inputs (an exact FIR step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Kernel

__all__ = ["LongConvKernel"]


class LongConvKernel(Kernel):
    """Explicit kernel of ``l_max`` taps per (channel, feature).

    Args (beyond :class:`Kernel`; ``l_max`` is required):
        init_scale: taps are drawn from N(0, init_scale^2 / l_max), decaying as ``exp(-t / (init_decay l_max))``
            so that the initial filter favours recent inputs.
        init_decay: see init_scale (None: no decay).
        squash: soft-threshold ``lam`` applied to the taps in every forward (0 disables it).
        smooth: width of the average pooling applied to the taps (1 disables it; odd, so it stays centred).
        lr, wd: key ``kernel`` (default weight decay: the optimiser's global value).
    """

    optim_keys = {"kernel": None}

    def __init__(
        self,
        d_model: int,
        channels: int = 1,
        l_max: int | None = None,
        *,
        init_scale: float = 1.0,
        init_decay: float | None = 0.25,
        squash: float = 0.0,
        smooth: int = 1,
        lr=None,
        wd=None,
    ):
        super().__init__(d_model, channels, l_max, lr, wd)
        if l_max is None:
            raise ValueError("kernel='longconv' needs l_max (the number of taps it learns)")
        if squash < 0:
            raise ValueError(f"squash must be >= 0, got {squash}")
        if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 1 or smooth % 2 == 0:
            raise ValueError(f"smooth must be a positive odd int, got {smooth!r}")
        self.squash, self.smooth = squash, smooth
        k = torch.randn(channels, d_model, l_max) * (init_scale / l_max**0.5)
        if init_decay is not None:
            k = k * torch.exp(-torch.arange(l_max) / (init_decay * l_max))
        self.register_key("kernel", "weight", k)

    def forward(self, L: int, rate: float = 1.0, state=None):
        if state is not None:
            raise ValueError("LongConvKernel has no state; FFTConv keeps the input history instead")
        k = self.weight  # the regularisers act on all l_max taps, so that a shorter kernel is a crop of the full one
        if self.smooth > 1:
            k = F.avg_pool1d(k.reshape(-1, 1, k.shape[-1]), self.smooth, stride=1, padding=self.smooth // 2, count_include_pad=False).view_as(k)
        if self.squash > 0:
            k = torch.sign(k) * F.relu(k.abs() - self.squash)
        k = k[..., :L]
        if k.shape[-1] < L:
            k = F.pad(k, (0, L - k.shape[-1]))
        return k, None

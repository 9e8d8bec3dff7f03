"""Mega's damped multi-dimensional EMA as a convolution kernel (Ma, Zhou, Kong, He, Gui, Neubig, May, Zettlemoyer;
ICLR 2023, "Mega: Moving Average Equipped Gated Attention"; official code facebookresearch/mega
``fairseq/modules/exponential_moving_average.py``).

Per channel c, feature h and EMA dimension n (N = ``ndim``):

    p = sigmoid(delta),  a = sigmoid(alpha),  q = 1 - p a                      (all in (0, 1))
    h_t = (p beta) x_t + q h_(t-1),   y_t = scale sum_n gamma_n h_(t, n)        (scale = sqrt(1 / N))
    k_l = scale sum_n gamma_n (p beta)_n q_n^l

so the kernel is a real diagonal SSM with state (B, C, H, N) and :class:`~statespaces.FFTConv` gives it conv mode,
state forwarding, ``lengths`` and the O(N) step; ``omega`` is FFTConv's D.  Initialisation as the official code:
delta, alpha ~ N(0, 0.2); beta ~ N(0, 0.02) + (1, -1, 1, -1, ...); gamma ~ N(0, 1).  Mega's EMA is a discrete-time
recurrence with no step size, so there is no ``rate``; its ``truncation`` (a kernel cut short, which no finite state
reproduces) is not offered.
"""

from __future__ import annotations

import math

import torch

from ..ops.sequence import right_align
from .base import Kernel

__all__ = ["EMAKernel"]


class EMAKernel(Kernel):
    """Mega's EMA kernel (C, H, L) with its recurrence.

    Args (beyond :class:`Kernel`):
        ndim: N, the EMA dimensions per feature (official default 2; the LRA configs use 16).
        lr, wd: keys ``delta``, ``alpha``, ``beta``, ``gamma`` (``lr={'delta': 0.0}`` freezes delta).
    """

    optim_keys = {"delta": None, "alpha": None, "beta": None, "gamma": None}
    recurrent = True

    def __init__(self, d_model: int, ndim: int = 2, channels: int = 1, l_max: int | None = None, lr=None, wd=None):
        super().__init__(d_model, channels, l_max, lr, wd)
        if isinstance(ndim, bool) or not isinstance(ndim, int) or ndim < 1:
            raise ValueError(f"ndim must be a positive int, got {ndim!r}")
        self.N = ndim
        self.scale = math.sqrt(1.0 / ndim)
        shape = (channels, d_model, ndim)
        signs = torch.ones(ndim)
        signs[1::2] = -1
        self.register_key("delta", "delta", torch.randn(shape) * 0.2)
        self.register_key("alpha", "alpha", torch.randn(shape) * 0.2)
        self.register_key("beta", "beta", torch.randn(shape) * 0.02 + signs)
        self.register_key("gamma", "gamma", torch.randn(shape))
        self._step_mode: str | None = None

    def coefficients(self, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``log q``, the input weight ``p beta`` and the output weight ``scale gamma``, each (C, H, N)."""
        cast = (lambda t: t) if dtype is None else (lambda t: t.to(dtype))
        p = torch.sigmoid(cast(self.delta))
        q = 1 - p * torch.sigmoid(cast(self.alpha))
        return torch.log(q), p * cast(self.beta), self.scale * cast(self.gamma)

    def _powers(self, log_q: torch.Tensor, L: int, offset: int = 0) -> torch.Tensor:
        return torch.exp(log_q[..., None] * (torch.arange(L, device=log_q.device, dtype=log_q.dtype) + offset))  # (C H N L)

    def forward(self, L: int, rate: float = 1.0, state: torch.Tensor | None = None):
        log_q, w_in, w_out = self.coefficients(torch.float64 if self.delta.device.type != "mps" else None)
        out_dtype = self.delta.dtype
        k = torch.einsum("chn,chnl->chl", w_in * w_out, self._powers(log_q, L)).to(out_dtype)
        k_state = None
        if state is not None:  # output l gains scale gamma q^(l+1) h
            k_state = torch.einsum("chn,bchn,chnl->bchl", w_out, state.to(log_q.dtype), self._powers(log_q, L, 1)).to(out_dtype)
        return k, k_state

    def forward_state(self, u: torch.Tensor, state: torch.Tensor, rate: float = 1.0, lengths: torch.Tensor | None = None):
        log_q, w_in, _ = self.coefficients(torch.float64 if self.delta.device.type != "mps" else None)
        L = u.shape[-1]
        if lengths is not None:
            u = right_align(u, lengths)
            carried = torch.exp(lengths[:, None, None, None].to(log_q.dtype) * log_q) * state.to(log_q.dtype)
        else:
            carried = torch.exp(L * log_q) * state.to(log_q.dtype)
        drive = torch.einsum("chnl,bhl->bchn", self._powers(log_q, L), u.flip(-1).to(log_q.dtype))
        return (carried + w_in * drive).to(state.dtype)

    def setup_step(self, realization: str | None = None, rate: float = 1.0) -> None:
        if realization not in (None, "diagonal"):
            raise ValueError(f"the EMA recurrence has one realization (None / 'diagonal'), got {realization!r}")
        with torch.no_grad():
            log_q, w_in, w_out = self.coefficients()
            self._step = {"q": log_q.exp(), "w_in": w_in, "w_out": w_out}
        self._step_mode = "diagonal"

    def step(self, u: torch.Tensor, state: torch.Tensor):
        if self._step_mode is None:
            raise RuntimeError("call setup_step() before step(); it prepares the recurrent form from the current parameters")
        s = self._step
        state = s["q"] * state + s["w_in"] * u[:, None, :, None]  # (B C H N)
        return torch.einsum("chn,bchn->bch", s["w_out"], state), state

    def default_state(self, *batch_shape: int, device=None, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.zeros(*batch_shape, self.channels, self.H, self.N, dtype=dtype or self.delta.dtype, device=device or self.delta.device)

    def extra_repr(self) -> str:
        return f"H={self.H}, ndim={self.N}, channels={self.channels}"

"""H3's shift SSM as a kernel: a learned causal FIR of ``d_state`` taps.

The shift SSM of H3 (Fu, Dao et al., "Hungry Hungry Hippos", ICLR 2023; ``SSKernelShift`` of HazyResearch/H3) has
A = the down-shift matrix and B = e_1, so its state is the last N inputs, ``x_t = [u_t, u_(t-1), ..., u_(t-N+1)]``,
and ``y_t = C x_t``: the kernel is ``k_l = C_l`` for ``l < N`` and 0 beyond.  The official code computes it as
``irfft(conj(rfft(B)) * rfft(C))[:N]``, which for B = e_1 is C itself; here it is C directly.  Its recurrent form
is that of any FIR: :class:`~statespaces.FFTConv` keeps the last ``N - 1`` inputs as the state (``l_max = N``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Kernel

__all__ = ["ShiftKernel"]


class ShiftKernel(Kernel):
    """The shift-SSM kernel of H3: ``d_state`` learned taps per (channel, feature).

    Args (beyond :class:`Kernel`):
        d_state: N, the number of taps (the state holds the last N inputs).
        l_max: must be None or equal to ``d_state`` (the kernel is N taps long whatever the input length).
        lr, wd: key ``C`` (default weight decay: the optimiser's global value).

    C is initialised as the official code does, ``kaiming_uniform_(a=sqrt(5))`` of the (C, H, N) tensor,
    i.e. uniform in +-1/sqrt(H N).
    """

    optim_keys = {"C": None}

    def __init__(self, d_model: int, d_state: int = 64, channels: int = 1, l_max: int | None = None, lr=None, wd=None):
        if isinstance(d_state, bool) or not isinstance(d_state, int) or d_state < 1:
            raise ValueError(f"d_state must be a positive int, got {d_state!r}")
        if l_max is not None and l_max != d_state:
            raise ValueError(f"the shift kernel has d_state={d_state} taps; l_max must be None or {d_state}, got {l_max!r}")
        super().__init__(d_model, channels, d_state, lr, wd)
        self.N = d_state
        bound = 1.0 / math.sqrt(d_model * d_state)
        self.register_key("C", "C", torch.empty(channels, d_model, d_state).uniform_(-bound, bound))

    def forward(self, L: int, rate: float = 1.0, state=None):
        if state is not None:
            raise ValueError("ShiftKernel has no state of its own; FFTConv keeps the input history instead")
        k = self.C[..., :L]
        return (F.pad(k, (0, L - k.shape[-1])) if k.shape[-1] < L else k), None

    def extra_repr(self) -> str:
        return f"H={self.H}, N={self.N}, channels={self.channels}"

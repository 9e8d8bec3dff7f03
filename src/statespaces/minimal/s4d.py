"""Minimal S4D, the version to learn from.

S4D (Gu, Gupta, Goel, Re 2022) is a diagonal SSM  x' = A x + B u,  y = C x + D u  with
A = diag(-1/2 + i pi n) (S4D-Lin), B = 1, discretised by zero-order hold with a learned step dt:

    dA = exp(dt A),   dB = (exp(dt A) - 1) / A,   K_l = 2 Re sum_n C_n dB_n dA_n^l        (S4D paper, eq. 5)

The layer convolves its input with K (by FFT), adds D u, applies GELU and a position-wise GLU.
It equals ``statespaces.S4Block(d, mode='diag', init='diag-lin', disc='zoh', real_transform='exp')``.

The only thing it takes from the library is :class:`~statespaces.layers.base.SequenceLayer`, which does the
bookkeeping every layer shares (layout, input checks, padding, state checks); everything below is the math.
"""

import math

import torch
from torch import nn

from ..layers.base import SequenceLayer


class S4DKernel(nn.Module):
    """Generates the convolution kernel of H independent diagonal SSMs with N/2 conjugate-pair modes."""

    def __init__(self, d_model, N=64, dt_min=0.001, dt_max=0.1, lr=None):
        super().__init__()
        H = d_model
        log_dt = torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.C = nn.Parameter(torch.view_as_real(torch.randn(H, N // 2, dtype=torch.cfloat)))
        self.register("log_dt", log_dt, lr)
        self.register("log_A_real", torch.log(0.5 * torch.ones(H, N // 2)), lr)
        self.register("A_imag", math.pi * torch.arange(N // 2).repeat(H, 1).float(), lr)

    def discrete(self, rate=1.0):
        """log dA = dt A, dB and C, each (H N/2); ``rate`` multiplies dt."""
        dt = rate * torch.exp(self.log_dt)[:, None]  # (H 1)
        A = -torch.exp(self.log_A_real) + 1j * self.A_imag  # (H N/2)
        return dt * A, torch.expm1(dt * A) / A, torch.view_as_complex(self.C)

    def powers(self, L, rate=1.0):
        dtA, _, _ = self.discrete(rate)
        return torch.exp(dtA[:, :, None] * torch.arange(L, device=dtA.device))  # dA^l: (H N/2 L)

    def forward(self, L, rate=1.0):
        _, dB, C = self.discrete(rate)
        return 2 * torch.einsum("hn,hnl->hl", C * dB, self.powers(L, rate)).real  # (H L)

    def register(self, name, tensor, lr=None):
        """Frozen if lr == 0; otherwise a parameter carrying its own optimiser settings."""
        if lr == 0.0:
            self.register_buffer(name, tensor)
        else:
            self.register_parameter(name, nn.Parameter(tensor))
            optim = {"weight_decay": 0.0}
            if lr is not None:
                optim["lr"] = lr
            getattr(self, name)._optim = optim


class S4D(SequenceLayer):
    length_last = True  # the FFT wants (B, H, L)
    supports_rate = True

    def __init__(self, d_model, d_state=64, dropout=0.0, transposed=False, **kernel_args):
        super().__init__(d_model, transposed=transposed)
        self.d_state = d_state
        self.D = nn.Parameter(torch.randn(d_model))
        self.kernel = S4DKernel(d_model, N=d_state, **kernel_args)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout1d(dropout) if dropout > 0 else nn.Identity()  # one mask per sequence
        self.output_linear = nn.Sequential(nn.Conv1d(d_model, 2 * d_model, kernel_size=1), nn.GLU(dim=-2))
        self.step_rate = 1.0

    def _forward(self, u, state, rate, lengths):
        """u (B, H, L), padding already zero -> (y (B, H, L), final state or None)."""
        L = u.size(-1)
        k = self.kernel(L=L, rate=rate)  # (H L)
        # causal convolution through the FFT (zero-padded to 2L, so no wrap-around)
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * L) * torch.fft.rfft(k, n=2 * L), n=2 * L)[..., :L]
        next_state = None
        if state is not None:  # state x_(-1) adds 2 Re C dA^(l+1) x to y_l; x_end = dA^n x + sum_l dA^(n-1-l) dB u_l
            dtA, dB, C = self.kernel.discrete(rate)
            powers, dA = self.kernel.powers(L, rate), torch.exp(dtA)
            y = y + 2 * torch.einsum("hn,bhn,hnl->bhl", C * dA, state, powers).real
            n = torch.full((u.shape[0],), L, device=u.device) if lengths is None else lengths  # steps taken
            src = torch.arange(L, device=u.device) - (L - n)[:, None]  # (B L): right-align each sequence's n steps
            u_end = torch.where(src[:, None] >= 0, u.gather(-1, src.clamp(min=0)[:, None].expand_as(u)), 0.0)
            drive = torch.einsum("bhl,hnl->bhn", u_end.to(powers.dtype), powers.flip(-1))
            next_state = torch.exp(dtA * n[:, None, None]) * state + dB * drive
        y = y + u * self.D[:, None]
        y = self.dropout(self.activation(y))
        return self.output_linear(y), next_state

    def default_state(self, *batch_shape, device=None, dtype=None):
        dtype = dtype or self.D.dtype
        return torch.zeros(*batch_shape, self.d_model, self.d_state // 2, dtype=torch.cdouble if dtype == torch.float64 else torch.cfloat, device=device or self.D.device)

    def _setup_step(self, rate=1.0):
        """Nothing to precompute: ``step`` discretises on the fly (clear, not fast) at this ``rate``."""
        self.step_rate = rate

    def _step(self, u, state):
        """One recurrent step x' = dA x + dB u, y = 2 Re C x' + D u: (B, H) -> (B, H)."""
        dtA, dB, C = self.kernel.discrete(self.step_rate)
        state = torch.exp(dtA) * state + dB * u[..., None]
        y = 2 * torch.einsum("hn,bhn->bh", C, state).real + u * self.D
        y = self.output_linear(self.activation(y)[..., None])[..., 0]
        return y, state

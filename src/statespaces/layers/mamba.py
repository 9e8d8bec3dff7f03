"""Mamba: the selective SSM block (Gu and Dao, 2023, "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces"; official code state-spaces/mamba ``mamba_ssm/modules/mamba_simple.py``), on the layer contract.

    x, z = in_proj(u)                                  (d_inner = expand * d_model each)
    x = silu(causal depthwise conv1d(x))               (d_conv taps)
    dt, B, C = x_proj(x)                               (dt_rank, d_state, d_state)
    delta = softplus(dt_proj(dt))                      (d_inner; bias initialised to softplus^-1 of a log-uniform dt)
    y = selective_scan(x, delta, A = -exp(A_log), B, C, D) * silu(z)
    out = out_proj(y)

computed by :func:`statespaces.ops.selective_scan` (mamba_ssm's ``selective_scan_fn`` semantics, chunked and
recomputed in the backward).  The state is :class:`MambaState` (the conv's last ``d_conv - 1`` inputs, the SSM
state): ``forward(state=...)`` continues both (chunked == whole), ``step`` is O(1) as the official ``step``.  With
``lengths`` a padded step gets delta = 0, so it leaves the SSM state unchanged, and the conv history is taken at
each length.  ``rate`` has no meaning for an input-dependent step size: not supported.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..ops.selective_scan import selective_scan
from .base import SequenceLayer

__all__ = ["Mamba", "MambaState"]


class MambaState(NamedTuple):
    """State of :class:`Mamba`: conv (B, d_inner, d_conv - 1) previous conv inputs, oldest first; ssm
    (B, d_inner, d_state)."""

    conv: torch.Tensor
    ssm: torch.Tensor


class Mamba(SequenceLayer):
    """The Mamba block (registered ``mamba``); options and defaults of ``mamba_simple.Mamba``.

    Args:
        d_model: H.
        d_state: N (16).
        d_conv: taps of the causal depthwise convolution (4).
        expand: d_inner = expand * d_model (2).
        dt_rank: rank of the delta projection ('auto': ceil(d_model / 16)).
        dt_min, dt_max, dt_init_floor: the initial delta is log-uniform in [dt_min, dt_max] (1e-3, 1e-1), at
            least dt_init_floor (1e-4); dt_proj's bias holds its inverse softplus.
        dt_init: 'random' (dt_proj's weight uniform in +-dt_scale / sqrt(dt_rank)) or 'constant'.
        dt_scale: see dt_init (1.0).
        conv_bias: bias of the convolution (True); bias: of in_proj and out_proj (False).
        transposed: layout (B, H, L) instead of (B, L, H).

    ``A_log`` and ``D`` carry ``weight_decay = 0`` (the official ``_no_weight_decay``).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        transposed: bool = False,
    ):
        super().__init__(d_model, transposed=transposed)
        for arg, v in (("d_state", d_state), ("d_conv", d_conv), ("expand", expand)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{arg} must be a positive int, got {v!r}")
        if dt_rank == "auto":
            dt_rank = math.ceil(d_model / 16)
        if isinstance(dt_rank, bool) or not isinstance(dt_rank, int) or dt_rank < 1:
            raise ValueError(f"dt_rank must be 'auto' or a positive int, got {dt_rank!r}")
        if dt_init not in ("random", "constant"):
            raise ValueError(f"dt_init must be 'random' or 'constant', got {dt_init!r}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.d_state, self.d_conv, self.dt_rank = d_state, d_conv, dt_rank
        self.d_inner = d_inner = expand * d_model
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, bias=conv_bias)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        std = dt_rank**-0.5 * dt_scale
        with torch.no_grad():
            if dt_init == "constant":
                self.dt_proj.weight.fill_(std)
            else:
                self.dt_proj.weight.uniform_(-std, std)
            dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=dt_init_floor)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))  # S4D-Real
        self.D = nn.Parameter(torch.ones(d_inner))
        for p in (self.A_log, self.D):
            p._optim = {"weight_decay": 0.0}
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)

    # ---- sequence mode ---------------------------------------------------------------------------
    def _forward(self, u: torch.Tensor, state, rate: float, lengths):
        """u (B, L, H) -> (y (B, L, H), next_state)."""
        L = u.shape[1]
        x, z = rearrange(self.in_proj(u), "b l (two d) -> two b d l", two=2)
        history = state.conv.to(x.dtype) if state is not None else x.new_zeros(x.shape[0], self.d_inner, self.d_conv - 1)
        ext = torch.cat([history, x], -1)  # (B d K-1+L)
        x = F.silu(self.conv1d(ext))  # (B d L): a valid convolution over the history and the input
        dt, B, C = torch.split(self.x_proj(rearrange(x, "b d l -> b l d")), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))  # (B L d)
        if lengths is not None:  # a padded step must leave the SSM state as it is: no decay, no input
            valid = torch.arange(L, device=u.device) < lengths[:, None]
            delta = torch.where(valid[..., None], delta, torch.zeros((), dtype=delta.dtype, device=delta.device))
        y, last = selective_scan(
            x,
            rearrange(delta, "b l d -> b d l"),
            -torch.exp(self.A_log.to(torch.promote_types(self.A_log.dtype, torch.float32))).to(x.dtype),
            rearrange(B, "b l n -> b n l"),
            rearrange(C, "b l n -> b n l"),
            self.D,
            z=z,
            return_last_state=True,
            initial_state=None if state is None else state.ssm,
        )
        out = self.out_proj(rearrange(y, "b d l -> b l d"))
        if state is None:
            return out, None
        K = self.d_conv - 1
        if lengths is None:
            conv = ext[..., ext.shape[-1] - K :]
        else:  # the K inputs before each sequence's own end
            idx = lengths[:, None, None] + torch.arange(K, device=u.device)
            conv = ext.gather(-1, idx.expand(-1, self.d_inner, -1))
        return out, MambaState(conv.to(state.conv.dtype), last.to(state.ssm.dtype))

    # ---- recurrent mode --------------------------------------------------------------------------
    def _step(self, x_t: torch.Tensor, state: MambaState):
        x, z = self.in_proj(x_t).chunk(2, dim=-1)  # (B d)
        window = torch.cat([state.conv, x[..., None]], -1)  # (B d K)
        x = F.silu((window * self.conv1d.weight[:, 0]).sum(-1) + (self.conv1d.bias if self.conv1d.bias is not None else 0))
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))  # (B d)
        A = -torch.exp(self.A_log.to(torch.promote_types(self.A_log.dtype, torch.float32))).to(x.dtype)
        ssm = torch.exp(delta[..., None] * A) * state.ssm + (delta * x)[..., None] * B[:, None, :]
        y = (ssm * C[:, None, :]).sum(-1) + self.D * x
        y = y * F.silu(z)
        return self.out_proj(y), MambaState(window[..., 1:], ssm)

    def default_state(self, *batch_shape: int, device=None, dtype: torch.dtype | None = None) -> MambaState:
        dtype, device = dtype or self.param_dtype, device or self.D.device
        return MambaState(
            torch.zeros(*batch_shape, self.d_inner, self.d_conv - 1, dtype=dtype, device=device),
            torch.zeros(*batch_shape, self.d_inner, self.d_state, dtype=dtype, device=device),
        )

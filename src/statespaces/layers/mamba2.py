"""Mamba-2: the SSD layer (Dao and Gu, ICML 2024; official code state-spaces/mamba ``mamba_ssm/modules/mamba2.py``
and ``mamba2_simple.py``), on the layer contract.

    z, xBC, dt = in_proj(u)                       (d_inner, d_inner + 2 ngroups d_state, nheads)
    x, B, C = silu(causal depthwise conv1d(xBC))  (d_conv taps)
    dt = softplus(dt + dt_bias), clamped to dt_limit
    y = SSD(x * dt, A * dt, B, C) + D x           (per head: scalar A = -exp(A_log), headdim channels)
    out = out_proj(RMSNorm(y * silu(z)))          (gated RMSNorm, norm_before_gate=False, group size d_inner / ngroups)

The sequence is computed by :func:`statespaces.ops.ssd.ssd` (chunked matmuls), the step by the recurrence.  State
:class:`Mamba2State` (the conv's last ``d_conv - 1`` inputs, the SSM state (B, nheads, headdim, d_state));
``forward(state=...)`` continues both; with ``lengths`` a padded step gets dt = 0 (no decay, no input) and the conv
history is taken at each length.  ``d_ssm`` (part of the width as a gated MLP) is not offered: d_ssm = d_inner.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..ops.ssd import ssd
from .base import SequenceLayer

__all__ = ["Mamba2", "Mamba2State"]


class Mamba2State(NamedTuple):
    """State of :class:`Mamba2`: conv (B, conv_dim, d_conv - 1), oldest first; ssm (B, nheads, headdim, d_state)."""

    conv: torch.Tensor
    ssm: torch.Tensor


class Mamba2(SequenceLayer):
    """The Mamba-2 layer (registered ``mamba2``); options and defaults of ``mamba2.Mamba2``.

    Args:
        d_model: H.
        d_state: N per head (128).
        d_conv: taps of the causal depthwise convolution (4); conv_init: uniform(+-conv_init) conv weights.
        expand: d_inner = expand * d_model (2).
        headdim: channels per head (64); nheads = d_inner / headdim.
        ngroups: groups of heads sharing B and C (1).
        A_init_range: A = -U(A_init_range) per head ((1, 16)).
        D_has_hdim: one D per channel instead of per head (False).
        rmsnorm: the gated RMSNorm before out_proj (True); False gates with silu(z) only.
        norm_before_gate: normalise, then gate (False, the official default).
        dt_min, dt_max, dt_init_floor: initial dt log-uniform in [dt_min, dt_max] (1e-3, 1e-1), at least the floor.
        dt_limit: (low, high) clamp of dt ((0, inf): none).
        bias, conv_bias: of the projections (False) and the convolution (True).
        chunk_size: SSD chunk length (256).
        transposed: layout (B, H, L) instead of (B, L, H).

    ``A_log``, ``D`` and ``dt_bias`` carry ``weight_decay = 0`` (the official ``_no_weight_decay``).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 128,
        d_conv: int = 4,
        conv_init: float | None = None,
        expand: int = 2,
        headdim: int = 64,
        ngroups: int = 1,
        A_init_range: tuple[float, float] = (1, 16),
        D_has_hdim: bool = False,
        rmsnorm: bool = True,
        norm_before_gate: bool = False,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        dt_limit: tuple[float, float] = (0.0, float("inf")),
        bias: bool = False,
        conv_bias: bool = True,
        chunk_size: int = 256,
        transposed: bool = False,
    ):
        super().__init__(d_model, transposed=transposed)
        for arg, v in (("d_state", d_state), ("d_conv", d_conv), ("expand", expand), ("headdim", headdim), ("ngroups", ngroups), ("chunk_size", chunk_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{arg} must be a positive int, got {v!r}")
        self.d_inner = d_inner = expand * d_model
        if d_inner % headdim:
            raise ValueError(f"headdim={headdim} must divide d_inner = expand * d_model = {d_inner}")
        self.nheads = nheads = d_inner // headdim
        if nheads % ngroups:
            raise ValueError(f"ngroups={ngroups} must divide the number of heads {nheads}")
        lo, hi = A_init_range
        if not 0 < lo <= hi:
            raise ValueError(f"A_init_range must be (low, high) with 0 < low <= high, got {A_init_range!r}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.d_state, self.d_conv, self.headdim, self.ngroups, self.chunk_size = d_state, d_conv, headdim, ngroups, chunk_size
        self.rmsnorm, self.norm_before_gate, self.dt_limit = rmsnorm, norm_before_gate, tuple(dt_limit)
        self.conv_dim = d_inner + 2 * ngroups * d_state
        self.in_proj = nn.Linear(d_model, 2 * d_inner + 2 * ngroups * d_state + nheads, bias=bias)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim, bias=conv_bias)
        if conv_init is not None:
            nn.init.uniform_(self.conv1d.weight, -conv_init, conv_init)
        dt = torch.exp(torch.rand(nheads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log = nn.Parameter(torch.log(torch.empty(nheads).uniform_(lo, hi)))
        self.D = nn.Parameter(torch.ones(d_inner if D_has_hdim else nheads))
        for p in (self.dt_bias, self.A_log, self.D):
            p._optim = {"weight_decay": 0.0}
        if rmsnorm:
            self.norm_weight = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)

    # ---- pieces shared by both modes ---------------------------------------------------------------
    def _split(self, zxbcdt: torch.Tensor):
        return torch.split(zxbcdt, [self.d_inner, self.conv_dim, self.nheads], dim=-1)

    def _dt(self, dt: torch.Tensor) -> torch.Tensor:
        dt = F.softplus(dt + self.dt_bias)
        if self.dt_limit != (0.0, float("inf")):
            dt = dt.clamp(*self.dt_limit)
        return dt

    def _D(self) -> torch.Tensor:
        """D as (nheads, headdim)."""
        return self.D.view(self.nheads, self.headdim) if self.D.numel() == self.d_inner else self.D[:, None]

    def _gate_norm(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """(..., d_inner) -> gated (RMS-normalised) output, as ``RMSNormGated(group_size=d_inner / ngroups)``."""
        if not self.rmsnorm:
            return y * F.silu(z)
        if not self.norm_before_gate:
            y = y * F.silu(z)
        g = rearrange(y, "... (g d) -> ... g d", g=self.ngroups)
        g = g * torch.rsqrt(g.square().mean(-1, keepdim=True) + 1e-5)
        y = rearrange(g, "... g d -> ... (g d)") * self.norm_weight
        return y * F.silu(z) if self.norm_before_gate else y

    # ---- sequence mode ---------------------------------------------------------------------------
    def _forward(self, u: torch.Tensor, state, rate: float, lengths):
        Bsz, L, _ = u.shape
        z, xBC, dt = self._split(self.in_proj(u))
        xBC = rearrange(xBC, "b l d -> b d l")
        history = state.conv.to(xBC.dtype) if state is not None else xBC.new_zeros(Bsz, self.conv_dim, self.d_conv - 1)
        ext = torch.cat([history, xBC], -1)
        xBC = rearrange(F.silu(self.conv1d(ext)), "b d l -> b l d")
        x, B, C = torch.split(xBC, [self.d_inner, self.ngroups * self.d_state, self.ngroups * self.d_state], dim=-1)
        dt = self._dt(dt)  # (B L h)
        if lengths is not None:  # a padded step changes nothing: no decay, no input
            valid = torch.arange(L, device=u.device) < lengths[:, None]
            dt = torch.where(valid[..., None], dt, torch.zeros((), dtype=dt.dtype, device=dt.device))
        x = rearrange(x, "b l (h p) -> b l h p", p=self.headdim)
        A = -torch.exp(self.A_log.to(torch.promote_types(self.A_log.dtype, torch.float32))).to(x.dtype)
        y, final = ssd(
            x * dt[..., None],
            A * dt,
            rearrange(B, "b l (g n) -> b l g n", g=self.ngroups),
            rearrange(C, "b l (g n) -> b l g n", g=self.ngroups),
            self.chunk_size,
            initial_states=None if state is None else state.ssm,
            return_final_states=True,
        )
        y = rearrange(y + self._D() * x, "b l h p -> b l (h p)")
        out = self.out_proj(self._gate_norm(y, z))
        if state is None:
            return out, None
        K = self.d_conv - 1
        if lengths is None:
            conv = ext[..., ext.shape[-1] - K :]
        else:
            idx = lengths[:, None, None] + torch.arange(K, device=u.device)
            conv = ext.gather(-1, idx.expand(-1, self.conv_dim, -1))
        return out, Mamba2State(conv.to(state.conv.dtype), final.to(state.ssm.dtype))

    # ---- recurrent mode --------------------------------------------------------------------------
    def _step(self, x_t: torch.Tensor, state: Mamba2State):
        z, xBC, dt = self._split(self.in_proj(x_t))
        window = torch.cat([state.conv, xBC[..., None]], -1)  # (B conv_dim K)
        xBC = (window * self.conv1d.weight[:, 0]).sum(-1)
        if self.conv1d.bias is not None:
            xBC = xBC + self.conv1d.bias
        x, B, C = torch.split(F.silu(xBC), [self.d_inner, self.ngroups * self.d_state, self.ngroups * self.d_state], dim=-1)
        dt = self._dt(dt)  # (B h)
        A = -torch.exp(self.A_log.to(torch.promote_types(self.A_log.dtype, torch.float32))).to(x.dtype)
        x = rearrange(x, "b (h p) -> b h p", p=self.headdim)
        rep = self.nheads // self.ngroups
        B = rearrange(B, "b (g n) -> b g n", g=self.ngroups).repeat_interleave(rep, dim=1)  # (B h n)
        C = rearrange(C, "b (g n) -> b g n", g=self.ngroups).repeat_interleave(rep, dim=1)
        ssm = torch.exp(dt * A)[..., None, None] * state.ssm + torch.einsum("bh,bhp,bhn->bhpn", dt, x, B)
        y = torch.einsum("bhpn,bhn->bhp", ssm, C) + self._D() * x
        out = self.out_proj(self._gate_norm(rearrange(y, "b h p -> b (h p)"), z))
        return out, Mamba2State(window[..., 1:], ssm)

    def default_state(self, *batch_shape: int, device=None, dtype: torch.dtype | None = None) -> Mamba2State:
        dtype, device = dtype or self.param_dtype, device or self.D.device
        return Mamba2State(
            torch.zeros(*batch_shape, self.conv_dim, self.d_conv - 1, dtype=dtype, device=device),
            torch.zeros(*batch_shape, self.nheads, self.headdim, self.d_state, dtype=dtype, device=device),
        )

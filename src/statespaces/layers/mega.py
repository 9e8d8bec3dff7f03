"""Mega: moving average equipped gated attention (Ma et al., ICLR 2023; official code facebookresearch/mega
``fairseq/modules/moving_average_gated_attention.py``), on the layer contract, causal.

    v  = silu(W_v x)                                   (hdim)
    mx = silu(EMA(x) + omega x)                        (the damped multi-dimensional EMA: :class:`EMAKernel`)
    u, zr, hx = W_mx mx                                (d_model, zdim + hdim, d_model)
    u = sigmoid(u);  z, r = silu(zr);  q, k = z gamma_(q,k) + beta_(q,k)
    h = softmax(q k^T / sqrt(zdim) + relative position bias, causal [, within chunks]) v
    h = silu(hx + W_h (h r))
    out = x + u (h - x)

This layer returns ``u (h - x)``: the model's residual block adds x, which completes Mega's gated residual exactly
in a post-norm stack (the official default); the block's norms and FFN are the model's (``norm``, ``prenorm``,
``ffn``).  ``chunk_size``: each position attends only within its chunk (any length works: the last chunk may be
short).  The state is :class:`MegaState`: the EMA state and a key/value cache with each key's position (invalid
slots at -1); with ``chunk_size`` only the current chunk's keys are kept, so the step costs O(chunk).  The
relative position bias is the official 'simple' one (a learned scalar per offset up to ``max_positions``) or
'rotary' (``rot(alpha, i) . rot(beta, j)`` with learned alpha, beta (zdim,) and RoPE's sinusoids: it depends on
j - i only, so positions count from the start of the stream).  ``attention='laplace'`` or ``'relu2'`` (the official element attention:
``f(q k^T / n + bias)`` with ``laplace(x) = (1 + erf((x - sqrt(1/2)) / sqrt(1/(2 pi)))) / 2`` or ``relu(x)^2``) scales by
the attended length n, which the official code takes as the (chunk) length: here n = ``chunk_size``, required, so
that a position's output never depends on how long the sequence is.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import unknown
from .base import SequenceLayer
from .fftconv import FFTConv

__all__ = ["MegaBlock", "MegaState"]

ATTENTIONS = ("softmax", "laplace", "relu2")


class MegaState(NamedTuple):
    """State of :class:`MegaBlock`: ema (B, 1, H, ndim); keys (B, T, zdim) and values (B, T, hdim) of the
    attended positions; key_pos (B, T) their positions (-1: empty slot); count (B,) positions seen.  T = 0 in
    ``default_state`` and grows (with ``chunk_size``, up to one chunk)."""

    ema: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    key_pos: torch.Tensor
    count: torch.Tensor


class MegaBlock(SequenceLayer):
    """The Mega layer (registered ``mega``).

    Args:
        d_model: H.
        zdim: width of the shared query/key representation (official LRA configs: 64-128; default 64).
        hdim: width of the values (default 2 H, as the official configs' hidden dims).
        ndim: EMA dimensions (official default 2; LRA 16).
        chunk_size: attend within chunks of this many positions (None: the whole causal past).
        max_positions: the longest relative offset with its own bias (1024).
        attention: 'softmax' (default), 'laplace' or 'relu2' (these need ``chunk_size``).
        rel_pos_bias: 'simple' (default) or 'rotary'.
        attention_dropout, hidden_dropout: dropout on the attention weights and on the gated output (0).
        transposed: layout (B, H, L) instead of (B, L, H).
    """

    def __init__(self, d_model: int, zdim: int = 64, hdim: int | None = None, ndim: int = 2, chunk_size: int | None = None, max_positions: int = 1024,
                 attention: str = "softmax", rel_pos_bias: str = "simple", attention_dropout: float = 0.0, hidden_dropout: float = 0.0, transposed: bool = False):
        super().__init__(d_model, transposed=transposed)
        hdim = 2 * d_model if hdim is None else hdim
        for arg, v in (("zdim", zdim), ("hdim", hdim), ("max_positions", max_positions)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{arg} must be a positive int, got {v!r}")
        if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be None or a positive int, got {chunk_size!r}")
        if attention not in ATTENTIONS:
            raise unknown("attention", attention, ATTENTIONS)
        if rel_pos_bias not in ("simple", "rotary"):
            raise unknown("rel_pos_bias", rel_pos_bias, ("simple", "rotary"))
        if rel_pos_bias == "rotary" and zdim % 2:
            raise ValueError(f"rel_pos_bias='rotary' rotates pairs of features: zdim must be even, got {zdim}")
        if attention != "softmax" and chunk_size is None:
            raise ValueError(f"attention={attention!r} scales by the attended length: set chunk_size (the official LRA configs do)")
        self.zdim, self.hdim, self.chunk_size, self.max_positions, self.attention = zdim, hdim, chunk_size, max_positions, attention
        self.v_proj = nn.Linear(d_model, hdim)
        self.ema = FFTConv(d_model, kernel="ema", ndim=ndim)
        self.mx_proj = nn.Linear(d_model, 2 * d_model + zdim + hdim)
        self.h_proj = nn.Linear(hdim, d_model)
        self.gamma = nn.Parameter(torch.randn(2, zdim) * 0.02)
        self.beta = nn.Parameter(torch.zeros(2, zdim))
        self.rel_pos = rel_pos_bias
        if rel_pos_bias == "simple":
            self.rel_pos_bias = nn.Parameter(torch.randn(2 * max_positions - 1) * 0.02)
        else:
            self.rot_alpha = nn.Parameter(torch.randn(zdim) * 0.02)
            self.rot_beta = nn.Parameter(torch.randn(zdim) * 0.02)
        self.attention_dropout, self.hidden_dropout = nn.Dropout(attention_dropout), nn.Dropout(hidden_dropout)

    def _projections(self, x: torch.Tensor, mx: torch.Tensor):
        u, zr, hx = torch.split(self.mx_proj(mx), [self.d_model, self.zdim + self.hdim, self.d_model], dim=-1)
        z, r = torch.split(F.silu(zr), [self.zdim, self.hdim], dim=-1)
        q = z * self.gamma[0] + self.beta[0]
        k = z * self.gamma[1] + self.beta[1]
        return torch.sigmoid(u), q, k, F.silu(self.v_proj(x)), r, hx

    def _attend(self, q, k, v, q_pos, k_pos):
        """q (B, L, z) at positions q_pos (B, L); k, v (B, T, .) at k_pos (B, T) (-1: empty) -> (B, L, hdim)."""
        bias = self._bias(q_pos, k_pos, q.dtype)
        qk = torch.einsum("blz,btz->blt", q, k)
        allowed = (k_pos[:, None, :] >= 0) & (k_pos[:, None, :] <= q_pos[:, :, None])
        if self.chunk_size is not None:
            allowed = allowed & (k_pos[:, None, :] // self.chunk_size == q_pos[:, :, None] // self.chunk_size)
        if self.attention == "softmax":
            scores = qk * self.zdim**-0.5 + bias
            empty = ~allowed.any(-1, keepdim=True)  # a padded query with nothing to see: zero weights, not NaN
            scores = scores.masked_fill(~allowed, -torch.inf).masked_fill(empty, 0.0)
            weights = torch.softmax(scores, dim=-1).masked_fill(empty, 0.0)
        else:
            scores = qk / self.chunk_size + bias
            if self.attention == "relu2":
                weights = F.relu(scores) ** 2
            else:
                weights = 0.5 * (1 + torch.erf((scores - math.sqrt(0.5)) / math.sqrt(1 / (2 * math.pi))))
            weights = weights * allowed
        weights = self.attention_dropout(weights)
        return torch.einsum("blt,bth->blh", weights, v)

    def _rotate(self, v: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """The official rotary map: halves (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin) at positions pos (B, T)."""
        half = self.zdim // 2
        freqs = torch.exp(torch.arange(half, dtype=v.dtype, device=v.device) * -(math.log(10000) / half))
        angle = pos.clamp(min=0)[..., None].to(v.dtype) * freqs  # (B T half)
        x1, x2 = v[:half], v[half:]
        return torch.cat([x1 * angle.cos() - x2 * angle.sin(), x2 * angle.cos() + x1 * angle.sin()], -1)

    def _bias(self, q_pos: torch.Tensor, k_pos: torch.Tensor, dtype) -> torch.Tensor:
        if self.rel_pos == "simple":
            offset = (k_pos[:, None, :] - q_pos[:, :, None]).clamp(min=-(self.max_positions - 1))
            return self.rel_pos_bias[self.max_positions - 1 + offset]
        return torch.einsum("blz,btz->blt", self._rotate(self.rot_alpha.to(dtype), q_pos), self._rotate(self.rot_beta.to(dtype), k_pos))

    def _forward(self, x: torch.Tensor, state, rate: float, lengths):
        B, L, _ = x.shape
        mx, ema_state = self.ema(x, None if state is None else state.ema, lengths=lengths)
        u, q, k, v, r, hx = self._projections(x, F.silu(mx))
        start = state.count if state is not None else torch.zeros(B, dtype=torch.long, device=x.device)
        q_pos = start[:, None] + torch.arange(L, device=x.device)  # (B L)
        new_pos = q_pos if lengths is None else torch.where(torch.arange(L, device=x.device) < lengths[:, None], q_pos, torch.full_like(q_pos, -1))
        if state is not None:
            k_all, v_all, pos_all = torch.cat([state.k.to(k.dtype), k], 1), torch.cat([state.v.to(v.dtype), v], 1), torch.cat([state.key_pos, new_pos], 1)
        else:
            k_all, v_all, pos_all = k, v, new_pos
        h = self._attend(q, k_all, v_all, q_pos, pos_all)
        h = self.hidden_dropout(F.silu(hx + self.h_proj(h * r)))
        out = u * (h - x)
        if state is None:
            return out, None
        count = start + (L if lengths is None else lengths)
        return out, self._cache(ema_state, k_all, v_all, pos_all, count)

    def _cache(self, ema_state, k, v, pos, count) -> MegaState:
        """Keep the keys a later position may attend to: all of them, or those of the current chunk."""
        if self.chunk_size is not None:
            chunk_start = (count // self.chunk_size) * self.chunk_size
            pos = torch.where(pos >= chunk_start[:, None], pos, torch.full_like(pos, -1))
            keep = int((pos >= 0).sum(1).max().item()) if pos.numel() else 0
            order = torch.argsort((pos < 0).to(torch.int8), dim=1, stable=True)[:, :keep]  # valid slots first
            k = k.gather(1, order[..., None].expand(-1, -1, k.shape[-1]))
            v = v.gather(1, order[..., None].expand(-1, -1, v.shape[-1]))
            pos = pos.gather(1, order)
        return MegaState(ema_state, k, v, pos, count)

    def _setup_step(self, **options) -> None:
        self.ema.setup_step(**options)

    def step_options(self) -> set[str]:
        return self.ema.step_options()

    def _step(self, x_t: torch.Tensor, state: MegaState):
        mx, ema_state = self.ema.step(x_t, state.ema)
        u, q, k, v, r, hx = self._projections(x_t, F.silu(mx))
        pos = state.count
        k_all, v_all = torch.cat([state.k, k[:, None]], 1), torch.cat([state.v, v[:, None]], 1)
        pos_all = torch.cat([state.key_pos, pos[:, None]], 1)
        h = self._attend(q[:, None], k_all, v_all, pos[:, None], pos_all)[:, 0]
        h = F.silu(hx + self.h_proj(h * r))
        return u * (h - x_t), self._cache(ema_state, k_all, v_all, pos_all, pos + 1)

    def default_state(self, *batch_shape: int, device=None, dtype: torch.dtype | None = None) -> MegaState:
        dtype, device = dtype or self.param_dtype, device or self.gamma.device
        return MegaState(
            self.ema.default_state(*batch_shape, device=device, dtype=dtype),
            torch.zeros(*batch_shape, 0, self.zdim, dtype=dtype, device=device),
            torch.zeros(*batch_shape, 0, self.hdim, dtype=dtype, device=device),
            torch.zeros(*batch_shape, 0, dtype=torch.long, device=device),
            torch.zeros(*batch_shape, dtype=torch.long, device=device),
        )

"""Baselines behind the layer contract: recurrent networks (GRU, LSTM) and multi-head attention.

They follow :class:`~statespaces.layers.base.SequenceLayer` exactly as the SSM families do (full forward ==
step-by-step == chunked forward with state forwarding, ``lengths`` with the state taken at each sequence's
own end), so that a model can swap an SSM for a baseline by name and compare like with like.

    GRU / LSTM          torch's one-layer ``nn.GRU`` / ``nn.LSTM``; state (B, d_hidden) / LSTMState(h, c)
    MultiHeadAttention  softmax attention with rotary positions; state = a growing key/value cache KVCache
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..registry import unknown
from .base import SequenceLayer

__all__ = ["GRU", "LSTM", "LSTMState", "MultiHeadAttention", "KVCache", "apply_rotary"]


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


# ---- recurrent networks ------------------------------------------------------------------------


class LSTMState(NamedTuple):
    """State of :class:`LSTM`: hidden and cell state, each (B, d_hidden)."""

    h: torch.Tensor
    c: torch.Tensor


class _RNN(SequenceLayer):
    """Shared wrapper of a one-layer torch RNN module (``_module``) behind the contract."""

    _module: type[nn.RNNBase]
    supports_step = supports_state = supports_lengths = True
    supports_rate = False  # no continuous-time step size
    length_last = False  # torch's batch_first RNNs take (B, L, H)

    def __init__(
        self, d_model: int, d_hidden: int | None = None, bidirectional: bool = False, bias: bool = True, transposed: bool = False
    ):
        super().__init__(d_model, transposed=transposed, bidirectional=bidirectional)
        self.d_hidden = _positive_int("d_hidden", d_model if d_hidden is None else d_hidden)
        self.rnn = self._module(d_model, self.d_hidden, num_layers=1, bias=bias, batch_first=True, bidirectional=self.bidirectional)
        width = self.d_hidden * (2 if self.bidirectional else 1)
        # a one-way RNN of width d_model is its own output (no extra parameters); otherwise a Linear maps back
        # to d_model (always when bidirectional, so that the two directions are mixed)
        mix = width != d_model or self.bidirectional
        self.output_linear = nn.Linear(width, d_model, bias=bias) if mix else nn.Identity()

    # torch keeps states as (num_layers * directions, B, d_hidden); the contract's state has no layer axis
    def _to_torch(self, state):
        raise NotImplementedError

    def _from_torch(self, hidden):
        raise NotImplementedError

    def _forward(self, u: torch.Tensor, state, rate: float, lengths: torch.Tensor | None):
        """u (B, L, H), padding zeroed -> (y (B, L, H), next_state or None)."""
        hidden = None if state is None else self._to_torch(state)
        # Packing is needed when the padding would otherwise leak: into the state (taken at L instead of at
        # each length) or into the reverse direction (which must start at each sequence's own end).  A causal
        # layer without a state needs none: its valid outputs never see the (zeroed) padding after them.
        if lengths is not None and (state is not None or self.bidirectional):
            L = u.shape[1]
            # pack rejects empty sequences: run them for one (zero, later masked) step and keep their state
            packed = pack_padded_sequence(u, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
            out, hidden = self.rnn(packed, hidden)  # hidden comes back in the batch's own order
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=L)
        else:
            out, hidden = self.rnn(u, hidden)
        y = self.output_linear(out)
        if state is None:
            return y, None
        next_state = self._from_torch(hidden)
        if lengths is not None:  # an empty sequence took no step: it keeps its incoming state
            empty = (lengths == 0)[:, None]
            if isinstance(state, tuple):
                next_state = type(state)(*(torch.where(empty, s, n) for s, n in zip(state, next_state)))
            else:
                next_state = torch.where(empty, state, next_state)
        return y, next_state

    def _step(self, x_t: torch.Tensor, state):
        """x_t (B, H) -> (y_t (B, H), next_state): one step of the same module, so equal to the forward."""
        out, hidden = self.rnn(x_t[:, None], self._to_torch(state))
        return self.output_linear(out[:, 0]), self._from_torch(hidden)

    def _zeros(self, batch_shape, device, dtype) -> torch.Tensor:
        return torch.zeros(*batch_shape, self.d_hidden, dtype=dtype or self.param_dtype, device=device or self.rnn.weight_ih_l0.device)


class GRU(_RNN):
    """One-layer GRU (torch's ``nn.GRU``) as a sequence layer.

    Args:
        d_model: H, the input and output width.
        d_hidden: hidden width (default H); a Linear maps (directions * d_hidden) back to H when it differs
            from H or the layer is bidirectional.
        bidirectional: a second GRU reads the sequence backwards (no step mode, no state forwarding).
        bias: biases of the GRU and of the output Linear.
        transposed: layout (B, H, L) instead of (B, L, H).

    State: the hidden state h, a tensor (B, d_hidden).
    """

    _module = nn.GRU

    def _to_torch(self, state: torch.Tensor) -> torch.Tensor:
        return state[None]

    def _from_torch(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden[0]

    def default_state(self, *batch_shape: int, device=None, dtype: torch.dtype | None = None) -> torch.Tensor:
        return self._zeros(batch_shape, device, dtype)


class LSTM(_RNN):
    """One-layer LSTM (torch's ``nn.LSTM``) as a sequence layer; the options are those of :class:`GRU`.

    State: :class:`LSTMState` (h, c), each (B, d_hidden).
    """

    _module = nn.LSTM

    def _to_torch(self, state: LSTMState) -> tuple[torch.Tensor, torch.Tensor]:
        return state.h[None], state.c[None]

    def _from_torch(self, hidden) -> LSTMState:
        return LSTMState(hidden[0][0], hidden[1][0])

    def default_state(self, *batch_shape: int, device=None, dtype: torch.dtype | None = None) -> LSTMState:
        return LSTMState(self._zeros(batch_shape, device, dtype), self._zeros(batch_shape, device, dtype))


# ---- attention ---------------------------------------------------------------------------------


class KVCache(NamedTuple):
    """State of :class:`MultiHeadAttention`: the keys (already rotated) and values seen so far, each
    (B, n_heads, T, head_dim), and which of the T slots hold a real token, (B, T) bool (a padded chunk
    leaves its padding in the cache as invalid slots).  T = 0 in ``default_state`` and grows."""

    k: torch.Tensor
    v: torch.Tensor
    valid: torch.Tensor


def apply_rotary(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding (RoPE, rotate-half convention: the pairs are (i, i + d/2)).

    Args:
        x: (B, n_heads, L, d) with d even.
        positions: (B, L) or (L,) token positions (integers).
        base: the frequency base; pair i turns by ``position * base^(-2i/d)``.
    """
    d = x.shape[-1]
    # angles in float64 (float32 loses the phase of long positions); MPS has no float64
    exact = torch.float32 if x.device.type == "mps" else torch.float64
    inv_freq = base ** (-torch.arange(0, d, 2, device=x.device, dtype=exact) / d)  # (d/2)
    angles = positions.to(exact)[..., None] * inv_freq  # (B L d/2)
    angles = torch.cat([angles, angles], -1)
    if angles.dim() == 3:
        angles = angles[:, None]  # (B 1 L d): shared by the heads
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x.chunk(2, -1)
    return x * cos + torch.cat([-x2, x1], -1) * sin


class MultiHeadAttention(SequenceLayer):
    """Multi-head softmax attention (``scaled_dot_product_attention``) with rotary positions.

    Args:
        d_model: H; it must be a multiple of ``n_heads``.
        n_heads: number of heads, each of width head_dim = H / n_heads (even for rotary positions).
        causal: queries see only earlier keys (step mode and state forwarding through a key/value cache);
            False: bidirectional (every query sees the whole sequence; no step, no state).
        pos: 'rotary' (RoPE on queries and keys of every head) or 'none' (no positional information).
        rotary_base: RoPE frequency base.
        bias: biases of the q/k/v and output projections.
        dropout: dropout on the attention weights (training only).
        transposed: layout (B, H, L) instead of (B, L, H).

    State: :class:`KVCache`; the rotary positions of a chunk start at each row's number of valid cached
    tokens, so a chunked forward equals the whole one.
    """

    supports_step = supports_state = supports_lengths = True
    supports_rate = False
    length_last = False
    POS = ("rotary", "none")

    def __init__(
        self,
        d_model: int,
        n_heads: int = 4,
        causal: bool = True,
        pos: str | None = "rotary",
        rotary_base: float = 10000.0,
        bias: bool = True,
        dropout: float = 0.0,
        transposed: bool = False,
    ):
        super().__init__(d_model, transposed=transposed, bidirectional=not causal)
        _positive_int("n_heads", n_heads)
        if d_model % n_heads:
            raise ValueError(f"n_heads={n_heads} must divide d_model={d_model}")
        pos = "none" if pos is None else pos
        if pos not in self.POS:
            raise unknown("pos", pos, self.POS)
        self.n_heads, self.head_dim, self.causal, self.pos = n_heads, d_model // n_heads, bool(causal), pos
        if pos == "rotary" and self.head_dim % 2:
            raise ValueError(f"pos='rotary' needs an even head_dim = d_model / n_heads, got {d_model} / {n_heads} = {self.head_dim}")
        if not (isinstance(rotary_base, (int, float)) and rotary_base > 1):
            raise ValueError(f"rotary_base must be a number > 1, got {rotary_base!r}")
        if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        self.rotary_base, self.dropout = float(rotary_base), float(dropout)
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.n_heads, self.head_dim).transpose(1, 2)  # (B nH L hd)

    def _forward(self, u: torch.Tensor, state: KVCache | None, rate: float, lengths: torch.Tensor | None):
        """u (B, L, H), padding zeroed -> (y (B, L, H), next KVCache or None)."""
        B, L, H = u.shape
        q, k, v = self._heads(self.q_proj(u)), self._heads(self.k_proj(u)), self._heads(self.v_proj(u))
        if self.pos == "rotary":
            positions = torch.arange(L, device=u.device)
            if state is not None:  # continue each row where its valid tokens stopped
                positions = state.valid.sum(-1, keepdim=True) + positions  # (B L)
            q, k = apply_rotary(q, positions, self.rotary_base), apply_rotary(k, positions, self.rotary_base)
        dropout_p = self.dropout if self.training else 0.0
        if state is None and lengths is None:  # the fast path: a plain (causal) mask
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=self.causal)
            return self.out_proj(y.transpose(1, 2).reshape(B, L, H)), None
        valid = torch.ones(B, L, dtype=torch.bool, device=u.device) if lengths is None else torch.arange(L, device=u.device) < lengths[:, None]
        own = valid[:, None, :].expand(B, L, L)  # (B query key): padded keys are never seen
        if self.causal:
            own = own & torch.ones(L, L, dtype=torch.bool, device=u.device).tril()
        # every query sees itself, so that no row (a padded query, an empty sequence) is fully masked: such a
        # row gives NaN, and its gradient would poison the parameters even though the output is discarded
        own = own | torch.eye(L, dtype=torch.bool, device=u.device)
        keys, values, mask = k, v, own
        if state is not None:
            keys, values = torch.cat([state.k, k], 2), torch.cat([state.v, v], 2)
            mask = torch.cat([state.valid[:, None, :].expand(B, L, -1), own], -1)  # (B L T+L)
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask[:, None], dropout_p=dropout_p)
        y = self.out_proj(y.transpose(1, 2).reshape(B, L, H))
        next_state = None if state is None else KVCache(keys, values, torch.cat([state.valid, valid], -1))
        return y, next_state

    def _step(self, x_t: torch.Tensor, state: KVCache):
        """x_t (B, H) -> (y_t (B, H), next KVCache): append one key/value, attend over the valid cache."""
        y, state = self._forward(x_t[:, None], state, 1.0, None)
        return y[:, 0], state

    def default_state(self, *batch_shape: int, device=None, dtype: torch.dtype | None = None) -> KVCache:
        """An empty cache (T = 0)."""
        device = device or self.q_proj.weight.device
        dtype = dtype or self.param_dtype
        kv = torch.zeros(*batch_shape, self.n_heads, 0, self.head_dim, dtype=dtype, device=device)
        return KVCache(kv, kv.clone(), torch.zeros(*batch_shape, 0, dtype=torch.bool, device=device))

"""Hyena (Poli, Massaroli, Nguyen, Fu, Dao, Baccus, Bengio, Ermon, Re; ICML 2023, "Hyena Hierarchy"; official code
HazyResearch/safari ``src/models/sequence/hyena.py``, configs ``configs/model/layer/hyena.yaml``,
``hyena-filter.yaml``), on the layer contract.

    x_0, ..., x_(N-1), v = short_conv(in_proj(u))        (N = order; depthwise causal, short_filter_order taps)
    for o, x in enumerate(reversed(x_1 .. x_(N-1))):    v = h_o * (v x) + bias_o (v x)    (long causal convolution)
    y = out_proj(v x_0)

The long filters h_o are implicit: ``h = modulation(t, FFN(z(t)))`` with positional features z = [t, cos, sin of
``bands`` frequencies] on an ``l_max`` grid, an FFN of ``num_inner_mlps`` hidden layers with sine activations of
learnable frequency ``w``, and an exponential decay per channel (``fast_decay_pct``, ``slow_decay_pct``, ``target``,
``shift``).  Like the official code this computes ``order - 1`` long convolutions (safari issue #9: the paper's
order-N operator has N); we follow the code, so checkpoints and configs carry over.

Recurrent mode.  The official ``recurrence`` raises NotImplementedError.  Here every long filter has ``l_max`` taps,
so the exact step keeps, per long convolution, the last ``l_max - 1`` inputs (and the short filter's last taps):
O(l_max) work per step, exact, with state forwarding and ``lengths`` like any FIR.  Inputs longer than ``l_max``
see filters with zero taps beyond ``l_max``, in conv mode and step mode alike.

Distilled step (``setup_step(distill=n)``): each trained long filter ``h`` becomes ``n`` complex modes,
``h[t] ~ Re sum_j r_j lam_j^(t-1)`` for ``t >= 1`` (``h[0]`` is kept exactly), so the step costs O(n) instead of
O(l_max).  The poles come from the Hankel matrix of ``h[1:]`` (Kung's realisation: truncated SVD, shift
invariance of the observability matrix, eigenvalues; poles are pulled inside |lam| <= 1 - 1e-4), the residues
from least squares on the whole filter, all in float64.  The fit's relative L2 error per filter is in
``distill_error`` ((order - 1, H)); the filter is infinite (it keeps decaying past ``l_max``).  This is an
approximation of the layer, so a distilled layer only steps: ``forward(state=...)`` asks for the exact set-up.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..ops.fftconv import fft_conv
from .base import SequenceLayer

__all__ = ["Hyena", "HyenaState", "HyenaFilter", "distill_filter"]


class HyenaState(NamedTuple):
    """State of :class:`Hyena`: short (B, (order + 1) H, short_filter_order - 1) and long (B, order - 1, H, l_max - 1)
    input histories, oldest first."""

    short: torch.Tensor
    long: torch.Tensor


def distill_filter(h: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit ``h[t] ~ Re sum_j r_j lam_j^(t-1)`` (t >= 1) with ``n`` modes to each row of ``h`` (C, L), in float64.

    Returns poles ``lam`` (C, n) and residues ``r`` (C, n), complex128, and the relative L2 error of the whole
    filter (``h[0]`` exact) (C,)."""
    h = h.detach().to(torch.float64)
    tail = h[:, 1:]
    m = min((tail.shape[-1] + 1) // 2, 512)
    if not 1 <= n <= m - 1:
        raise ValueError(f"distill must be an int in [1, {m - 1}] for filters of {h.shape[-1]} taps, got {n!r}")
    hankel = tail[:, torch.arange(m)[:, None] + torch.arange(m)[None, :]]  # (C m m), entry i+j; 2m-1 <= L-1 taps
    U, S, _ = torch.linalg.svd(hankel)
    obs = U[..., :n] * S[:, None, :n].sqrt()  # observability matrix of an n-state realisation
    A = torch.linalg.lstsq(obs[:, :-1], obs[:, 1:]).solution  # shift invariance: obs[1:] = obs[:-1] A
    lam = torch.linalg.eigvals(A)
    radius = 1 - 1e-4
    lam = torch.where(lam.abs() > radius, lam / lam.abs() * radius, lam)
    powers = lam[:, None, :] ** torch.arange(tail.shape[-1], dtype=torch.float64)[None, :, None]  # (C L-1 n)
    r = torch.linalg.lstsq(powers, tail.to(powers.dtype)[..., None]).solution[..., 0]
    fit = (powers @ r[..., None])[..., 0].real
    err = (fit - tail).norm(dim=-1) / h.norm(dim=-1).clamp(min=1e-300)
    return lam, r, err


class _Sin(nn.Module):
    def __init__(self, dim: int, w: float):
        super().__init__()
        self.freq = nn.Parameter(w * torch.ones(1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class HyenaFilter(nn.Module):
    """The implicit long filters: ``filter(L) -> (channels, L)`` (the official ``HyenaFilter``)."""

    def __init__(self, channels: int, l_max: int, emb_dim: int = 3, filter_order: int = 64, num_inner_mlps: int = 2, w: float = 1.0,
                 fast_decay_pct: float = 0.3, slow_decay_pct: float = 1.5, target: float = 1e-2, shift: float = 0.0, modulate: bool = True,
                 normalized: bool = False):
        super().__init__()
        if emb_dim < 3 or emb_dim % 2 == 0:
            raise ValueError(f"emb_dim must be odd and >= 3 (t plus cos/sin pairs), got {emb_dim}")
        bands = (emb_dim - 1) // 2
        t = torch.linspace(0, 1, l_max)[None, :, None]  # (1 L 1)
        w_grid = 2 * math.pi * torch.linspace(0, l_max - 1, l_max)[None, :, None] / l_max
        f = torch.linspace(1e-4, bands - 1, bands)[None, None]
        z = torch.exp(-1j * f * w_grid)
        self.z = nn.Parameter(torch.cat([t, z.real, z.imag], dim=-1))  # (1 L emb_dim)
        self.register_buffer("t", t)
        layers: list[nn.Module] = [nn.Linear(emb_dim, filter_order), _Sin(filter_order, w)]
        for _ in range(num_inner_mlps):
            layers += [nn.Linear(filter_order, filter_order), _Sin(filter_order, w)]
        layers.append(nn.Linear(filter_order, channels, bias=False))
        self.mlp = nn.Sequential(*layers)
        max_decay, min_decay = math.log(target) / fast_decay_pct, math.log(target) / slow_decay_pct
        self.register_buffer("deltas", torch.linspace(min_decay, max_decay, channels)[None, None])
        self.shift, self.modulate, self.normalized = shift, modulate, normalized

    def filter(self, L: int) -> torch.Tensor:
        h = self.mlp(self.z[:, :L])  # (1 L channels)
        if self.modulate:
            h = h * (torch.exp(-self.t[:, :L] * self.deltas.abs()) + self.shift)
        if self.normalized:  # as the official code: an L1 norm over the channels at each position
            h = h / torch.norm(h, dim=-1, p=1, keepdim=True)
        return h[0].transpose(0, 1)  # (channels L)


class Hyena(SequenceLayer):
    """The Hyena operator (registered ``hyena``), options and defaults of safari's ``HyenaOperator`` and filter.

    Args:
        d_model: H.
        l_max: the filters' length (required).
        order: depth of the recurrence (2): order - 1 long convolutions (see the module docstring).
        filter_order: width of the filter FFN (64).
        short_filter_order: taps of the short depthwise conv (3).
        emb_dim: positional features (3); num_inner_mlps (2); w: sine frequency (1; the AR configs use 10).
        fast_decay_pct, slow_decay_pct, target, shift, modulate, normalized: the exponential modulation (0.3, 1.5,
            1e-2, 0, True, False).
        dropout: on the gated products (0).
        filter_lr, filter_wd: optimiser settings of the filter FFN and its bias (hyena-filter.yaml: 1e-3, 0);
            lr_pos_emb: of the positional features (1e-5).
        transposed: layout (B, H, L) instead of (B, L, H).
    """

    def __init__(self, d_model: int, l_max: int | None = None, order: int = 2, filter_order: int = 64, short_filter_order: int = 3,
                 emb_dim: int = 3, num_inner_mlps: int = 2, w: float = 1.0, fast_decay_pct: float = 0.3, slow_decay_pct: float = 1.5,
                 target: float = 1e-2, shift: float = 0.0, modulate: bool = True, normalized: bool = False, dropout: float = 0.0,
                 filter_lr: float | None = 1e-3, filter_wd: float = 0.0, lr_pos_emb: float = 1e-5, transposed: bool = False):
        super().__init__(d_model, transposed=transposed)
        if l_max is None or isinstance(l_max, bool) or not isinstance(l_max, int) or l_max < 2:
            raise ValueError(f"Hyena needs l_max, the filters' length (an int >= 2), got {l_max!r}")
        for arg, v, low in (("order", order, 2), ("short_filter_order", short_filter_order, 1), ("filter_order", filter_order, 1), ("num_inner_mlps", num_inner_mlps, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{arg} must be an int >= {low}, got {v!r}")
        self.l_max, self.order, self.K = l_max, order, short_filter_order
        width = (order + 1) * d_model
        self.in_proj = nn.Linear(d_model, width)
        self.out_proj = nn.Linear(d_model, d_model)
        self.short_filter = nn.Conv1d(width, width, short_filter_order, groups=width)
        self.filter_fn = HyenaFilter(d_model * (order - 1), l_max, emb_dim, filter_order, num_inner_mlps, w, fast_decay_pct, slow_decay_pct, target, shift, modulate, normalized)
        self.bias = nn.Parameter(torch.randn(d_model * (order - 1)))
        settings = {"weight_decay": filter_wd, **({} if filter_lr is None else {"lr": filter_lr})}
        for p in (*self.filter_fn.mlp.parameters(), self.bias):
            p._optim = dict(settings)
        self.filter_fn.z._optim = {"lr": lr_pos_emb, "weight_decay": 0.0}
        self.dropout = nn.Dropout(dropout)
        self._modes, self.distill_error = None, None  # the distilled step's (poles, residues, h[0]) and fit errors

    def _filters(self, L: int) -> torch.Tensor:
        """(order - 1, H, L) long filters, l_max taps then zeros."""
        k = rearrange(self.filter_fn.filter(min(L, self.l_max)), "(o h) l -> o h l", o=self.order - 1)
        return F.pad(k, (0, L - k.shape[-1])) if k.shape[-1] < L else k

    def _streams(self, u: torch.Tensor, short_history: torch.Tensor):
        """(B, L, H) -> the order + 1 streams (B, H, L) after the short filter, and the extended short input."""
        z = rearrange(self.in_proj(u), "b l d -> b d l")
        ext = torch.cat([short_history.to(z.dtype), z], -1)
        return self.short_filter(ext).split(self.d_model, dim=1), ext

    def _forward(self, u: torch.Tensor, state, rate: float, lengths):
        if state is not None and self._modes is not None:
            raise ValueError(
                "this Hyena is set up for the distilled (approximate) step, whose state is modal: forward(state=...) "
                "needs the exact set-up, setup_step() without distill"
            )
        B, L, H = u.shape
        short_hist = state.short if state is not None else u.new_zeros(B, (self.order + 1) * H, self.K - 1)
        streams, short_ext = self._streams(u, short_hist)
        *x, v = streams
        T = self.l_max - 1
        ks = self._filters((T if state is not None else 0) + L)
        bias = self.bias.view(self.order - 1, H)
        longs = []
        for o, x_i in enumerate(reversed(x[1:])):
            w = self.dropout(v * x_i)
            if state is None:
                conv = fft_conv(w, ks[o][None])[:, 0]
            else:
                ext = torch.cat([state.long[:, o].to(w.dtype), w], -1)
                conv = fft_conv(ext, ks[o][None])[:, 0, :, T:]
                longs.append(ext)
            v = conv + bias[o, :, None] * w
        y = self.out_proj(rearrange(v * x[0], "b h l -> b l h"))
        if state is None:
            return y, None
        return y, HyenaState(self._tail(short_ext, self.K - 1, lengths), torch.stack([self._tail(e, T, lengths) for e in longs], 1))

    @staticmethod
    def _tail(ext: torch.Tensor, n: int, lengths) -> torch.Tensor:
        """The n entries before each sequence's own end of (B, D, n + L)."""
        if lengths is None:
            return ext[..., ext.shape[-1] - n :]
        idx = lengths[:, None, None] + torch.arange(n, device=ext.device)
        return ext.gather(-1, idx.expand(-1, ext.shape[1], -1))

    # ---- recurrent mode --------------------------------------------------------------------------
    def _setup_step(self, distill: int | None = None) -> None:
        """Cache the filters (oldest tap first) for the exact O(l_max) step; with ``distill=n`` fit each long
        filter with n complex modes for an O(n) approximate step (module docstring; errors in ``distill_error``)."""
        if distill is not None and (isinstance(distill, bool) or not isinstance(distill, int)):
            raise ValueError(f"distill must be None (the exact step) or an int number of modes, got {distill!r}")
        with torch.no_grad():
            k = self._filters(self.l_max)  # (o H l_max)
            self._taps = k.flip(-1)
            self._modes, self.distill_error = None, None
            if distill is not None:
                lam, r, err = distill_filter(k.flatten(0, 1), distill)
                o, H = k.shape[:2]
                cdtype = torch.complex128 if k.dtype == torch.float64 else torch.complex64
                self._modes = (lam.view(o, H, -1).to(cdtype), r.view(o, H, -1).to(cdtype), k[..., 0].clone())
                self.distill_error = err.view(o, H).to(k.dtype)

    def _step(self, x_t: torch.Tensor, state: HyenaState):
        if not hasattr(self, "_taps"):
            raise RuntimeError("call setup_step() before step(); it prepares the filters from the current parameters")
        H = self.d_model
        window = torch.cat([state.short, self.in_proj(x_t)[..., None]], -1)  # (B (o+1)H K)
        streams = ((window * self.short_filter.weight[:, 0]).sum(-1) + self.short_filter.bias).split(H, dim=-1)
        *x, v = streams
        bias = self.bias.view(self.order - 1, H)
        longs = []
        modes = self._modes
        for o, x_i in enumerate(reversed(x[1:])):
            w = v * x_i
            if modes is not None:  # s holds sum_(k >= 1) lam^(k-1) w_(t-k): O(n) per step
                lam, r, h0 = modes[0][o], modes[1][o], modes[2][o]
                s = state.long[:, o]
                v = h0 * w + (s * r).sum(-1).real + bias[o] * w
                longs.append(lam * s + w[..., None])
                continue
            hist = torch.cat([state.long[:, o], w[..., None]], -1)  # (B H l_max)
            v = (hist * self._taps[o]).sum(-1) + bias[o] * w
            longs.append(hist[..., 1:])
        return self.out_proj(v * x[0]), HyenaState(window[..., 1:], torch.stack(longs, 1))

    def default_state(self, *batch_shape: int, device=None, dtype: torch.dtype | None = None) -> HyenaState:
        dtype, device = dtype or self.param_dtype, device or self.bias.device
        short = torch.zeros(*batch_shape, (self.order + 1) * self.d_model, self.K - 1, dtype=dtype, device=device)
        modes = self._modes
        if modes is not None:  # distilled: one complex number per mode instead of the input history
            cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
            return HyenaState(short, torch.zeros(*batch_shape, self.order - 1, self.d_model, modes[0].shape[-1], dtype=cdtype, device=device))
        return HyenaState(short, torch.zeros(*batch_shape, self.order - 1, self.d_model, self.l_max - 1, dtype=dtype, device=device))

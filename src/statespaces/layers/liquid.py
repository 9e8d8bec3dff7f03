"""Liquid-S4 (Hasani, Lechner, Wang, Chahine, Amini, Rus; ICLR 2023, "Liquid Structural State-Space Models";
official code raminmh/liquid-s4 ``src/models/sequence/ss/s4.py``): S4 plus the input-correlation terms of the
linearised liquid SSM

    x_k = (A_bar + B_bar u_k 1^T) x_(k-1) + B_bar u_k,   y_k = C x_k + D u_k      (1^T sums the real state)

Unrolling it, the products of p consecutive inputs enter through ``B_p = B_bar (1^T B_bar)^(p-1)``: the rank-one
transition applied p - 1 times to ``B_bar`` (the term ``x_k <- B_bar u_k 1^T (B_bar u_(k-1) 1^T (... B_bar u_(k-p+1)))``).
``liquid_kernel='polyb'`` (the default; "faster and better" per the official README) keeps, for p = 2 .. degree,
the terms with no ``A_bar`` in between:

    y_k += sum_p (C . B_p) lcontract(u_k u_(k-1) ... u_(k-p+1))

``liquid_kernel='kb'`` keeps the products of adjacent inputs at every lag: the correlation sequences convolved with
the kernel of ``B_p``.  As ``B_p`` is ``B_bar`` times the scalar ``s^(p-1)``, that kernel is ``s^(p-1)`` times S4's
own, so kb is S4 run on ``u + w`` with ``w_k = sum_p s^(p-1) lcontract(u_k ... u_(k-p+1))`` (and D on u alone):
exact state forwarding and step come with it.

Departures from the official code, on purpose:
  * causal: the official code flips the correlation sequence in time, so that output t receives products of the
    inputs near the *end* of the sequence; here output t gets the products ending at t.
  * ``allcombs`` (products at fixed positions near the sequence's end, length-dependent) is not offered: it is not
    causal and has no recurrent form.
  * ``B_p = B_bar s^(p-1)`` with ``s = 1^T B_bar`` as unrolling gives; the official ``B_p = B_(p-1) (1^T B_(p-1))``
    compounds the sums (s^3 at p = 3) and agrees only at p = 2, the default degree.
The step keeps the S4 state and the last ``degree - 1`` inputs.  :func:`liquid_recurrence_ref` is the exact
nonlinear recurrence above (a step loop), the reference the tests hold the expansion against.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..registry import unknown
from .base import SequenceLayer
from .common import activation as make_activation
from .fftconv import FFTConv

__all__ = ["LiquidS4", "LiquidState", "liquid_recurrence_ref"]

LIQUID_KERNELS = ("polyb", "kb")
CONTRACTIONS = (None, "tanh", "lecun")


class LiquidState(NamedTuple):
    """State of :class:`LiquidS4`: the S4 state (B, H, N/2) complex and the last degree - 1 inputs (B, H, degree - 1)."""

    ssm: torch.Tensor
    inputs: torch.Tensor


def _contract(x: torch.Tensor, kind: str | None) -> torch.Tensor:
    if kind == "tanh":
        return torch.tanh(x)
    if kind == "lecun":  # LeCun's scaled tanh
        return 1.7159 * torch.tanh(2 * x / 3)
    return x


class LiquidS4(SequenceLayer):
    """Liquid-S4 layer (registered ``liquid-s4``): S4 (DPLR, bilinear) with the liquid terms, then GELU and a GLU
    output linear as S4's block.

    Args:
        d_model: H.
        d_state: N of the S4 kernel (64).
        liquid_kernel: 'polyb' (default) or 'kb' (see the module docstring).
        liquid_degree: the highest input product order (2; >= 2).
        lcontract: None, 'tanh' or 'lecun', applied to each input product.
        transposed: layout (B, H, L) instead of (B, L, H).
        **kernel_options: options of the S4 kernel (init, dt_min, dt_max, lr, ...).
    """

    supports_rate = True

    def __init__(self, d_model: int, d_state: int = 64, *, liquid_kernel: str = "polyb", liquid_degree: int = 2, lcontract: str | None = None, transposed: bool = False, **kernel_options):
        super().__init__(d_model, transposed=transposed)
        if liquid_kernel not in LIQUID_KERNELS:
            raise unknown("liquid_kernel", liquid_kernel, LIQUID_KERNELS)
        if isinstance(liquid_degree, bool) or not isinstance(liquid_degree, int) or liquid_degree < 2:
            raise ValueError(f"liquid_degree must be an int >= 2 (degree 1 is S4 itself), got {liquid_degree!r}")
        if lcontract not in CONTRACTIONS:
            raise unknown("lcontract", lcontract, CONTRACTIONS)
        self.liquid_kernel, self.degree, self.lcontract = liquid_kernel, liquid_degree, lcontract
        self.ssm = FFTConv(d_model, kernel="nplr", d_state=d_state, **kernel_options)
        self.activation = make_activation("gelu")
        self.output_linear = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.GLU(dim=-1))

    def coefficients(self, rate: float = 1.0) -> torch.Tensor:
        """(degree - 1, H): the weight of the degree-p products for p = 2 .. degree: ``C . B_p`` for polyb, ``s^(p-1)``
        (the kernel of ``B_p`` over S4's) for kb; real (``2 Re`` over the conjugate pairs)."""
        st = self.ssm.kernel.structure(rate, torch.float64 if self.ssm.D.device.type != "mps" else None)
        dB, C = st["dB"], st["C"][0]  # (H N2)
        s = 2 * dB.real.sum(-1)  # 1^T B_bar over the full real state
        scale = 2 * (C * dB).sum(-1).real if self.liquid_kernel == "polyb" else torch.ones_like(s)
        return torch.stack([scale * s ** (p - 1) for p in range(2, self.degree + 1)]).to(self.ssm.D.dtype)

    def _liquid(self, u: torch.Tensor, history: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        """sum_p coef_p lcontract(u_t ... u_(t-p+1)) for u (B, H, L) after ``history`` (B, H, degree - 1)."""
        ext = torch.cat([history.to(u.dtype), u], -1)
        L, P = u.shape[-1], self.degree
        out = torch.zeros_like(u)
        product = u
        for p in range(2, P + 1):  # product of u_t ... u_(t-p+1)
            product = product * ext[..., P - p : P - p + L]
            out = out + coef[p - 2, :, None] * _contract(product, self.lcontract)
        return out

    def pre_activation(self, u: torch.Tensor, state: LiquidState | None = None, rate: float = 1.0, lengths=None):
        """u (B, L, H) -> the S4 output plus D u plus the liquid terms (B, L, H), before GELU, and the next state."""
        ut = u.transpose(1, 2)
        history = state.inputs if state is not None else ut.new_zeros(ut.shape[0], self.d_model, self.degree - 1)
        w = self._liquid(ut, history, self.coefficients(rate)).transpose(1, 2)  # (B L H)
        ssm_state = None if state is None else state.ssm
        if self.liquid_kernel == "polyb":
            y, ssm_state = self.ssm(u, ssm_state, rate=rate, lengths=lengths)
            y = y + w
        else:  # S4 on u + w, D on u alone
            y, ssm_state = self.ssm(u + w, ssm_state, rate=rate, lengths=lengths)
            y = y - self.ssm.D[0] * w
        if state is None:
            return y, None
        ext = torch.cat([history.to(ut.dtype), ut], -1)
        K = self.degree - 1
        if lengths is None:
            tail = ext[..., ext.shape[-1] - K :]
        else:
            idx = lengths[:, None, None] + torch.arange(K, device=u.device)
            tail = ext.gather(-1, idx.expand(-1, self.d_model, -1))
        return y, LiquidState(ssm_state, tail.to(state.inputs.dtype))

    def _forward(self, u: torch.Tensor, state, rate: float, lengths):
        y, next_state = self.pre_activation(u, state, rate, lengths)
        return self.output_linear(self.activation(y)), next_state

    def _setup_step(self, realization: str | None = None, rate: float = 1.0) -> None:
        self.ssm.setup_step(realization=realization, rate=rate)
        with torch.no_grad():
            self._step_coef = self.coefficients(rate)

    def step_options(self) -> set[str]:
        return {"realization", "rate"}

    def _step(self, x_t: torch.Tensor, state: LiquidState):
        w = torch.zeros_like(x_t)
        product = x_t
        for p in range(2, self.degree + 1):
            product = product * state.inputs[..., self.degree - p]
            w = w + self._step_coef[p - 2] * _contract(product, self.lcontract)
        if self.liquid_kernel == "polyb":
            y, ssm_state = self.ssm.step(x_t, state.ssm)
            y = y + w
        else:
            y, ssm_state = self.ssm.step(x_t + w, state.ssm)
            y = y - self.ssm.D[0] * w
        inputs = torch.cat([state.inputs[..., 1:], x_t[..., None]], -1)
        return self.output_linear(self.activation(y)), LiquidState(ssm_state, inputs)

    def default_state(self, *batch_shape: int, device=None, dtype: torch.dtype | None = None) -> LiquidState:
        return LiquidState(
            self.ssm.default_state(*batch_shape, device=device, dtype=dtype),
            torch.zeros(*batch_shape, self.d_model, self.degree - 1, dtype=dtype or self.param_dtype, device=device or self.ssm.D.device),
        )


def liquid_recurrence_ref(layer: LiquidS4, u: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
    """The exact nonlinear recurrence ``x_k = (A_bar + B_bar u_k 1^T) x_(k-1) + B_bar u_k``, ``y_k = C x_k + D u_k``
    with the layer's discrete DPLR system (complex half basis: ``1^T x = 2 Re sum x``), one step at a time:
    u (B, L, H) -> pre-activation outputs (B, L, H), float64."""
    st = layer.ssm.kernel.structure(rate, torch.float64)
    lam, U, Q, dB, C = st["lam"], st["U"], st["Q"], st["dB"], st["C"][0]
    D = layer.ssm.D[0].double()
    x = torch.zeros(u.shape[0], layer.d_model, lam.shape[-1], dtype=torch.complex128)
    ys = []
    for k in range(u.shape[1]):
        uk = u[:, k].double()
        feedback = 2 * torch.einsum("rhn,bhn->brh", Q, x).real  # V^* x of dA = Lambda_bar - U V^*
        ax = lam * x - torch.einsum("rhn,brh->bhn", U, feedback.to(U.dtype))
        total = 2 * x.real.sum(-1)  # 1^T x over the full real state
        x = ax + dB * (uk * total)[..., None] + dB * uk[..., None]
        ys.append(2 * (C * x).sum(-1).real + D * uk)
    return torch.stack(ys, 1)

"""H3: Hungry Hungry Hippos (Fu, Dao, Saab, Thomas, Rudra, Re; ICLR 2023), on the layer contract.

    q, k, v = W_q u, W_k u, W_v u
    k <- shift_ssm(k)                     a learned N-tap causal FIR (A = shift, B = e_1) plus D_k k
    kv = k (x) v                          per head: the outer product of k's and v's head_dim features
    y  = diag_ssm(kv)                     S4D-Lin, one SSM per (head, i, j), plus D kv
    out = W_o (sum_i q_i y_ij)            the multiplicative interaction with q, summed over k's index

``head_dim = 1`` (the default) makes every product elementwise.  The two SSMs are :class:`~statespaces.FFTConv`
layers (kernels ``shift`` and ``diag``), so that conv mode, state forwarding (the shift SSM keeps the last N-1
keys, the diagonal one its modes) and the O(1) recurrent step come from the same code as S4D's.  Official code:
HazyResearch/H3 ``src/models/ssm/h3.py`` (d_state 64, S4D-Lin, separate q/k/v Linear(d, d), output Linear(d, d)).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from einops import rearrange
from torch import nn

from .base import SequenceLayer
from .fftconv import FFTConv

__all__ = ["H3", "H3State"]


class H3State(NamedTuple):
    """State of :class:`H3`: the last N-1 (projected) keys (B, H, N-1) and the diagonal SSM's modes
    (B, H * head_dim, N/2) complex."""

    shift: torch.Tensor
    ssm: torch.Tensor


class H3(SequenceLayer):
    """The H3 layer.

    Args:
        d_model: H.
        d_state: N of both SSMs (the shift SSM's number of taps, the diagonal SSM's state size); 64 as in the paper.
        head_dim: features per head (must divide d_model); the diagonal SSM runs over H * head_dim features.
        init: init of the diagonal SSM (default 'diag-lin', S4D-Lin as in the official code).
        l_max: kernel length cap of the diagonal SSM (None: as long as the input).
        lr: learning rate of the SSM tensors (both kernels), as S4's ``lr`` (None: the global one).
        kernel_options: further options of the diagonal kernel (``dt_min``, ``disc``, ...).
        transposed: layout (B, H, L) instead of (B, L, H).
    """

    supports_rate = False  # the shift SSM is a discrete FIR: no step size to change

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        head_dim: int = 1,
        init: str = "diag-lin",
        l_max: int | None = None,
        lr: float | None = None,
        kernel_options: dict | None = None,
        transposed: bool = False,
    ):
        super().__init__(d_model, transposed=transposed)
        if isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim < 1 or d_model % head_dim:
            raise ValueError(f"head_dim must be a positive divisor of d_model={d_model}, got {head_dim!r}")
        if isinstance(d_state, bool) or not isinstance(d_state, int) or d_state < 2 or d_state % 2:
            raise ValueError(f"d_state must be an even int >= 2 (the diagonal SSM keeps conjugate pairs), got {d_state!r}")
        self.head_dim, self.d_state = head_dim, d_state
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(d_model, d_model) for _ in range(3))
        self.shift = FFTConv(d_model, kernel="shift", d_state=d_state, l_max=d_state, lr=lr)
        self.ssm = FFTConv(d_model * head_dim, kernel="diag", init=init, d_state=d_state, l_max=l_max, lr=lr, **dict(kernel_options or {}))
        self.output_linear = nn.Linear(d_model, d_model)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(x, "... (h d) -> ... h d", d=self.head_dim)

    def _interact(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(..., H) keys and values -> (..., H * head_dim) products, flattened (h, i, j)."""
        kv = torch.einsum("...hi,...hj->...hij", self._heads(k), self._heads(v))
        return rearrange(kv, "... h i j -> ... (h i j)")

    def _combine(self, q: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y = rearrange(y, "... (h i j) -> ... h i j", i=self.head_dim, j=self.head_dim)
        return self.output_linear(rearrange(torch.einsum("...hi,...hij->...hj", self._heads(q), y), "... h j -> ... (h j)"))

    def _forward(self, u: torch.Tensor, state, rate: float, lengths):
        q, k, v = self.q_proj(u), self.k_proj(u), self.v_proj(u)  # (B L H)
        k, shift_state = self.shift(k, None if state is None else state.shift, lengths=lengths)
        y, ssm_state = self.ssm(self._interact(q, k, v), None if state is None else state.ssm, lengths=lengths)
        out = self._combine(q, y)
        return out, (None if state is None else H3State(shift_state, ssm_state))

    def _setup_step(self, **options) -> None:
        """Options (``realization``, ``mode``) go to the diagonal SSM; the shift SSM's FIR has none."""
        self.shift.setup_step()
        self.ssm.setup_step(**options)

    def step_options(self) -> set[str]:
        return self.ssm.step_options() - {"rate"}

    def _step(self, x_t: torch.Tensor, state: H3State):
        q, k, v = self.q_proj(x_t), self.k_proj(x_t), self.v_proj(x_t)
        k, shift_state = self.shift.step(k, state.shift)
        y, ssm_state = self.ssm.step(self._interact(q, k, v), state.ssm)
        return self._combine(q, y), H3State(shift_state, ssm_state)

    def default_state(self, *batch_shape: int, device=None, dtype: torch.dtype | None = None) -> H3State:
        return H3State(self.shift.default_state(*batch_shape, device=device, dtype=dtype), self.ssm.default_state(*batch_shape, device=device, dtype=dtype))

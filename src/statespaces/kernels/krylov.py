"""LSSL's kernel: a dense HiPPO state matrix, bilinear discretisation and the Krylov kernel (Gu, Johnson, Goel,
Saab, Dao, Rudra, Re; NeurIPS 2021, "Combining Recurrent, Convolutional, and Continuous-time Models with Linear
State-Space Layers"; official code state-spaces/s4 ``src/models/sequence/modules/lssl.py``).

    dA = (I - dt/2 A)^-1 (I + dt/2 A),   dB = (I - dt/2 A)^-1 dt B        (per feature: dt (H,))
    k_l = C dA^l dB                                                        (the Krylov matrix [dB, dA dB, ...])

The Krylov matrix is built by doubling, ``X <- [X, dA^(2^j) X]`` with ``dA^(2^j)`` squared each round: O(log L)
batched N x N matmuls (the official ``krylov``).  The state is the dense (B, H, N) x of
``x_t = dA x_(t-1) + dB u_t``; state forwarding uses the same Krylov vectors (the input drive is
``sum_l dA^(L-1-l) dB u_l``) and ``dA^L x``, an O(log L) matrix power.  Everything is real.
"""

from __future__ import annotations

import torch

from ..ops.hippo import MEASURES, transition
from ..ops.sequence import right_align
from ..registry import unknown
from .base import SSMKernel

__all__ = ["KrylovKernel", "krylov"]

LEARN = (0, 1, 2)


def krylov(L: int, A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[b, A b, A^2 b, ..., A^(L-1) b]`` along a new last axis: A (..., N, N), b (..., N) -> (..., N, L)."""
    x = b[..., None]
    power = A
    while x.shape[-1] < L:
        x = torch.cat([x, power @ x], dim=-1)
        if x.shape[-1] < L:
            power = power @ power
    return x[..., :L]


class KrylovKernel(SSMKernel):
    """LSSL kernel: a dense N x N HiPPO transition, bilinear discretisation, Krylov kernel.

    Args (beyond :class:`SSMKernel`; ``init`` is the HiPPO measure):
        init: 'legs' (default, as the official config), 'legt', 'lagt' or 'fout'.
        learn: 0 (the official default in code): A and B fixed; 1 (the official config): one learned A and B shared
            by all features; 2: a learned A and B per feature.  Learned A is a dense matrix initialised at the HiPPO
            matrix (the official code learns it through structured tri-diagonal-inverse forms).
        lr, wd: keys dt/A/B/C (A and B follow the official transition lr 1e-4 only if you pass it).
    """

    def __init__(self, d_model: int, d_state: int = 64, channels: int = 1, *, init: str = "legs", learn: int = 0, **base):
        base.setdefault("dt_transform", "exp")
        super().__init__(d_model, d_state, channels, **base)
        if not any(init in aliases for aliases in MEASURES.values()):
            raise unknown("LSSL measure", init, [a for v in MEASURES.values() for a in v])
        if learn not in LEARN:
            raise ValueError(f"learn must be 0 (fixed A, B), 1 (shared learned) or 2 (learned per feature), got {learn!r}")
        self.init, self.learn = init, learn
        A, B = transition(init, d_state)
        B = B.reshape(-1)
        if learn == 2:
            A, B = A.expand(d_model, -1, -1).clone(), B.expand(d_model, -1).clone()
        if learn:
            self.register_key("A", "A_dense", A.float())
            self.register_key("B", "B_dense", B.float())
        else:
            self.register_buffer("A_dense", A.float())
            self.register_buffer("B_dense", B.float())
        self.register_key("dt", "raw_dt", self.init_dt(1))
        C = torch.randn(channels, d_model, d_state)
        if self.deterministic:
            C = torch.zeros_like(C)
            C[..., 0] = 1.0
        self.register_key("C", "C", C)

    # ---- the discrete system ---------------------------------------------------------------------
    def discrete(self, rate: float = 1.0, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``dA (H, N, N)``, ``dB (H, N)`` by the bilinear transform, in ``dtype``."""
        dtype = dtype or self.raw_dt.dtype
        dt = self.dt(rate, dtype)[:, 0]  # (H,)
        A = self.A_dense.to(dtype).expand(self.H, self.N, self.N)
        B = self.B_dense.to(dtype).expand(self.H, self.N)
        eye = torch.eye(self.N, dtype=dtype, device=dt.device)
        half = (dt / 2)[:, None, None]
        left = eye - half * A
        dA = torch.linalg.solve(left, eye + half * A)
        dB = torch.linalg.solve(left, (dt[:, None] * B)[..., None])[..., 0]
        return dA, dB

    @property
    def precise_dtype(self) -> torch.dtype:
        return torch.float64 if self.raw_dt.device.type != "mps" else torch.float32

    # ---- convolution mode -------------------------------------------------------------------
    def forward(self, L: int, rate: float = 1.0, state: torch.Tensor | None = None):
        dA, dB = self.discrete(rate, self.precise_dtype)
        C = self.C.to(dA.dtype)
        k = torch.einsum("chn,hnl->chl", C, krylov(L, dA, dB)).to(self.raw_dt.dtype)
        k_state = None
        if state is not None:  # output l gains C dA^(l+1) x
            x = torch.einsum("hnm,bhm->bhn", dA, state.to(dA.dtype))
            k_state = torch.einsum("chn,bhnl->bchl", C, krylov(L, dA, x)).to(state.dtype)
        return k, k_state

    def forward_state(self, u: torch.Tensor, state: torch.Tensor, rate: float = 1.0, lengths: torch.Tensor | None = None):
        dA, dB = self.discrete(rate, self.precise_dtype)
        L = u.shape[-1]
        if lengths is not None:
            u = right_align(u, lengths)
        drive = torch.einsum("hnl,bhl->bhn", krylov(L, dA, dB), u.flip(-1).to(dA.dtype))
        if lengths is None:
            carried = torch.einsum("hnm,bhm->bhn", torch.linalg.matrix_power(dA, L), state.to(dA.dtype))
        else:
            carried = torch.stack([torch.linalg.matrix_power(dA, int(n)) @ s[..., None] for n, s in zip(lengths.tolist(), state.to(dA.dtype))])[..., 0]
        return (carried + drive).to(state.dtype)

    # ---- recurrent mode ---------------------------------------------------------------------
    def setup_step(self, realization: str | None = None, rate: float = 1.0) -> None:
        """The dense recurrence is the only realization (the DPLR kernel's names are accepted)."""
        if realization not in (None, "dense", "linear", "diagonal"):
            raise unknown("step realization", realization, (None, "dense"))
        with torch.no_grad():
            dA, dB = self.discrete(rate, self.precise_dtype)
            dtype = self.raw_dt.dtype
            self._step = {"dA": dA.to(dtype), "dB": dB.to(dtype), "C": self.C.detach().to(dtype)}
        self._step_mode = "dense"

    def step(self, u: torch.Tensor, state: torch.Tensor):
        self._require_step()
        s = self._step
        state = torch.einsum("hnm,bhm->bhn", s["dA"], state) + s["dB"] * u[..., None]
        return torch.einsum("chn,bhn->bch", s["C"], state), state

    def default_state(self, *batch_shape: int, device=None, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.zeros(*batch_shape, self.H, self.N, dtype=dtype or self.raw_dt.dtype, device=device or self.raw_dt.device)

    def extra_repr(self) -> str:
        return f"H={self.H}, N={self.N}, channels={self.channels}, init={self.init!r}, learn={self.learn}"

"""Diagonal SSM kernel: S4D (zoh / bilinear), DSS (softmax-normalised zoh) and real-valued (EMA-like) modes.

With ``A = diag(w)`` (H, N2) complex, the kernel is ``k_l = 2 Re sum_n C_n dB_n dA_n^l`` (without the
factor 2 and Re for ``is_real``), computed by :func:`statespaces.ops.vandermonde.vandermonde` (or by the
Cauchy form at roots of unity with ``backend='cauchy'``).  See :mod:`statespaces.ops.discretize` for the
discretisations.
"""

from __future__ import annotations

import math

import torch

from ..ops.cauchy import cauchy_kernel
from ..ops.discretize import DISCS, discretize_diag, dss_scale
from ..ops.hippo import ssm_init
from ..ops.sequence import right_align
from ..ops.vandermonde import vandermonde, vandermonde_transpose
from ..registry import unknown
from .base import SSMKernel, c2r, r2c

__all__ = ["DiagKernel"]

BACKENDS = {"vandermonde": vandermonde, "cauchy": cauchy_kernel}


class DiagKernel(SSMKernel):
    """S4D / DSS kernel.

    Args (beyond :class:`SSMKernel`):
        init: any name of :func:`statespaces.ops.hippo.init_names`; the default 'legs' (as in the reference)
            gives the normal part of the NPLR HiPPO-LegS matrix, i.e. S4D-LegS; 'diag-lin' is S4D-Lin.
        disc: 'zoh' (S4D), 'bilinear', or 'dss' (needs a fixed ``l_max`` for steps and state forwarding).
        is_real: real modes (``d_state`` real decays, no conjugate pairs).
        bandlimit: zero the modes whose frequency ``dt |Im A| / 2 pi`` is >= bandlimit / 2 (S4ND).
        backend: 'vandermonde' (default, matmul form) or 'cauchy' (roots of unity + inverse FFT).
        init_args: options of the diagonal inits (``real_scale``, ``imag_scale``, ``B_init``, ...).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        channels: int = 1,
        *,
        init: str = "legs",
        disc: str = "zoh",
        is_real: bool = False,
        bandlimit: float | None = None,
        backend: str = "vandermonde",
        init_args: dict | None = None,
        **base,
    ):
        super().__init__(d_model, d_state, channels, **base)
        if disc not in DISCS:
            raise unknown("disc", disc, DISCS)
        if backend not in BACKENDS:
            raise unknown("backend", backend, BACKENDS)
        if not is_real and d_state % 2:
            raise ValueError(f"d_state must be even for complex (conjugate-pair) modes, got {d_state}; or set is_real=True")
        if bandlimit is not None and is_real:
            raise ValueError("bandlimit applies to oscillating (complex) modes; it cannot be combined with is_real=True")
        self.disc, self.is_real, self.bandlimit, self.backend = disc, is_real, bandlimit, backend
        self.N2 = d_state if is_real else d_state // 2
        init_args = dict(init_args or {})
        w, _, B = ssm_init(init, self.N2 * 2, 1, self.S, **init_args)  # (S N2) complex128
        self.register_key("dt", "raw_dt", self.init_dt(1 if self.dt_tie else self.N2))
        A_real, A_imag = self.init_A(w)
        self.register_key("A", "raw_A_real", A_real)
        if is_real:
            self.register_key("B", "B", B.real.float())
            C = torch.randn(channels, self.H, self.N2)
        else:
            self.register_key("A", "raw_A_imag", A_imag)
            self.register_key("B", "B", c2r(B.to(torch.complex64)))
            C = torch.randn(channels, self.H, self.N2, dtype=torch.complex64)
        if self.deterministic:
            C = torch.zeros_like(C)
            C[..., 0] = 1.0
        self.register_key("C", "C", C if is_real else c2r(C))

    # ---- continuous and discrete parameters --------------------------------------------------
    def ssm(self, rate: float = 1.0, dtype: torch.dtype | None = None):
        """``dt (H, 1|N2)``, ``A (H, N2)``, ``B (H, N2)``, ``C (C, H, N2)`` (bandlimit applied), in ``dtype``."""
        cast = (lambda t: t) if dtype is None else (lambda t: t.to(dtype))
        dt = self.dt(rate, dtype)
        A = self.A(dtype)
        B = self.expand(cast(self.B) if self.is_real else r2c(cast(self.B)))
        C = cast(self.C) if self.is_real else r2c(cast(self.C))
        if self.bandlimit is not None:
            freqs = (dt * A.imag.abs()) / (2 * math.pi) / rate  # bandlimit refers to the trained rate
            C = C * (freqs < self.bandlimit * 0.5).to(C.dtype)
        return dt, A, B, C

    def discrete(self, rate: float = 1.0, dtype: torch.dtype | None = None):
        """``log_dA (H, N2)``, ``dB (H, N2)``, ``C (C, H, N2)`` (computed in ``dtype``)."""
        dt, A, B, C = self.ssm(rate, dtype)
        log_dA, dB = discretize_diag(dt, A, B, self.disc)
        return log_dA, dB, C

    def _norm_length(self, L: int, rate: float) -> int:
        return L if self.l_max is None else max(1, round(self.l_max / rate))

    def _real(self, x: torch.Tensor) -> torch.Tensor:
        """The kernel of conjugate-pair modes: twice the real part of one mode of each pair."""
        return x if self.is_real else 2 * (x.real if x.is_complex() else x)

    def kernel_from(self, coef: torch.Tensor, log_dA: torch.Tensor, L: int, L_norm: int) -> torch.Tensor:
        """(…, H, N2) per-mode coefficients -> (…, H, L) real kernel ``sum_n coef_n dA_n^l`` (with the DSS
        normalisation over ``L_norm`` when disc='dss')."""
        out_dtype = self.raw_A_real.dtype if self.is_real else self.work_dtype

        def vand(c, z, n):
            if self.backend == "vandermonde" and not self.is_real:  # only the real part is kept: half the work
                return vandermonde(c, z, n, out_dtype=out_dtype, real_part=True)
            return BACKENDS[self.backend](c, z, n, out_dtype=out_dtype)

        if self.disc != "dss":
            return self._real(vand(coef, log_dA, L))
        decay, grow = dss_scale(log_dA, L_norm)
        out = vand(coef * decay, torch.where(log_dA.real > 0, -log_dA, log_dA), L)
        if bool((log_dA.real > 0).any()):
            out = out + vand(coef * grow, -log_dA, L_norm).flip(-1)[..., :L]
        return self._real(out)

    # ---- convolution mode -------------------------------------------------------------------
    def forward(self, L: int, rate: float = 1.0, state: torch.Tensor | None = None):
        log_dA, dB, C = self.discrete(rate, self.precise_dtype)
        L_norm = self._norm_length(L, rate)
        k = self.kernel_from(C * dB, log_dA, L, L_norm)  # (C H L)
        k_state = None
        if state is not None:
            coef = C * (log_dA.exp() * state)[:, None]  # (B C H N2)
            k_state = self.kernel_from(coef, log_dA, L, L_norm)  # (B C H L)
        return k, k_state

    def forward_state(self, u: torch.Tensor, state: torch.Tensor, rate: float = 1.0, lengths: torch.Tensor | None = None):
        log_dA, dB, _ = self.discrete(rate, self.precise_dtype)
        L = u.shape[-1]
        if lengths is not None:
            u = right_align(u, lengths)
            decay = torch.exp(lengths[:, None, None].to(log_dA.dtype) * log_dA)  # (B H N2)
        else:
            decay = torch.exp(L * log_dA)
        drive = vandermonde_transpose(u, log_dA, out_dtype=state.dtype)
        return (decay * state + dB * drive).to(state.dtype)

    # ---- recurrent mode ---------------------------------------------------------------------
    def setup_step(self, realization: str | None = None, rate: float = 1.0) -> None:
        """Prepare ``step``: the diagonal recurrence is its only realization (the names of the DPLR kernel's
        realizations are accepted: for a diagonal A they all coincide)."""
        if realization not in (None, "diagonal", "dense", "linear"):
            raise unknown("step realization", realization, (None, "diagonal", "dense", "linear"))
        with torch.no_grad():
            log_dA, dB, C = self.discrete(rate, self.precise_dtype)
            if self.disc == "dss":
                if self.l_max is None:
                    raise ValueError("disc='dss' normalises the kernel over its length: set l_max to use step mode")
                L_norm = self._norm_length(0, rate)
                decay, grow = dss_scale(log_dA, L_norm)
                growing = log_dA.real > 0
                safe = torch.where(growing, -log_dA, log_dA)
                C = C * torch.where(growing, grow * torch.exp(safe * (L_norm - 1)), decay)
            dtype = self.raw_A_real.dtype if self.is_real else self.work_dtype
            self._step = {"dA": log_dA.exp().to(dtype), "dB": dB.to(dtype), "dC": C.to(dtype)}
        self._step_mode = "diagonal"

    def step(self, u: torch.Tensor, state: torch.Tensor):
        self._require_step()
        s = self._step
        state = s["dA"] * state + s["dB"] * u[..., None]  # (B H N2)
        y = self._real(torch.einsum("chn,...hn->...ch", s["dC"], state))
        return y, state

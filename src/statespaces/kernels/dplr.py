"""DPLR (S4) kernel: ``A = diag(w) - P P^*`` over conjugate pairs, bilinear discretisation.

Notation (per feature h; N2 kept modes, R = rank; the full real system has N = 2 N2 states):

    a = dt / 2,  D = I - a Lambda,  Lambda_bar = (I + a Lambda) D^-1           (diagonal)
    M = I / a + P^* D^-1 P   (R x R, real because P and the state come in conjugate pairs)
    dA = -I + 2 (I - a A)^-1 = Lambda_bar - U V^*,  U = 2 D^-1 P M^-1,  V^* = P^* D^-1
    dB = dt (I - a A)^-1 B

so the recurrence ``x_t = dA x_(t-1) + dB u_t`` is a *diagonal* recurrence driven by the low-rank feedback
``r_t = V^* x_(t-1)`` (R real numbers per step):

    x_t = Lambda_bar x_(t-1) + dB u_t - U r_t,    y_t = C x_t.

Writing ``K[b, c]_l = 2 Re sum_n c_n Lambda_bar_n^l b_n`` for the diagonal kernels (Vandermonde), the
feedback obeys the causal Toeplitz system ``(I + G) r = F * u`` with ``G_l = K[U, V]_(l-1)`` and
``F_l = K[dB, V]_(l-1)``, and

    k = K[dB, C] - K[U, C] * (I + G)^-1 * F                       (truncated power series, exact)

This is the Woodbury identity of the S4 paper applied to truncated generating functions instead of
their values at roots of unity: it needs no ``C~ = C (I - dA^L)`` reparameterisation, so ``C`` is the
true output matrix, the kernel length can change freely (``rate``, ``l_max``), and state forwarding is
exact: the final state is the diagonal state forward (Vandermonde transpose) of ``dB u - U r``.
Nothing here forms a dense N x N matrix or a matrix power; the inverse series costs O(R^3 L log L).
"""

from __future__ import annotations

import torch

from ..ops.hippo import ssm_init
from ..ops.sequence import right_align
from ..ops.series import series_inverse, series_mul
from ..ops.vandermonde import vandermonde, vandermonde_transpose
from ..registry import unknown
from .base import SSMKernel, c2r, r2c
from .diag import BACKENDS

__all__ = ["DPLRKernel", "NumericalError"]

STEP_MODES = ("dense", "linear", "diagonal")


class NumericalError(RuntimeError):
    """A requested computation cannot be carried out accurately in floating point."""


def _real_form(M1: torch.Tensor, M2: torch.Tensor) -> torch.Tensor:
    """The real (H, N, N) matrix of ``x -> M1 x + M2 conj(x)`` on ``s = [Re x; Im x]``."""
    return torch.cat([torch.cat([(M1 + M2).real, (M2 - M1).imag], -1), torch.cat([(M1 + M2).imag, (M1 - M2).real], -1)], -2)


def _shift(x: torch.Tensor) -> torch.Tensor:
    """Delay a sequence by one step: (..., L) -> (..., L) with a zero in front."""
    return torch.nn.functional.pad(x, (1, 0))[..., :-1]


class DPLRKernel(SSMKernel):
    """S4 kernel (NPLR/DPLR).

    Args (beyond :class:`SSMKernel`):
        init: a HiPPO measure ('legs', 'legt', 'lagt', 'fout'), 'dplr-X'/'diag-X', or a combination.
        rank: R, rank of the low-rank term (legt needs 2).
        disc: only 'bilinear' (the DPLR structure survives the bilinear transform, not ZOH).
        backend: 'vandermonde' (default) or 'cauchy' for the diagonal kernels.
        init_args: options of the diagonal inits (e.g. ``P_scale`` for dplr-*).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        channels: int = 1,
        *,
        init: str = "legs",
        rank: int = 1,
        disc: str = "bilinear",
        backend: str = "vandermonde",
        init_args: dict | None = None,
        **base,
    ):
        super().__init__(d_model, d_state, channels, **base)
        if disc != "bilinear":
            raise ValueError(f"mode='nplr' supports disc='bilinear' only (got {disc!r}); use mode='diag' for zoh/dss")
        if not self.dt_tie:
            raise ValueError("dt_tie=False needs a diagonal A (mode='diag'); the DPLR kernel uses one dt per feature")
        if d_state % 2:
            raise ValueError(f"d_state must be even for the DPLR (conjugate-pair) form, got {d_state}")
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be a positive int, got {rank!r}")
        if backend not in BACKENDS:
            raise unknown("backend", backend, BACKENDS)
        self.rank, self.backend, self.disc = rank, backend, disc
        self.N2 = d_state // 2
        w, P, B = ssm_init(init, d_state, rank, self.S, **dict(init_args or {}))
        self.register_key("dt", "raw_dt", self.init_dt(1))
        A_real, A_imag = self.init_A(w)
        self.register_key("A", "raw_A_real", A_real)
        self.register_key("A", "raw_A_imag", A_imag)
        self.register_key("P", "P", c2r(P.to(torch.complex64)))
        self.register_key("B", "B", c2r(B.to(torch.complex64)))
        C = torch.randn(channels, self.H, self.N2, dtype=torch.complex64)
        if self.deterministic:
            C = torch.zeros_like(C)
            C[..., 0] = 1.0
        self.register_key("C", "C", c2r(C))

    # ---- structure -------------------------------------------------------------------------
    def ssm(self, rate: float = 1.0, dtype: torch.dtype | None = None):
        """Continuous parameters ``dt (H, 1)``, ``w (H, N2)``, ``P (R, H, N2)``, ``B (H, N2)``, ``C (C, H, N2)``,
        so that ``A = diag(w) - P P^*`` over conjugate pairs."""
        cast = (lambda t: t.to(dtype)) if dtype is not None else (lambda t: t)
        return self.dt(rate, dtype), self.A(dtype), self.expand(r2c(cast(self.P))), self.expand(r2c(cast(self.B))), r2c(cast(self.C))

    def structure(self, rate: float = 1.0, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """Discrete DPLR structure: ``lam (H, N2)``, ``log_lam``, ``U (R, H, N2)``, ``Q (R, H, N2)`` (= V^*),
        ``dB (H, N2)``, ``C (C, H, N2)``; computed in ``dtype`` (float64 for reference and step set-up)."""
        dt, w, p, B, C = self.ssm(rate, dtype)
        a = dt / 2
        d = 1 - a * w
        lam = (1 + a * w) / d
        pd = p / d
        eye = torch.eye(self.rank, dtype=dt.dtype, device=dt.device)
        M = eye / a[..., None] + 2 * torch.einsum("rhn,shn->hrs", p.conj(), pd).real  # (H R R)
        Minv = torch.linalg.inv(M)
        U = 2 * torch.einsum("shn,hsr->rhn", pd, Minv.to(pd.dtype))
        Q = p.conj() / d
        beta = 2 * torch.einsum("rhn,hn->hr", Q, B).real
        dB = dt * (B / d - torch.einsum("rhn,hr->hn", pd, (Minv @ beta[..., None])[..., 0].to(pd.dtype)))
        return {"lam": lam, "log_lam": torch.log(lam), "U": U, "Q": Q, "dB": dB, "C": C}

    def _vand(self, coef: torch.Tensor, log_lam: torch.Tensor, L: int) -> torch.Tensor:
        # the factor 2 on the (H, N2) coefficients, not on the (rows, H, L) output: one pass fewer each way
        if self.backend == "vandermonde":  # the real part only: half the work of the complex product
            return vandermonde(2 * coef, log_lam, L, out_dtype=self.work_dtype, real_part=True)
        return BACKENDS[self.backend](2 * coef, log_lam, L, out_dtype=self.work_dtype).real

    def _feedback(self, st: dict, L: int, with_C: bool):
        """Diagonal kernels against [C,] V and the feedback series: X = (I + G)^-1 (H R R L), F (H R 1 L),
        and K[U, C] (H C R L) and K[dB, C] (C H L) when ``with_C``."""
        R = self.rank
        bs = torch.cat([st["dB"][None], st["U"]])  # (1+R H N2)
        cs = torch.cat([st["C"], st["Q"]]) if with_C else st["Q"]
        K = self._vand(cs[:, None] * bs[None], st["log_lam"], L)  # (c 1+R H L)
        # split, not sliced: one backward node that concatenates, where each slice's backward fills a zero
        # tensor of the whole (rows, H, L) output and adds into it
        Kc, Kq = K.split([self.channels, R]) if with_C else (None, K)
        Kqb, Kqu = Kq.split([1, R], dim=1)
        G = _shift(Kqu).permute(2, 0, 1, 3)  # (H Rq Ru L)
        G = G + torch.nn.functional.pad(torch.eye(R, dtype=G.dtype, device=G.device)[..., None], (0, L - 1))
        F = _shift(Kqb[:, 0]).permute(1, 0, 2)[..., None, :]  # (H R 1 L)
        X = series_inverse(G)
        if not with_C:
            return X, F, None, None
        Kcb, Kcu = Kc.split([1, R], dim=1)
        return X, F, Kcu.permute(2, 0, 1, 3), Kcb[:, 0]

    # ---- convolution mode -------------------------------------------------------------------
    def forward(self, L: int, rate: float = 1.0, state: torch.Tensor | None = None):
        st = self.structure(rate, self.precise_dtype)
        state = None if state is None else self._to_canonical(state)
        X, F, Kuc, Kbc = self._feedback(st, L, with_C=True)
        XF = series_mul(X, F)  # (H R 1 L)
        k = Kbc - series_mul(Kuc, XF)[:, :, 0].transpose(0, 1)  # (C H L)
        k_state = None
        if state is not None:
            direct, h = self._state_terms(st, state, L)
            r = series_mul(X, h)  # (B H R 1 L)
            k_state = direct - series_mul(Kuc, r)[..., 0, :].transpose(1, 2)  # (B C H L)
        return k, k_state

    def _state_terms(self, st: dict, state: torch.Tensor, L: int):
        """Output ``2 Re C Lambda_bar^(l+1) x`` (B C H L) and feedback drive ``2 Re V^* Lambda_bar^l x`` (B H R 1 L)."""
        coef = torch.cat([st["C"][None] * (st["lam"] * state)[:, None], st["Q"][None] * state[:, None]], dim=1)
        S = self._vand(coef, st["log_lam"], L)  # (B C+R H L)
        return S[:, : self.channels], S[:, self.channels :].transpose(1, 2)[..., None, :]

    def forward_state(self, u: torch.Tensor, state: torch.Tensor, rate: float = 1.0, lengths: torch.Tensor | None = None):
        step_form = state
        state = self._to_canonical(state)
        st = self.structure(rate, self.precise_dtype)
        L = u.shape[-1]
        X, F, _, _ = self._feedback(st, L, with_C=False)
        _, h = self._state_terms(st, state, L)
        r = series_mul(X, series_mul(F, u[:, :, None, None, :]) + h)[..., 0, :]  # (B H R L)
        log_lam = st["log_lam"]
        if lengths is not None:
            u, r = right_align(u, lengths), right_align(r.transpose(1, 2), lengths).transpose(1, 2)
            decay = torch.exp(lengths[:, None, None].to(log_lam.dtype) * log_lam)
        else:
            decay = torch.exp(L * log_lam)
        drive_u = vandermonde_transpose(u, log_lam, out_dtype=state.dtype)  # (B H N2)
        drive_r = vandermonde_transpose(r.transpose(1, 2), log_lam, out_dtype=state.dtype)  # (B R H N2)
        out = decay * state + st["dB"] * drive_u - torch.einsum("rhn,brhn->bhn", st["U"], drive_r.to(st["U"].dtype))
        return self._to_step_form(out.to(state.dtype), like=step_form)

    # ---- recurrent mode ---------------------------------------------------------------------
    def setup_step(self, realization: str | None = None, rate: float = 1.0, tol: float = 1e-4) -> None:
        """Prepare ``step``. Realizations of the same system (all exact in exact arithmetic):

        * 'linear' (default): O(N R) per step, ``x' = Lambda_bar x - U (V^* x) + dB u``.
        * 'dense': O(N^2) per step with the materialised dA (as two N2 x N2 complex blocks).
        * 'diagonal': O(N) per step in the eigenbasis of dA.  HiPPO matrices are far from normal (the exact
          LegS eigenvectors grow like 2^(4N/3), S4 paper Lemma 3.2), so the eigenbasis is computed in float64
          and the step runs in complex128 whatever the layer's dtype (outputs are cast back).  The
          realisation is checked against the exact kernel over ``l_max`` (or 1024) steps at set-up; if its
          relative error (plus float64 cancellation) exceeds ``tol``, or it is not stable, it raises
          :class:`NumericalError` rather than return wrong outputs.  While this realization is set up, the
          kernel's state (for ``step``, ``forward(state=...)`` and ``default_state`` alike) lives in the
          eigenbasis, (*batch, H, N) complex128: the change of basis happens inside the kernel.
        """
        mode = realization or "linear"
        if mode not in STEP_MODES:
            raise unknown("step realization", mode, STEP_MODES)
        work = torch.complex128 if self.raw_A_real.dtype == torch.float64 else torch.complex64
        with torch.no_grad():
            st = self.structure(rate, dtype=torch.float64)
            lam, U, Q, dB, C = st["lam"], st["U"], st["Q"], st["dB"], st["C"]
            if mode == "linear":
                cache = {"lam": lam, "U": U, "Q": Q, "dB": dB, "C": C}
            elif mode == "dense":
                M1 = torch.diag_embed(lam) - torch.einsum("rhn,rhm->hnm", U, Q)
                M2 = -torch.einsum("rhn,rhm->hnm", U, Q.conj())
                cache = {"M1": M1, "M2": M2, "dB": dB, "C": C}
            else:
                cache = self._diagonalize(st, tol, rate)
                work = torch.complex128
            self._step = {k: v.to(work) for k, v in cache.items()}
        self._step_mode = mode

    def _diagonalize(self, st: dict, tol: float, rate: float) -> dict[str, torch.Tensor]:
        # The bilinear dA = (I - a A)^-1 (I + a A) is a rational function of A, so it has A's eigenvectors
        # for every step size: the basis comes from the continuous A, hence the same for every ``rate``
        # (a state in it stays valid when setup_step is called again at another rate).
        dt, w, p, _, _ = self.ssm(rate, torch.float64)
        A_r = _real_form(torch.diag_embed(w) - torch.einsum("rhn,rhm->hnm", p, p.conj()), -torch.einsum("rhn,rhm->hnm", p, p))
        dB, C = st["dB"], st["C"]
        B_r = torch.cat([dB.real, dB.imag], -1)  # (H N)
        C_r = torch.cat([2 * C.real, -2 * C.imag], -1)  # (C H N)
        lam_A, W = torch.linalg.eig(A_r)
        a = (dt / 2).to(lam_A.dtype)
        mu = (1 + a * lam_A) / (1 - a * lam_A)
        b = torch.linalg.solve(W, B_r.to(W.dtype)[..., None])[..., 0]  # (H N)
        c = torch.einsum("chn,hnm->chm", C_r.to(W.dtype), W)  # (C H N)
        # accuracy of the diagonal realisation against the exact kernel, and its cancellation factor
        L = self.l_max or 1024
        k_exact = self._exact_kernel(st, L)  # (C H L)
        k_diag = vandermonde(c * b, torch.log(mu), L).real
        scale = k_exact.abs().amax(-1).clamp(min=1e-30)
        realisation = ((k_diag - k_exact).abs().amax(-1) / scale).max().item()
        cancellation = ((c * b).abs().sum(-1) / scale).max().item()
        err = realisation + torch.finfo(torch.float64).eps * cancellation
        radius = mu.abs().max().item()
        if radius >= 1.0 and st["lam"].abs().max().item() < 1.0:
            raise NumericalError(
                f"step mode 'diagonal': the computed eigenvalues reach |mu|={radius:.6f} >= 1 although dA is stable; "
                f"use realization='linear' (O(N) per step, exact) or realization='dense'"
            )
        if not err <= tol:
            cond = torch.linalg.cond(W).max().item()
            raise NumericalError(
                f"step mode 'diagonal' cannot represent this DPLR matrix accurately: its eigenvector basis has "
                f"condition number {cond:.2e}, the diagonal realisation is off by {realisation:.2e} (relative, "
                f"float64) and loses a factor {cancellation:.2e} to cancellation, an estimated relative error "
                f"{err:.2e} > tol={tol:g}. HiPPO matrices such as LegS are not stably diagonalisable; use "
                f"realization='linear' (O(N) per step, exact) or realization='dense'."
            )
        return {"mu": mu, "b": b, "c": c, "W": W, "W_inv": torch.linalg.inv(W)}

    def _exact_kernel(self, st: dict, L: int) -> torch.Tensor:
        X, F, Kuc, Kbc = self._feedback(st, L, with_C=True)
        return Kbc - series_mul(Kuc, series_mul(X, F))[:, :, 0].transpose(0, 1)

    def step(self, u: torch.Tensor, state: torch.Tensor):
        self._require_step()
        s = self._step
        u = u[..., None]
        if self._step_mode == "linear":
            r = 2 * torch.einsum("rhn,...hn->...rh", s["Q"], state).real
            state = s["lam"] * state - torch.einsum("rhn,...rh->...hn", s["U"], r.to(state.dtype)) + s["dB"] * u
        elif self._step_mode == "dense":
            state = torch.einsum("hnm,...hm->...hn", s["M1"], state) + torch.einsum("hnm,...hm->...hn", s["M2"], state.conj()) + s["dB"] * u
        else:  # complex128 eigenbasis (see setup_step)
            state = s["mu"] * state + s["b"] * u.to(s["b"].dtype)
            return torch.einsum("chn,...hn->...ch", s["c"], state).real.to(u.real.dtype), state
        return 2 * torch.einsum("chn,...hn->...ch", s["C"], state).real, state

    def default_state(self, *batch_shape: int, device=None, dtype: torch.dtype | None = None) -> torch.Tensor:
        if self._step_mode == "diagonal":  # eigenbasis of the real N-dim system, complex128 (zero maps to zero)
            return torch.zeros(*batch_shape, self.H, self.N, dtype=torch.complex128, device=device or self.raw_A_real.device)
        return super().default_state(*batch_shape, device=device, dtype=dtype)

    def _to_canonical(self, state: torch.Tensor) -> torch.Tensor:
        """A state in the current form -> the canonical (*batch, H, N2) form the kernel math uses."""
        if self._step_mode != "diagonal":
            return state
        s = torch.einsum("hnm,...hm->...hn", self._step["W"], state).real
        return torch.complex(s[..., : self.N2], s[..., self.N2 :]).to(super().default_state(device="meta").dtype)

    def _to_step_form(self, state: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_to_canonical` (``like``: a state in the current form, for its dtype)."""
        if self._step_mode != "diagonal":
            return state
        s = torch.cat([state.real, state.imag], -1).to(self._step["W_inv"].dtype)  # (*B H N)
        return torch.einsum("hnm,...hm->...hn", self._step["W_inv"], s).to(like.dtype)

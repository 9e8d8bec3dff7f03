"""HiPPO transition matrices, their normal-plus-low-rank (NPLR) form, and diagonal inits.

Conventions (all float64 / complex128; callers cast):

* ``transition(measure, N) -> (A (N, N), B (N,))`` for the continuous system
  ``x'(t) = A x(t) + B u(t)`` (the LegS system is ``x' = (A x + B u) / t``).
* ``rank_correction(measure, N, rank) -> P (rank, N)`` such that ``A + P^T P`` is
  normal (skew-symmetric plus a multiple of the identity).
* ``nplr(measure, N, rank) -> (w (N2,), P (rank, N2), B (N2,), V (N, N2))`` with
  ``V^H (A + P^T P) V = diag(w)`` over the ``N/2`` kept modes.  The kept modes are
  one of each conjugate pair (non-negative imaginary part); ``[V, conj(V)]`` is a
  unitary basis of C^N, so the real system is recovered as
  ``A = V diag(w) V^H + conj(...) - P^T P``.
* ``diagonal(init, N) -> (w (N2,), B (N2,))`` for the diagonal (S4D) inits.

Sources: HiPPO (Gu et al. 2020) for legs/legt/lagt, "How to Train Your HiPPO"
(Gu et al. 2022) for fout, the S4D paper (Gu, Gupta, Goel, Re 2022) for diag-*.
"""

from __future__ import annotations

import math

import torch

from ..registry import unknown

__all__ = [
    "MEASURES",
    "DIAG_INITS",
    "COMBINATIONS",
    "transition",
    "rank_correction",
    "nplr",
    "diagonal",
    "init_names",
    "expand_init",
    "ssm_init",
]

_F64 = torch.float64
_C128 = torch.complex128

# canonical name -> aliases
MEASURES = {"legs": ("legs",), "legt": ("legt",), "lagt": ("lagt",), "fout": ("fout", "fourier")}
DIAG_INITS = ("lin", "inv", "legs", "real", "rand", "quad")
_DIAG_ALIASES = {"linear": "lin", "inverse": "inv", "hippo": "legs", "random": "rand", "quadratic": "quad"}
COMBINATIONS = {
    "hippo": ("legs", "fout"),
    "diag": ("diag-inv", "diag-lin"),
    "all": ("legs", "fout", "diag-inv", "diag-lin"),
}


def _measure(name: str) -> str:
    for canon, aliases in MEASURES.items():
        if name in aliases:
            return canon
    raise unknown("HiPPO measure", name, sorted(a for v in MEASURES.values() for a in v))


def transition(measure: str, N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """HiPPO transition ``(A (N, N), B (N,))`` in float64."""
    measure = _measure(measure)
    n = torch.arange(N, dtype=_F64)
    if measure == "legs":
        # A_nk = -sqrt(2n+1) sqrt(2k+1) for n > k, -(n+1) for n = k, 0 above;  B_n = sqrt(2n+1)
        r = (2 * n + 1).sqrt()
        A = -(torch.tril(r[:, None] * r[None, :], -1) + torch.diag(n + 1))
        B = r.clone()
    elif measure == "legt":
        # A_nk = -(1/2) sqrt(2n+1) sqrt(2k+1) * (1 if n >= k else (-1)^(n-k));  B_n = sqrt(2n+1) / 2
        # (the LMU matrix on a window of length 2, i.e. halved for timescale parity with legs)
        r = (2 * n + 1).sqrt()
        i, j = n[:, None], n[None, :]
        sign = torch.where(i >= j, torch.ones_like(i * j), (-1.0) ** (i - j))
        A = -0.5 * r[:, None] * sign * r[None, :]
        B = 0.5 * r
    elif measure == "lagt":
        # generalized Laguerre with beta = 1: A = I/2 - tril(ones), B = 1
        A = torch.eye(N, dtype=_F64) / 2 - torch.tril(torch.ones(N, N, dtype=_F64))
        B = torch.ones(N, dtype=_F64)
    else:  # fout: truncated Fourier basis on a sliding window (HTTYH, section 4)
        if N % 2:
            raise ValueError(f"measure 'fout' needs an even d_state, got {N}")
        freqs = torch.arange(N // 2, dtype=_F64)
        d = torch.stack([torch.zeros(N // 2, dtype=_F64), freqs], dim=-1).reshape(-1)[1:]
        A = math.pi * (-torch.diag(d, 1) + torch.diag(d, -1))
        B = torch.zeros(N, dtype=_F64)
        B[0::2] = math.sqrt(2)
        B[0] = 1.0
        # the other endpoint of the window, u(t - 1), appears as a rank-1 term
        A = A - B[:, None] * B[None, :]
    return A, B


def rank_correction(measure: str, N: int, rank: int = 1) -> torch.Tensor:
    """Low-rank ``P (rank, N)`` such that ``A + P^T P`` is normal; extra rows are zero."""
    measure = _measure(measure)
    n = torch.arange(N, dtype=_F64)
    if measure == "legs":
        P = (n + 0.5).sqrt()[None]  # A + P P^T = -I/2 + skew
    elif measure == "legt":
        if rank < 2:
            raise ValueError(f"measure 'legt' needs rank >= 2 (its correction has rank 2), got rank={rank}")
        r = (2 * n + 1).sqrt()
        P0, P1 = r.clone(), r.clone()
        P0[0::2] = 0.0
        P1[1::2] = 0.0
        P = torch.stack([P0, P1]) * math.sqrt(0.5)
    elif measure == "lagt":
        P = torch.full((1, N), math.sqrt(0.5), dtype=_F64)
    else:  # fout
        P = torch.zeros(1, N, dtype=_F64)
        P[0, 0::2] = math.sqrt(2)
        P[0, 0] = 1.0
    if rank < P.shape[0]:
        raise ValueError(f"measure {measure!r} needs rank >= {P.shape[0]}, got {rank}")
    if rank > P.shape[0]:
        P = torch.cat([P, torch.zeros(rank - P.shape[0], N, dtype=_F64)])
    return P


def nplr(measure: str, N: int, rank: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normal-plus-low-rank form of a HiPPO matrix.

    Returns ``w (N2,)``, ``P (rank, N2)``, ``B (N2,)``, ``V (N, N2)`` (complex128) with
    ``V^H (A + P^T P) V = diag(w)``, ``P = (V^H P^T)^T`` and ``B = V^H B``.
    """
    if N % 2:
        raise ValueError(f"d_state must be even for the NPLR (conjugate-pair) form, got {N}")
    A, B = transition(measure, N)
    P = rank_correction(measure, N, rank)
    AP = A + P.T @ P
    # AP = c I + S with S skew-symmetric; check it, since everything below relies on it
    c = torch.diagonal(AP).mean()
    S = AP - c * torch.eye(N, dtype=_F64)
    if (S + S.T).abs().max() > 1e-8 * max(1.0, S.abs().max().item()):
        raise RuntimeError(f"A + P^T P is not normal for measure {measure!r}")
    # -iS is Hermitian: eigenvalues mu real, S = V diag(i mu) V^H
    mu, U = torch.linalg.eigh(-1j * S.to(_C128))
    tol = 1e-7 * max(1.0, mu.abs().max().item())
    pos = mu > tol
    zero = mu.abs() <= tol
    V_pos = U[:, pos]
    # zero eigenvalues: the null space of the real matrix S is spanned by real vectors; pair them up as
    # (u1 + i u2)/sqrt(2) so that [V, conj V] stays a unitary basis (the Fourier case has one such pair)
    n_zero = int(zero.sum())
    if n_zero % 2:
        raise RuntimeError(f"odd number of zero eigenvalues ({n_zero}) for measure {measure!r}")
    if n_zero:
        Z = U[:, zero]
        real_basis = torch.linalg.svd(torch.cat([Z.real, Z.imag], dim=1), full_matrices=False)[0][:, :n_zero]
        pairs = (real_basis[:, 0::2] + 1j * real_basis[:, 1::2]) / math.sqrt(2)
        V = torch.cat([pairs.to(_C128), V_pos], dim=1)
        mu_kept = torch.cat([torch.zeros(n_zero // 2, dtype=_F64), mu[pos]])
    else:
        V, mu_kept = V_pos, mu[pos]
    if V.shape[1] != N // 2:
        raise RuntimeError(f"expected {N // 2} kept modes for measure {measure!r}, got {V.shape[1]}")
    w = c + 1j * mu_kept
    Vh = V.conj().T
    return w.to(_C128), (Vh @ P.T.to(_C128)).T.contiguous(), Vh @ B.to(_C128), V


def _diag_name(init: str) -> str:
    name = _DIAG_ALIASES.get(init, init)
    if name not in DIAG_INITS:
        raise unknown("diagonal init", init, DIAG_INITS)
    return name


def diagonal(
    init: str,
    N: int,
    *,
    real_scale: float = 1.0,
    imag_scale: float = 1.0,
    real_random: bool = False,
    imag_random: bool = False,
    B_init: str = "constant",
    B_scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Diagonal state matrix ``w (N2,)`` and input vector ``B (N2,)`` (complex128), S4D paper section 4.

    * lin  (S4D-Lin):  w_n = -1/2 + i pi n
    * inv  (S4D-Inv):  w_n = -1/2 + i N/pi (N/(2n+1) - 1)
    * legs (S4D-LegS): the normal part of the NPLR form of HiPPO-LegS (B from it too)
    * real (S4D-Real): w_n = -(n+1)
    * rand:            w_n = -1/2 + i exp(z_n), z_n ~ N(0, 1)   (GSS)
    * quad:            w_n = -1/2 + i (2n+1)^2 / pi
    """
    if N % 2:
        raise ValueError(f"d_state must be even for complex diagonal inits, got {N}")
    init = _diag_name(init)
    n = torch.arange(N // 2, dtype=_F64)
    if init == "legs":
        w, _, B, _ = nplr("legs", N)
        return w, B
    real = -0.5 * torch.ones(N // 2, dtype=_F64)
    if real_random:
        real = -torch.rand(N // 2, dtype=_F64, generator=generator)
    if init == "lin":
        imag = math.pi * n
    elif init == "inv":
        imag = N / math.pi * (N / (2 * n + 1) - 1)
    elif init == "real":
        real, imag = -(n + 1), torch.zeros_like(n)
    elif init == "rand":
        imag = torch.randn(N // 2, dtype=_F64, generator=generator).exp()
    else:  # quad
        imag = (2 * n + 1) ** 2 / math.pi
    if imag_random:
        imag = N / 2 * torch.rand(N // 2, dtype=_F64, generator=generator)
    w = real_scale * real + 1j * imag_scale * imag
    if B_init == "constant":
        B = torch.ones(N // 2, dtype=_C128)
    elif B_init == "random":
        B = torch.randn(N // 2, dtype=_C128, generator=generator)
    elif B_init == "alternating":
        B = ((-1.0) ** n).to(_C128)
    elif B_init == "unit-cw":
        B = torch.exp(-2j * math.pi * n / N)
    elif B_init == "unit-ccw":
        B = torch.exp(2j * math.pi * n / N)
    else:
        raise unknown("B_init", B_init, ("constant", "random", "alternating", "unit-cw", "unit-ccw"))
    return w.to(_C128), B_scale * B


def init_names() -> list[str]:
    """Every accepted ``init`` name (including aliases)."""
    hippo = [a for v in MEASURES.values() for a in v]
    diag_all = list(DIAG_INITS) + list(_DIAG_ALIASES)
    return sorted(hippo + [f"diag-{d}" for d in diag_all] + [f"dplr-{d}" for d in diag_all] + list(COMBINATIONS))


def expand_init(init: str) -> tuple[str, ...]:
    """Split a combination name into its member inits; validate every name."""
    members = COMBINATIONS.get(init, (init,))
    for m in members:
        kind, _, rest = m.partition("-")
        if kind in ("diag", "dplr") and rest:
            try:
                _diag_name(rest)
            except ValueError:
                raise unknown("init", init, init_names()) from None
        else:
            try:
                _measure(m)
            except ValueError:
                raise unknown("init", init, init_names()) from None
    return members


def ssm_init(
    init: str,
    N: int,
    rank: int,
    S: int,
    *,
    P_scale: float = 1.0,
    generator: torch.Generator | None = None,
    **diag_args,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Initial ``w (S, N2)``, ``P (rank, S, N2)``, ``B (S, N2)`` (complex128) for ``S`` SSM copies.

    ``init`` is a HiPPO measure (NPLR form), ``diag-X`` (diagonal, P = 0), ``dplr-X`` (diagonal plus a
    random rank-``rank`` P scaled by ``P_scale``; ``dplr-legs`` uses the HiPPO P) or a combination
    name, whose members are spread evenly over the S copies (S must be a multiple of their count).
    """
    members = expand_init(init)
    if S % len(members):
        raise ValueError(f"init {init!r} combines {len(members)} inits; n_ssm={S} must be a multiple of that")
    ws, Ps, Bs = [], [], []
    for m in members:
        s = S // len(members)
        kind, _, rest = m.partition("-")
        if kind in ("diag", "dplr") and rest:
            w, B = diagonal(rest, N, generator=generator, **diag_args)
            if kind == "dplr" and _diag_name(rest) == "legs":
                P = nplr("legs", N, rank)[1]
            elif kind == "dplr":
                P = torch.randn(rank, N // 2, dtype=_C128, generator=generator) * P_scale
            else:
                P = torch.zeros(rank, N // 2, dtype=_C128)
        else:
            if diag_args:
                raise TypeError(f"options {sorted(diag_args)} only apply to diag-*/dplr-* inits, not {m!r}")
            w, P, B, _ = nplr(m, N, rank)
        ws.append(w.expand(s, -1))
        Ps.append(P[:, None].expand(-1, s, -1))
        Bs.append(B.expand(s, -1))
    return torch.cat(ws).clone(), torch.cat(Ps, dim=1).clone(), torch.cat(Bs).clone()

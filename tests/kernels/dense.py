"""Slow, obvious references: materialise the full N x N discrete system and loop the recurrence."""

import math

import torch

from statespaces.kernels import DiagKernel, DPLRKernel

# the positivity transforms written out again, so that a kernel applying the wrong one to a tensor (dt's to A,
# say) disagrees with the references below
TRANSFORMS = {
    "none": lambda x: x,
    "exp": torch.exp,
    "relu": lambda x: torch.clamp(x, min=0) + 1e-4,
    "sigmoid": lambda x: 1 / (1 + torch.exp(-x)),
    "softplus": lambda x: torch.log1p(torch.exp(x)),
}


def raw_ssm(kernel, rate=1.0):
    """Continuous parameters straight from the raw tensors: dt (H, 1|N2), w (H, N2), P (R, H, N2) or None,
    B (H, N2), C (Ch, H, N2); feature h uses copy h % n_ssm; bandlimit zeroes C of the fast modes."""
    def copies(x):  # (..., S, N) -> (..., H, N)
        return torch.cat([x] * (kernel.H // kernel.S), dim=-2)

    def cplx(x):
        return torch.complex(x[..., 0], x[..., 1])

    real = getattr(kernel, "is_real", False)
    dt = TRANSFORMS[kernel.dt_transform](kernel.raw_dt) * rate
    w = -TRANSFORMS[kernel.real_transform](kernel.raw_A_real)
    if not real:
        w = torch.complex(w, TRANSFORMS[kernel.imag_transform](kernel.raw_A_imag))
    w = copies(w)
    B = copies(kernel.B if real else cplx(kernel.B))
    C = kernel.C if real else cplx(kernel.C)
    P = copies(cplx(kernel.P)) if isinstance(kernel, DPLRKernel) else None
    if getattr(kernel, "bandlimit", None) is not None:
        C = C * (dt / rate * w.imag.abs() / (2 * math.pi) < kernel.bandlimit / 2)
    return dt, w, P, B, C


def full_system(kernel, rate=1.0):
    """Dense discrete system of a kernel over the full state [x; conj x] (or the real modes):
    returns dA (H, N, N), dB (H, N), C (Ch, H, N), all complex128, with y = Re(C x) exactly real."""
    kernel = kernel.double()
    dt, w, p, B, C = raw_ssm(kernel, rate)
    if isinstance(kernel, DPLRKernel):
        Pf = torch.cat([p, p.conj()], -1)  # (R H N)
        A = torch.diag_embed(torch.cat([w, w.conj()], -1)) - torch.einsum("rhn,rhm->hnm", Pf, Pf.conj())
        disc = "bilinear"
    else:
        if kernel.is_real:
            A = torch.diag_embed(w.to(torch.complex128))
            B, C = B.to(torch.complex128), C.to(torch.complex128)
        else:
            A = torch.diag_embed(torch.cat([w, w.conj()], -1))
            dt = torch.cat([dt, dt], -1) if dt.shape[-1] > 1 else dt
        disc = kernel.disc
    if not (isinstance(kernel, DiagKernel) and kernel.is_real):
        B = torch.cat([B, B.conj()], -1)
        C = torch.cat([C, C.conj()], -1)
    N = A.shape[-1]
    I = torch.eye(N, dtype=torch.complex128)
    dtm = torch.diag_embed(dt.to(torch.complex128).expand(-1, N))  # (H N N): per-state dt for dt_tie=False
    if disc in ("zoh", "dss"):
        dA = torch.linalg.matrix_exp(dtm @ A)
        dB = torch.linalg.solve(A, ((dA - I) @ B[..., None]))[..., 0]
    else:
        dA = torch.linalg.solve(I - dtm @ A / 2, I + dtm @ A / 2)
        dB = torch.linalg.solve(I - dtm @ A / 2, dtm @ B[..., None])[..., 0]
    return dA, dB, C


def dense_kernel(kernel, L, rate=1.0):
    dA, dB, C = full_system(kernel, rate)
    x, ks = dB, []
    for _ in range(L):
        ks.append(torch.einsum("chn,hn->ch", C, x))
        x = torch.einsum("hnm,hm->hn", dA, x)
    k = torch.stack(ks, -1)
    assert k.imag.abs().max() < 1e-9 * max(1.0, k.abs().max().item())
    return k.real


def dense_run(kernel, u, x0, rate=1.0):
    """Loop x_t = dA x_(t-1) + dB u_t, y_t = C x_t from the full-basis state x0: (B H L) -> (B C H L), x_L."""
    dA, dB, C = full_system(kernel, rate)
    x, ys = x0, []
    for t in range(u.shape[-1]):
        x = torch.einsum("hnm,bhm->bhn", dA, x) + dB * u[..., t, None]
        ys.append(torch.einsum("chn,bhn->bch", C, x))
    return torch.stack(ys, -1).real, x


def to_full(kernel, state):
    """Kernel state (B, H, N2) -> full-basis state (B, H, N)."""
    if isinstance(kernel, DiagKernel) and kernel.is_real:
        return state.to(torch.complex128)
    return torch.cat([state, state.conj()], -1)

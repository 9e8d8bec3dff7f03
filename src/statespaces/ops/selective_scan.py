"""Mamba's selective scan with the exact signature and semantics of mamba_ssm's ``selective_scan_fn``, on any
device and dtype, differentiable, memory-bounded.

With ``delta <- softplus(delta + delta_bias)`` (each step optional), per batch b, channel d, state n, step t:

    x_t = exp(delta_t A) * x_(t-1) + delta_t B_t u_t          (ZOH on A, Euler on B: Mamba paper, eq. 4)
    y_t = C_t . x_t                                           (2 Re(C_t . x_t) for complex A)
    out = (y + D u) * silu(z)

Shapes (mamba_ssm's letters: b batch, d channels, l length, n states, g groups):
    u, delta, z: (b, d, l);  A: (d, n) real or complex;  D, delta_bias: (d,)
    B, C: (d, n) constant, (b, n, l) per step, or (b, g, n, l) grouped (channel d uses group d // (d / g));
          for complex A a per-step B/C is given as real (b, n, 2l) / (b, g, n, 2l) with (real, imag) pairs
          interleaved along the last axis, as in mamba_ssm
    cu_seqlens: optional (k + 1,) boundaries of sequences packed along l: the state restarts at each one
    returns out (b, d, l) in u's dtype, and (b, d, n) the last state when ``return_last_state``.

:func:`selective_scan` runs over chunks of ``chunk`` steps: inside a chunk the recurrence is
:func:`statespaces.ops.scan.scan` on (b, T, d, n) tensors, and each chunk is recomputed in the backward pass
(activation checkpointing), so autograd keeps the inputs and one (b, d, n) state per chunk, never a
(b, d, l, n) tensor.  :func:`selective_scan_ref` is the step-by-step loop.  Both compute in float32, or float64
when an input is float64 (mamba_ssm's reference always uses float32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .scan import scan

__all__ = ["selective_scan", "selective_scan_ref"]


def _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """Checks, dtypes, delta's bias and softplus; complex per-step B / C from their interleaved real form."""
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"u and delta must both be (b, d, l), got {tuple(u.shape)} and {tuple(delta.shape)}")
    b, d, l = u.shape
    if l < 1:
        raise ValueError(f"the sequence must have at least one step (l >= 1), got u of shape {tuple(u.shape)}")
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"A must be (d, n) with d={d}, got {tuple(A.shape)}")
    n = A.shape[1]
    work = torch.float64 if torch.float64 in (u.dtype, delta.dtype, A.dtype, A.real.dtype) else torch.float32
    cwork = torch.complex128 if work == torch.float64 else torch.complex64
    u, delta = u.to(work), delta.to(work)
    if delta_bias is not None:
        if delta_bias.shape != (d,):
            raise ValueError(f"delta_bias must be (d,) = ({d},), got {tuple(delta_bias.shape)}")
        delta = delta + delta_bias[..., None].to(work)
    if delta_softplus:
        delta = F.softplus(delta)
    A = A.to(cwork if A.is_complex() else work)
    mats = []
    for name, M in (("B", B), ("C", C)):
        if M.dim() == 2:
            if M.shape != (d, n):
                raise ValueError(f"a constant {name} must be (d, n) = {(d, n)}, got {tuple(M.shape)}")
            M = M.to(cwork if (A.is_complex() or M.is_complex()) else work)
        elif M.dim() in (3, 4):
            steps = 2 * l if A.is_complex() and not M.is_complex() else l
            groups = 1 if M.dim() == 3 else M.shape[1]
            if M.shape[0] != b or M.shape[-2] != n or M.shape[-1] != steps or d % groups:
                want = f"(b, n, {'2l' if steps != l else 'l'}) or (b, g, n, {'2l' if steps != l else 'l'}) with g dividing d"
                raise ValueError(f"a per-step {name} must be {want} = ({b}, [g,] {n}, {steps}), got {tuple(M.shape)}")
            if A.is_complex():
                M = M.to(cwork) if M.is_complex() else torch.view_as_complex(M.to(work).unflatten(-1, (l, 2)).contiguous())
            else:
                M = M.to(work)
        else:
            raise ValueError(f"{name} must be (d, n), (b, n, l) or (b, g, n, l), got {tuple(M.shape)}")
        mats.append(M)
    for name, t, shape in (("D", D, (d,)), ("z", z, (b, d, l))):
        if t is not None and t.shape != shape:
            raise ValueError(f"{name} must be {shape}, got {tuple(t.shape)}")
    return u, delta, A, mats[0], mats[1], work


def _per_step(M: torch.Tensor, d: int, lo: int, hi: int) -> torch.Tensor:
    """B or C for steps lo..hi as (b, T, d or 1, n) ((d, n) constant -> (1, 1, d, n))."""
    if M.dim() == 2:
        return M[None, None]
    if M.dim() == 3:
        return M[..., lo:hi].permute(0, 2, 1)[:, :, None]  # (b T 1 n)
    g = M.shape[1]
    return M[..., lo:hi].permute(0, 3, 1, 2).repeat_interleave(d // g, dim=2)  # (b T d n)


def _epilogue(y, u, D, z, dtype):
    out = y if D is None else y + u * D[:, None].to(u.dtype)
    if z is not None:
        out = out * F.silu(z.to(out.dtype))
    return out.to(dtype)


def _chunk(u, delta, A, B_t, C_t, x0, reset):
    """One chunk: u, delta (b, d, T); B_t, C_t (b|1, T, d|1, n); x0 (b, d, n) -> y (b, d, T), last state."""
    dtA = delta.transpose(1, 2)[..., None] * A  # (b T d n)
    dA = torch.exp(dtA)
    if reset is not None:  # a packed sequence starts here: its state does not see the previous one
        dA = dA * (~reset)[None, :, None, None]
    dBu = (delta * u).transpose(1, 2)[..., None] * B_t  # (b T d n)
    h = scan(dA, dBu, x0)  # (b T d n)
    y = (h * C_t).sum(-1)  # (b T d)
    if y.is_complex():
        y = 2 * y.real
    return y.transpose(1, 2), h[:, -1]


def selective_scan(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False, cu_seqlens=None, *, initial_state=None, chunk: int = 64
):
    """The selective scan (see the module docstring for the math and every shape).  ``initial_state`` (b, d, n)
    (ours; mamba_ssm's kernel always starts from zero) is the state before step 0.  ``chunk`` sets how many steps
    are materialised as (b, chunk, d, n) tensors at a time, and recomputed in the backward pass."""
    dtype_in = u.dtype
    b, d, l = u.shape if u.dim() == 3 else (0, 0, 0)
    u, delta, A, B, C, _ = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    starts = _starts(cu_seqlens, l, u.device)
    x = _initial(initial_state, b, d, A, B)
    ys = []
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C))
    for lo in range(0, l, chunk):
        hi = min(l, lo + chunk)
        args = (u[..., lo:hi], delta[..., lo:hi], A, _per_step(B, d, lo, hi), _per_step(C, d, lo, hi), x, None if starts is None else starts[lo:hi])
        y, x = checkpoint(_chunk, *args, use_reentrant=False) if grad else _chunk(*args)
        ys.append(y)
    out = _epilogue(torch.cat(ys, -1), u, D, z, dtype_in)
    return (out, x) if return_last_state else out


def _initial(state, b: int, d: int, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    dtype = torch.promote_types(A.dtype, B.dtype)
    if state is None:
        return torch.zeros(b, d, A.shape[1], dtype=dtype, device=A.device)
    if tuple(state.shape) != (b, d, A.shape[1]):
        raise ValueError(f"initial_state must be (b, d, n) = {(b, d, A.shape[1])}, got {tuple(state.shape)}")
    return state.to(dtype)


def _starts(cu_seqlens, l: int, device) -> torch.Tensor | None:
    """(l,) bool: steps where a packed sequence begins (its state restarts from zero)."""
    if cu_seqlens is None:
        return None
    starts = torch.zeros(l, dtype=torch.bool, device=device)
    inner = cu_seqlens[1:-1].long()
    if ((inner <= 0) | (inner >= l)).any():
        raise ValueError(f"cu_seqlens must be 0 = c_0 < c_1 < ... < c_k = l = {l}, got {cu_seqlens.tolist()}")
    starts[inner] = True
    return starts


def selective_scan_ref(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False, cu_seqlens=None, *, initial_state=None
):
    """The step-by-step loop of :func:`selective_scan` (same signature, same shapes)."""
    dtype_in = u.dtype
    u, delta, A, B, C, _ = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    b, d, l = u.shape
    starts = _starts(cu_seqlens, l, u.device)
    x = _initial(initial_state, b, d, A, B)
    ys = []
    for t in range(l):
        B_t, C_t = _per_step(B, d, t, t + 1)[:, 0], _per_step(C, d, t, t + 1)[:, 0]  # (b|1, d|1, n)
        dBu = (delta[:, :, t] * u[:, :, t])[..., None] * B_t
        if starts is not None and starts[t]:
            x = dBu.expand_as(x)
        else:
            x = torch.exp(delta[:, :, t, None] * A) * x + dBu
        y = (x * C_t).sum(-1)
        ys.append(2 * y.real if y.is_complex() else y)
    out = _epilogue(torch.stack(ys, -1), u, D, z, dtype_in)
    return (out, x) if return_last_state else out

"""Vandermonde products: the kernel of a diagonal SSM and its transpose (state forwarding).

``vandermonde(coef, log_z, L)[..., h, l] = sum_n coef[..., h, n] * z[h, n] ** l``
``vandermonde_transpose(u, log_z)[..., h, n] = sum_l u[..., h, l] * z[h, n] ** (L - 1 - l)``

Memory bound.  The naive form materialises ``z ** l`` as an (H, N, L) tensor.  Here the
exponent is split as ``l = a * T + t`` with ``T = ceil(sqrt(L))`` and ``A = ceil(L / T)``:

    sum_n coef_n z_n^(aT + t) = sum_n (coef_n z_n^(aT)) * z_n^t

which is one batched matrix product ``(H, rows * A, N) @ (H, N, T)``.  Besides the output
(``rows * H * L``) the peak extra memory is ``H * N * (rows * A + T)`` elements, i.e.
``O(H N (rows + 1) sqrt(L))`` instead of ``O(H N L)``; the work stays ``O(rows H N L)`` and runs
in BLAS.  The two power tables are built from ``exp(log z)`` and ``exp(T log z)`` by doubling products in the
inputs' precision (double for the SSM kernels): ``sqrt(L)`` multiplications each, relative error at most
~``sqrt(L)`` eps.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

__all__ = ["complex_exp", "vandermonde", "vandermonde_ref", "vandermonde_transpose", "vandermonde_transpose_ref"]


def _split(L: int) -> tuple[int, int]:
    T = max(1, math.isqrt(L - 1) + 1) if L > 1 else 1
    return T, -(-L // T)


class _ComplexExp(torch.autograd.Function):
    """``exp`` of a complex tensor with the derivative ``grad * conj(exp(x))`` from the saved output."""

    @staticmethod
    def forward(ctx, x):
        y = _complex_exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y.conj()


def _complex_exp(x: torch.Tensor) -> torch.Tensor:
    magnitude = torch.exp(x.real)  # real products before assembling: no real -> complex promotion pass
    return torch.complex(magnitude * torch.cos(x.imag), magnitude * torch.sin(x.imag))


def complex_exp(x: torch.Tensor) -> torch.Tensor:
    """``torch.exp`` for real or complex tensors, 3-6x faster on CPU for complex ones.

    PyTorch's complex ``exp`` is not vectorised on CPU; ``e^re (cos im + i sin im)`` in real
    arithmetic is (2.8x at complex128, 6.4x at complex64 on a (128, 32, 32) tensor, 1 thread).
    The Vandermonde power tables use it for their two generators ``exp(log z)`` and ``exp(T log z)``.
    """
    if not x.is_complex():
        return torch.exp(x)
    if torch.is_grad_enabled() and x.requires_grad:
        return _ComplexExp.apply(x)
    return _complex_exp(x)


def _doubling_powers(z: torch.Tensor, count: int) -> torch.Tensor:
    """``z^k`` for ``k < count``, (...) -> (..., count): the first n powers times ``z^n`` give the next n.

    log2(count) vectorised products instead of a ``cumprod`` scan (not vectorised for complex on CPU:
    0.28 -> 0.18 ms at (128, 32, 32) complex128); each power is a product of at most log2(count) rounded factors."""
    y = torch.empty(*z.shape, count, dtype=z.dtype, device=z.device)
    y[..., 0] = 1
    n, z_n = 1, z
    while n < count:
        m = min(n, count - n)
        torch.mul(y[..., :m], z_n[..., None], out=y[..., n : n + m])
        n += m
        if n < count:
            z_n = z_n * z_n
    return y


class _GeometricPowers(torch.autograd.Function):
    """``z^(step k)`` for ``k < count`` by products of the powers already made: a multiplication per power
    instead of an exponential, a cosine and a sine, relative error ~count * eps of the inputs' precision at
    worst (1e-13 at count 1,024 in double); the derivative by ``d z^m / d log z = m z^m``."""

    @staticmethod
    def forward(ctx, log_z, count, step):
        y = _doubling_powers(complex_exp(log_z * step), count)
        ctx.save_for_backward(y)
        ctx.step = step
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        m = torch.arange(y.shape[-1], device=y.device, dtype=y.real.dtype) * ctx.step
        return (grad * (y.conj() if y.is_complex() else y) * m).sum(-1), None, None


def _powers(log_z: torch.Tensor, count: int, step: int = 1) -> torch.Tensor:
    """``z ** (step k)`` for ``k < count``: (H, N) -> (H, N, count), in ``log_z``'s precision."""
    return _GeometricPowers.apply(log_z, count, step)


def vandermonde(
    coef: torch.Tensor, log_z: torch.Tensor, L: int, out_dtype: torch.dtype | None = None, real_part: bool = False
) -> torch.Tensor:
    """Kernel of a diagonal linear recurrence.

    Args:
        coef: (*batch, H, N) coefficients (for an SSM: ``C * dB`` per mode).
        log_z: (H, N) logarithms of the nodes (for an SSM: ``log dA``).
        L: number of powers.
        out_dtype: dtype of the matrix product and the result; the power tables are computed in the
            inputs' (possibly higher) precision first, so large exponents keep their phase accuracy.
        real_part: return only ``Re(sum_n coef z^l)`` (real, of ``out_dtype``'s real precision), computed
            by a real matrix product of twice the depth: half the multiplications of the complex product
            and half the output (what an SSM with conjugate-pair modes needs: its kernel is ``2 Re(...)``).
    Returns:
        (*batch, H, L), ``sum_n coef z^l`` (or its real part).
    """
    *batch, H, N = coef.shape
    if log_z.shape != (H, N):
        raise ValueError(f"log_z must have shape (H, N) = {(H, N)}, got {tuple(log_z.shape)}")
    dtype = torch.promote_types(coef.dtype, log_z.dtype)
    coef, log_z = coef.to(dtype), log_z.to(dtype)
    out_dtype = out_dtype or dtype
    T, A = _split(L)
    small = _powers(log_z, T).to(out_dtype)  # (H N T)
    big = _powers(log_z, A, T).to(out_dtype).transpose(1, 2).contiguous()  # (H A N)
    rows = coef.reshape(-1, H, N).transpose(0, 1).to(out_dtype).contiguous()  # (H R N)
    # the (H, R, A, N) product in the output precision: its rounding is that of the matrix product after it.
    # Both factors contiguous: the broadcast product of the transposed views took 20x longer (4.1 vs 0.18 ms
    # at H=128, R=4, A=N=32 complex64, forward alone; its backward likewise).
    left = (rows[:, :, None, :] * big[:, None]).reshape(H, -1, N)  # (H (R A) N)
    if real_part and left.is_complex():
        # Re(left @ small) = [Re left, Im left] @ [Re small; -Im small], the (re, im) pairs interleaved as stored
        left = torch.view_as_real(left).reshape(H, left.shape[1], 2 * N)
        small = torch.stack([small.real, -small.imag], dim=2).reshape(H, 2 * N, T)
    out = torch.bmm(left, small)  # (H (R A) T)
    out = out.reshape(H, -1, A * T)[..., :L].transpose(0, 1)  # (R H L)
    out = out.reshape(*batch, H, L)
    return out.real if real_part and out.is_complex() else out


def vandermonde_ref(coef: torch.Tensor, log_z: torch.Tensor, L: int, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Materialising twin of :func:`vandermonde` (same signature)."""
    powers = torch.exp(log_z[..., None] * torch.arange(L, device=coef.device).to(log_z.dtype))  # (H N L)
    out = (coef[..., None] * powers).sum(-2)
    return out if out_dtype is None else out.to(out_dtype)


def vandermonde_transpose(u: torch.Tensor, log_z: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """State reached by a diagonal recurrence ``x_l = z x_(l-1) + u_l`` from ``x_(-1) = 0``.

    Args:
        u: (*batch, H, L) inputs (real or complex).
        log_z: (H, N) log nodes.
        out_dtype: dtype of the matrix product and result (power tables are computed in log_z's precision).
    Returns:
        (*batch, H, N): ``sum_l u_l z^(L-1-l)``.
    """
    *batch, H, L = u.shape
    N = log_z.shape[-1]
    if log_z.shape != (H, N):
        raise ValueError(f"log_z must have shape (H, N) with H={H}, got {tuple(log_z.shape)}")
    out_dtype = out_dtype or torch.promote_types(u.dtype, log_z.dtype)
    u = u.to(out_dtype)
    T, A = _split(L)
    small = _powers(log_z, T).transpose(1, 2).to(out_dtype)  # (H T N)
    big = _powers(log_z, A, T).to(out_dtype)  # (H N A)
    rev = u.flip(-1).reshape(-1, H, L).transpose(0, 1)  # (H R L), index m = L-1-l
    rev = torch.nn.functional.pad(rev, (0, A * T - L)).reshape(H, -1, T)  # (H (R A) T)
    part = torch.bmm(rev, small).reshape(H, -1, A, N)  # (H R A N)
    out = torch.einsum("hran,hna->rhn", part, big)
    return out.reshape(*batch, H, N)


def vandermonde_transpose_ref(u: torch.Tensor, log_z: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Materialising twin of :func:`vandermonde_transpose`."""
    L = u.shape[-1]
    powers = torch.exp(log_z[..., None] * torch.arange(L - 1, -1, -1, device=u.device).to(log_z.dtype))  # (H N L)
    out = (u[..., None, :] * powers).sum(-1)
    return out if out_dtype is None else out.to(out_dtype)

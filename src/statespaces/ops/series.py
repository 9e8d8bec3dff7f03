"""Truncated arithmetic of matrix-valued power series (the feedback loop of a DPLR kernel).

``series_mul``      product of (matrix-valued) power series truncated to L terms, by FFT
``series_inverse``  inverse of a (matrix-valued) power series truncated to L terms (Newton iteration)

Each has a ``_ref`` twin that sums directly.  Both have hand-written backward passes: the adjoint of
``b -> a b`` is a cross-correlation with ``a``, one FFT product reusing the forward's transforms;
the inverse's derivative is ``dX = -X dA X``, two such products instead of the whole Newton graph
(S4 kernel generation at L=1024 spends most of its backward here).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .fftconv import fast_fft_len

__all__ = ["series_mul", "series_mul_ref", "series_inverse", "series_inverse_ref"]


def _fft(x: torch.Tensor, n: int) -> torch.Tensor:
    return torch.fft.fft(x, n=n) if x.is_complex() else torch.fft.rfft(x, n=n)


def _ifft(x: torch.Tensor, n: int, complex_out: bool) -> torch.Tensor:
    return torch.fft.ifft(x, n=n) if complex_out else torch.fft.irfft(x, n=n)


def _matmul_freq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(…, I, K, F) x (…, K, J, F) -> (…, I, J, F) per frequency.  For the rank-1/2 matrices of a DPLR
    feedback loop a broadcast product beats ``einsum`` (which becomes a bmm over 1x1 matrices)."""
    if a.shape[-2] == 1:
        return a * b
    if a.shape[-2] * a.shape[-3] * b.shape[-2] <= 64:
        return (a.unsqueeze(-2) * b.unsqueeze(-4)).sum(-3)
    return torch.einsum("...ikf,...kjf->...ijf", a, b)


def _adjoint(x: torch.Tensor) -> torch.Tensor:
    """Conjugate transpose per frequency: (…, I, K, F) -> (…, K, I, F)."""
    return x.transpose(-3, -2).conj()


def _reduce_to(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a broadcast gradient back to an input's (batch) shape."""
    while grad.dim() > len(shape):
        grad = grad.sum(0)
    return grad.sum_to_size(shape) if grad.shape != shape else grad


def _product(af: torch.Tensor, bf: torch.Tensor, n: int, complex_out: bool, L: int) -> torch.Tensor:
    return _ifft(_matmul_freq(af, bf), n, complex_out)[..., :L]


class _SeriesMul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, L, n):
        complex_out = a.is_complex()
        af, bf = _fft(a, n), _fft(b, n)
        ctx.save_for_backward(af, bf)
        ctx.meta = (n, complex_out, a.shape, b.shape)
        return _product(af, bf, n, complex_out, L)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        af, bf = ctx.saved_tensors
        n, complex_out, a_shape, b_shape = ctx.meta
        gf = _fft(grad.contiguous(), n)
        ga = gb = None
        # correlations: d<g, a b>/da = g * b^H, /db = a^H * g, in the frequency domain without wrap-around
        # (the output's L <= n terms and the inputs' lags never reach n)
        if ctx.needs_input_grad[0]:
            ga = _reduce_to(_product(gf, _adjoint(bf), n, complex_out, a_shape[-1]), a_shape)
        if ctx.needs_input_grad[1]:
            gb = _reduce_to(_product(_adjoint(af), gf, n, complex_out, b_shape[-1]), b_shape)
        return ga, gb, None, None


def series_mul(a: torch.Tensor, b: torch.Tensor, L: int | None = None) -> torch.Tensor:
    """Product of matrix power series truncated to ``L`` terms.

    Args:
        a: (*batch, I, K, La) coefficients of ``sum_l a_l z^l`` (real or complex).
        b: (*batch, K, J, Lb).
        L: number of output terms (default ``min(La, Lb)``).
    Returns:
        (*batch, I, J, L): ``c_l = sum_{m<=l} a_m b_(l-m)``.
    """
    L = min(a.shape[-1], b.shape[-1]) if L is None else L
    a, b = a[..., :L], b[..., :L]
    n = fast_fft_len(a.shape[-1] + b.shape[-1] - 1)
    dtype = torch.promote_types(a.dtype, b.dtype)
    return _SeriesMul.apply(a.to(dtype), b.to(dtype), L, n)


def series_mul_ref(a: torch.Tensor, b: torch.Tensor, L: int | None = None) -> torch.Tensor:
    """Direct-sum twin of :func:`series_mul`."""
    L = min(a.shape[-1], b.shape[-1]) if L is None else L
    dtype = torch.promote_types(a.dtype, b.dtype)
    a, b = a.to(dtype), b.to(dtype)
    zero = torch.zeros_like(a[..., 0] @ b[..., 0])
    out = []
    for l in range(L):
        terms = [a[..., m] @ b[..., l - m] for m in range(l + 1) if m < a.shape[-1] and l - m < b.shape[-1]]
        out.append(sum(terms, zero))
    return torch.stack(out, dim=-1)


DIRECT_TERMS = 64  # the first terms by one triangular solve: the small doublings cost their dispatch, not arithmetic


def _direct_inverse(a: torch.Tensor, m: int) -> torch.Tensor:
    """The first ``m`` terms of ``a^-1`` by one block-triangular solve ``T X = [I; 0; ...]``, ``T`` the
    (m R, m R) block lower-triangular Toeplitz matrix of ``a``'s first ``m`` terms: forward substitution in one
    call instead of log2(m) Newton doublings (each a handful of FFTs of a few dozen terms)."""
    *batch, R, _, _ = a.shape
    # normalised to a_0 = I, T is triangular entry by entry (block-triangular alone is not enough for
    # solve_triangular): (a_0^-1 a)^-1 = a^-1 a_0, so a^-1 = (a_0^-1 a)^-1 a_0^-1
    a0_inv = torch.linalg.inv(a[..., 0])
    a = torch.einsum("...rs,...stl->...rtl", a0_inv, a[..., :m])
    lag = torch.arange(m, device=a.device)
    lag = lag[:, None] - lag[None, :]  # (m, m): i - j
    padded = torch.nn.functional.pad(a, (1, 0))  # index 0: the zero above the diagonal
    blocks = padded[..., (lag + 1).clamp(min=0)]  # (*batch, R, R, m, m): blocks[.., r, s, i, j] = a_(i-j)[r, s]
    T = blocks.permute(*range(len(batch)), -2, -4, -1, -3).reshape(*batch, m * R, m * R)
    rhs = torch.zeros(*batch, m * R, R, dtype=a.dtype, device=a.device)
    rhs[..., :R, :] = torch.eye(R, dtype=a.dtype, device=a.device)
    X = torch.linalg.solve_triangular(T, rhs, upper=False, unitriangular=True)  # (*batch, m R, R): the terms stacked
    X = X.reshape(*batch, m, R, R).permute(*range(len(batch)), -2, -1, -3)
    return torch.einsum("...rsl,...st->...rtl", X, a0_inv)


def _newton_inverse(a: torch.Tensor) -> torch.Tensor:
    """Newton's ``X <- X (2I - a X)`` written as ``X <- X - X (a X - I)``: with ``h`` terms of ``X`` known,
    ``a X - I`` vanishes below ``z^h``, so only its terms ``h .. m-1`` are computed (a circular product of length
    ``m``: the wrapped-around part lands below ``h``), and the correction fills terms ``h .. m-1`` of ``X``.
    Per doubling: three FFTs and two inverse FFTs of length ~m, the FFT of ``X`` shared by both products."""
    L = a.shape[-1]
    complex_out = a.is_complex()
    X = _direct_inverse(a, min(L, DIRECT_TERMS))
    h = X.shape[-1]
    while h < L:
        m = min(2 * h, L)
        n = fast_fft_len(m)
        xf = _fft(X, n)
        D = _ifft(_matmul_freq(_fft(a[..., :m], n), xf), n, complex_out)[..., h:m]  # terms h..m-1 of a X
        correction = _ifft(_matmul_freq(xf, _fft(D, n)), n, complex_out)[..., : m - h]
        X = torch.cat([X, -correction], dim=-1)
        h = m
    return X


class _SeriesInverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a):
        X = _newton_inverse(a)
        ctx.save_for_backward(X)
        return X

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        # dX = -X da X, so grad_a = -X^H * grad * X^H (both products are correlations, truncated to L)
        (X,) = ctx.saved_tensors
        L = X.shape[-1]
        n = fast_fft_len(2 * L - 1)
        xf_adj = _adjoint(_fft(X, n))
        complex_out = X.is_complex()
        inner = _product(_fft(grad.contiguous(), n), xf_adj, n, complex_out, L)  # grad X^H
        return -_product(xf_adj, _fft(inner, n), n, complex_out, L)


def series_inverse(a: torch.Tensor) -> torch.Tensor:
    """Inverse of a matrix power series ``a(z)`` modulo ``z^L`` (``a_0`` must be invertible).

    Newton's iteration ``X <- X (2I - a X)`` doubles the number of correct terms per step,
    so the cost is that of a few FFT products of length 2L: O(R^3 L log L).

    Args:
        a: (*batch, R, R, L).
    Returns:
        (*batch, R, R, L) with ``series_mul(a, X) = I`` (to rounding).
    """
    return _SeriesInverse.apply(a)


def series_inverse_ref(a: torch.Tensor) -> torch.Tensor:
    """Forward-substitution twin of :func:`series_inverse`: ``X_l = -a_0^-1 sum_{m>=1} a_m X_(l-m)``."""
    L = a.shape[-1]
    a0_inv = torch.linalg.inv(a[..., 0])
    X = [a0_inv]
    for l in range(1, L):
        acc = sum(a[..., m] @ X[l - m] for m in range(1, l + 1))
        X.append(-a0_inv @ acc)
    return torch.stack(X, dim=-1)

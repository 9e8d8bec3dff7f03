"""Long convolutions through the FFT (truncated power-series arithmetic is in :mod:`.series`).

``fft_conv``          causal (or bidirectional) convolution of (…, H, L) inputs with (C, H, L_k) kernels

Each has a ``_ref`` twin that sums directly.
"""

from __future__ import annotations

import functools

import torch

__all__ = [
    "fast_fft_len",
    "fft_conv",
    "fft_conv_ref",
]


@functools.lru_cache(maxsize=None)
def fast_fft_len(n: int) -> int:
    """Smallest 5-smooth integer (2^a 3^b 5^c) >= n: lengths pocketfft and cuFFT handle fastest."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


class _CircularConv(torch.autograd.Function):
    """``irfft(rfft(u, n) * rfft(k, n), n)[..., :L]`` with a hand-written backward.

    Autograd would differentiate ``rfft`` through full complex (c2c) transforms; the gradients of a
    circular convolution are circular correlations, so each needs one real transform:
    ``grad_u = irfft(conj(K) G)[:L]`` summed over channels, ``grad_k = irfft(conj(U) G)[:L_k]`` summed over
    the batch, with ``G = rfft(grad_y, n)``.
    """

    @staticmethod
    def forward(ctx, u, k, n: int):
        L, Lk = u.shape[-1], k.shape[-1]
        u_f = torch.fft.rfft(u, n=n)  # (*B H F)
        k_f = torch.fft.rfft(k, n=n)  # (C H F)
        ctx.save_for_backward(u_f, k_f)
        ctx.n, ctx.L, ctx.Lk = n, L, Lk
        return torch.fft.irfft(u_f.unsqueeze(-3) * k_f, n=n)[..., :L]  # (*B C H L)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        u_f, k_f = ctx.saved_tensors
        g_f = torch.fft.rfft(grad_y, n=ctx.n)  # (*B C H F)
        grad_u = grad_k = None
        if ctx.needs_input_grad[0]:
            grad_u = torch.fft.irfft((g_f * k_f.conj()).sum(-3), n=ctx.n)[..., : ctx.L]
        if ctx.needs_input_grad[1]:
            prod = g_f * u_f.unsqueeze(-3).conj()
            prod = prod.reshape(-1, *prod.shape[-3:]).sum(0)  # (C H F)
            grad_k = torch.fft.irfft(prod, n=ctx.n)[..., : ctx.Lk]
        return grad_u, grad_k, None


def fft_conv(u: torch.Tensor, k: torch.Tensor, bidirectional: bool = False) -> torch.Tensor:
    """Convolve each feature with its kernels.

    Args:
        u: (*batch, H, L) real input.
        k: (C, H, L_k) real kernels, ``L_k <= L``; with ``bidirectional`` (2, C, H, L_k): a causal kernel
            ``k[0]`` and an anti-causal one ``k[1]``.
    Returns:
        (*batch, C, H, L) with ``y_t = sum_{j<=t} k0_{t-j} u_j  (+ sum_{j>t} k1_{j-t-1} u_j)``.
        The anti-causal kernel starts at lag one so that ``u_t`` is counted once.
    """
    L = u.shape[-1]
    Lk = k.shape[-1]
    n = fast_fft_len(L + Lk)
    if bidirectional:
        k0, k1 = k[0], k[1]
        kk = torch.nn.functional.pad(k0, (0, n - Lk)) + torch.nn.functional.pad(k1.flip(-1), (n - Lk, 0))
    else:
        kk = k
    if u.is_complex() or kk.is_complex():
        raise ValueError("fft_conv takes real inputs and kernels")
    if u.dtype != kk.dtype:
        raise ValueError(f"fft_conv: input dtype {u.dtype} and kernel dtype {kk.dtype} differ")
    return _CircularConv.apply(u, kk, n)


def fft_conv_ref(u: torch.Tensor, k: torch.Tensor, bidirectional: bool = False) -> torch.Tensor:
    """Direct-sum twin of :func:`fft_conv` (O(L^2))."""
    L = u.shape[-1]
    Lk = k.shape[-1]
    t = torch.arange(L, device=u.device)
    lag = t[:, None] - t[None, :]  # (t, j)
    kc = k[0] if bidirectional else k
    causal = (lag >= 0) & (lag < Lk)
    M = torch.where(causal, kc[..., lag.clamp(0, Lk - 1)], torch.zeros((), dtype=k.dtype))  # (C H L L)
    if bidirectional:
        alag = -lag - 1
        anti = (alag >= 0) & (alag < Lk)
        M = M + torch.where(anti, k[1][..., alag.clamp(0, Lk - 1)], torch.zeros((), dtype=k.dtype))
    return torch.einsum("chtj,...hj->...cht", M, u)

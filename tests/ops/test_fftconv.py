import pytest
import torch

from statespaces.ops.fftconv import (
    fast_fft_len,
    fft_conv,
    fft_conv_ref,
)


def test_fast_fft_len_is_smallest_5_smooth():
    def smooth(n):
        for p in (2, 3, 5):
            while n % p == 0:
                n //= p
        return n == 1

    for n in [1, 2, 7, 17, 100, 1000, 1025, 4097]:
        m = fast_fft_len(n)
        assert m >= n and smooth(m) and not any(smooth(k) for k in range(n, m))


@pytest.mark.parametrize("L,Lk", [(1, 1), (10, 10), (33, 7), (64, 64)])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_fft_conv_matches_direct_sum(L, Lk, bidirectional):
    u = torch.randn(2, 3, L, dtype=torch.float64)
    k = torch.randn(*((2,) if bidirectional else ()), 4, 3, Lk, dtype=torch.float64)
    torch.testing.assert_close(fft_conv(u, k, bidirectional), fft_conv_ref(u, k, bidirectional))


def test_fft_conv_bidirectional_counts_present_once():
    L = 5
    u = torch.zeros(1, 1, L, dtype=torch.float64)
    u[..., 2] = 1.0
    k = torch.stack([torch.arange(1.0, 6.0), 10 * torch.arange(1.0, 6.0)]).double()[:, None, None]  # (2 1 1 L)
    y = fft_conv(u, k, bidirectional=True)[0, 0, 0]
    # causal part: y_t = k0_(t-2) for t >= 2; anti-causal: y_t = k1_(2-t-1) for t < 2
    torch.testing.assert_close(y, torch.tensor([20.0, 10.0, 1.0, 2.0, 3.0], dtype=torch.float64))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_fft_conv_gradients(bidirectional):
    u = torch.randn(2, 2, 6, dtype=torch.float64, requires_grad=True)
    k = torch.randn(*((2,) if bidirectional else ()), 3, 2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u, k: fft_conv(u, k, bidirectional), (u, k))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_fft_conv_gradients_match_the_direct_sum(bidirectional):
    u = torch.randn(3, 2, 4, 37, dtype=torch.float64, requires_grad=True)
    k = torch.randn(*((2,) if bidirectional else ()), 2, 4, 20, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 2, 2, 4, 37, dtype=torch.float64)
    fast = torch.autograd.grad((fft_conv(u, k, bidirectional) * g).sum(), (u, k))
    ref = torch.autograd.grad((fft_conv_ref(u, k, bidirectional) * g).sum(), (u, k))
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b)

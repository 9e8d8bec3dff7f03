"""Mega's EMA kernel against its recurrence h_t = (p beta) x_t + q h_(t-1) written from the raw tensors (float64):
kernel, initial-state term, state forwarding with lengths, step; the official initialisation; optimiser keys;
gradients; conformance through FFTConv / S4Block."""

import math

import pytest
import torch

from statespaces import EMAKernel, FFTConv, S4Block
from statespaces.testing import check_layer, gradcheck_parameters


def _loop(kernel: EMAKernel, u: torch.Tensor, h0: torch.Tensor):
    """u (B, H, L), h0 (B, C, H, N) -> outputs (B, C, H, L), final state."""
    p = 1 / (1 + torch.exp(-kernel.delta))
    q = 1 - p / (1 + torch.exp(-kernel.alpha))
    w_in, w_out = p * kernel.beta, kernel.gamma / math.sqrt(kernel.N)
    h, ys = h0, []
    for t in range(u.shape[-1]):
        h = w_in * u[:, None, :, t, None] + q * h
        ys.append((w_out * h).sum(-1))
    return torch.stack(ys, -1), h


def test_kernel_state_term_and_forwarding_match_the_recurrence():
    torch.manual_seed(0)
    kernel = EMAKernel(3, ndim=4, channels=2).double()
    u = torch.randn(2, 3, 11, dtype=torch.float64)
    h0 = torch.randn(2, 2, 3, 4, dtype=torch.float64)
    ys, h_end = _loop(kernel, u, h0)
    k, k_state = kernel(11, state=h0)
    from statespaces.ops.fftconv import fft_conv

    torch.testing.assert_close(fft_conv(u, k) + k_state, ys)
    torch.testing.assert_close(kernel.forward_state(u, h0), h_end)
    lengths = torch.tensor([11, 5])
    masked = u * (torch.arange(11) < lengths[:, None, None])
    torch.testing.assert_close(kernel.forward_state(masked, h0, lengths=lengths)[1], _loop(kernel, u[1:, :, :5], h0[1:])[1][0])
    kernel.setup_step()
    s, outs = h0, []
    for t in range(11):
        y, s = kernel.step(u[..., t], s)
        outs.append(y)
    torch.testing.assert_close(torch.stack(outs, -1), ys)


def test_official_initialisation_and_optimiser_keys():
    torch.manual_seed(0)
    kernel = EMAKernel(64, ndim=4)
    signs = torch.tensor([1.0, -1.0, 1.0, -1.0])
    assert (kernel.beta - signs).abs().max() < 0.15 and abs(kernel.delta.std().item() - 0.2) < 0.03
    frozen = EMAKernel(4, ndim=2, lr={"delta": 0.0})
    assert "delta" in dict(frozen.named_buffers()) and "alpha" in dict(frozen.named_parameters())
    with pytest.raises(ValueError, match="ndim must be a positive int"):
        EMAKernel(4, ndim=0)


def test_gradients_match_finite_differences():
    torch.manual_seed(0)
    layer = FFTConv(2, kernel="ema", ndim=2).double()
    u = torch.randn(1, 6, 2, dtype=torch.float64, requires_grad=True)
    gradcheck_parameters(layer, ("kernel.delta", "kernel.alpha", "kernel.beta", "kernel.gamma"), u)


@pytest.mark.parametrize("options", [dict(ndim=2), dict(ndim=3, channels=2, activation="glu"), dict(ndim=2, bidirectional=True)], ids=str)
def test_ema_kernel_conforms_in_s4block(options):
    check_layer(S4Block, options={"kernel": "ema", **options}, model=False)

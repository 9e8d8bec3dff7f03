import math

import pytest
import torch

from statespaces.kernels import DiagKernel, DPLRKernel
from statespaces.ops.fftconv import fft_conv

from .dense import dense_kernel, dense_run, raw_ssm, to_full

DIAG_CONFIGS = [
    dict(init="diag-lin"),
    dict(init="diag-inv", disc="bilinear"),
    dict(init="legs"),
    dict(init="diag-real", is_real=True),
    dict(init="diag-lin", dt_tie=False),
    dict(init="diag-rand", n_ssm=1, channels=2),
    dict(init="diag", n_ssm=2, real_transform="relu", imag_transform="exp"),
    dict(init="diag-lin", bandlimit=0.05, dt_min=0.01, dt_max=0.5),
    dict(init="diag-inv", backend="cauchy"),
    dict(init="diag-quad", dt_transform="softplus", real_transform="softplus"),
    dict(init="diag-lin", dt_transform="sigmoid", real_transform="sigmoid", disc="bilinear"),
]
DPLR_CONFIGS = [
    dict(init="legs"),
    dict(init="legt", rank=2),
    dict(init="lagt"),
    dict(init="fout"),
    dict(init="hippo", n_ssm=2),
    dict(init="dplr-lin", rank=2, channels=2),
    dict(init="dplr-inv", backend="cauchy", n_ssm=1),
    dict(init="dplr-legs", rank=1),
    dict(init="diag-lin"),
    dict(init="legs", dt_transform="softplus", real_transform="relu", imag_transform="softplus"),
    dict(init="dplr-lin", dt_transform="sigmoid", real_transform="softplus", imag_transform="exp", n_ssm=2),
]


def _make(cls, **kw):
    kw.setdefault("d_state", 8)
    return cls(4, **kw).double()


@pytest.mark.parametrize("cfg", DIAG_CONFIGS, ids=str)
def test_diag_kernel_matches_dense_recurrence(cfg):
    kernel = _make(DiagKernel, **cfg)
    for rate in (1.0, 0.5):
        k, _ = kernel(40, rate=rate)
        torch.testing.assert_close(k, dense_kernel(kernel, 40, rate), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("cfg", DPLR_CONFIGS, ids=str)
def test_dplr_kernel_matches_dense_recurrence(cfg):
    kernel = _make(DPLRKernel, **cfg)
    for rate in (1.0, 2.0):
        k, _ = kernel(60, rate=rate)
        torch.testing.assert_close(k, dense_kernel(kernel, 60, rate), rtol=1e-9, atol=1e-11)


def test_dplr_kernel_at_d_state_64_long():
    kernel = DPLRKernel(3, d_state=64).double()
    k, _ = kernel(1000)
    torch.testing.assert_close(k, dense_kernel(kernel, 1000), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("cls,cfg", [(DiagKernel, c) for c in DIAG_CONFIGS] + [(DPLRKernel, c) for c in DPLR_CONFIGS], ids=str)
def test_state_forwarding_matches_dense_recurrence(cls, cfg):
    kernel = _make(cls, **cfg)
    B, L = 2, 23
    u = torch.randn(B, 4, L, dtype=torch.float64)
    x0 = kernel.default_state(B).normal_() if not getattr(kernel, "is_real", False) else torch.randn(B, 4, kernel.N2, dtype=torch.float64)
    y_ref, x_ref = dense_run(kernel, u, to_full(kernel, x0))
    k, k_state = kernel(L, state=x0)
    y = fft_conv(u, k) + k_state
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10)
    x = kernel.forward_state(u, x0)
    torch.testing.assert_close(to_full(kernel, x), x_ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("cls", [DiagKernel, DPLRKernel])
def test_state_forwarding_with_lengths_stops_at_each_length(cls):
    kernel = _make(cls)
    u = torch.randn(3, 4, 17, dtype=torch.float64)
    x0 = kernel.default_state(3).normal_()
    lengths = torch.tensor([17, 5, 0])
    x = kernel.forward_state(u, x0, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        expected = kernel.forward_state(u[b : b + 1, :, :n], x0[b : b + 1]) if n else x0[b : b + 1]
        torch.testing.assert_close(x[b : b + 1], expected)


def test_dss_kernel_matches_paper_formula_including_growing_modes():
    """DSS-softmax (Gupta et al. 2022): K_l = sum_n 2 Re[ C_n B_n (e^(lam dt) - 1)/lam * e^(lam dt l) / (e^(lam dt L) - 1) ]."""
    kernel = DiagKernel(3, d_state=8, init="diag-legs", disc="dss", real_transform="none", l_max=30).double()
    with torch.no_grad():
        kernel.raw_A_real[:, :2] = -0.3  # Re(A) = +0.3 > 0 on two modes: DSS allows it
    L = 30
    dt, A, _, B, C = raw_ssm(kernel)
    l = torch.arange(L, dtype=torch.float64)
    lam = dt * A
    terms = C[..., None] * (B * torch.expm1(lam) / A)[..., None] * torch.exp(lam[..., None] * l) / torch.expm1(lam * L)[..., None]
    expected = 2 * terms.sum(-2).real
    k, _ = kernel(L)
    torch.testing.assert_close(k, expected, rtol=1e-9, atol=1e-12)
    k_short, _ = kernel(12)  # a shorter kernel keeps the normalisation of l_max
    torch.testing.assert_close(k_short, expected[..., :12])


def test_bandlimit_zeroes_high_frequency_modes():
    kernel = DiagKernel(2, d_state=16, init="diag-lin", bandlimit=0.1, dt_min=0.1, dt_max=0.1).double()
    dt, A, _, C = kernel.ssm()
    torch.testing.assert_close(C, raw_ssm(kernel)[-1])
    freqs = dt * A.imag.abs() / (2 * math.pi)
    assert (C[:, freqs >= 0.05] == 0).all() and (C[:, freqs < 0.05] != 0).all()

import pytest
import torch

from statespaces.ops.cauchy import cauchy, cauchy_kernel, cauchy_ref
from statespaces.ops.vandermonde import (
    complex_exp,
    vandermonde,
    vandermonde_ref,
    vandermonde_transpose,
    vandermonde_transpose_ref,
)

C128 = torch.complex128


def _nodes(H, N, dtype=C128):
    re = -torch.rand(H, N, dtype=torch.float64) * 0.2 - 1e-3
    im = torch.randn(H, N, dtype=torch.float64)
    z = torch.complex(re, im)
    return z if dtype == C128 else re


@pytest.mark.parametrize("L", [1, 2, 7, 64, 101, 1000])
@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_vandermonde_matches_materialised_sum(L, batch):
    H, N = 4, 5
    log_z = _nodes(H, N)
    coef = torch.randn(*batch, H, N, dtype=C128)
    torch.testing.assert_close(vandermonde(coef, log_z, L), vandermonde_ref(coef, log_z, L), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("L", [1, 7, 100])
@pytest.mark.parametrize("out_dtype", [None, torch.complex64])
def test_vandermonde_real_part_matches_the_real_part_of_the_sum(L, out_dtype):
    log_z = _nodes(4, 5)
    coef = torch.randn(2, 3, 4, 5, dtype=C128, requires_grad=True)
    out = vandermonde(coef, log_z, L, out_dtype=out_dtype, real_part=True)
    ref = vandermonde_ref(coef, log_z, L).real
    assert not out.is_complex() and out.shape == ref.shape
    tol = 1e-5 if out_dtype == torch.complex64 else 1e-10
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)
    g = torch.randn_like(ref)
    (ours,) = torch.autograd.grad(out, coef, g.to(out.dtype))
    (theirs,) = torch.autograd.grad(ref, coef, g)
    torch.testing.assert_close(ours.to(C128), theirs, rtol=tol, atol=tol)


def test_vandermonde_keeps_double_precision_at_a_million_steps():
    # the power tables are running products: their rounding must stay far below a float32 kernel's
    L = 1_000_003
    log_z = torch.complex(-torch.rand(2, 3, dtype=torch.float64) * 1e-5, torch.rand(2, 3, dtype=torch.float64) * 3)
    coef = torch.randn(2, 3, dtype=C128)
    picks = torch.tensor([0, 1, 999, 65_536, 500_001, L - 1])
    out = vandermonde(coef, log_z, L)[..., picks]
    exact = (coef[..., None] * torch.exp(log_z[..., None] * picks.to(C128))).sum(-2)
    torch.testing.assert_close(out, exact, rtol=1e-11, atol=1e-11)


def test_vandermonde_real_nodes():
    log_z = _nodes(3, 4, torch.float64)
    coef = torch.randn(2, 3, 4, dtype=torch.float64)
    out = vandermonde(coef, log_z, 50)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, vandermonde_ref(coef, log_z, 50))


def test_vandermonde_is_sum_of_powers_definition():
    z = torch.tensor([[0.9 + 0.1j, -0.5 + 0.0j]], dtype=C128)
    coef = torch.tensor([[2.0 + 0j, 1.0 - 1j]], dtype=C128)
    out = vandermonde(coef, torch.log(z), 6)
    expected = torch.stack([(coef * z**k).sum(-1) for k in range(6)], -1)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("L", [1, 3, 50, 257])
def test_vandermonde_transpose_matches_materialised_sum(L):
    H, N = 3, 4
    log_z = _nodes(H, N)
    u = torch.randn(2, H, L, dtype=torch.float64)
    torch.testing.assert_close(vandermonde_transpose(u, log_z), vandermonde_transpose_ref(u, log_z), rtol=1e-10, atol=1e-10)


def test_vandermonde_transpose_is_the_recurrence():
    H, N, L = 2, 3, 20
    log_z = _nodes(H, N)
    u = torch.randn(H, L, dtype=torch.float64)
    x = torch.zeros(H, N, dtype=C128)
    for t in range(L):
        x = torch.exp(log_z) * x + u[:, t, None]
    torch.testing.assert_close(vandermonde_transpose(u, log_z), x)


def test_vandermonde_gradients():
    log_z = _nodes(2, 3).requires_grad_()
    coef = torch.randn(2, 3, dtype=C128, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c, z: vandermonde(c, z, 11), (coef, log_z))
    u = torch.randn(2, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u, z: vandermonde_transpose(u, z), (u, log_z))


@pytest.mark.parametrize("dtype", [torch.complex64, C128, torch.float64])
def test_complex_exp_matches_torch_exp(dtype):
    # phases up to ~3000 rad: the range the power tables of a 1024-step kernel reach
    x = torch.complex(-torch.rand(6, 7, dtype=torch.float64) * 50, torch.randn(6, 7, dtype=torch.float64) * 1000)
    x = x.to(dtype) if dtype.is_complex else x.real.to(dtype)
    tol = 1e-6 if dtype == torch.complex64 else 1e-14
    torch.testing.assert_close(complex_exp(x), torch.exp(x), rtol=tol, atol=tol)


def test_complex_exp_gradients():
    x = torch.complex(-torch.rand(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64) * 5)
    x.requires_grad_()
    assert torch.autograd.gradcheck(complex_exp, (x,))
    assert torch.autograd.gradgradcheck(complex_exp, (x,))
    g = torch.randn(4, 3, dtype=C128)
    (ours,) = torch.autograd.grad(complex_exp(x), x, g)
    (theirs,) = torch.autograd.grad(torch.exp(x), x, g)
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("kind", ["complex", "real_part", "real_nodes"])
def test_vandermonde_gradients_for_each_output_kind(kind):
    # gradcheck (finite differences) over batch dims, an L that is not a multiple of the split, each output kind
    real = kind == "real_nodes"
    log_z = _nodes(3, 4, torch.float64 if real else C128).requires_grad_()
    coef = torch.randn(2, 3, 4, dtype=torch.float64 if real else C128, requires_grad=True)
    fn = lambda c, z: vandermonde(c, z, 13, real_part=kind == "real_part")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (coef, log_z))
    # a real coefficient against complex nodes gets a real gradient
    c_real = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    z = _nodes(3, 4).requires_grad_()
    assert torch.autograd.gradcheck(lambda c, z: vandermonde(c, z, 9, real_part=True), (c_real, z))


def test_cauchy_matches_materialised_sum_in_chunks():
    H, N, L = 3, 5, 37
    v = torch.randn(2, H, N, dtype=C128)
    w = torch.randn(H, N, dtype=C128)
    z = torch.randn(L, dtype=C128) * 3
    torch.testing.assert_close(cauchy(v, z, w, chunk=4), cauchy_ref(v, z, w))
    torch.testing.assert_close(cauchy(v, z, w), cauchy_ref(v, z, w))


@pytest.mark.parametrize("L", [1, 8, 33])
def test_cauchy_kernel_equals_vandermonde(L):
    log_z = _nodes(3, 4)
    coef = torch.randn(2, 3, 4, dtype=C128)
    torch.testing.assert_close(cauchy_kernel(coef, log_z, L), vandermonde(coef, log_z, L), rtol=1e-9, atol=1e-10)


def test_cauchy_kernel_rejects_growing_nodes():
    with pytest.raises(ValueError, match=r"\|z\| < 1"):
        cauchy_kernel(torch.ones(1, 1, dtype=C128), torch.tensor([[0.1 + 0j]], dtype=C128), 4)

"""Liquid-S4: the causal polyb terms against their defining sums, the exact nonlinear recurrence against the
second-order expansion in the small-input limit (built from the dense discrete system), of which polyb keeps the
lag-0 term and kb every lag of adjacent products; conformance for every
degree and contraction, errors."""

import pytest
import torch

from statespaces import LiquidS4
from statespaces.layers.liquid import liquid_recurrence_ref
from statespaces.testing import check_layer
from tests.kernels.dense import full_system


def _linear(layer, u):
    y, _ = layer.ssm(u)
    return y


def test_polyb_terms_are_their_defining_sums():
    torch.manual_seed(0)
    layer = LiquidS4(3, d_state=4, liquid_degree=3, lcontract="tanh").double()
    dA, dB, C = full_system(layer.ssm.kernel)
    s = dB.sum(-1).real  # 1^T B_bar over the full state
    cb = torch.einsum("hn,hn->h", C[0], dB).real
    u = torch.randn(2, 9, 3, dtype=torch.float64)
    extra = layer.pre_activation(u)[0] - _linear(layer, u)
    expected = torch.zeros_like(u)
    for t in range(9):
        for p in (2, 3):
            if t - p + 1 >= 0:  # the products start once p inputs exist (zero history)
                prod = torch.stack([u[:, t - i] for i in range(p)]).prod(0)
                expected[:, t] += cb * s ** (p - 1) * torch.tanh(prod)
    torch.testing.assert_close(extra, expected)


def test_the_exact_recurrence_expands_to_the_second_order_sum_of_which_polyb_keeps_the_first_term():
    torch.manual_seed(0)
    layer = LiquidS4(2, d_state=4, liquid_degree=2, dt_min=0.1, dt_max=0.3).double()
    dA, dB, C = full_system(layer.ssm.kernel)
    ones = torch.ones(dA.shape[-1], dtype=torch.complex128)
    L = 8
    powers = [torch.linalg.matrix_power(dA, m) for m in range(L)]
    cab = torch.stack([torch.einsum("hn,hnm,hm->h", C[0], P, dB) for P in powers]).real  # (L H): C A^m B
    oab = torch.stack([torch.einsum("n,hnm,hm->h", ones, P, dB) for P in powers]).real  # 1^T A^j B
    u0 = torch.randn(1, L, 2, dtype=torch.float64)
    second = torch.zeros_like(u0)
    for k in range(L):
        for m in range(k + 1):
            for j in range(k - m):
                second[:, k] += cab[m] * oab[j] * u0[:, k - m] * u0[:, k - m - 1 - j]
    errors = []
    for eps in (1e-2, 1e-3):
        u = eps * u0
        residual = (liquid_recurrence_ref(layer, u) - _linear(layer, u)) / eps**2 - second
        errors.append(residual.abs().max().item())
    assert errors[1] < errors[0] / 5 and errors[1] < 1e-2  # O(eps): the third order
    # polyb keeps the m = 0, j = 0 term: (C B)(1^T B) u_k u_(k-1)
    polyb = (layer.pre_activation(u0)[0] - _linear(layer, u0))[:, 1:]
    torch.testing.assert_close(polyb, cab[0] * oab[0] * u0[:, 1:] * u0[:, :-1])
    # kb keeps every m with j = 0: sum_m (C A^m B)(1^T B) u_(k-m) u_(k-m-1)
    layer.liquid_kernel = "kb"
    kb = layer.pre_activation(u0)[0] - _linear(layer, u0)
    expected = torch.zeros_like(u0)
    for k in range(1, L):
        for m in range(k):
            expected[:, k] += cab[m] * oab[0] * u0[:, k - m] * u0[:, k - m - 1]
    torch.testing.assert_close(kb, expected)


def test_kb_terms_are_the_correlations_convolved_with_the_kernel_of_b_p():
    torch.manual_seed(0)
    layer = LiquidS4(3, d_state=4, liquid_degree=3, liquid_kernel="kb").double()
    dA, dB, C = full_system(layer.ssm.kernel)
    s = dB.sum(-1).real
    L = 9
    kern = torch.stack([torch.einsum("hn,hnm,hm->h", C[0], torch.linalg.matrix_power(dA, m), dB) for m in range(L)]).real  # (L H)
    u = torch.randn(2, L, 3, dtype=torch.float64)
    extra = layer.pre_activation(u)[0] - _linear(layer, u)
    expected = torch.zeros_like(u)
    for t in range(L):
        for m in range(t + 1):
            for p in (2, 3):
                if t - m - p + 1 >= 0:
                    prod = torch.stack([u[:, t - m - i] for i in range(p)]).prod(0)
                    expected[:, t] += kern[m] * s ** (p - 1) * prod
    torch.testing.assert_close(extra, expected)


@pytest.mark.parametrize("options", [dict(liquid_degree=2), dict(liquid_degree=3, liquid_kernel="kb", lcontract="tanh"), dict(liquid_degree=4, lcontract="lecun"), dict(liquid_degree=3, init="legt", rank=2)], ids=str)
def test_liquid_s4_conforms(options):
    check_layer(LiquidS4, options={"d_state": 4, **options}, model=False)


def test_liquid_errors():
    with pytest.raises(ValueError, match="unknown liquid_kernel 'polyB'"):
        LiquidS4(4, liquid_kernel="polyB")
    with pytest.raises(ValueError, match="liquid_degree must be an int >= 2"):
        LiquidS4(4, liquid_degree=1)
    with pytest.raises(ValueError, match="unknown lcontract 'relu'"):
        LiquidS4(4, lcontract="relu")

"""Mamba against a loop over time of mamba_simple's equations (written here from the raw parameters, with the
official zero-padded convolution), its initialisation, optimiser settings, gradients, conformance and errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from statespaces import Mamba, param_groups
from statespaces.testing import check_layer, gradcheck_parameters


def _loop(m: Mamba, u: torch.Tensor) -> torch.Tensor:
    """u (B, L, H): the official forward, one step at a time (conv over a zero-padded past, softplus delta,
    x_t = exp(delta A) x_(t-1) + delta B_t u_t, y = C_t x_t + D u, gated by silu(z))."""
    Bsz, L, _ = u.shape
    xz = u @ m.in_proj.weight.T
    x_in, z = xz[..., : m.d_inner], xz[..., m.d_inner :]
    K = m.d_conv
    padded = torch.cat([torch.zeros(Bsz, K - 1, m.d_inner, dtype=u.dtype), x_in], 1)
    A = -torch.exp(m.A_log)
    h = torch.zeros(Bsz, m.d_inner, m.d_state, dtype=u.dtype)
    outs = []
    for t in range(L):
        conv = sum(padded[:, t + j] * m.conv1d.weight[:, 0, j] for j in range(K)) + m.conv1d.bias
        x = conv * torch.sigmoid(conv)
        proj = x @ m.x_proj.weight.T
        dt, B, C = proj[:, : m.dt_rank], proj[:, m.dt_rank : m.dt_rank + m.d_state], proj[:, m.dt_rank + m.d_state :]
        delta = torch.log1p(torch.exp(dt @ m.dt_proj.weight.T + m.dt_proj.bias))
        h = torch.exp(delta[..., None] * A) * h + (delta * x)[..., None] * B[:, None, :]
        y = (h * C[:, None, :]).sum(-1) + m.D * x
        y = y * z[:, t] * torch.sigmoid(z[:, t])
        outs.append(y @ m.out_proj.weight.T)
    return torch.stack(outs, 1)


@pytest.mark.parametrize("options", [dict(), dict(d_conv=2, dt_rank=3, expand=1, dt_init="constant")], ids=str)
def test_mamba_matches_a_loop_of_its_equations(options):
    torch.manual_seed(0)
    m = Mamba(6, d_state=4, **options).double()
    u = torch.randn(2, 13, 6, dtype=torch.float64)
    y, _ = m(u)
    torch.testing.assert_close(y, _loop(m, u), rtol=1e-10, atol=1e-10)


def test_initialisation_follows_mamba_simple():
    torch.manual_seed(0)
    m = Mamba(32, d_state=8, dt_min=0.01, dt_max=0.05)
    assert m.dt_rank == math.ceil(32 / 16) and m.d_inner == 64
    dt = F.softplus(m.dt_proj.bias)
    assert bool(((dt > 0.01 - 1e-6) & (dt < 0.05 + 1e-6)).all())
    torch.testing.assert_close(m.A_log.exp(), torch.arange(1, 9, dtype=torch.float32).repeat(64, 1))
    assert torch.equal(m.D, torch.ones(64))
    bound = m.dt_rank**-0.5
    assert m.dt_proj.weight.abs().max() <= bound
    assert m.in_proj.bias is None and m.out_proj.bias is None and m.conv1d.bias is not None
    groups = param_groups(m, lr=1e-3, weight_decay=0.1)
    for g in groups:
        if any(p is m.A_log or p is m.D for p in g["params"]):
            assert g["weight_decay"] == 0.0
        if any(p is m.in_proj.weight for p in g["params"]):
            assert g["weight_decay"] == 0.1


def test_gradients_match_finite_differences():
    torch.manual_seed(0)
    m = Mamba(2, d_state=2, d_conv=2, expand=1).double()
    u = torch.randn(1, 5, 2, dtype=torch.float64, requires_grad=True)
    gradcheck_parameters(m, ("A_log", "D", "x_proj.weight", "dt_proj.bias", "conv1d.weight"), u)


@pytest.mark.parametrize("options", [dict(d_state=4), dict(d_state=3, d_conv=1, expand=1), dict(d_state=2, d_conv=3, bias=True, conv_bias=False)], ids=str)
def test_mamba_conforms(options):
    check_layer(Mamba, options=options)


def test_mamba_errors():
    with pytest.raises(ValueError, match="dt_rank must be 'auto' or a positive int, got 0"):
        Mamba(4, dt_rank=0)
    with pytest.raises(ValueError, match="dt_init must be 'random' or 'constant', got 'const'"):
        Mamba(4, dt_init="const")
    with pytest.raises(ValueError, match="d_conv must be a positive int, got 0"):
        Mamba(4, d_conv=0)
    m = Mamba(4, d_state=2)
    with pytest.raises(ValueError, match="rate=2.0 is not available"):
        m(torch.randn(1, 3, 4), rate=2.0)

"""Mamba-2 against a loop over time of mamba2's equations (written here from the raw parameters, with the
official zero-padded convolution and rms_norm_ref's gated RMSNorm), its initialisation, gradients, conformance
and errors."""

import pytest
import torch
import torch.nn.functional as F

from statespaces import Mamba2, param_groups
from statespaces.testing import check_layer, gradcheck_parameters


def _rms_norm_ref(x, weight, z, group_size, norm_before_gate, eps=1e-5):
    """mamba_ssm's ``rms_norm_ref`` (layernorm_gated.py), restated."""
    if not norm_before_gate:
        x = x * F.silu(z)
    shape = x.shape
    xg = x.reshape(*shape[:-1], shape[-1] // group_size, group_size)
    out = (xg / torch.sqrt(xg.square().mean(-1, keepdim=True) + eps)).reshape(shape) * weight
    return out * F.silu(z) if norm_before_gate else out


def _loop(m: Mamba2, u: torch.Tensor) -> torch.Tensor:
    Bsz, L, _ = u.shape
    proj = u @ m.in_proj.weight.T
    d, cd, h, p, n, g = m.d_inner, m.conv_dim, m.nheads, m.headdim, m.d_state, m.ngroups
    z, xBC, dt = proj[..., :d], proj[..., d : d + cd], proj[..., d + cd :]
    K = m.d_conv
    padded = torch.cat([torch.zeros(Bsz, K - 1, cd, dtype=u.dtype), xBC], 1)
    A = -torch.exp(m.A_log)
    D = m.D.view(h, p) if m.D.numel() == d else m.D[:, None].expand(h, p)
    state = torch.zeros(Bsz, h, p, n, dtype=u.dtype)
    outs = []
    for t in range(L):
        c = sum(padded[:, t + j] * m.conv1d.weight[:, 0, j] for j in range(K)) + m.conv1d.bias
        c = c * torch.sigmoid(c)
        x, B, C = c[:, :d].reshape(Bsz, h, p), c[:, d : d + g * n].reshape(Bsz, g, n), c[:, d + g * n :].reshape(Bsz, g, n)
        delta = torch.log1p(torch.exp(dt[:, t] + m.dt_bias))  # (B h)
        if m.dt_limit != (0.0, float("inf")):
            delta = delta.clamp(*m.dt_limit)
        for i in range(h):
            state[:, i] = torch.exp(delta[:, i] * A[i])[:, None, None] * state[:, i] + delta[:, i, None, None] * x[:, i, :, None] * B[:, i * g // h, None, :]
        y = torch.stack([(state[:, i] * C[:, i * g // h, None, :]).sum(-1) for i in range(h)], 1) + D * x
        y = y.reshape(Bsz, d)
        y = _rms_norm_ref(y, m.norm_weight, z[:, t], d // g, m.norm_before_gate) if m.rmsnorm else y * F.silu(z[:, t])
        outs.append(y @ m.out_proj.weight.T)
    return torch.stack(outs, 1)


CASES = [dict(), dict(ngroups=2, D_has_hdim=True, chunk_size=4), dict(norm_before_gate=True, dt_limit=(0.01, 0.2)), dict(rmsnorm=False, d_conv=2)]


@pytest.mark.parametrize("options", CASES, ids=str)
def test_mamba2_matches_a_loop_of_its_equations(options):
    torch.manual_seed(0)
    m = Mamba2(4, d_state=3, headdim=2, chunk_size=options.pop("chunk_size", 5), **options).double()
    u = torch.randn(2, 13, 4, dtype=torch.float64)
    y, _ = m(u)
    torch.testing.assert_close(y, _loop(m, u), rtol=1e-10, atol=1e-10)


def test_initialisation_follows_mamba2():
    torch.manual_seed(0)
    m = Mamba2(64, d_state=16, headdim=16, dt_min=0.01, dt_max=0.05, A_init_range=(2, 4))
    assert m.nheads == 8 and m.in_proj.out_features == 2 * 128 + 2 * 16 + 8
    dt = F.softplus(m.dt_bias)
    assert bool(((dt > 0.01 - 1e-6) & (dt < 0.05 + 1e-6)).all())
    A = m.A_log.exp()
    assert bool(((A >= 2) & (A <= 4)).all()) and torch.equal(m.D, torch.ones(8))
    for g in param_groups(m, lr=1e-3, weight_decay=0.1):
        if any(q is m.A_log or q is m.D or q is m.dt_bias for q in g["params"]):
            assert g["weight_decay"] == 0.0


def test_gradients_match_finite_differences():
    torch.manual_seed(0)
    m = Mamba2(2, d_state=2, headdim=2, d_conv=2, chunk_size=3).double()
    u = torch.randn(1, 5, 2, dtype=torch.float64, requires_grad=True)
    gradcheck_parameters(m, ("A_log", "D", "dt_bias", "norm_weight", "conv1d.weight"), u)


@pytest.mark.parametrize("options", [dict(ngroups=2, chunk_size=4), dict(rmsnorm=False, norm_before_gate=True, d_conv=1), dict(D_has_hdim=True, chunk_size=30)], ids=str)
def test_mamba2_conforms(options):
    check_layer(Mamba2, options={"d_state": 3, "headdim": 2, **options})


def test_mamba2_errors():
    with pytest.raises(ValueError, match="headdim=3 must divide d_inner = expand \\* d_model = 8"):
        Mamba2(4, headdim=3)
    with pytest.raises(ValueError, match="ngroups=3 must divide the number of heads 4"):
        Mamba2(4, headdim=2, ngroups=3)
    with pytest.raises(ValueError, match="A_init_range must be"):
        Mamba2(4, headdim=2, A_init_range=(0, 1))

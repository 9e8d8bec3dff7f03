"""Hyena: the order-N recurrence against direct convolutions (conv1d with the flipped filter), the implicit filter
against its formula, step == forward beyond l_max, optimiser settings, gradients, errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from statespaces import Hyena, param_groups
from statespaces.testing import check_layer, gradcheck_parameters


def _direct(layer: Hyena, u: torch.Tensor) -> torch.Tensor:
    """The official forward with every convolution a direct conv1d (zero-padded past, flipped filter)."""
    B, L, H = u.shape
    z = (u @ layer.in_proj.weight.T + layer.in_proj.bias).transpose(1, 2)
    K = layer.K
    z = F.conv1d(F.pad(z, (K - 1, 0)), layer.short_filter.weight, layer.short_filter.bias, groups=z.shape[1])
    *x, v = z.split(H, dim=1)
    k = layer.filter_fn.filter(min(L, layer.l_max)).view(layer.order - 1, H, -1)
    bias = layer.bias.view(layer.order - 1, H)
    for o, x_i in enumerate(reversed(x[1:])):
        w = v * x_i
        taps = k[o].shape[-1]
        v = F.conv1d(F.pad(w, (taps - 1, 0)), k[o].flip(-1)[:, None], groups=H) + bias[o, :, None] * w
    return (v * x[0]).transpose(1, 2) @ layer.out_proj.weight.T + layer.out_proj.bias


@pytest.mark.parametrize("order,L", [(2, 20), (3, 20), (2, 40)])
def test_order_n_recurrence_equals_direct_convolutions(order, L):
    torch.manual_seed(0)
    layer = Hyena(4, l_max=24, order=order, filter_order=8).double()
    u = torch.randn(2, L, 4, dtype=torch.float64)
    torch.testing.assert_close(layer(u)[0], _direct(layer, u))


def test_implicit_filter_is_its_formula():
    torch.manual_seed(0)
    layer = Hyena(3, l_max=16, filter_order=8, emb_dim=5, w=10.0).double()
    fn = layer.filter_fn
    L, bands = 16, 2
    t = torch.linspace(0, 1, L, dtype=torch.float64)[:, None]
    grid = 2 * math.pi * torch.arange(L, dtype=torch.float64)[:, None] / L
    f = torch.linspace(1e-4, bands - 1, bands, dtype=torch.float64)[None]
    z = torch.cat([t, torch.cos(f * grid), -torch.sin(f * grid)], -1)
    torch.testing.assert_close(fn.z[0], z, rtol=1e-6, atol=1e-6)  # built in float32 at initialisation
    h = fn.z[0]
    linears = [m for m in fn.mlp if isinstance(m, torch.nn.Linear)]
    sins = [m for m in fn.mlp if not isinstance(m, torch.nn.Linear)]
    for lin, sin in zip(linears[:-1], sins):
        h = torch.sin(sin.freq * (h @ lin.weight.T + lin.bias))
    assert torch.all(sins[0].freq == 10.0)
    h = h @ linears[-1].weight.T
    deltas = torch.linspace(math.log(1e-2) / 1.5, math.log(1e-2) / 0.3, 3, dtype=torch.float64)
    h = h * torch.exp(-t * deltas.abs())
    torch.testing.assert_close(fn.filter(L), h.T)


def test_steps_equal_the_forward_beyond_l_max_and_settings():
    check_layer(Hyena, options={"l_max": 10, "filter_order": 8}, length=23, model=False)
    layer = Hyena(4, l_max=8, filter_order=8)
    settings = {id(p): (g["lr"], g["weight_decay"]) for g in param_groups(layer, lr=1e-2, weight_decay=0.1) for p in g["params"]}
    assert settings[id(layer.filter_fn.z)] == (1e-5, 0.0) and settings[id(layer.bias)] == (1e-3, 0.0)
    assert settings[id(layer.filter_fn.mlp[0].weight)] == (1e-3, 0.0) and settings[id(layer.in_proj.weight)] == (1e-2, 0.1)


def test_gradients_match_finite_differences():
    torch.manual_seed(0)
    layer = Hyena(2, l_max=6, filter_order=4, num_inner_mlps=1).double()
    u = torch.randn(1, 6, 2, dtype=torch.float64, requires_grad=True)
    gradcheck_parameters(layer, ("filter_fn.z", "filter_fn.mlp.0.weight", "filter_fn.mlp.1.freq", "bias", "short_filter.weight"), u)


def test_hyena_errors():
    with pytest.raises(ValueError, match="Hyena needs l_max"):
        Hyena(4)
    with pytest.raises(ValueError, match="order must be an int >= 2, got 1"):
        Hyena(4, l_max=8, order=1)
    with pytest.raises(ValueError, match="emb_dim must be odd and >= 3"):
        Hyena(4, l_max=8, emb_dim=4)

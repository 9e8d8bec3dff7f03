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


# ---- the distilled step ------------------------------------------------------------------------------------------
def test_distill_recovers_a_sum_of_decaying_modes():
    from statespaces.layers.hyena import distill_filter

    g = torch.Generator().manual_seed(0)
    lam = torch.polar(torch.rand(3, 2, generator=g, dtype=torch.float64) * 0.3 + 0.6, torch.rand(3, 2, generator=g, dtype=torch.float64) * 3)
    lam, r = torch.cat([lam, lam.conj()], -1), torch.randn(3, 2, generator=g, dtype=torch.complex128)
    r = torch.cat([r, r.conj()], -1)  # conjugate pairs: a real filter
    t = torch.arange(40, dtype=torch.float64)
    h = torch.cat([torch.randn(3, 1, generator=g, dtype=torch.float64), (r[:, None, :] * lam[:, None, :] ** t[None, :39, None]).sum(-1).real], 1)
    fit_lam, _, err = distill_filter(h, 4)
    assert err.max() < 1e-8
    for want, got in zip(lam, fit_lam):  # the same poles, in some order
        assert (want[:, None] - got[None, :]).abs().amin(1).max() < 1e-6


def _filter_of_modes(layer: Hyena, L: int) -> torch.Tensor:
    """The distilled filters written out: h[0] exact, then Re sum_j r_j lam_j^(t-1)."""
    lam, r, h0 = layer._modes
    t = torch.arange(L - 1, dtype=torch.float64)
    tail = (r[..., None, :] * lam[..., None, :] ** t[:, None]).sum(-1).real
    return torch.cat([h0[..., None], tail], -1)  # (o H L)


def test_distilled_step_is_the_recurrence_of_its_fitted_filter():
    """The O(n) modal step against the direct convolutions of _direct with the fitted filters swapped in
    (an explicit sum over every past input, independent of the modal state)."""
    torch.manual_seed(0)
    L = 30
    layer = Hyena(4, l_max=16, order=3, filter_order=8).double().eval()
    layer.setup_step(distill=3)
    u = torch.randn(2, L, 4, dtype=torch.float64)
    state, ys = layer.default_state(2), []
    for t in range(L):
        y, state = layer.step(u[:, t], state)
        ys.append(y)
    k = _filter_of_modes(layer, L)
    original = layer.filter_fn.filter
    layer.filter_fn.filter = lambda n: k.flatten(0, 1)[:, :n]  # _direct reads the filters from here
    layer.l_max = L
    try:
        want = _direct(layer, u)
    finally:
        layer.filter_fn.filter, layer.l_max = original, 16
    torch.testing.assert_close(torch.stack(ys, 1), want, rtol=1e-10, atol=1e-10)


def _distilled_errors(layer: Hyena, u: torch.Tensor, n: int) -> tuple[float, float]:
    """(largest relative filter error, relative output error of the distilled step against the exact forward)."""
    exact = layer(u)[0]
    layer.setup_step(distill=n)
    state, ys = layer.default_state(u.shape[0]), []
    for t in range(u.shape[1]):
        y, state = layer.step(u[:, t], state)
        ys.append(y)
    return layer.distill_error.max().item(), ((torch.stack(ys, 1) - exact).norm() / exact.norm()).item()


def test_distilled_step_approaches_the_exact_step_with_more_modes():
    torch.manual_seed(0)
    u = torch.randn(2, 64, 8, dtype=torch.float64)
    smooth = Hyena(8, l_max=64, filter_order=16).double().eval()  # w=1: smooth filters at initialisation
    filt, out = _distilled_errors(smooth, u, 4)
    assert filt < 1e-6 and out < 1e-6, (filt, out)
    rough = Hyena(8, l_max=64, filter_order=16, w=10.0).double().eval()  # the AR configs' frequency: rough filters
    errors = [_distilled_errors(rough, u, n) for n in (2, 8, 24)]
    assert errors[0][0] > errors[1][0] > errors[2][0] and errors[2][0] < 0.1, errors
    assert errors[0][1] > errors[2][1] and errors[2][1] < 0.01, errors
    rough.setup_step()  # back to the exact step
    assert rough._modes is None and rough.default_state(1).long.dtype == torch.float64


def test_distill_errors():
    layer = Hyena(4, l_max=16, filter_order=8)
    with pytest.raises(ValueError, match=r"distill must be an int in \[1, 7\] for filters of 16 taps, got 9"):
        layer.setup_step(distill=9)
    with pytest.raises(ValueError, match="distill must be None .* got 2.5"):
        layer.setup_step(distill=2.5)
    layer.setup_step(distill=4)
    with pytest.raises(ValueError, match="set up for the distilled"):
        layer(torch.randn(1, 5, 4), state=layer.default_state(1))

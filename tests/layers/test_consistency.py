"""Conv mode == step mode == chunked state forwarding (the public checker), for every mode / init / disc / option,
and the S4-specific properties beside it (float64)."""

import pytest
import torch

from statespaces import FFTConv, S4Block
from statespaces.testing import check_layer, run_steps

H, L, B = 4, 24, 2

NPLR = [
    dict(),
    dict(init="legt", rank=2),
    dict(init="lagt"),
    dict(init="fout"),
    dict(measure="fourier"),
    dict(init="hippo", n_ssm=2),
    dict(init="all", n_ssm=4),
    dict(init="dplr-lin", rank=2),
    dict(init="dplr-inv", channels=2),
    dict(init="dplr-legs"),
    dict(init="diag-lin"),
    dict(backend="cauchy"),
    dict(dt_transform="softplus", real_transform="relu"),
    dict(real_type="sigmoid", imag_transform="exp"),
    dict(real_transform="none", dt_transform="relu"),
    dict(deterministic=True, n_ssm=1),
    dict(activation="glu", swap_channels=True, channels=3),
    dict(l_max=L),
]
DIAG = [
    dict(),
    dict(init="diag-lin"),
    dict(init="diag-inv", disc="bilinear"),
    dict(init="diag-legs", disc="dss", l_max=L),
    dict(init="diag-legs", disc="dss", l_max=2 * L, real_transform="none"),
    dict(init="diag-real", is_real=True),
    dict(init="diag-real", is_real=True, disc="bilinear"),
    dict(init="diag-rand", imag_transform="exp", dt_min=1.0, dt_max=1.0),
    dict(init="diag-quad", dt_tie=False),
    dict(init="diag", n_ssm=2),
    dict(init="dplr-lin"),
    dict(init="legs", bandlimit=0.2, dt_min=0.05, dt_max=0.5),
    dict(init="diag-inv", backend="cauchy", channels=2, activation="gelu"),
    dict(init="diag-lin", dt_transform="sigmoid", real_transform="softplus"),
    dict(measure="diag-lin", disc="zoh", real_type="exp", deterministic=True),
]
CONFIGS = [("nplr", c) for c in NPLR] + [("diag", c) for c in DIAG]


def _check(factory, options, realizations=(None,)):
    l_max = options.get("l_max")
    length = L if l_max is None else min(L, l_max // 2)  # the rate-2 check needs the kernel to cover it
    for realization in realizations:
        check_layer(factory, H, options=options, length=length, model=False, step_options={} if realization is None else {"realization": realization})


@pytest.mark.parametrize("mode,cfg", CONFIGS, ids=[f"{m}-{c}" for m, c in CONFIGS])
def test_fftconv_conforms_for_every_option(mode, cfg):
    """check_layer: full forward == steps == chunks (and at rate 2), lengths, gradients, ... in float64."""
    _check(FFTConv, dict(mode=mode, d_state=8, **cfg), ("dense", "linear") if mode == "nplr" else (None,))


@pytest.mark.parametrize("init,kw", [("fout", {}), ("dplr-lin", {}), ("legs", {}), ("legt", {"rank": 2})])
def test_nplr_diagonal_step_realization_conforms(init, kw):
    _check(FFTConv, dict(d_state=8, init=init, **kw), ("diagonal",))


BLOCKS = [
    dict(mode="nplr"),
    dict(mode="diag", gate=2, gate_act="silu", mult_act="gelu"),
    dict(mode="diag", bottleneck=2, final_act="id"),
    dict(mode="nplr", gate=4, bottleneck=4, measure="diag-rand", dt_min=1.0, dt_max=1.0, lr={"dt": 0.0, "B": 0.0}, imag_transform="exp"),
    dict(mode="diag", final_act="gelu", initializer="xavier", weight_norm=True),
    dict(mode="diag", final_act=None, activation=None),
    dict(mode="nplr", channels=2, final_act="glu", initializer="normal"),
    dict(mode="diag", dropout=0.3, tie_dropout=True),
]


@pytest.mark.parametrize("cfg", BLOCKS, ids=str)
def test_s4block_conforms(cfg):
    _check(S4Block, dict(d_state=8, **cfg))


def test_transposed_layout_is_the_same_map():
    a = S4Block(H, d_state=8).double()
    b = S4Block(H, d_state=8, transposed=True).double()
    b.load_state_dict(a.state_dict())
    x = torch.randn(B, L, H, dtype=torch.float64)
    torch.testing.assert_close(b(x.transpose(1, 2))[0].transpose(1, 2), a(x)[0])


@pytest.mark.parametrize("mode", ["nplr", "diag"])
def test_causality_and_bidirectional(mode):
    x = torch.randn(1, L, H, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 15:] += 1.0
    causal = FFTConv(H, mode=mode, d_state=8).double()
    y, y2 = causal(x)[0], causal(x2)[0]
    torch.testing.assert_close(y[:, :15], y2[:, :15])
    assert (y[:, 15:] - y2[:, 15:]).abs().max() > 1e-3
    bi = FFTConv(H, mode=mode, d_state=8, bidirectional=True).double()
    y, y2 = bi(x)[0], bi(x2)[0]
    assert (y[:, :15] - y2[:, :15]).abs().max() > 1e-6


def test_bidirectional_matches_two_kernels():
    layer = FFTConv(H, mode="diag", d_state=8, bidirectional=True).double()
    x = torch.randn(B, L, H, dtype=torch.float64)
    k, _ = layer.kernel(L)
    kf, kb = k[:1], k[1:]
    u = x.transpose(1, 2)
    t = torch.arange(L)
    lag = t[:, None] - t[None, :]
    fwd = torch.where(lag >= 0, kf[0][:, lag.clamp(min=0)], 0.0)  # (H t j)
    bwd = torch.where(lag < 0, kb[0][:, (-lag - 1).clamp(min=0)], 0.0)
    expected = torch.einsum("htj,bhj->bht", fwd + bwd, u) + layer.D[0][:, None] * u
    torch.testing.assert_close(layer(x)[0], expected.transpose(1, 2))


@pytest.mark.parametrize("mode", ["nplr", "diag"])
def test_lengths_mask_padding_and_stop_state_at_each_length(mode):
    block = S4Block(H, mode=mode, d_state=8).double()
    x = torch.randn(3, L, H, dtype=torch.float64)
    lengths = torch.tensor([L, 10, 3])
    s0 = block.default_state(3).normal_()
    y, s = block(x, state=s0, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        yb, sb = block(x[b : b + 1, :n], state=s0[b : b + 1])
        torch.testing.assert_close(y[b : b + 1, :n], yb)
        torch.testing.assert_close(s[b : b + 1], sb)
        assert (y[b, n:] == 0).all()


@pytest.mark.parametrize("mode", ["nplr", "diag"])
def test_rate_resamples_a_continuous_signal(mode):
    """A signal sampled at step h (rate 1) and 2h (rate 2) gives nearly the same output at shared times."""
    torch.manual_seed(1)
    layer = FFTConv(H, mode=mode, d_state=16, dt_min=0.01, dt_max=0.02).double()
    T = 2048
    t = torch.arange(T, dtype=torch.float64) / T
    sig = torch.stack([torch.sin(2 * torch.pi * f * t) for f in (1.0, 2.0, 3.0, 0.5)], -1)[None]  # (1 T H)
    with torch.no_grad():
        layer.D.zero_()  # the skip term does not scale with the step; compare the SSM part
        y1, _ = layer(sig, rate=1.0)
        y2, _ = layer(sig[:, ::2], rate=2.0)
    # dB carries the step, so the discrete convolution approximates the continuous one at either rate
    err = (y2[:, 100:] - y1[:, ::2][:, 100:]).abs().max() / y1.abs().max()
    assert err < 0.02, err


@pytest.mark.parametrize("mode", ["nplr", "diag"])
def test_l_max_follows_rate(mode):
    layer = FFTConv(H, mode=mode, d_state=8, l_max=16).double()
    x = torch.zeros(1, 40, H, dtype=torch.float64)
    x[:, 0] = 1.0
    with torch.no_grad():
        layer.D.zero_()
        y1 = layer(x)[0]
        y2 = layer(x, rate=2.0)[0]
    assert y1[:, 16:].abs().max() < 1e-12 and y1[:, 15].abs().min() > 1e-8
    assert y2[:, 8:].abs().max() < 1e-12 and y2[:, 7].abs().min() > 1e-8


@pytest.mark.parametrize("mode", ["nplr", "diag"])
def test_gradcheck_tiny_layer(mode):
    layer = FFTConv(2, mode=mode, d_state=4).double()
    x = torch.randn(1, 6, 2, dtype=torch.float64, requires_grad=True)
    params = [p for p in layer.parameters()]
    assert torch.autograd.gradcheck(lambda x, *ps: layer(x)[0], (x, *params))
    s0 = layer.default_state(1).normal_().requires_grad_()
    assert torch.autograd.gradcheck(lambda x, s: torch.view_as_real(layer(x, state=s)[1]).sum() + layer(x, state=s)[0].sum(), (x, s0))


@pytest.mark.parametrize("mode", ["nplr", "diag"])
def test_double_runs_everything_in_float64(mode):
    layer = S4Block(H, mode=mode, d_state=8).double()
    k, _ = layer.layer.kernel(10)
    assert k.dtype == torch.float64
    assert layer.default_state(1).dtype == torch.complex128
    y, s = layer(torch.randn(1, 10, H, dtype=torch.float64), state=layer.default_state(1))
    assert y.dtype == torch.float64 and s.dtype == torch.complex128


@pytest.mark.parametrize("mode", ["nplr", "diag"])
def test_float32_step_modes_agree_with_conv_at_d_state_64(mode):
    torch.manual_seed(0)
    layer = FFTConv(16, mode=mode, d_state=64).eval()
    x = torch.randn(2, 300, 16)
    with torch.no_grad():
        y, _ = layer(x)
        for step_mode in ("dense", "linear", "diagonal"):
            layer.setup_step(mode=step_mode)
            ys, _ = run_steps(layer, x, layer.default_state(2))
            err = ((ys - y).abs().max() / y.abs().max()).item()
            assert err < 1e-4, (step_mode, err)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_keeps_kernel_math_in_float32(dtype):
    block = S4Block(H, d_state=8)
    x = torch.randn(B, L, H)
    ref, _ = block(x)
    with torch.autocast("cpu", dtype=dtype):
        y, _ = block(x)
        k, _ = block.layer.kernel(L)
    assert k.dtype == torch.float32
    assert torch.isfinite(y).all()
    assert (y.float() - ref).abs().max() < 0.05 * ref.abs().max()
    y.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in block.parameters() if p.grad is not None)

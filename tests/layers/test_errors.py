"""Bad input gets a clear error naming the argument, what it got and what it expects."""

import pytest
import torch

from statespaces import CapabilityError, FFTConv, S4Block, StateError, UnknownNameError
from statespaces.kernels import NumericalError


def test_wrong_input_rank_and_width():
    layer = S4Block(8, d_state=4)
    with pytest.raises(ValueError, match=r"\(B, L, H\) with H=d_model=8, got shape \(2, 8\)"):
        layer(torch.randn(2, 8))
    with pytest.raises(ValueError, match=r"axis 2 of \(B, L, H\)\) must be d_model=8, got shape \(2, 5, 7\)"):
        layer(torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match=r"axis 1 of \(B, H, L\)\) must be d_model=8"):
        S4Block(8, d_state=4, transposed=True)(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match=r"axis 2.*d_model=8"):
        FFTConv(8, d_state=4)(torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match=r"at least one step \(L >= 1\), got shape \(2, 0, 8\)"):
        layer(torch.randn(2, 0, 8))
    with pytest.raises(ValueError, match="floating tensor, got torch.int64"):
        layer(torch.ones(2, 5, 8, dtype=torch.long))
    layer.setup_step()
    with pytest.raises(ValueError, match=r"\(B, H\) with H=d_model=8"):
        layer.step(torch.randn(2, 7), layer.default_state(2))


def test_unknown_or_misspelt_option_is_an_unknown_name_error_with_suggestion():
    with pytest.raises(UnknownNameError, match=r"'d_stat' \(did you mean 'd_state'\?\)"):
        S4Block(8, d_stat=4)
    with pytest.raises(TypeError):  # also a TypeError, as Python's own unexpected-keyword error
        S4Block(8, d_stat=4)
    with pytest.raises(TypeError, match=r"'is_real'"):
        FFTConv(8, mode="nplr", is_real=True)  # a diagonal-only option
    with pytest.raises(TypeError, match="unknown lr key"):
        FFTConv(8, mode="diag", lr={"dtt": 0.0})
    with pytest.raises(TypeError, match="either 'measure' or 'init'"):
        FFTConv(8, measure="legs", init="legs")
    with pytest.raises(TypeError, match="either 'mode' or 'kernel'"):
        FFTConv(8, mode="diag", kernel="diag")


def test_block_dropout_is_applied_once():
    block = S4Block(8, d_state=4, dropout=0.25)
    assert block.drop.p == 0.25 and block.layer.dropout.p == 0.0


def test_unknown_mode_init_disc_activation():
    with pytest.raises(UnknownNameError, match=r"unknown kernel 'dlpr' \(did you mean 'dplr'\?\); available: dense, diag, ema, longconv, nplr, sgconv, shift"):
        FFTConv(8, mode="dlpr")
    with pytest.raises(ValueError, match=r"unknown init 'legz'.*'legs'"):
        FFTConv(8, init="legz")
    with pytest.raises(ValueError, match=r"unknown disc 'euler'.*'zoh'"):
        FFTConv(8, mode="diag", disc="euler")
    with pytest.raises(ValueError, match="disc='bilinear' only"):
        FFTConv(8, mode="nplr", disc="zoh")
    with pytest.raises(ValueError, match="unknown activation 'gleu'"):
        S4Block(8, activation="gleu")
    with pytest.raises(ValueError, match="unknown real_transform 'expp'"):
        FFTConv(8, mode="diag", real_transform="expp")
    with pytest.raises(ValueError, match="unknown step realization 'fast'"):
        FFTConv(8).setup_step(realization="fast")
    with pytest.raises(TypeError, match="either 'realization' or its alias 'mode'"):
        FFTConv(8).setup_step(realization="dense", mode="linear")


def test_inconsistent_sizes():
    with pytest.raises(ValueError, match=r"n_ssm must be a positive divisor of d_model=8, got 3"):
        FFTConv(8, n_ssm=3)
    with pytest.raises(ValueError, match="d_state must be even"):
        FFTConv(8, mode="diag", d_state=5)
    with pytest.raises(ValueError, match="d_state must be even"):
        FFTConv(8, mode="nplr", d_state=5)
    FFTConv(8, mode="diag", d_state=5, is_real=True, init="diag-real")  # odd is fine for real modes
    with pytest.raises(ValueError, match="rank >= 2"):
        FFTConv(8, init="legt")
    with pytest.raises(ValueError, match=r"bottleneck=3 must divide d_model=8"):
        S4Block(8, bottleneck=3)
    with pytest.raises(ValueError, match="final_act=None"):
        S4Block(8, gate=2, final_act=None)
    with pytest.raises(ValueError, match="dt_tie=False"):
        FFTConv(8, mode="nplr", dt_tie=False)
    with pytest.raises(ValueError, match="dt_min <= dt_max"):
        FFTConv(8, dt_min=0.1, dt_max=0.01)


def test_state_errors():
    layer = S4Block(8, d_state=4, bidirectional=True)
    x = torch.randn(2, 5, 8)
    with pytest.raises(CapabilityError, match="bidirectional"):
        layer(x, state=torch.zeros(2, 8, 2, dtype=torch.cfloat))
    with pytest.raises(CapabilityError, match="bidirectional"):
        layer.setup_step()
    layer = S4Block(8, d_state=4)
    with pytest.raises(StateError, match=r"default_state\(2\) = \(2, 8, 2\) complex64.*got \(2, 8, 3\) complex64"):
        layer(x, state=torch.zeros(2, 8, 3, dtype=torch.cfloat))
    with pytest.raises(StateError, match=r"got \(2, 8, 2\) float32"):
        layer(x, state=torch.zeros(2, 8, 2))  # real instead of complex
    with pytest.raises(StateError, match=r"got \(2, 8, 2\) complex128"):
        layer(x, state=torch.zeros(2, 8, 2, dtype=torch.cdouble))  # right shape, another precision
    with pytest.raises(StateError, match=r"got \(3, 8, 2\) complex64"):
        layer(x, state=layer.default_state(3))  # another batch size
    with pytest.raises(StateError, match=r"got tuple\(\(2, 8, 2\) complex64, \(2, 8, 2\) complex64\)"):
        layer(x, state=(layer.default_state(2), layer.default_state(2)))  # another structure
    with pytest.raises(StateError, match="got None"):
        layer.step(x[:, 0], None)
    with pytest.raises(StateError, match="meta"):
        layer(x, state=layer.default_state(2, device="meta"))
    with pytest.raises(RuntimeError, match="setup_step"):
        layer.step(x[:, 0], layer.default_state(2))
    with pytest.raises(ValueError, match="kernel to cover the input"):
        S4Block(8, d_state=4, l_max=3)(x, state=layer.default_state(2))
    with pytest.raises(ValueError, match="dss.*l_max"):
        FFTConv(8, mode="diag", disc="dss").setup_step()


def test_lengths_and_rate_errors():
    layer = S4Block(8, d_state=4)
    x = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, L=5\]"):
        layer(x, lengths=torch.tensor([6, 2]))
    with pytest.raises(ValueError, match="1 or batch=2 entries"):
        layer(x, lengths=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="integer tensor"):
        layer(x, lengths=torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="rate must be a positive finite number, got 0.0"):
        layer(x, rate=0.0)
    with pytest.raises(ValueError, match="rate must be a positive finite number, got nan"):
        layer(x, rate=float("nan"))
    with pytest.raises(CapabilityError, match=r"rate=2.0 is not available.*LongConv|rate=2.0 is not available"):
        S4Block(8, kernel="longconv", l_max=8)(x, rate=2.0)


def test_diagonal_step_mode_refuses_when_inaccurate():
    layer = FFTConv(8, d_state=64)  # HiPPO-LegS
    try:
        layer.setup_step(mode="diagonal", tol=1e-12)
    except NumericalError as e:
        assert "realization='linear'" in str(e) and "condition number" in str(e)
    else:
        pytest.fail("expected NumericalError")


def test_unknown_names_everywhere_are_one_error_type_with_a_suggestion():
    cases = [
        (lambda: FFTConv(8, mode="diag", disc="zho"), "unknown disc 'zho' \\(did you mean 'zoh'\\?\\)"),
        (lambda: FFTConv(8, init="legss"), "unknown init 'legss' \\(did you mean 'legs'"),
        (lambda: FFTConv(8, mode="diag", backend="cauhcy"), "unknown backend 'cauhcy' \\(did you mean 'cauchy'"),
        (lambda: FFTConv(8, dt_transform="sofplus"), "unknown dt_transform 'sofplus' \\(did you mean 'softplus'"),
        (lambda: S4Block(8, activation="gelu2"), "unknown activation 'gelu2' \\(did you mean 'gelu'"),
        (lambda: S4Block(8, initializer="xavir"), "unknown initializer 'xavir' \\(did you mean 'xavier'"),
        (lambda: FFTConv(8).setup_step(realization="lineer"), "unknown step realization 'lineer' \\(did you mean 'linear'"),
    ]
    for build, message in cases:
        with pytest.raises(UnknownNameError, match=message):
            build()


def test_kernels_declare_their_own_optimizer_keys():
    frozen = FFTConv(8, kernel="longconv", l_max=16, lr={"kernel": 0.0})
    assert "weight" in dict(frozen.kernel.named_buffers())
    with pytest.raises(UnknownNameError, match=r"unknown lr key\(s\) \['dt'\] for LongConvKernel; expected a subset of \['kernel'\]"):
        FFTConv(8, kernel="longconv", l_max=16, lr={"dt": 0.0})
    with pytest.raises(ValueError, match="kernel='longconv' needs l_max"):
        FFTConv(8, kernel="longconv")


def test_capabilities_a_layer_lacks_are_clear_errors():
    bi = S4Block(8, d_state=4, bidirectional=True)
    assert not bi.capabilities.step and not bi.capabilities.state and bi.capabilities.bidirectional
    with pytest.raises(CapabilityError, match="bidirectional"):
        bi.step(torch.randn(2, 8), None)
    no_rate = S4Block(8, kernel="longconv", l_max=8)
    assert no_rate.capabilities.rate is False
    with pytest.raises(CapabilityError, match=r"rate=0.5 is not available.*no rate support"):
        no_rate(torch.randn(2, 5, 8), rate=0.5)

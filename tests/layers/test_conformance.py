"""Every registered layer, and the option variants that change its structure, passes the public conformance
checker (float64: full forward == steps == chunks with state forwarding, rate, causality, lengths with NaN
padding, gradients, dtypes, errors, and a language model built on it)."""

import pytest
import torch

from statespaces import FFTConv, S4Block
from statespaces.layers import LAYERS
from statespaces.testing import check_layer


@pytest.mark.parametrize("name", list(LAYERS))
def test_registered_layer_conforms(name):
    report = check_layer(name)
    caps = report.capabilities
    expected_skips = {"step": not caps.step, "chunks": not caps.state, "rate": not caps.rate, "lengths": not caps.lengths}
    assert sorted(report.skipped) == sorted(k for k, skip in expected_skips.items() if skip)


def dss_with_growing_modes(d_model, **options):
    """DSS lets Re(A) > 0 (its softmax normalisation keeps the kernel bounded): steps, chunks and rate must
    hold for those modes too, whose kernel is computed from the far end."""
    layer = S4Block(d_model, kernel="diag", disc="dss", init="diag-legs", real_transform="none", d_state=8, l_max=48, **options)
    with torch.no_grad():
        layer.layer.kernel.raw_A_real[:, :2] = -0.05
    return layer


VARIANTS = [
    ("dss-growing-modes", dss_with_growing_modes, {}),
    ("s4-bidirectional", S4Block, dict(d_state=8, bidirectional=True)),
    ("s4d-bidirectional", S4Block, dict(kernel="diag", d_state=8, bidirectional=True)),
    ("s4-channels-glu", S4Block, dict(d_state=8, channels=2, activation="glu")),
    ("s4-rank2-legt", S4Block, dict(d_state=8, init="legt", rank=2, n_ssm=2)),
    ("s4d-real-bilinear", S4Block, dict(kernel="diag", init="diag-real", is_real=True, disc="bilinear", d_state=5)),
    ("s4d-dt-untied", S4Block, dict(kernel="diag", init="diag-inv", dt_tie=False, d_state=8)),
    ("gated-bottleneck", S4Block, dict(kernel="diag", d_state=8, gate=2, bottleneck=2, gate_act="silu", mult_act="gelu")),
    ("longconv-smooth-squash", S4Block, dict(kernel="longconv", l_max=32, smooth=3, squash=1e-3)),
    ("longconv-bidirectional", S4Block, dict(kernel="longconv", l_max=32, bidirectional=True)),
    ("s4-l_max", S4Block, dict(d_state=8, l_max=64)),
]


@pytest.mark.parametrize("label,factory,options", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_option_variant_conforms(label, factory, options):
    check_layer(factory, options=options)


@pytest.mark.parametrize("realization", ["dense", "linear", "diagonal"])
def test_every_s4_step_realization_conforms(realization):
    """The diagonal realization keeps its state in the eigenbasis: forward(state=...), step and
    default_state all speak that form, and chunks == steps == whole still hold."""
    check_layer("s4", options={"d_state": 8, "init": "fout"}, step_options={"realization": realization})


def test_fftconv_with_channels_conforms():
    report = check_layer(FFTConv, options={"kernel": "diag", "d_state": 8, "channels": 3, "swap_channels": True}, model=False)
    assert "model" not in report.passed


def test_fftconv_takes_an_unregistered_kernel_class():
    from statespaces import LongConvKernel

    report = check_layer(FFTConv, options={"kernel": LongConvKernel, "l_max": 32}, model=False)
    assert "step" in report.passed and "rate" not in report.passed

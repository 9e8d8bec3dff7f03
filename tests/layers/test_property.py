"""Property test: any valid combination of S4Block options passes the conformance checker.

The hand-picked variants in test_conformance.py cover each option alone; this draws combinations (kernel x
init x discretisation x transforms x copies x channels x direction x gating x lengths x rate), where a bug in
how two options interact would hide.  Derandomized, so a failure reproduces; hypothesis prints the options.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statespaces import S4Block
from statespaces.testing import check_layer

TRANSFORMS = ["exp", "softplus", "relu"]


@st.composite
def s4_options(draw) -> dict:
    kernel = draw(st.sampled_from(["nplr", "diag", "longconv"]))
    opts: dict = {"kernel": kernel}
    if kernel == "longconv":
        opts.update(l_max=48, smooth=draw(st.sampled_from([1, 3])), squash=draw(st.sampled_from([0.0, 1e-3])))
    else:
        opts["d_state"] = draw(st.sampled_from([2, 4, 8]))
        opts["n_ssm"] = draw(st.sampled_from([None, 1, 2]))
        opts["dt_transform"] = draw(st.sampled_from(["exp", "softplus"]))
        opts["real_transform"] = draw(st.sampled_from(TRANSFORMS))
        if draw(st.booleans()):
            opts["l_max"] = 48
        if kernel == "nplr":
            init = draw(st.sampled_from(["legs", "legt", "lagt", "fout", "dplr-lin", "dplr-inv"]))
            opts.update(init=init, rank=2 if init == "legt" else draw(st.sampled_from([1, 2])))
        else:
            init = draw(st.sampled_from(["legs", "diag-lin", "diag-inv", "diag-rand", "diag-real"]))
            opts.update(init=init, disc=draw(st.sampled_from(["zoh", "bilinear"])), dt_tie=draw(st.booleans()))
            if init == "diag-real":
                opts["is_real"] = True
                opts["d_state"] = draw(st.sampled_from([1, 3, 4]))
    opts["channels"] = draw(st.sampled_from([1, 2]))
    if opts["channels"] > 1:
        opts["swap_channels"] = draw(st.booleans())
    opts["bidirectional"] = draw(st.booleans())
    opts["activation"] = draw(st.sampled_from(["gelu", "glu", None]))
    if draw(st.booleans()):
        opts.update(gate=draw(st.sampled_from([1, 2])), gate_act=draw(st.sampled_from(["silu", None])), mult_act=draw(st.sampled_from(["gelu", None])))
    if draw(st.booleans()):
        opts["bottleneck"] = 2
    # no output linear only where the inner width already is d_model
    plain = opts["channels"] == 1 and opts.get("gate", 1) == 1 and "bottleneck" not in opts
    opts["final_act"] = draw(st.sampled_from(["glu", None] if plain else ["glu", "gelu"]))
    return opts


@pytest.mark.filterwarnings("ignore")
@settings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(options=s4_options(), rate=st.sampled_from([2.0, 0.5]), length=st.sampled_from([12, 23]))
def test_any_valid_s4block_configuration_conforms(options, rate, length):
    check_layer(S4Block, options=options, rate=rate, length=length, model=False)

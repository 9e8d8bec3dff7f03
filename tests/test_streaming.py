"""StreamingModel (the fused real-arithmetic step) and the ONNX export of the step.

The reference is the model's convolution mode (``model(x)``), an independent code path: the streaming module is
built from the layers' steps, so agreeing with the convolution checks the probe, the real form of complex
states, the skip and the block wiring.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from statespaces.models.sequence import SequenceModel
from statespaces.streaming import StreamingModel, export_onnx

L = 24


def _model(layers, pool="none", tokens=False, seed=0, **cfg):
    torch.manual_seed(seed)
    model = SequenceModel(d_input=11 if tokens else 3, d_output=5, tokens=tokens, d_model=8, layers=layers, pool=pool, **cfg)
    return model.double().eval()


def _inputs(model, B=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    if model.config.tokens:
        return torch.randint(0, model.config.d_input, (B, L), generator=g)
    return torch.randn(B, L, model.config.d_input, generator=g, dtype=torch.float64)


def _stream(stream, x, states):
    ys = []
    for t in range(x.shape[1]):
        y, *states = stream(x[:, t], *states)
        ys.append(y)
    return torch.stack(ys, 1), states


LAYERS = [
    ["s4d", "s4d"],
    [{"name": "s4d", "d_state": 6, "channels": 2}],
    [{"name": "s4d", "init": "diag-lin", "disc": "bilinear"}],
    [{"name": "s4d", "is_real": True, "d_state": 4}],
    ["s4"],
    [{"name": "s4", "init": "fout"}],
    [{"name": "dss", "l_max": L}],
    ["gss"],
    [{"name": "lssl", "l_max": L}],
    [{"name": "longconv", "l_max": L}],
    [{"name": "sgconv", "l_max": L}],
    [{"name": "hyena", "l_max": L}],
    ["gru", "lstm"],
    ["mamba"],
    [{"name": "mamba2", "headdim": 4, "d_state": 8, "chunk_size": 8}],
]


@pytest.mark.parametrize("real", [False, True], ids=["eager", "real"])
@pytest.mark.parametrize("layers", LAYERS, ids=lambda spec: "-".join(e if isinstance(e, str) else e["name"] for e in spec))
def test_stream_matches_convolution_mode(layers, real):
    model = _model(layers)
    x = _inputs(model)
    with torch.no_grad():
        y_ref, _ = model(x)
        stream = StreamingModel(model, real=real)
        y, _ = _stream(stream, x, stream.initial_state(2))
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10)


def _stream_inplace(stream, x, states):
    ys = [stream.step_(x[:, t], states) for t in range(x.shape[1])]
    return torch.stack(ys, 1), states


@pytest.mark.parametrize("layers", LAYERS, ids=lambda spec: "-".join(e if isinstance(e, str) else e["name"] for e in spec))
def test_in_place_step_matches_convolution_mode_and_updates_the_given_states(layers):
    model = _model(layers, pool="mean")
    x = _inputs(model)
    with torch.no_grad():
        y_ref, state_ref = model(x, state=model.default_state(2))
        stream = StreamingModel(model)
        states = stream.initial_state(2)
        ids = [id(t) for t in states]
        y, states = _stream_inplace(stream, x, states)
    torch.testing.assert_close(y[:, -1], y_ref, rtol=1e-9, atol=1e-10)
    assert [id(t) for t in states] == ids, "step_ must update the caller's tensors, not replace them"
    assert not any(t.is_inference() for t in states), "the states stay ordinary tensors (usable outside inference mode)"
    for got, want in zip(states, stream.from_model_state(state_ref)):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)
    with torch.no_grad():  # the functional step takes over from the in-place one
        y_next = stream(x[:, 0], *states)[0]
        torch.testing.assert_close(y_next, model.step(x[:, 0], state_ref)[0], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("layers", [["s4d", "s4d"], [{"name": "s4d", "is_real": True, "d_state": 4}], ["s4"]], ids=["complex", "diagonal", "dense"])
def test_batch_one_matches_the_convolution_mode(layers):
    """

import contextlibBatch 1, the generation case, for the complex, diagonal and dense forms."""
    model = _model(layers)
    x = _inputs(model, B=1)
    with torch.no_grad():
        y_ref, _ = model(x)
        stream = StreamingModel(model)
        y, _ = _stream(stream, x, stream.initial_state(1))
        y_in_place, _ = _stream_inplace(stream, x, stream.initial_state(1))
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(y_in_place, y_ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("prenorm", [True, False], ids=["prenorm", "postnorm"])
@pytest.mark.parametrize("layers", [["s4d", "s4d"], [{"name": "s4d", "is_real": True, "d_state": 4}]], ids=["complex", "diagonal"])
def test_in_place_step_of_the_plain_block_with_pre_and_post_norm(layers, prenorm):
    """The written-out in-place block (one channel, exact GELU, Linear + GLU output) against the convolution."""
    model = _model(layers, prenorm=prenorm)
    x = _inputs(model)
    with torch.no_grad():
        y_ref, _ = model(x)
        stream = StreamingModel(model)
        assert all(b._flat_step for b in stream.blocks), "the written-out path is the one under test"
        y, _ = _stream_inplace(stream, x, stream.initial_state(2))
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("layers", [["s4d"], [{"name": "s4d", "is_real": True, "d_state": 4}], ["s4"]], ids=["complex", "diagonal", "dense"])
def test_fused_in_place_step_called_on_its_own_matches_the_functional_step(layers):
    """Outside inference mode (it enters the mode itself) and inside it (it must not enter again)."""
    fused = StreamingModel(_model(layers)).blocks[0].fused
    u = torch.randn(3, 8, dtype=torch.float64)
    s0 = torch.randn(3, 8, fused.n, dtype=torch.float64)
    y_ref, s_ref = fused(u, s0)
    for context in (contextlib.nullcontext, torch.inference_mode):
        s = s0.clone()
        with context():
            y = fused.step_(u, s)
        torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(s, s_ref, rtol=1e-12, atol=1e-12)
        assert not s.is_inference()


def test_in_place_step_refuses_a_strided_state():
    stream = StreamingModel(_model(["s4d"]))
    s = stream.initial_state(2)[0]
    with pytest.raises(ValueError, match="contiguous"):
        stream.blocks[0].fused.step_(torch.zeros(2, 8, dtype=torch.float64), s.transpose(0, 1).contiguous().transpose(0, 1))


def test_each_kernel_gets_its_cheapest_exact_form():
    forms = {
        "s4d": "complex",
        "dss": "complex",
        "s4d-real": "diagonal",
        "s4": "dplr",  # the 'linear' realization (the default): diagonal plus rank-1, O(n) per feature
        "lssl": "dense",
    }
    specs = {"s4d-real": {"name": "s4d", "is_real": True, "d_state": 4}, "dss": {"name": "dss", "l_max": L}, "lssl": {"name": "lssl", "l_max": L}}
    for name, form in forms.items():
        stream = StreamingModel(_model([specs.get(name, name)]))
        assert stream.blocks[0].fused.form == form, name
        # a strided coefficient made every elementwise op of the step follow its memory order (10x slower at B=64)
        strided = [k for k, b in stream.blocks[0].fused.named_buffers() if not b.is_contiguous()]
        assert not strided, (name, strided)


@pytest.mark.parametrize("spec", [{"name": "s4"}, {"name": "s4", "init": "legt", "rank": 2, "channels": 2}], ids=["legs", "legt-rank2-2ch"])
def test_low_rank_step_matches_the_dense_map(spec):
    """The 'dplr' form against the dense map read off the same kernel (real=True keeps the dense form), on
    random states, functional and in place, and in the layer's other realizations the dense form stays."""
    model = _model([spec])
    fused = StreamingModel(model).blocks[0].fused
    dense = StreamingModel(model, real=True).blocks[0].fused
    assert (fused.form, dense.form) == ("dplr", "dense")
    g = torch.Generator().manual_seed(3)
    u = torch.randn(4, 8, generator=g, dtype=torch.float64)
    s0 = torch.randn(4, 8, fused.n, generator=g, dtype=torch.float64)
    y_ref, s_ref = dense(u, s0)
    y, s1 = fused(u, s0)
    torch.testing.assert_close(s1, s_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    s = s0.clone()
    torch.testing.assert_close(fused.step_(u, s), y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s, s_ref, rtol=1e-12, atol=1e-12)
    assert StreamingModel(model, realization="dense").blocks[0].fused.form == "dense"


@pytest.mark.parametrize("realization", ["linear", "dense"])
@pytest.mark.parametrize("pool", ["mean", "last", "none"])
def test_pools_realizations_and_prenorm_ffn(pool, realization):
    model = _model(["s4", "s4d"], pool=pool, prenorm=True, ffn=2, norm="rms")
    x = _inputs(model)
    with torch.no_grad():
        stream = StreamingModel(model, realization=realization)
        y, _ = _stream(stream, x, stream.initial_state(2))
        y_ref, _ = model(x)
    torch.testing.assert_close(y[:, -1] if pool != "none" else y, y_ref, rtol=1e-9, atol=1e-10)


def test_tokens_rate_and_batchnorm():
    model = _model(["s4d", "s4d"], tokens=True, norm="batch")
    with torch.no_grad():  # non-trivial running statistics
        model.blocks[0].norm.running_mean.uniform_(-0.5, 0.5)
        model.blocks[0].norm.running_var.uniform_(0.5, 2.0)
        x = _inputs(model)
        y_ref, _ = model(x, rate=0.5)
        stream = StreamingModel(model, rate=0.5)
        y, _ = _stream(stream, x, stream.initial_state(2))
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10)


def test_states_convert_both_ways():
    """Streaming states -> ModelState continue the convolution mode, and a ModelState from a chunked forward
    continues the stream."""
    model = _model(["s4d", "gru", "s4"], pool="mean")
    x = _inputs(model)
    with torch.no_grad():
        y_ref, _ = model(x)
        stream = StreamingModel(model)
        _, states = _stream(stream, x[:, :10], stream.initial_state(2))
        y_rest, _ = model(x[:, 10:], state=stream.to_model_state(states))
        torch.testing.assert_close(y_rest, y_ref, rtol=1e-9, atol=1e-10)

        _, state = model(x[:, :15], state=model.default_state(2))
        y, _ = _stream(stream, x[:, 15:], stream.from_model_state(state))
        torch.testing.assert_close(y[:, -1], y_ref, rtol=1e-9, atol=1e-10)


def test_matches_model_step_in_float32():
    model = _model(["s4d", "s4"]).float()
    x = _inputs(model).float()
    with torch.no_grad():
        model.setup_step()
        state, ys = model.default_state(2), []
        for t in range(L):
            y, state = model.step(x[:, t], state)
            ys.append(y)
        y, _ = _stream(StreamingModel(model), x, StreamingModel(model).initial_state(2))
    torch.testing.assert_close(y, torch.stack(ys, 1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "layers, message",
    [
        (["s5"], "complex state"),
        ([{"name": "h3", "l_max": L}], "complex state"),
        (["mha"], "grows with the sequence"),
        (["mega"], "grows with the sequence"),
    ],
)
def test_unsupported_layers_are_refused(layers, message):
    with pytest.raises(ValueError, match=message):
        StreamingModel(_model(layers))


def test_training_mode_and_wrong_type_are_refused():
    with pytest.raises(ValueError, match="model.eval"):
        StreamingModel(_model(["s4d"]).train())
    with pytest.raises(TypeError, match="SequenceModel"):
        StreamingModel(torch.nn.Linear(2, 2))


def test_onnx_step_matches_model_step(tmp_path):
    """The exported graph, run by onnxruntime at another batch size than it was exported with, follows
    model.step over a few hundred steps."""
    ort = pytest.importorskip("onnxruntime")
    model = _model(["s4d", "gru", "s4"], pool="mean").float()
    path = export_onnx(model, tmp_path / "step.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    stream = StreamingModel(model)
    B, steps = 3, 300
    x = torch.randn(B, steps, 3)
    feed = dict(zip(names[1:], (s.numpy() for s in stream.initial_state(B))))
    state = model.default_state(B)
    err = 0.0
    with torch.no_grad():
        for t in range(steps):
            out = session.run(None, {"x": x[:, t].numpy(), **feed})
            feed = dict(zip(names[1:], out[1:]))
            y_ref, state = model.step(x[:, t], state)
            err = max(err, float((torch.from_numpy(out[0]) - y_ref).abs().max()))
    assert err < 1e-4, err


def test_export_command_writes_onnx_and_torch_export_programs(tmp_path, capsys):
    from statespaces.cli import main

    ort = pytest.importorskip("onnxruntime")
    model = _model(["s4d", "lstm"], pool="last").float()
    model.save_pretrained(tmp_path / "model")
    x = torch.randn(2, 3)
    with torch.no_grad():
        model.setup_step()
        y_ref, _ = model.step(x, model.default_state(2))

    assert main(["export", f"ckpt={tmp_path / 'model'}", f"out={tmp_path / 'step.onnx'}"]) == 0
    assert "wrote" in capsys.readouterr().out
    session = ort.InferenceSession(str(tmp_path / "step.onnx"), providers=["CPUExecutionProvider"])
    stream = StreamingModel(model)
    names = [i.name for i in session.get_inputs()]
    out = session.run(None, {"x": x.numpy(), **{n: s.numpy() for n, s in zip(names[1:], stream.initial_state(2))}})
    torch.testing.assert_close(torch.from_numpy(out[0]), y_ref, rtol=1e-4, atol=1e-5)

    assert main(["export", f"ckpt={tmp_path / 'model'}", f"out={tmp_path / 'step.pt2'}", "format=pt2"]) == 0
    program = torch.export.load(tmp_path / "step.pt2")
    y, *_ = program.module()(x, *stream.initial_state(2))
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)

    assert main(["export", f"ckpt={tmp_path / 'model'}", f"out={tmp_path / 'x'}", "format=tflite"]) == 2
    assert "format must be 'onnx' or 'pt2'" in capsys.readouterr().err
    _model(["mha"]).save_pretrained(tmp_path / "attn")
    assert main(["export", f"ckpt={tmp_path / 'attn'}", f"out={tmp_path / 'a.onnx'}"]) == 2
    assert "grows with the sequence" in capsys.readouterr().err

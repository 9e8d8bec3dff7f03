import pytest
import torch

from statespaces import FFTConv
from statespaces.layers import LAYERS, StateError
from statespaces.models import LanguageModel, ModelConfig, SequenceModel
from statespaces.registry import UnknownNameError
from statespaces.testing import run_steps


def _model(**kw):
    kw.setdefault("layer_options", {"d_state": 8})
    if "layers" not in kw:
        kw.setdefault("n_layers", 2)
    return SequenceModel(ModelConfig(d_input=3, d_output=5, d_model=8, **kw)).double()


STACKS = [("mean", False, "layer", None), ("last", True, "rms", 2), ("none", True, "batch", None)]


@pytest.mark.parametrize("pool,prenorm,norm,ffn", STACKS)
@pytest.mark.parametrize("layer", list(LAYERS))
def test_stack_conv_step_and_chunks_agree(layer, pool, prenorm, norm, ffn):
    """Every registered layer, with its example options, in every arrangement of the residual stack."""
    model = _model(layer=layer, pool=pool, prenorm=prenorm, norm=norm, ffn=ffn, layer_options=LAYERS.lookup(layer)[0].example).eval()
    caps = model.blocks[0].layer.capabilities
    x = torch.randn(2, 20, 3, dtype=torch.float64)
    with torch.no_grad():
        out, _ = model(x)
        assert out.shape == ((2, 5) if pool != "none" else (2, 20, 5))
        if caps.step:
            model.setup_step()
            steps, _ = run_steps(model, x, model.default_state(2))
            torch.testing.assert_close(steps if pool == "none" else steps[:, -1], out)
        if caps.state:  # chunked state forwarding through the whole stack, pooling included
            a, state = model(x[:, :7], state=model.default_state(2))
            b, state = model(x[:, 7:], state=state)
            torch.testing.assert_close(torch.cat([a, b], 1) if pool == "none" else b, out)


def test_hybrid_stack_from_a_per_block_list():
    model = _model(layers=["s4d", {"name": "s4", "d_state": 4}, {"name": "longconv", "l_max": 32}], pool="none", layer_options={}).eval()
    kinds = [type(b.layer.layer.kernel).__name__ for b in model.blocks]
    assert kinds == ["DiagKernel", "DPLRKernel", "LongConvKernel"] and model.blocks[1].layer.d_state == 4
    x = torch.randn(2, 12, 3, dtype=torch.float64)
    with torch.no_grad():
        out, _ = model(x)
        model.setup_step()
        steps, _ = run_steps(model, x, model.default_state(2))
    torch.testing.assert_close(steps, out)


def test_hybrid_language_model_with_attention_at_attn_layer_idx_generates_like_its_forward():
    """The H3 / Mega papers' hybrid: SSM blocks with attention at chosen depths, decoded with O(1) SSM steps and
    a key/value cache, equal to rerunning the full forward on each prefix."""
    cfg = ModelConfig(d_input=11, d_output=11, tokens=True, pool="none", d_model=8, n_layers=3, layer="s4d", layer_options={"d_state": 4},
                      attn_layer_idx=[1], attn_options={"n_heads": 2}, prenorm=True, tie_embeddings=True)
    assert cfg.block_specs() == [("s4d", {"d_state": 4}), ("mha", {"n_heads": 2}), ("s4d", {"d_state": 4})]
    lm = LanguageModel(cfg).double()
    assert [type(b.layer).__name__ for b in lm.blocks] == ["S4Block", "MultiHeadAttention", "S4Block"]
    prompt = torch.randint(0, 11, (2, 5))
    out = lm.generate(prompt, n=8, temperature=0)
    with torch.no_grad():
        for t in range(5, 13):
            assert torch.equal(lm(out[:, :t])[0][:, -1].argmax(-1), out[:, t])


def test_baselines_by_name_in_any_stack():
    for name in ("gru", "lstm", "mha"):
        model = _model(layer=name, layer_options={}).eval()
        assert model(torch.randn(2, 9, 3, dtype=torch.float64))[0].shape == (2, 5)


def test_setup_step_sends_each_option_to_the_layers_that_take_it():
    model = _model(layers=[{"name": "s4", "d_state": 4}, {"name": "longconv", "l_max": 16}], layer_options={}).eval()
    model.setup_step(realization="dense")  # only S4 has realizations
    assert model.blocks[0].layer.layer.kernel._step_mode == "dense"
    with pytest.raises(UnknownNameError, match="'realisation' \\(did you mean 'realization'"):
        model.setup_step(realisation="dense")


def test_lengths_pool_over_valid_steps_only():
    model = _model(pool="mean").eval()
    x = torch.randn(3, 12, 3, dtype=torch.float64)
    lengths = torch.tensor([12, 5, 1])
    out, _ = model(x, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(out[b], model(x[b : b + 1, :n])[0][0])
    model = _model(pool="last").eval()
    out, _ = model(x, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(out[b], model(x[b : b + 1, :n])[0][0])


def test_save_and_load_pretrained_roundtrip(tmp_path):
    model = _model(layer="s4", layer_options={"d_state": 8, "lr": {"dt": 0.0}}).float()
    model.save_pretrained(tmp_path / "m", extra={"note": "hi"})
    loaded = SequenceModel.from_pretrained(tmp_path / "m")
    x = torch.randn(2, 10, 3)
    torch.testing.assert_close(loaded(x)[0], model(x)[0])
    assert loaded.config == model.config
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]


def test_language_model_greedy_generation_equals_rerunning_the_prefix(tmp_path):
    torch.manual_seed(0)
    lm = LanguageModel(ModelConfig(d_input=11, d_output=11, tokens=True, pool="none", d_model=16, n_layers=2, layer="s4",
                                   layer_options={"d_state": 8}, tie_embeddings=True)).double()
    prompt = torch.randint(0, 11, (2, 5))
    out = lm.generate(prompt, n=12, temperature=0)
    assert out.shape == (2, 17) and torch.equal(out[:, :5], prompt)
    lm.eval()
    with torch.no_grad():
        for t in range(5, 17):
            logits, _ = lm(out[:, :t])
            assert torch.equal(logits[:, -1].argmax(-1), out[:, t])
    lm.save_pretrained(tmp_path / "lm")
    again = SequenceModel.from_pretrained(tmp_path / "lm").double()
    assert isinstance(again, LanguageModel)
    assert torch.equal(again.generate(prompt, n=12, temperature=0), out)


def test_sampling_respects_top_k_and_top_p():
    from statespaces.models import sample_next

    logits = torch.tensor([[5.0, 4.0, 0.0, -1.0]]).repeat(200, 1)
    g = torch.Generator().manual_seed(0)
    assert set(sample_next(logits, 1.0, top_k=2, generator=g).tolist()) <= {0, 1}
    assert set(sample_next(logits, 1.0, top_p=0.5, generator=g).tolist()) == {0}
    assert set(sample_next(logits, 0.0).tolist()) == {0}


def _frequencies(logits, n=6000, **options):
    from statespaces.models import sample_next

    g = torch.Generator().manual_seed(0)
    draws = sample_next(torch.as_tensor(logits, dtype=torch.float32).repeat(n, 1), generator=g, **options)
    return torch.bincount(draws, minlength=len(logits)).double() / n


@pytest.mark.parametrize(
    "probs,options,expected",
    [
        # top_k keeps exactly the k most likely, renormalised (breakage: an off-by-one kth value)
        ([0.45, 0.3, 0.2, 0.05], dict(top_k=2), [0.6, 0.4, 0, 0]),
        ([0.2, 0.45, 0.05, 0.3], dict(top_k=3), [0.2 / 0.95, 0.45 / 0.95, 0, 0.3 / 0.95]),
        # top_p keeps the smallest set reaching the mass, including the token that crosses it (breakage:
        # cumsum >= top_p without subtracting the token's own probability), in the logits' own order
        # (breakage: scattering the kept tokens back to sorted positions)
        ([0.2, 0.5, 0.3], dict(top_p=0.79), [0, 0.625, 0.375]),
        ([0.2, 0.5, 0.3], dict(top_p=0.81), [0.2, 0.5, 0.3]),
        ([0.2, 0.5, 0.3], dict(top_p=0.49), [0, 1, 0]),
        ([0.1, 0.2, 0.3, 0.4], dict(top_k=3, top_p=0.5), [0, 0, 3 / 7, 4 / 7]),
        # temperature divides the logits (breakage: multiplies)
        ([0.1, 0.2, 0.7], dict(temperature=2.0), torch.tensor([0.1, 0.2, 0.7]).sqrt() / torch.tensor([0.1, 0.2, 0.7]).sqrt().sum()),
    ],
)
def test_sampling_draws_from_exactly_the_renormalised_truncated_distribution(probs, options, expected):
    freq = _frequencies(torch.tensor(probs).log(), **options)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    assert torch.equal(freq > 0, expected > 0), (freq, expected)
    torch.testing.assert_close(freq, expected, rtol=0, atol=0.025)


def test_model_errors():
    with pytest.raises(UnknownNameError, match="unknown layer 's4dd' \\(did you mean 's4d'"):
        _model(layer="s4dd")
    with pytest.raises(UnknownNameError, match="pool must be one of .* \\(did you mean 'mean'"):
        ModelConfig(pool="mena")
    with pytest.raises(UnknownNameError, match="ModelConfig got unknown option\\(s\\) 'd_modle' \\(did you mean 'd_model'"):
        ModelConfig.from_dict({"d_modle": 4})
    with pytest.raises(ValueError, match="n_layers=4 but layers lists 2 blocks"):
        ModelConfig(n_layers=4, layers=["s4d", "s4"])
    with pytest.raises(ValueError, match="either an explicit per-block 'layers' list .* or 'layer_options' / 'attn_layer_idx'"):
        ModelConfig(layers=["s4d"], attn_layer_idx=[0])
    with pytest.raises(ValueError, match="either an explicit per-block 'layers' list"):
        ModelConfig(layers=["s4d"], layer_options={"d_state": 4})
    with pytest.raises(ValueError, match=r"attn_layer_idx must hold distinct block indices in \[0, 2\), got \[2\]"):
        ModelConfig(n_layers=2, attn_layer_idx=[2])
    with pytest.raises(ValueError, match=r"layers\[1\] must be a layer name or a dict with a 'name' key"):
        ModelConfig(layers=["s4d", {"d_state": 4}])
    LAYERS.add("test-wide", FFTConv)
    try:
        with pytest.raises(ValueError, match="layer 'test-wide' outputs 16 features; a residual block needs d_model=8"):
            _model(layer="test-wide", layer_options={"d_state": 4, "channels": 2})
    finally:
        LAYERS.remove("test-wide")
    model = _model()
    with pytest.raises(ValueError, match=r"\(B, L, d_input=3\)"):
        model(torch.randn(2, 10, 4))
    x = torch.randn(2, 10, 3, dtype=torch.float64)
    with pytest.raises(StateError, match="a model state is a ModelState"):
        model(x, state=[model.blocks[0].layer.default_state(2)] * 2)
    short = model.default_state(2)
    short.layers.pop()
    with pytest.raises(StateError, match="state holds 1 layer states; this model has 2 blocks"):
        model(x, state=short)
    model.setup_step()
    with pytest.raises(StateError, match="state holds 1 layer states"):
        model.step(x[:, 0], short)


def test_generate_checks_its_options_before_any_work():
    lm = LanguageModel(ModelConfig(d_input=5, d_output=5, tokens=True, pool="none", d_model=8, n_layers=1, layer_options={"d_state": 4}))
    prompt = torch.randint(0, 5, (2, 3))
    bad = [
        (dict(top_p=0.0), r"top_p must lie in \(0, 1\], got 0.0"),
        (dict(top_p=1.5), r"top_p must lie in \(0, 1\]"),
        (dict(top_k=-1), "top_k must be None .* or an int >= 1, got -1"),
        (dict(temperature=float("nan")), "temperature must be a finite number >= 0"),
        (dict(temperature=-1.0), "temperature must be a finite number >= 0"),
        (dict(n=-2), "n must be an int >= 0, got -2"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=message):
            lm.generate(prompt, **{"n": 3, **kwargs})
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 5\).*max 7"):
        lm.generate(torch.tensor([[1, 7]]), n=2)
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 5\).*min -1"):
        lm.generate(torch.tensor([[-1, 2]]), n=2)
    with pytest.raises(ValueError, match="integer tensor of token ids"):
        lm.generate(torch.zeros(1, 3), n=2)


def test_generate_cli_reports_bad_options_without_a_traceback(tmp_path, capsys):
    from statespaces.cli import main

    lm = LanguageModel(ModelConfig(d_input=3, d_output=3, tokens=True, pool="none", d_model=8, n_layers=1, layer_options={"d_state": 4}))
    lm.save_pretrained(tmp_path / "lm", extra={"spec": {"meta": {"itos": ["a", "b", "c"]}}})
    for args, message in [(["top_p=0"], "top_p must lie in (0, 1]"), (["temperature=hot"], "temperature must be a number"), (["n=x"], "n must be an integer")]:
        assert main(["generate", f"ckpt={tmp_path / 'lm'}", "prompt=ab", *args]) == 2
        assert message in capsys.readouterr().err


def test_one_step_sequences_and_nan_padding_through_the_whole_model():
    model = _model(pool="mean").eval()
    x = torch.randn(3, 1, 3, dtype=torch.float64)
    out, _ = model(x)
    assert out.shape == (3, 5) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match=r"at least one step \(L >= 1\)"):
        model(torch.randn(3, 0, 3, dtype=torch.float64))
    padded = torch.randn(2, 9, 3, dtype=torch.float64)
    padded[1, 4:] = float("nan")
    padded[0, 7:] = float("inf")
    out, _ = model(padded, lengths=torch.tensor([7, 4]))
    torch.testing.assert_close(out[1], model(padded[1:, :4])[0][0])
    torch.testing.assert_close(out[0], model(padded[:1, :7])[0][0])

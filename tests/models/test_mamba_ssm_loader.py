"""A mamba_ssm MambaLMHeadModel checkpoint (random weights under its exact key names) runs in our LanguageModel:
logits equal an independent loop over the official block equations, and generation is O(1) per token."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from statespaces.models import load_mamba_ssm
from tests.layers.test_mamba import _loop as mamba_loop
from tests.layers.test_mamba2 import _loop as mamba2_loop

D, N_LAYER, VOCAB = 8, 2, 13


def _rms(x, w, eps=1e-5):
    return x / torch.sqrt(x.square().mean(-1, keepdim=True) + eps) * w


def _mamba1_params(gen, d_inner=16, d_state=4, d_conv=4, dt_rank=1):
    def r(*s, scale=0.3):
        return torch.randn(*s, generator=gen, dtype=torch.float64) * scale

    return {
        "in_proj.weight": r(2 * d_inner, D),
        "conv1d.weight": r(d_inner, 1, d_conv),
        "conv1d.bias": r(d_inner),
        "x_proj.weight": r(dt_rank + 2 * d_state, d_inner),
        "dt_proj.weight": r(d_inner, dt_rank),
        "dt_proj.bias": r(d_inner) - 3.0,
        "A_log": torch.log(torch.arange(1, d_state + 1, dtype=torch.float64)).repeat(d_inner, 1) + r(d_inner, d_state, scale=0.1),
        "D": 1 + r(d_inner),
        "out_proj.weight": r(D, d_inner),
    }


def _mamba2_params(gen, d_inner=16, d_state=4, d_conv=4, headdim=4, ngroups=1):
    nheads = d_inner // headdim
    conv_dim = d_inner + 2 * ngroups * d_state

    def r(*s, scale=0.3):
        return torch.randn(*s, generator=gen, dtype=torch.float64) * scale

    return {
        "in_proj.weight": r(2 * d_inner + 2 * ngroups * d_state + nheads, D),
        "conv1d.weight": r(conv_dim, 1, d_conv),
        "conv1d.bias": r(conv_dim),
        "dt_bias": r(nheads) - 3.0,
        "A_log": r(nheads),
        "D": 1 + r(nheads),
        "norm.weight": 1 + r(d_inner),
        "out_proj.weight": r(D, d_inner),
    }


def _checkpoint(kind):
    gen = torch.Generator().manual_seed(0)
    padded = 16  # vocab 13 padded to a multiple of 8
    sd = {"backbone.embedding.weight": torch.randn(padded, D, generator=gen, dtype=torch.float64)}
    mixers = []
    for i in range(N_LAYER):
        mixer = _mamba1_params(gen) if kind == "Mamba1" else _mamba2_params(gen)
        mixers.append(mixer)
        sd.update({f"backbone.layers.{i}.mixer.{k}": v for k, v in mixer.items()})
        sd[f"backbone.layers.{i}.norm.weight"] = 1 + 0.1 * torch.randn(D, generator=gen, dtype=torch.float64)
    sd["backbone.norm_f.weight"] = 1 + 0.1 * torch.randn(D, generator=gen, dtype=torch.float64)
    sd["lm_head.weight"] = sd["backbone.embedding.weight"]
    ssm_cfg = {"d_state": 4, "layer": kind} if kind == "Mamba1" else {"d_state": 4, "headdim": 4, "chunk_size": 4, "layer": kind}
    config = {"d_model": D, "d_intermediate": 0, "n_layer": N_LAYER, "vocab_size": VOCAB, "ssm_cfg": ssm_cfg, "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 8, "tie_embeddings": True}
    return sd, config, mixers


def _ns(mixer: dict, kind: str):
    """The raw tensors as the attribute tree the test loops read (m.in_proj.weight, ...)."""
    m = SimpleNamespace(**{k.split(".")[0]: SimpleNamespace() for k in mixer if "." in k})
    for k, v in mixer.items():
        if "." in k:
            setattr(getattr(m, k.split(".")[0]), k.split(".")[1], v)
        else:
            setattr(m, k, v)
    d_inner = mixer["out_proj.weight"].shape[1]
    m.d_inner, m.d_conv = d_inner, mixer["conv1d.weight"].shape[-1]
    if kind == "Mamba1":
        m.d_state, m.dt_rank = mixer["A_log"].shape[1], mixer["dt_proj.weight"].shape[1]
    else:
        m.nheads, m.headdim, m.ngroups, m.d_state = mixer["A_log"].shape[0], 4, 1, 4
        m.conv_dim = mixer["conv1d.weight"].shape[0]
        m.dt_limit, m.rmsnorm, m.norm_before_gate, m.norm_weight = (0.0, float("inf")), True, False, mixer["norm.weight"]
    return m


@pytest.mark.parametrize("kind", ["Mamba1", "Mamba2"])
def test_a_mamba_ssm_checkpoint_gives_the_official_logits_and_generates(kind, tmp_path):
    sd, config, mixers = _checkpoint(kind)
    tokens = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(1))
    x = sd["backbone.embedding.weight"][tokens]
    loop = mamba_loop if kind == "Mamba1" else mamba2_loop
    for i, mixer in enumerate(mixers):
        x = x + loop(_ns(mixer, kind), _rms(x, sd[f"backbone.layers.{i}.norm.weight"]))
    expected = _rms(x, sd["backbone.norm_f.weight"]) @ sd["lm_head.weight"].T

    model = load_mamba_ssm({k: v.float() for k, v in sd.items()}, config).double()
    assert model.config.d_input == 16 and model.config.layer == ("mamba" if kind == "Mamba1" else "mamba2")
    logits, _ = model(tokens)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)

    # from a folder, as downloaded checkpoints come
    save_file({k: v.float().contiguous() for k, v in sd.items() if k != "lm_head.weight"}, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(config))
    again = load_mamba_ssm(tmp_path).double()
    torch.testing.assert_close(again(tokens)[0], logits)
    out = again.generate(tokens[:, :4], n=5, temperature=0)
    with torch.no_grad():
        for t in range(4, 9):
            assert torch.equal(again(out[:, :t])[0][:, -1].argmax(-1), out[:, t])


def test_loader_errors(tmp_path):
    sd, config, _ = _checkpoint("Mamba1")
    with pytest.raises(ValueError, match="unknown Mamba1 option"):
        load_mamba_ssm(sd, {**config, "ssm_cfg": {"d_stat": 4}})
    with pytest.raises(ValueError, match="attention layers or MLPs are not supported"):
        load_mamba_ssm(sd, {**config, "d_intermediate": 32})
    with pytest.raises(ValueError, match="unused \\['backbone.extra'\\]"):
        load_mamba_ssm({**sd, "backbone.extra": torch.zeros(1)}, config)
    with pytest.raises(ValueError, match="needs config="):
        load_mamba_ssm(sd)
    assert math.isfinite(load_mamba_ssm(sd, config)(torch.zeros(1, 3, dtype=torch.long))[0].sum().item())

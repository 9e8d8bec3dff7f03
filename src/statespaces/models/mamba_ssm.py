"""Run checkpoints of mamba_ssm's ``MambaLMHeadModel`` (state-spaces/mamba ``models/mixer_seq_simple.py``) with our
code, on any device, with O(1) work per generated token.

mamba_ssm's backbone is ``x_(i+1) = x_i + mixer_i(norm_i(x_i))``, ``logits = lm_head(norm_f(x_n))`` (it carries the
sum as a separate ``residual`` tensor, which is the same arithmetic), the embedding tied to ``lm_head`` by
default: our pre-norm :class:`~statespaces.models.LanguageModel` with ``norm='rms'`` (or 'layer'), eps 1e-5, no
dropout, and the decoder's bias set to zero.  ``residual_in_fp32`` only matters in half precision: our models keep
the residual in the parameters' dtype (float32 unless converted).  Supported: ``ssm_cfg.layer`` 'Mamba1' (default)
or 'Mamba2', no attention layers (``attn_layer_idx``) and no MLP (``d_intermediate = 0``).

    model = load_mamba_ssm("path/to/checkpoint")      # config.json + pytorch_model.bin or model.safetensors
    tokens = model.generate(prompt, n=100, temperature=0.7, top_p=0.9)

Nothing in the files is executed: ``.bin`` files load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .lm import LanguageModel

__all__ = ["load_mamba_ssm", "mamba_ssm_config"]

# keys of ssm_cfg that select kernels or bookkeeping in mamba_ssm and do not change the math
_IGNORED = {"layer", "use_fast_path", "use_mem_eff_path", "layer_idx", "device", "dtype", "sequence_parallel", "process_group"}
_MAMBA1 = {"d_state", "d_conv", "expand", "dt_rank", "dt_min", "dt_max", "dt_init", "dt_scale", "dt_init_floor", "conv_bias", "bias"}
_MAMBA2 = {"d_state", "d_conv", "conv_init", "expand", "headdim", "ngroups", "A_init_range", "D_has_hdim", "rmsnorm", "norm_before_gate", "dt_min", "dt_max", "dt_init_floor", "dt_limit", "bias", "conv_bias", "chunk_size"}


def mamba_ssm_config(config: dict[str, Any]) -> dict[str, Any]:
    """Our ModelConfig (as a dict) for a mamba_ssm ``MambaConfig`` dict."""
    unsupported = {k: config[k] for k in ("attn_layer_idx", "d_intermediate") if config.get(k)}
    if unsupported:
        raise ValueError(f"mamba_ssm configs with attention layers or MLPs are not supported yet, got {unsupported}")
    ssm_cfg = dict(config.get("ssm_cfg") or {})
    kind = ssm_cfg.get("layer", "Mamba1")
    if kind not in ("Mamba1", "Mamba2"):
        raise ValueError(f"ssm_cfg.layer must be 'Mamba1' or 'Mamba2', got {kind!r}")
    known = _MAMBA1 if kind == "Mamba1" else _MAMBA2
    unknown = sorted(set(ssm_cfg) - known - _IGNORED)
    if unknown:
        raise ValueError(f"unknown {kind} option(s) {unknown} in ssm_cfg; this loader knows {sorted(known)}")
    options = {k: (tuple(v) if isinstance(v, list) else v) for k, v in ssm_cfg.items() if k in known}
    vocab, multiple = int(config["vocab_size"]), int(config.get("pad_vocab_size_multiple", 8))
    if vocab % multiple:
        vocab += multiple - vocab % multiple
    return {
        "d_input": vocab,
        "d_output": vocab,
        "tokens": True,
        "pool": "none",
        "d_model": int(config["d_model"]),
        "n_layers": int(config["n_layer"]),
        "layer": "mamba" if kind == "Mamba1" else "mamba2",
        "layer_options": options,
        "norm": "rms" if config.get("rms_norm", True) else "layer",
        "norm_eps": 1e-5,
        "prenorm": True,
        "tie_embeddings": bool(config.get("tie_embeddings", True)),
    }


def _read(path: Path) -> tuple[dict, dict]:
    config = json.loads((path / "config.json").read_text())
    if (path / "model.safetensors").exists():
        from safetensors.torch import load_file  # noqa: PLC0415

        return load_file(path / "model.safetensors"), config
    if (path / "pytorch_model.bin").exists():
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True), config
    raise FileNotFoundError(f"{path} has config.json but neither model.safetensors nor pytorch_model.bin")


def load_mamba_ssm(source: str | Path | dict, config: dict | None = None, strict: bool = True) -> LanguageModel:
    """A :class:`LanguageModel` holding a mamba_ssm ``MambaLMHeadModel``'s weights.

    Args:
        source: a folder with ``config.json`` and ``pytorch_model.bin`` or ``model.safetensors``, or a state dict.
        config: the ``MambaConfig`` dict when ``source`` is a state dict.
        strict: every checkpoint tensor must find its place (and every model tensor be filled).
    """
    if isinstance(source, dict):
        if config is None:
            raise ValueError("load_mamba_ssm(state_dict) needs config= (the checkpoint's MambaConfig as a dict)")
        state = source
    else:
        state, config = _read(Path(source))
    ours = mamba_ssm_config(config)
    model = LanguageModel(ours)
    mapped: dict[str, torch.Tensor] = {}
    unused = []
    for key, value in state.items():
        if key == "backbone.embedding.weight":
            mapped["encoder.weight"] = value
        elif key == "backbone.norm_f.weight" or key == "backbone.norm_f.bias":
            mapped["final_norm." + key.rsplit(".", 1)[1]] = value
        elif key == "lm_head.weight":
            if not ours["tie_embeddings"]:
                mapped["decoder.weight"] = value
        elif key.startswith("backbone.layers."):
            i, rest = key[len("backbone.layers.") :].split(".", 1)
            if rest.startswith("mixer."):
                name = rest[len("mixer.") :]
                mapped[f"blocks.{i}.layer.{'norm_weight' if name == 'norm.weight' else name}"] = value
            elif rest.startswith("norm."):
                mapped[f"blocks.{i}.{rest}"] = value
            else:
                unused.append(key)
        else:
            unused.append(key)
    mapped["decoder.bias"] = torch.zeros(ours["d_output"])
    expected = model.state_dict()
    if strict:
        missing = sorted(k for k in expected if k not in mapped and not (ours["tie_embeddings"] and k == "decoder.weight"))
        if unused or missing:
            raise ValueError(f"checkpoint does not match the model: unused {unused[:8]}, missing {missing[:8]}")
    for k, v in mapped.items():
        if k in expected and tuple(v.shape) != tuple(expected[k].shape):
            raise ValueError(f"checkpoint tensor for {k} has shape {tuple(v.shape)}, the model expects {tuple(expected[k].shape)}")
    model.load_state_dict(mapped, strict=False)
    return model.eval()

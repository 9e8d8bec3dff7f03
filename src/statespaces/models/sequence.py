"""SequenceModel: encoder -> n residual blocks around any registered layer -> pooling -> decoder.

    x (B, L, d_input) floats, or (B, L) tokens
      -> encoder (Linear or Embedding) -> (B, L, H)
      -> n_layers x [ (pre)norm -> layer -> dropout -> + residual -> (post)norm  [-> FFN block] ]
      -> final norm (pre-norm only) -> pool ('mean' | 'last' | 'none') -> decoder -> (B, d_output) or (B, L, d_output)

Recurrent inference runs the whole stack one step at a time (``setup_step`` / ``default_state`` / ``step``),
with the same outputs as the convolution (and pooling kept as a running state).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..files import atomic_write, atomic_write_text, sha256_file
from ..layers.base import StateError
from ..layers.common import SequenceDropout
from ..layers.registry import make_layer
from ..ops.sequence import as_lengths, length_mask
from ..registry import Registry, UnknownNameError, check_options, suggest

__all__ = ["ModelConfig", "ModelState", "SequenceModel", "MODEL_CLASSES", "NORMS", "POOLS"]

NORMS = ("layer", "batch", "rms", "none")
POOLS = ("mean", "last", "none")
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


@dataclass
class ModelConfig:
    """Configuration of a :class:`SequenceModel` (JSON-serialisable; saved with the weights).

    Attributes:
        d_input: features per step, or the vocabulary size when ``tokens``.
        d_output: classes, regression outputs, or the vocabulary size.
        tokens: the input is token ids (Embedding encoder) instead of features (Linear encoder).
        d_model: H.
        n_layers: number of residual blocks (None: ``len(layers)`` when given, else 4).
        layer: a name of :func:`statespaces.layers.layer_names` (s4, s4d, dss, gss, mha, gru, ...).
        layer_options: keyword options of that layer (d_state, lr, dropout, ...).
        attn_layer_idx: blocks (0-based) that use ``attn_layer`` instead of ``layer`` (the H3 / Mega hybrids).
        attn_layer, attn_options: the layer (default 'mha') and options used at ``attn_layer_idx``.
        layers: an explicit per-block list instead of the above: each entry a layer name or a dict
            ``{"name": <layer>, **options}``.
        norm: 'layer', 'batch', 'rms' or 'none'.
        norm_eps: epsilon of the layer / RMS norms (None: torch's defaults, 1e-5 and the dtype's eps).
        prenorm: normalise before the layer (and once more at the end) instead of after the residual.
        dropout, tie_dropout: dropout on each layer's output before the residual add.
        ffn: expansion factor of a position-wise MLP block after each layer (None: no MLP).
        pool: 'mean' / 'last' (one output per sequence) or 'none' (one per step).
        tie_embeddings: share the Embedding and decoder weights (language models).
    """

    d_input: int = 1
    d_output: int = 10
    tokens: bool = False
    d_model: int = 128
    n_layers: int | None = None
    layer: str = "s4d"
    layer_options: dict = field(default_factory=dict)
    attn_layer_idx: list = field(default_factory=list)
    attn_layer: str = "mha"
    attn_options: dict = field(default_factory=dict)
    layers: list | None = None
    norm: str = "layer"
    norm_eps: float | None = None
    prenorm: bool = False
    dropout: float = 0.0
    tie_dropout: bool = False
    ffn: int | None = None
    pool: str = "mean"
    tie_embeddings: bool = False

    def __post_init__(self):
        if self.norm not in NORMS:
            raise UnknownNameError(f"norm must be one of {NORMS}, got {self.norm!r}{suggest(self.norm, NORMS)}")
        if self.pool not in POOLS:
            raise UnknownNameError(f"pool must be one of {POOLS}, got {self.pool!r}{suggest(self.pool, POOLS)}")
        if self.layers is not None:
            if not isinstance(self.layers, (list, tuple)) or not self.layers:
                raise ValueError(f"layers must be a non-empty list of layer names or {{'name': ..., **options}} dicts, got {self.layers!r}")
            if self.attn_layer_idx or self.layer_options:
                raise ValueError("give either an explicit per-block 'layers' list (with each block's options) or 'layer_options' / 'attn_layer_idx', not both")
            if self.n_layers is not None and self.n_layers != len(self.layers):
                raise ValueError(f"n_layers={self.n_layers} but layers lists {len(self.layers)} blocks; set n_layers to match, or to None")
            self.layers = [dict(e) if isinstance(e, dict) else e for e in self.layers]
            self.n_layers = len(self.layers)
        elif self.n_layers is None:
            self.n_layers = 4
        for name in ("d_input", "d_output", "d_model", "n_layers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.attn_layer_idx = list(self.attn_layer_idx)
        bad = [i for i in self.attn_layer_idx if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.n_layers]
        if bad or len(set(self.attn_layer_idx)) != len(self.attn_layer_idx):
            raise ValueError(f"attn_layer_idx must hold distinct block indices in [0, {self.n_layers}), got {self.attn_layer_idx}")
        if self.tie_embeddings and not (self.tokens and self.d_input == self.d_output):
            raise ValueError("tie_embeddings needs token inputs and d_input == d_output (a language model)")
        self.block_specs()  # malformed entries fail here, not when the model is built

    def block_specs(self) -> list[tuple[str, dict]]:
        """``(layer name, options)`` of every block."""
        if self.layers is None:
            specs = [(self.layer, dict(self.layer_options))] * self.n_layers
            return [(self.attn_layer, dict(self.attn_options)) if i in self.attn_layer_idx else s for i, s in enumerate(specs)]
        out = []
        for i, entry in enumerate(self.layers):
            if isinstance(entry, str):
                out.append((entry, {}))
            elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
                out.append((entry["name"], {k: v for k, v in entry.items() if k != "name"}))
            else:
                raise ValueError(f"layers[{i}] must be a layer name or a dict with a 'name' key, got {entry!r}")
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        check_options(d, [f.name for f in fields(cls)], "ModelConfig")
        return cls(**d)


@dataclass
class ModelState:
    """The recurrent state of a :class:`SequenceModel`: one state per block, plus the running sum and count of
    the hidden states for ``pool='mean'`` (so that chunked forwards and steps pool over everything seen)."""

    layers: list
    pool: tuple | None = None


def _norm(kind: str, d: int, eps: float | None = None) -> nn.Module:
    if kind == "layer":
        return nn.LayerNorm(d) if eps is None else nn.LayerNorm(d, eps=eps)
    if kind == "rms":
        return nn.RMSNorm(d, eps=eps)
    if kind == "batch":
        return _BatchNorm(d)
    return nn.Identity()


class _BatchNorm(nn.BatchNorm1d):
    """BatchNorm over the feature axis of (B, L, H) sequences or (B, H) steps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            return super().forward(x.transpose(1, 2)).transpose(1, 2)
        return super().forward(x)


class ResidualBlock(nn.Module):
    """``x + dropout(layer(norm(x)))`` (pre-norm) or ``norm(x + dropout(layer(x)))`` (post-norm), then an
    optional MLP block in the same arrangement."""

    def __init__(self, cfg: ModelConfig, layer: str, options: dict):
        super().__init__()
        H = cfg.d_model
        self.prenorm = cfg.prenorm
        self.norm = _norm(cfg.norm, H, cfg.norm_eps)
        self.layer = make_layer(layer, H, **options)
        if self.layer.d_output != H:
            raise ValueError(f"layer {layer!r} outputs {self.layer.d_output} features; a residual block needs d_model={H}")
        self.drop = SequenceDropout(cfg.dropout, cfg.tie_dropout, length_last=False)
        self.ffn = None
        if cfg.ffn:
            self.ffn_norm = _norm(cfg.norm, H, cfg.norm_eps)
            self.ffn = nn.Sequential(nn.Linear(H, cfg.ffn * H), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.ffn * H, H))

    def _mix(self, x, fn):
        z = self.norm(x) if self.prenorm else x
        z, state = fn(z)
        x = x + self.drop(z)
        return (x if self.prenorm else self.norm(x)), state

    def _mlp(self, x):
        if self.ffn is None:
            return x
        z = self.ffn_norm(x) if self.prenorm else x
        x = x + self.drop(self.ffn(z))
        return x if self.prenorm else self.ffn_norm(x)

    def forward(self, x, state=None, rate=1.0, lengths=None):
        x, state = self._mix(x, lambda z: self.layer(z, state=state, rate=rate, lengths=lengths))
        return self._mlp(x), state

    def step(self, x, state):
        x, state = self._mix(x, lambda z: self.layer.step(z, state))
        return self._mlp(x), state


class SequenceModel(nn.Module):
    """Backbone + heads for classification, regression, forecasting and language modelling.

    ``forward(x, state=None, *, lengths=None, rate=1.0) -> (out, next_state)``:
    x (B, L, d_input) floats or (B, L) tokens; out (B, d_output) when pooled, else (B, L, d_output).
    ``state`` is a :class:`ModelState` (``default_state(B)``); ``lengths`` (B,) marks right padding.
    """

    def __init__(self, config: ModelConfig | dict | None = None, **overrides):
        super().__init__()
        if config is None:
            config = ModelConfig(**overrides)
        elif isinstance(config, dict):
            config = ModelConfig.from_dict({**config, **overrides})
        elif overrides:
            config = ModelConfig.from_dict({**asdict(config), **overrides})
        self.config = cfg = config
        H = cfg.d_model
        self.encoder = nn.Embedding(cfg.d_input, H) if cfg.tokens else nn.Linear(cfg.d_input, H)
        self.blocks = nn.ModuleList(ResidualBlock(cfg, name, options) for name, options in cfg.block_specs())
        self.final_norm = _norm(cfg.norm, H, cfg.norm_eps) if cfg.prenorm else nn.Identity()
        self.decoder = nn.Linear(H, cfg.d_output)
        if cfg.tie_embeddings:
            self.decoder.weight = self.encoder.weight

    # ---- convolution mode -------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> None:
        cfg = self.config
        if cfg.tokens:
            if x.dim() != 2 or x.dtype not in (torch.long, torch.int32, torch.int64):
                raise ValueError(f"token input must be an integer tensor (B, L), got {tuple(x.shape)} {x.dtype}")
        elif x.dim() != 3 or x.shape[-1] != cfg.d_input:
            raise ValueError(f"input must be (B, L, d_input={cfg.d_input}) floats, got shape {tuple(x.shape)}")

    def _check_state(self, state) -> None:
        if not isinstance(state, ModelState):
            raise StateError(f"a model state is a ModelState (from default_state(B)), got {type(state).__name__}")
        if len(state.layers) != len(self.blocks):
            raise StateError(f"state holds {len(state.layers)} layer states; this model has {len(self.blocks)} blocks")
        if (state.pool is None) != (self.config.pool != "mean"):
            raise StateError(f"state.pool must be {'(sum, count)' if self.config.pool == 'mean' else 'None'} for pool={self.config.pool!r}")

    def backbone(self, x, state: list | None = None, lengths=None, rate=1.0):
        """(B, L, ...) -> hidden (B, L, H) and the next layer states (or None)."""
        h = self.encoder(x)
        next_state = [] if state is not None else None
        for i, block in enumerate(self.blocks):
            h, s = block(h, state=None if state is None else state[i], rate=rate, lengths=lengths)
            if next_state is not None:
                next_state.append(s)
        return self.final_norm(h), next_state

    def pool(self, h: torch.Tensor, lengths: torch.Tensor | None, acc: tuple | None = None):
        """Pool (B, L, H) -> (B, H) (or pass through for 'none'); ``acc`` = (sum, count) of earlier chunks.
        Returns the pooled features and the updated accumulator."""
        kind = self.config.pool
        if kind == "none":
            return h, None
        B, L, _ = h.shape
        if kind == "last":
            return (h[:, -1] if lengths is None else h[torch.arange(B, device=h.device), (lengths - 1).clamp(min=0)]), None
        if lengths is None:
            total, count = h.sum(1), torch.full((B,), L, dtype=h.dtype, device=h.device)
        else:
            total = torch.where(length_mask(lengths, L)[..., None], h, 0.0).sum(1)
            count = lengths.to(h.dtype)
        if acc is not None:
            total, count = acc[0] + total, acc[1] + count
        return total / count.clamp(min=1)[:, None], (total, count)

    def forward(self, x, state: ModelState | None = None, *, lengths=None, rate=1.0):
        self._check_input(x)
        if state is not None:
            self._check_state(state)
        lengths = as_lengths(lengths, x.shape[0], x.shape[1], device=x.device)
        h, layer_states = self.backbone(x, state=None if state is None else state.layers, lengths=lengths, rate=rate)
        pooled, acc = self.pool(h, lengths, None if state is None else state.pool)
        return self.decoder(pooled), (None if state is None else ModelState(layer_states, acc))

    # ---- recurrent mode ---------------------------------------------------------------------
    def setup_step(self, **options) -> None:
        """Prepare every layer's recurrent form; each option goes to the layers that take it (``realization``
        to S4 layers, ``rate`` to layers with a step size ...), and an option no layer takes is an error."""
        layers = [block.layer for block in self.blocks]
        accepted = [layer.step_options() for layer in layers]
        check_options(options, set().union(*accepted), "SequenceModel.setup_step()")
        for layer, names in zip(layers, accepted):
            layer.setup_step(**{k: v for k, v in options.items() if k in names})

    def default_state(self, *batch_shape: int, device=None, dtype: torch.dtype | None = None) -> ModelState:
        """One state per block, and for ``pool='mean'`` a zero running sum and count."""
        layers = [block.layer.default_state(*batch_shape, device=device, dtype=dtype) for block in self.blocks]
        pool = None
        if self.config.pool == "mean":
            dtype = dtype or self.decoder.weight.dtype
            device = device or self.decoder.weight.device
            pool = (torch.zeros(*batch_shape, self.config.d_model, dtype=dtype, device=device), torch.zeros(*batch_shape, dtype=dtype, device=device))
        return ModelState(layers, pool)

    def step(self, x_t: torch.Tensor, state: ModelState):
        """One step through the stack: x_t (B, d_input) or (B,) tokens -> (out (B, d_output), state).

        The output is the decoder applied to this step's hidden state (``pool='none'`` and ``'last'``) or to
        the running mean of the hidden states so far (``'mean'``).
        """
        self._check_state(state)
        h = self.encoder(x_t)
        new = []
        for block, s in zip(self.blocks, state.layers):
            h, s = block.step(h, s)
            new.append(s)
        h = self.final_norm(h)
        acc = None
        if self.config.pool == "mean":
            acc = (state.pool[0] + h, state.pool[1] + 1)
            h = acc[0] / acc[1][..., None]
        return self.decoder(h), ModelState(new, acc)

    # ---- persistence ------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into the folder ``path`` (the Hugging Face
        convention; loadable with :meth:`from_pretrained`, without any training code).

        Each file is written atomically, the weights first; ``config.json`` then records their size and
        SHA-256, so a save interrupted between the two is detected on load instead of pairing a new config
        with old weights (or the reverse)."""
        from safetensors.torch import save

        path = Path(path)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        if self.config.tie_embeddings:
            tensors.pop("decoder.weight")
        blob = save(tensors)
        atomic_write(path / WEIGHTS_NAME, lambda f: f.write(blob))
        weights = {"file": WEIGHTS_NAME, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
        meta = {"class": type(self).__name__, "config": asdict(self.config), "weights": weights, **(extra or {})}
        atomic_write_text(path / CONFIG_NAME, json.dumps(meta, indent=2))
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "SequenceModel":
        from safetensors.torch import load_file

        path = Path(path)
        if not (path / CONFIG_NAME).exists():
            raise FileNotFoundError(f"{path} holds no {CONFIG_NAME}: not a folder written by save_pretrained()")
        meta = json.loads((path / CONFIG_NAME).read_text())
        weights = path / WEIGHTS_NAME
        expected = meta.get("weights")  # folders written before the manifest have none
        if expected is not None:
            size = weights.stat().st_size if weights.exists() else None
            if size != expected["bytes"] or sha256_file(weights) != expected["sha256"]:
                raise RuntimeError(
                    f"{weights} does not match {path / CONFIG_NAME} (expected {expected['bytes']} bytes with sha256 "
                    f"{expected['sha256'][:12]}..., found {size}): the folder was left half-updated (an interrupted "
                    f"save_pretrained?) or edited; save the model again"
                )
        model_cls = MODEL_CLASSES.get(meta.get("class", cls.__name__))
        model = model_cls(ModelConfig.from_dict(meta["config"]))
        state = load_file(str(weights), device=str(map_location))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not (model.config.tie_embeddings and k == "decoder.weight")]
        if missing or unexpected:
            raise RuntimeError(f"weights in {path} do not match the config: missing {missing}, unexpected {unexpected}")
        return model


MODEL_CLASSES: Registry[type[SequenceModel]] = Registry("model class")
MODEL_CLASSES.add("SequenceModel", SequenceModel)

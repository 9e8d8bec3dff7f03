"""The registry of sequence layers: name -> factory(d_model, **options) -> SequenceLayer.

Each entry carries example options that build a small working instance: the conformance tests run
:func:`statespaces.testing.check_layer` over every entry with them, and the docs list them.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from ..registry import Registry
from .base import SequenceLayer
from .baselines import GRU, LSTM, MultiHeadAttention
from .fftconv import resolve_aliases
from .h3 import H3
from .hyena import Hyena
from .liquid import LiquidS4
from .lssl import LSSL
from .mamba import Mamba
from .mamba2 import Mamba2
from .mega import MegaBlock
from .s4block import S4Block
from .s5 import S5
from .sgconv import SGConv

__all__ = ["LAYERS", "make_layer", "layer_names"]

LAYERS: Registry[Callable[..., SequenceLayer]] = Registry("layer")


def make_layer(name: str, d_model: int, **options) -> SequenceLayer:
    """Build a registered layer; an unknown name or option raises UnknownNameError with suggestions."""
    return LAYERS.get(name)(d_model, **options)


def layer_names() -> list[str]:
    return LAYERS.names()


def _block(defaults: dict, d_model: int, **options) -> S4Block:
    return S4Block(d_model, **{**defaults, **resolve_aliases(options, "S4Block")})


def _add(name: str, defaults: dict, description: str, example: dict) -> None:
    LAYERS.add(name, partial(_block, defaults), description, example=example, defaults=defaults)


_add("s4", {"kernel": "nplr", "init": "legs"}, "S4: DPLR kernel with HiPPO-LegS (kernel='nplr', init='legs')", {"d_state": 8})
_add("s4d", {"kernel": "diag", "init": "diag-lin", "disc": "zoh"}, "S4D: diagonal kernel, S4D-Lin init, ZOH", {"d_state": 8})
_add("dss", {"kernel": "diag", "disc": "dss", "init": "diag-legs"}, "DSS: diagonal kernel, softmax-normalised ZOH, S4D-LegS init (needs l_max)", {"d_state": 8, "l_max": 64})
_add(
    "gss",
    {"kernel": "diag", "gate": 4, "bottleneck": 4, "init": "diag-rand", "dt_min": 1.0, "dt_max": 1.0, "lr": {"dt": 0.0, "B": 0.0}, "imag_transform": "exp"},
    "GSS: gated, bottlenecked S4D with random A and frozen B and dt = 1",
    {"d_state": 8},
)
_add("longconv", {"kernel": "longconv"}, "Long convolution: an explicit l_max-tap kernel (Fu et al. 2023), FIR step", {"l_max": 64})
def _minimal(d_model: int, **options) -> SequenceLayer:
    from ..minimal.s4d import S4D  # noqa: PLC0415  (the minimal file builds on layers.base: no import cycle)

    return S4D(d_model, **options)


LAYERS.add("s4d-minimal", _minimal, "the pedagogical minimal S4D (seed s4d.py)", example={"d_state": 8})
LAYERS.add("mha", MultiHeadAttention, "causal multi-head attention (rotary positions, key/value-cache step): the Transformer baseline and the attention of H3 / Mega hybrids", example={"n_heads": 2})
LAYERS.add("gru", GRU, "GRU baseline (torch's nn.GRU behind the same contract)")
LAYERS.add("lstm", LSTM, "LSTM baseline (torch's nn.LSTM behind the same contract)")
LAYERS.add("h3", H3, "H3: shift SSM on keys, diagonal SSM on key-value products, multiplicative query (Fu et al. 2023)", example={"d_state": 4, "head_dim": 2})
LAYERS.add("sgconv", SGConv, "SGConv: multi-scale decaying global convolution (Li et al. 2023), FIR step", example={"l_max": 32, "kernel_dim": 8})
LAYERS.add("s5", S5, "S5: one MIMO diagonal SSM (HiPPO-N blocks) by a parallel scan, variable time steps (Smith et al. 2023)", example={"ssm_size": 8, "blocks": 2})
LAYERS.add("mamba", Mamba, "Mamba: the selective SSM block (Gu & Dao 2023) on ops.selective_scan, O(1) step", example={"d_state": 4, "expand": 2})
LAYERS.add("mamba2", Mamba2, "Mamba-2: the SSD layer (Dao & Gu 2024), chunked matmuls, gated RMSNorm, O(1) step", example={"d_state": 4, "headdim": 4, "chunk_size": 8})
LAYERS.add("lssl", LSSL, "LSSL (Gu et al. 2021): dense HiPPO A, bilinear, Krylov kernel; the predecessor of S4", example={"d_state": 4})
LAYERS.add("hyena", Hyena, "Hyena (Poli et al. 2023): implicit long filters, gated order-N recurrence, exact O(l_max) step", example={"l_max": 32, "filter_order": 8})
LAYERS.add("liquid-s4", LiquidS4, "Liquid-S4 (Hasani et al. 2023): S4 plus causal input-correlation (polyb) terms", example={"d_state": 4, "liquid_degree": 3})
LAYERS.add("mega", MegaBlock, "Mega (Ma et al. 2023): EMA then gated single-head attention (softmax, relative bias, chunks), KV-cache step", example={"zdim": 4, "hdim": 8, "chunk_size": 5})

"""Sequence layers sharing one contract (:class:`SequenceLayer`):
``y, state = layer(x, state=None, *, rate=1.0, lengths=None)``, ``setup_step``, ``step``, ``default_state``."""

from .base import Capabilities, CapabilityError, SequenceLayer, StateError
from .baselines import GRU, LSTM, KVCache, LSTMState, MultiHeadAttention
from .fftconv import FFTConv
from .h3 import H3, H3State
from .hyena import Hyena, HyenaState
from .liquid import LiquidS4, LiquidState
from .lssl import LSSL
from .mamba import Mamba, MambaState
from .mamba2 import Mamba2, Mamba2State
from .mega import MegaBlock, MegaState
from .registry import LAYERS, layer_names, make_layer
from .s4block import S4Block
from .s5 import S5
from .sgconv import SGConv

__all__ = [
    "SequenceLayer",
    "Capabilities",
    "CapabilityError",
    "StateError",
    "FFTConv",
    "S4Block",
    "H3",
    "H3State",
    "SGConv",
    "S5",
    "LSSL",
    "MegaBlock",
    "MegaState",
    "LiquidS4",
    "LiquidState",
    "Hyena",
    "HyenaState",
    "Mamba",
    "MambaState",
    "Mamba2",
    "Mamba2State",
    "GRU",
    "LSTM",
    "LSTMState",
    "MultiHeadAttention",
    "KVCache",
    "LAYERS",
    "make_layer",
    "layer_names",
]

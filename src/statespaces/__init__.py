"""statespaces: structured state space sequence models (S4 and its family) in pure PyTorch."""

from . import minimal, ops
from .kernels import (
    KERNELS,
    DiagKernel,
    DPLRKernel,
    EMAKernel,
    Kernel,
    KrylovKernel,
    LongConvKernel,
    NumericalError,
    SGConvKernel,
    ShiftKernel,
    SSMKernel,
)
from .layers import (
    H3,
    LAYERS,
    LSSL,
    S5,
    Capabilities,
    CapabilityError,
    FFTConv,
    Hyena,
    LiquidS4,
    Mamba,
    Mamba2,
    S4Block,
    SequenceLayer,
    SGConv,
    StateError,
    make_layer,
)
from .optim import param_groups
from .registry import Registry, UnknownNameError

__version__ = "0.1.0"

__all__ = [
    "SequenceLayer",
    "Capabilities",
    "CapabilityError",
    "StateError",
    "S4Block",
    "FFTConv",
    "H3",
    "SGConv",
    "S5",
    "LSSL",
    "LiquidS4",
    "Hyena",
    "Mamba",
    "Mamba2",
    "LAYERS",
    "make_layer",
    "Kernel",
    "SSMKernel",
    "DiagKernel",
    "DPLRKernel",
    "LongConvKernel",
    "KrylovKernel",
    "EMAKernel",
    "ShiftKernel",
    "SGConvKernel",
    "KERNELS",
    "NumericalError",
    "Registry",
    "UnknownNameError",
    "param_groups",
    "minimal",
    "ops",
    "__version__",
]

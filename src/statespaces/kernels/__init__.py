"""Convolution kernels: parameters -> kernel (C, H, L); SSM kernels add a recurrence.

``KERNELS`` is the registry :class:`~statespaces.FFTConv` picks its ``kernel=`` from.
"""

from ..registry import Registry
from .base import Kernel, SSMKernel
from .diag import DiagKernel
from .dplr import DPLRKernel, NumericalError
from .ema import EMAKernel
from .krylov import KrylovKernel
from .longconv import LongConvKernel
from .sgconv import SGConvKernel
from .shift import ShiftKernel

KERNELS: Registry[type[Kernel]] = Registry("kernel")
KERNELS.add("nplr", DPLRKernel, "S4: normal/diagonal plus low-rank A (HiPPO), bilinear", aliases=("dplr", "s4"))
KERNELS.add("diag", DiagKernel, "S4D / DSS: diagonal A, zoh / bilinear / dss", aliases=("s4d",))
KERNELS.add("dense", KrylovKernel, "LSSL: dense HiPPO A, bilinear, Krylov kernel (learn=0/1/2)", aliases=("lssl", "krylov"))
KERNELS.add("ema", EMAKernel, "Mega's damped multi-dimensional EMA (ndim), a real diagonal recurrence", aliases=("mega",))
KERNELS.add("longconv", LongConvKernel, "explicit long convolution (Fu et al. 2023), needs l_max", example={"l_max": 32})
KERNELS.add("sgconv", SGConvKernel, "SGConv: kernel_dim-long pieces interpolated to doubling lengths, decaying (Li et al. 2023)", example={"l_max": 32, "kernel_dim": 8})
KERNELS.add("shift", ShiftKernel, "H3's shift SSM: a learned d_state-tap FIR (A = shift, B = e_1)", example={"d_state": 4, "l_max": 4})

__all__ = ["Kernel", "SSMKernel", "DiagKernel", "DPLRKernel", "LongConvKernel", "KrylovKernel", "EMAKernel", "ShiftKernel", "SGConvKernel", "NumericalError", "KERNELS"]

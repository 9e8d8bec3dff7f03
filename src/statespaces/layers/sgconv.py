"""SGConv, the layer: the structured global convolution block of the official ``GConv``.

    u ──► FFT convolution with the SGConv kernel (+ D u, channels, bidirectional) ──► GELU ──► dropout ──► Linear(H C -> H) ──► y

It is :class:`~statespaces.S4Block` with the kernel of :mod:`statespaces.kernels.sgconv` and the official
defaults: ``activation='gelu'`` and a plain output linear (``final_act='id'``, the official ``postact=None``;
'glu' gives its GLU variant).  The official ``ln`` option (a LayerNorm before the output linear) is left to
the model's norms.  The kernel has ``l_max`` taps, so the step and state forwarding are the exact FIR form of
:class:`~statespaces.FFTConv` (the last ``l_max - 1`` inputs); the official code has no recurrent mode.  Where
the official kernel is longer than ``l_max`` (it grows to kernel_dim * 2^k), the taps past ``l_max`` are unused
here: ``l_max`` is the longest input the layer takes.
"""

from __future__ import annotations

from .s4block import S4Block

__all__ = ["SGConv"]


class SGConv(S4Block):
    """SGConv layer (registered ``sgconv``).

    Args:
        d_model: H.
        l_max: the longest input (required; sets the number of scales and the FIR state).
        mode: 'cat' (default) or 'sum', or an official spelling such as 'cat_randn' (the kernel's ``combine``).
        kernel_dim, n_scales, init_scale, interpolate, init, decay_min, decay_max, learnable_decay,
            lr, wd: options of :class:`~statespaces.kernels.SGConvKernel` (official defaults: 64, None, 0,
            'cat', 'linear', 'randn', 2, 2, False, lr 0.001).
        channels, bidirectional, dropout, final_act, activation, transposed, ...: as :class:`S4Block`.
    """

    def __init__(
        self, d_model: int, l_max: int | None = None, *, mode: str = "cat", activation: str | None = "gelu", final_act: str | None = "id", **options
    ):
        if l_max is None:
            raise ValueError("SGConv needs l_max, the longest input (it sets the number of scales)")
        super().__init__(d_model, kernel="sgconv", combine=mode, l_max=l_max, activation=activation, final_act=final_act, **options)

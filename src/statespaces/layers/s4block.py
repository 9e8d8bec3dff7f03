"""S4Block: FFTConv wrapped with optional bottleneck, multiplicative gate (GSS), activations and output linear.

    x ──► [input_linear: H -> H/bottleneck] ──► FFTConv (+activation) ──► [output_gate] ──► * ──► mult_act ──► dropout ──► output_linear (final_act) ──► y
    └───► [input_gate: H -> H*gate, gate_act] ───────────────────────────────────────────┘

Dropout is applied once, after the gate product (the reference applies it twice).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import SequenceLayer
from .common import SequenceDropout, activation, linear
from .fftconv import FFTConv

__all__ = ["S4Block"]


class S4Block(SequenceLayer):
    """The full S4 layer of the seeds (``S4(...)``), with every option of :class:`FFTConv` plus:

    Args:
        d_model: H.
        bottleneck: reduce the SSM width to H / bottleneck (GSS).
        gate: multiplicative gate branch of width H * gate (GSS).
        gate_act: activation of the gate branch; mult_act: activation after the product.
        final_act: output linear + activation: 'glu' (default; Linear to 2H then GLU), any activation name,
            'id' (plain linear), or None (no output linear; needs the inner width to equal H).
        initializer: weight init of the linears (None/'uniform'/'normal'/'xavier'/'zero'/'one').
        weight_norm: weight-normalise the linears.
        activation: activation after the SSM (default 'gelu').
        dropout, tie_dropout: dropout after the gate product (tie: one mask for the whole sequence).
        transposed: (B, H, L) layout instead of (B, L, H).
        **layer_args: FFTConv / kernel options (kernel (alias mode), init (alias measure), d_state, disc,
            l_max, bidirectional, lr, ...).
    """

    def __init__(
        self,
        d_model: int,
        bottleneck: int | None = None,
        gate: int | None = None,
        gate_act: str | None = None,
        mult_act: str | None = None,
        final_act: str | None = "glu",
        initializer: str | None = None,
        weight_norm: bool = False,
        activation: str | None = "gelu",
        dropout: float = 0.0,
        tie_dropout: bool = False,
        transposed: bool = False,
        **layer_args,
    ):
        super().__init__(d_model, transposed=transposed, bidirectional=bool(layer_args.get("bidirectional", False)))
        for arg, v in (("bottleneck", bottleneck), ("gate", gate)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{arg} must be None or a positive int, got {v!r}")
        if bottleneck is not None and d_model % bottleneck:
            raise ValueError(f"bottleneck={bottleneck} must divide d_model={d_model}")
        self.gate, self.bottleneck = gate, bottleneck
        lin = dict(initializer=initializer, weight_norm=weight_norm)
        d_inner = d_model // bottleneck if bottleneck else d_model
        self.input_linear = linear(d_model, d_inner, **lin) if bottleneck else None
        self.layer = FFTConv(d_inner, activation=activation, transposed=False, **layer_args)
        self.supports_step, self.supports_state = self.layer.supports_step, self.layer.supports_state
        self.supports_rate = self.layer.supports_rate
        d_layer = self.layer.d_output
        if gate:
            self.input_gate = nn.Sequential(linear(d_model, d_model * gate, **lin), _act(gate_act))
            self.output_gate = linear(d_layer, d_model * gate, **lin) if d_layer != d_model * gate else nn.Identity()
            d_layer = d_model * gate
        else:
            if gate_act is not None:
                raise ValueError("gate_act needs gate")
            self.input_gate = self.output_gate = None
        self.mult_act = _act(mult_act)
        self.drop = SequenceDropout(dropout, tie_dropout, length_last=False)
        if final_act is None:
            if d_layer != d_model:
                raise ValueError(f"final_act=None (no output linear) needs the inner width {d_layer} to equal d_model={d_model}")
            self.output_linear = nn.Identity()
        elif final_act == "glu":
            self.output_linear = nn.Sequential(linear(d_layer, 2 * d_model, **lin), nn.GLU(dim=-1))
        else:
            self.output_linear = nn.Sequential(linear(d_layer, d_model, **lin), _act(final_act))

    @property
    def d_state(self) -> int | None:
        return self.layer.d_state

    def _pre(self, x: torch.Tensor):
        v = self.input_gate(x) if self.gate else None
        if self.input_linear is not None:
            x = self.input_linear(x)
        return x, v

    def _post(self, y: torch.Tensor, v: torch.Tensor | None) -> torch.Tensor:
        if self.gate:
            y = self.output_gate(y) * v
        y = self.mult_act(y)
        y = self.drop(y)
        return self.output_linear(y)

    def _forward(self, x: torch.Tensor, state, rate: float, lengths):
        """x (B, L, H) -> (y (B, L, H), next_state or None)."""
        x, v = self._pre(x)
        # through the inner layer's public forward: the input linear's bias must be masked out of the padding
        y, next_state = self.layer(x, state=state, rate=rate, lengths=lengths)
        return self._post(y, v), next_state

    def _setup_step(self, **options) -> None:
        self.layer.setup_step(**options)

    def step_options(self) -> set[str]:
        return self.layer.step_options()

    def _step(self, x: torch.Tensor, state):
        """x (B, H) -> (y (B, H), next_state)."""
        x, v = self._pre(x)
        y, state = self.layer._step(x, state)
        return self._post(y, v), state

    def default_state(self, *batch_shape: int, device=None, dtype: torch.dtype | None = None):
        return self.layer.default_state(*batch_shape, device=device, dtype=dtype)


def _act(name: str | None) -> nn.Module:
    return activation(name, dim=-1)

"""SequenceLayer: the one contract every registered sequence layer follows.

    y, next_state = layer(x, state=None, *, rate=1.0, lengths=None)   # x (B, L, H); (B, H, L) if transposed
    state = layer.default_state(*batch_shape, device=None, dtype=None)
    layer.setup_step(**options)                                      # prepare the recurrent form
    y_t, state = layer.step(x_t, state)                              # x_t (B, H) -> y_t (B, d_output)

The base class does, once for every family: the layout, the input checks, ``lengths`` masking (padding is
*replaced*, never multiplied, so NaN/Inf there cannot reach valid outputs), the state checks, and the
capability flags with a clear error when a caller asks for something the layer lacks.  A family implements
only its math: ``_forward(u, state, rate, lengths)`` on an input already in its own layout (``length_last``)
with padding zeroed, ``_step(x_t, state)``, ``default_state`` and optionally ``_setup_step``.

States are a tensor or a NamedTuple of tensors (e.g. Mamba's conv + SSM state), the same form for
``forward(state=...)``, ``step`` and ``default_state``; any change of basis stays inside the layer.  A
dimension that is empty in ``default_state`` (a cache that grows, such as attention's keys) may have any size.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, NamedTuple

import torch
from torch import nn

from ..kernels.base import param_dtype
from ..ops.sequence import as_lengths, length_mask
from ..registry import signature_options

__all__ = ["SequenceLayer", "Capabilities", "CapabilityError", "StateError", "describe_state", "state_leaves"]


class Capabilities(NamedTuple):
    """What a layer instance can do."""

    step: bool  # recurrent mode: setup_step / step
    state: bool  # forward(state=...) returns the state after the sequence (state forwarding)
    rate: bool  # forward(rate=...) changes the sampling rate (the layer has a continuous-time step size)
    lengths: bool  # forward(lengths=...) for right-padded batches, next_state taken at each length
    bidirectional: bool  # outputs see the whole sequence (no step, no state forwarding)


class CapabilityError(ValueError):
    """A caller asked a layer for something it cannot do (``rate`` without a step size, ``state`` on a
    bidirectional layer, ...)."""


class StateError(ValueError):
    """A state of the wrong structure, shape, dtype or device."""


def state_leaves(state: Any) -> list[torch.Tensor]:
    """The tensors of a state (a tensor or a (Named)tuple of them, nested), in order."""
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, tuple):
        return [leaf for part in state for leaf in state_leaves(part)]
    raise StateError(f"a state is a tensor or a NamedTuple of tensors, got {type(state).__name__}")


def _structure(state: Any):
    if isinstance(state, torch.Tensor):
        return "Tensor"
    if isinstance(state, tuple):
        return (type(state), tuple(_structure(s) for s in state))
    return type(state).__name__


def describe_state(state: Any) -> str:
    """A short description such as ``MambaState(conv=(2, 8, 3) float32, ssm=(2, 8, 4) float32)``."""
    if isinstance(state, torch.Tensor):
        return f"{tuple(state.shape)} {str(state.dtype).replace('torch.', '')}" + ("" if state.device.type in ("cpu", "meta") else f" on {state.device}")
    if isinstance(state, tuple):
        fields = getattr(state, "_fields", None)
        parts = [f"{f}={describe_state(s)}" for f, s in zip(fields, state)] if fields else [describe_state(s) for s in state]
        return f"{type(state).__name__}({', '.join(parts)})"
    return repr(state)


class SequenceLayer(nn.Module):
    """Base of every registered sequence layer (see the module docstring for the contract).

    Class attributes a family sets (an instance may narrow them, e.g. from its options):
        supports_step, supports_state, supports_rate, supports_lengths: the family's capabilities
            (``bidirectional=True`` removes step and state).
        length_last: ``_forward`` receives and returns (B, H, L) instead of (B, L, H).
    """

    supports_step: bool = True
    supports_state: bool = True
    supports_rate: bool = False
    supports_lengths: bool = True
    length_last: bool = False

    def __init__(self, d_model: int, *, transposed: bool = False, bidirectional: bool = False):
        super().__init__()
        if isinstance(d_model, bool) or not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        self.d_model, self.transposed, self.bidirectional = d_model, bool(transposed), bool(bidirectional)
        self._spec_cache: dict = {}

    # ---- what the layer is ---------------------------------------------------------------------
    @property
    def d_output(self) -> int:
        """Width of the output features."""
        return self.d_model

    @property
    def capabilities(self) -> Capabilities:
        one_way = not self.bidirectional
        return Capabilities(self.supports_step and one_way, self.supports_state and one_way, self.supports_rate, self.supports_lengths, self.bidirectional)

    @property
    def param_dtype(self) -> torch.dtype:
        """The real dtype of the layer's floating tensors (float32 by default, float64 after ``double()``)."""
        return param_dtype(self)

    def _require(self, capability: str, what: str) -> None:
        if not getattr(self.capabilities, capability):
            why = "it is bidirectional (its outputs see the future)" if self.bidirectional and capability in ("step", "state") else f"{type(self).__name__} has no {capability} support"
            raise CapabilityError(f"{what} is not available for this layer: {why}; its capabilities: {self.capabilities}")

    # ---- checks ------------------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> None:
        layout = "(B, H, L)" if self.transposed else "(B, L, H)"
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"input must be a 3-D tensor {layout} with H=d_model={self.d_model}, got shape {got}")
        axis = 1 if self.transposed else 2
        if x.shape[axis] != self.d_model:
            raise ValueError(f"input width (axis {axis} of {layout}) must be d_model={self.d_model}, got shape {tuple(x.shape)}")
        if x.shape[2 if self.transposed else 1] < 1:
            raise ValueError(f"input must have at least one step (L >= 1), got shape {tuple(x.shape)} {layout}")
        if not x.is_floating_point():
            raise ValueError(f"input must be a floating tensor, got {x.dtype}")

    def _check_rate(self, rate) -> float:
        if isinstance(rate, torch.Tensor) and rate.numel() == 1:
            rate = rate.item()
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"rate must be a positive finite number, got {rate!r}")
        if rate != 1.0:
            self._require("rate", f"rate={rate}")
        return float(rate)

    def _state_spec(self, batch: int):
        key = (batch, self.param_dtype)
        spec = self._spec_cache.get(key)
        if spec is None:
            ref = self.default_state(batch, device="meta")
            spec = self._spec_cache[key] = (ref, _structure(ref), [(t.shape, t.dtype) for t in state_leaves(ref)])
        return spec

    def check_state(self, state: Any, batch: int, device: torch.device) -> None:
        """Raise :class:`StateError` unless ``state`` has the structure, shapes and dtypes of
        ``default_state(batch)`` and lives on ``device``."""
        ref, structure, leaves = self._state_spec(batch)
        try:
            got = state_leaves(state)
            ok = _structure(state) == structure and all(
                t.dtype == dtype and t.dim() == len(shape) and all(s == 0 or g == s for g, s in zip(t.shape, shape)) for t, (shape, dtype) in zip(got, leaves)
            )
        except StateError:
            ok = False
        if not ok:
            raise StateError(
                f"state must look like default_state({batch}) = {describe_state(ref)} (an empty dimension may have any size), "
                f"got {describe_state(state)}"
            )
        wrong = [t.device for t in got if t.device != device]
        if wrong:
            raise StateError(f"state must be on the input's device {device}, got a part on {wrong[0]}")

    def _apply(self, fn, recurse=True):
        self._spec_cache = {}  # dtype or device may change
        return super()._apply(fn, recurse)

    # ---- the contract ------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, state: Any = None, *, rate: float = 1.0, lengths=None, **extras):
        """x (B, L, H) ((B, H, L) if transposed) -> (y (B, L, d_output) in the same layout, next_state).

        ``next_state`` is None unless a ``state`` is given (start from ``default_state(B)``); with
        ``lengths`` (B,) it is the state after each sequence's own last valid step, and outputs past a
        sequence's length are zero.  ``extras``: per-family inputs a family's ``_forward`` declares (S5's
        ``timesteps``); any other keyword is a TypeError naming what the layer accepts.
        """
        if extras:
            accepted = self.forward_extras()
            wrong = sorted(set(extras) - accepted)
            if wrong:
                raise TypeError(f"{type(self).__name__}.forward() got unexpected keyword(s) {wrong}; it accepts state, rate, lengths" + "".join(f", {a}" for a in sorted(accepted)))
        self._check_input(x)
        B, L = x.shape[0], x.shape[2 if self.transposed else 1]
        rate = self._check_rate(rate)
        lengths = as_lengths(lengths, B, L, device=x.device)
        if lengths is not None:
            self._require("lengths", "lengths=")
        if state is not None:
            self._require("state", "state= (state forwarding)")
            self.check_state(state, B, x.device)
        mask = None
        if lengths is not None:
            mask = length_mask(lengths, L)  # (B L)
            mask = mask[:, None, :] if self.transposed else mask[:, :, None]
            x = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
        u = x.transpose(1, 2) if self.transposed != self.length_last else x
        y, next_state = self._forward(u, state, rate, lengths, **extras)
        if self.transposed != self.length_last:
            y = y.transpose(1, 2)
        if mask is not None:
            y = torch.where(mask, y, torch.zeros((), dtype=y.dtype, device=y.device))
        return y, next_state

    def forward_extras(self) -> set[str]:
        """Keywords beyond state, rate and lengths that this layer's ``forward`` takes: the keyword-only
        parameters of its ``_forward``."""
        params = inspect.signature(self._forward).parameters.values()
        return {p.name for p in params if p.kind is p.KEYWORD_ONLY}

    def setup_step(self, **options) -> None:
        """Prepare the recurrent form from the current parameters (call again after they change)."""
        self._require("step", "setup_step()")
        self._setup_step(**options)
        self._spec_cache = {}  # the state form may depend on the step set-up

    def step_options(self) -> set[str]:
        """Names ``setup_step`` accepts."""
        return signature_options(self._setup_step)

    def step(self, x_t: torch.Tensor, state: Any):
        """One recurrent step: x_t (B, H) -> (y_t (B, d_output), next_state)."""
        self._require("step", "step()")
        if not isinstance(x_t, torch.Tensor) or x_t.dim() != 2 or x_t.shape[1] != self.d_model:
            got = tuple(x_t.shape) if isinstance(x_t, torch.Tensor) else type(x_t).__name__
            raise ValueError(f"step input must be (B, H) with H=d_model={self.d_model}, got shape {got}")
        self.check_state(state, x_t.shape[0], x_t.device)
        return self._step(x_t, state)

    def default_state(self, *batch_shape: int, device=None, dtype: torch.dtype | None = None) -> Any:
        """The zero state for ``forward(state=...)`` and ``step``; ``dtype`` is the real dtype (None: the
        layer's), complex states use its complex counterpart."""
        raise NotImplementedError

    # ---- what a family implements ------------------------------------------------------------
    def _forward(self, u: torch.Tensor, state: Any, rate: float, lengths: torch.Tensor | None):
        raise NotImplementedError

    def _setup_step(self, **options) -> None:
        if options:
            raise TypeError(f"{type(self).__name__}.setup_step() takes no options, got {sorted(options)}")

    def _step(self, x_t: torch.Tensor, state: Any):
        raise NotImplementedError


def complex_dtype(real: torch.dtype) -> torch.dtype:
    """The complex dtype with the precision of a real one."""
    return torch.complex128 if real == torch.float64 else torch.complex64

"""Kernel bases: parameters -> convolution kernel (C, H, L), and for SSM kernels a recurrence.

:class:`Kernel` is any long-convolution kernel (an explicit long convolution, SGConv, Hyena's implicit filter,
H3's shift kernel ...): ``forward(L, rate=1.0, state=None) -> (k (C, H, L), None)``.  It declares the names
its tensors answer to in ``lr``/``wd`` (``optim_keys``) and their default weight decay, so that
``lr={'kernel': 0.0}`` freezes an explicit kernel as ``lr={'dt': 0.0}`` freezes S4's step size.

:class:`SSMKernel` adds a recurrence: ``k_state`` (the output contribution of an initial state over the L
steps), ``forward_state(u (B, H, L), state, rate, lengths) -> state``, ``setup_step(realization=None,
rate=1.0)``, ``step(u (B, H), state) -> (y (B, C, H), state)`` and ``default_state``.

Recurrence convention (all SSM kernels): ``x_t = dA x_(t-1) + dB u_t``, ``y_t = C x_t``; the state passed in
and returned is ``x_(-1)`` / ``x_(L-1)``.  Hence ``k_l = C dA^l dB`` and the initial state adds
``C dA^(l+1) x_(-1)`` to output ``l``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from ..ops.discretize import TRANSFORMS, inv_transform, param_transform
from ..registry import UnknownNameError, unknown

__all__ = ["Kernel", "SSMKernel", "c2r", "r2c", "param_dtype"]

# parameter names before issue 6: they held the unconstrained (pre-transform) values, hence the rename
_RENAMED = {"inv_dt": "raw_dt", "A_real": "raw_A_real", "A_imag": "raw_A_imag"}


def c2r(x: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(x.resolve_conj()).clone()


def r2c(x: torch.Tensor) -> torch.Tensor:
    return torch.view_as_complex(x if x.is_contiguous() else x.contiguous())


def param_dtype(module: nn.Module) -> torch.dtype:
    """The real dtype of a module's floating tensors (float32 by default, float64 after ``double()``)."""
    for t in (*module.parameters(), *module.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()


class Kernel(nn.Module):
    """A long-convolution kernel of H features with C output channels each.

    Args:
        d_model: H.
        channels: C.
        l_max: the kernel's length cap (None: as long as the input).
        lr, wd: optimiser settings of the kernel's tensors: a float, or a dict keyed by ``optim_keys``.
            ``lr=0.0`` freezes a tensor (it becomes a buffer).  A float ``wd`` applies to the keys whose
            default weight decay is a number; keys defaulting to None (the global weight decay) keep it.

    Subclasses set ``optim_keys`` (key -> default weight decay, None = the optimiser's global value),
    ``optim_ties`` (a key that follows another unless named) and ``supports_rate``.
    """

    optim_keys: ClassVar[dict[str, float | None]] = {}
    optim_ties: ClassVar[dict[str, str]] = {}
    supports_rate: ClassVar[bool] = False
    recurrent: ClassVar[bool] = False

    def __init__(self, d_model: int, channels: int = 1, l_max: int | None = None, lr: Any = None, wd: Any = None):
        super().__init__()
        for arg, v in (("d_model", d_model), ("channels", channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{arg} must be a positive int, got {v!r}")
        if l_max is not None and (isinstance(l_max, bool) or not isinstance(l_max, int) or l_max < 1):
            raise ValueError(f"l_max must be None or a positive int, got {l_max!r}")
        self.H, self.channels, self.l_max = d_model, channels, l_max
        self._lr = self._per_key(lr, "lr", dict.fromkeys(self.optim_keys))
        self._wd = self._per_key(wd, "wd", dict(self.optim_keys))

    def _per_key(self, value: Any, arg: str, default: dict[str, float | None]) -> dict[str, float | None]:
        keys = list(self.optim_keys)
        if value is None:
            return default
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return {k: (d if arg == "wd" and d is None else float(value)) for k, d in default.items()}
        if hasattr(value, "items"):
            unknown = sorted(set(value) - set(keys))
            if unknown:
                raise UnknownNameError(f"unknown {arg} key(s) {unknown} for {type(self).__name__}; expected a subset of {keys}")
            out = dict(default)
            out.update({k: (None if v is None else float(v)) for k, v in value.items()})
            for follower, leader in self.optim_ties.items():
                if follower not in value and leader in value:
                    out[follower] = out[leader]
            return out
        raise TypeError(f"{arg} must be None, a float, or a dict with keys {keys}; got {value!r}")

    def register(self, name: str, tensor: torch.Tensor, lr: float | None = None, wd: float | None = None) -> None:
        """Register ``tensor`` as a parameter carrying ``_optim`` settings, or as a buffer if ``lr == 0``."""
        if lr == 0.0:
            self.register_buffer(name, tensor)
            return
        p = nn.Parameter(tensor)
        p._optim = {k: v for k, v in (("lr", lr), ("weight_decay", wd)) if v is not None}
        self.register_parameter(name, p)

    def register_key(self, key: str, name: str, tensor: torch.Tensor) -> None:
        """Register ``tensor`` under ``name`` with the settings of optimiser key ``key``."""
        self.register(name, tensor, self._lr[key], self._wd[key])

    @property
    def param_dtype(self) -> torch.dtype:
        return param_dtype(self)

    def forward(self, L: int, rate: float = 1.0, state: Any = None):
        """-> (k (C, H, L), None)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"H={self.H}, channels={self.channels}, l_max={self.l_max}"


class SSMKernel(Kernel):
    """Shared options of the SSM kernels (beyond :class:`Kernel`).

    Args:
        d_state: N; complex kernels keep N/2 conjugate pairs.
        n_ssm: S independent (A, B) copies (default H); must divide H. Feature h uses copy ``h % S``.
        dt_min, dt_max: range of the log-uniform dt initialisation.
        dt_tie: one dt per feature (H, 1); False gives one per state (H, N2) (diagonal kernels only).
        dt_transform: positivity transform of dt (none/exp/relu/sigmoid/softplus).
        real_transform, imag_transform: transforms of -Re(A) and Im(A).
        deterministic: dt log-spaced over H and C = e_1, no randomness in those.
        lr, wd: keys dt/A/B/C/P (P follows A unless named).  By default dt/A/B/P get weight decay 0 and C
            the global one.

    The unconstrained tensors are ``raw_dt``, ``raw_A_real``, ``raw_A_imag`` (``dt = dt_transform(raw_dt)``,
    ``Re A = -real_transform(raw_A_real)``, ``Im A = imag_transform(raw_A_imag)``).
    """

    optim_keys = {"dt": 0.0, "A": 0.0, "B": 0.0, "C": None, "P": 0.0}
    optim_ties = {"P": "A"}
    supports_rate = True
    recurrent = True

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        channels: int = 1,
        n_ssm: int | None = None,
        l_max: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_tie: bool = True,
        dt_transform: str = "exp",
        real_transform: str = "exp",
        imag_transform: str = "none",
        deterministic: bool = False,
        lr: Any = None,
        wd: Any = 0.0,
    ):
        super().__init__(d_model, channels, l_max, lr, wd)
        if isinstance(d_state, bool) or not isinstance(d_state, int) or d_state < 1:
            raise ValueError(f"d_state must be a positive int, got {d_state!r}")
        self.N = d_state
        self.S = d_model if n_ssm is None else n_ssm
        if isinstance(self.S, bool) or not isinstance(self.S, int) or self.S < 1 or d_model % self.S:
            raise ValueError(f"n_ssm must be a positive divisor of d_model={d_model}, got {n_ssm!r}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        for arg, v in (("dt_transform", dt_transform), ("real_transform", real_transform), ("imag_transform", imag_transform)):
            if v not in TRANSFORMS:
                raise unknown(arg, v, TRANSFORMS)
        self.dt_transform, self.real_transform, self.imag_transform = dt_transform, real_transform, imag_transform
        self.dt_tie, self.deterministic = dt_tie, deterministic
        self.dt_min, self.dt_max = dt_min, dt_max
        self._step_mode: str | None = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for old, new in _RENAMED.items():  # checkpoints written before the rename
            if prefix + old in state_dict and prefix + new not in state_dict:
                state_dict[prefix + new] = state_dict.pop(prefix + old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---- parameters -------------------------------------------------------------------------
    def init_dt(self, n: int) -> torch.Tensor:
        """Unconstrained dt parameter of shape (H, n): log-uniform in [dt_min, dt_max]."""
        if self.deterministic:
            dt = torch.exp(torch.linspace(math.log(self.dt_min), math.log(self.dt_max), self.H, dtype=torch.float64))
            dt = dt[:, None].expand(self.H, n)
        else:
            u = torch.rand(self.H, n, dtype=torch.float64)
            dt = torch.exp(u * (math.log(self.dt_max) - math.log(self.dt_min)) + math.log(self.dt_min))
        return inv_transform(dt, self.dt_transform, "dt_transform").float()

    def init_A(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unconstrained (raw_A_real, raw_A_imag) from a complex diagonal ``w``; values are clamped to >= 1e-4
        where a transform needs positivity (as the reference does)."""
        real = -w.real
        imag = w.imag
        if self.real_transform != "none":
            real = real.clamp(min=1e-4)
        if self.imag_transform != "none":
            imag = imag.clamp(min=1e-4)
        return (
            inv_transform(real, self.real_transform, "real_transform").float(),
            inv_transform(imag, self.imag_transform, "imag_transform").float(),
        )

    @property
    def precise_dtype(self) -> torch.dtype:
        """Real dtype for the small per-mode math (discretisation, power tables): float64, except on devices
        without it. Only products over the sequence length run in the parameters' own dtype."""
        return torch.float32 if self.raw_A_real.device.type == "mps" else torch.float64

    @property
    def work_dtype(self) -> torch.dtype:
        """Complex dtype of the large tensors: complex64 for float32 parameters, complex128 for float64."""
        return torch.complex128 if self.raw_A_real.dtype == torch.float64 else torch.complex64

    def dt(self, rate: float = 1.0, dtype: torch.dtype | None = None) -> torch.Tensor:
        raw = self.raw_dt if dtype is None else self.raw_dt.to(dtype)
        return param_transform(raw, self.dt_transform) * rate

    def A(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Diagonal (normal part of the) state matrix, (H, N2) complex (or real), expanded from S copies."""
        cast = (lambda t: t) if dtype is None else (lambda t: t.to(dtype))
        real = -param_transform(cast(self.raw_A_real), self.real_transform)
        if hasattr(self, "raw_A_imag"):
            a = torch.complex(real, param_transform(cast(self.raw_A_imag), self.imag_transform))
        else:
            a = real
        return self.expand(a)

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """(..., S, N) -> (..., H, N): feature h uses copy h % S."""
        return x.repeat(*([1] * (x.dim() - 2)), self.H // self.S, 1)

    def extra_repr(self) -> str:
        return f"H={self.H}, N={self.N}, channels={self.channels}, n_ssm={self.S}"

    # ---- recurrence (implemented by subclasses) -----------------------------------------------
    def forward_state(self, u: torch.Tensor, state: torch.Tensor, rate: float = 1.0, lengths: torch.Tensor | None = None):
        raise NotImplementedError

    def setup_step(self, realization: str | None = None, rate: float = 1.0) -> None:
        raise NotImplementedError

    def step(self, u: torch.Tensor, state: torch.Tensor):
        raise NotImplementedError

    def default_state(self, *batch_shape: int, device=None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Zero state (*batch, H, N2), complex unless the modes are real."""
        dtype = dtype or self.raw_A_real.dtype
        if not getattr(self, "is_real", False):
            dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        return torch.zeros(*batch_shape, self.H, self.N2, dtype=dtype, device=device or self.raw_A_real.device)

    def _require_step(self) -> None:
        if self._step_mode is None:
            raise RuntimeError("call setup_step() before step(); it prepares the recurrent form from the current parameters")

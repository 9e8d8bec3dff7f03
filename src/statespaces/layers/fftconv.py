"""FFTConv: any registered convolution kernel + FFT convolution + D skip + channels + bidirectional + state.

SSM kernels (``kernel='nplr'`` S4, ``'diag'`` S4D/DSS) bring their own recurrence.  A kernel without one
(an explicit long convolution, ...) gets an exact FIR recurrence here when it has a finite length ``l_max``:
the state is the last ``l_max - 1`` inputs, O(l_max) work per step.
"""

from __future__ import annotations

import torch
from einops import rearrange

from ..kernels import KERNELS, Kernel
from ..ops.fftconv import fft_conv
from ..registry import check_options, signature_options
from .base import SequenceLayer
from .common import SequenceDropout
from .common import activation as make_activation

__all__ = ["FFTConv", "resolve_aliases"]

_ALIASES = {"measure": "init", "real_type": "real_transform", "mode": "kernel"}


def resolve_aliases(options: dict, where: str) -> dict:
    """Map the seed spellings (measure=, real_type=, mode=) to ours; both spellings at once is an error."""
    out = dict(options)
    for alias, name in _ALIASES.items():
        if alias in out:
            if out.get(name) is not None:
                raise TypeError(f"{where}: pass either {alias!r} or {name!r}, not both")
            out[name] = out.pop(alias)
    return out


class FFTConv(SequenceLayer):
    """Linear convolution layer (an SSM in convolution mode), with a matching recurrent mode.

    Args:
        d_model: H.
        l_max: kernel length cap; None (default) makes the kernel as long as the input.
        channels: C output channels per feature; the output width is C * H.
        swap_channels: flatten the output as (h c) instead of (c h).
        bidirectional: add an anti-causal kernel (no step mode, no state forwarding).
        activation: applied to the output (None = identity; 'glu' doubles C internally).
        transposed: layout (B, H, L) instead of (B, L, H).
        dropout, tie_dropout: dropout on the output; tie shares the mask along the sequence.
        drop_kernel: dropout on the kernel itself (training only).
        kernel: a name of ``statespaces.kernels.KERNELS`` (alias ``mode``, the seeds' spelling):
            'nplr'/'dplr'/'s4' (S4, DPLR kernel), 'diag'/'s4d' (S4D/DSS), 'longconv' (explicit taps); or a
            :class:`~statespaces.kernels.Kernel` subclass.
        **kernel_args: options of the kernel (see :class:`~statespaces.kernels.DiagKernel`,
            :class:`~statespaces.kernels.DPLRKernel` ...), e.g. ``d_state``, ``init`` (alias ``measure``),
            ``disc``, ``real_transform`` (alias ``real_type``), ``dt_min``, ``lr`` ...; unknown names raise.
    """

    length_last = True

    def __init__(
        self,
        d_model: int,
        l_max: int | None = None,
        channels: int = 1,
        swap_channels: bool = False,
        bidirectional: bool = False,
        activation: str | None = None,
        transposed: bool = False,
        dropout: float = 0.0,
        tie_dropout: bool = False,
        drop_kernel: float = 0.0,
        kernel: str | None = None,
        **kernel_args,
    ):
        super().__init__(d_model, transposed=transposed, bidirectional=bidirectional)
        kernel_args = resolve_aliases({"kernel": kernel, **kernel_args}, "FFTConv")
        kernel = kernel_args.pop("kernel") or "nplr"
        if isinstance(kernel, type) and issubclass(kernel, Kernel):  # an unregistered kernel class
            name, kernel_cls = kernel.__name__, kernel
        else:
            name = KERNELS.canonical(kernel)
            kernel_cls = KERNELS.get(name)
        check_options(kernel_args, signature_options(kernel_cls) - {"d_model", "channels", "l_max"}, f"FFTConv(kernel={name!r})")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        self.l_max, self.swap_channels, self.kernel_name, self.channels = l_max, swap_channels, name, channels
        self.glu = activation == "glu"
        inner = channels * (2 if self.glu else 1)
        self.kernel: Kernel = kernel_cls(d_model, channels=inner * (2 if bidirectional else 1), l_max=l_max, **kernel_args)
        self.recurrent = kernel_cls.recurrent
        self.supports_rate = kernel_cls.supports_rate
        self.supports_step = self.supports_state = self.recurrent or l_max is not None
        self.D = torch.nn.Parameter(torch.randn(inner, d_model))
        self.activation = make_activation(activation, dim=-3)  # acts on (B C' H L); glu halves C'
        self.dropout = SequenceDropout(dropout, tie_dropout, length_last=True)
        self.drop_kernel = torch.nn.Dropout(drop_kernel) if drop_kernel > 0 else torch.nn.Identity()

    @property
    def d_output(self) -> int:
        return self.d_model * self.channels

    @property
    def d_state(self) -> int | None:
        return getattr(self.kernel, "N", None)

    def _output(self, y: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """(B C' H L) convolution output -> + D u (unless ``u`` is None: the skip already in the kernel),
        activation, flatten channels, dropout -> (B C*H L)."""
        if u is not None:
            y = y + self.D[:, :, None] * u[:, None]
        y = self.activation(y)  # glu acts on C'
        y = rearrange(y, "b c h l -> b (h c) l" if self.swap_channels else "b c h l -> b (c h) l")
        return self.dropout(y)

    def _forward(self, u: torch.Tensor, state, rate: float, lengths):
        """u (B, H, L) -> (y (B, C*H, L), next_state or None)."""
        L = u.shape[-1]
        with torch.autocast(device_type=u.device.type, enabled=False):
            if u.dtype in (torch.float16, torch.bfloat16):
                u = u.float()
            if state is not None and not self.recurrent:
                return self._forward_history(u, state, lengths)
            L_k = L if self.l_max is None else min(L, max(1, round(self.l_max / rate)))
            if state is not None and L_k < L:
                raise ValueError(f"state forwarding needs the kernel to cover the input: l_max/rate={L_k} < L={L}; feed chunks of at most {L_k} steps")
            k, k_state = self.kernel(L_k, rate=rate, state=state)  # (C' H L_k)
            k = self.drop_kernel(k)
            if self.bidirectional:
                k = rearrange(k, "(s c) h l -> s c h l", s=2)
            # the skip D u is the kernel's lag-0 tap: folded in, it costs no (B, C, H, L) pass or tensor
            skip = torch.nn.functional.pad(self.D[..., None].to(k.dtype), (0, k.shape[-1] - 1))  # (C' H L_k)
            k = torch.stack([k[0] + skip, k[1]]) if self.bidirectional else k + skip
            y = fft_conv(u, k, bidirectional=self.bidirectional)  # (B C' H L)
            if k_state is not None:
                y = y + k_state
            y = self._output(y, None)
            next_state = None if state is None else self.kernel.forward_state(u, state, rate=rate, lengths=lengths)
        return y, next_state

    def _forward_history(self, u: torch.Tensor, history: torch.Tensor, lengths):
        """FIR state forwarding: convolve [history, u] with the full l_max-tap kernel."""
        K = self.l_max
        ext = torch.cat([history.to(u.dtype), u], -1)  # (B H K-1+L)
        k, _ = self.kernel(K)
        y = fft_conv(ext, self.drop_kernel(k))[..., K - 1 :]  # (B C' H L)
        if lengths is None:
            nxt = ext[..., ext.shape[-1] - (K - 1) :]
        else:  # the K-1 inputs before each sequence's own end
            idx = lengths[:, None, None] + torch.arange(K - 1, device=u.device)  # (B 1 K-1)
            nxt = ext.gather(-1, idx.expand(-1, ext.shape[1], -1))
        return self._output(y, u), nxt.to(history.dtype)

    def _setup_step(self, realization: str | None = None, mode: str | None = None, rate: float = 1.0, **options) -> None:
        """Prepare the recurrent form.  SSM kernels: ``realization`` (alias ``mode``, the reference's spelling)
        picks how the recurrence is computed (S4: 'linear', 'dense', 'diagonal'), ``rate`` the step size
        multiplier, plus kernel options such as ``tol``."""
        if mode is not None:
            if realization is not None:
                raise TypeError("setup_step: pass either 'realization' or its alias 'mode', not both")
            realization = mode
        if self.recurrent:
            self.kernel.setup_step(realization=realization, rate=rate, **options)
            return
        if realization is not None or options or rate != 1.0:
            raise TypeError(f"setup_step: kernel {self.kernel_name!r} has a plain FIR recurrence with no options")
        with torch.no_grad():
            self._taps = self.kernel(self.l_max)[0].flip(-1)  # (C' H K): oldest input first

    def step_options(self) -> set[str]:
        if not self.recurrent:
            return set()
        return {"realization", "mode", "rate"} | signature_options(self.kernel.setup_step)

    def _step(self, x: torch.Tensor, state: torch.Tensor):
        """x (B, H) -> (y (B, C*H), next_state)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            if x.dtype in (torch.float16, torch.bfloat16):
                x = x.float()
            if self.recurrent:
                y, state = self.kernel.step(x, state)  # (B C' H)
            else:
                if not hasattr(self, "_taps"):
                    raise RuntimeError("call setup_step() before step(); it prepares the recurrent form from the current parameters")
                window = torch.cat([state, x[..., None]], -1)  # (B H K)
                y = torch.einsum("chk,bhk->bch", self._taps, window)
                state = window[..., 1:]
            y = y + self.D * x[:, None, :]
            y = self.activation(y[..., None]).squeeze(-1)
            y = rearrange(y, "b c h -> b (h c)" if self.swap_channels else "b c h -> b (c h)")
        return y, state

    def default_state(self, *batch_shape: int, device=None, dtype: torch.dtype | None = None):
        """Zero state: the kernel's (SSM kernels, e.g. (B, H, N/2) complex), or the last ``l_max - 1`` inputs
        (B, H, l_max - 1) for a kernel without a recurrence."""
        if self.recurrent:
            return self.kernel.default_state(*batch_shape, device=device, dtype=dtype)
        return torch.zeros(*batch_shape, self.d_model, self.l_max - 1, dtype=dtype or self.param_dtype, device=device or self.D.device)

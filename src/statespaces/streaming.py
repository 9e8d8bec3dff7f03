"""A trained model's recurrent step as a plain, real-arithmetic module: fast streaming inference and export.

:meth:`SequenceModel.step` is the reference recurrence: it checks its inputs, keeps complex SSM states and goes
through each layer's public API.  :class:`StreamingModel` is the same computation frozen for inference::

    model.eval()
    stream = StreamingModel(model)                 # after training; calls model.setup_step(**options)
    states = stream.initial_state(batch_size)      # a tuple of real tensors
    for x_t in inputs:
        y_t, *states = stream(x_t, *states)        # (B, d_output) per step
    states = stream.initial_state(batch_size)      # or, updating the states in place (fastest in eager mode):
    for x_t in inputs:
        y_t = stream.step_(x_t, states)

* Each SSM convolution (``FFTConv`` with an S4 / S4D / DSS / LSSL kernel: every kernel with a finite state) is
  a linear time-invariant system per feature h with a real state vector ``s`` (complex modes as (re, im)
  pairs).  Its step and output, with the skip ``D``, are one real matrix per feature,
  ``[s', y] = M_h [s, u]`` with ``M_h = [[A, B], [C A, C B + D]]``, applied as one batched matrix product.
  ``M`` is read off the layer's own ``step`` (its response to unit states and a unit input), so it is exact
  for every kernel and step realization, and it is checked against the layer's convolution mode in the tests.
* Other layers (GRU, LSTM, Mamba, Mamba-2, long convolutions, Hyena, ...) run their own step; their states are
  passed through as real tensors.  Layers with complex states outside an FFTConv (S5, H3, Liquid-S4) or with
  growing caches (attention, Mega) are refused with an error that says so.
* Every state is an input and an output of ``forward``, so the module exports to ONNX with the states as
  graph inputs/outputs (:func:`export_onnx`), one step per call, and to ``torch.export``.

Parameters are read when the module is built (as ``setup_step`` does): build it again after more training.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils import _pytree as pytree

from .data.base import MissingExtra
from .layers.fftconv import FFTConv
from .layers.s4block import S4Block
from .models.sequence import ModelState, SequenceModel

__all__ = ["StreamingModel", "FusedSSMStep", "export_onnx", "export_program"]


def _real_view(state: torch.Tensor) -> torch.Tensor:
    """(..., n) complex -> (..., 2n) real as (re, im) pairs; real tensors pass through."""
    return torch.view_as_real(state).flatten(-2) if state.is_complex() else state


class FusedSSMStep(nn.Module):
    """The step of an :class:`FFTConv` with a recurrent kernel as a real linear map per feature.

    ``forward(u (B, H), s (B, H, n)) -> (y (B, C*H), s')`` with ``n`` the real size of the kernel's state
    (``2 N2`` for complex modes, as (re, im) pairs).  The map ``[s, u] -> [s', y]`` is read off the kernel's
    step; its structure picks the arithmetic:

    * 'complex': each (re, im) pair is multiplied by one complex number (diagonal kernels: S4D, DSS).  In eager
      mode the pairs are viewed as complex numbers (one pass per operation); with ``real=True`` (export) the
      same product is written with real multiplications only, ``a1 * s + a2 * swap(s)``.
    * 'diagonal': real decays (S4D with ``is_real``).
    * 'dplr': S4's kernel in its 'linear' step realization (eager only): the (re, im) pairs multiplied by the
      diagonal and the rank-R correction added, ``s' = Lambda s - U (2 Re Q s) + dB u``, O(n R) per feature.
    * 'dense': anything else (S4 under ``real=True`` or another realization, LSSL's dense transition): one
      batched (n+1) x (n+C) matrix product per feature.

    The output always reads the state before the update, ``y = (C A) s + (C B + D) u``.
    """

    def __init__(self, conv: FFTConv, real: bool = False):
        super().__init__()
        if not conv.recurrent:
            raise ValueError(f"FusedSSMStep needs an FFTConv with a recurrent kernel, got kernel {conv.kernel_name!r}")
        kernel = conv.kernel
        template = kernel.default_state(1)
        self.state_dtype = template.dtype  # the kernel's own form, for conversions
        self.n = n = _real_view(template).shape[-1]
        self.real = real
        H = conv.d_model
        with torch.no_grad():
            # columns of the step map: unit real states (with u = 0), then the unit input (with s = 0)
            probe_state = torch.zeros(n + 1, H, n, dtype=_real_view(template).dtype, device=template.device)
            probe_state[torch.arange(n), :, torch.arange(n)] = 1.0
            probe_u = torch.zeros(n + 1, H, dtype=conv.D.dtype, device=template.device)
            probe_u[n] = 1.0
            y, s_next = kernel.step(probe_u, self._from_real(probe_state))  # (n+1, C, H), (n+1, H, ...)
            y = (y + conv.D * probe_u[:, None, :]).to(conv.D.dtype)
            s_next = _real_view(s_next).to(y.dtype)
            exact_gelu = type(conv.activation) is nn.GELU and conv.activation.approximate == "none"
            self.erf_gelu = exact_gelu and not real
            if self.erf_gelu:  # the maps give y / sqrt(2), the argument of erf, directly (one pass less per step)
                y = y * 0.5**0.5
        A = s_next[:n].permute(1, 2, 0)  # (H, n_out, n_in)
        b = s_next[n]  # (H, n)
        self.register_buffer("ca", rearrange(y[:n], "i c h -> c h i").contiguous(), persistent=False)  # (C, H, n)
        self.register_buffer("e", y[n].contiguous(), persistent=False)  # (C, H)
        self.single = self.ca.shape[0] == 1
        self.register_buffer("ca1", self.ca[0].contiguous(), persistent=False)  # (H, n): the one-channel case
        self.register_buffer("e1", self.e[0].contiguous(), persistent=False)
        self.form = self._structure(A)
        low_rank = self._low_rank(kernel) if self.form == "dense" and not real else None
        if low_rank is not None:
            # s' = Lambda s - U r + dB u, r = 2 Re(Q s): in the flat (re, im) layout r is a real dot product with
            # [2 Re Q, -2 Im Q], the correction and the input are real axpys, Lambda one complex multiply
            cdtype = torch.complex128 if y.dtype == torch.float64 else torch.complex64
            lam, U, Q, dB = (low_rank[k].to(cdtype) for k in ("lam", "U", "Q", "dB"))
            self.form = "dplr"
            self.register_buffer("a_c", lam.contiguous(), persistent=False)  # (H, N2)
            self.register_buffer("q2", _real_view((2 * Q).conj().resolve_conj()).contiguous(), persistent=False)  # (R, H, n)
            self.register_buffer("neg_u", _real_view(-U).contiguous(), persistent=False)  # (R, H, n)
            self.register_buffer("b_flat", _real_view(dB).contiguous(), persistent=False)  # (H, n)
        elif self.form == "dense":
            M = torch.cat([torch.cat([A, b[..., None]], -1), torch.cat([self.ca, self.e[..., None]], -1).transpose(0, 1)], 1)
            self.register_buffer("M", M.transpose(1, 2).contiguous(), persistent=False)  # (H, n+1, n+C), rows = inputs
        elif self.form == "diagonal":
            self.register_buffer("a", torch.diagonal(A, dim1=1, dim2=2).contiguous(), persistent=False)
            self.register_buffer("b", b.contiguous(), persistent=False)
        else:  # (re, im) pairs: s'_re = ar s_re - ai s_im, s'_im = ai s_re + ar s_im
            ar, ai = A[:, 0::2, 0::2].diagonal(dim1=1, dim2=2), A[:, 1::2, 0::2].diagonal(dim1=1, dim2=2)
            # contiguous: a strided (diagonal-of-a-slice) coefficient makes every elementwise op of the step pick
            # its memory order, and at batch 64 the step ran 10x slower than its arithmetic (a copy per call)
            self.register_buffer("a_c", torch.complex(ar, ai).contiguous(), persistent=False)  # (H, N2)
            self.register_buffer("b_c", torch.complex(b[:, 0::2], b[:, 1::2]).contiguous(), persistent=False)
            self.register_buffer("a1", torch.stack([ar, ar], -1), persistent=False)  # (H, N2, 2)
            self.register_buffer("a2", torch.stack([-ai, ai], -1), persistent=False)
            self.register_buffer("b", b.unflatten(-1, (-1, 2)).contiguous(), persistent=False)
            self.register_buffer("b_flat", b.contiguous(), persistent=False)  # (H, n): the in-place step's input map
        self.activation = F.gelu if exact_gelu else conv.activation
        self.register_buffer("sqrt_half", torch.tensor(0.5**0.5, dtype=self.e.dtype, device=self.e.device), persistent=False)
        # what `scaled=True` outputs are multiplied by: a caller that folds 1 / gain into its next linear map
        # saves the last pass of the erf GELU
        self.output_gain = 2**0.5 if self.erf_gelu else 1.0
        self.swap_channels = conv.swap_channels

    @staticmethod
    def _low_rank(kernel) -> dict | None:
        """The DPLR kernel's diagonal-plus-low-rank step (its 'linear' realization), else None."""
        cache = getattr(kernel, "_step", None)
        if getattr(kernel, "_step_mode", None) != "linear" or not isinstance(cache, dict) or not {"lam", "U", "Q", "dB"} <= cache.keys():
            return None
        return cache

    @staticmethod
    def _structure(A: torch.Tensor) -> str:
        n = A.shape[-1]
        off = A - torch.diag_embed(torch.diagonal(A, dim1=1, dim2=2))
        if not off.any():
            return "diagonal"
        if n % 2 == 0:
            pair = torch.arange(n, device=A.device) // 2
            within_pairs = pair[:, None] == pair[None, :]
            diag = lambda rows, cols: A[:, rows::2, cols::2].diagonal(dim1=1, dim2=2)  # noqa: E731
            rotation = torch.equal(diag(1, 1), diag(0, 0)) and torch.equal(diag(0, 1), -diag(1, 0))
            if rotation and not A[:, ~within_pairs].any():
                return "complex"
        return "dense"

    def _from_real(self, s: torch.Tensor) -> torch.Tensor:
        if not self.state_dtype.is_complex:
            return s.to(self.state_dtype)
        return torch.view_as_complex(s.unflatten(-1, (-1, 2)).contiguous()).to(self.state_dtype)

    def to_real(self, state: torch.Tensor) -> torch.Tensor:
        """The kernel's state (B, H, ...) -> this module's (B, H, n) real state."""
        return _real_view(state).to(self.e.dtype)

    def from_real(self, s: torch.Tensor) -> torch.Tensor:
        """This module's real state -> the kernel's state (for ``model.step`` / ``model(x, state)``)."""
        return self._from_real(s)

    def _output(self, s: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """(B, H) for one channel, else (B, C, H).  At batch 1 the step costs what it dispatches (a few
        microseconds per operation, the arithmetic is negligible), hence the fused ``addcmul``s."""
        if self.single:
            # eager: one dot-product op (at batch 1 it measured 1 us under a batched matrix product, 3 us in all);
            # export and compile keep the product and sum that ONNX and inductor know
            dot = (s * self.ca1).sum(-1) if self.real else torch.linalg.vecdot(s, self.ca1)
            return torch.addcmul(dot, self.e1, u)
        return torch.einsum("bhn,chn->bch", s, self.ca) + self.e * u[:, None]

    def _dense(self, u: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.cat([s, u[..., None]], -1).transpose(0, 1)  # (H, B, n+1): one matrix product per feature
        out = torch.bmm(z, self.M).transpose(0, 1)  # (B, H, n+C)
        y = out[..., self.n :]
        return (y[..., 0] if self.single else y.transpose(1, 2)), out[..., : self.n]

    def forward(self, u: torch.Tensor, s: torch.Tensor, scaled: bool = False):
        """``(y, s')``; with ``scaled=True`` y comes multiplied by :attr:`output_gain`."""
        if self.form == "dense":
            y, s = self._dense(u, s)
        elif self.form == "dplr":
            y = self._output(s, u)
            z = torch.view_as_complex(s.unflatten(-1, (-1, 2)))
            nxt = torch.view_as_real(self.a_c * z).flatten(-2)
            for q2, neg_u in zip(self.q2, self.neg_u):
                nxt = torch.addcmul(nxt, neg_u, torch.linalg.vecdot(s, q2)[..., None])
            s = torch.addcmul(nxt, self.b_flat, u[..., None])
        elif self.form == "diagonal":
            y = self._output(s, u)
            s = torch.addcmul(self.a * s, self.b, u[..., None])
        else:
            y = self._output(s, u)
            if self.real:
                pairs = s.unflatten(-1, (-1, 2))  # (B, H, N2, 2)
                pairs = torch.addcmul(torch.addcmul(self.a1 * pairs, self.a2, pairs.flip(-1)), self.b, u[..., None, None])
                s = pairs.flatten(-2)
            else:
                z = torch.view_as_complex(s.unflatten(-1, (-1, 2)))
                s = torch.view_as_real(torch.addcmul(self.b_c * u[..., None], self.a_c, z)).flatten(-2)
        return self._finish(y, scaled), s

    def step_(self, u: torch.Tensor, s: torch.Tensor, scaled: bool = False) -> torch.Tensor:
        """:meth:`forward` with the state updated in place: ``s`` (B, H, n), contiguous, becomes the next state;
        returns ``y`` (times :attr:`output_gain` if ``scaled``), computed in ``torch.inference_mode``.  Nothing
        the size of the state is allocated: at batch 64 the functional step spends most of its time allocating
        its results (this form measured 2.9x faster there, 1.6x at batch 1)."""
        if torch.is_inference_mode_enabled():  # entering the mode again costs ~2 us, a tenth of a batch-1 step
            return self._step_(u, s, scaled)
        with torch.inference_mode():
            return self._step_(u, s, scaled)

    def _step_(self, u: torch.Tensor, s: torch.Tensor, scaled: bool) -> torch.Tensor:
        if not s.is_contiguous():
            raise ValueError(f"step_ updates the state in place and needs it contiguous, got strides {s.stride()} for shape {tuple(s.shape)}")
        if self.form == "dense":
            y, s_next = self._dense(u, s)
            s.copy_(s_next)
            return self._finish(y, scaled)
        bufs = self._buffers  # read from the dict: nn.Module's attribute lookup of a buffer costs ~0.5 us
        # reads the state before the update
        y = torch.addcmul(torch.linalg.vecdot(s, bufs["ca1"]), bufs["e1"], u) if self.single else self._output(s, u)
        if self.form == "diagonal":
            s.mul_(bufs["a"]).addcmul_(bufs["b"], u[..., None])
        elif self.form == "dplr":
            r = [torch.linalg.vecdot(s, q2) for q2 in bufs["q2"]]  # from the state before the update
            a_c = bufs["a_c"]
            s.view(a_c.dtype).mul_(a_c)
            for neg_u, r_i in zip(bufs["neg_u"], r):
                s.addcmul_(neg_u, r_i[..., None])
            s.addcmul_(bufs["b_flat"], u[..., None])
        else:
            # the (re, im) pairs reinterpreted in place as complex numbers (one call, no reshapes), then the input
            # added in the flat real layout (a complex b_c would first convert u to complex): 20 -> 15 us at batch 1
            a_c = bufs["a_c"]
            s.view(a_c.dtype).mul_(a_c)
            s.addcmul_(bufs["b_flat"], u[..., None])
        return self._finish(y, scaled)

    def _finish(self, y: torch.Tensor, scaled: bool = False) -> torch.Tensor:
        if self.erf_gelu:
            # exact GELU from erf: F.gelu's CPU kernel costs ~6 us on a (1, 128) tensor, these two ops ~4 us.
            # y is already z = y / sqrt(2) (prescaled maps), and gelu = (z + z erf(z)) / sqrt(2)
            y = torch.addcmul(y, y, torch.erf(y))
            if not scaled:
                y = y.mul_(self.sqrt_half)
        elif self.activation is F.gelu:
            y = F.gelu(y)
        else:
            y = self.activation(y[..., None]).squeeze(-1)  # the layer's activation takes a length axis
        if self.single:
            return y
        return (y.transpose(1, 2) if self.swap_channels else y).flatten(1)


def _eager(module: nn.Module):
    """``module(x)`` as a plain function for the in-place step: at batch 1 ``nn.Module.__call__`` (its hook
    checks) costs about as much as the small operation inside.  The parameter tensors are bound now; ``.to()``
    moves them in place, so the function follows.  Other module types are returned as they are."""
    kind = type(module)
    if kind is nn.LayerNorm:
        shape, w, b, eps = module.normalized_shape, module.weight, module.bias, module.eps
        cudnn = torch.backends.cudnn.enabled  # F.layer_norm reads this flag on every call (~0.4 us)
        return lambda x: torch.layer_norm(x, shape, w, b, eps, cudnn)
    if kind is nn.Linear:
        w, b = module.weight, module.bias
        return lambda x: F.linear(x, w, b)
    if kind is nn.Identity:
        return lambda x: x
    if kind is nn.Embedding and module.max_norm is None:
        w, pad = module.weight, module.padding_idx
        return lambda x: F.embedding(x, w, pad)
    return module


class _BlockStep(nn.Module):
    """One residual block of a SequenceModel, step by step, with a flat tuple of real states."""

    def __init__(self, block: nn.Module, index: int, real: bool):
        super().__init__()
        self.norm, self.drop, self.prenorm = block.norm, block.drop, block.prenorm
        self.ffn = block.ffn
        self.ffn_norm = block.ffn_norm if block.ffn is not None else None
        self._norm_ = _eager(self.norm)  # for step_
        layer = block.layer
        conv = layer.layer if isinstance(layer, S4Block) else layer if isinstance(layer, FFTConv) else None
        self.outer = layer if isinstance(layer, S4Block) else None
        self.out_linear = self._plain_output(self.outer)
        template = layer.default_state(1)
        self._flat_step = None
        if conv is not None and conv.recurrent:
            self.fused, self.native = FusedSSMStep(conv, real=real), None
            self.spec = None
            self.shapes = [(conv.d_model, self.fused.n)]
            if self.out_linear is not None:  # takes the fused step's scaled output: the gain folded into its weight
                self.register_buffer("out_weight", self.out_linear.weight.detach() / self.fused.output_gain, persistent=False)
                bias = self.out_linear.bias
                self.register_buffer("out_bias", None if bias is None else bias.detach(), persistent=False)
                f = self.fused
                if f.single and f.erf_gelu and f.form in ("complex", "diagonal") and self.ffn is None and self.outer is not None:
                    self._flat_step = f.form
                    self._fused_buffers = f._buffers  # the dict itself: .to() replaces its entries, not the dict
        else:
            leaves, self.spec = pytree.tree_flatten(template)
            bad = [t for t in leaves if not isinstance(t, torch.Tensor) or t.is_complex()]
            growing = any(0 in t.shape for t in leaves if isinstance(t, torch.Tensor))
            if bad or growing:
                why = "complex state tensors" if bad else "a state that grows with the sequence (a cache)"
                raise ValueError(
                    f"block {index}: layer {type(layer).__name__} has {why}; StreamingModel takes SSM convolutions "
                    f"(S4, S4D, DSS, GSS, LSSL), long convolutions, Hyena, GRU, LSTM, Mamba and Mamba-2"
                )
            self.fused, self.native = None, layer
            self.shapes = [tuple(t.shape[1:]) for t in leaves]
            self.dtypes = [t.dtype for t in leaves]

    @staticmethod
    def _plain_output(outer: S4Block | None):
        """(Linear, GLU) of an S4Block without gate or bottleneck, called functionally in the step (each module
        call costs microseconds that dominate a batch-1 step); None for any other form."""
        if outer is None or outer.gate or outer.input_linear is not None or type(outer.mult_act) is not nn.Identity:
            return None
        seq = outer.output_linear
        if not (isinstance(seq, nn.Sequential) and len(seq) == 2 and type(seq[0]) is nn.Linear and type(seq[1]) is nn.GLU and seq[1].dim == -1):
            return None
        return seq[0]

    @property
    def n_states(self) -> int:
        return len(self.shapes)

    def to_flat(self, state) -> list[torch.Tensor]:
        if self.fused is not None:
            return [self.fused.to_real(state)]
        return pytree.tree_flatten(state)[0]

    def from_flat(self, flat: list[torch.Tensor]):
        if self.fused is not None:
            return self.fused.from_real(flat[0])
        return pytree.tree_unflatten(list(flat), self.spec)

    def _around_fused(self, z: torch.Tensor, ssm) -> torch.Tensor:
        """The S4Block around the fused SSM step ``ssm: (z, scaled) -> y`` (functional or in place)."""
        if self.outer is None:
            return ssm(z, False)
        if self.out_linear is not None:
            return F.glu(F.linear(ssm(z, True), self._buffers["out_weight"], self._buffers["out_bias"]), -1)
        z, v = self.outer._pre(z)
        return self.outer._post(ssm(z, False), v)

    def _layer(self, z: torch.Tensor, flat: list[torch.Tensor]):
        if self.fused is None:
            y, state = self.native._step(z, pytree.tree_unflatten(list(flat), self.spec))
            return y, pytree.tree_flatten(state)[0]
        next_state = []

        def ssm(z, scaled):
            y, s = self.fused(z, flat[0], scaled)
            next_state.append(s)
            return y

        return self._around_fused(z, ssm), next_state

    def _layer_(self, z: torch.Tensor, flat) -> torch.Tensor:
        """:meth:`_layer` with the states updated in place."""
        if self.fused is None:
            y, state = self.native._step(z, pytree.tree_unflatten(list(flat), self.spec))
            for old, new in zip(flat, pytree.tree_flatten(state)[0]):
                old.copy_(new)
            return y
        return self._around_fused(z, lambda z, scaled: self.fused.step_(z, flat[0], scaled))

    def _residual(self, x: torch.Tensor, z: torch.Tensor, norm=None) -> torch.Tensor:
        x = x + z  # dropout is the identity in eval mode, where streaming runs
        x = x if self.prenorm else (norm or self.norm)(x)
        if self.ffn is not None:
            z = self.ffn_norm(x) if self.prenorm else x
            x = x + self.ffn(z)
            x = x if self.prenorm else self.ffn_norm(x)
        return x

    def forward(self, x: torch.Tensor, flat: list[torch.Tensor]):
        z, flat = self._layer(self.norm(x) if self.prenorm else x, flat)
        return self._residual(x, z), flat

    def step_(self, x: torch.Tensor, flat) -> torch.Tensor:
        norm = self._norm_
        if self._flat_step:
            return self._plain_s4d_step_(x, flat[0], norm)
        return self._residual(x, self._layer_(norm(x) if self.prenorm else x, flat), norm)

    def _plain_s4d_step_(self, x: torch.Tensor, s: torch.Tensor, norm) -> torch.Tensor:
        """:meth:`step_` written out for the common block (one channel, diagonal modes, exact GELU, Linear + GLU
        output, no MLP), called from ``StreamingModel.step_`` (inference mode): the same operations as
        ``FusedSSMStep._step_`` and :meth:`_around_fused` without their five Python calls per block (at batch 1
        a call costs about what a small operation does).  Buffers are read at call time (``.to()`` replaces them)."""
        if not s.is_contiguous():
            raise ValueError(f"step_ updates the state in place and needs it contiguous, got strides {s.stride()} for shape {tuple(s.shape)}")
        z = norm(x) if self.prenorm else x
        fb, ob = self._fused_buffers, self._buffers
        y = torch.addcmul(torch.linalg.vecdot(s, fb["ca1"]), fb["e1"], z)  # reads the state before the update
        if self._flat_step == "complex":
            a_c = fb["a_c"]
            s.view(a_c.dtype).mul_(a_c)
            s.addcmul_(fb["b_flat"], z[..., None])
        else:
            s.mul_(fb["a"]).addcmul_(fb["b"], z[..., None])
        y = torch.addcmul(y, y, torch.erf(y))  # the erf GELU times sqrt(2): folded into out_weight
        x = x + torch._C._nn.glu(F.linear(y, ob["out_weight"], ob["out_bias"]), -1)  # F.glu's checks: ~0.5 us
        return x if self.prenorm else norm(x)


class StreamingModel(nn.Module):
    """:meth:`SequenceModel.step` as a real-arithmetic module ``forward(x_t, *states) -> (y_t, *next_states)``.

    Args:
        model: a :class:`SequenceModel` (in eval mode: dropout and BatchNorm must be frozen).
        real: real arithmetic only (no complex tensors anywhere, as ONNX needs); by default the diagonal SSMs
            multiply their (re, im) pairs as complex numbers, which is faster in eager PyTorch.
        compile: run the step through ``torch.compile`` (real arithmetic, one graph; the first call of each
            batch size compiles for a while, later calls fuse the elementwise work into a few loops).
        **step_options: passed to ``model.setup_step`` (``realization``, ``rate`` ...).

    ``x_t`` is (B, d_input) floats or (B,) token ids; ``y_t`` is (B, d_output) (the decoder of this step's
    hidden state, or of the running mean for ``pool='mean'``, exactly as ``model.step``).
    """

    def __init__(self, model: SequenceModel, real: bool = False, compile: bool = False, **step_options):
        super().__init__()
        if not isinstance(model, SequenceModel):
            raise TypeError(f"StreamingModel takes a SequenceModel, got {type(model).__name__}")
        if model.training:
            raise ValueError("StreamingModel freezes a trained model for inference: call model.eval() first")
        model.setup_step(**step_options)
        self.tokens = model.config.tokens
        self.d_input = model.config.d_input
        self.mean_pool = model.config.pool == "mean"
        self.encoder, self.final_norm, self.decoder = model.encoder, model.final_norm, model.decoder
        self.blocks = nn.ModuleList(_BlockStep(b, i, real or compile) for i, b in enumerate(model.blocks))
        self.dtype = model.decoder.weight.dtype
        self.d_model = model.config.d_model
        self._encoder_, self._final_norm_, self._decoder_ = _eager(self.encoder), _eager(self.final_norm), _eager(self.decoder)
        # step_'s schedule: (block, its first state's index, its state count), and the pool's states' index
        offsets = [0]
        for b in self.blocks:
            offsets.append(offsets[-1] + b.n_states)
        self._schedule = [(b, i, b.n_states) for b, i in zip(self.blocks, offsets)]
        self._pool_index = offsets[-1]
        self.eval()
        self._compiled = torch.compile(self._step, fullgraph=True, dynamic=False) if compile else None

    def state_names(self) -> list[str]:
        names = [f"block{i}_state{j}" for i, b in enumerate(self.blocks) for j in range(b.n_states)]
        return names + (["pool_sum", "pool_count"] if self.mean_pool else [])

    def initial_state(self, batch_size: int, device=None) -> tuple[torch.Tensor, ...]:
        """Zero states, as ``model.default_state`` gives them, in this module's real form."""
        device = device or self.decoder.weight.device
        flat = []
        for b in self.blocks:
            dtypes = [self.dtype] if b.fused is not None else b.dtypes
            flat += [torch.zeros(batch_size, *shape, dtype=dt, device=device) for shape, dt in zip(b.shapes, dtypes)]
        if self.mean_pool:
            flat += [torch.zeros(batch_size, self.d_model, dtype=self.dtype, device=device), torch.zeros(batch_size, dtype=self.dtype, device=device)]
        return tuple(flat)

    def from_model_state(self, state: ModelState) -> tuple[torch.Tensor, ...]:
        """A :class:`ModelState` (from ``model.default_state`` or ``model(x, state)``) -> flat real states."""
        flat = [t for b, s in zip(self.blocks, state.layers) for t in b.to_flat(s)]
        return tuple(flat + (list(state.pool) if self.mean_pool else []))

    def to_model_state(self, states) -> ModelState:
        """Flat real states -> a :class:`ModelState` that ``model.step`` and ``model(x, state)`` accept."""
        layers, i = [], 0
        for b in self.blocks:
            layers.append(b.from_flat(states[i : i + b.n_states]))
            i += b.n_states
        return ModelState(layers, tuple(states[i : i + 2]) if self.mean_pool else None)

    def forward(self, x_t: torch.Tensor, *states: torch.Tensor):
        if self._compiled is not None:
            return self._compiled(x_t, *states)
        return self._step(x_t, *states)

    @torch.inference_mode()
    def step_(self, x_t: torch.Tensor, states) -> torch.Tensor:
        """One step with the states updated in place (``states`` from :meth:`initial_state`, each contiguous);
        returns ``y_t``.  The same computation as :meth:`forward` without allocating new states, which is most
        of a step's cost at batch 64; not for export or ``torch.compile`` (use :meth:`forward` there).

        It runs in ``torch.inference_mode`` (its intermediate results skip autograd's bookkeeping, about 1 us
        of each operation at batch 1), so ``y_t`` is an inference tensor: clone it to use it in autograd or
        to modify it in place outside inference mode.  The states stay ordinary tensors."""
        h = self._encoder_(x_t)
        for b, i, n in self._schedule:
            h = b._plain_s4d_step_(h, states[i], b._norm_) if b._flat_step else b.step_(h, states[i : i + n])
        h = self._final_norm_(h)
        if self.mean_pool:
            i = self._pool_index
            total, count = states[i], states[i + 1]
            total.add_(h)
            count.add_(1)
            h = total / count[..., None]
        return self._decoder_(h)

    def _step(self, x_t: torch.Tensor, *states: torch.Tensor):
        h = self.encoder(x_t)
        out, i = [], 0
        for b in self.blocks:
            h, flat = b(h, list(states[i : i + b.n_states]))
            out += flat
            i += b.n_states
        h = self.final_norm(h)
        if self.mean_pool:
            total, count = states[i] + h, states[i + 1] + 1
            out += [total, count]
            h = total / count[..., None]
        return (self.decoder(h), *out)


def _example(stream: StreamingModel):
    """Example inputs and the dynamic batch axis for tracing ``stream``."""
    example_batch = 2  # torch.export specialises a size-1 axis to the constant 1: trace with 2, keep the axis dynamic
    states = stream.initial_state(example_batch)
    x = torch.zeros(example_batch, dtype=torch.long) if stream.tokens else torch.zeros(example_batch, stream.d_input, dtype=stream.dtype)
    batch = torch.export.Dim("batch", min=1)
    return (x, *states), ({0: batch}, tuple({0: batch} for _ in states))  # the structure of forward(x, *states)


def export_program(model: SequenceModel, **step_options) -> torch.export.ExportedProgram:
    """The step as a ``torch.export`` program (real arithmetic, a dynamic batch axis); save it with
    ``torch.export.save``."""
    stream = StreamingModel(model, real=True, **step_options)
    args, dynamic = _example(stream)
    return torch.export.export(stream, args, dynamic_shapes=dynamic)


def export_onnx(model: SequenceModel, path: str | Path, **step_options) -> Path:
    """Write the recurrent step of ``model`` as an ONNX graph: inputs ``x`` and every state, outputs ``y`` and
    every next state (names ``block<i>_state<j>``, ``next_block<i>_state<j>``; a dynamic batch axis), in
    real arithmetic.  Needs the ``export`` extra (onnx, onnxscript; onnxruntime to run the graph)."""
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtra(f"ONNX export needs the packages {missing}; install them with: pip install 'statespaces[export]'")
    path = Path(path)
    stream = StreamingModel(model, real=True, **step_options)
    args, dynamic = _example(stream)
    names = stream.state_names()
    path.parent.mkdir(parents=True, exist_ok=True)
    program = torch.onnx.export(
        stream, args, dynamo=True, input_names=["x", *names], output_names=["y", *(f"next_{n}" for n in names)],
        dynamic_shapes=dynamic, verbose=False,
    )
    program.save(str(path))
    return path

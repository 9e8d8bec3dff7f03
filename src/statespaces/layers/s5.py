"""S5: one MIMO diagonal SSM per layer, computed by a parallel scan (Smith, Warrington, Linderman; ICLR 2023,
"Simplified State Space Layers for Sequence Modeling"; official JAX code lindermanlab/S5 ``s5/ssm.py``,
``s5/ssm_init.py``, ``s5/layers.py``, ``s5/train.py``).  The paper's note that "there is no PyTorch
implementation, PyTorch does not support general scans" is answered by :func:`statespaces.ops.scan`.

    x_t = Lambda_bar_t x_(t-1) + B_bar_t u_t     (P complex states, diagonal Lambda, B~ (P, H))
    y_t = 2 Re(C~ x_t) + D u_t                   (conj_sym; Re(C~ x_t) without it)

Initialisation as the official code: HiPPO-N, the normal part S = A + p p^T of HiPPO-LegS of size
``ssm_size / blocks`` (conj_sym: twice the kept size), ``Lambda = mean(diag S) + i eig(-i S)`` with eigenvectors V,
the first half kept under ``conj_sym``, tiled block-diagonally over ``blocks``; ``B~ = V^-1 B`` with B
lecun-normal (truncated normal, std 1/sqrt(fan_in)); ``C~ = C V`` with C truncated-normal per row
('trunc_standard_normal', default) or lecun-normal, or C~ drawn complex-normal (std sqrt(1/2) per part);
D ~ N(0, 1); one log-uniform step per state in [dt_min, dt_max].

``timesteps`` (B, L) positive: step t is discretised with ``dt * timesteps[b, t]`` (irregularly sampled series:
the official ``pendulum`` branch; its main branch accepts the argument and ignores it).  The variable-step path
keeps every tensor at O(B L P): ``B_bar_t u_t = ((Lambda_bar_t - 1) / Lambda) (B~ u_t)`` (zoh), never a
(B, L, P, H) tensor.  After the SSM comes the official layer's activation (``s5/layers.py``): 'gelu',
'full_glu', 'half_glu1' (default of ``run_train.py``) or 'half_glu2'; norm, dropout and the residual belong to
the model's block.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..ops.scan import scan
from ..registry import unknown
from .base import SequenceLayer, complex_dtype

__all__ = ["S5", "hippo_n"]

C_INITS = ("trunc_standard_normal", "lecun_normal", "complex_normal")
DISCS = ("zoh", "bilinear")
ACTIVATIONS = ("gelu", "full_glu", "half_glu1", "half_glu2", None)


def hippo_n(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """HiPPO-N of size n (float64): eigenvalues ``Lambda`` (n,) complex and eigenvectors V (n, n) of the normal
    part S = A + p p^T of HiPPO-LegS (A_nk = -sqrt(2n+1) sqrt(2k+1) for n > k, -(n+1) on the diagonal;
    p_n = sqrt(n + 1/2)), S = V diag(Lambda) V^*; Re(Lambda) is mean(diag S) = -1/2."""
    q = torch.sqrt(1 + 2 * torch.arange(n, dtype=torch.float64))
    A = -(torch.tril(q[:, None] * q[None, :]) - torch.diag(torch.arange(n, dtype=torch.float64)))
    p = torch.sqrt(torch.arange(n, dtype=torch.float64) + 0.5)
    S = A + p[:, None] * p[None, :]
    imag, V = torch.linalg.eigh(S.to(torch.complex128) * -1j)
    return torch.complex(torch.diagonal(S).mean().expand(n), imag), V


def _trunc_normal(*shape: int, std: float) -> torch.Tensor:
    """JAX's lecun/variance-scaling truncated normal: N(0, 1) truncated to [-2, 2], scaled to variance std^2."""
    return nn.init.trunc_normal_(torch.empty(*shape, dtype=torch.float64), a=-2.0, b=2.0) * (std / 0.87962566103423978)


class S5(SequenceLayer):
    """The S5 layer (registered ``s5``).

    Args:
        d_model: H.
        ssm_size: P before halving: the state has ``ssm_size / 2`` complex entries with conj_sym (official
            ``ssm_size_base``, default 256; the LRA configs use 16-384).
        blocks: number of HiPPO-N blocks of the initial Lambda (official default 8); must divide ssm_size
            (and the block size must be even with conj_sym).
        conj_sym: keep half the conjugate pairs and output 2 Re(.) (official default True).
        clip_eigs: clamp Re(Lambda) <= -1e-4 in every forward (the official option; recommended for
            autoregressive use).
        C_init: 'trunc_standard_normal' (default), 'lecun_normal' or 'complex_normal'.
        discretization: 'zoh' (default) or 'bilinear'.
        dt_min, dt_max: range of the log-uniform per-state step (1e-3, 1e-1).
        step_rescale: a fixed multiplier of every step (official; ``rate`` does the same per call).
        bidirectional: a second, reverse scan with its own C (C1, C2 as official); no step or state then.
        activation: the official layer's activation after the SSM (see the module docstring).
        lr: learning rate of Lambda, B and the steps (official ``ssm_lr``; None: the global one); these get
            no weight decay, as in the official optimiser.
        transposed: layout (B, H, L) instead of (B, L, H).
    """

    supports_rate = True

    def __init__(
        self,
        d_model: int,
        ssm_size: int = 256,
        blocks: int = 8,
        *,
        conj_sym: bool = True,
        clip_eigs: bool = False,
        C_init: str = "trunc_standard_normal",
        discretization: str = "zoh",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        step_rescale: float = 1.0,
        bidirectional: bool = False,
        activation: str | None = "half_glu1",
        lr: float | None = None,
        transposed: bool = False,
    ):
        super().__init__(d_model, transposed=transposed, bidirectional=bidirectional)
        for arg, v in (("ssm_size", ssm_size), ("blocks", blocks)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{arg} must be a positive int, got {v!r}")
        if ssm_size % blocks or (conj_sym and (ssm_size // blocks) % 2):
            raise ValueError(f"blocks={blocks} must divide ssm_size={ssm_size} into blocks of {'even ' if conj_sym else ''}size")
        if C_init not in C_INITS:
            raise unknown("C_init", C_init, C_INITS)
        if discretization not in DISCS:
            raise unknown("discretization", discretization, DISCS)
        if activation not in ACTIVATIONS:
            raise unknown("activation", activation, ACTIVATIONS)
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.conj_sym, self.clip_eigs, self.discretization, self.step_rescale = conj_sym, clip_eigs, discretization, float(step_rescale)
        full_block = ssm_size // blocks
        Lam, V = hippo_n(full_block)
        block = full_block // 2 if conj_sym else full_block
        Lam, V = Lam[:block], V[:, :block]  # (block,), (full_block, block)
        self.P = block * blocks
        Lam = Lam.repeat(blocks)
        V_all, V_inv = torch.block_diag(*[V] * blocks), torch.block_diag(*[V.conj().T] * blocks)  # (ssm, P), (P, ssm)
        optim = {"weight_decay": 0.0, **({} if lr is None else {"lr": lr})}

        def param(t: torch.Tensor, settings: dict | None = None) -> nn.Parameter:
            p = nn.Parameter(t.float())
            if settings is not None:
                p._optim = dict(settings)
            return p

        self.Lambda_re, self.Lambda_im = param(Lam.real, optim), param(Lam.imag, optim)
        B = _trunc_normal(ssm_size, d_model, std=1 / math.sqrt(ssm_size))  # official lecun_normal of (local_P, H)
        self.B = param(torch.view_as_real(V_inv @ B.to(torch.complex128)), optim)  # (P, H, 2)
        n_C = 2 if bidirectional else 1
        if C_init == "complex_normal":
            C = torch.randn(d_model, n_C * self.P, 2, dtype=torch.float64) * math.sqrt(0.5)
        else:
            Cs = []
            for _ in range(n_C):
                if C_init == "trunc_standard_normal":  # lecun-normal row by row: fan_in = local_P
                    raw = _trunc_normal(d_model, ssm_size, 2, std=1 / math.sqrt(ssm_size))
                else:
                    raw = _trunc_normal(d_model, ssm_size, 2, std=1 / math.sqrt(ssm_size * d_model))
                Cs.append(torch.view_as_real(torch.complex(raw[..., 0], raw[..., 1]) @ V_all))
            C = torch.cat(Cs, dim=1)
        self.C = param(C)  # (H, n_C P, 2)
        self.D = param(torch.randn(d_model, dtype=torch.float64))
        log_dt = torch.rand(self.P, dtype=torch.float64) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_step = param(log_dt, optim)
        self.activation = activation
        if activation in ("full_glu", "half_glu1", "half_glu2"):
            self.glu_out = nn.Linear(d_model, d_model)
        if activation == "full_glu":
            self.glu_in = nn.Linear(d_model, d_model)

    # ---- the continuous and discrete system ---------------------------------------------------
    def Lambda(self) -> torch.Tensor:
        re = self.Lambda_re.clamp(max=-1e-4) if self.clip_eigs else self.Lambda_re
        return torch.complex(re, self.Lambda_im)

    def discrete(self, step: torch.Tensor):
        """Per-state ``Lambda_bar`` and the input scale ``g`` (so that ``B_bar = g B~``) for steps ``step``
        (any shape ending in P)."""
        Lam = self.Lambda()
        z = Lam * step
        if self.discretization == "zoh":
            Lam_bar = torch.exp(z)
            return Lam_bar, (Lam_bar - 1) / Lam
        inv = 1 / (1 - z / 2)
        return inv * (1 + z / 2), inv * step

    def _steps(self, rate: float) -> torch.Tensor:
        return self.step_rescale * rate * torch.exp(self.log_step)  # (P,)

    def _output(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """States (..., n_C P) and inputs (..., H) -> activated outputs (..., H)."""
        C = torch.view_as_complex(self.C.contiguous())
        y = torch.einsum("hp,...p->...h", C.to(x.dtype), x).real
        y = (2 * y if self.conj_sym else y) + self.D * u
        act = self.activation
        if act is None:
            return y
        g = nn.functional.gelu(y)
        if act == "gelu":
            return g
        if act == "full_glu":
            return self.glu_in(g) * torch.sigmoid(self.glu_out(g))
        if act == "half_glu1":
            return g * torch.sigmoid(self.glu_out(g))
        return y * torch.sigmoid(self.glu_out(g))  # half_glu2

    # ---- sequence mode ---------------------------------------------------------------------------
    def _forward(self, u: torch.Tensor, state, rate: float, lengths, *, timesteps: torch.Tensor | None = None):
        """u (B, L, H) -> (y (B, L, H), next_state); ``timesteps`` (B, L) scales each step's dt."""
        Bsz, L, _ = u.shape
        cdtype = complex_dtype(u.dtype)
        step = self._steps(rate).to(u.dtype)
        if timesteps is not None:
            timesteps = self._check_timesteps(timesteps, Bsz, L, u, lengths)
            step = timesteps[..., None] * step  # (B L P)
        Lam_bar, g = self.discrete(step)
        Btil = torch.view_as_complex(self.B.contiguous()).to(cdtype)
        bu = g * torch.einsum("ph,blh->blp", Btil, u.to(cdtype))  # (B L P)
        a = Lam_bar if timesteps is not None else Lam_bar.expand(1, 1, -1)
        x = scan(a, bu, None if state is None else state)
        if self.bidirectional:
            x = torch.cat([x, scan(a, bu, reverse=True)], dim=-1)
        y = self._output(x, u)
        if state is None:
            return y, None
        if lengths is None:
            return y, x[:, -1]
        idx = (lengths - 1).clamp(min=0)
        last = x[torch.arange(Bsz, device=u.device), idx]
        return y, torch.where((lengths > 0)[:, None], last, state)

    def _check_timesteps(self, timesteps, B: int, L: int, u: torch.Tensor, lengths) -> torch.Tensor:
        if not isinstance(timesteps, torch.Tensor) or tuple(timesteps.shape) != (B, L):
            got = tuple(timesteps.shape) if isinstance(timesteps, torch.Tensor) else type(timesteps).__name__
            raise ValueError(f"timesteps must be a (B, L) = ({B}, {L}) tensor of positive step sizes, got {got}")
        if timesteps.device != u.device:
            raise ValueError(f"timesteps must be on the input's device {u.device}, got {timesteps.device}")
        timesteps = timesteps.to(u.dtype)
        if lengths is not None:  # the padding's steps are never used: any value there is fine
            valid = torch.arange(L, device=u.device) < lengths[:, None]
            timesteps = torch.where(valid, timesteps, torch.ones((), dtype=u.dtype, device=u.device))
        if not bool(torch.isfinite(timesteps).all()) or bool((timesteps <= 0).any()):
            raise ValueError("timesteps must be positive and finite")
        return timesteps

    # ---- recurrent mode --------------------------------------------------------------------------
    def _setup_step(self, rate: float = 1.0) -> None:
        """Prepare ``step`` at a sampling ``rate`` (``step(x, state, timestep=...)`` may also give one step's own
        size, which discretises that step afresh)."""
        self._step_rate = float(rate)
        with torch.no_grad():
            self._step_cache = self.discrete(self._steps(rate).to(self.param_dtype))

    def step(self, x_t: torch.Tensor, state, timestep: torch.Tensor | None = None):
        """One step; ``timestep`` (B,) optionally scales this step's dt (irregular sampling)."""
        if timestep is None:
            return super().step(x_t, state)
        self._require("step", "step()")
        self.check_state(state, x_t.shape[0], x_t.device)
        t = self._check_timesteps(timestep[:, None] if isinstance(timestep, torch.Tensor) and timestep.dim() == 1 else timestep, x_t.shape[0], 1, x_t[:, None], None)
        return self._step(x_t, state, step=t * self._steps(getattr(self, "_step_rate", 1.0)).to(x_t.dtype))

    def _step(self, x_t: torch.Tensor, state, step: torch.Tensor | None = None):
        if step is None:
            if not hasattr(self, "_step_cache"):
                raise RuntimeError("call setup_step() before step(); it prepares the recurrent form from the current parameters")
            Lam_bar, g = self._step_cache
        else:
            Lam_bar, g = self.discrete(step)
        Btil = torch.view_as_complex(self.B.contiguous()).to(state.dtype)
        state = Lam_bar.to(state.dtype) * state + g.to(state.dtype) * torch.einsum("ph,bh->bp", Btil, x_t.to(state.dtype))
        return self._output(state, x_t), state

    def default_state(self, *batch_shape: int, device=None, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.zeros(*batch_shape, self.P, dtype=complex_dtype(dtype or self.param_dtype), device=device or self.D.device)

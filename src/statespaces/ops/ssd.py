"""SSD, the state space dual of Mamba-2 (Dao and Gu, ICML 2024, "Transformers are SSMs"; official
``mamba_ssm/modules/ssd_minimal.py``, the paper's Listing 1): the scalar-decay SSM

    h_t = exp(A_t) h_(t-1) + B_t x_t^T        (per head: h (p, n), x_t (p,), B_t (n,), A_t a scalar)
    y_t = h_t C_t

computed by chunks of T steps: inside a chunk the output is a masked (decay-weighted) attention-like matmul,
``Y_diag = (C B^T o exp(segsum A)) X``; each chunk's end state is a matmul too; the states are carried across
chunks by a short recurrence over the L/T chunk ends; and each chunk adds the carried state's output.  The work is
matmuls of T x T and T x n blocks (O(L T) memory for the decay masks), which is what makes Mamba-2 fast on
matrix hardware.  A length that is not a multiple of T is padded with steps that change nothing (A = 0, x = 0).

Shapes (ssd_minimal's): X (b, l, h, p); A (b, l, h) already multiplied by dt; B, C (b, l, g, n) with g groups
dividing h (head i uses group i // (h / g)), or (b, l, h, n); initial_states (b, h, p, n).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

__all__ = ["ssd", "ssd_ref", "segsum"]


def segsum(x: torch.Tensor) -> torch.Tensor:
    """(..., T) -> (..., T, T): ``out[i, j] = x[j+1] + ... + x[i]`` for j <= i (0 on the diagonal), -inf above.
    Summed from masked copies rather than as a difference of cumulative sums, which loses precision."""
    T = x.shape[-1]
    x = repeat(x, "... d -> ... d e", e=T)
    x = x.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=-1), 0)
    out = torch.cumsum(x, dim=-2)
    return out.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device)), -torch.inf)


def _check(X, A, B, C, initial_states):
    if X.dim() != 4:
        raise ValueError(f"X must be (b, l, h, p), got {tuple(X.shape)}")
    b, l, h, p = X.shape
    if tuple(A.shape) != (b, l, h):
        raise ValueError(f"A must be (b, l, h) = {(b, l, h)}, got {tuple(A.shape)}")
    for name, M in (("B", B), ("C", C)):
        if M.dim() != 4 or M.shape[:2] != (b, l) or h % M.shape[2]:
            raise ValueError(f"{name} must be (b, l, g, n) with g dividing h={h}, got {tuple(M.shape)}")
    if B.shape != C.shape:
        raise ValueError(f"B and C must have the same shape, got {tuple(B.shape)} and {tuple(C.shape)}")
    n = B.shape[-1]
    if initial_states is not None and tuple(initial_states.shape) != (b, h, p, n):
        raise ValueError(f"initial_states must be (b, h, p, n) = {(b, h, p, n)}, got {tuple(initial_states.shape)}")


def _heads(M: torch.Tensor, h: int) -> torch.Tensor:
    return M if M.shape[2] == h else M.repeat_interleave(h // M.shape[2], dim=2)


def ssd(X, A, B, C, chunk_size: int, initial_states=None, return_final_states: bool = False):
    """The chunked SSD (see the module docstring).  Returns Y (b, l, h, p), and the final state (b, h, p, n)
    when ``return_final_states``."""
    _check(X, A, B, C, initial_states)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    b, l, h, p = X.shape
    B, C = _heads(B, h), _heads(C, h)
    pad = (-l) % chunk_size
    if pad:  # steps that change nothing: no decay, no input
        X, A, B, C = F.pad(X, (0, 0, 0, 0, 0, pad)), F.pad(A, (0, 0, 0, pad)), F.pad(B, (0, 0, 0, 0, 0, pad)), F.pad(C, (0, 0, 0, 0, 0, pad))
    X, A, B, C = (rearrange(t, "b (c l) ... -> b c l ...", l=chunk_size) for t in (X, A, B, C))
    A = rearrange(A, "b c l h -> b h c l")
    A_cumsum = torch.cumsum(A, dim=-1)
    # 1. within each chunk: the masked, decay-weighted "attention" C B^T
    # exp(A_(s+1) + ... + A_l) as a difference of the chunk's cumulative sums, as the official Triton kernels do:
    # O(T^2) elementwise work instead of segsum's cumulative sum over (T, T); within one chunk the sums stay small
    causal = torch.tril(torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=A.device))
    decay = torch.exp((A_cumsum[..., :, None] - A_cumsum[..., None, :]).masked_fill(~causal, -torch.inf))  # (b h c l s)
    scores = torch.einsum("bclhn,bcshn->bhcls", C, B) * decay
    Y_diag = torch.einsum("bhcls,bcshp->bclhp", scores, X)
    # 2. each chunk's end state from its own inputs
    decay_states = torch.exp(A_cumsum[..., -1:] - A_cumsum)
    states = torch.einsum("bclhn,bhcl,bclhp->bchpn", B, decay_states, X)
    # 3. carry the states across chunk ends
    if initial_states is None:
        initial_states = torch.zeros_like(states[:, :1])
    else:
        initial_states = initial_states[:, None].to(states.dtype)
    states = torch.cat([initial_states, states], dim=1)
    decay_chunk = torch.exp(segsum(F.pad(A_cumsum[..., -1], (1, 0))))  # (b h c+1 c+1)
    new_states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)
    states, final = new_states[:, :-1], new_states[:, -1]
    # 4. the carried state's output inside each chunk
    Y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", C, states, torch.exp(A_cumsum))
    Y = rearrange(Y_diag + Y_off, "b c l h p -> b (c l) h p")[:, :l]
    return (Y, final) if return_final_states else Y


def ssd_ref(X, A, B, C, initial_states=None, return_final_states: bool = False):
    """The step-by-step loop of :func:`ssd` (same shapes, no chunk size)."""
    _check(X, A, B, C, initial_states)
    b, l, h, p = X.shape
    B, C = _heads(B, h), _heads(C, h)
    state = X.new_zeros(b, h, p, B.shape[-1]) if initial_states is None else initial_states.to(X.dtype)
    ys = []
    for t in range(l):
        state = torch.exp(A[:, t])[..., None, None] * state + torch.einsum("bhp,bhn->bhpn", X[:, t], B[:, t])
        ys.append(torch.einsum("bhpn,bhn->bhp", state, C[:, t]))
    Y = torch.stack(ys, 1)
    return (Y, state) if return_final_states else Y

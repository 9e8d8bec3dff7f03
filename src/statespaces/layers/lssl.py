"""LSSL, the layer: the official ``Platypus`` block (state-spaces/s4 ``src/models/sequence/modules/lssl.py``).

    u ──► Krylov-kernel convolution (C channels, + D u) ──► GELU ──► dropout ──► Linear(H C -> H) ──► y

It is :class:`~statespaces.S4Block` with the kernel of :mod:`statespaces.kernels.krylov` and the defaults of the
official ``configs/model/layer/lssl.yaml``: ``init='legs'``, ``learn=1`` (one learned A and B shared by the
features), transition lr 1e-4, dt lr 1e-3 (log-uniform in [1e-3, 1e-1]), channels 1, GELU, a plain output linear.
Its recurrent step, state forwarding, ``rate`` and ``lengths`` come from the kernel's dense recurrence.
"""

from __future__ import annotations

from .s4block import S4Block

__all__ = ["LSSL"]

OFFICIAL_LR = {"dt": 1e-3, "A": 1e-4, "B": 1e-4}


class LSSL(S4Block):
    """LSSL layer (registered ``lssl``).

    Args:
        d_model: H.
        d_state: N, the order of the HiPPO projection (official default 256 = d_model; 64 here as S4's).
        init: HiPPO measure 'legs', 'legt', 'lagt' or 'fout'.
        learn: 0 fixed A, B; 1 shared learned (default); 2 learned per feature.
        lr: per-key learning rates (default: dt 1e-3, A and B 1e-4, C the global one).
        channels, dropout, final_act, activation, transposed, ...: as :class:`S4Block`.
    """

    def __init__(self, d_model: int, d_state: int = 64, *, init: str = "legs", learn: int = 1, lr=None, activation: str | None = "gelu", final_act: str | None = "id", **options):
        super().__init__(
            d_model, kernel="dense", d_state=d_state, init=init, learn=learn, lr=dict(OFFICIAL_LR) if lr is None else lr, activation=activation, final_act=final_act, **options
        )

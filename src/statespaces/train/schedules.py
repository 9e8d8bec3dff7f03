"""Learning-rate schedules as pure functions of the step (multipliers of the base lr)."""

from __future__ import annotations

import math

from ..registry import unknown

__all__ = ["lr_multiplier", "SCHEDULES"]

SCHEDULES = ("constant", "cosine", "cosine_warmup", "linear_warmup")


def lr_multiplier(name: str, step: int, total: int, warmup: int = 0, min_ratio: float = 0.0) -> float:
    """Multiplier of the base learning rate at optimisation ``step`` (0-based) out of ``total``.

    * constant:       1 (after an optional linear warmup)
    * cosine:         warmup, then half a cosine from 1 down to ``min_ratio`` at ``total``
    * cosine_warmup:  the same (kept as a separate name for configs that always warm up)
    * linear_warmup:  warmup, then a straight line down to ``min_ratio`` at ``total``
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if name == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if name in ("cosine", "cosine_warmup"):
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if name == "linear_warmup":
        return min_ratio + (1 - min_ratio) * (1 - progress)
    raise unknown("schedule", name, SCHEDULES)

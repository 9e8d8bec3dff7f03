"""Language model: a token SequenceModel with recurrent-mode generation."""

from __future__ import annotations

import math

import torch

from .sequence import MODEL_CLASSES, ModelConfig, SequenceModel

__all__ = ["LanguageModel", "sample_next", "check_sampling"]


def check_sampling(temperature: float, top_k: int | None, top_p: float) -> None:
    """Clear errors for sampling options that would otherwise end in a ``multinomial`` traceback."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0: greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None (no limit) or an int >= 1, got {top_k!r}")
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p!r}")


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token per row of ``logits`` (B, V): greedy when ``temperature <= 0``, else softmax sampling
    at ``temperature`` restricted to the ``top_k`` most likely tokens and to the smallest set whose
    probability reaches ``top_p`` (nucleus sampling)."""
    check_sampling(temperature, top_k, top_p)
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs >= top_p  # keep tokens until the mass before them reaches top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]


class LanguageModel(SequenceModel):
    """A :class:`SequenceModel` over tokens with one prediction per step (``pool='none'``)."""

    def __init__(self, config: ModelConfig | dict | None = None, **overrides):
        super().__init__(config, **overrides)
        if not self.config.tokens or self.config.pool != "none":
            raise ValueError("a LanguageModel needs tokens=True and pool='none'")

    @torch.no_grad()
    def generate(
        self,
        prompt: torch.Tensor,
        n: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
        realization: str | None = None,
        step_mode: str | None = None,
    ) -> torch.Tensor:
        """Continue ``prompt`` (B, L0) by ``n`` tokens -> (B, L0 + n).

        The prompt is read in convolution mode with state forwarding (one pass), then each new token costs
        one recurrent step through the stack: O(1) work per token for SSM layers, whatever the position.
        ``realization`` (alias ``step_mode``) picks the recurrent form of the layers that have several (S4).
        """
        realization = realization or step_mode
        if not isinstance(prompt, torch.Tensor) or prompt.dim() != 2 or prompt.shape[1] < 1 or prompt.is_floating_point() or prompt.is_complex():
            got = f"{tuple(prompt.shape)} {prompt.dtype}" if isinstance(prompt, torch.Tensor) else type(prompt).__name__
            raise ValueError(f"prompt must be a (B, L0) integer tensor of token ids with L0 >= 1, got {got}")
        vocab = self.config.d_input
        if prompt.numel() and (prompt.min() < 0 or prompt.max() >= vocab):
            raise ValueError(f"prompt token ids must lie in [0, {vocab}) (the vocabulary size), got min {prompt.min().item()} max {prompt.max().item()}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an int >= 0, got {n!r}")
        check_sampling(temperature, top_k, top_p)
        was_training = self.training
        self.eval()
        try:
            self.setup_step(**({} if realization is None else {"realization": realization}))
            logits, state = self(prompt, state=self.default_state(prompt.shape[0], device=prompt.device))
            logits = logits[:, -1]
            out = [prompt]
            for i in range(n):
                token = sample_next(logits, temperature, top_k, top_p, generator)
                out.append(token[:, None])
                if i < n - 1:
                    logits, state = self.step(token, state)
            return torch.cat(out, 1)
        finally:
            self.train(was_training)


MODEL_CLASSES.add("LanguageModel", LanguageModel)

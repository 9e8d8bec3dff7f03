"""The conformance checker fails on layers that break the contract (a checker that cannot fail proves nothing)."""

import pytest
import torch
from torch import nn

from statespaces.layers import SequenceLayer
from statespaces.testing import ConformanceError, check_layer


class ToyDelay(SequenceLayer):
    """y_t = w0 * x_t + w1 * x_(t-1); the state is the last input.  ``broken`` injects one bug."""

    def __init__(self, d_model, transposed=False, broken=None):
        super().__init__(d_model, transposed=transposed)
        self.w = nn.Parameter(torch.randn(2, d_model))
        self.broken = broken
        if broken == "causal":  # a convolution-only layer: the causality check is the one left to catch it
            self.supports_step = self.supports_state = False

    def _forward(self, u, state, rate, lengths):
        B, L, H = u.shape
        first = torch.zeros(B, 1, H, dtype=u.dtype) if state is None else state[:, None]
        prev = torch.cat([first, u[:, :-1]], 1)
        y = self.w[0] * u + self.w[1] * prev
        if self.broken == "causal":
            y = y + 0.1 * u.flip(1)
        next_state = None
        if state is not None:
            last = torch.full((B,), L) if lengths is None else lengths
            if self.broken == "state":  # drops the last sample: the state after L-1 steps
                last = last - 1
            if self.broken == "lengths":  # ignores lengths
                last = torch.full((B,), L)
            ext = torch.cat([state[:, None], u], 1)
            next_state = ext[torch.arange(B), last]
        return y, next_state

    def default_state(self, *batch_shape, device=None, dtype=None):
        return torch.zeros(*batch_shape, self.d_model, dtype=dtype or self.param_dtype, device=device)

    def _step(self, x, state):
        if self.broken == "step":  # off by one: the current input where the previous one belongs
            return self.w[0] * x + self.w[1] * x, x
        return self.w[0] * x + self.w[1] * state, x


def test_a_correct_toy_layer_passes():
    report = check_layer(ToyDelay, d_model=4)
    assert report.passed == ["contract", "step", "chunks", "causality", "lengths", "gradients", "dtypes", "errors", "model"]
    assert report.skipped == ["rate"]


@pytest.mark.parametrize(
    "broken,check",
    [("step", "step: step-by-step outputs"), ("state", "chunks: chunked forward"), ("lengths", "lengths: next_state of row"), ("causal", "causality: outputs before")],
)
def test_a_broken_toy_layer_fails_the_check_that_guards_it(broken, check):
    with pytest.raises(ConformanceError, match=check):
        check_layer(ToyDelay, d_model=4, options={"broken": broken})


class UnusedParameter(ToyDelay):
    def __init__(self, d_model, transposed=False):
        super().__init__(d_model, transposed=transposed)
        self.extra = nn.Parameter(torch.zeros(3))


def test_an_unused_parameter_is_reported():
    with pytest.raises(ConformanceError, match="gradients: parameter 'extra' got no gradient"):
        check_layer(UnusedParameter, d_model=4)


def test_the_checker_refuses_a_module_that_is_not_a_sequence_layer():
    with pytest.raises(ConformanceError, match="contract: the factory built a Linear"):
        check_layer(lambda d, **kw: nn.Linear(d, d), d_model=4)

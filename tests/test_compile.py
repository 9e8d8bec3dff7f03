"""torch.compile, opt-in: the compiled convolution mode (``run.compile=true`` calls ``model.compile()``) and the
compiled streaming step give the eager results.  Compilation takes tens of seconds on CPU, so one small model
each."""

from __future__ import annotations

import torch

from statespaces.models.sequence import SequenceModel
from statespaces.streaming import StreamingModel


def _model():
    torch.manual_seed(0)
    return SequenceModel(d_input=3, d_output=5, d_model=16, layers=["s4d", {"name": "s4", "d_state": 8}], pool="mean")


def test_compiled_convolution_mode_matches_eager_outputs_and_gradients():
    model = _model()
    x = torch.randn(4, 32, 3)
    y_eager, _ = model(x)
    y_eager.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.compile()
    y, _ = model(x)
    y.square().sum().backward()
    torch.testing.assert_close(y, y_eager, rtol=1e-5, atol=1e-6)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6, msg=n)
    assert "blocks.0.layer.layer.kernel.C" in dict(model.named_parameters())  # names (and checkpoints) unchanged


def test_compiled_streaming_step_matches_the_convolution_mode():
    model = _model().eval()
    x = torch.randn(2, 20, 3)
    with torch.no_grad():
        y_ref, _ = model(x)
        stream = StreamingModel(model, compile=True)
        states = stream.initial_state(2)
        for t in range(x.shape[1]):
            y, *states = stream(x[:, t], *states)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)

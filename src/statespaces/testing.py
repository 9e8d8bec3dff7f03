"""Conformance checks for sequence layers: what every registered layer must pass, public so that a layer
written outside the library can prove it follows the contract too.

    from statespaces.testing import check_layer
    report = check_layer("s4d", d_model=8, options={"d_state": 8})   # a registered name ...
    report = check_layer(MyLayer, d_model=8)                          # ... or any factory(d_model, **options)
    print(report)

Each check compares independent computations of the same function in float64 (the full forward, the
step-by-step recurrence, chunked forwards with state forwarding, each sequence of a padded batch run alone)
and raises :class:`ConformanceError` naming the check and the difference.  States are compared by what they
do, not by their representation: two states are the same if continuing from them gives the same outputs
(a key/value cache with padding slots and one without are then equal, as they should be).
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass, field
from typing import Callable

import torch

from .layers.base import Capabilities, CapabilityError, SequenceLayer, StateError, state_leaves
from .layers.registry import LAYERS
from .models import LanguageModel, ModelConfig, SequenceModel

__all__ = ["check_layer", "run_steps", "ConformanceError", "Report"]

_fresh_names = itertools.count()


class ConformanceError(AssertionError):
    """A layer broke the contract; the message names the check."""


@dataclass
class Report:
    """Outcome of :func:`check_layer`: (check, 'passed' or 'skipped: why') in order."""

    layer: str
    capabilities: Capabilities | None = None
    results: list[tuple[str, str]] = field(default_factory=list)

    @property
    def passed(self) -> list[str]:
        return [name for name, outcome in self.results if outcome == "passed"]

    @property
    def skipped(self) -> list[str]:
        return [name for name, outcome in self.results if outcome != "passed"]

    def __str__(self) -> str:
        lines = [f"{self.layer}: {self.capabilities}"]
        lines += [f"  {name:<12} {outcome}" for name, outcome in self.results]
        return "\n".join(lines)


def run_steps(layer, x: torch.Tensor, state):
    """Run ``layer.step`` over x (B, L, ...) from ``state`` -> (outputs stacked along dim 1, final state).
    Works for a layer or a model (anything with ``step(x_t, state)``)."""
    ys = []
    for t in range(x.shape[1]):
        y, state = layer.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1), state


def _close(got: torch.Tensor, want: torch.Tensor, check: str, what: str, rtol: float, atol: float) -> None:
    try:
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol)
    except AssertionError as e:
        raise ConformanceError(f"{check}: {what}\n{e}") from None


def _fail(check: str, message: str):
    raise ConformanceError(f"{check}: {message}")


def gradcheck_parameters(module: torch.nn.Module, names, *inputs: torch.Tensor) -> None:
    """``torch.autograd.gradcheck`` of ``module(*inputs)`` (its first output when it returns a tuple) with respect to
    the inputs that require grad, then to each named parameter in turn (float64 modules and inputs); raises
    AssertionError naming what failed."""

    def first(out):
        return out[0] if isinstance(out, tuple) else out

    if any(t.requires_grad for t in inputs) and not torch.autograd.gradcheck(lambda *xs: first(module(*xs)), inputs):
        raise AssertionError("gradient of the inputs does not match finite differences")
    for name in names:
        param = module.get_parameter(name)

        def fn(value, name=name):
            return first(torch.func.functional_call(module, {name: value}, tuple(t.detach() for t in inputs)))

        if not torch.autograd.gradcheck(fn, (param.detach().clone().requires_grad_(),)):
            raise AssertionError(f"gradient of {name} does not match finite differences")


def check_layer(
    layer: str | Callable[..., SequenceLayer],
    d_model: int = 8,
    *,
    options: dict | None = None,
    batch: int = 3,
    length: int = 24,
    chunks: tuple[int, ...] | None = None,
    rate: float = 2.0,
    step_options: dict | None = None,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    model: bool = True,
    seed: int = 0,
) -> Report:
    """Check that a layer follows the :class:`~statespaces.layers.SequenceLayer` contract.

    Args:
        layer: a name of ``statespaces.LAYERS`` or a factory ``factory(d_model, **options) -> SequenceLayer``
            (a class works) that accepts ``transposed=True``.
        d_model: H of the layer under test.
        options: layer options (default: the registry entry's example options, or none).
        batch, length: B (at least 2) and L of the test inputs.
        chunks: chunk lengths for state forwarding (default ``(L // 3, 1, rest)``).
        rate: the sampling-rate change checked where the layer supports ``rate``.
        step_options: passed to ``setup_step`` (e.g. ``{"realization": "dense"}``).
        rtol, atol: float64 tolerances of every comparison.
        model: also check a language model built on the layer (save/load round trip and O(1) generation).
        seed: seeds the layer's initialisation and the inputs.
    Returns:
        a :class:`Report`; raises :class:`ConformanceError` at the first failed check.
    """
    name = layer if isinstance(layer, str) else getattr(layer, "__name__", repr(layer))
    if options is None:
        options = LAYERS.lookup(layer)[0].example if isinstance(layer, str) else {}
    factory = LAYERS.get(layer) if isinstance(layer, str) else layer
    if batch < 2:
        raise ValueError(f"batch must be >= 2 (the lengths check pads rows differently), got {batch}")
    chunks = chunks or (length // 3, 1, length - length // 3 - 1)
    if sum(chunks) != length or min(chunks) < 1:
        raise ValueError(f"chunks {chunks} must be positive and add up to length={length}")
    tol = dict(rtol=rtol, atol=atol)
    torch.manual_seed(seed)
    net = factory(d_model, **options)
    if not isinstance(net, SequenceLayer):
        _fail("contract", f"the factory built a {type(net).__name__}, not a SequenceLayer")
    caps = net.capabilities
    report = Report(name, caps)
    ctx = _Context(net.double().eval(), caps, batch, length, d_model, tol, dict(step_options or {}))
    ctx.x = torch.randn(batch, length, d_model, dtype=torch.float64)

    def run(check: str, fn: Callable[[], str | None]) -> None:
        skipped = fn()
        report.results.append((check, f"skipped: {skipped}" if skipped else "passed"))

    run("contract", lambda: _contract(ctx, factory, options))
    run("step", lambda: _views_step(ctx))
    run("chunks", lambda: _views_chunks(ctx, chunks))
    run("rate", lambda: _rate(ctx, rate, chunks))
    run("causality", lambda: _causality(ctx))
    run("lengths", lambda: _lengths(ctx))
    run("gradients", lambda: _gradients(ctx))
    run("dtypes", lambda: _dtypes(ctx, factory, options))
    run("errors", lambda: _errors(ctx))
    if model:
        run("model", lambda: _model(ctx, layer, factory, options, seed))
    return report


class _Context:
    def __init__(self, net, caps, B, L, H, tol, step_options):
        self.net, self.caps, self.B, self.L, self.H, self.tol, self.step_options = net, caps, B, L, H, tol, step_options
        self.x: torch.Tensor

    def steps(self, x: torch.Tensor, state):
        return run_steps(self.net, x, state)

    def cont(self, state, z: torch.Tensor) -> torch.Tensor:
        """Outputs of continuing from ``state`` with ``z``: how states are compared."""
        if self.caps.state:
            return self.net(z, state=state)[0]
        return self.steps(z, state)[0]


@torch.no_grad()
def _contract(ctx: _Context, factory, options) -> None:
    net, x = ctx.net, ctx.x
    if not isinstance(ctx.caps, Capabilities):
        _fail("contract", f"capabilities must be a Capabilities tuple, got {ctx.caps!r}")
    y, none = net(x)
    if none is not None:
        _fail("contract", "forward without a state must return next_state=None")
    if y.shape != (ctx.B, ctx.L, net.d_output):
        _fail("contract", f"output shape {tuple(y.shape)} != (B, L, d_output) = {(ctx.B, ctx.L, net.d_output)}")
    if not torch.isfinite(y).all():
        _fail("contract", "non-finite outputs")
    transposed = factory(ctx.H, **{**options, "transposed": True}).double().eval()
    transposed.load_state_dict(net.state_dict())
    _close(transposed(x.transpose(1, 2))[0].transpose(1, 2), y, "contract", "transposed=True computes another map", **ctx.tol)
    ctx.y = y


@torch.no_grad()
def _views_step(ctx: _Context) -> str | None:
    if not ctx.caps.step:
        return "no step mode"
    ctx.net.setup_step(**ctx.step_options)
    ys, ctx.step_state = ctx.steps(ctx.x, ctx.net.default_state(ctx.B))
    _close(ys, ctx.y, "step", "step-by-step outputs != full forward", **ctx.tol)
    return None


@torch.no_grad()
def _views_chunks(ctx: _Context, chunks) -> str | None:
    if not ctx.caps.state:
        return "no state forwarding"
    net, x = ctx.net, ctx.x
    y0, _ = net(x, state=net.default_state(ctx.B))
    _close(y0, ctx.y, "chunks", "forward from default_state != forward without a state", **ctx.tol)
    state, outs, start = net.default_state(ctx.B), [], 0
    for n in chunks:
        y, state = net(x[:, start : start + n], state=state)
        outs.append(y)
        start += n
    _close(torch.cat(outs, 1), ctx.y, "chunks", f"chunked forward {chunks} with state forwarding != full forward", **ctx.tol)
    if ctx.caps.step:  # the final states must act the same
        z = torch.randn(ctx.B, 5, ctx.H, dtype=torch.float64)
        _close(ctx.cont(state, z), ctx.cont(ctx.step_state, z), "chunks", "final state of the chunks != final state of the steps", **ctx.tol)
    return None


@torch.no_grad()
def _rate(ctx: _Context, rate: float, chunks) -> str | None:
    if not ctx.caps.rate:
        return "no rate"
    net, x = ctx.net, ctx.x
    y, _ = net(x, rate=rate)
    if torch.allclose(y, ctx.y, rtol=1e-6, atol=1e-9):
        _fail("rate", f"rate={rate} gives the same outputs as rate=1 (ignored?)")
    if ctx.caps.state:
        state, outs, start = net.default_state(ctx.B), [], 0
        for n in chunks:
            yc, state = net(x[:, start : start + n], state=state, rate=rate)
            outs.append(yc)
            start += n
        _close(torch.cat(outs, 1), y, "rate", f"chunked forward at rate={rate} != full forward at that rate", **ctx.tol)
    if ctx.caps.step and "rate" in net.step_options():
        net.setup_step(**{**ctx.step_options, "rate": rate})
        ys, s = ctx.steps(x, net.default_state(ctx.B))
        _close(ys, y, "rate", f"steps after setup_step(rate={rate}) != full forward at that rate", **ctx.tol)
        if ctx.caps.state:
            z = torch.randn(ctx.B, 5, ctx.H, dtype=torch.float64)
            _close(net(z, state=s, rate=rate)[0], net(z, state=state, rate=rate)[0], "rate", "final states at that rate differ", **ctx.tol)
        net.setup_step(**ctx.step_options)
    return None


@torch.no_grad()
def _causality(ctx: _Context) -> None:
    net, x = ctx.net, ctx.x
    t0 = ctx.L // 2
    x2 = x.clone()
    x2[:, t0:] += 1.0
    y2, _ = net(x2)
    before = (y2[:, :t0] - ctx.y[:, :t0]).abs().max().item()
    after = (y2[:, t0:] - ctx.y[:, t0:]).abs().max().item()
    if after == 0.0:
        _fail("causality", f"changing the input from step {t0} on changed no output")
    if ctx.caps.bidirectional and before == 0.0:
        _fail("causality", "a bidirectional layer's earlier outputs ignore later inputs")
    if not ctx.caps.bidirectional and before > ctx.tol["atol"]:
        _fail("causality", f"outputs before step {t0} changed by {before:.3g} when only later inputs changed")


@torch.no_grad()
def _lengths(ctx: _Context) -> str | None:
    if not ctx.caps.lengths:
        return "no lengths"
    net, x, B, L = ctx.net, ctx.x, ctx.B, ctx.L
    lengths = torch.tensor([L, L // 2 + 1, 1] + [max(1, L - 3 * b) for b in range(3, B)])[:B]
    padded = x.clone()
    for b, n in enumerate(lengths.tolist()):
        padded[b, n:] = float("nan")
    # start from the state after a prefix, not from zero: a state update that mishandles lengths (decaying by L
    # instead of each row's length, say) is invisible on a zero state
    prefix = torch.randn(B, 5, ctx.H, dtype=torch.float64)
    state0 = net(prefix, state=net.default_state(B))[1] if ctx.caps.state else None
    y, state = net(padded, state=state0, lengths=lengths)
    if not torch.isfinite(y).all():
        _fail("lengths", "NaN in the padding reached the outputs")
    z = torch.randn(B, 4, ctx.H, dtype=torch.float64)
    after = ctx.cont(state, z) if ctx.caps.state else None
    for b, n in enumerate(lengths.tolist()):
        row_state = None if state0 is None else net(prefix[b : b + 1], state=net.default_state(1))[1]
        alone, s_alone = net(x[b : b + 1, :n], state=row_state)
        _close(y[b : b + 1, :n], alone, "lengths", f"row {b} (length {n}) of a padded batch != the row run alone", **ctx.tol)
        if (y[b, n:] != 0).any():
            _fail("lengths", f"outputs past row {b}'s length {n} are not zero")
        if after is not None:
            _close(after[b : b + 1], ctx.cont(s_alone, z[b : b + 1]), "lengths", f"next_state of row {b} is not the state after its {n} steps", **ctx.tol)
    return None


def _gradients(ctx: _Context) -> None:
    net = ctx.net.train()
    try:
        x = ctx.x.clone().requires_grad_()
        state = net.default_state(ctx.B) if ctx.caps.state else None
        y, s = net(x, state=state)
        loss = y.square().mean()
        if s is not None:
            loss = loss + sum(leaf.abs().square().mean() for leaf in state_leaves(s) if leaf.is_floating_point() or leaf.is_complex())
        loss.backward()
    finally:
        net.eval()
    if not torch.isfinite(x.grad).all():
        _fail("gradients", "non-finite input gradient")
    for pname, p in net.named_parameters():
        if p.requires_grad and p.grad is None:
            _fail("gradients", f"parameter {pname!r} got no gradient (unused?)")
        if p.grad is not None and not torch.isfinite(p.grad).all():
            _fail("gradients", f"parameter {pname!r} has a non-finite gradient")
        p.grad = None


@torch.no_grad()
def _dtypes(ctx: _Context, factory, options) -> None:
    single = factory(ctx.H, **options).eval()
    y, _ = single(ctx.x.float())
    if y.dtype != torch.float32:
        _fail("dtypes", f"a float32 layer returned {y.dtype}")
    if ctx.y.dtype != torch.float64:
        _fail("dtypes", f"a double() layer returned {ctx.y.dtype}")
    for which, net, want in (("float32", single, (torch.float32, torch.complex64)), ("double()", ctx.net, (torch.float64, torch.complex128))):
        if ctx.caps.state or ctx.caps.step:
            for leaf in state_leaves(net.default_state(2)):
                if (leaf.is_floating_point() or leaf.is_complex()) and leaf.dtype not in want and not (leaf.dtype == torch.complex128 and which == "float32"):
                    _fail("dtypes", f"default_state of a {which} layer holds {leaf.dtype}")


def _expect(check: str, error: type, fn, what: str) -> None:
    try:
        fn()
    except error:
        return
    except Exception as e:  # noqa: BLE001  (any other error is a failure of this check)
        _fail(check, f"{what}: expected {error.__name__}, got {type(e).__name__}: {e}")
    _fail(check, f"{what}: expected {error.__name__}, nothing was raised")


@torch.no_grad()
def _errors(ctx: _Context) -> None:
    net, x, B = ctx.net, ctx.x, ctx.B
    _expect("errors", ValueError, lambda: net(x[0]), "a 2-D input")
    _expect("errors", ValueError, lambda: net(torch.randn(B, ctx.L, ctx.H + 1, dtype=torch.float64)), "a wrong width")
    _expect("errors", ValueError, lambda: net(x[:, :0]), "an empty sequence (L = 0)")
    if ctx.caps.state:
        _expect("errors", StateError, lambda: net(x, state=net.default_state(B + 1)), "a state for another batch size")
        _expect("errors", StateError, lambda: net(x, state=torch.zeros(())), "a scalar state")
    else:
        _expect("errors", CapabilityError, lambda: net(x, state=torch.zeros(())), "state= without state support")
    if not ctx.caps.rate:
        _expect("errors", CapabilityError, lambda: net(x, rate=2.0), "rate= without rate support")
    if ctx.caps.step:
        _expect("errors", ValueError, lambda: net.step(x[:, 0, :-1], net.default_state(B)), "a step input of the wrong width")
    else:
        _expect("errors", CapabilityError, lambda: net.setup_step(), "setup_step() without a step mode")


@torch.no_grad()
def _model(ctx: _Context, layer, factory, options, seed) -> None:
    name = layer if isinstance(layer, str) else f"_check_layer_{next(_fresh_names)}"
    if not isinstance(layer, str):
        LAYERS.add(name, factory, "temporary entry of check_layer")
    try:
        torch.manual_seed(seed)
        cfg = ModelConfig(d_input=7, d_output=7, tokens=True, pool="none", d_model=ctx.H, n_layers=2, layer=name, layer_options=dict(options), prenorm=True)
        lm = LanguageModel(cfg).double().eval()
        prompt = torch.randint(0, 7, (2, 4))
        logits, _ = lm(prompt)
        with tempfile.TemporaryDirectory() as tmp:
            lm.save_pretrained(tmp)
            again = SequenceModel.from_pretrained(tmp).double().eval()
        if type(again) is not LanguageModel:
            _fail("model", f"from_pretrained built a {type(again).__name__}")
        _close(again(prompt)[0], logits, "model", "outputs after save_pretrained/from_pretrained differ", **ctx.tol)
        if not ctx.caps.step:
            return
        out = lm.generate(prompt, n=6, temperature=0)
        for t in range(prompt.shape[1], out.shape[1]):
            if not torch.equal(lm(out[:, :t])[0][:, -1].argmax(-1), out[:, t]):
                _fail("model", f"generate() token {t} differs from the argmax of the full forward on the prefix")
    finally:
        if not isinstance(layer, str):
            LAYERS.remove(name)

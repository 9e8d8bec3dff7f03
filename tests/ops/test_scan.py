import subprocess
import sys
from pathlib import Path

import pytest
import torch

from statespaces.ops.scan import scan, scan_ref

F64, C128 = torch.float64, torch.complex128


def _decay(shape, dtype):
    """|a| in (0.5, 1): long memory without blow-up, a phase when complex."""
    a = torch.rand(shape, dtype=F64) * 0.5 + 0.5
    if dtype.is_complex:
        a = a * torch.exp(1j * torch.randn(shape, dtype=F64))
    return a.requires_grad_()


def _inputs(a_shape, b_shape, h0_shape=None, dtype=F64):
    a = _decay(a_shape, dtype)
    b = torch.randn(b_shape, dtype=dtype, requires_grad=True)
    h0 = None if h0_shape is None else torch.randn(h0_shape, dtype=dtype, requires_grad=True)
    return a, b, h0


def _assert_matches_loop(a, b, h0=None, reverse=False, chunk=None):
    """Outputs and the gradients for a, b, h0 (random upstream gradient) equal the Python loop's."""
    out, ref = scan(a, b, h0, reverse, chunk=chunk), scan_ref(a, b, h0, reverse)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    inputs = [x for x in (a, b, h0) if x is not None and x.requires_grad]
    g = torch.randn_like(ref)
    got, want = torch.autograd.grad(out, inputs, g), torch.autograd.grad(ref, inputs, g)
    for x, u, v in zip(inputs, got, want):
        assert u.shape == x.shape and u.dtype == x.dtype
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-10)


# default T = chunk_size(L): L = 1, 2 run plain steps; 48 (T=4) and 512 (T=16) are exact multiples; the primes
# 7 (T=2), 97 (T=6) and 521 (T=16) leave a remainder.  Forced T=4: 12 exact, 13 and 37 not
LENGTHS = [(1, None), (2, None), (7, None), (48, None), (97, None), (512, None), (521, None), (12, 4), (13, 4), (37, 4)]


@pytest.mark.parametrize("L,chunk", LENGTHS)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dtype", [F64, C128], ids=["real", "complex"])
@pytest.mark.parametrize("with_h0", [False, True], ids=["h0_none", "h0"])
def test_scan_values_and_grads_match_loop(L, chunk, reverse, dtype, with_h0):
    _assert_matches_loop(*_inputs((2, L, 3), (2, L, 3), (2, 3) if with_h0 else None, dtype), reverse, chunk)


@pytest.mark.parametrize(
    "a_shape,b_shape,h0_shape",
    [
        ((2, 37, 3, 1), (2, 37, 3, 4), (2, 3, 4)),  # one decay per (D, N) row
        ((2, 1, 3), (2, 37, 3), (2, 3)),  # decay constant over time
        ((1, 37, 3), (2, 37, 3), (2, 3)),  # decay shared over the batch
        ((37, 3), (2, 37, 3), None),  # ... given without the batch dim
        ((2, 37, 3), (2, 37, 1), (1, 3)),  # input broadcast over D, h0 over batch
        ((2, 37, 3, 1), (2, 37, 1, 4), (4,)),  # output bigger than both inputs
        ((2, 37, 3), (1, 1, 3), (3,)),  # constant input
    ],
)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dtype", [F64, C128], ids=["real", "complex"])
def test_broadcast_inputs_match_loop_and_grads_keep_input_shapes(a_shape, b_shape, h0_shape, reverse, dtype):
    _assert_matches_loop(*_inputs(a_shape, b_shape, h0_shape, dtype), reverse, chunk=4)


@pytest.mark.parametrize("L,chunk", [(300, 2), (1000, None), (5000, None)])
def test_multilevel_carry_matches_loop(L, chunk):
    # chunk=2 over 300 steps gives a carry scan of length 150 that is chunked again (three levels)
    _assert_matches_loop(*_inputs((1, L, 2), (1, L, 2), (1, 2), C128), False, chunk)
    _assert_matches_loop(*_inputs((1, L, 2), (1, L, 2), (1, 2), C128), True, chunk)


def test_real_decay_with_complex_input_gives_real_gradient_for_decay():
    a, _, _ = _inputs((2, 20, 3), (2, 20, 3))
    b, h0 = torch.randn(2, 20, 3, dtype=C128, requires_grad=True), torch.randn(2, 3, requires_grad=True, dtype=F64)
    assert scan(a, b, h0).dtype == C128
    _assert_matches_loop(a, b, h0, chunk=4)


def test_noncontiguous_inputs_and_expanded_upstream_gradient():
    x = torch.randn(3, 40, 2, dtype=C128)
    a = (0.9 * torch.exp(1j * x)).transpose(0, 2).detach().requires_grad_()  # (2, 40, 3), strided
    b = torch.randn(3, 2, 40, dtype=C128).permute(1, 2, 0).detach().requires_grad_()
    got = torch.autograd.grad(scan(a, b, chunk=8).real.sum(), (a, b))  # .sum() hands back a stride-0 gradient
    want = torch.autograd.grad(scan_ref(a, b).real.sum(), (a, b))
    for u, v in zip(got, want):
        torch.testing.assert_close(u, v)


def test_float32_stays_float32_and_matches_loop():
    a, b = torch.rand(4, 300, 8) * 0.5 + 0.5, torch.randn(4, 300, 8)
    out = scan(a, b)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, scan_ref(a, b), rtol=1e-5, atol=1e-5)


def test_loop_reference_is_the_geometric_sum():
    # h_t = sum_{s <= t} a^(t - s) b_s + a^(t + 1) h0, and backwards h_t = sum_{s >= t} a^(s - t) b_s + a^(L - t) h0
    L, a = 9, torch.tensor(0.7 - 0.2j, dtype=C128)
    b, h0 = torch.randn(1, L, dtype=C128), torch.randn(1, dtype=C128)
    t = torch.arange(L)
    fwd = torch.stack([(a ** (k - t[: k + 1]) * b[0, : k + 1]).sum() + a ** (k + 1) * h0[0] for k in range(L)])
    bwd = torch.stack([(a ** (t[k:] - k) * b[0, k:]).sum() + a ** (L - k) * h0[0] for k in range(L)])
    for fn in (scan_ref, scan):
        torch.testing.assert_close(fn(a.expand(1, L), b, h0)[0], fwd)
        torch.testing.assert_close(fn(a.expand(1, L), b, h0, reverse=True)[0], bwd)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dtype", [F64, C128], ids=["real", "complex"])
def test_gradcheck(reverse, dtype):
    a, b, h0 = _inputs((2, 9, 2, 1), (2, 9, 2, 2), (2, 1), dtype)
    assert torch.autograd.gradcheck(lambda a, b, h0: scan(a, b, h0, reverse, chunk=2), (a, b, h0))


def _saved(fn, *args):
    """(number, bytes) of the tensors autograd saves for one call."""
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda x: saved.append(x) or x, lambda x: x):
        fn(*args)
    return len(saved), sum(x.nbytes for x in saved)


@pytest.mark.parametrize("a_shape,b_shape", [((2, 64, 4), (2, 64, 4)), ((2, 64, 4, 1), (2, 64, 4, 8))])
def test_saved_memory_is_order_of_inputs_without_a_per_step_graph(a_shape, b_shape):
    a, b, h0 = _inputs(a_shape, b_shape, b_shape[:1] + b_shape[2:], C128)
    count, nbytes = _saved(scan, a, b, h0)
    # a, the output h (which is alive anyway) and h0
    assert count <= 3
    assert nbytes <= 1.5 * (a.numel() + b.numel() + h0.numel()) * a.element_size()
    # the loop saves 2L tensors (a[:, t] and h_(t-1) per step; 128 here) whose bytes are the same 16384 in the
    # first case but 131072 against 74752 in the broadcast one (a[:, t] is expanded), one graph node per step,
    # and its backward writes a zero-filled (B, L, ...) gradient per step of a[:, t]: O(L^2) time
    assert _saved(scan_ref, a, b, h0)[0] == 2 * a_shape[1]


def test_bad_inputs_raise_value_errors_naming_argument_and_shape():
    a, b = torch.rand(2, 5, 3), torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match=r"a must have at least 2 dims .* \(5,\)"):
        scan(torch.rand(5), b)
    with pytest.raises(ValueError, match=r"b must have at least 2 dims"):
        scan(a, torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"a \(2, 5, 3\) and b \(2, 4, 3\) do not broadcast"):
        scan(a, torch.randn(2, 4, 3))
    with pytest.raises(ValueError, match=r"h0 must broadcast to .*\(2, 3\), got shape \(2, 4\)"):
        scan(a, b, torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"h0 must broadcast to .*got shape \(3, 2, 3\)"):
        scan(a, b, torch.randn(3, 2, 3))  # would broadcast, but enlarges the state
    with pytest.raises(ValueError, match=r"sequence length .* at least 1"):
        scan(torch.rand(2, 0, 3), torch.randn(2, 0, 3))
    with pytest.raises(ValueError, match=r"floating point or complex"):
        scan(torch.ones(2, 5, dtype=torch.long), torch.ones(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"h0 must broadcast"):
        scan_ref(a, b, torch.randn(2, 4))


def test_benchmark_smoke_runs():
    script = Path(__file__).parents[2] / "benchmarks" / "bench_scan.py"
    out = subprocess.run([sys.executable, str(script), "--smoke"], capture_output=True, text=True, check=True, timeout=300).stdout
    assert "| case | method |" in out
    for method in ("scan", "scan_ref", "unbind loop", "floor"):
        assert f"| {method} |" in out

"""selective_scan (chunked, checkpointed) == selective_scan_ref (the loop) == mamba_ssm's formulation, outputs and
every gradient, over the option grid of mamba_ssm's own test (float64)."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from einops import repeat

from statespaces.ops.selective_scan import selective_scan, selective_scan_ref

F64, C128 = torch.float64, torch.complex128
b, d, l, n, g = 2, 4, 37, 3, 2


def _inputs(complex_A, B_kind, C_kind, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, dtype=F64):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    A = -0.5 * torch.rand(d, n, generator=gen, dtype=F64)
    if complex_A:
        A = torch.complex(A, rnd(d, n))

    def mat(kind):
        steps = 2 * l if complex_A else l  # mamba_ssm's interleaved (real, imag) form for complex A
        return {"const": lambda: rnd(d, n, dtype=C128 if complex_A else F64), "var": lambda: rnd(b, n, steps), "group": lambda: rnd(b, g, n, steps)}[kind]()

    return dict(
        u=rnd(b, d, l), delta=0.5 * torch.rand(b, d, l, generator=gen, dtype=F64), A=A, B=mat(B_kind), C=mat(C_kind),
        D=rnd(d), z=rnd(b, d, l), delta_bias=0.5 * torch.rand(d, generator=gen, dtype=F64),
    )


GRID = list(itertools.product([False, True], ["const", "var", "group"], ["const", "var", "group"]))


@pytest.mark.parametrize("complex_A,B_kind,C_kind", GRID)
@pytest.mark.parametrize("extras", [dict(), dict(D=True, z=True, delta_bias=True, delta_softplus=True)], ids=["plain", "D-z-bias-softplus"])
def test_chunked_scan_equals_the_loop_outputs_last_state_and_all_gradients(complex_A, B_kind, C_kind, extras):
    x = _inputs(complex_A, B_kind, C_kind)
    names = ["u", "delta", "A", "B", "C"] + [k for k in ("D", "z", "delta_bias") if extras.get(k)]
    leaves = {k: x[k].clone().requires_grad_() for k in names}
    kw = dict(leaves, delta_softplus=extras.get("delta_softplus", False), return_last_state=True)
    out, last = selective_scan(**kw, chunk=8)
    out_ref, last_ref = selective_scan_ref(**kw)
    torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(last, last_ref, rtol=1e-10, atol=1e-10)
    g_out = torch.randn_like(out)
    grads = torch.autograd.grad((out * g_out).sum() + last.abs().sum(), list(leaves.values()))
    grads_ref = torch.autograd.grad((out_ref * g_out).sum() + last_ref.abs().sum(), list(leaves.values()))
    for name, a, r in zip(leaves, grads, grads_ref):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-9, msg=name)


def _mamba_formulation(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """mamba_ssm's selective_scan_ref restated (einsum over the whole sequence, einops group repeat),
    independent of this library's helpers."""
    delta = delta + delta_bias[..., None]
    if delta_softplus:
        delta = F.softplus(delta)
    if A.is_complex():
        B = torch.view_as_complex(B.unflatten(-1, (-1, 2)).contiguous()) if B.dim() >= 3 else B
        C = torch.view_as_complex(C.unflatten(-1, (-1, 2)).contiguous()) if C.dim() >= 3 else C
    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    if B.dim() == 2:
        dBu = torch.einsum("bdl,dn,bdl->bdln", delta, B, u)
    elif B.dim() == 3:
        dBu = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    else:
        dBu = torch.einsum("bdl,bdnl,bdl->bdln", delta, repeat(B, "B G N L -> B (G H) N L", H=d // B.shape[1]), u)
    if C.dim() == 4:
        C = repeat(C, "B G N L -> B (G H) N L", H=d // C.shape[1])
    x, ys = torch.zeros(b, d, n, dtype=dBu.dtype), []
    for i in range(l):
        x = deltaA[:, :, i] * x + dBu[:, :, i]
        y = torch.einsum("bdn,dn->bd", x, C) if C.dim() == 2 else (torch.einsum("bdn,bn->bd", x, C[:, :, i]) if C.dim() == 3 else torch.einsum("bdn,bdn->bd", x, C[:, :, :, i]))
        ys.append(2 * y.real if y.is_complex() else y)
    return (torch.stack(ys, 2) + u * D[:, None]) * F.silu(z), x


@pytest.mark.parametrize("complex_A,B_kind,C_kind", GRID)
def test_the_reference_is_mamba_ssms_formulation(complex_A, B_kind, C_kind):
    x = _inputs(complex_A, B_kind, C_kind, seed=1)
    out, last = selective_scan_ref(**x, delta_softplus=True, return_last_state=True)
    want, want_last = _mamba_formulation(**x, delta_softplus=True)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(last, want_last, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fn", [selective_scan, selective_scan_ref])
def test_cu_seqlens_restarts_the_state_at_each_packed_sequence(fn):
    x = _inputs(False, "var", "var", seed=2)
    one = {k: (v[:1] if k in ("u", "delta", "B", "C", "z") else v) for k, v in x.items()}
    cu = torch.tensor([0, 10, 11, 30, l])
    packed = fn(**one, cu_seqlens=cu)
    for lo, hi in zip(cu[:-1].tolist(), cu[1:].tolist()):
        part = {k: (v[..., lo:hi] if k in ("u", "delta", "B", "C", "z") else v) for k, v in one.items()}
        torch.testing.assert_close(packed[..., lo:hi], selective_scan_ref(**part), rtol=1e-10, atol=1e-10)


def test_autograd_keeps_no_per_step_state_tensor():
    """What autograd saves grows like the inputs plus one (b, d, n) state per chunk, never (b, d, l, n)."""
    B_, D_, L_, N_ = 2, 16, 512, 16
    u = torch.randn(B_, D_, L_, requires_grad=True)
    delta = torch.rand(B_, D_, L_, requires_grad=True)
    A = (-torch.rand(D_, N_)).requires_grad_()
    Bm, Cm = torch.randn(B_, N_, L_, requires_grad=True), torch.randn(B_, N_, L_, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        selective_scan(u, delta, A, Bm, Cm, chunk=64).sum().backward()
    full = B_ * D_ * L_ * N_ * 4  # one (b, d, l, n) float32 tensor, as the loop's graph holds several of
    assert sum(saved) < full / 2, (sum(saved), full)
    assert all(torch.isfinite(t.grad).all() for t in (u, delta, A, Bm, Cm))


def test_dtypes_follow_mamba_ssm():
    x = _inputs(False, "var", "var")
    out = selective_scan(**{k: v.float() for k, v in x.items()})
    assert out.dtype == torch.float32
    out = selective_scan(**{k: (v.bfloat16() if k in ("u", "z") else v.float()) for k, v in x.items()})
    assert out.dtype == torch.bfloat16  # computed in float32, returned in u's dtype
    _, last = selective_scan(**_inputs(True, "var", "var"), return_last_state=True)
    assert last.dtype == C128


def test_bad_shapes_are_clear_errors():
    x = _inputs(False, "var", "var")
    with pytest.raises(ValueError, match=r"u and delta must both be \(b, d, l\)"):
        selective_scan(**{**x, "delta": x["delta"][..., :-1]})
    with pytest.raises(ValueError, match=r"A must be \(d, n\) with d=4"):
        selective_scan(**{**x, "A": x["A"][:3]})
    with pytest.raises(ValueError, match=r"a per-step B must be \(b, n, l\)"):
        selective_scan(**{**x, "B": x["B"][..., :-1]})
    with pytest.raises(ValueError, match=r"a per-step C must be \(b, n, 2l\)"):
        selective_scan(**{**_inputs(True, "var", "var"), "C": x["C"]})  # complex A needs the interleaved form
    with pytest.raises(ValueError, match=r"g dividing d"):
        selective_scan(**{**x, "B": torch.randn(b, 3, n, l, dtype=F64)})
    with pytest.raises(ValueError, match=r"D must be \(4,\)"):
        selective_scan(**{**x, "D": torch.randn(5, dtype=F64)})
    with pytest.raises(ValueError, match=r"at least one step"):
        selective_scan(**{**x, "u": x["u"][..., :0], "delta": x["delta"][..., :0]})
    with pytest.raises(ValueError, match="cu_seqlens must be"):
        selective_scan(**x, cu_seqlens=torch.tensor([0, 50, l]))


def test_an_initial_state_continues_a_sequence_split_in_two():
    gen = torch.Generator().manual_seed(3)
    u, delta = torch.randn(b, d, l, generator=gen, dtype=F64), torch.rand(b, d, l, generator=gen, dtype=F64)
    A = -torch.rand(d, n, generator=gen, dtype=F64)
    B, C = torch.randn(b, n, l, generator=gen, dtype=F64), torch.randn(b, n, l, generator=gen, dtype=F64)
    whole, last = selective_scan(u, delta, A, B, C, return_last_state=True, chunk=8)
    cut = 15
    first, mid = selective_scan(u[..., :cut], delta[..., :cut], A, B[..., :cut], C[..., :cut], return_last_state=True, chunk=8)
    for fn in (selective_scan, selective_scan_ref):
        second, end = fn(u[..., cut:], delta[..., cut:], A, B[..., cut:], C[..., cut:], return_last_state=True, initial_state=mid)
        torch.testing.assert_close(torch.cat([first, second], -1), whole)
        torch.testing.assert_close(end, last)
    with pytest.raises(ValueError, match=r"initial_state must be \(b, d, n\)"):
        selective_scan(u, delta, A, B, C, initial_state=torch.zeros(b, d, n + 1))

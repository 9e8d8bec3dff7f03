"""Mamba-2's chunked SSD against the step loop (float64): outputs, final states, initial states, groups, lengths
that are not a multiple of the chunk, every gradient; and against the paper's closed form y = M x with
M[t, s] = C_t . B_s exp(A_(s+1) + ... + A_t)."""

import pytest
import torch

from statespaces.ops.ssd import segsum, ssd, ssd_ref

F64 = torch.float64


def _inputs(b=2, l=11, h=4, p=3, g=2, n=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(b, l, h, p, generator=gen, dtype=F64)
    A = -torch.rand(b, l, h, generator=gen, dtype=F64)  # dt * A < 0
    B = torch.randn(b, l, g, n, generator=gen, dtype=F64)
    C = torch.randn(b, l, g, n, generator=gen, dtype=F64)
    return X, A, B, C


@pytest.mark.parametrize("chunk", [1, 3, 4, 11, 16])
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_chunked_ssd_equals_the_loop(chunk, groups):
    X, A, B, C = _inputs(g=groups)
    h0 = torch.randn(2, 4, 3, 5, dtype=F64)
    Y, final = ssd(X, A, B, C, chunk, initial_states=h0, return_final_states=True)
    Y_ref, final_ref = ssd_ref(X, A, B, C, initial_states=h0, return_final_states=True)
    torch.testing.assert_close(Y, Y_ref)
    torch.testing.assert_close(final, final_ref)


def test_the_loop_is_the_papers_matrix_form():
    X, A, B, C = _inputs(b=1, l=6, h=4, g=2)  # head i reads group i // 2
    l = 6
    Y = torch.zeros_like(X)
    for t in range(l):
        for s in range(t + 1):
            for i in range(4):
                w = (C[0, t, i // 2] * B[0, s, i // 2]).sum() * torch.exp(A[0, s + 1 : t + 1, i].sum())
                Y[0, t, i] += w * X[0, s, i]
    torch.testing.assert_close(ssd_ref(X, A, B, C), Y)


def test_segsum():
    x = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    expected = torch.tensor([[0, -torch.inf, -torch.inf], [2, 0, -torch.inf], [5, 3, 0]], dtype=F64)
    torch.testing.assert_close(segsum(x), expected)


def test_gradients_match_the_loop():
    X, A, B, C = (t.requires_grad_() for t in _inputs(l=7))
    h0 = torch.randn(2, 4, 3, 5, dtype=F64, requires_grad=True)
    w = torch.randn(2, 7, 4, 3, dtype=F64)
    args = (X, A, B, C)
    g1 = torch.autograd.grad((ssd(*args, 3, initial_states=h0) * w).sum(), (*args, h0))
    g2 = torch.autograd.grad((ssd_ref(*args, initial_states=h0) * w).sum(), (*args, h0))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)
    small = [t.detach()[:1, :4, :2, :2].clone().requires_grad_() for t in (X,)] + [A.detach()[:1, :4, :2].clone().requires_grad_()]
    Bs, Cs = B.detach()[:1, :4, :1].clone().requires_grad_(), C.detach()[:1, :4, :1].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x, a, b, c: ssd(x, a, b, c, 3), (*small, Bs, Cs))


def test_ssd_errors():
    X, A, B, C = _inputs()
    with pytest.raises(ValueError, match=r"A must be \(b, l, h\)"):
        ssd(X, A[..., :2], B, C, 4)
    with pytest.raises(ValueError, match="B must be \\(b, l, g, n\\) with g dividing h=4"):
        ssd(X, A, B[:, :, :1].repeat(1, 1, 3, 1), C, 4)
    with pytest.raises(ValueError, match="chunk_size must be a positive int, got 0"):
        ssd(X, A, B, C, 0)

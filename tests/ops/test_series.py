import pytest
import torch

from statespaces.ops.series import series_inverse, series_inverse_ref, series_mul, series_mul_ref


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_series_mul_matches_direct_sum(dtype):
    a = torch.randn(2, 3, 4, 9, dtype=dtype)
    b = torch.randn(2, 4, 1, 9, dtype=dtype)
    torch.testing.assert_close(series_mul(a, b), series_mul_ref(a, b))
    torch.testing.assert_close(series_mul(a, b, 5), series_mul_ref(a, b, 5))


@pytest.mark.parametrize("R", [1, 2, 3])
@pytest.mark.parametrize("L", [1, 2, 5, 16, 37, 64, 150])  # beyond 64: Newton after the direct block
def test_series_inverse_matches_forward_substitution(R, L):
    # a stable series (its inverse decays), as for the feedback loop of a stable DPLR system; for growing
    # inverses FFT products lose accuracy relative to the largest coefficient
    a = torch.randn(2, R, R, L, dtype=torch.float64) * 0.3 * 0.6 ** torch.arange(L)
    a[..., 0] += torch.eye(R, dtype=torch.float64)
    X = series_inverse(a)
    torch.testing.assert_close(X, series_inverse_ref(a))
    eye = torch.zeros_like(a)
    eye[..., 0] = torch.eye(R, dtype=torch.float64)
    torch.testing.assert_close(series_mul(a, X), eye, atol=1e-10, rtol=0)


def test_series_inverse_gradients():
    a = torch.randn(1, 2, 2, 6, dtype=torch.float64) * 0.3
    a[..., 0] += torch.eye(2, dtype=torch.float64)
    assert torch.autograd.gradcheck(series_inverse, (a.requires_grad_(),))


# shapes as in a DPLR kernel: rank-1 feedback (1x1 matrices, the broadcast product), rank 2, a wide
# product (the einsum path), batches broadcast against each other, and an L beyond the inputs' lengths
PRODUCT_CASES = [
    ((3, 1, 1, 7), (3, 1, 1, 7), None),
    ((2, 2, 2, 6), (2, 2, 1, 6), None),
    ((1, 5, 4, 4), (1, 4, 5, 5), None),
    ((3, 2, 1, 6), (4, 1, 1, 1, 6), None),
    ((2, 1, 1, 4), (2, 1, 1, 3), 9),
    ((2, 1, 1, 8), (2, 1, 1, 8), 3),
]


@pytest.mark.parametrize("a_shape,b_shape,L", PRODUCT_CASES)
@pytest.mark.parametrize("dtypes", [(torch.float64,) * 2, (torch.complex128,) * 2, (torch.float64, torch.complex128)])
def test_series_mul_values_and_gradients_match_the_direct_sum(a_shape, b_shape, L, dtypes):
    a = torch.randn(a_shape, dtype=dtypes[0], requires_grad=True)
    b = torch.randn(b_shape, dtype=dtypes[1], requires_grad=True)
    c, c_ref = series_mul(a, b, L), series_mul_ref(a, b, L)
    torch.testing.assert_close(c, c_ref[..., : c.shape[-1]])
    assert not c_ref[..., c.shape[-1] :].abs().gt(1e-12).any()  # terms past La + Lb - 1 are zero
    g = torch.randn_like(c)
    ours = torch.autograd.grad(c, (a, b), g)
    theirs = torch.autograd.grad(c_ref[..., : c.shape[-1]], (a, b), g)
    for x, y in zip(ours, theirs):
        torch.testing.assert_close(x, y)
    assert torch.autograd.gradcheck(lambda a, b: series_mul(a, b, L), (a, b))


@pytest.mark.parametrize("R", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_series_inverse_gradients_match_forward_substitution(R, dtype):
    L = 13
    a = torch.randn(3, R, R, L, dtype=dtype) * 0.3 * 0.7 ** torch.arange(L)
    a[..., 0] += torch.eye(R, dtype=dtype)
    a.requires_grad_()
    g = torch.randn(3, R, R, L, dtype=dtype)
    (ours,) = torch.autograd.grad(series_inverse(a), a, g)
    (theirs,) = torch.autograd.grad(series_inverse_ref(a), a, g)
    torch.testing.assert_close(ours, theirs)
    assert torch.autograd.gradcheck(series_inverse, (a,))

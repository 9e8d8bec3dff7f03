"""LSSL: the Krylov kernel against C dA^k dB by an explicit loop of matrix products, the bilinear transform against
its definition, state forwarding against the loop, learn modes and their optimiser settings, gradients, errors."""

import pytest
import torch

from statespaces import LSSL, KrylovKernel, param_groups
from statespaces.kernels.krylov import krylov
from statespaces.ops.hippo import transition
from statespaces.testing import check_layer, gradcheck_parameters


def _system(kernel: KrylovKernel, rate=1.0):
    """dA = (I - dt/2 A)^-1 (I + dt/2 A), dB = (I - dt/2 A)^-1 dt B from the raw tensors (dt = exp(raw_dt))."""
    H, N = kernel.H, kernel.N
    dt = torch.exp(kernel.raw_dt.detach().double())[:, 0] * rate
    A = kernel.A_dense.detach().double().expand(H, N, N)
    B = kernel.B_dense.detach().double().expand(H, N)
    eye = torch.eye(N, dtype=torch.float64)
    inv = torch.linalg.inv(eye - dt[:, None, None] / 2 * A)
    return inv @ (eye + dt[:, None, None] / 2 * A), (inv @ (dt[:, None] * B)[..., None])[..., 0]


def _loop(kernel, u, x0, rate=1.0):
    dA, dB = _system(kernel, rate)
    C = kernel.C.detach().double()
    x, ys = x0, []
    for t in range(u.shape[-1]):
        x = torch.einsum("hnm,bhm->bhn", dA, x) + dB * u[..., t, None]
        ys.append(torch.einsum("chn,bhn->bch", C, x))
    return torch.stack(ys, -1), x


@pytest.mark.parametrize("init,learn", [("legs", 0), ("legt", 1), ("lagt", 2), ("fout", 1)])
def test_krylov_kernel_is_c_da_power_db(init, learn):
    torch.manual_seed(0)
    kernel = KrylovKernel(3, d_state=6, channels=2, init=init, learn=learn).double()
    A, B = transition(init, 6)
    torch.testing.assert_close(kernel.A_dense.double().expand(3, 6, 6)[0], A)
    dA, dB = _system(kernel, rate=0.5)
    C = kernel.C.detach().double()
    expected = torch.stack([torch.einsum("chn,hn->ch", C, (torch.linalg.matrix_power(dA, l) @ dB[..., None])[..., 0]) for l in range(37)], -1)
    k, _ = kernel(37, rate=0.5)
    torch.testing.assert_close(k, expected)


def test_krylov_doubling_equals_the_loop():
    A = torch.randn(2, 4, 4, dtype=torch.float64) / 3
    b = torch.randn(2, 4, dtype=torch.float64)
    for L in (1, 2, 5, 16, 17):
        expected = torch.stack([(torch.linalg.matrix_power(A, l) @ b[..., None])[..., 0] for l in range(L)], -1)
        torch.testing.assert_close(krylov(L, A, b), expected)


def test_state_forwarding_and_lengths_match_the_loop():
    torch.manual_seed(1)
    kernel = KrylovKernel(3, d_state=5, channels=2, learn=2).double()
    u = torch.randn(2, 3, 9, dtype=torch.float64)
    x0 = torch.randn(2, 3, 5, dtype=torch.float64)
    ys, x_end = _loop(kernel, u, x0)
    k, k_state = kernel(9, state=x0)
    from statespaces.ops.fftconv import fft_conv

    torch.testing.assert_close(fft_conv(u, k) + k_state, ys)
    torch.testing.assert_close(kernel.forward_state(u, x0), x_end)
    lengths = torch.tensor([9, 4])
    short = kernel.forward_state(u * (torch.arange(9) < lengths[:, None, None]), x0, lengths=lengths)
    torch.testing.assert_close(short[1], _loop(kernel, u[1:, :, :4], x0[1:])[1][0])


def test_learn_modes_and_optimiser_settings():
    fixed = LSSL(4, d_state=4, learn=0).layer.kernel
    assert "A_dense" in dict(fixed.named_buffers()) and "A_dense" not in dict(fixed.named_parameters())
    shared = LSSL(4, d_state=4).layer.kernel
    assert shared.A_dense.shape == (4, 4) and isinstance(shared.A_dense, torch.nn.Parameter)
    per_feature = LSSL(4, d_state=4, learn=2).layer.kernel
    assert per_feature.A_dense.shape == (4, 4, 4) and per_feature.B_dense.shape == (4, 4)
    layer = LSSL(4, d_state=4)
    k = layer.layer.kernel
    settings = {id(p): (g["lr"], g["weight_decay"]) for g in param_groups(layer, lr=1e-2, weight_decay=0.1) for p in g["params"]}
    assert settings[id(k.A_dense)] == (1e-4, 0.0) and settings[id(k.raw_dt)] == (1e-3, 0.0) and settings[id(k.C)] == (1e-2, 0.1)


def test_gradients_match_finite_differences():
    torch.manual_seed(0)
    layer = LSSL(2, d_state=3, learn=2).double()
    u = torch.randn(1, 6, 2, dtype=torch.float64, requires_grad=True)
    gradcheck_parameters(layer, ("layer.kernel.A_dense", "layer.kernel.B_dense", "layer.kernel.raw_dt", "layer.kernel.C"), u)


@pytest.mark.parametrize("options", [dict(d_state=4, init="legt", learn=0), dict(d_state=4, init="lagt", learn=2, channels=2), dict(d_state=6, init="fout")], ids=str)
def test_lssl_conforms(options):
    check_layer(LSSL, options=options, model=False)


def test_lssl_errors():
    with pytest.raises(ValueError, match="unknown LSSL measure 'legz'"):
        LSSL(4, init="legz")
    with pytest.raises(ValueError, match="learn must be 0"):
        LSSL(4, learn=3)

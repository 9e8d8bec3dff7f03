"""S5 against a loop that discretises every step with its own dt (written from the paper's definitions), its
HiPPO-N initialisation, variable time steps (chunks, rate, step), memory of the variable-step path, gradients,
conformance and errors."""

import math

import pytest
import torch

from statespaces import S5
from statespaces.layers.s5 import hippo_n
from statespaces.testing import check_layer, gradcheck_parameters


def _loop(layer: S5, u: torch.Tensor, tau: torch.Tensor, rate: float = 1.0, x0=None):
    """y_t = 2 Re(C~ x_t) + D u_t (Re without conj_sym), x_t = Lambda_bar_t x_(t-1) + B_bar_t u_t with
    dt_t = step_rescale * rate * exp(log_step) * tau_t; the reverse scan too when bidirectional."""
    re = layer.Lambda_re.clamp(max=-1e-4) if layer.clip_eigs else layer.Lambda_re
    Lam = torch.complex(re, layer.Lambda_im)
    Bt = torch.complex(layer.B[..., 0], layer.B[..., 1])
    Ct = torch.complex(layer.C[..., 0], layer.C[..., 1])
    P = Lam.shape[0]
    Bsz, L, _ = u.shape

    def disc(dt):
        if layer.discretization == "zoh":
            lb = torch.exp(Lam * dt)
            return lb, ((lb - 1) / Lam)[..., None] * Bt
        inv = 1 / (1 - dt / 2 * Lam)
        return inv * (1 + dt / 2 * Lam), (inv * dt)[..., None] * Bt

    def run(order, x):
        xs = [None] * L
        for t in order:
            lb, bb = disc(layer.step_rescale * rate * torch.exp(layer.log_step) * tau[:, t, None])
            x = lb * x + torch.einsum("bph,bh->bp", bb, u[:, t].to(torch.complex128))
            xs[t] = x
        return torch.stack(xs, 1)

    zero = torch.zeros(Bsz, P, dtype=torch.complex128)
    x = run(range(L), zero if x0 is None else x0)
    states = torch.cat([x, run(range(L - 1, -1, -1), zero)], -1) if layer.bidirectional else x
    y = torch.einsum("hp,blp->blh", Ct, states).real
    return (2 * y if layer.conj_sym else y) + layer.D * u, x[:, -1]


CASES = [
    dict(),
    dict(conj_sym=False, C_init="lecun_normal"),
    dict(C_init="complex_normal", clip_eigs=True, discretization="bilinear"),
    dict(blocks=4, step_rescale=2.0),
    dict(bidirectional=True),
]


@pytest.mark.parametrize("options", CASES, ids=str)
def test_parallel_scan_matches_a_loop_with_per_step_dt(options):
    torch.manual_seed(0)
    layer = S5(3, ssm_size=8, blocks=options.pop("blocks", 2), activation=None, dt_min=0.05, dt_max=0.5, **options).double()
    with torch.no_grad():
        layer.Lambda_re[0] = 0.01  # a growing mode: clip_eigs must act on it
    u = torch.randn(2, 11, 3, dtype=torch.float64)
    tau = torch.rand(2, 11, dtype=torch.float64) * 2 + 0.1
    y, _ = layer(u, timesteps=tau)
    expected, _ = _loop(layer, u, tau)
    torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-10)
    y_fixed, _ = layer(u, rate=1.5)
    torch.testing.assert_close(y_fixed, _loop(layer, u, torch.full_like(tau, 1.5))[0], rtol=1e-10, atol=1e-10)


def test_unit_timesteps_equal_the_fixed_path_and_rate_equals_constant_timesteps():
    layer = S5(4, ssm_size=8, blocks=2).double()
    u = torch.randn(2, 9, 4, dtype=torch.float64)
    torch.testing.assert_close(layer(u, timesteps=torch.ones(2, 9, dtype=torch.float64))[0], layer(u)[0])
    torch.testing.assert_close(layer(u, timesteps=torch.full((2, 9), 0.3, dtype=torch.float64))[0], layer(u, rate=0.3)[0])


def test_variable_steps_forward_state_across_chunks_and_steps():
    torch.manual_seed(1)
    layer = S5(4, ssm_size=8, blocks=2).double()
    u = torch.randn(2, 12, 4, dtype=torch.float64)
    tau = torch.rand(2, 12, dtype=torch.float64) + 0.5
    whole, s_whole = layer(u, layer.default_state(2), timesteps=tau)
    s, parts = layer.default_state(2), []
    for a, b in ((0, 5), (5, 6), (6, 12)):
        y, s = layer(u[:, a:b], s, timesteps=tau[:, a:b])
        parts.append(y)
    torch.testing.assert_close(torch.cat(parts, 1), whole)
    torch.testing.assert_close(s, s_whole)
    _, x_last = _loop(layer, u, tau)
    torch.testing.assert_close(s_whole, x_last)
    layer.setup_step()
    s, ys = layer.default_state(2), []
    for t in range(12):
        y, s = layer.step(u[:, t], s, timestep=tau[:, t])
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), whole)


def test_hippo_n_is_the_normal_part_of_legs_and_tiles_over_blocks():
    n = 8
    Lam, V = hippo_n(n)
    q = torch.sqrt(1 + 2 * torch.arange(n, dtype=torch.float64))
    A = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for k in range(n):
            A[i, k] = -q[i] * q[k] if i > k else (-(i + 1) if i == k else 0.0)
    p = torch.sqrt(torch.arange(n, dtype=torch.float64) + 0.5)
    S = A + torch.outer(p, p)
    torch.testing.assert_close(V @ torch.diag(Lam) @ V.conj().T, S.to(torch.complex128))
    assert torch.allclose(Lam.real, torch.full((n,), -0.5, dtype=torch.float64))
    layer = S5(2, ssm_size=16, blocks=2)  # blocks of 8, halved by conj_sym: 2 x 4 states
    assert layer.P == 8
    torch.testing.assert_close(layer.Lambda_im.double(), Lam.imag[:4].repeat(2), rtol=1e-6, atol=1e-6)


def test_the_variable_step_path_saves_only_o_of_b_l_p_per_tensor():
    layer = S5(32, ssm_size=64, blocks=4)
    B, L, P, H = 2, 256, layer.P, 32
    u = torch.randn(B, L, H, requires_grad=True)
    tau = torch.rand(B, L) + 0.5
    biggest = []

    def pack(t):
        biggest.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y, _ = layer(u, timesteps=tau)
    y.sum().backward()
    assert max(biggest) <= B * L * max(P, H), (max(biggest), B * L * max(P, H))


def test_gradients_match_finite_differences():
    torch.manual_seed(0)
    layer = S5(2, ssm_size=4, blocks=1, activation="half_glu2").double()
    u = torch.randn(1, 5, 2, dtype=torch.float64, requires_grad=True)
    tau = (torch.rand(1, 5, dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, t: layer(x, timesteps=t)[0], (u, tau))
    gradcheck_parameters(layer, ("Lambda_re", "Lambda_im", "B", "C", "log_step"), u)


@pytest.mark.parametrize(
    "options",
    [dict(), dict(activation="full_glu", conj_sym=False), dict(activation="gelu", discretization="bilinear", clip_eigs=True), dict(bidirectional=True, C_init="lecun_normal")],
    ids=str,
)
def test_s5_conforms(options):
    check_layer(S5, options={"ssm_size": 8, "blocks": 2, **options}, model=not options.get("bidirectional"))


def test_s5_errors():
    layer = S5(4, ssm_size=8, blocks=2)
    x = torch.randn(2, 5, 4)
    with pytest.raises(ValueError, match=r"timesteps must be a \(B, L\) = \(2, 5\) tensor"):
        layer(x, timesteps=torch.ones(2, 4))
    with pytest.raises(ValueError, match="timesteps must be positive and finite"):
        layer(x, timesteps=-torch.ones(2, 5))
    bad = torch.ones(2, 5)
    bad[1, 4] = float("nan")
    layer(x, timesteps=bad, lengths=torch.tensor([5, 4]))  # a NaN step in the padding is never used
    with pytest.raises(ValueError, match="timesteps must be positive and finite"):
        layer(x, timesteps=bad)
    with pytest.raises(TypeError, match=r"unexpected keyword\(s\) \['timestep'\]; it accepts state, rate, lengths, timesteps"):
        layer(x, timestep=torch.ones(2, 5))
    with pytest.raises(ValueError, match="blocks=3 must divide ssm_size=8"):
        S5(4, ssm_size=8, blocks=3)
    with pytest.raises(ValueError, match="unknown C_init 'lecun'"):
        S5(4, ssm_size=8, blocks=2, C_init="lecun")
    assert math.isclose(S5(4, ssm_size=8, blocks=2, dt_min=0.01, dt_max=0.01).log_step.exp().mean().item(), 0.01, rel_tol=1e-5)

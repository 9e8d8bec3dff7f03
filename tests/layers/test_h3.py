"""H3 against its equations written out as a loop over time (float64), its shift kernel against an explicit FIR
and the official FFT formula, gradients against finite differences, errors, and the paper's hybrid LM."""

import pytest
import torch

from statespaces import H3, ShiftKernel
from statespaces.models import LanguageModel
from statespaces.testing import check_layer


def test_shift_kernel_is_the_official_fft_formula_and_an_explicit_fir():
    kernel = ShiftKernel(3, d_state=4, channels=2).double()
    C = kernel.C.detach()
    B = torch.zeros(3, 4, dtype=torch.float64)
    B[:, 0] = 1.0  # e_1
    n = 2 * 4
    official = torch.fft.irfft(torch.fft.rfft(B, n=n).conj() * torch.fft.rfft(C, n=n), n=n)[..., :4]
    k, _ = kernel(10)
    torch.testing.assert_close(k[..., :4], official)
    assert torch.equal(k[..., 4:], torch.zeros_like(k[..., 4:]))
    u = torch.randn(2, 3, 10, dtype=torch.float64)
    fir = torch.stack([sum(C[:, :, l] * u[:, None, :, t - l] for l in range(4) if t - l >= 0) for t in range(10)], -1)
    from statespaces.ops.fftconv import fft_conv

    torch.testing.assert_close(fft_conv(u, k), fir)


def _h3_loop(layer: H3, u: torch.Tensor) -> torch.Tensor:
    """The H3 equations, one time step at a time, from the raw parameters (u: (B, L, H))."""
    B, L, H = u.shape
    d = layer.head_dim
    taps = layer.shift.kernel.C[0]  # (H N)
    D_k = layer.shift.D[0]
    kern = layer.ssm.kernel
    dt = torch.exp(kern.raw_dt)  # dt_transform 'exp'
    A = torch.complex(-torch.exp(kern.raw_A_real), kern.raw_A_imag)  # real_transform 'exp', imag 'none'
    Bm = torch.view_as_complex(kern.B)
    Cm = torch.view_as_complex(kern.C)[0]
    dA = torch.exp(dt * A)
    dB = (dA - 1) / A * Bm
    D = layer.ssm.D[0]
    keys = [layer.k_proj(u[:, t]) for t in range(L)]
    x = torch.zeros(B, H * d, A.shape[-1], dtype=torch.complex128)
    outs = []
    for t in range(L):
        q, v = layer.q_proj(u[:, t]), layer.v_proj(u[:, t])
        k = sum(taps[:, l] * keys[t - l] for l in range(taps.shape[-1]) if t - l >= 0) + D_k * keys[t]
        kv = torch.stack([k[:, h * d + i] * v[:, h * d + j] for h in range(H // d) for i in range(d) for j in range(d)], -1)
        x = dA * x + dB * kv[..., None]
        y = 2 * (Cm * x).sum(-1).real + D * kv
        out = torch.stack([sum(q[:, h * d + i] * y[:, (h * d + i) * d + j] for i in range(d)) for h in range(H // d) for j in range(d)], -1)
        outs.append(layer.output_linear(out))
    return torch.stack(outs, 1)


@pytest.mark.parametrize("head_dim", [1, 2])
def test_h3_matches_a_loop_over_time_of_its_equations(head_dim):
    torch.manual_seed(0)
    layer = H3(4, d_state=4, head_dim=head_dim).double()
    u = torch.randn(2, 9, 4, dtype=torch.float64)
    y, _ = layer(u)
    torch.testing.assert_close(y, _h3_loop(layer, u), rtol=1e-9, atol=1e-10)


def test_h3_gradients_match_finite_differences():
    torch.manual_seed(0)
    layer = H3(2, d_state=2, head_dim=2).double()
    u = torch.randn(1, 5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: layer(x)[0], (u,))
    params = list(layer.parameters())
    # gradients with respect to every parameter (dt, A, B, C of the diagonal SSM, the taps, the projections)
    out = layer(u.detach())[0]
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    grads = torch.autograd.grad((out * w).sum(), params)
    eps = 1e-6
    for p, g in zip(params, grads):
        for idx in [0, p.numel() - 1]:
            flat = p.detach().clone().view(-1)
            plus, minus = flat.clone(), flat.clone()
            plus[idx] += eps
            minus[idx] -= eps
            with torch.no_grad():
                saved = p.data.clone()
                p.data = plus.view_as(p)
                f_plus = (layer(u.detach())[0] * w).sum()
                p.data = minus.view_as(p)
                f_minus = (layer(u.detach())[0] * w).sum()
                p.data = saved
            assert abs((f_plus - f_minus).item() / (2 * eps) - g.reshape(-1)[idx].item()) < 1e-5


def test_h3_with_heads_conforms():
    check_layer(H3, options={"d_state": 4, "head_dim": 4, "init": "diag-inv"}, model=False)


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(head_dim=3), "head_dim must be a positive divisor of d_model=8, got 3"),
        (dict(d_state=3), "d_state must be an even int >= 2"),
        (dict(kernel_options={"disc": "zho"}), "unknown disc 'zho'"),
    ],
)
def test_h3_errors(options, message):
    with pytest.raises(ValueError, match=message):
        H3(8, **options)
    with pytest.raises(ValueError, match="l_max must be None or 4, got 8"):
        ShiftKernel(2, d_state=4, l_max=8)


def test_the_paper_hybrid_lm_h3_with_attention_generates_what_it_predicts():
    """The H3 paper's LM: H3 blocks with attention at some layers (here block 1 of 3), from a config."""
    torch.manual_seed(0)
    lm = LanguageModel(d_input=11, d_output=11, tokens=True, pool="none", d_model=8, n_layers=3, layer="h3", layer_options={"d_state": 4}, attn_layer_idx=[1], attn_options={"n_heads": 2}, prenorm=True, ffn=4).double()
    kinds = [type(b.layer).__name__ for b in lm.blocks]
    assert kinds == ["H3", "MultiHeadAttention", "H3"]
    prompt = torch.randint(0, 11, (2, 4))
    out = lm.generate(prompt, n=6, temperature=0)
    lm.eval()
    with torch.no_grad():
        for t in range(4, 10):
            assert torch.equal(lm(out[:, :t])[0][:, -1].argmax(-1), out[:, t])

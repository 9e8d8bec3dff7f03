"""SGConv: its kernel against a hand-written construction (explicit interpolation loops), the official mode
spellings, conformance for its option sets, gradients, errors, and the deterministic kernel norm."""

import math

import pytest
import torch

from statespaces import SGConv, SGConvKernel
from statespaces.testing import check_layer


def _linear_up(w: torch.Tensor, f: int) -> torch.Tensor:
    """Linear interpolation by an integer factor, half-pixel centres (PyTorch's align_corners=False): output j
    samples the input at x = (j + 0.5) / f - 0.5, clamped to [0, n - 1]."""
    n = w.shape[-1]
    out = []
    for j in range(n * f):
        x = min(max((j + 0.5) / f - 0.5, 0.0), n - 1)
        lo = math.floor(x)
        hi = min(lo + 1, n - 1)
        out.append(w[..., lo] * (1 - (x - lo)) + w[..., hi] * (x - lo))
    return torch.stack(out, -1)


def _nearest_up(w: torch.Tensor, f: int) -> torch.Tensor:
    return torch.stack([w[..., j // f] for j in range(w.shape[-1] * f)], -1)


def _reference(kernel: SGConvKernel) -> torch.Tensor:
    """The kernel by the paper's construction, piece by piece, then normalised per (channel, feature)."""
    S, up = kernel.n_scales, (_linear_up if kernel.interpolate == "linear" else _nearest_up)
    H = kernel.H
    multiplier = kernel.multiplier.view(H, 1)
    parts = []
    for i in range(S):
        w = getattr(kernel, f"piece_{i}").detach()
        stretch = (i if kernel.mode == "sum" else max(0, i - 1)) + kernel.init_scale
        k = up(w, 2**stretch) * multiplier ** (S - 1 - i)
        parts.append(k)
    if kernel.mode == "cat":
        k = torch.cat(parts, -1)
    else:
        total = kernel.kernel_dim * 2 ** (S - 1 + kernel.init_scale)
        k = sum(torch.nn.functional.pad(p, (0, total - p.shape[-1])) for p in parts)
    if kernel.learnable_decay:
        t = torch.arange(k.shape[-1], dtype=k.dtype)
        k = k * (t + 1) ** (-kernel.decay.detach().view(H, 1))
    return k


CASES = [
    dict(),
    dict(combine="sum"),
    dict(interpolate="nearest", decay_min=1.5, decay_max=3.0),
    dict(init_scale=1, combine="sum"),
    dict(learnable_decay=True, decay_min=0.5, decay_max=1.5, init="cos"),
    dict(combine="cat", n_scales=2),
]


@pytest.mark.parametrize("options", CASES, ids=str)
def test_kernel_is_the_papers_construction_normalised_at_initialisation(options):
    torch.manual_seed(0)
    kernel = SGConvKernel(3, channels=2, l_max=40, kernel_dim=5, **options).double()
    expected = _reference(kernel)
    assert expected.shape[-1] == kernel.length >= min(40, kernel.length)
    torch.testing.assert_close(kernel.kernel_norm, expected.norm(dim=-1, keepdim=True))
    k, _ = kernel(kernel.length + 7)
    torch.testing.assert_close(k[..., : kernel.length], expected / expected.norm(dim=-1, keepdim=True))
    assert torch.equal(k[..., kernel.length :], torch.zeros_like(k[..., kernel.length :]))
    torch.testing.assert_close(kernel(11)[0], k[..., :11])


def test_hand_written_interpolation_agrees_with_the_official_interpolate():
    w = torch.randn(2, 3, 5, dtype=torch.float64)
    for f in (2, 4):
        torch.testing.assert_close(_linear_up(w, f), torch.nn.functional.interpolate(w, scale_factor=f, mode="linear"))
        torch.testing.assert_close(_nearest_up(w, f), torch.nn.functional.interpolate(w, scale_factor=f, mode="nearest"))


def test_scales_and_decay_follow_the_official_formulas():
    kernel = SGConvKernel(4, l_max=100, kernel_dim=16)
    assert kernel.n_scales == 1 + math.ceil(math.log2(100 / 16)) == 4 and kernel.length == 128
    assert SGConvKernel(4, l_max=100, kernel_dim=16, init_scale=1).n_scales == 3
    assert SGConvKernel(4, l_max=8, kernel_dim=16).n_scales == 1  # a kernel shorter than one piece
    mult = SGConvKernel(4, l_max=32, kernel_dim=8, decay_min=1.0, decay_max=4.0).multiplier.flatten()
    torch.testing.assert_close(mult, torch.tensor([1.0, 2.0, 3.0, 4.0]))


def test_official_mode_spellings():
    k = SGConvKernel(2, l_max=16, kernel_dim=4, combine="sum_learnable_randn")
    assert (k.mode, k.learnable_decay, k.interpolate) == ("sum", True, "linear") and hasattr(k, "decay")
    k = SGConvKernel(2, l_max=16, kernel_dim=4, combine="cat_nearest_cos")
    assert (k.mode, k.interpolate) == ("cat", "nearest")


LAYER_CASES = [
    dict(l_max=32, kernel_dim=4, mode="sum", interpolate="nearest"),
    dict(l_max=32, kernel_dim=4, channels=2, bidirectional=True),
    dict(l_max=32, kernel_dim=4, learnable_decay=True, final_act="glu", dropout=0.1),
    dict(l_max=24, kernel_dim=8, init="cos", channels=2, activation="glu"),
]


@pytest.mark.parametrize("options", LAYER_CASES, ids=str)
def test_sgconv_layer_conforms(options):
    check_layer(SGConv, options=options)


def test_gradients_match_finite_differences():
    torch.manual_seed(0)
    layer = SGConv(2, l_max=8, kernel_dim=2, learnable_decay=True).double()
    x = torch.randn(1, 8, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u: layer(u)[0], (x,))
    kernel = layer.layer.kernel
    pieces = [kernel.piece_0, kernel.decay]
    assert torch.autograd.gradcheck(lambda p0, d: _with(kernel, p0, d), pieces)


def _with(kernel, piece, decay):
    saved = kernel.piece_0, kernel.decay
    del kernel.piece_0, kernel.decay
    kernel.piece_0, kernel.decay = piece, decay
    try:
        return kernel(kernel.length)[0]
    finally:
        del kernel.piece_0, kernel.decay
        kernel.piece_0, kernel.decay = saved


def test_a_loaded_model_does_not_depend_on_its_first_batch(tmp_path):
    torch.manual_seed(0)
    layer = SGConv(4, l_max=16, kernel_dim=4)
    initial = layer.layer.kernel.kernel_norm.clone()
    with torch.no_grad():
        layer.layer.kernel.piece_1.mul_(3.0)  # "trained": the norm must stay the one taken at initialisation
    k, _ = layer.layer.kernel(16)
    torch.testing.assert_close(k, layer.layer.kernel._unnormalised() / initial)
    torch.save(layer.state_dict(), tmp_path / "w.pt")
    fresh = SGConv(4, l_max=16, kernel_dim=4)
    fresh(torch.randn(2, 16, 4) * 100)  # a first batch before loading
    fresh.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    x = torch.randn(2, 16, 4)
    torch.testing.assert_close(fresh(x)[0], layer(x)[0])


@pytest.mark.parametrize(
    "options,error,message",
    [
        (dict(), ValueError, "SGConv needs l_max"),
        (dict(l_max=16, mode="cta"), ValueError, "unknown SGConv mode 'cta'"),
        (dict(l_max=16, interpolate="cubic"), ValueError, "unknown interpolate 'cubic'"),
        (dict(l_max=16, kernel_dim=0), ValueError, "kernel_dim must be an int >= 1, got 0"),
        (dict(l_max=16, kernel_dim=4, init_scale=5), ValueError, "n_scales must be a positive int"),
        (dict(l_max=16, decay_min=3.0, decay_max=2.0), ValueError, "need 0 < decay_min <= decay_max"),
    ],
)
def test_sgconv_errors(options, error, message):
    with pytest.raises(error, match=message):
        SGConv(4, **options)

"""Mega against a loop over time of its equations (EMA recurrence, gated single-head attention with the simple
relative bias, chunks), the chunk-sized cache, gradients, conformance and errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from statespaces import MegaBlock
from statespaces.testing import check_layer, gradcheck_parameters


def _rot(v: torch.Tensor, n: int) -> torch.Tensor:
    half = v.shape[0] // 2
    freq = torch.tensor([10000 ** (-i / half) for i in range(half)], dtype=v.dtype)
    sin, cos = torch.sin(n * freq), torch.cos(n * freq)
    return torch.cat([v[:half] * cos - v[half:] * sin, v[half:] * cos + v[:half] * sin])


def _loop(m: MegaBlock, x: torch.Tensor) -> torch.Tensor:
    B, L, H = x.shape
    ker = m.ema.kernel
    p = torch.sigmoid(ker.delta[0])
    q_ema = 1 - p * torch.sigmoid(ker.alpha[0])
    w_in, w_out = p * ker.beta[0], ker.gamma[0] / math.sqrt(ker.N)
    omega = m.ema.D[0]
    h_ema = torch.zeros(B, H, ker.N, dtype=x.dtype)
    keys, values, outs = [], [], []
    for t in range(L):
        h_ema = w_in * x[:, t, :, None] + q_ema * h_ema
        mx = F.silu((w_out * h_ema).sum(-1) + omega * x[:, t])
        base = mx @ m.mx_proj.weight.T + m.mx_proj.bias
        u = torch.sigmoid(base[:, :H])
        zr = F.silu(base[:, H : H + m.zdim + m.hdim])
        hx = base[:, H + m.zdim + m.hdim :]
        z, r = zr[:, : m.zdim], zr[:, m.zdim :]
        q, k = z * m.gamma[0] + m.beta[0], z * m.gamma[1] + m.beta[1]
        v = F.silu(x[:, t] @ m.v_proj.weight.T + m.v_proj.bias)
        keys.append(k)
        values.append(v)
        first = 0 if m.chunk_size is None else (t // m.chunk_size) * m.chunk_size
        js = list(range(first, t + 1))
        if m.rel_pos == "simple":
            bias = torch.stack([m.rel_pos_bias[m.max_positions - 1 + j - t] for j in js])
        else:  # the official rotary bias: rot(alpha, t) . rot(beta, j) with RoPE sinusoids on the halves
            bias = torch.stack([(_rot(m.rot_alpha, t) * _rot(m.rot_beta, j)).sum() for j in js])
        qk = torch.stack([(q * keys[j]).sum(-1) for j in js], -1)
        if m.attention == "softmax":
            weights = torch.softmax(qk / math.sqrt(m.zdim) + bias, -1)
        elif m.attention == "relu2":
            weights = torch.relu(qk / m.chunk_size + bias) ** 2
        else:  # the official laplace: mu = 0.707107, sigma = 0.282095
            weights = 0.5 * (1 + torch.erf((qk / m.chunk_size + bias - 0.707107) / (0.282095 * math.sqrt(2))))
        att = sum(weights[:, i, None] * values[j] for i, j in enumerate(js))
        h = F.silu(hx + (att * r) @ m.h_proj.weight.T + m.h_proj.bias)
        outs.append(u * (h - x[:, t]))
    return torch.stack(outs, 1)


@pytest.mark.parametrize("chunk_size,attention,rel", [(None, "softmax", "simple"), (4, "softmax", "simple"), (4, "laplace", "simple"), (3, "relu2", "simple"), (None, "softmax", "rotary")])
def test_mega_matches_a_loop_of_its_equations(chunk_size, attention, rel):
    torch.manual_seed(0)
    m = MegaBlock(4, zdim=4, hdim=5, ndim=2, chunk_size=chunk_size, max_positions=16, attention=attention, rel_pos_bias=rel).double()
    with torch.no_grad():
        for p in (m.rot_alpha, m.rot_beta) if rel == "rotary" else (m.rel_pos_bias,):
            p.normal_(0, 0.7)  # make the bias and the q-k products matter (tiny at initialisation)
        m.gamma.normal_(0, 1.0)
        m.beta.normal_(0, 0.5)
    x = torch.randn(2, 11, 4, dtype=torch.float64)
    torch.testing.assert_close(m(x)[0], _loop(m, x), rtol=1e-6, atol=1e-8)  # the official laplace constants have 6 digits


def test_chunked_cache_keeps_only_the_current_chunk():
    m = MegaBlock(4, zdim=3, hdim=5, chunk_size=5).double().eval()
    m.setup_step()
    state = m.default_state(2)
    for t in range(7):
        _, state = m.step(torch.randn(2, 4, dtype=torch.float64), state)
    assert state.k.shape[1] == 2 and state.key_pos.tolist() == [[5, 6], [5, 6]] and state.count.tolist() == [7, 7]
    unchunked = MegaBlock(4, zdim=3, hdim=5).double()
    unchunked.setup_step()
    s = unchunked.default_state(1)
    for t in range(7):
        _, s = unchunked.step(torch.randn(1, 4, dtype=torch.float64), s)
    assert s.k.shape[1] == 7


def test_gradients_match_finite_differences():
    torch.manual_seed(0)
    m = MegaBlock(2, zdim=2, hdim=3, chunk_size=3, max_positions=8).double()
    x = torch.randn(1, 6, 2, dtype=torch.float64, requires_grad=True)
    gradcheck_parameters(m, ("gamma", "beta", "rel_pos_bias", "ema.kernel.delta"), x)


@pytest.mark.parametrize("options", [dict(zdim=4, hdim=6), dict(zdim=4, hdim=6, chunk_size=7, ndim=3, attention="laplace"), dict(zdim=2, hdim=8, chunk_size=1, attention="relu2"), dict(zdim=4, hdim=4, rel_pos_bias="rotary", chunk_size=6)], ids=str)
def test_mega_conforms(options):
    check_layer(MegaBlock, options=options, model=False)


def test_mega_errors():
    with pytest.raises(ValueError, match="chunk_size must be None or a positive int, got 0"):
        MegaBlock(4, chunk_size=0)
    with pytest.raises(ValueError, match="zdim must be a positive int"):
        MegaBlock(4, zdim=0)
    with pytest.raises(ValueError, match="unknown rel_pos_bias 'rotry'"):
        MegaBlock(4, rel_pos_bias="rotry")
    with pytest.raises(ValueError, match="zdim must be even, got 3"):
        MegaBlock(4, zdim=3, rel_pos_bias="rotary")
    with pytest.raises(ValueError, match="unknown attention 'softmx'"):
        MegaBlock(4, attention="softmx")
    with pytest.raises(ValueError, match="attention='laplace' scales by the attended length: set chunk_size"):
        MegaBlock(4, attention="laplace")

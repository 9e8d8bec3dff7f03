"""Baselines (GRU, LSTM, multi-head attention) under the layer contract, float64.

The three views agree (full forward, step loop, chunked forward with state forwarding), a padded row equals
the row run alone (outputs and next_state, also continuing from a cache with padding slots), and the layers
equal independent references: torch's own nn.GRU / nn.LSTM on the same weights, and a naive attention with
explicit softmax and explicit rotary angles written here.
"""

import math

import pytest
import torch

from statespaces import CapabilityError, UnknownNameError
from statespaces.layers.base import state_leaves
from statespaces.layers.baselines import GRU, LSTM, KVCache, LSTMState, MultiHeadAttention
from statespaces.testing import check_layer, run_steps

B, L, H = 3, 16, 8
DT = torch.float64

CAUSAL = [
    (GRU, {}),
    (GRU, dict(d_hidden=6)),
    (LSTM, {}),
    (LSTM, dict(d_hidden=5, bias=False)),
    (MultiHeadAttention, dict(n_heads=2)),
    (MultiHeadAttention, dict(n_heads=2, pos="none")),
    (MultiHeadAttention, dict(n_heads=4, rotary_base=50.0)),
]
BIDIRECTIONAL = [
    (GRU, dict(bidirectional=True)),
    (LSTM, dict(bidirectional=True, d_hidden=6)),
    (MultiHeadAttention, dict(n_heads=2, causal=False)),
]
ALL = CAUSAL + BIDIRECTIONAL


def _id(p):
    return p.__name__ if isinstance(p, type) else ",".join(f"{k}={v}" for k, v in p.items()) or "default"


def make(cls, **options):
    return cls(H, **options).to(DT).eval()


def row(state, b):
    """Row b of a state (a tensor or a NamedTuple), batch kept."""
    return type(state)(*(s[b : b + 1] for s in state)) if isinstance(state, tuple) else state[b : b + 1]


def assert_same_state(got, want, layer):
    """Equal as tensors (recurrent states), or, for a cache with padding slots, equal valid slots and equal
    outputs when continuing from it."""
    if isinstance(want, KVCache):
        for b in range(got.valid.shape[0]):
            for part in ("k", "v"):
                torch.testing.assert_close(getattr(got, part)[b][:, got.valid[b]], getattr(want, part)[b][:, want.valid[b]])
        z = torch.randn(got.valid.shape[0], 4, H, dtype=DT)
        torch.testing.assert_close(layer(z, state=got)[0], layer(z, state=want)[0])
        return
    assert type(got) is type(want)
    for g, w in zip(state_leaves(got), state_leaves(want)):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("cls,options", CAUSAL, ids=_id)
def test_forward_equals_steps_equals_chunks(cls, options):
    layer = make(cls, **options)
    x = torch.randn(B, L, H, dtype=DT)
    y, none = layer(x)
    assert none is None and y.shape == (B, L, H)
    y0, s_full = layer(x, state=layer.default_state(B))
    torch.testing.assert_close(y0, y)
    layer.setup_step()
    ys, s_steps = run_steps(layer, x, layer.default_state(B))
    torch.testing.assert_close(ys, y)
    state, outs, start = layer.default_state(B), [], 0
    for n in (7, 1, L - 8):
        yc, state = layer(x[:, start : start + n], state=state)
        outs.append(yc)
        start += n
    torch.testing.assert_close(torch.cat(outs, 1), y)
    for got in (s_steps, state):  # final states equal as tensors (no padding slots here)
        for g, w in zip(state_leaves(got), state_leaves(s_full)):
            torch.testing.assert_close(g, w)


def _padded(x, lengths):
    x = x.clone()
    for b, n in enumerate(lengths.tolist()):
        x[b, n:] = float("nan")
    return x


@pytest.mark.parametrize("cls,options", ALL, ids=_id)
def test_lengths_rows_equal_rows_alone(cls, options):
    layer = make(cls, **options)
    stateful = layer.capabilities.state
    x = torch.randn(B, L, H, dtype=DT)
    lengths = torch.tensor([L, 5, 1])
    y, s = layer(_padded(x, lengths), state=layer.default_state(B) if stateful else None, lengths=lengths)
    assert torch.isfinite(y).all()
    for b, n in enumerate(lengths.tolist()):
        alone, s_alone = layer(x[b : b + 1, :n], state=layer.default_state(1) if stateful else None)
        torch.testing.assert_close(y[b : b + 1, :n], alone)
        assert (y[b, n:] == 0).all()
        if stateful:
            assert all(torch.isfinite(t).all() for t in state_leaves(s) if t.is_floating_point())
            assert_same_state(row(s, b), s_alone, layer)


@pytest.mark.parametrize("cls,options", CAUSAL, ids=_id)
def test_lengths_chunks_continue_each_row_from_its_own_end(cls, options):
    """Two padded chunks (the second with an empty row) == each row's valid tokens run in one forward: the
    state is taken at each length, and attention's rotary positions continue at the row's valid count."""
    layer = make(cls, **options)
    L0, L1 = 9, 7
    x0, x1 = torch.randn(B, L0, H, dtype=DT), torch.randn(B, L1, H, dtype=DT)
    n0, n1 = torch.tensor([L0, 4, 2]), torch.tensor([3, L1, 0])
    _, s0 = layer(_padded(x0, n0), state=layer.default_state(B), lengths=n0)
    y1, s1 = layer(_padded(x1, n1), state=s0, lengths=n1)
    assert torch.isfinite(y1).all()
    for b in range(B):
        a, c = n0[b].item(), n1[b].item()
        whole, s_whole = layer(torch.cat([x0[b : b + 1, :a], x1[b : b + 1, :c]], 1), state=layer.default_state(1))
        torch.testing.assert_close(y1[b : b + 1, :c], whole[:, a:])
        assert_same_state(row(s1, b), s_whole, layer)
    # the empty row keeps its incoming state exactly
    assert_same_state(row(s1, 2), row(s0, 2), layer)


@pytest.mark.parametrize("cls,options", ALL, ids=_id)
def test_causality(cls, options):
    layer = make(cls, **options)
    x = torch.randn(B, L, H, dtype=DT)
    t0 = L // 2
    x2 = x.clone()
    x2[:, t0] += 1.0
    y, y2 = layer(x)[0], layer(x2)[0]
    assert (y2[:, t0:] - y[:, t0:]).abs().max() > 1e-3
    before = (y2[:, :t0] - y[:, :t0]).abs().max()
    if layer.capabilities.bidirectional:
        assert before > 1e-3
    else:
        assert before == 0


@pytest.mark.parametrize("cls,options", BIDIRECTIONAL, ids=_id)
def test_bidirectional_valid_outputs_do_not_depend_on_padding_length(cls, options):
    layer = make(cls, **options)
    lengths = torch.tensor([10, 6, 1])
    x = torch.randn(B, 10, H, dtype=DT)
    y_short = layer(x, lengths=lengths)[0]
    longer = torch.cat([x, torch.randn(B, 9, H, dtype=DT)], 1)
    y_long = layer(longer, lengths=lengths)[0]
    torch.testing.assert_close(y_long[:, :10], y_short)
    assert (y_long[:, 10:] == 0).all()
    with pytest.raises(CapabilityError):
        layer.setup_step()
    with pytest.raises(CapabilityError):
        layer(x, state=torch.zeros(B, H, dtype=DT))


# ---- independent references --------------------------------------------------------------------


@pytest.mark.parametrize("cls,options", [(GRU, {}), (GRU, dict(d_hidden=6)), (LSTM, {}), (LSTM, dict(d_hidden=5)), *BIDIRECTIONAL[:2]], ids=_id)
def test_rnn_equals_plain_torch_module(cls, options):
    layer = make(cls, **options)
    lstm = cls is LSTM
    bi = options.get("bidirectional", False)
    d_hidden = options.get("d_hidden", H)
    ref = (torch.nn.LSTM if lstm else torch.nn.GRU)(H, d_hidden, batch_first=True, bidirectional=bi).to(DT)
    ref.load_state_dict({k.removeprefix("rnn."): v for k, v in layer.state_dict().items() if k.startswith("rnn.")})

    def head(out):
        if isinstance(layer.output_linear, torch.nn.Identity):
            return out
        return out @ layer.output_linear.weight.T + layer.output_linear.bias

    x = torch.randn(B, L, H, dtype=DT)
    torch.testing.assert_close(layer(x)[0], head(ref(x)[0]))
    lengths = torch.tensor([L, 5, 1])
    y = layer(_padded(x, lengths), lengths=lengths)[0]
    for b, n in enumerate(lengths.tolist()):  # each row alone through torch's module: no packing involved
        torch.testing.assert_close(y[b : b + 1, :n], head(ref(x[b : b + 1, :n])[0]))
    if bi:
        return
    h0 = torch.randn(1, B, d_hidden, dtype=DT)
    hidden0 = (h0, torch.randn(1, B, d_hidden, dtype=DT)) if lstm else h0
    state0 = LSTMState(hidden0[0][0], hidden0[1][0]) if lstm else h0[0]
    y, s = layer(x, state=state0)
    out, hidden = ref(x, hidden0)
    torch.testing.assert_close(y, head(out))
    torch.testing.assert_close(s.h if lstm else s, hidden[0][0] if lstm else hidden[0])
    if lstm:
        torch.testing.assert_close(s.c, hidden[1][0])


def naive_attention(layer, x, causal, rotary, base=10000.0):
    """softmax(q k^T / sqrt(d)) v per head with explicit rotary angles; loops where the layer vectorises."""
    Bx, Lx, Hx = x.shape
    nH = layer.n_heads
    d = Hx // nH

    def proj(lin):
        return (x @ lin.weight.T + lin.bias).reshape(Bx, Lx, nH, d)  # (B L nH d)

    q, k, v = proj(layer.q_proj), proj(layer.k_proj), proj(layer.v_proj)
    if rotary:
        def rope(t):
            out = t.clone()
            for p in range(Lx):
                for i in range(d // 2):
                    theta = p * base ** (-2.0 * i / d)
                    a, b = t[:, p, :, i], t[:, p, :, i + d // 2]
                    out[:, p, :, i] = a * math.cos(theta) - b * math.sin(theta)
                    out[:, p, :, i + d // 2] = b * math.cos(theta) + a * math.sin(theta)
            return out

        q, k = rope(q), rope(k)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d)
    if causal:
        scores = scores.masked_fill(torch.ones(Lx, Lx, dtype=torch.bool).triu(1), float("-inf"))
    y = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(Bx, Lx, Hx)
    return y @ layer.out_proj.weight.T + layer.out_proj.bias


@pytest.mark.parametrize("options", [dict(n_heads=2), dict(n_heads=2, pos="none"), dict(n_heads=2, causal=False), dict(n_heads=4, rotary_base=50.0)], ids=_id)
def test_attention_equals_naive_reference(options):
    layer = make(MultiHeadAttention, **options)
    x = torch.randn(2, 12, H, dtype=DT)
    want = naive_attention(layer, x, options.get("causal", True), options.get("pos", "rotary") == "rotary", options.get("rotary_base", 10000.0))
    torch.testing.assert_close(layer(x)[0], want)
    if layer.capabilities.state:  # the cache path (explicit mask, offset positions) against the same reference
        y1, s = layer(x[:, :5], state=layer.default_state(2))
        y2, _ = layer(x[:, 5:], state=s)
        torch.testing.assert_close(torch.cat([y1, y2], 1), want)


def test_attention_cache_padding_does_not_shift_positions():
    """A cache with invalid (padding) slots continues at its valid count, as if the padding were never there."""
    layer = make(MultiHeadAttention, n_heads=2)
    x = torch.randn(1, 6, H, dtype=DT)
    y, _ = layer(x)
    # continue from a cache of 3 valid + 4 padded tokens
    prefix = torch.randn(1, 7, H, dtype=DT)
    _, s = layer(prefix, state=layer.default_state(1), lengths=torch.tensor([3]))
    assert s.valid.shape == (1, 7) and s.valid.sum() == 3
    y_pad, _ = layer(x, state=s)
    y_ref, _ = layer(torch.cat([prefix[:, :3], x], 1))
    torch.testing.assert_close(y_pad, y_ref[:, 3:])


def test_gradients_finite_with_nan_padding_and_state():
    for cls, options in ALL:
        layer = make(cls, **options).train()
        x = torch.randn(B, L, H, dtype=DT)
        lengths = torch.tensor([L, 5, 0])
        padded = _padded(x, lengths).requires_grad_()
        state = layer.default_state(B) if layer.capabilities.state else None
        if isinstance(state, KVCache):  # a cache with an empty row and padding slots
            _, state = layer(torch.randn(B, 4, H, dtype=DT), state=state, lengths=torch.tensor([4, 0, 2]))
        y, s = layer(padded, state=state, lengths=lengths)
        loss = y.square().sum() + sum(t.square().sum() for t in state_leaves(s) if t.is_floating_point()) if s is not None else y.square().sum()
        loss.backward()
        assert torch.isfinite(padded.grad).all(), (cls, options)
        for name, p in layer.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), (cls, options, name)


def test_attention_mask_never_hides_a_whole_row(monkeypatch):
    """A fully masked query row is NaN on some backends (CPU's math backend returns 0 instead, so the NaN
    test above cannot see it): check the masks handed to scaled_dot_product_attention directly."""
    sdpa, masks = torch.nn.functional.scaled_dot_product_attention, []

    def spy(q, k, v, attn_mask=None, **kw):
        masks.append(attn_mask)
        return sdpa(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    for causal in (True, False):
        layer = make(MultiHeadAttention, n_heads=2, causal=causal)
        lengths = torch.tensor([6, 2, 0])
        layer(torch.randn(B, 6, H, dtype=DT), lengths=lengths)
        if causal:
            _, s = layer(torch.randn(B, 6, H, dtype=DT), state=layer.default_state(B), lengths=lengths)
            layer(torch.randn(B, 3, H, dtype=DT), state=s, lengths=torch.tensor([0, 3, 0]))
    assert len(masks) == 4 and all(m is not None and m.any(-1).all() for m in masks)


def test_attention_dropout_only_in_training():
    layer = make(MultiHeadAttention, n_heads=2, dropout=0.5)
    x = torch.randn(2, 10, H, dtype=DT)
    torch.testing.assert_close(layer(x)[0], layer(x)[0])
    layer.train()
    assert not torch.allclose(layer(x)[0], layer(x)[0])


def test_states_and_shapes():
    gru, lstm, mha = make(GRU, d_hidden=6), make(LSTM, d_hidden=5), make(MultiHeadAttention, n_heads=2)
    assert gru.default_state(2).shape == (2, 6) and gru.default_state(2).dtype == DT
    s = lstm.default_state(2)
    assert isinstance(s, LSTMState) and s.h.shape == s.c.shape == (2, 5)
    c = mha.default_state(2)
    assert isinstance(c, KVCache) and c.k.shape == c.v.shape == (2, 2, 0, 4) and c.valid.shape == (2, 0) and c.valid.dtype == torch.bool
    _, c = mha(torch.randn(2, 3, H, dtype=DT), state=c, lengths=torch.tensor([3, 1]))
    assert c.k.shape == (2, 2, 3, 4) and c.valid.tolist() == [[True] * 3, [True, False, False]]
    assert isinstance(make(GRU).output_linear, torch.nn.Identity)  # d_hidden == d_model: the GRU output itself
    assert isinstance(make(GRU, bidirectional=True, d_hidden=4).output_linear, torch.nn.Linear)  # 2 * 4 == 8, still mixed


def test_errors():
    with pytest.raises(ValueError, match="n_heads=3 must divide d_model=8"):
        MultiHeadAttention(8, n_heads=3)
    with pytest.raises(ValueError, match="even head_dim"):
        MultiHeadAttention(6, n_heads=2)
    MultiHeadAttention(6, n_heads=2, pos="none")  # odd head_dim is fine without rotary positions
    with pytest.raises(UnknownNameError, match=r"'rotory' \(did you mean 'rotary'\?\)"):
        MultiHeadAttention(8, pos="rotory")
    with pytest.raises(ValueError, match="n_heads must be a positive int"):
        MultiHeadAttention(8, n_heads=0)
    with pytest.raises(ValueError, match="d_hidden must be a positive int"):
        GRU(8, d_hidden=0)
    with pytest.raises(CapabilityError):
        GRU(8)(torch.randn(2, 5, 8), rate=2.0)


@pytest.mark.parametrize("cls,options", ALL, ids=_id)
def test_public_conformance_checker(cls, options):
    report = check_layer(cls, H, options=options, length=12)
    assert "contract" in report.passed and "lengths" in report.passed and "model" in report.passed

"""Synthetic sequence tasks: memory, recall and reasoning probes for sequence models.

======================  =========  =========================  ==============================================
name                    x          y                          the model must
======================  =========  =========================  ==============================================
``copying``             tokens     ``class_per_step``         reproduce tokens seen ``delay`` steps earlier
``selective_copying``   tokens     ``class_per_step``         reproduce tokens scattered among blanks, in order
``adding``              float (2)  ``regression`` (1)         add the two values flagged by a marker channel
``delay``               float (1)  ``regression_per_step``    output the input ``delay`` steps later
``delayed_xor``         float (1)  ``class_per_step`` (2)     XOR the inputs ``d1`` and ``d2`` steps ago
``induction_heads``     tokens     ``class`` [#]_             recall the token that followed the copy prefix
``associative_recall``  tokens     ``class`` [#]_             recall the value bound to the query key
======================  =========  =========================  ==============================================

Every builder takes keyword options (validated: a bad value is a ``ValueError`` naming the option), the
split sizes ``n_train, n_val, n_test`` and ``seed``.  Generation is deterministic given ``seed``; the
three splits come from three independent random streams derived from it, so they differ from one another.
Token tasks whose target is a token use class id == token id, so an output layer can share the input
embedding.  Items are built by whole-batch tensor operations.  ListOps lives in :mod:`.listops`.

.. [#] With ``supervision="lm"`` the two recall tasks become ``class_per_step``, as in HazyResearch/safari:
   the training split scores every next token (the answer is the token after the last input), validation
   and test only the answer.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from .base import IGNORE_INDEX, DataSpec, Splits, TensorSequenceDataset
from .registry import register

__all__ = [
    "copying",
    "selective_copying",
    "adding",
    "delay",
    "delayed_xor",
    "induction_heads",
    "associative_recall",
]

# (n, g) -> TensorSequenceDataset keyword arguments (x, y and optionally mask / lengths) for n items
Sampler = Callable[[int, torch.Generator], dict]


def _check_int(name: str, value, lo: int, hi: int | None = None, expected: str | None = None) -> None:
    """Raise ``ValueError`` unless ``value`` is an int in ``[lo, hi]``; ``expected`` overrides the wording."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= lo and (hi is None or value <= hi)
    if not ok:
        bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an integer {expected or bounds}, got {value!r}")


def _check_sizes(n_train, n_val, n_test) -> tuple[int, int, int]:
    for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        _check_int(name, n, 0)
    return n_train, n_val, n_test


def _split_seeds(seed: int) -> list[int]:
    """Three seeds (train, val, test) drawn from ``seed``: independent streams, unlike ``seed + i``, which
    would make the val split of seed 0 the train split of seed 1."""
    master = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2**62, (3,), generator=master).tolist()


def _build(sample: Sampler, sizes: tuple[int, int, int], seed: int, spec: DataSpec) -> Splits:
    splits = [
        TensorSequenceDataset(**sample(n, torch.Generator().manual_seed(s))) for n, s in zip(sizes, _split_seeds(seed))
    ]
    return Splits(*splits, spec)


SUPERVISION = ("query", "lm")


def _build_recall(sample: Sampler, sizes: tuple[int, int, int], seed: int, spec: DataSpec, supervision: str) -> Splits:
    """Build a recall task whose ``sample`` gives ``x`` (n, L) and the answer ``y`` (n,), the token after ``x``.

    ``supervision="query"`` keeps one class per sequence.  ``"lm"`` is the training signal of the safari
    synthetics (the H3 and Hyena papers): the training split is scored as a language model on every next token
    (``x[t + 1]``, then the answer), so each repeated key of associative recall is a recall example of its own;
    validation and test score the answer only (``IGNORE_INDEX`` elsewhere), so their accuracy is the same
    figure as with ``"query"``.  Both draw the same sequences from the same seed.
    """
    if supervision == "query":
        return _build(sample, sizes, seed, spec)
    splits = []
    for i, (n, s) in enumerate(zip(sizes, _split_seeds(seed))):
        item = sample(n, torch.Generator().manual_seed(s))
        x, answer = item["x"], item["y"]
        if i == 0:
            y = torch.cat([x[:, 1:], answer[:, None]], dim=1)
        else:
            y = torch.full_like(x, IGNORE_INDEX)
            y[:, -1] = answer
        splits.append(TensorSequenceDataset(x=x, y=y))
    return Splits(*splits, dataclasses.replace(spec, target="class_per_step"))


def _check_supervision(supervision) -> None:
    if supervision not in SUPERVISION:
        raise ValueError(f"supervision must be one of {SUPERVISION}, got {supervision!r}")


def _copy_vocab(n_tokens: int) -> list[str]:
    """Token names of the copying tasks: 0 blank, 1..n_tokens data, n_tokens + 1 the delimiter / marker."""
    return ["_"] + [str(i) for i in range(1, n_tokens + 1)] + ["=>"]


def _copy_spec(name: str, n_tokens: int, L: int, description: str, **special: int) -> DataSpec:
    """Spec of the copying tasks: tokens in, one class per step out (class id == token id)."""
    meta = {"itos": _copy_vocab(n_tokens), "blank": 0, **special, "description": description}
    return DataSpec(name=name, input="tokens", d_input=n_tokens + 2, target="class_per_step", d_output=n_tokens + 1, l_max=L, meta=meta)


@register("copying", description="copying memory: recall n_memorize tokens after a long blank delay")
def copying(
    *,
    n_tokens: int = 8,
    n_memorize: int = 10,
    delay: int = 100,
    n_train: int = 5000,
    n_val: int = 500,
    n_test: int = 500,
    seed: int = 0,
) -> Splits:
    """Copying memory task (Arjovsky et al. 2016; used by LSSL and S4).

    ``x`` long (L,), L = 2 n_memorize + delay + 1::

        d_1 .. d_M | 0 x delay | n_tokens+1 | 0 x M
        data         blanks      delimiter    output here

    with data ``d_i`` uniform in ``1..n_tokens``.  ``y`` long (L,): ``IGNORE_INDEX`` except the last
    ``n_memorize`` steps, which hold ``d_1 .. d_M``.  ``d_output = n_tokens + 1`` (classes 0..n_tokens,
    class id == token id; class 0, the blank, never occurs as a target).

    Args:
        n_tokens: number of distinct data tokens (>= 1).
        n_memorize: data tokens to remember, M (>= 1).
        delay: blank steps between the data and the delimiter (>= 0).
    """
    sizes = _check_sizes(n_train, n_val, n_test)
    _check_int("n_tokens", n_tokens, 1)
    _check_int("n_memorize", n_memorize, 1)
    _check_int("delay", delay, 0)
    L = 2 * n_memorize + delay + 1

    def sample(n: int, g: torch.Generator) -> dict:
        data = torch.randint(1, n_tokens + 1, (n, n_memorize), generator=g)  # (n M)
        x = torch.zeros(n, L, dtype=torch.long)
        x[:, :n_memorize] = data
        x[:, n_memorize + delay] = n_tokens + 1
        y = torch.full((n, L), IGNORE_INDEX, dtype=torch.long)
        y[:, L - n_memorize :] = data
        return {"x": x, "y": y}

    description = f"copy {n_memorize} tokens (of {n_tokens}) after {delay} blanks and a delimiter"
    spec = _copy_spec("copying", n_tokens, L, description, delimiter=n_tokens + 1)
    return _build(sample, sizes, seed, spec)


@register("selective_copying", description="selective copying (Mamba): recall tokens scattered among blanks")
def selective_copying(
    *,
    n_tokens: int = 16,
    n_memorize: int = 16,
    seq_len: int = 256,
    n_train: int = 5000,
    n_val: int = 500,
    n_test: int = 500,
    seed: int = 0,
) -> Splits:
    """Selective copying (Gu & Dao 2023, section 4.1.1): content-aware, not time-aware, memory.

    ``x`` long (L,), L = seq_len + n_memorize: ``n_memorize`` data tokens (uniform in ``1..n_tokens``) at
    random positions, in increasing order, among ``seq_len`` steps otherwise blank (0), then ``n_memorize``
    marker tokens (``n_tokens + 1``).  ``y`` long (L,): ``IGNORE_INDEX`` except at the markers, which hold the
    data tokens in the order they appeared.  ``d_output = n_tokens + 1``, class id == token id, as in
    :func:`copying`.

    Args:
        n_tokens: number of distinct data tokens (>= 1).
        n_memorize: data tokens to remember (1 <= n_memorize <= seq_len).
        seq_len: length of the region the data tokens are scattered in.
    """
    sizes = _check_sizes(n_train, n_val, n_test)
    _check_int("n_tokens", n_tokens, 1)
    _check_int("seq_len", seq_len, 1)
    _check_int("n_memorize", n_memorize, 1, seq_len, f"in [1, seq_len={seq_len}]")
    L = seq_len + n_memorize

    def sample(n: int, g: torch.Generator) -> dict:
        data = torch.randint(1, n_tokens + 1, (n, n_memorize), generator=g)  # (n M)
        # the first M of a random permutation, sorted: M distinct positions, uniformly over all subsets
        pos = torch.rand(n, seq_len, generator=g).argsort(dim=1)[:, :n_memorize].sort(dim=1).values  # (n M)
        x = torch.zeros(n, L, dtype=torch.long)
        x.scatter_(1, pos, data)
        x[:, seq_len:] = n_tokens + 1
        y = torch.full((n, L), IGNORE_INDEX, dtype=torch.long)
        y[:, seq_len:] = data
        return {"x": x, "y": y}

    description = f"copy {n_memorize} tokens (of {n_tokens}) scattered among {seq_len} steps, in order"
    spec = _copy_spec("selective_copying", n_tokens, L, description, marker=n_tokens + 1)
    return _build(sample, sizes, seed, spec)


@register("adding", description="adding problem: sum the two values flagged by a marker channel")
def adding(
    *,
    seq_len: int = 200,
    n_train: int = 5000,
    n_val: int = 500,
    n_test: int = 500,
    seed: int = 0,
) -> Splits:
    """Adding problem (Hochreiter & Schmidhuber 1997).

    ``x`` float (L, 2): channel 0 uniform in [0, 1), channel 1 a marker that is 1 at exactly two steps, one
    uniform in ``[0, L // 2)`` and one in ``[L // 2, L)``, and 0 elsewhere.  ``y`` float (1,): the sum of
    the two marked values.  Always predicting 1 scores MSE 1/6 (the variance of a sum of two U(0, 1)).

    Args:
        seq_len: L (>= 2).
    """
    sizes = _check_sizes(n_train, n_val, n_test)
    _check_int("seq_len", seq_len, 2)
    half = seq_len // 2

    def sample(n: int, g: torch.Generator) -> dict:
        values = torch.rand(n, seq_len, generator=g)
        first = torch.randint(0, half, (n,), generator=g)
        second = torch.randint(half, seq_len, (n,), generator=g)
        rows = torch.arange(n)
        marker = torch.zeros(n, seq_len)
        marker[rows, first] = 1.0
        marker[rows, second] = 1.0
        y = (values[rows, first] + values[rows, second]).unsqueeze(-1)  # (n 1)
        return {"x": torch.stack([values, marker], dim=-1), "y": y}

    spec = DataSpec(
        name="adding",
        input="continuous",
        d_input=2,
        target="regression",
        d_output=1,
        l_max=seq_len,
        meta={"baseline_mse": 1 / 6, "description": f"sum of the two marked values among {seq_len}"},
    )
    return _build(sample, sizes, seed, spec)


@register("delay", description="continuous delay line: output white noise delayed by a fixed number of steps")
def delay(
    *,
    seq_len: int = 256,
    delay: int = 64,
    n_train: int = 5000,
    n_val: int = 500,
    n_test: int = 500,
    seed: int = 0,
) -> Splits:
    """Delay line: ``y_t = x_{t - delay}`` for standard normal white noise ``x``.

    ``x`` float (L, 1), ``y`` float (L, 1) (0 for ``t < delay``), ``mask`` bool (L,): False for
    ``t < delay``, where the delayed input does not exist yet.  Predicting 0 scores MSE 1.

    Args:
        seq_len: L (>= 1).
        delay: shift in steps (0 <= delay < seq_len, so that some step has a target).
    """
    sizes = _check_sizes(n_train, n_val, n_test)
    _check_int("seq_len", seq_len, 1)
    _check_int("delay", delay, 0, seq_len - 1, f"in [0, seq_len - 1 = {seq_len - 1}]")

    def sample(n: int, g: torch.Generator) -> dict:
        x = torch.randn(n, seq_len, 1, generator=g)
        y = torch.zeros_like(x)
        y[:, delay:] = x[:, : seq_len - delay]
        mask = (torch.arange(seq_len) >= delay).repeat(n, 1)  # (n L)
        return {"x": x, "y": y, "mask": mask}

    spec = DataSpec(
        name="delay",
        input="continuous",
        d_input=1,
        target="regression_per_step",
        d_output=1,
        l_max=seq_len,
        meta={"baseline_mse": 1.0, "description": f"white noise delayed by {delay} steps"},
    )
    return _build(sample, sizes, seed, spec)


@register("delayed_xor", description="per-step XOR of the input bits d1 and d2 steps ago")
def delayed_xor(
    *,
    seq_len: int = 128,
    d1: int = 8,
    d2: int = 32,
    n_train: int = 5000,
    n_val: int = 500,
    n_test: int = 500,
    seed: int = 0,
) -> Splits:
    """Delayed XOR: ``y_t = x_{t - d1} XOR x_{t - d2}`` for random bits ``x``; needs memory of both lags and
    a nonlinear readout (no linear function of the two bits computes their XOR).

    ``x`` float (L, 1) in {0, 1}, ``y`` long (L,) in {0, 1}, ``IGNORE_INDEX`` for ``t < d2``.

    Args:
        seq_len: L.
        d1, d2: the two lags, ``0 <= d1 < d2 < seq_len``.
    """
    sizes = _check_sizes(n_train, n_val, n_test)
    _check_int("seq_len", seq_len, 2)
    _check_int("d2", d2, 1, seq_len - 1, f"in [1, seq_len - 1 = {seq_len - 1}]")
    _check_int("d1", d1, 0, d2 - 1, f"in [0, d2 - 1 = {d2 - 1}]")

    def sample(n: int, g: torch.Generator) -> dict:
        bits = torch.randint(0, 2, (n, seq_len), generator=g)
        y = torch.full((n, seq_len), IGNORE_INDEX, dtype=torch.long)
        y[:, d2:] = bits[:, d2 - d1 : seq_len - d1] ^ bits[:, : seq_len - d2]  # x_{t-d1} ^ x_{t-d2}, t >= d2
        return {"x": bits.float().unsqueeze(-1), "y": y}

    spec = DataSpec(
        name="delayed_xor",
        input="continuous",
        d_input=1,
        target="class_per_step",
        d_output=2,
        l_max=seq_len,
        meta={"description": f"XOR of the input bits {d1} and {d2} steps ago"},
    )
    return _build(sample, sizes, seed, spec)


@register("induction_heads", description="induction head (H3): recall the token that followed the copy prefix")
def induction_heads(
    *,
    vocab_size: int = 16,
    seq_len: int = 128,
    n_train: int = 5000,
    n_val: int = 500,
    n_test: int = 500,
    seed: int = 0,
    supervision: str = "query",
) -> Splits:
    """Induction head task (Fu et al. 2023, H3; as in HazyResearch/safari synthetics).

    ``x`` long (L,): tokens uniform in ``0 .. vocab_size - 2``, except the copy prefix ``vocab_size - 1``,
    which occurs exactly twice: at a random position ``p <= L - 3`` and at the last position.  ``y`` long
    scalar: ``x[p + 1]``, the token that followed the first prefix (read the model's output at the last
    step).  ``d_output = vocab_size``, class id == token id.

    Args:
        vocab_size: tokens including the prefix (>= 3, so that the answer is not a constant).
        seq_len: L (>= 3: prefix, value, final prefix).
        supervision: ``"query"`` (the answer only) or ``"lm"`` (train on every next token, as safari does:
            see :func:`_build_recall`).
    """
    sizes = _check_sizes(n_train, n_val, n_test)
    _check_supervision(supervision)
    _check_int("vocab_size", vocab_size, 3)
    _check_int("seq_len", seq_len, 3)
    prefix = vocab_size - 1

    def sample(n: int, g: torch.Generator) -> dict:
        x = torch.randint(0, prefix, (n, seq_len), generator=g)  # never the prefix itself
        p = torch.randint(0, seq_len - 2, (n,), generator=g)  # p + 1 < L - 1: the value precedes the query
        rows = torch.arange(n)
        x[rows, p] = prefix
        x[:, -1] = prefix
        return {"x": x, "y": x[rows, p + 1]}

    spec = DataSpec(
        name="induction_heads",
        input="tokens",
        d_input=vocab_size,
        target="class",
        d_output=vocab_size,
        l_max=seq_len,
        meta={
            "itos": [str(i) for i in range(prefix)] + ["=>"],
            "copy_prefix": prefix,
            "description": "output the token that followed the first copy prefix '=>'",
        },
    )
    return _build_recall(sample, sizes, seed, spec, supervision)


@register("associative_recall", description="associative recall (H3): recall the value bound to a query key")
def associative_recall(
    *,
    vocab_size: int = 32,
    n_pairs: int = 32,
    n_train: int = 5000,
    n_val: int = 500,
    n_test: int = 500,
    seed: int = 0,
    supervision: str = "query",
) -> Splits:
    """Associative recall (Fu et al. 2023, H3; as in HazyResearch/safari synthetics).

    Keys are the tokens ``0 .. K - 1`` (K = vocab_size // 2), values ``K .. vocab_size - 1``.  Each sequence
    draws its own random key -> value map, then ``n_pairs`` keys uniformly with replacement; a key that
    repeats carries the same value every time, so the answer is unambiguous.  ``x`` long (L,),
    L = 2 n_pairs + 1: ``k_1 v_1 k_2 v_2 .. k_P v_P q`` with the query ``q`` one of the keys shown.  ``y`` long
    scalar: the value bound to ``q``.  ``d_output = vocab_size``, class id == token id.

    Args:
        vocab_size: keys plus values (>= 4: at least two of each).
        n_pairs: key-value pairs before the query (>= 1).
        supervision: ``"query"`` (the answer only) or ``"lm"`` (train on every next token, as safari does:
            each repeated key is then a recall example too; see :func:`_build_recall`).
    """
    sizes = _check_sizes(n_train, n_val, n_test)
    _check_supervision(supervision)
    _check_int("vocab_size", vocab_size, 4)
    _check_int("n_pairs", n_pairs, 1)
    n_keys = vocab_size // 2
    L = 2 * n_pairs + 1

    def sample(n: int, g: torch.Generator) -> dict:
        table = torch.randint(n_keys, vocab_size, (n, n_keys), generator=g)  # (n K): key -> value
        keys = torch.randint(0, n_keys, (n, n_pairs), generator=g)  # (n P)
        rows = torch.arange(n)
        query = keys[rows, torch.randint(0, n_pairs, (n,), generator=g)]  # (n)
        x = torch.empty(n, L, dtype=torch.long)
        x[:, 0:-1:2] = keys
        x[:, 1:-1:2] = table.gather(1, keys)
        x[:, -1] = query
        return {"x": x, "y": table[rows, query]}

    spec = DataSpec(
        name="associative_recall",
        input="tokens",
        d_input=vocab_size,
        target="class",
        d_output=vocab_size,
        l_max=L,
        meta={
            "itos": [f"k{i}" for i in range(n_keys)] + [f"v{i}" for i in range(vocab_size - n_keys)],
            "n_keys": n_keys,
            "description": f"{n_pairs} key-value pairs then a query key: output its value",
        },
    )
    return _build_recall(sample, sizes, seed, spec, supervision)

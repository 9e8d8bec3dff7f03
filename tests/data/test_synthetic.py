import statistics

import pytest
import torch

from statespaces.data import IGNORE_INDEX, collate, dataset_options, get_dataset

SIZES = {"n_train": 24, "n_val": 8, "n_test": 8}
# small options per dataset: fast, yet long enough that two random sequences practically never coincide
OPTIONS = {
    "copying": {"n_tokens": 5, "n_memorize": 4, "delay": 7},
    "selective_copying": {"n_tokens": 6, "n_memorize": 5, "seq_len": 20},
    "adding": {"seq_len": 15},
    "delay": {"seq_len": 20, "delay": 6},
    "delayed_xor": {"seq_len": 40, "d1": 3, "d2": 9},
    "induction_heads": {"vocab_size": 6, "seq_len": 20},
    "associative_recall": {"vocab_size": 10, "n_pairs": 8},
    "listops": {"min_length": 20, "max_length": 60, "max_depth": 5, "max_args": 5},
}
NAMES = sorted(OPTIONS)


def build(name, seed=0, **options):
    return get_dataset(name, seed=seed, **{**SIZES, **OPTIONS[name], **options})


def tensors(ds):
    return [t for t in (ds.x, ds.y, ds.mask, ds.lengths) if t is not None]


def items(ds):
    return [ds[i] for i in range(len(ds))]


@pytest.mark.parametrize("name", NAMES)
def test_every_builder_takes_seed_and_split_sizes(name):
    assert {"seed", "n_train", "n_val", "n_test"} <= set(dataset_options(name))


@pytest.mark.parametrize("name", NAMES)
def test_registry_builds_splits_of_requested_sizes(name):
    splits = build(name)
    assert splits.spec.name == name
    assert [len(ds) for ds in splits] == [SIZES["n_train"], SIZES["n_val"], SIZES["n_test"]]


@pytest.mark.parametrize("name", NAMES)
def test_items_and_batches_have_documented_shapes_and_dtypes(name):
    splits = build(name)
    spec = splits.spec
    per_step = spec.target.endswith("per_step")
    for item in items(splits.train):
        x, y = item["x"], item["y"]
        L = spec.l_max
        if spec.input == "tokens":
            assert x.dtype == torch.long and x.shape == (L,)
            assert 0 <= x.min() and x.max() < spec.d_input
        else:
            assert x.dtype == torch.float32 and x.shape == (L, spec.d_input)
        if spec.target == "class":
            assert y.dtype == torch.long and y.shape == ()
            assert 0 <= y < spec.d_output
        elif spec.target == "class_per_step":
            assert y.dtype == torch.long and y.shape == (L,)
            labels = y[y != IGNORE_INDEX]
            assert len(labels) > 0 and 0 <= labels.min() and labels.max() < spec.d_output
        elif spec.target == "regression":
            assert y.dtype == torch.float32 and y.shape == (spec.d_output,)
        else:
            assert y.dtype == torch.float32 and y.shape == (L, spec.d_output)
            assert item["mask"].dtype == torch.bool and item["mask"].shape == (L,)
        assert ("length" in item) == spec.variable_length
        if spec.variable_length:
            assert 1 <= item["length"] <= L and (x[item["length"] :] == 0).all()

    batch = collate(items(splits.val), per_step=per_step)
    B = SIZES["n_val"]
    assert batch["x"].shape[:2] == (B, spec.l_max)
    assert batch["y"].shape[0] == B and batch["lengths"].shape == (B,)
    if per_step:
        assert batch["y"].shape[1] == spec.l_max
    if spec.target == "regression_per_step":
        assert batch["mask"].shape == (B, spec.l_max)
    if spec.variable_length:
        assert batch["lengths"].tolist() == [item["length"] for item in items(splits.val)]
    else:
        assert (batch["lengths"] == spec.l_max).all()


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_identical_data_and_other_seed_differs(name):
    a, b, c = build(name, seed=3), build(name, seed=3), build(name, seed=4)
    for ds_a, ds_b, ds_c in zip(a, b, c):
        for ta, tb in zip(tensors(ds_a), tensors(ds_b)):
            assert torch.equal(ta, tb)
        assert not torch.equal(ds_a.x, ds_c.x)


@pytest.mark.parametrize("name", NAMES)
def test_train_val_test_are_different_draws(name):
    train, val, test = build(name, n_train=8)
    assert not torch.equal(train.x, val.x)
    assert not torch.equal(val.x, test.x)
    assert not torch.equal(train.x, test.x)


@pytest.mark.parametrize("name", NAMES)
def test_empty_split_is_allowed(name):
    assert len(build(name, n_val=0).val) == 0


def test_copying_targets_are_the_data_tokens():
    n_tokens, M, delay = 5, 4, 7
    splits = build("copying")
    spec = splits.spec
    assert spec.l_max == 2 * M + delay + 1 and spec.d_input == n_tokens + 2 and spec.d_output == n_tokens + 1
    for item in items(splits.train):
        x, y = item["x"].tolist(), item["y"].tolist()
        data = x[:M]
        assert all(1 <= t <= n_tokens for t in data)
        assert x[M:] == [0] * delay + [n_tokens + 1] + [0] * M
        assert y == [IGNORE_INDEX] * (M + delay + 1) + data


def test_selective_copying_targets_are_the_scattered_tokens_in_order():
    n_tokens, M, seq_len = 6, 5, 20
    ds = build("selective_copying").train
    gaps = set()
    for item in items(ds):
        x, y = item["x"].tolist(), item["y"].tolist()
        positions = [i for i, t in enumerate(x[:seq_len]) if t != 0]
        data = [x[i] for i in positions]
        assert len(data) == M and all(1 <= t <= n_tokens for t in data)
        assert x[seq_len:] == [n_tokens + 1] * M
        assert y == [IGNORE_INDEX] * seq_len + data
        gaps.add(tuple(positions))
    assert len(gaps) > 1, "data positions must vary between sequences"


def test_adding_target_is_the_sum_of_the_two_marked_values():
    seq_len = 15
    for item in items(build("adding").train):
        x, y = item["x"], item["y"]
        assert ((0 <= x[:, 0]) & (x[:, 0] < 1)).all()
        marked = [i for i in range(seq_len) if x[i, 1] == 1]
        assert len(marked) == 2 and int(x[:, 1].sum()) == 2
        assert marked[0] < seq_len // 2 <= marked[1]
        assert y.item() == pytest.approx(x[marked[0], 0].item() + x[marked[1], 0].item(), abs=1e-6)


def test_delay_target_is_the_input_shifted_and_masked_before_the_delay():
    seq_len, d = 20, 6
    for item in items(build("delay").train):
        x, y, mask = item["x"][:, 0].tolist(), item["y"][:, 0].tolist(), item["mask"].tolist()
        assert mask == [t >= d for t in range(seq_len)]
        assert y[d:] == x[: seq_len - d]


def test_delayed_xor_target_is_xor_of_the_two_lagged_bits():
    seq_len, d1, d2 = 40, 3, 9
    for item in items(build("delayed_xor").train):
        bits = [int(v) for v in item["x"][:, 0].tolist()]
        assert set(bits) <= {0, 1}
        expected = [IGNORE_INDEX] * d2 + [bits[t - d1] ^ bits[t - d2] for t in range(d2, seq_len)]
        assert item["y"].tolist() == expected


def test_induction_heads_target_follows_the_only_earlier_prefix():
    vocab_size, seq_len = 6, 20
    splits = build("induction_heads")
    prefix = splits.spec.meta["copy_prefix"]
    assert prefix == vocab_size - 1
    firsts = set()
    for item in items(splits.train):
        x = item["x"].tolist()
        at = [i for i, t in enumerate(x) if t == prefix]
        assert len(at) == 2 and at[1] == seq_len - 1 and at[0] + 1 < seq_len - 1
        assert item["y"].item() == x[at[0] + 1] != prefix
        firsts.add(at[0])
    assert len(firsts) > 1, "the prefix position must vary between sequences"


def test_associative_recall_target_is_the_value_bound_to_the_query():
    vocab_size, n_pairs = 10, 8
    n_keys = vocab_size // 2
    for item in items(build("associative_recall").train):
        x = item["x"].tolist()
        assert len(x) == 2 * n_pairs + 1
        bound = {}
        for k, v in zip(x[0:-1:2], x[1:-1:2]):
            assert 0 <= k < n_keys <= v < vocab_size
            assert bound.setdefault(k, v) == v, "a repeated key must keep its value"
        assert x[-1] in bound
        assert item["y"].item() == bound[x[-1]]


@pytest.mark.parametrize("name", ["induction_heads", "associative_recall"])
def test_lm_supervision_scores_every_next_token_in_training_and_only_the_answer_elsewhere(name):
    query, lm = build(name), build(name, supervision="lm")
    assert query.spec.target == "class" and lm.spec.target == "class_per_step"
    for split in ("train", "val", "test"):
        q, m = getattr(query, split), getattr(lm, split)
        assert torch.equal(q.x, m.x), "both supervisions must draw the same sequences"
        assert m.y.shape == m.x.shape
        assert torch.equal(m.y[:, -1], q.y), "the last step's target is the answer"
        if split == "train":  # next-token targets, written out independently of the builder's cat
            for x, y in zip(m.x.tolist(), m.y.tolist()):
                assert y[:-1] == x[1:]
        else:
            assert (m.y[:, :-1] == IGNORE_INDEX).all(), "validation and test score the answer only"
    batch = collate([lm.val[0], lm.val[1]], per_step=True)
    assert batch["y"].shape == batch["x"].shape


def listops_value(tokens: list[str], max_depth: int, max_args: int) -> int:
    """Reference evaluator: parse the token strings recursively (checking LRA's depth and arity limits);
    MED is LRA's ``int(np.median(args))``."""
    ops = {
        "[MAX": max,
        "[MIN": min,
        "[MED": lambda args: int(statistics.median(args)),
        "[SM": lambda args: sum(args) % 10,
    }

    def parse(i: int, depth: int) -> tuple[int, int]:
        if tokens[i] not in ops:
            return int(tokens[i]), i + 1
        assert depth < max_depth, "operators stop one level above max_depth"
        op, args, i = tokens[i], [], i + 1
        while tokens[i] != "]":
            value, i = parse(i, depth + 1)
            args.append(value)
        assert 2 <= len(args) <= max_args
        return ops[op](args), i + 1

    value, end = parse(0, 1)
    assert end == len(tokens), "tokens left after the expression"
    return value


def test_listops_reference_evaluator_follows_lra():
    assert listops_value("[MAX 4 3 [MIN 2 3 ] 1 0 ]".split(), 10, 10) == 4
    assert listops_value("[MED 1 4 ]".split(), 10, 10) == 2  # int(np.median([1, 4])) = int(2.5)
    assert listops_value("[SM 7 8 [MED 9 0 5 ] ]".split(), 10, 10) == 0


def test_listops_labels_match_an_independent_evaluator():
    splits = build("listops", n_train=300)
    itos = splits.spec.meta["itos"]
    lengths, labels = [], set()
    for item in items(splits.train):
        n = item["length"]
        tokens = [itos[t] for t in item["x"][:n].tolist()]
        assert "<pad>" not in tokens
        assert item["y"].item() == listops_value(tokens, max_depth=5, max_args=5)
        lengths.append(n)
        labels.add(item["y"].item())
    assert 20 <= min(lengths) and max(lengths) <= 60
    assert len(set(lengths)) > 20, "lengths should spread over the window"
    assert labels == set(range(10))


def test_listops_meets_narrow_long_windows_quickly():
    splits = build("listops", n_train=50, min_length=1500, max_length=1510, max_depth=10, max_args=10)
    assert all(1500 <= item["length"] <= 1510 for item in items(splits.train))


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("copying", {"n_tokens": 0}, "n_tokens must be an integer >= 1, got 0"),
        ("copying", {"delay": -1}, "delay must be an integer >= 0, got -1"),
        ("copying", {"n_memorize": 2.5}, "n_memorize must be an integer >= 1, got 2.5"),
        ("copying", {"n_train": -5}, "n_train must be an integer >= 0, got -5"),
        ("selective_copying", {"n_memorize": 21}, r"n_memorize must be an integer in \[1, seq_len=20\], got 21"),
        ("adding", {"seq_len": 1}, "seq_len must be an integer >= 2, got 1"),
        ("delay", {"delay": 20}, r"delay must be an integer in \[0, seq_len - 1 = 19\], got 20"),
        ("delayed_xor", {"d1": 9}, r"d1 must be an integer in \[0, d2 - 1 = 8\], got 9"),
        ("delayed_xor", {"d2": 40}, r"d2 must be an integer in \[1, seq_len - 1 = 39\], got 40"),
        ("induction_heads", {"vocab_size": 2}, "vocab_size must be an integer >= 3, got 2"),
        ("associative_recall", {"n_pairs": 0}, "n_pairs must be an integer >= 1, got 0"),
        ("associative_recall", {"supervision": "all"}, r"supervision must be one of \('query', 'lm'\), got 'all'"),
        ("induction_heads", {"supervision": None}, r"supervision must be one of \('query', 'lm'\), got None"),
        ("listops", {"max_length": 10}, "max_length must be an integer >= min_length = 20, got 10"),
        ("listops", {"max_args": 1}, "max_args must be an integer >= 2, got 1"),
        ("listops", {"max_depth": 2, "max_args": 3}, "no expression with max_depth=2 and max_args=3"),
    ],
)
def test_invalid_options_raise_naming_option_value_and_expectation(name, options, match):
    with pytest.raises(ValueError, match=match):
        build(name, **options)

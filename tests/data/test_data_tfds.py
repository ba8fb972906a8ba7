"""The TFDS path offline: a tiny locally prepared 'mnist', fail-fast, the resumable stream.

Every test runs with the network guarded (``no_network``): a connection attempt fails at once,
as on an offline machine, and is recorded.
"""

from __future__ import annotations

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from repro.data import (  # noqa: E402
    DatasetNotPreparedError,
    TFDSStream,
    load_arrays,
    load_tfds,
    tfds_builder,
)


@pytest.fixture(autouse=True)
def _offline(no_network):
    return no_network


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"flatten": True, "scaling": "standardize", "n_train": 120, "subset_seed": 5},
        {"label_transform": "parity", "n_test": 40, "subset": "first"},
    ],
)
def test_tfds_and_npz_arrays_give_identical_datasets(
    tiny_tfds_mnist, small_mnist_like_arrays, options
):
    from_tfds = load_tfds("mnist", tiny_tfds_mnist, **options)
    from_npz = load_arrays(small_mnist_like_arrays, name="mnist", source="npz", **options)
    assert from_tfds.source.startswith("tfds:mnist:")
    assert from_tfds.name == from_npz.name == "mnist"
    assert from_tfds.num_classes == from_npz.num_classes
    for key in ("x_train", "y_train", "x_test", "y_test"):
        got, want = getattr(from_tfds, key), getattr(from_npz, key)
        assert got.dtype == want.dtype and got.shape == want.shape, key
        np.testing.assert_array_equal(got, want, err_msg=key)
    assert from_tfds.metadata == from_npz.metadata


def test_unprepared_tfds_fails_fast_without_download(tmp_path, monkeypatch, no_network):
    def forbidden(*args, **kwargs):
        raise AssertionError("download_and_prepare must not run without network")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", forbidden)
    empty = tmp_path / "no_data_here"
    with pytest.raises(DatasetNotPreparedError) as info:
        load_tfds("mnist", empty)
    message = str(info.value)
    assert str(empty) in message
    assert f"tfds build mnist --data_dir={empty}" in message
    assert "tensorflow_datasets.scripts.download_and_prepare --datasets=mnist" in message
    assert "network is unreachable" in message
    assert len(no_network) == 1  # one quick probe, refused; nothing else was tried
    no_network.clear()
    with pytest.raises(DatasetNotPreparedError, match="download=False"):
        load_tfds("mnist", empty, download=False)
    assert no_network == []  # download=False does not even probe
    with pytest.raises(DatasetNotPreparedError, match="not prepared"):
        TFDSStream("mnist", empty, batch_size=8)


def test_connected_machine_downloads_only_when_not_prepared(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("repro.data.sources.network_reachable", lambda **kw: True)
    monkeypatch.setattr(
        tfds.core.DatasetBuilder, "download_and_prepare", lambda self, **kw: calls.append(self)
    )
    builder = tfds_builder("mnist", tmp_path)
    assert len(calls) == 1 and builder.name == "mnist"


def test_unknown_tfds_name_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="name must be a TFDS catalogue data set, got 'mnistt'"):
        load_tfds("mnistt", tmp_path)


def _collect(stream, n):
    it = iter(stream)
    return [next(it) for _ in range(n)]


def test_stream_is_deterministic_and_resumable(tiny_tfds_mnist):
    stream = TFDSStream("mnist", tiny_tfds_mnist, batch_size=64, seed=7, shuffle_buffer=1000)
    assert (stream.num_examples, stream.steps_per_epoch) == (300, 4)
    assert stream.input_shape == (28, 28, 1) and stream.num_classes == 10
    batches = _collect(stream, 10)  # epochs 0 and 1, then 2 batches of epoch 2
    assert stream.position == (2, 2)
    assert stream.state_dict() == {"seed": 7, "epoch": 2, "step": 2}
    assert batches[0]["x"].shape == (64, 28, 28, 1) and batches[0]["x"].dtype == np.float32
    assert batches[0]["y"].shape == (64,) and batches[0]["y"].dtype == np.int32

    # Within an epoch no example repeats; epochs are shuffled differently.
    def keys(batch_list):
        return [b["x"][i].tobytes() + b["y"][i].tobytes() for b in batch_list for i in range(64)]

    epoch0, epoch1 = keys(batches[:4]), keys(batches[4:8])
    assert len(set(epoch0)) == 256 and len(set(epoch1)) == 256
    assert epoch0 != epoch1

    # The same seed replays; a stream built at a saved position continues identically.
    replay = _collect(TFDSStream("mnist", tiny_tfds_mnist, batch_size=64, seed=7), 3)
    resumed = _collect(
        TFDSStream("mnist", tiny_tfds_mnist, batch_size=64, seed=7, epoch=1, step=2), 4
    )
    for got, want in zip(replay + resumed, batches[:3] + batches[6:10], strict=True):
        np.testing.assert_array_equal(got["x"], want["x"])
        np.testing.assert_array_equal(got["y"], want["y"])
    other = _collect(TFDSStream("mnist", tiny_tfds_mnist, batch_size=64, seed=8), 1)
    assert not np.array_equal(other[0]["y"], batches[0]["y"])


def test_stream_preprocessing_matches_the_in_memory_path(tiny_tfds_mnist):
    # Unshuffled, the stream reads the split in stored order: the in-memory TFDS loader with
    # order="source" sees the same order, so the batches must equal its arrays.
    stream = TFDSStream(
        "mnist",
        tiny_tfds_mnist,
        batch_size=100,
        shuffle=False,
        flatten=True,
        label_transform="parity",
    )
    assert stream.input_shape == (784,) and stream.num_classes == 0
    streamed = _collect(stream, 3)
    whole = load_tfds(
        "mnist", tiny_tfds_mnist, order="source", flatten=True, label_transform="parity"
    )
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in streamed]), whole.x_train)
    np.testing.assert_array_equal(np.concatenate([b["y"] for b in streamed]), whole.y_train)
    resized = TFDSStream("mnist", tiny_tfds_mnist, batch_size=10, image_size=(14, 14))
    batch = next(iter(resized))
    assert batch["x"].shape == (10, 14, 14, 1) and resized.input_shape == (14, 14, 1)
    assert batch["x"].min() >= 0.0 and batch["x"].max() <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 301}, r"batch_size must be an integer \[1, 300\], got 301"),
        ({"batch_size": 10, "step": 30}, r"step must be an integer \[0, 29\], got 30"),
        ({"batch_size": 10, "scaling": "standardize"}, "needs mean and std"),
        ({"batch_size": 10, "split": "validation"}, r"split must be one of \['test', 'train'\]"),
    ],
)
def test_stream_validates_arguments(tiny_tfds_mnist, kwargs, message):
    with pytest.raises(ValueError, match=message):
        TFDSStream("mnist", tiny_tfds_mnist, **kwargs)

"""Streaming of large TFDS image-classification sets as numpy batch dicts ``{"x", "y"}``.

Order: epoch ``e`` reads the split with files shuffled by ``s_e`` and examples shuffled in a
buffer seeded by ``s_e``, where ``s_e = SeedSequence([seed, e])``; tf.data runs with
``deterministic = True``, so the batch sequence depends only on (data, seed, batch_size,
shuffle_buffer). The position ``(epoch, step)`` names the next batch; a stream built with the
position saved in a checkpoint yields exactly the batches the original run would have yielded
next. Skipping to ``step`` happens on the encoded examples (before image decoding), so resuming
mid-epoch costs a read of the skipped records, not their decoding.

Batches get the same numpy preprocessing as ``preprocess`` (``scale_features``,
``transform_labels``): "unit" scaling, or "standardize" with GIVEN per-channel ``mean``/``std``
in unit scale (a stream cannot compute training-set statistics up front).

Streaming protocol (what the training engine needs from a streamed set; ``TFDSStream`` and
``ArrayStream`` implement it):

- ``batch_size``, ``num_examples``, ``steps_per_epoch`` (full batches per epoch for a training
  stream, the last partial batch dropped; ``ceil(num_examples / batch_size)`` for an
  evaluation stream built with ``drop_remainder=False``), ``num_classes``, ``input_shape``;
- ``epoch_batches(epoch, start_step=0)``: the numpy batch dicts ``{"x", "y", ...}`` of
  ``epoch`` from ``start_step`` on, a pure function of ``(epoch, start_step)`` -- this is what
  makes a resumed run see exactly the batches of an uninterrupted one (the engine derives
  ``epoch = step // steps_per_epoch`` and the step within the epoch from its saved step);
- optionally ``epoch_batches(epoch, start_step, part=(lo, hi))``: only examples ``lo..hi-1``
  of every batch (the same examples as the slice of the whole batch). A run over several
  processes whose batches are split over them (repro/engine/distributed.py) reads each
  process's part this way; a stream without ``part`` cannot be split by process;
- ``test_source(batch_size)``: the evaluation set, either whole arrays ``{"x", "y", ...}``
  (kept on the device, evaluated like an ``ArrayDataset`` test split) or another stream
  (unshuffled, ``drop_remainder=False``; the engine pads and masks the last batch), or None.

A data config builds a stream with ``stream: true``: the engine completes the call with
``batch_size`` = its examples per step (``rule.examples_per_step(trainer.batch_size)``; 2B
under noise enhancement) and ``seed`` = the shared data seed (``trainer.data_seed`` or
``seed``), so the stream's batches are the optimizer steps' batches.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from repro.data.preprocess import (
    LABEL_TRANSFORMS,
    SCALINGS,
    check_choice,
    scale_features,
    transform_labels,
)
from repro.data.sources import _base_name, tfds_builder


def epoch_seed(seed: int, epoch: int) -> int:
    """The 31-bit seed of epoch ``epoch``'s file and example shuffles."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0] >> 1)


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    bad = isinstance(value, bool) or not isinstance(value, int | np.integer)
    if bad or value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")


def _set_batching(stream: Any, batch_size: int, drop_remainder: bool) -> None:
    """Validate `batch_size` against ``stream.num_examples``; set it, ``drop_remainder`` and
    ``steps_per_epoch`` (full batches, or with the last partial one)."""
    _check_int("batch_size", batch_size, 1, stream.num_examples)
    stream.batch_size = int(batch_size)
    stream.drop_remainder = bool(drop_remainder)
    n, b = stream.num_examples, stream.batch_size
    stream.steps_per_epoch = n // b if stream.drop_remainder else math.ceil(n / b)


# Fold-in id of the data-order key: equals repro.engine.replicas.STREAM_DATA_ORDER (a test
# checks it), so an ArrayStream's order is the resident engine's order for the same data seed.
DATA_ORDER_STREAM = 4

Batch = dict[str, np.ndarray]


class BatchStream(Protocol):
    """The streaming protocol described in the module docstring."""

    batch_size: int
    num_examples: int
    steps_per_epoch: int
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    def epoch_batches(
        self, epoch: int, start_step: int = 0, part: tuple[int, int] | None = None
    ) -> Iterator[Batch]: ...

    def test_source(self, batch_size: int) -> Mapping[str, np.ndarray] | BatchStream | None: ...


def check_part(part: tuple[int, int] | None, batch_size: int) -> tuple[int, int]:
    """(lo, hi) of a batch part; the whole batch for None."""
    lo, hi = (0, batch_size) if part is None else (int(part[0]), int(part[1]))
    if not 0 <= lo < hi <= batch_size:
        raise ValueError(f"part must satisfy 0 <= lo < hi <= {batch_size}, got {part!r}")
    return lo, hi


def is_stream(obj: Any) -> bool:
    """Whether ``obj`` follows the streaming protocol (rather than being an ArrayDataset)."""
    return callable(getattr(obj, "epoch_batches", None)) and hasattr(obj, "steps_per_epoch")


def epoch_order(
    data_key: Any, epoch: Any, num_examples: int, steps_per_epoch: int, batch_size: int
) -> Any:
    """int32 [S, B]: epoch ``epoch`` visits ``permutation(fold_in(data_key, epoch), N)``, step s
    taking entries ``[s*B, (s+1)*B)`` (the last ``N - S*B`` dropped). The resident engine's
    order (``repro.engine.epoch.make_order_fn``) and ``ArrayStream`` both use this function."""
    import jax
    import jax.numpy as jnp

    perm = jax.random.permutation(jax.random.fold_in(data_key, epoch), num_examples)
    used = steps_per_epoch * batch_size
    return perm[:used].reshape(steps_per_epoch, batch_size).astype(jnp.int32)


class ArrayStream:
    """In-memory arrays served through the streaming protocol (tests, and small sets one wants
    to stream rather than keep on the device).

    Order: with ``shuffle``, epoch e's batches are ``epoch_order(key, e, N, S, B)`` with
    ``key = fold_in(jax.random.key(seed), DATA_ORDER_STREAM)`` -- exactly the batches the
    resident engine gathers for data seed ``seed``; without, the arrays in stored order.
    ``drop_remainder=False`` (evaluation streams) keeps the last partial batch.

    Args:
      arrays: ``{"x": [N, ...], "y": [N, ...], ...}`` (all with the same N).
      batch_size: examples per batch (1..N).
      num_classes: as in ``ArrayDataset`` (0 for regression).
      seed: data-order seed. test: the evaluation set (arrays or another stream) or None.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        *,
        batch_size: int,
        num_classes: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_remainder: bool = True,
        test: Mapping[str, np.ndarray] | BatchStream | None = None,
        name: str = "arrays",
    ) -> None:
        if "x" not in arrays or "y" not in arrays:
            raise ValueError(f"arrays must have 'x' and 'y', got {sorted(arrays)}")
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        sizes = {k: len(v) for k, v in self.arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"arrays must have the same number of examples, got {sizes}")
        self.num_examples = sizes["x"]
        _check_int("seed", seed, 0)
        _set_batching(self, batch_size, drop_remainder)
        self.num_classes = int(num_classes)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.test = test
        self.name = name

    @classmethod
    def from_dataset(
        cls,
        dataset: Any,
        *,
        batch_size: int,
        seed: int = 0,
        stream_test: bool = False,
        test_batch_size: int | None = None,
    ) -> ArrayStream:
        """Stream an ``ArrayDataset``'s training split; its test split is kept whole (evaluated
        on the device) or, with ``stream_test``, streamed too (in batches of
        ``test_batch_size``, default the engine's ``trainer.eval_batch_size``)."""
        test: Any = dataset.test_arrays()
        if stream_test:
            test = _DeferredTest(test, dataset.num_classes, test_batch_size)
        return cls(
            dataset.train_arrays(),
            batch_size=batch_size,
            num_classes=dataset.num_classes,
            seed=seed,
            test=test,
            name=dataset.name,
        )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input."""
        return tuple(int(d) for d in self.arrays["x"].shape[1:])

    def order(self, epoch: int) -> np.ndarray:
        """int32 [S, B]: indices of epoch ``epoch``'s batches (shuffled streams)."""
        import jax

        key = jax.random.fold_in(jax.random.key(self.seed), DATA_ORDER_STREAM)
        order = epoch_order(key, epoch, self.num_examples, self.steps_per_epoch, self.batch_size)
        return np.asarray(order)

    def epoch_batches(
        self, epoch: int, start_step: int = 0, part: tuple[int, int] | None = None
    ) -> Iterator[Batch]:
        """Batches ``start_step..`` of ``epoch`` (with ``part``, examples lo..hi-1 of each)."""
        order = self.order(epoch) if self.shuffle else None
        size = self.batch_size
        lo, hi = check_part(part, size)
        for step in range(start_step, self.steps_per_epoch):
            first = step * size
            end = min(first + hi, self.num_examples)
            index = slice(first + lo, end) if order is None else order[step, lo:hi]
            yield {k: v[index] for k, v in self.arrays.items()}

    def test_source(self, batch_size: int) -> Mapping[str, np.ndarray] | BatchStream | None:
        """The evaluation set given at construction."""
        if isinstance(self.test, _DeferredTest):
            return self.test.build(batch_size)
        return self.test


class _DeferredTest:
    """A test split to stream in batches whose size the engine gives (its eval batch size)."""

    def __init__(
        self, arrays: Mapping[str, np.ndarray], num_classes: int, batch_size: int | None
    ) -> None:
        self.arrays, self.num_classes, self.batch_size = arrays, num_classes, batch_size

    def build(self, batch_size: int) -> ArrayStream:
        size = min(self.batch_size or batch_size, len(self.arrays["x"]))
        return ArrayStream(
            self.arrays,
            batch_size=size,
            num_classes=self.num_classes,
            shuffle=False,
            drop_remainder=False,
        )


def _check_stream_options(
    scaling: str,
    label_transform: str,
    seed: int,
    shuffle_buffer: int,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    image_size: Sequence[int] | None,
) -> tuple[int, ...] | None:
    """Raise ``ValueError`` for a bad stream option (before the TFDS builder is opened);
    returns ``image_size`` as a (height, width) tuple (None: the stored size)."""
    check_choice("scaling", scaling, SCALINGS)
    check_choice("label_transform", label_transform, LABEL_TRANSFORMS)
    _check_int("seed", seed, 0)
    _check_int("shuffle_buffer", shuffle_buffer, 1)
    if scaling == "standardize" and (mean is None or std is None):
        raise ValueError(
            "scaling='standardize' in a stream needs mean and std (per channel, unit scale)"
        )
    if image_size is None:
        return None
    image_size = tuple(image_size)
    if len(image_size) != 2:
        raise ValueError(f"image_size must be (height, width), got {image_size!r}")
    for size in image_size:
        _check_int("image_size", size, 1)
    return image_size


def _check_features_and_splits(
    info: Any, name: str, keys: Sequence[str], *, split: str, test_split: str | None
) -> None:
    """Raise ``ValueError`` unless the TFDS ``info`` has the feature ``keys`` and the splits
    (``test_split`` None: no evaluation split)."""
    features = info.features
    for key in keys:
        if key not in features:
            raise ValueError(f"{name} has no feature {key!r} (features: {sorted(features)})")
    for key, value in (("split", split), ("test_split", test_split)):
        if value is not None and value not in info.splits:
            raise ValueError(
                f"{key} must be one of {sorted(info.splits)} (or a slice of one), got {value!r}"
            )


def _resized_image_shape(
    features: Any, image_key: str, image_size: tuple[int, ...] | None, name: str
) -> tuple[int, ...]:
    """Shape of one image after the resize to ``image_size`` (fixed, or ``ValueError``)."""
    shape = tuple(features[image_key].shape)
    if image_size is not None:
        shape = (*image_size, shape[-1])
    if any(d is None for d in shape):
        raise ValueError(
            f"image_size must be given for {name}: its images have variable shape {shape}"
        )
    return shape


def _num_classes_after(raw_num_classes: int, label_transform: str, one_hot: bool) -> int:
    """Classes after ``transform_labels`` (0 for +-1 or regression targets); ``ValueError`` for
    label options that do not fit the labels."""
    _, num_classes = transform_labels(
        np.zeros(1, np.int64),
        num_classes=raw_num_classes,
        label_transform=label_transform,
        one_hot=one_hot,
    )
    return num_classes


class TFDSStream:
    """Deterministic, resumable iterator of ``{"x": float32, "y": labels}`` numpy batches.

    Args:
      name, data_dir: the TFDS data set (prepared; see ``repro.data.tfds_builder``, which fails
        fast with instructions when it is not).
      split: TFDS split, e.g. "train" or "train[:90%]".
      batch_size: examples per batch (<= examples in the split).
      seed: shuffle seed; epoch, step: position of the first batch to yield.
      shuffle: shuffle files and examples (per epoch); shuffle_buffer: examples in the buffer.
      drop_remainder: drop the last partial batch (fixed shapes under jit).
      image_size: (height, width) to resize to (shorter side to max(image_size), then a central
        crop); needed for variable-size images such as imagenet2012.
      scaling, mean, std, flatten, label_transform, one_hot: as in ``preprocess``.
      download: allow ``download_and_prepare`` when the data is not prepared (off by default:
        large sets are prepared ahead of time, imagenet2012 from manual archives).
      test_split: the split ``test_source`` streams for evaluation (None: no evaluation set).

    Iterating moves the stream's own position: use one iterator per stream.

    Attributes: ``num_examples``, ``steps_per_epoch``, ``input_shape``, ``num_classes``,
    ``position`` ((epoch, step) of the next batch), ``state_dict()`` for checkpoints.
    """

    def __init__(
        self,
        name: str,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        split: str = "train",
        batch_size: int,
        seed: int = 0,
        epoch: int = 0,
        step: int = 0,
        shuffle: bool = True,
        shuffle_buffer: int = 10_000,
        drop_remainder: bool = True,
        image_key: str = "image",
        label_key: str = "label",
        image_size: Sequence[int] | None = None,
        scaling: str = "unit",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        flatten: bool = False,
        label_transform: str = "none",
        one_hot: bool = False,
        download: bool = False,
        network_timeout_s: float = 3.0,
        test_split: str | None = None,
    ) -> None:
        # Everything but the position and split, to build the evaluation stream alike.
        self._options = {
            "name": name,
            "data_dir": data_dir,
            "image_key": image_key,
            "label_key": label_key,
            "image_size": image_size,
            "scaling": scaling,
            "mean": mean,
            "std": std,
            "flatten": flatten,
            "label_transform": label_transform,
            "one_hot": one_hot,
            "download": download,
            "network_timeout_s": network_timeout_s,
        }
        image_size = _check_stream_options(
            scaling, label_transform, seed, shuffle_buffer, mean, std, image_size
        )
        self.builder = tfds_builder(
            name, data_dir, download=download, network_timeout_s=network_timeout_s
        )
        features = self.builder.info.features
        _check_features_and_splits(
            self.builder.info, name, (image_key, label_key), split=split, test_split=test_split
        )
        self.test_split = test_split
        self.name = _base_name(name)
        self.split = split
        self.num_examples = int(self.builder.info.splits[split].num_examples)
        _set_batching(self, batch_size, drop_remainder)
        _check_int("epoch", epoch, 0)
        _check_int("step", step, 0, self.steps_per_epoch - 1)
        self.seed = int(seed)
        self.epoch = int(epoch)
        self.step = int(step)
        self.shuffle = bool(shuffle)
        self.shuffle_buffer = int(shuffle_buffer)
        self.image_key, self.label_key = image_key, label_key
        self.image_size = image_size
        self.scaling = scaling
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.std = None if std is None else np.asarray(std, dtype=np.float64)
        self.flatten = bool(flatten)
        self.label_transform = label_transform
        self.one_hot = bool(one_hot)
        self._image_shape = _resized_image_shape(features, image_key, image_size, name)
        self._raw_num_classes = int(features[label_key].num_classes)
        self.num_classes = _num_classes_after(self._raw_num_classes, label_transform, one_hot)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one preprocessed input."""
        return (math.prod(self._image_shape),) if self.flatten else self._image_shape

    @property
    def position(self) -> tuple[int, int]:
        """(epoch, step) of the next batch."""
        return (self.epoch, self.step)

    def test_source(self, batch_size: int) -> TFDSStream | None:
        """``test_split`` streamed in stored order, in batches of ``batch_size`` (fewer if the
        split is smaller), the last partial batch kept (the engine masks its padding)."""
        if self.test_split is None:
            return None
        num_test = int(self.builder.info.splits[self.test_split].num_examples)
        return TFDSStream(
            **self._options,
            split=self.test_split,
            batch_size=max(1, min(int(batch_size), num_test)),
            shuffle=False,
            drop_remainder=False,
            test_split=None,
        )

    def state_dict(self) -> dict[str, int]:
        """What a checkpoint must keep to resume the same data order."""
        return {"seed": self.seed, "epoch": self.epoch, "step": self.step}

    def _epoch_dataset(
        self, epoch: int, start_step: int, part: tuple[int, int] | None = None
    ) -> Any:
        import tensorflow as tf
        import tensorflow_datasets as tfds

        seed = epoch_seed(self.seed, epoch)
        image_feature = self.builder.info.features[self.image_key]
        ds = self.builder.as_dataset(
            split=self.split,
            shuffle_files=self.shuffle,
            decoders={self.image_key: tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(shuffle_seed=seed, add_tfds_id=False),
        )
        ds = ds.map(lambda ex: (ex[self.image_key], ex[self.label_key]))
        if self.shuffle:
            ds = ds.shuffle(self.shuffle_buffer, seed=seed, reshuffle_each_iteration=False)
        ds = ds.skip(start_step * self.batch_size)
        batch_size = self.batch_size
        if part is not None:  # keep positions lo..hi-1 of every batch, before decoding them
            lo, hi = check_part(part, batch_size)
            ds = ds.enumerate().filter(
                lambda i, ex: tf.logical_and(i % batch_size >= lo, i % batch_size < hi)
            )
            ds = ds.map(lambda i, ex: ex)
            batch_size = hi - lo
        image_size = self.image_size

        def decode(encoded: Any, label: Any) -> tuple[Any, Any]:
            image = image_feature.decode_example(encoded)
            if image_size is not None:
                h, w = image_size
                shape = tf.cast(tf.shape(image)[:2], tf.float32)
                ratio = float(max(h, w)) / tf.reduce_min(shape)
                new = tf.cast(tf.math.ceil(shape * ratio), tf.int32)
                image = tf.image.resize(image, new, antialias=True)
                top = (new[0] - h) // 2
                left = (new[1] - w) // 2
                image = image[top : top + h, left : left + w]
                image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
            return image, label

        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(batch_size, drop_remainder=self.drop_remainder)
        options = tf.data.Options()
        options.deterministic = True
        return ds.with_options(options).prefetch(2)

    def _to_batch(self, images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        x = scale_features(
            images, scaling=self.scaling, pixel_max=255.0, mean=self.mean, std=self.std
        )
        if x.ndim == 3:
            x = x[..., None]
        if self.flatten:
            x = x.reshape(len(x), -1)
        y, _ = transform_labels(
            labels,
            num_classes=self._raw_num_classes,
            label_transform=self.label_transform,
            one_hot=self.one_hot,
        )
        return {"x": x, "y": y}

    def epoch_batches(
        self, epoch: int, start_step: int = 0, part: tuple[int, int] | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """The batches of ``epoch`` from ``start_step`` on (does not move ``position``); with
        ``part``, examples lo..hi-1 of each (only those are decoded)."""
        import tensorflow_datasets as tfds

        for images, labels in tfds.as_numpy(self._epoch_dataset(epoch, start_step, part)):
            yield self._to_batch(images, labels)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        """Batches from ``position`` on, forever; ``position`` advances before each yield, so
        after consuming a batch it names the next one."""
        while True:
            epoch, start = self.epoch, self.step
            for batch in self.epoch_batches(epoch, start):
                self.step += 1
                if self.step == self.steps_per_epoch:
                    self.epoch, self.step = epoch + 1, 0
                yield batch
            if (self.epoch, self.step) == (epoch, start):
                raise RuntimeError(f"split {self.split!r} of {self.name} yielded no batch")
            self.epoch, self.step = epoch + 1, 0

"""The data stage: the `data` node -> a resident data set or a stream, with one-line errors.

A node with `stream: true` builds a stream (repro/data/streaming.py): its `_target_` is called
with `batch_size` (the examples per optimizer step) and `seed` (the shared data seed), so the
stream's batches are the steps' batches. Any other node builds a resident data set (an
ArrayDataset: `train_arrays()`, `test_arrays()`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from repro.data.streaming import is_stream
from repro.engine.feeding import stream_sample
from repro.engine.instantiate import call_target
from repro.errors import ConfigError

STREAM_MARKER = "stream"


class DataFileNotFoundError(ConfigError, FileNotFoundError):
    """A data file the config names is missing: bad input (one line, exit 2), and still a
    FileNotFoundError for callers that catch that."""


def prefixed_config_error(error: ValueError, spec: Mapping[str, Any], group: str) -> ValueError:
    """A constructor's `depth must be >= 1` -> ConfigError `model.depth must be >= 1` when
    `depth` is a key of the config node (bad input); any other ValueError is returned as it
    is (a bug, kept with its traceback)."""
    if isinstance(error, ConfigError):
        return error
    message = str(error)
    first = message.split(" ", 1)[0].rstrip(":=")
    if first.startswith(f"{group}."):
        return ConfigError(message)
    if first in spec:
        return ConfigError(f"{group}.{message}")
    return error


def is_stream_node(spec: Mapping[str, Any]) -> bool:
    """Whether the data node builds a stream (`stream: true`)."""
    return bool(spec.get(STREAM_MARKER, False))


def _stream_args(spec: Mapping[str, Any], batch_size: int | None, seed: int | None) -> dict:
    if spec.get("_partial_"):
        raise ConfigError(
            "data._partial_ no longer marks a stream: set data.stream=true instead "
            "(see conf/data/*_stream.yaml)"
        )
    return {"batch_size": batch_size, "seed": seed} if is_stream_node(spec) else {}


def load_data(
    spec: Mapping[str, Any],
    data_dir: str | None = None,
    *,
    batch_size: int | None = None,
    seed: int | None = None,
) -> Any:
    """The data set (or stream) of the `data` node. A missing local file is a
    DataFileNotFoundError with a hint on where to put it (TFDS loaders already say how to
    prepare their data)."""
    stream_args = _stream_args(spec, batch_size, seed)
    try:
        return call_target(spec, exclude=(STREAM_MARKER,), **stream_args)
    except ValueError as error:
        if stream_args and str(error).startswith("batch_size"):
            raise ConfigError(
                f"trainer.batch_size: {error} (a streamed set's batch size is the examples per "
                "step)"
            ) from None
        raise prefixed_config_error(error, spec, "data") from None
    except FileNotFoundError as error:
        if "prepare" in str(error):
            raise DataFileNotFoundError(str(error)) from None
        raise DataFileNotFoundError(
            f"{error}; put the file in paths.data_dir (now {data_dir}; set it on the command "
            "line or with $REPRO_DATA_DIR), e.g. MNIST as mnist.npz (../shared/data/README.md), "
            "or load it through TFDS with data=mnist_tfds"
        ) from None


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """What the engine needs of a data set: host arrays to initialise parameters, feed hooks
    and the train evaluation (the whole set, or a sample of a stream), its size, the test
    source (arrays, a stream or None), the stream itself when the data is streamed, and the
    validation split's arrays when the set holds one out (`data.n_validation`)."""

    train_arrays: dict[str, np.ndarray]
    num_train: int
    num_classes: int | None
    test_source: Any
    stream: Any | None
    validation_arrays: dict[str, np.ndarray] | None = None
    description: dict[str, Any] = dataclasses.field(default_factory=dict)


def describe_source(source: Any) -> dict[str, Any]:
    """What summary.json records of the data (`metadata.data`): sizes and shapes
    (`describe()`), plus the counted skips of a source that drops bad examples (speech)."""
    describe = getattr(source, "describe", None)
    info = dict(describe()) if callable(describe) else {}
    skipped = dict(getattr(source, "metadata", None) or {}).get("skipped")
    if skipped is not None:
        info["skipped"] = skipped
    return info


def training_data(source: Any, sample_size: int, eval_batch_size: int) -> TrainingData:
    """Split a loaded source into what the engine uses; a stream gives `sample_size` examples
    to stand in for the training set (streams are never whole on the device)."""
    if not is_stream(source):
        arrays = {k: np.asarray(v) for k, v in source.train_arrays().items()}
        validation = getattr(source, "validation_arrays", lambda: None)()
        return TrainingData(
            arrays,
            int(arrays["x"].shape[0]),
            source.num_classes,
            source.test_arrays(),
            None,
            validation,
            describe_source(source),
        )
    return TrainingData(
        stream_sample(source, max(1, sample_size)),
        int(source.num_examples),
        source.num_classes,
        source.test_source(eval_batch_size),
        source,
        description=describe_source(source),
    )

"""LibriSpeech (Panayotov et al. 2015) through TFDS ``librispeech``, as the speech corpus's
loader reads it: the same features, labels, skips and ArrayDataset.

TFDS splits: ``train_clean100``, ``train_clean360``, ``train_other500`` (960 h together:
``"train_clean100+train_clean360+train_other500"``), ``dev_clean``, ``dev_other``,
``test_clean``, ``test_other``; examples ``{"speech": int16 [n] at 16 kHz, "text": upper-case
transcript, "speaker_id", "chapter_id", "id"}``. Transcripts are lower-cased
(``vocabulary.normalize``); LibriSpeech uses exactly the 28 labels.

The whole features of a split are held in memory: fine for the dev/test splits (about 5 h
each: ~1.4 GB of float32 log-mels) and train-clean-100 subsets; the 960 h of the paper-scale
recipe are ~90 GB of features and need a machine with that much host memory (see README,
"Jasper on LibriSpeech"). Preparing the data needs network access once (``tfds build
librispeech``); offline, an unprepared data dir fails at once with the command to run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from repro.data.dataset import ArrayDataset
from repro.data.sources import tfds_builder
from repro.data.speech.dataset import Utterance, build_dataset, collect_split
from repro.data.speech.features import LogMelConfig

INT16_SCALE = 32768.0


def tfds_utterances(builder: Any, split: str) -> Iterator[Utterance]:
    """Utterances of a prepared TFDS speech split (audio scaled to [-1, 1))."""
    import tensorflow_datasets as tfds

    rate = int(getattr(builder.info.features["speech"], "sample_rate", None) or 16000)
    for example in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
        text = example["text"].decode() if isinstance(example["text"], bytes) else example["text"]
        audio = np.asarray(example["speech"], np.float32) / INT16_SCALE
        yield Utterance(str(example["id"]), str(text), audio, rate)


def load_librispeech_tfds(
    data_dir: str | None = None,
    *,
    split_train: str = "train_clean100",
    split_validation: str | None = "dev_clean",
    split_test: str = "test_clean",
    features: Mapping[str, Any] | None = None,
    n_train: int | None = None,
    n_validation: int | None = None,
    n_test: int | None = None,
    max_duration_s: float | None = 16.7,
    ctc_stride: int = 2,
    dither_seed: int = 0,
    download: bool = False,
) -> ArrayDataset:
    """TFDS LibriSpeech splits as an ArrayDataset (module docstring). ``max_duration_s`` 16.7
    is the cap of NVIDIA's Jasper training configs; ``download=True`` prepares the data when
    the network is reachable."""
    config = LogMelConfig(**(features or {}))
    builder = tfds_builder("librispeech", data_dir, download=download)
    wanted = {"train": (split_train, n_train), "test": (split_test, n_test)}
    if split_validation:
        wanted["validation"] = (split_validation, n_validation)
    splits = {
        name: collect_split(
            tfds_utterances(builder, tfds_split),
            config,
            limit=limit,
            max_duration_s=max_duration_s,
            ctc_stride=ctc_stride,
        )
        for name, (tfds_split, limit) in wanted.items()
    }
    metadata = {
        "tfds_splits": {name: split for name, (split, _) in wanted.items()},
        "ctc_stride": ctc_stride,
        "max_duration_s": max_duration_s,
    }
    source = f"tfds:{builder.name}:{builder.version}@{builder.data_dir}"
    return build_dataset("librispeech", source, splits, config, dither_seed, metadata)

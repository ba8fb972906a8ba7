"""Speech corpora as resident CTC data sets: audio -> log-mel features (JAX) + character labels.

``load_speech_corpus(path)`` reads a corpus written by ``python -m repro.data.speech build``
(``manifest_{train,validation,test}.jsonl``, ``corpus.json``; the same manifest format as
NVIDIA NeMo's, so a NeMo-style manifest of other audio loads too); ``load_librispeech_tfds``
reads TFDS ``librispeech`` splits on a machine where they are prepared. Both yield
``Utterance`` records that ``featurize`` turns into the arrays the engine trains on:

- ``x`` float32 [N, T, n_mels]: ``repro.data.speech.features.log_mel`` (computed in jitted
  JAX, on the default device: the accelerator when there is one), padded to the longest
  utterance, with ``x_paddings`` [N, T] (1 = padding, trailing);
- ``y`` int32 [N, L]: character ids (``repro.data.speech.vocabulary``), ``y_paddings``.

Bad utterances are skipped and counted, never turned into NaNs or silent zeros: an unreadable
or empty audio file, a sample rate other than the features', a transcript that is empty or
has characters outside the vocabulary, audio longer than ``max_duration_s``, and audio too
short for CTC (fewer output frames than the label needs: ``ceil(frames / ctc_stride) <
len(label) + repeats``, with ``ctc_stride`` the model's time stride). The counts per split and
reason, with the first few files of each, are in ``metadata["skipped"]`` and so in the run's
``summary.json``. A missing corpus directory or manifest, a corpus whose sample rate differs
from the features', or a split left empty is bad input: one line naming the path.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from repro.data.dataset import ArrayDataset
from repro.data.speech.features import LogMelConfig, log_mel, num_frames
from repro.data.speech.vocabulary import NUM_LABELS, TranscriptError, encode
from repro.errors import ConfigError

SPLITS: tuple[str, ...] = ("train", "validation", "test")
SKIP_EXAMPLES = 5  # files listed per skip reason
# Utterances are featurized in chunks padded to a multiple of this many samples (1 s at
# 16 kHz), so jit compiles one program per padded length, not one per utterance.
LENGTH_BUCKET = 16000
CHUNK = 32


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One utterance as a source delivers it: ``audio`` float32 [n] in [-1, 1] (None when it
    could not be read, with the reason in ``error``)."""

    key: str
    text: str
    audio: np.ndarray | None
    sample_rate: int
    error: str | None = None


def _read_manifest(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ConfigError(f"data.path: manifest {path} not found (build the corpus first)")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ConfigError(f"{path}:{number}: not a JSON line ({error.msg})") from None
    return records


def _read_audio(path: Path) -> tuple[np.ndarray | None, int, str | None]:
    import soundfile

    try:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError):  # soundfile: LibsndfileError (a RuntimeError)
        return None, 0, "unreadable audio file"
    return audio.mean(axis=1), int(rate), None


def manifest_utterances(corpus: Path, split: str) -> Iterator[Utterance]:
    """The utterances of ``manifest_<split>.jsonl``; audio paths relative to the corpus."""
    for record in _read_manifest(corpus / f"manifest_{split}.jsonl"):
        audio_path = corpus / record["audio_filepath"]
        audio, rate, error = _read_audio(audio_path)
        yield Utterance(str(record["audio_filepath"]), str(record["text"]), audio, rate, error)


def _skip_reason(
    utterance: Utterance, config: LogMelConfig, max_duration_s: float | None, ctc_stride: int
) -> str | None:
    if utterance.error is not None:
        return utterance.error
    if utterance.audio is None or utterance.audio.size == 0:
        return "empty audio"
    if utterance.sample_rate != config.sample_rate:
        return f"sample rate {utterance.sample_rate} != {config.sample_rate}"
    if not np.all(np.isfinite(utterance.audio)):
        return "non-finite samples"
    try:
        label = encode(utterance.text)
    except TranscriptError as error:
        return "empty transcript" if "empty" in str(error) else "characters outside vocabulary"
    if max_duration_s is not None and utterance.audio.size > max_duration_s * config.sample_rate:
        return f"longer than max_duration_s={max_duration_s}"
    repeats = int(np.sum(label[1:] == label[:-1]))
    output_frames = math.ceil(int(num_frames(utterance.audio.size, config)) / ctc_stride)
    if output_frames < label.size + repeats:
        return "too short for its transcript (CTC)"
    return None


@dataclasses.dataclass
class CollectedSplit:
    """The usable utterances of a split (waveforms, label ids, keys) and the skipped ones."""

    audio: list[np.ndarray] = dataclasses.field(default_factory=list)
    labels: list[np.ndarray] = dataclasses.field(default_factory=list)
    keys: list[str] = dataclasses.field(default_factory=list)
    skipped: Counter = dataclasses.field(default_factory=Counter)
    skipped_examples: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def skip(self, reason: str, key: str) -> None:
        self.skipped[reason] += 1
        examples = self.skipped_examples.setdefault(reason, [])
        if len(examples) < SKIP_EXAMPLES:
            examples.append(key)


def collect_split(
    utterances: Iterable[Utterance],
    config: LogMelConfig,
    *,
    limit: int | None,
    max_duration_s: float | None,
    ctc_stride: int,
) -> CollectedSplit:
    """The first ``limit`` usable utterances (None = all); the others skipped with a reason."""
    split = CollectedSplit()
    for utterance in utterances:
        if limit is not None and len(split.audio) >= limit:
            break
        reason = _skip_reason(utterance, config, max_duration_s, ctc_stride)
        if reason is not None:
            split.skip(reason, utterance.key)
            continue
        split.audio.append(np.asarray(utterance.audio, np.float32))
        split.labels.append(encode(utterance.text))
        split.keys.append(utterance.key)
    return split


def featurize(
    audio: list[np.ndarray], config: LogMelConfig, key: jax.Array | None
) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel features of every waveform, ``(x [N, T, n_mels], x_paddings [N, T])`` with T
    the longest utterance's frame count. Chunks of similar length (sorted), each padded to a
    multiple of ``LENGTH_BUCKET`` samples; ``key`` (dither) is folded with the utterance
    index, so the features do not depend on the chunking."""
    lengths = np.array([a.size for a in audio], np.int64)
    frames = np.asarray(num_frames(lengths, config)).astype(np.int64)
    x = np.zeros((len(audio), int(frames.max()), config.n_mels), np.float32)
    paddings = np.ones(x.shape[:2], np.float32)
    compute = jax.jit(_features_of_chunk, static_argnums=(3,))
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), CHUNK):
        index = order[start : start + CHUNK]
        width = int(math.ceil(lengths[index].max() / LENGTH_BUCKET) * LENGTH_BUCKET)
        batch = np.zeros((CHUNK, width), np.float32)
        for row, i in enumerate(index):
            batch[row, : lengths[i]] = audio[i]
        chunk_lengths = np.zeros(CHUNK, np.int32)
        chunk_lengths[: len(index)] = lengths[index]
        keys = (
            None
            if key is None
            else jax.vmap(lambda i: jax.random.fold_in(key, i))(
                jnp.asarray(np.pad(index, (0, CHUNK - len(index))))
            )
        )
        feats, pads = compute(jnp.asarray(batch), jnp.asarray(chunk_lengths), keys, config)
        feats, pads = np.asarray(feats), np.asarray(pads)
        for row, i in enumerate(index):
            x[i, : frames[i]] = feats[row, : frames[i]]
            paddings[i, : frames[i]] = pads[row, : frames[i]]
    return x, paddings


def _features_of_chunk(
    waveforms: jax.Array, lengths: jax.Array, keys: jax.Array | None, config: LogMelConfig
) -> tuple[jax.Array, jax.Array]:
    if keys is None:
        return log_mel(waveforms, lengths, config)
    # One dither key per utterance: vmap log_mel over single-utterance batches.
    one = jax.vmap(lambda w, n, k: log_mel(w[None], n[None], config, k))
    feats, pads = one(waveforms, lengths, keys)
    return feats[:, 0], pads[:, 0]


def pad_sequences(
    rows: Sequence[Sequence[int] | np.ndarray], width: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Integer sequences left-aligned in ``[N, width]`` int32 (0 past the end) with their
    paddings float32 (1 = padding, trailing); ``width`` None = the longest row."""
    width = max((len(row) for row in rows), default=0) if width is None else width
    ids = np.zeros((len(rows), width), np.int32)
    paddings = np.ones((len(rows), width), np.float32)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        paddings[i, : len(row)] = 0.0
    return ids, paddings


def build_dataset(
    name: str,
    source: str,
    splits: Mapping[str, CollectedSplit],
    config: LogMelConfig,
    dither_seed: int,
    metadata: Mapping[str, Any],
) -> ArrayDataset:
    """The ArrayDataset of collected splits (``train`` and ``test`` required)."""
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for i, (split_name, split) in enumerate(splits.items()):
        if not split.audio:
            raise ConfigError(
                f"data: the {split_name} split of {source} has no usable utterance "
                f"(skipped: {dict(split.skipped) or 'none'})"
            )
        key = jax.random.fold_in(jax.random.key(dither_seed), i) if config.dither > 0 else None
        x, x_paddings = featurize(split.audio, config, key)
        y, y_paddings = pad_sequences(split.labels)
        arrays[split_name] = {"x": x, "y": y, "x_paddings": x_paddings, "y_paddings": y_paddings}
    extras = ("x_paddings", "y_paddings")
    validation = arrays.get("validation")
    return ArrayDataset(
        name=name,
        x_train=arrays["train"]["x"],
        y_train=arrays["train"]["y"],
        x_test=arrays["test"]["x"],
        y_test=arrays["test"]["y"],
        num_classes=NUM_LABELS,
        source=source,
        metadata={
            **metadata,
            "features": dataclasses.asdict(config),
            "utterances": {s: len(split.audio) for s, split in splits.items()},
            "hours": {
                s: round(sum(a.size for a in split.audio) / config.sample_rate / 3600, 4)
                for s, split in splits.items()
            },
            "skipped": {
                s: {"counts": dict(split.skipped), "examples": split.skipped_examples}
                for s, split in splits.items()
            },
        },
        extras_train={k: arrays["train"][k] for k in extras},
        extras_test={k: arrays["test"][k] for k in extras},
        x_validation=None if validation is None else validation["x"],
        y_validation=None if validation is None else validation["y"],
        extras_validation={} if validation is None else {k: validation[k] for k in extras},
    )


def _corpus_dir(path: str) -> Path:
    corpus = Path(path).expanduser()
    if not corpus.is_dir():
        raise ConfigError(
            f"data.path: corpus directory {corpus} not found (build one with "
            f"`python -m repro.data.speech build --out {corpus} --hours 1`)"
        )
    return corpus


def _corpus_info(corpus: Path, config: LogMelConfig) -> dict[str, Any]:
    info_path = corpus / "corpus.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    rate = info.get("sample_rate")
    if rate is not None and int(rate) != config.sample_rate:
        raise ConfigError(
            f"data.features.sample_rate={config.sample_rate} but the corpus {corpus} is "
            f"sampled at {rate} Hz: set data.features.sample_rate={rate}"
        )
    return info


def load_speech_corpus(
    path: str,
    *,
    features: Mapping[str, Any] | None = None,
    n_train: int | None = None,
    n_validation: int | None = None,
    n_test: int | None = None,
    max_duration_s: float | None = None,
    ctc_stride: int = 2,
    dither_seed: int = 0,
    validation: bool = True,
) -> ArrayDataset:
    """A corpus directory as an ArrayDataset (module docstring). ``n_*`` keep the first
    usable utterances of a split (None = all); ``validation=False`` leaves the validation
    split out; ``features`` are ``LogMelConfig`` fields."""
    config = LogMelConfig(**(features or {}))
    corpus = _corpus_dir(path)
    info = _corpus_info(corpus, config)
    limits = {"train": n_train, "validation": n_validation, "test": n_test}
    names = [s for s in SPLITS if s != "validation" or validation]
    splits = {
        s: collect_split(
            manifest_utterances(corpus, s),
            config,
            limit=limits[s],
            max_duration_s=max_duration_s,
            ctc_stride=ctc_stride,
        )
        for s in names
    }
    metadata = {
        "corpus": str(corpus),
        "corpus_format": info.get("format_version"),
        "manifest_sha256": {
            s: split.get("manifest_sha256") for s, split in info.get("splits", {}).items()
        },
        "ctc_stride": ctc_stride,
        "max_duration_s": max_duration_s,
    }
    return build_dataset(
        "speech_corpus", f"corpus:{corpus.name}", splits, config, dither_seed, metadata
    )

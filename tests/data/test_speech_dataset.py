"""The speech-corpus loader: features and labels of every usable utterance, counted skips of
bad ones (never NaN features), one-line errors for a missing corpus, and the TFDS LibriSpeech
path on a locally prepared `librispeech`.

The corpora here are written by hand (tones at 16 kHz, NeMo-style manifests), so the loader
is tested independently of the espeak-ng builder (tests/data/test_speech_corpus.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from repro.data.speech.dataset import load_speech_corpus
from repro.data.speech.features import LogMelConfig, log_mel, num_frames
from repro.data.speech.vocabulary import decode, encode
from repro.errors import ConfigError
from tests.data.speech_helpers import RATE, good_utterances, tone, write_tfds_librispeech

# Features of one utterance computed alone vs inside a batch padded to another length: float32
# FFT/matmul sums in another order; normalized log-mels then differ by up to 1.7e-5 (measured).
ATOL = 1e-4


def _write_corpus(root: Path, splits: dict[str, list[tuple[str, np.ndarray | None, int]]]):
    """Each entry (text, audio or None for an unreadable file, sample rate)."""
    root.mkdir()
    for split, entries in splits.items():
        (root / split).mkdir()
        lines = []
        for i, (text, audio, rate) in enumerate(entries):
            rel = f"{split}/{i:04d}.wav"
            if audio is None:
                (root / rel).write_bytes(b"not a wav file")
            else:
                soundfile.write(root / rel, audio, rate, subtype="PCM_16")
            duration = 0.0 if audio is None else len(audio) / rate
            lines.append(json.dumps({"audio_filepath": rel, "duration": duration, "text": text}))
        (root / f"manifest_{split}.jsonl").write_text("\n".join(lines) + "\n")
    (root / "corpus.json").write_text(json.dumps({"format_version": 1, "sample_rate": RATE}))
    return root


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    train = [
        *good_utterances(5, 0),
        ("eight", None, RATE),  # unreadable
        ("nine", np.zeros(0, np.float32), RATE),  # empty audio
        ("zero", tone(1.0, 400, 9)[::2], RATE // 2),  # wrong sample rate
        ("Caf\u00e9 #1", tone(1.0, 400, 10), RATE),  # characters outside the vocabulary
        ("   ", tone(1.0, 400, 11), RATE),  # empty transcript
        ("a very long transcript for a tiny clip", tone(0.05, 400, 12), RATE),  # too short
    ]
    return _write_corpus(
        tmp_path / "corpus",
        {"train": train, "validation": good_utterances(2, 50), "test": good_utterances(3, 100)},
    )


def test_features_and_labels_of_usable_utterances(corpus: Path) -> None:
    data = load_speech_corpus(str(corpus), features={"dither": 0.0})
    assert data.x_train.shape[0] == 5 and data.x_test.shape[0] == 3
    assert data.x_validation.shape[0] == 2
    config = LogMelConfig(dither=0.0)
    audio, _ = soundfile.read(corpus / "train/0002.wav", dtype="float32")
    want, _ = log_mel(audio[None], np.array([audio.size]), config)
    frames = int(num_frames(audio.size, config))
    np.testing.assert_allclose(data.x_train[2, :frames], np.asarray(want)[0], atol=ATOL)
    assert (data.extras_train["x_paddings"][2, :frames] == 0).all()
    assert (data.extras_train["x_paddings"][2, frames:] == 1).all()
    assert (data.x_train[2, frames:] == 0).all()
    labels = data.y_train[2][data.extras_train["y_paddings"][2] < 0.5]
    assert decode(labels) == "four five six"
    np.testing.assert_array_equal(labels, encode("four five six"))
    assert np.isfinite(data.x_train).all() and np.isfinite(data.x_validation).all()
    assert data.num_classes == 28


def test_bad_utterances_are_skipped_and_counted(corpus: Path) -> None:
    data = load_speech_corpus(str(corpus))
    skipped = data.metadata["skipped"]["train"]["counts"]
    assert skipped == {
        "unreadable audio file": 1,
        "empty audio": 1,
        f"sample rate {RATE // 2} != {RATE}": 1,
        "characters outside vocabulary": 1,
        "empty transcript": 1,
        "too short for its transcript (CTC)": 1,
    }
    assert data.metadata["skipped"]["train"]["examples"]["empty audio"] == ["train/0006.wav"]
    assert data.metadata["skipped"]["test"]["counts"] == {}
    assert data.metadata["utterances"] == {"train": 5, "validation": 2, "test": 3}


def test_limits_and_dither(corpus: Path) -> None:
    a = load_speech_corpus(str(corpus), n_train=2, validation=False, dither_seed=0)
    b = load_speech_corpus(str(corpus), n_train=2, validation=False, dither_seed=0)
    c = load_speech_corpus(str(corpus), n_train=2, validation=False, dither_seed=1)
    assert a.x_train.shape[0] == 2 and a.x_validation is None
    np.testing.assert_array_equal(a.x_train, b.x_train)  # deterministic in the seed
    assert not np.array_equal(a.x_train, c.x_train)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("missing_dir", "corpus directory"),
        ("missing_manifest", "manifest_test.jsonl not found"),
        ("rate", "sampled at 8000 Hz"),
        ("all_bad", "the test split"),
    ],
)
def test_bad_corpus_is_one_line_config_error(corpus: Path, change: str, message: str) -> None:
    path = corpus
    if change == "missing_dir":
        path = corpus.parent / "nowhere"
    elif change == "missing_manifest":
        (corpus / "manifest_test.jsonl").unlink()
    elif change == "rate":
        (corpus / "corpus.json").write_text(json.dumps({"sample_rate": 8000}))
    else:
        (corpus / "manifest_test.jsonl").write_text(
            json.dumps({"audio_filepath": "test/none.wav", "duration": 1.0, "text": "x"}) + "\n"
        )
    with pytest.raises(ConfigError, match=message) as info:
        load_speech_corpus(str(path))
    assert "\n" not in str(info.value)


def test_librispeech_tfds_path_reads_a_locally_prepared_librispeech(tmp_path, no_network):
    pytest.importorskip("tensorflow_datasets")
    from repro.data.speech.librispeech import load_librispeech_tfds

    splits = {
        "train_clean100": good_utterances(4, 0),
        "dev_clean": good_utterances(2, 50),
        "test_clean": good_utterances(3, 9),
    }
    write_tfds_librispeech(tmp_path, splits)
    data = load_librispeech_tfds(str(tmp_path), features={"dither": 0.0})
    assert data.source.startswith("tfds:librispeech:")
    assert data.metadata["utterances"] == {"train": 4, "test": 3, "validation": 2}
    texts = {
        decode(y[p < 0.5])
        for y, p in zip(data.y_train, data.extras_train["y_paddings"], strict=True)
    }
    assert texts == {"one two", "three", "four five six", "it's seven"}
    # The same audio through the corpus loader gives the same features (int16 rounding aside).
    audio = np.round(splits["test_clean"][1][1] * 32767).astype(np.int16) / 32768.0
    want, _ = log_mel(
        audio[None].astype(np.float32), np.array([audio.size]), LogMelConfig(dither=0.0)
    )
    frames = int(num_frames(audio.size, LogMelConfig()))
    np.testing.assert_allclose(data.x_test[1, :frames], np.asarray(want)[0], atol=ATOL)

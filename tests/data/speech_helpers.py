"""Hand-made speech data for tests: tones at 16 kHz, and a TFDS `librispeech` prepared from
them with TFDS's own writer (offline), so the TFDS path is exercised without LibriSpeech."""

from __future__ import annotations

from pathlib import Path

import numpy as np

RATE = 16000
TEXTS = ("one two", "three", "four five six", "it's seven")


def tone(seconds: float, freq: float, seed: int) -> np.ndarray:
    """A sine of ``freq`` Hz plus a little noise, float32 at RATE."""
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(seed)
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


def good_utterances(n: int, seed: int) -> list[tuple[str, np.ndarray, int]]:
    """n (text, audio, sample rate) entries, every one usable."""
    return [(TEXTS[i % 4], tone(0.6 + 0.3 * i, 300 + 50 * i, seed + i), RATE) for i in range(n)]


def write_tfds_librispeech(
    data_dir: Path, splits: dict[str, list[tuple[str, np.ndarray, int]]]
) -> Path:
    """`librispeech` (the catalogue builder's name, config and version) prepared in
    ``data_dir`` from ``splits`` (TFDS split name -> entries); transcripts upper-cased as in
    LibriSpeech."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets import dataset_builders

    version = str(tfds.builder("librispeech", data_dir=str(data_dir / "probe")).version)
    features = tfds.features.FeaturesDict(
        {
            "speech": tfds.features.Audio(shape=(None,), dtype=np.int16, sample_rate=RATE),
            "text": tfds.features.Text(),
            "speaker_id": np.int64,
            "chapter_id": np.int64,
            "id": np.str_,
        }
    )

    def examples(entries: list, split: str) -> list:
        rows = []
        for i, (text, audio, _) in enumerate(entries):
            pcm = np.round(audio * 32767).astype(np.int16)
            key = f"{split}-{i}"
            rows.append(
                (
                    key,
                    {
                        "speech": pcm,
                        "text": text.upper(),
                        "speaker_id": 1,
                        "chapter_id": 2,
                        "id": key,
                    },
                )
            )
        return rows

    dataset_builders.store_as_tfds_dataset(
        name="librispeech",
        version=version,
        config="default",
        features=features,
        split_datasets={k: examples(v, k) for k, v in splits.items()},
        data_dir=str(data_dir),
    )
    return data_dir

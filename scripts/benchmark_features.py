"""Log-mel features of a batch: our jitted JAX ``log_mel`` vs librosa, side by side in one run.

    .venv/bin/python scripts/benchmark_features.py [--batch 32] [--min-s 1] [--max-s 15]
        [--rounds 5] [--json out.json]

Audio: ``--batch`` utterances of uniform random durations in [min-s, max-s] seconds at 16 kHz
(a chirp plus noise, float32), padded to the longest. Settings: NVIDIA's Jasper/QuartzNet
(repro.data.speech.features.LogMelConfig: 20 ms symmetric Hann window, 10 ms hop, n_fft 512,
64 Slaney mels, pre-emphasis 0.97, log(mel + 2^-24)). Timed per batch:

  jax raw     ``log_mel`` with dither 0, normalize="none": the same work as librosa's column
  jax full    ``log_mel`` with the defaults (dither from a key, per-feature normalization)
  librosa     per utterance: ``librosa.effects.preemphasis`` + ``librosa.feature.melspectrogram``
              (center=True, constant padding, power 2) + ``np.log(mel + 2^-24)``, float32

The JAX calls are timed after compilation, to ``block_until_ready``, on the padded batch
(padding frames are computed too); librosa works on each utterance's own length. Rounds
interleave the three; printed are medians over rounds of ms per batch, the real-time factor
(seconds of audio per second), and the median of the per-round ratios librosa / jax, so the
ratio compares timings taken side by side on a shared machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import jax
import librosa
import numpy as np
import scipy.signal

from repro.data.speech.features import LogMelConfig, hann_window, log_mel
from repro.engine.runtime import usable_cores

FULL = LogMelConfig()
RAW = dataclasses.replace(FULL, dither=0.0, normalize="none")


def make_audio(batch: int, min_s: float, max_s: float, seed: int) -> list[np.ndarray]:
    """Utterances float32: a 100 Hz -> 7 kHz chirp of amplitude 0.5 plus N(0, 0.01^2)."""
    rng = np.random.default_rng(seed)
    sr = FULL.sample_rate
    signals = []
    for duration in rng.uniform(min_s, max_s, batch):
        t = np.arange(round(duration * sr)) / sr
        chirp = 0.5 * scipy.signal.chirp(t, f0=100.0, t1=t[-1], f1=7000.0)
        signals.append((chirp + 0.01 * rng.standard_normal(len(t))).astype(np.float32))
    return signals


def pad(signals: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(s) for s in signals], np.int32)
    batch = np.zeros((len(signals), lengths.max()), np.float32)
    for row, s in zip(batch, signals, strict=True):
        row[: len(s)] = s
    return batch, lengths


def librosa_log_mel(signals: list[np.ndarray], config: LogMelConfig = RAW) -> list[np.ndarray]:
    window = hann_window(config)
    out = []
    for x in signals:
        y = librosa.effects.preemphasis(x, coef=config.preemphasis, zi=0.0)
        mel = librosa.feature.melspectrogram(
            y=y,
            sr=config.sample_rate,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            win_length=config.win_length,
            window=window,
            center=True,
            pad_mode="constant",
            power=2.0,
            n_mels=config.n_mels,
            fmin=config.fmin,
            fmax=config.upper_frequency,
            norm="slaney",
            htk=False,
        )
        out.append(np.log(mel + config.log_guard))
    return out


def timed(fn: Callable[[], object]) -> float:
    """Milliseconds of one call, waiting for JAX results."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--min-s", type=float, default=1.0)
    parser.add_argument("--max-s", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the medians here")
    args = parser.parse_args()

    signals = make_audio(args.batch, args.min_s, args.max_s, args.seed)
    waveforms, lengths = pad(signals)
    audio_s = lengths.sum() / FULL.sample_rate
    key = jax.random.key(args.seed)
    print(
        f"jax {jax.__version__} ({jax.devices()[0].platform}), librosa {librosa.__version__}, "
        f"{usable_cores()} cores; {args.batch} utterances, {audio_s:.0f} s of audio, "
        f"padded to {waveforms.shape[1] / FULL.sample_rate:.1f} s"
    )
    variants: dict[str, Callable[[], object]] = {
        "jax raw": lambda: log_mel(waveforms, lengths, RAW),
        "jax full": lambda: log_mel(waveforms, lengths, FULL, key),
        "librosa": lambda: librosa_log_mel(signals),
    }
    compile_ms = {name: timed(fn) for name, fn in variants.items()}  # compile + warm up
    print("first call (compile) ms: " + ", ".join(f"{k} {v:.0f}" for k, v in compile_ms.items()))

    # Sanity: the timed programs compute the same features (valid frames).
    ours = np.asarray(log_mel(waveforms, lengths, RAW)[0])
    theirs = librosa_log_mel(signals)
    diff = max(np.abs(ours[i, : ref.shape[1]] - ref.T).max() for i, ref in enumerate(theirs))
    print(f"max |jax raw - librosa| over valid frames (log domain): {diff:.1e}")

    times: dict[str, list[float]] = {name: [] for name in variants}
    ratios: dict[str, list[float]] = {"librosa / jax raw": [], "librosa / jax full": []}
    for _ in range(args.rounds):
        now = {name: timed(fn) for name, fn in variants.items()}
        for name, value in now.items():
            times[name].append(value)
        ratios["librosa / jax raw"].append(now["librosa"] / now["jax raw"])
        ratios["librosa / jax full"].append(now["librosa"] / now["jax full"])

    print(f"\n{args.rounds} rounds   ms per batch (median)   audio s per s")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, ms in medians.items():
        print(f"  {name:<10}{ms:18.1f}{audio_s / (ms / 1e3):18.0f}")
    print("ratios (median of per-round ratios):")
    ratio_medians = {label: statistics.median(values) for label, values in ratios.items()}
    for label, value in ratio_medians.items():
        print(f"  {label:<20}{value:7.2f}")
    if args.json is not None:
        record = {"ms_per_batch": medians, "ratios": ratio_medians, "audio_s": float(audio_s)}
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()

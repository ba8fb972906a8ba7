"""Log-mel features (repro.data.speech.features) against librosa, and SpecAugment's masks."""

from __future__ import annotations

import dataclasses
import warnings

import jax
import numpy as np
import pytest
import scipy.signal

from repro.data.speech.features import (
    LogMelConfig,
    hann_window,
    log_mel,
    mel_filterbank,
    num_frames,
    spec_augment,
)

librosa = pytest.importorskip("librosa")

SR = 16000
RAW = LogMelConfig(dither=0.0, normalize="none")  # log-mel before normalization, no dither
NORMALIZED = LogMelConfig(dither=0.0)
# A few lengths: shorter than one window, exactly 1 s, and lengths not multiples of the hop.
LENGTHS = (100, 16000, 16037, 24001)

# Measured worst cases (float32 JAX vs float64 librosa, LENGTHS and this audio, XLA:CPU):
# max |log-mel difference| 1.07e-3, at mel bin 0 of quiet frames (mel energy ~1e-7, 1e-9 of the
# frame's peak: float32 FFT rounding, relative to the frame's energy, dominates there; librosa
# itself in float32 is off by 2e-4); relative to each frame's largest mel energy, the linear
# difference is at most 6.7e-7 (~6 float32 eps). Tolerances with a margin of about 3x / 7x:
LOG_ATOL = 3e-3
LINEAR_RTOL_OF_FRAME_MAX = 5e-6


def chirp_with_noise(num_samples: int, seed: int = 0) -> np.ndarray:
    """float32 [num_samples]: a 100 Hz -> 7 kHz linear chirp of amplitude 0.5 plus N(0, 0.01^2)."""
    t = np.arange(num_samples) / SR
    duration = max(t[-1], 1.0 / SR)
    chirp = 0.5 * scipy.signal.chirp(t, f0=100.0, t1=duration, f1=7000.0)
    noise = 0.01 * np.random.default_rng(seed).standard_normal(num_samples)
    return (chirp + noise).astype(np.float32)


def librosa_preemphasis(x: np.ndarray) -> np.ndarray:
    # zi=0: librosa's filter state before x[0] is 0, so y[0] = x[0] (NeMo's convention); the
    # default zi = 2 x[0] - x[1] would change y[0].
    return librosa.effects.preemphasis(x.astype(np.float64), coef=0.97, zi=0.0)


def librosa_log_mel(x: np.ndarray) -> np.ndarray:
    """[T, 64] float64: the reference log-mel of one utterance (Jasper's settings)."""
    window = scipy.signal.windows.hann(320, sym=True)  # NeMo: torch.hann_window(periodic=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_fft larger than a very short signal
        mel = librosa.feature.melspectrogram(
            y=librosa_preemphasis(x),
            sr=SR,
            n_fft=512,
            hop_length=160,
            win_length=320,
            window=window,
            center=True,
            pad_mode="constant",
            power=2.0,
            n_mels=64,
            fmin=0,
            fmax=8000,
            norm="slaney",
            htk=False,
        )
    return np.log(mel + 2.0**-24).T


def ours(x: np.ndarray, config: LogMelConfig = RAW, key: jax.Array | None = None) -> np.ndarray:
    features, paddings = log_mel(x[None], np.array([len(x)], np.int32), config, key)
    assert not np.asarray(paddings).any()
    return np.asarray(features[0])


def padded_batch(signals: list[np.ndarray], fill: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(s) for s in signals], np.int32)
    batch = np.full((len(signals), lengths.max()), fill, np.float32)
    for row, s in zip(batch, signals, strict=True):
        row[: len(s)] = s
    return batch, lengths


@pytest.fixture(scope="module")
def signals() -> list[np.ndarray]:
    return [chirp_with_noise(n, seed=i) for i, n in enumerate(LENGTHS)]


# ---------------------------------------------------------------- against librosa / numpy


def test_window_and_filterbank_are_nemo_and_librosa() -> None:
    np.testing.assert_allclose(
        hann_window(RAW), scipy.signal.windows.hann(320, sym=True), atol=1e-7
    )
    fb = mel_filterbank(RAW)
    assert fb.shape == (257, 64) and fb.dtype == np.float32
    expected = librosa.filters.mel(sr=SR, n_fft=512, n_mels=64, fmin=0, fmax=8000, norm="slaney")
    np.testing.assert_array_equal(fb, expected.T)
    assert mel_filterbank(LogMelConfig()) is fb  # cached (equal configs share it)
    assert not fb.flags.writeable


@pytest.mark.parametrize("num_samples", [1, 159, 160, 161, 1000, 16000, 16037])
def test_frame_count_matches_librosa(num_samples: int) -> None:
    x = chirp_with_noise(num_samples)
    assert num_frames(num_samples, RAW) == librosa_log_mel(x).shape[0] == num_samples // 160 + 1
    assert ours(x).shape == (num_samples // 160 + 1, 64)


def test_log_mel_matches_librosa(signals: list[np.ndarray]) -> None:
    worst_log, worst_linear = 0.0, 0.0
    for x in signals:
        mine, ref = ours(x).astype(np.float64), librosa_log_mel(x)
        assert mine.shape == ref.shape
        worst_log = max(worst_log, np.abs(mine - ref).max())
        frame_max = np.exp(ref).max(axis=1, keepdims=True)
        worst_linear = max(worst_linear, (np.abs(np.exp(mine) - np.exp(ref)) / frame_max).max())
    assert worst_log <= LOG_ATOL, worst_log
    assert worst_linear <= LINEAR_RTOL_OF_FRAME_MAX, worst_linear


def test_preemphasis_keeps_first_sample_like_librosa_zi0() -> None:
    # Without pre-emphasis our features are of x; with it they must equal those of librosa's
    # pre-emphasised x (so the filter, and y[0] = x[0], are librosa's with zi = 0).
    x = chirp_with_noise(4000)
    y = librosa_preemphasis(x)
    assert y[0] == x[0]
    np.testing.assert_allclose(y[1:], x[1:] - 0.97 * x[:-1].astype(np.float64), atol=1e-7)
    plain = dataclasses.replace(RAW, preemphasis=0.0)
    np.testing.assert_allclose(ours(y.astype(np.float32), plain), ours(x, RAW), atol=LOG_ATOL)


def test_per_feature_normalization_matches_numpy(signals: list[np.ndarray]) -> None:
    for x in signals:
        raw = ours(x, RAW).astype(np.float64)
        ddof = 1 if len(raw) > 1 else 0  # one frame: we divide by 1 (NeMo would divide by 0)
        expected = (raw - raw.mean(axis=0)) / (raw.std(axis=0, ddof=ddof) + 1e-5)
        np.testing.assert_allclose(ours(x, NORMALIZED), expected, atol=2e-4, rtol=1e-4)


# ---------------------------------------------------------------- batches and padding


@pytest.mark.parametrize("config", [RAW, NORMALIZED], ids=["raw", "per_feature"])
def test_padded_batch_equals_each_utterance_alone(signals, config: LogMelConfig) -> None:
    # Garbage past each length must be ignored as well as zeros are.
    batch, lengths = padded_batch(signals, fill=0.3)
    features, paddings = (np.asarray(a) for a in log_mel(batch, lengths, config))
    frames = num_frames(lengths, config)
    assert features.shape == (len(signals), int(num_frames(batch.shape[1], config)), 64)
    for i, x in enumerate(signals):
        np.testing.assert_array_equal(paddings[i], np.arange(features.shape[1]) >= frames[i])
        np.testing.assert_allclose(features[i, : frames[i]], ours(x, config), atol=1e-5, rtol=1e-5)
        assert not features[i, frames[i] :].any()


def test_jit_with_static_config_and_lengths_clipped(signals) -> None:
    batch, lengths = padded_batch(signals[:2])
    jitted = jax.jit(log_mel, static_argnames="config")
    a, _ = jitted(batch, lengths, config=RAW)
    b, _ = log_mel(batch, lengths, RAW)
    np.testing.assert_array_equal(a, b)
    # lengths beyond N are clipped to N.
    c, p = log_mel(batch, np.full(2, 10**9, np.int32), RAW)
    assert not np.asarray(p).any()
    np.testing.assert_array_equal(c[1], b[1])


# ---------------------------------------------------------------- dither


def test_dither_is_deterministic_small_and_keeps_padding_zero(signals) -> None:
    batch, lengths = padded_batch(signals)
    config = dataclasses.replace(RAW, dither=1e-5)
    clean, _ = log_mel(batch, lengths, config)  # no key: no dither
    np.testing.assert_array_equal(clean, log_mel(batch, lengths, RAW)[0])
    a, pa = log_mel(batch, lengths, config, jax.random.key(1))
    b, _ = log_mel(batch, lengths, config, jax.random.key(1))
    c, _ = log_mel(batch, lengths, config, jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert np.abs(np.asarray(a) - np.asarray(c)).max() > 0
    change = np.abs(np.asarray(a) - np.asarray(clean))
    # Dither 1e-5 against noise of 1e-2: the cross term makes a relative change of the mel
    # energy of order 2 * 1e-5 / 1e-2 = 2e-3 (measured: median 6e-4, max 0.022).
    assert 0 < change.max() < 0.1 and np.median(change[np.asarray(pa) == 0]) < 5e-3
    assert not np.asarray(a)[np.asarray(pa) == 1].any()
    # Silence: without dither the valid frames are exactly log(log_guard); with it, above.
    silent, length = np.zeros((1, 3200), np.float32), np.array([1600])
    quiet, _ = log_mel(silent, length, config)
    assert (np.asarray(quiet[0, :11]) == np.float32(np.log(2.0**-24))).all()
    dithered, _ = log_mel(silent, length, config, jax.random.key(0))
    assert (np.asarray(dithered[0, :11]) > np.asarray(quiet[0, :11])).mean() > 0.5


def test_dither_only_on_valid_samples() -> None:
    # The last valid frame (10) of 1600 silent samples is centred on sample 1600: half of its
    # window covers padding. Dither only there gives half the energy of a frame inside
    # (a Hann window's halves have equal energy); dither leaking into padding would give all.
    config = dataclasses.replace(RAW, dither=0.1, preemphasis=0.0)
    silent = np.zeros((32, 3200), np.float32)  # 32 utterances: the ratio's noise averages out
    features, _ = log_mel(silent, np.full(32, 1600), config, jax.random.key(3))
    energy = np.exp(np.asarray(features, np.float64)).sum(axis=2).mean(axis=0)
    ratio = energy[10] / energy[2:9].mean()
    assert 0.4 < ratio < 0.6, ratio  # 0.95-1.02 when the whole row is valid


# ---------------------------------------------------------------- SpecAugment


def augmented_ones(key: int, lengths: np.ndarray, **widths: int) -> tuple[np.ndarray, np.ndarray]:
    """spec_augment of all-one features (0 at padding); returns (masked, paddings)."""
    frames = 200
    paddings = (np.arange(frames)[None, :] >= lengths[:, None]).astype(np.float32)
    features = np.where(paddings[..., None] == 0, 1.0, 0.0).astype(np.float32)
    features = np.broadcast_to(features, (len(lengths), frames, 64))
    out = np.asarray(spec_augment(features, paddings, jax.random.key(key), **widths))
    return out == 0, paddings


def test_spec_augment_zero_widths_or_counts_change_nothing() -> None:
    features = np.random.default_rng(0).standard_normal((3, 50, 64)).astype(np.float32)
    paddings = np.zeros((3, 50), np.float32)
    for widths in [(2, 0, 2, 0), (0, 27, 0, 40)]:
        kw = dict(
            zip(("freq_masks", "freq_width", "time_masks", "time_width"), widths, strict=True)
        )
        np.testing.assert_array_equal(
            spec_augment(features, paddings, jax.random.key(0), **kw), features
        )


def test_spec_augment_frequency_masks_statistics() -> None:
    lengths = np.full(256, 200)
    masked, _ = augmented_ones(0, lengths, freq_masks=1, freq_width=10, time_masks=0, time_width=0)
    bins = masked.all(axis=1)  # [B, 64]: a frequency mask covers every frame
    assert (masked == bins[:, None, :]).all()
    widths = bins.sum(axis=1)
    assert widths.max() <= 10 and widths.min() == 0
    # contiguous bands: at most one run of masked bins per utterance
    assert (np.diff(bins.astype(int), axis=1) == 1).sum(axis=1).max() <= 1
    # w ~ U{0..10}: mean 5, sd sqrt(10); 256 draws give a standard error of 0.2.
    assert abs(widths.mean() - 5.0) < 0.6
    # bands reach both edges and start anywhere (f0 ~ U{0..64 - w})
    assert bins[:, 0].any() and bins[:, -1].any()
    # per-utterance independence: the masks are not all the same
    assert len({tuple(row) for row in bins}) > 100
    np.testing.assert_array_equal(
        masked,
        augmented_ones(0, lengths, freq_masks=1, freq_width=10, time_masks=0, time_width=0)[0],
    )


def test_spec_augment_time_masks_stay_in_valid_frames() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, 256)
    masked, paddings = augmented_ones(
        1, lengths, freq_masks=0, freq_width=0, time_masks=2, time_width=20
    )
    frames = masked.all(axis=2)  # [B, T]: a time mask covers every mel bin
    assert (masked == frames[..., None]).all()
    # at most 2 x 20 masked valid frames per utterance, never more than it has
    per_utterance = (frames & (paddings == 0)).sum(axis=1)
    assert (per_utterance <= np.minimum(40, lengths)).all() and per_utterance.max() > 20
    # one mask: w ~ U{0..20} (clipped to L); for L >= 20 the mean is 10 (standard error 0.38).
    one, _ = augmented_ones(
        2, np.full(256, 150), freq_masks=0, freq_width=0, time_masks=1, time_width=20
    )
    widths = one.all(axis=2)[:, :150].sum(axis=1)  # the 50 padding frames are 0 anyway
    assert widths.max() <= 20 and widths.min() == 0 and abs(widths.mean() - 10.0) < 1.2
    # 5 valid frames, width up to 20: the span is clipped to the 5 frames and often covers all
    short, _ = augmented_ones(
        3, np.full(256, 5), freq_masks=0, freq_width=0, time_masks=1, time_width=20
    )
    covered = short.all(axis=2)[:, :5].sum(axis=1)
    assert covered.max() == 5 and (covered == 5).mean() > 0.5


def test_spec_augment_masks_never_touch_padding_values() -> None:
    # Padding frames with non-zero values (not log_mel's output) show where masks fall.
    features = np.ones((64, 100, 8), np.float32)
    lengths = np.random.default_rng(1).integers(1, 100, 64)
    paddings = (np.arange(100)[None, :] >= lengths[:, None]).astype(np.float32)
    out = np.asarray(
        spec_augment(
            features,
            paddings,
            jax.random.key(4),
            freq_masks=0,
            freq_width=0,
            time_masks=3,
            time_width=30,
        )
    )
    assert (out[paddings == 1] == 1).all()
    assert (out[paddings == 0] == 0).any()


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"window_s": 0.04}, "window_s"),  # 640 samples > n_fft 512
        ({"window_s": 0.0}, "window_s"),
        ({"hop_s": 0.0}, "hop_s"),
        ({"hop_s": -0.01}, "hop_s"),
        ({"hop_s": 1e-5}, "hop_s"),  # rounds to 0 samples
        ({"n_fft": 511}, "n_fft"),
        ({"n_fft": 512.0}, "n_fft"),
        ({"n_mels": 0}, "n_mels"),
        ({"sample_rate": True}, "sample_rate"),
        ({"fmax": 9000.0}, "fmax"),
        ({"fmin": 8000.0}, "fmin"),
        ({"fmin": -1.0}, "fmin"),
        ({"preemphasis": 1.0}, "preemphasis"),
        ({"dither": -1e-5}, "dither"),
        ({"log_guard": 0.0}, "log_guard"),
        ({"normalize": "all_features"}, "normalize"),
    ],
)
def test_bad_config_raises_naming_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        LogMelConfig(**overrides)


def test_default_config_is_jasper() -> None:
    c = LogMelConfig()
    assert (c.sample_rate, c.win_length, c.hop_length, c.n_fft) == (16000, 320, 160, 512)
    assert (c.n_mels, c.fmin, c.upper_frequency, c.normalize) == (64, 0.0, 8000.0, "per_feature")
    assert (c.preemphasis, c.dither, c.log_guard) == (0.97, 1e-5, 2.0**-24)
    assert hash(c) == hash(LogMelConfig())  # hashable: a static jit argument


def test_spec_augment_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="time_width"):
        spec_augment(
            np.zeros((1, 4, 8)),
            np.zeros((1, 4)),
            jax.random.key(0),
            freq_masks=1,
            freq_width=2,
            time_masks=1,
            time_width=-1,
        )

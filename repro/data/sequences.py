"""Synthetic speech-like sequence data for CTC models (numpy, deterministic in ``seed``).

An utterance is a label sequence ``y = (y_1..y_L)``, ``L ~ U{min_tokens..max_tokens}``,
``y_i ~ U{1..vocab_size}`` (0 is kept for the CTC blank), rendered as frames of
``num_features`` features:

    [gap] token y_1 [gap] token y_2 ... [gap] token y_L        gap ~ U{0..max_gap_frames}
    token v over n ~ U{min_frames..max_frames_per_token} frames: onset_v, body_v, ..., body_v

every frame plus ``noise_std * N(0, I)``, silence (gap) frames being noise only. The per-token
patterns ``onset_v, body_v ~ N(0, I)`` are drawn once from ``seed``, shared by both splits.
The onset frame marks where a token starts, so ``1 1`` (two tokens) and ``1`` (one long one)
differ even without a gap, as a speech onset would. Frames are padded with zeros to a fixed
``max_frames`` T (default: the longest possible utterance).

Arrays: ``x`` float32 [N, T, F], ``y`` int32 [N, max_tokens] (0 past the end), extras
``x_paddings`` float32 [N, T] and ``y_paddings`` float32 [N, max_tokens] (1 = padding,
trailing). ``num_classes = vocab_size`` (a CTC model has vocab_size + 1 outputs).
An empty transcript has token error rate 1, the chance-level reference for learning.

Train and test come from independent child streams of ``np.random.SeedSequence(seed)``, so
``num_test`` does not change the training set.
"""

from __future__ import annotations

import numpy as np

from repro.data.dataset import ArrayDataset
from repro.data.synthetic import _check_int, _check_nonnegative, _split_rngs


def _check_order(low_name: str, low: int, high_name: str, high: int) -> None:
    if low > high:
        raise ValueError(f"{low_name} must be <= {high_name}={high}, got {low}")


def _render(
    rng: np.random.Generator,
    n: int,
    templates: np.ndarray,
    *,
    min_tokens: int,
    max_tokens: int,
    min_frames: int,
    max_frames_per_token: int,
    max_gap_frames: int,
    noise_std: float,
    max_frames: int,
) -> dict[str, np.ndarray]:
    vocab_size, _, num_features = templates.shape
    x = np.zeros((n, max_frames, num_features), np.float32)
    x_paddings = np.ones((n, max_frames), np.float32)
    y = np.zeros((n, max_tokens), np.int32)
    y_paddings = np.ones((n, max_tokens), np.float32)
    for i in range(n):
        length = int(rng.integers(min_tokens, max_tokens + 1))
        tokens = rng.integers(1, vocab_size + 1, length)
        frames = []
        for token in tokens:
            frames.append(np.zeros((int(rng.integers(0, max_gap_frames + 1)), num_features)))
            count = int(rng.integers(min_frames, max_frames_per_token + 1))
            onset, body = templates[token - 1]
            frames.append(np.vstack([onset[None], np.repeat(body[None], count - 1, axis=0)]))
        clean = np.vstack(frames)
        num = len(clean)
        x[i, :num] = clean + noise_std * rng.standard_normal(clean.shape)
        x_paddings[i, :num] = 0.0
        y[i, :length] = tokens
        y_paddings[i, :length] = 0.0
    return {"x": x, "x_paddings": x_paddings, "y": y, "y_paddings": y_paddings}


def make_synthetic_speech(
    *,
    num_train: int = 2048,
    num_test: int = 512,
    vocab_size: int = 8,
    min_tokens: int = 2,
    max_tokens: int = 6,
    min_frames_per_token: int = 3,
    max_frames_per_token: int = 5,
    max_gap_frames: int = 2,
    num_features: int = 16,
    noise_std: float = 0.5,
    max_frames: int | None = None,
    seed: int = 0,
) -> ArrayDataset:
    """The data set of the module docstring.

    ``max_frames`` (T) must hold the longest possible utterance,
    ``max_tokens * (max_gap_frames + max_frames_per_token)``, which is its default. With a
    model of output stride s, CTC needs ``ceil(frames / s) >= L + repeats``: tokens of at
    least ``min_frames_per_token >= s + 1`` frames guarantee it.
    """
    for key, value, low in (
        ("num_train", num_train, 1),
        ("num_test", num_test, 1),
        ("vocab_size", vocab_size, 1),
        ("min_tokens", min_tokens, 1),
        ("max_tokens", max_tokens, 1),
        ("min_frames_per_token", min_frames_per_token, 1),
        ("max_frames_per_token", max_frames_per_token, 1),
        ("max_gap_frames", max_gap_frames, 0),
        ("num_features", num_features, 1),
    ):
        _check_int(key, value, low)
    _check_order("min_tokens", min_tokens, "max_tokens", max_tokens)
    _check_order(
        "min_frames_per_token", min_frames_per_token, "max_frames_per_token", max_frames_per_token
    )
    _check_nonnegative("noise_std", noise_std)
    longest = max_tokens * (max_gap_frames + max_frames_per_token)
    if max_frames is None:
        max_frames = longest
    _check_int("max_frames", max_frames, 1)
    if max_frames < longest:
        raise ValueError(
            f"max_frames must be >= max_tokens * (max_gap_frames + max_frames_per_token) = "
            f"{longest}, got {max_frames}"
        )
    template_rng, train_rng, test_rng = _split_rngs(seed)
    templates = template_rng.standard_normal((vocab_size, 2, num_features))
    options = dict(
        min_tokens=min_tokens,
        max_tokens=max_tokens,
        min_frames=min_frames_per_token,
        max_frames_per_token=max_frames_per_token,
        max_gap_frames=max_gap_frames,
        noise_std=float(noise_std),
        max_frames=max_frames,
    )
    train = _render(train_rng, num_train, templates, **options)
    test = _render(test_rng, num_test, templates, **options)
    extras = ("x_paddings", "y_paddings")
    return ArrayDataset(
        name="synthetic_speech",
        x_train=train["x"],
        y_train=train["y"],
        x_test=test["x"],
        y_test=test["y"],
        num_classes=vocab_size,
        source=(
            f"synthetic:speech(V={vocab_size},L={min_tokens}..{max_tokens},"
            f"frames={min_frames_per_token}..{max_frames_per_token},gap<={max_gap_frames},"
            f"F={num_features},noise={noise_std},T={max_frames},seed={seed})"
        ),
        metadata={"blank_id": 0, "max_frames": max_frames, "noise_std": float(noise_std)},
        extras_train={k: train[k] for k in extras},
        extras_test={k: test[k] for k in extras},
    )

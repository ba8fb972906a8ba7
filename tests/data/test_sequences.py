"""Synthetic speech data: layout, paddings, rendering, determinism, validation."""

from __future__ import annotations

import numpy as np
import pytest

from repro.data.sequences import make_synthetic_speech

SMALL = dict(num_train=64, num_test=16, vocab_size=5, num_features=4, seed=3)


def test_layout_and_paddings() -> None:
    ds = make_synthetic_speech(**SMALL)
    frames = 6 * (2 + 5)  # max_tokens * (max_gap_frames + max_frames_per_token)
    assert ds.x_train.shape == (64, frames, 4) and ds.x_train.dtype == np.float32
    assert ds.y_train.shape == (64, 6) and ds.y_train.dtype == np.int32
    assert ds.num_classes == 5
    arrays = ds.train_arrays()
    assert set(arrays) == {"x", "y", "x_paddings", "y_paddings"}
    for split in (ds.train_arrays(), ds.test_arrays()):
        x_pad, y_pad, y = split["x_paddings"], split["y_paddings"], split["y"]
        # Trailing paddings: 0...0 1...1 per row.
        for pad in (x_pad, y_pad):
            assert np.all(np.diff(pad, axis=1) >= 0) and set(np.unique(pad)) <= {0.0, 1.0}
        lengths = (y_pad == 0).sum(1)
        assert lengths.min() >= 2 and lengths.max() <= 6
        assert np.all((y >= 1) == (y_pad == 0)) and y.max() <= 5  # 0 only as padding
        assert np.all(split["x"][x_pad > 0] == 0)
        num_frames = (x_pad == 0).sum(1)
        # Between 3 and 5 frames per token, up to 2 gap frames before each.
        assert np.all(num_frames >= 3 * lengths) and np.all(num_frames <= 7 * lengths)


def test_noise_free_frames_are_the_token_patterns() -> None:
    ds = make_synthetic_speech(**SMALL, noise_std=0.0, max_gap_frames=0)
    x, y = ds.x_train, ds.y_train
    patterns: dict[int, set] = {}
    for i in range(len(x)):
        valid = x[i][ds.extras_train["x_paddings"][i] == 0]
        distinct = [row for j, row in enumerate(valid) if j == 0 or (row != valid[j - 1]).any()]
        # onset, body per token (no gaps): 2 distinct runs per token.
        assert len(distinct) == 2 * int((y[i] > 0).sum())
        for token, onset in zip(y[i][y[i] > 0], distinct[::2], strict=True):
            patterns.setdefault(int(token), set()).add(onset.tobytes())
    assert all(len(v) == 1 for v in patterns.values())  # one onset pattern per token


def test_deterministic_and_independent_splits() -> None:
    a = make_synthetic_speech(**SMALL)
    b = make_synthetic_speech(**{**SMALL, "num_test": 40})
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    c = make_synthetic_speech(**{**SMALL, "seed": 4})
    assert not np.array_equal(a.y_train, c.y_train)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_train": 0}, r"num_train must be an integer >= 1, got 0"),
        ({"vocab_size": 0}, r"vocab_size must be an integer >= 1, got 0"),
        ({"min_tokens": 7}, r"min_tokens must be <= max_tokens=6, got 7"),
        ({"min_frames_per_token": 6}, r"min_frames_per_token must be <= max_frames_per_token=5"),
        ({"noise_std": -1.0}, r"noise_std must be a number >= 0, got -1.0"),
        ({"max_frames": 10}, r"max_frames must be >= max_tokens \* \(max_gap_frames \+ max_fr"),
        ({"seed": 1.5}, r"seed must be an integer, got 1.5"),
    ],
)
def test_bad_arguments_raise_one_line_value_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        make_synthetic_speech(**{**SMALL, **kwargs})
    assert "\n" not in str(info.value)

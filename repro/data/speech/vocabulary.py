"""The character vocabulary of the speech tasks: space, a-z, apostrophe, and the CTC blank.

The 28 labels are those of NVIDIA's Jasper/QuartzNet English configs (LibriSpeech
transcripts use exactly these after lower-casing). Our ids put the blank first, as the
engine's CTC task expects (``repro.engine.tasks.BLANK_ID = 0``):

    0 blank | 1 space | 2..27 a..z | 28 apostrophe          (29 model outputs)

A transcript is valid when it is non-empty after normalization (lower case, runs of
whitespace collapsed, stripped) and every character is one of the 28 labels.
"""

from __future__ import annotations

import numpy as np

LABELS: str = " abcdefghijklmnopqrstuvwxyz'"
BLANK_ID: int = 0
SPACE_ID: int = 1
NUM_LABELS: int = len(LABELS)  # 28; a CTC model has NUM_LABELS + 1 outputs
_ID_OF = {char: i + 1 for i, char in enumerate(LABELS)}


class TranscriptError(ValueError):
    """A transcript that is empty or holds characters outside ``LABELS``."""


def normalize(text: str) -> str:
    """Lower case, whitespace runs collapsed to one space, stripped."""
    return " ".join(text.lower().split())


def check_transcript(text: str) -> str:
    """The normalized transcript; TranscriptError naming the characters outside ``LABELS``."""
    normalized = normalize(text)
    if not normalized:
        raise TranscriptError("empty transcript")
    bad = sorted({c for c in normalized if c not in _ID_OF})
    if bad:
        raise TranscriptError(
            f"transcript {text!r} has characters outside the vocabulary: {''.join(bad)!r} "
            f"(allowed: space, a-z, apostrophe)"
        )
    return normalized


def encode(text: str) -> np.ndarray:
    """Label ids int32 [len] (1..28) of a valid transcript (``check_transcript`` first)."""
    return np.array([_ID_OF[c] for c in check_transcript(text)], np.int32)


def decode(ids: np.ndarray | list[int]) -> str:
    """Text of label ids; the blank (0) and ids out of range are dropped."""
    return "".join(LABELS[i - 1] for i in np.asarray(ids, np.int64).ravel() if 1 <= i <= NUM_LABELS)

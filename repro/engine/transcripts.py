"""Transcripts from CTC outputs, on the device: greedy decoding, normalization, words, and
Levenshtein distances, so that character and word error rates are sums the engine reduces
like any other metric (across batches, devices and replicas).

Token ids: 0 is the CTC blank (``BLANK_ID``), labels are 1..V. For text (task=asr) the
labels are the characters of ``repro.data.speech.vocabulary`` with the space at ``SPACE_ID``.

- ``greedy_ctc_frames`` / ``greedy_ctc_decode``: per-frame argmax, repeats merged, blanks
  dropped (uncompacted mask / left-aligned tokens).
- ``normalize_tokens``: a decoded transcript normalized as references are (the vocabulary's
  ``normalize``): runs of spaces become one, leading and trailing spaces go.
- ``word_hashes``: the words of a normalized transcript as two 32-bit polynomial hashes per
  word, left-aligned. A word w_0..w_{L-1} (ids in 2..V) maps to
  ``h_j = sum_k w_k * b_j^k mod 2^32`` with b_1 = 31 and b_2 = 1,000,003. With b_1 > V the
  first hash is the word's base-31 numeral, exact (no two words share it) up to 6
  characters; longer words collide only if both hashes do, for a pair of distinct words with
  probability about 2^-64. Word equality is equality of both hashes.
- ``edit_distance``: unit-cost Levenshtein distance over tokens or over hash pairs.

jiwer's corpus WER and CER on the same reference and hypothesis strings give the same
numbers (tests/engine/test_transcripts.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

BLANK_ID = 0  # CTC blank: label ids are 1..V, logits have V + 1 entries per frame
WORD_HASH_BASES: tuple[int, int] = (31, 1_000_003)


def greedy_ctc_frames(
    logits: jax.Array, paddings: jax.Array, blank_id: int = BLANK_ID
) -> tuple[jax.Array, jax.Array]:
    """Greedy CTC decoding, uncompacted: ``(ids [B, T], emitted [B, T] bool)``.

    ``ids_t = argmax_k logits_{t,k}``; frame t emits ``ids_t`` iff it is a real frame, not a
    blank and not a repeat of frame t-1 (``ids_t != ids_{t-1}``; a blank in between separates
    two equal tokens). Paddings must be trailing.
    """
    ids = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    previous = jnp.concatenate([jnp.full_like(ids[:, :1], -1), ids[:, :-1]], axis=1)
    emitted = (paddings < 0.5) & (ids != blank_id) & (ids != previous)
    return ids, emitted


def compact(ids: jax.Array, keep: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The kept entries of each row moved to the front, in order: ``(ids [B, T], paddings
    [B, T])`` with padding entries 0. ``ids`` may carry trailing axes ([B, T, K])."""
    frames = keep.shape[1]
    position = jnp.where(keep, jnp.cumsum(keep, axis=1) - 1, frames)  # frames = dropped

    def row(row_ids: jax.Array, row_position: jax.Array) -> jax.Array:
        return jnp.zeros_like(row_ids).at[row_position].set(row_ids, mode="drop")

    count = jnp.sum(keep, axis=1, keepdims=True)
    paddings = (jnp.arange(frames)[None, :] >= count).astype(jnp.float32)
    return jax.vmap(row)(ids, position), paddings


def greedy_ctc_decode(
    logits: jax.Array, paddings: jax.Array, blank_id: int = BLANK_ID
) -> tuple[jax.Array, jax.Array]:
    """Greedy CTC transcripts, left-aligned: ``(tokens [B, T] int32, token_paddings [B, T])``
    (padding entries of ``tokens`` are 0)."""
    ids, emitted = greedy_ctc_frames(logits, paddings, blank_id)
    return compact(ids, emitted)


def normalize_tokens(
    tokens: jax.Array, paddings: jax.Array, space_id: int
) -> tuple[jax.Array, jax.Array]:
    """Left-aligned ``tokens`` [B, T] without leading, trailing and repeated spaces.

    A space is kept iff the token before it is a character and a character follows somewhere
    after it: the first space of every run between two words.
    """
    valid = paddings < 0.5
    is_char = valid & (tokens != space_id)
    is_space = valid & (tokens == space_id)
    after_char = jnp.concatenate([jnp.zeros_like(is_char[:, :1]), is_char[:, :-1]], axis=1)
    chars_from_here = jnp.cumsum(is_char[:, ::-1], axis=1)[:, ::-1]
    keep = is_char | (is_space & after_char & (chars_from_here > 0))
    return compact(tokens, keep)


def word_hashes(
    tokens: jax.Array, paddings: jax.Array, space_id: int
) -> tuple[jax.Array, jax.Array]:
    """Words of normalized transcripts ``tokens`` [B, T] as hash pairs (module docstring):
    ``(hashes [B, T, 2] uint32, word_paddings [B, T])``, word i of a row at position i."""
    length = tokens.shape[1]
    positions = jnp.arange(length)
    is_char = (paddings < 0.5) & (tokens != space_id)
    after_char = jnp.concatenate([jnp.zeros_like(is_char[:, :1]), is_char[:, :-1]], axis=1)
    starts = is_char & ~after_char
    word_index = jnp.where(is_char, jnp.cumsum(starts, axis=1) - 1, length)  # length = none
    start_position = jax.lax.cummax(jnp.where(starts, positions, 0), axis=1)
    offset = jnp.clip(positions - start_position, 0, length - 1)
    lanes = []
    for base in WORD_HASH_BASES:
        powers = jnp.cumprod(jnp.full((length,), base, jnp.uint32).at[0].set(1))
        term = tokens.astype(jnp.uint32) * powers[offset]  # uint32 arithmetic wraps: mod 2^32

        def row(row_term: jax.Array, row_index: jax.Array) -> jax.Array:
            return jnp.zeros((length,), jnp.uint32).at[row_index].add(row_term, mode="drop")

        lanes.append(jax.vmap(row)(term, word_index))
    count = jnp.sum(starts, axis=1, keepdims=True)
    word_paddings = (positions[None, :] >= count).astype(jnp.float32)
    return jnp.stack(lanes, axis=-1), word_paddings


def edit_distance(
    hyp: jax.Array, hyp_paddings: jax.Array, ref: jax.Array, ref_paddings: jax.Array
) -> jax.Array:
    """Levenshtein distance (unit-cost insertions, deletions, substitutions), float32 [B].

    Dynamic programme over hypothesis positions (a ``lax.scan``), one row ``D[i, 0..L]`` at a
    time: ``D[i, j] = min(D[i-1, j] + 1, D[i, j-1] + 1, D[i-1, j-1] + [h_i != r_j])``,
    ``D[0, j] = j``. The in-row recursion ``D[i, j-1] + 1`` is a prefix minimum,
    ``D[i, j] = j + min_{k <= j}(c_k - k)`` with ``c`` the row without it (``lax.cummin``), so
    a row costs O(L) vector work. A padded hypothesis position (anywhere) leaves the row
    unchanged; reference paddings must be trailing: the result is ``D[n, len(ref)]``.
    Tokens are ids ``[B, T]``, or ``[B, T, K]`` (e.g. word hash pairs): equal iff all K match.
    """
    if ref.ndim == 2:
        ref, hyp = ref.astype(jnp.int32)[..., None], hyp.astype(jnp.int32)[..., None]
    columns = jnp.arange(ref.shape[1] + 1, dtype=jnp.int32)
    first_row = jnp.broadcast_to(columns, (ref.shape[0], columns.size))

    def next_row(row: jax.Array, inputs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        token, padded = inputs  # [B, K], [B]
        differs = jnp.any(token[:, None, :] != ref, axis=-1)
        substitute = row[:, :-1] + differs.astype(jnp.int32)
        skip_hyp = row[:, 1:] + 1
        without_left = jnp.concatenate([row[:, :1] + 1, jnp.minimum(substitute, skip_hyp)], axis=1)
        new = jax.lax.cummin(without_left - columns, axis=1) + columns
        return jnp.where(padded[:, None] > 0.5, row, new), None

    last_row, _ = jax.lax.scan(
        next_row, first_row, (jnp.moveaxis(hyp, 1, 0), jnp.moveaxis(hyp_paddings, 1, 0))
    )
    ref_length = jnp.sum(ref_paddings < 0.5, axis=1).astype(jnp.int32)
    distance = jnp.take_along_axis(last_row, ref_length[:, None], axis=1)[:, 0]
    return distance.astype(jnp.float32)


def text_errors(
    logits: jax.Array,
    logit_paddings: jax.Array,
    labels: jax.Array,
    label_paddings: jax.Array,
    space_id: int,
) -> dict[str, jax.Array]:
    """Per-utterance ``char_errors``, ``ref_chars``, ``word_errors``, ``ref_words`` (float32
    [B]) of the normalized greedy transcript against normalized references ``labels``."""
    tokens, token_paddings = greedy_ctc_decode(logits, logit_paddings)
    hyp, hyp_paddings = normalize_tokens(tokens, token_paddings, space_id)
    hyp_words, hyp_word_paddings = word_hashes(hyp, hyp_paddings, space_id)
    ref_words, ref_word_paddings = word_hashes(labels, label_paddings, space_id)
    return {
        "char_errors": edit_distance(hyp, hyp_paddings, labels, label_paddings),
        "ref_chars": jnp.sum(label_paddings < 0.5, axis=1).astype(jnp.float32),
        "word_errors": edit_distance(hyp_words, hyp_word_paddings, ref_words, ref_word_paddings),
        "ref_words": jnp.sum(ref_word_paddings < 0.5, axis=1).astype(jnp.float32),
    }

"""Word and character error rates computed on the device (repro.engine.transcripts, task=asr)
against jiwer on the same reference and hypothesis strings.

Exact equality: edit counts are integers, and jiwer's corpus rates are total edits over total
reference units, as ours (ratios of the per-utterance sums).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jiwer
import numpy as np
import pytest

from repro.data.speech.dataset import pad_sequences as _pad
from repro.data.speech.vocabulary import LABELS, SPACE_ID, decode, encode, normalize
from repro.engine.tasks import get_task
from repro.engine.transcripts import (
    BLANK_ID,
    normalize_tokens,
    text_errors,
    word_hashes,
)

ASR = get_task("asr")
WORDS = ["a", "an", "the", "cat", "cats", "don't", "it's", "seven", "zero", "oh", "ab", "ba"]
LONG_WORDS = ["abcdefghij", "abcdefghik", "internationalization", "internationalisation"]


def _raw_ids(text: str) -> np.ndarray:
    """Label ids of `text` WITHOUT normalization (keeps leading/repeated spaces)."""
    return np.array([LABELS.index(c) + 1 for c in text], np.int32)


def _ctc_logits(hyps: list[str], frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose greedy decoding is exactly each (raw) hypothesis: each token on one
    frame, separated by blank frames so repeats survive."""
    logits = np.full((len(hyps), frames, len(LABELS) + 1), -5.0, np.float32)
    logits[:, :, BLANK_ID] = 5.0
    paddings = np.ones((len(hyps), frames), np.float32)
    for i, hyp in enumerate(hyps):
        ids = _raw_ids(hyp)
        assert 2 * len(ids) + 1 <= frames
        for k, token in enumerate(ids):
            logits[i, 2 * k + 1, BLANK_ID] = -5.0
            logits[i, 2 * k + 1, token] = 5.0
        paddings[i, : 2 * len(ids) + 2] = 0.0
    return logits, paddings


def _random_text(rng: np.random.Generator, words: list[str], max_words: int) -> str:
    count = int(rng.integers(0, max_words + 1))
    return " ".join(rng.choice(words, count)) if count else ""


def _noisy(rng: np.random.Generator, text: str) -> str:
    """A hypothesis: word swaps/drops, character edits, stray spaces at either end or inside."""
    chars = list(text)
    for _ in range(int(rng.integers(0, 4))):
        op = rng.integers(0, 3)
        pos = int(rng.integers(0, len(chars) + 1))
        if op == 0:
            chars.insert(pos, str(rng.choice(list(LABELS))))
        elif op == 1 and chars:
            chars.pop(min(pos, len(chars) - 1))
        elif chars:
            chars[min(pos, len(chars) - 1)] = str(rng.choice(list(LABELS)))
    out = "".join(chars)
    if rng.random() < 0.3:
        out = "  " + out
    if rng.random() < 0.3:
        out = out + " "
    return out.replace(" ", "   ", 1) if rng.random() < 0.3 else out


def _corpus(seed: int, count: int, words: list[str]) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    refs, hyps = [], []
    while len(refs) < count:
        ref = _random_text(rng, words, 6)
        if not ref:
            continue
        refs.append(ref)
        hyps.append(_noisy(rng, ref) if rng.random() < 0.8 else "")
    return refs, hyps


def _device_errors(refs: list[str], hyps: list[str]) -> dict[str, np.ndarray]:
    width = max(len(r) for r in refs)
    frames = 2 * max(len(h) for h in hyps) + 4
    labels, label_paddings = _pad([encode(r) for r in refs], width)
    logits, paddings = _ctc_logits(hyps, frames)
    out = jax.jit(text_errors, static_argnums=4)(
        jnp.asarray(logits), jnp.asarray(paddings), labels, label_paddings, SPACE_ID
    )
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize(("seed", "words"), [(0, WORDS), (1, WORDS + LONG_WORDS)])
def test_corpus_wer_and_cer_equal_jiwer(seed: int, words: list[str]) -> None:
    refs, hyps = _corpus(seed, 64, words)
    got = _device_errors(refs, hyps)
    # jiwer's defaults: WER drops repeated/edge spaces, CER strips the edges; our hypotheses
    # are normalized as the references are (runs of spaces collapsed), so give jiwer those.
    normalized = [normalize(h) for h in hyps]
    wer = jiwer.wer(refs, normalized)
    cer = jiwer.cer(refs, normalized)
    assert got["word_errors"].sum() / got["ref_words"].sum() == pytest.approx(wer, abs=1e-12)
    assert got["char_errors"].sum() / got["ref_chars"].sum() == pytest.approx(cer, abs=1e-12)
    # And per utterance (a jiwer call per pair), so no error cancels out in the sums.
    for i, (ref, hyp) in enumerate(zip(refs, normalized, strict=True)):
        out = jiwer.process_words(ref, hyp)
        assert got["word_errors"][i] == out.substitutions + out.deletions + out.insertions
        assert got["ref_words"][i] == len(ref.split())


def test_normalize_tokens_matches_vocabulary_normalize() -> None:
    texts = ["  the cat", "the   cat  ", " ", "", "a", "a  b c   "]
    ids, paddings = _pad([_raw_ids(t) for t in texts], 12)
    tokens, token_paddings = normalize_tokens(jnp.asarray(ids), jnp.asarray(paddings), SPACE_ID)
    for i, text in enumerate(texts):
        row = np.asarray(tokens[i])[np.asarray(token_paddings[i]) < 0.5]
        assert decode(row) == normalize(text)


def test_word_hashes_separate_words_and_match_equal_words() -> None:
    texts = ["ab ba ab", "ba ab", "internationalization internationalisation"]
    ids, paddings = _pad([encode(t) for t in texts], 48)
    hashes, word_paddings = word_hashes(jnp.asarray(ids), jnp.asarray(paddings), SPACE_ID)
    hashes, word_paddings = np.asarray(hashes), np.asarray(word_paddings)
    assert (word_paddings < 0.5).sum(axis=1).tolist() == [3, 2, 2]
    assert (hashes[0, 0] == hashes[0, 2]).all() and (hashes[0, 0] == hashes[1, 1]).all()
    assert (hashes[0, 0] != hashes[0, 1]).any()
    assert (hashes[2, 0] != hashes[2, 1]).any()
    # Short words: the first lane is the base-31 numeral of the ids, exact.
    a, b = encode("a")[0], encode("b")[0]
    assert hashes[0, 0, 0] == a + 31 * b


def test_asr_task_reports_corpus_rates_as_ratios() -> None:
    refs, hyps = ["the cat", "seven zero"], ["the bat", ""]
    logits, paddings = _ctc_logits(hyps, 20)
    labels, label_paddings = _pad([encode(r) for r in refs], 12)
    batch = {"y": jnp.asarray(labels), "y_paddings": jnp.asarray(label_paddings)}
    per_example = ASR.per_example((jnp.asarray(logits), jnp.asarray(paddings)), batch)
    means = {f"test_{k}": float(np.mean(v)) for k, v in per_example.items()}
    rates = ASR.with_ratios(means, prefix="test_")
    assert rates["test_wer"] == pytest.approx(jiwer.wer(refs, hyps))  # 3 of 4 words
    assert rates["test_cer"] == pytest.approx(jiwer.cer(refs, hyps))
    assert ASR.default_objective == "test_wer"

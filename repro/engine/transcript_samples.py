"""Decoded text of a few utterances per evaluated epoch, saved in ``metrics.jsonl``.

A diagnostics hook (``repro.engine.hooks``) for task=asr: speech researchers read the
transcripts, not only the error rates, to see what a CTC model does early on (blank-only
output, then character soup, then words). Configured as

    diagnostics:
      transcripts: {_target_: repro.engine.transcript_samples.TranscriptSamples,
                    num_examples: 4, split: validation, every_epochs: 1}

Each record gets ``transcripts/references`` and ``transcripts/hypotheses``, [R, n] each: the
first ``num_examples`` utterances of the evaluation set ``split`` (``test``, ``validation``
or ``train`` for the first training examples), greedy-decoded (the metrics' decoding) by
every replica in evaluation mode. Plain strings: ``repro.data.speech.vocabulary.decode``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from repro.data.speech.vocabulary import SPACE_ID, decode
from repro.engine.hooks import HookContext
from repro.engine.sharding import to_host
from repro.engine.steps import ReplicaModel
from repro.engine.train_state import ReplicaState
from repro.engine.transcripts import greedy_ctc_decode, normalize_tokens
from repro.models._checks import check_int_at_least

SPLITS: tuple[str, ...] = ("test", "validation", "train")


def _texts(ids: np.ndarray, paddings: np.ndarray) -> list[str]:
    return [decode(row[pad < 0.5]) for row, pad in zip(ids, paddings, strict=True)]


class TranscriptSamples:
    """Greedy transcripts of the first ``num_examples`` utterances of ``split`` (module
    docstring)."""

    def __init__(self, num_examples: int = 4, split: str = "validation", every_epochs: int = 1):
        check_int_at_least("num_examples", num_examples, 1)
        check_int_at_least("every_epochs", every_epochs, 1)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        self.num_examples = int(num_examples)
        self.split = split
        self.every_epochs = int(every_epochs)
        self._fn: Any = None

    def check(self, num_examples: int, num_params: int, task: str) -> None:
        if task != "asr":
            raise ValueError(f"needs task=asr (character transcripts), got task={task}")

    def _examples(self, ctx: HookContext) -> Mapping[str, jax.Array]:
        if self.split == "train":
            return {k: v[: self.num_examples] for k, v in ctx.train_data.items()}
        name = "test" if self.split == "test" else "validation"
        if name not in ctx.eval_data:
            raise ValueError(
                f"diagnostics: TranscriptSamples split={self.split!r} but the run has no "
                f"resident {name} set (sets: {sorted(ctx.eval_data)})"
            )
        batches = ctx.eval_data[name]
        count = min(self.num_examples, int(to_host(batches["mask"][0]).sum()))
        return {k: v[0][:count] for k, v in batches.items() if k != "mask"}

    def _build(self, program: ReplicaModel) -> Any:
        def one(params: Any, model_state: Any, batch: Mapping[str, jax.Array]) -> Any:
            (logits, paddings), _ = program.apply(params, model_state, batch, train=False)
            tokens, token_paddings = greedy_ctc_decode(logits, paddings)
            return normalize_tokens(tokens, token_paddings, SPACE_ID)

        def run(replicas: ReplicaState, batch: Mapping[str, jax.Array]) -> Any:
            return jax.vmap(one, in_axes=(0, 0, None))(replicas.params, replicas.model_state, batch)

        return jax.jit(run)

    def __call__(self, ctx: HookContext) -> Mapping[str, Any]:
        if self._fn is None:
            self._fn = self._build(ctx.program)
        batch = self._examples(ctx)
        tokens, paddings = (to_host(a) for a in self._fn(ctx.replicas, batch))
        labels, label_paddings = to_host(batch["y"]), to_host(batch["y_paddings"])
        references = _texts(labels, label_paddings)
        hypotheses = [_texts(rows, pads) for rows, pads in zip(tokens, paddings, strict=True)]
        # References per replica too (the same rows R times): every hook value is [R, ...].
        return {
            "references": np.array([references] * len(hypotheses)),
            "hypotheses": np.array(hypotheses),
        }

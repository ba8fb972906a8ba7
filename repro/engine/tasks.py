"""Loss plug-ins: what a model's outputs are compared with, per example.

A task maps (outputs, batch) to per-example arrays. The engine trains on
``mean(weights * loss)`` (weights = 1 without an example-weight sampler) and averages every
metric over examples, so a task never sees replicas, weights or padding: evaluation passes a
0/1 mask and takes ``sum(mask * metric) / sum(mask)``. Sequence tasks (CTC for Jasper) plug in
the same way with their padding masks inside the batch dict.

CTC (``task=ctc``). The model returns ``(logits [B, T', V+1], logit_paddings [B, T'])`` (a
plain logits array means no padding); the batch holds labels ``y`` int32 [B, L] with ids in
1..V (0 is the blank, ``BLANK_ID``) and ``y_paddings`` [B, L] (1 = padding, trailing).

- loss: ``-log p(y | x) = -log sum_{a in B^-1(y)} prod_t softmax(logits_t)[a_t]`` (optax.ctc_loss;
  B collapses repeats then drops blanks), the per-utterance SUM over frames, not divided by
  the label length: the engine's batch mean of it is OpenSeq2Seq's Jasper loss
  (``reduce_mean`` of ``tf.nn.ctc_loss``). Long utterances weigh more, as there.
- metrics, from greedy decoding (per-frame argmax, collapse repeats, drop blanks):
  ``token_errors`` = Levenshtein distance to the reference, ``ref_tokens`` = reference
  length, and the per-utterance ``token_error_rate`` = errors / max(length, 1). The engine
  averages metrics over examples, so the corpus-level rate (how WER/CER are reported:
  sum of edits / sum of lengths) is ``token_errors / ref_tokens`` of the same record,
  e.g. ``test_token_errors / test_ref_tokens`` (a ratio of two means over the same examples
  is the ratio of the sums); the engine writes it as ``corpus_token_error_rate`` (a task
  ratio, computed after averaging), the default objective. ``token_error_rate`` (mean of
  per-utterance rates) weighs short utterances more.

ASR (``task=asr``): CTC on character transcripts (``repro.data.speech.vocabulary``: space,
a-z, apostrophe), scored as speech recognition is. The loss is CTC's; the metrics are
``char_errors`` / ``ref_chars`` and ``word_errors`` / ``ref_words`` of the normalized greedy
transcript (``repro.engine.transcripts.text_errors``), whose ratios ``cer`` and ``wer`` are
the corpus-level rates (total edits / total reference units, as jiwer computes them; the
default objective is ``test_wer``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from repro.data.speech.vocabulary import SPACE_ID
from repro.engine.transcripts import (
    BLANK_ID,
    edit_distance,
    greedy_ctc_decode,
    greedy_ctc_frames,
    text_errors,
)
from repro.errors import ConfigError

__all__ = [
    "BLANK_ID",
    "TASKS",
    "Task",
    "edit_distance",
    "get_task",
    "greedy_ctc_decode",
    "greedy_ctc_frames",
    "num_outputs_for",
]

Batch = Mapping[str, jax.Array]
# Model outputs: an array, or a pytree such as a sequence model's (logits, paddings).
Outputs = Any
PerExample = Callable[[Outputs, Batch], jax.Array]
# Several per-example metrics from one computation (e.g. edit distances from one decoding).
PerExampleGroup = Callable[[Outputs, Batch], Mapping[str, jax.Array]]


@dataclasses.dataclass(frozen=True)
class Task:
    """A per-example loss plus per-example metrics (all float32[B])."""

    name: str
    loss: PerExample
    metrics: Mapping[str, PerExample]
    # Metric used as the default objective and its direction.
    default_objective: str
    default_mode: str  # "max" or "min"
    # True: outputs are (logits [B, T, K], paddings [B, T]) or logits [B, T, K] (ctc).
    sequence_outputs: bool = False
    # Corpus-level metrics: name -> (numerator, denominator), two per-example metrics whose
    # means over the same examples are divided after averaging (ratio of means = ratio of
    # sums), e.g. the corpus token error rate = sum of edits / sum of reference lengths.
    ratios: Mapping[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    # Metrics also summed over training steps (None = all). ASR leaves its edit distances
    # out: a Levenshtein scan per step would cost more than the small models' own step.
    train_metrics: tuple[str, ...] | None = None
    # Metrics computed together: names -> one function returning all of them, called once
    # per batch however many of its names are wanted.
    metric_groups: Mapping[tuple[str, ...], PerExampleGroup] = dataclasses.field(
        default_factory=dict
    )

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Every per-example metric: the single ones, then the groups'."""
        return (*self.metrics, *(name for names in self.metric_groups for name in names))

    @property
    def training_metric_names(self) -> tuple[str, ...]:
        """The metrics computed in every training step."""
        return self.metric_names if self.train_metrics is None else self.train_metrics

    def with_ratios(self, means: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        """``means`` (keys ``prefix + metric``) plus every ratio whose two metrics it holds;
        a zero denominator gives NaN."""
        out = dict(means)
        for name, (num, den) in self.ratios.items():
            if f"{prefix}{num}" in means and f"{prefix}{den}" in means:
                a = np.asarray(means[f"{prefix}{num}"], np.float64)
                b = np.asarray(means[f"{prefix}{den}"], np.float64)
                with np.errstate(divide="ignore", invalid="ignore"):
                    out[f"{prefix}{name}"] = np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)
        return out

    def check_outputs(self, outputs: Outputs) -> None:
        """ConfigError (raised while tracing, before anything runs) naming the mismatch between
        the model's outputs and the task."""
        is_tuple = isinstance(outputs, tuple | list)
        if self.sequence_outputs:
            logits = outputs[0] if is_tuple else outputs
            if getattr(logits, "ndim", 0) != 3:
                raise ConfigError(
                    f"task={self.name} needs a sequence model with logits [B, T, K] "
                    f"(e.g. model=jasper), got outputs of shape {getattr(logits, 'shape', None)}"
                )
        elif is_tuple:
            raise ConfigError(
                f"task={self.name} needs a model returning one array; this model returns "
                f"{len(outputs)} (a sequence model such as Jasper goes with task=ctc)"
            )

    def per_example(
        self, outputs: Outputs, batch: Batch, *, train: bool = False
    ) -> dict[str, jax.Array]:
        """{"loss": [B], **metrics: [B]} (in training only ``training_metric_names``)."""
        self.check_outputs(outputs)
        values = {"loss": self.loss(outputs, batch)}
        wanted = self.training_metric_names if train else self.metric_names
        for name in wanted:
            if name in self.metrics:
                values[name] = self.metrics[name](outputs, batch)
        for names, group in self.metric_groups.items():
            if any(name in wanted for name in names):
                computed = group(outputs, batch)
                values.update({name: computed[name] for name in names if name in wanted})
        return values


def _cross_entropy(logits: jax.Array, batch: Batch) -> jax.Array:
    """-log softmax(logits)[y], computed in float32."""
    return optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), batch["y"].astype(jnp.int32)
    )


def _accuracy(logits: jax.Array, batch: Batch) -> jax.Array:
    return (jnp.argmax(logits, axis=-1) == batch["y"]).astype(jnp.float32)


def _flat_outputs(outputs: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array]:
    y = batch["y"].astype(jnp.float32)
    out = outputs.astype(jnp.float32)
    if y.ndim == 1:
        out = out.reshape(out.shape[0], -1)[:, 0] if out.ndim > 1 else out
    return out, y


def _squared_error(outputs: jax.Array, batch: Batch) -> jax.Array:
    """0.5 * sum_k (f_k - y_k)^2: its gradient is the residual, as in Mori et al."""
    out, y = _flat_outputs(outputs, batch)
    err = (out - y) ** 2
    return 0.5 * (err if err.ndim == 1 else err.sum(axis=-1))


def _sign_accuracy(outputs: jax.Array, batch: Batch) -> jax.Array:
    """Agreement of sign(f) with +-1 targets (parity-style labels)."""
    out, y = _flat_outputs(outputs, batch)
    return (jnp.sign(out) == jnp.sign(y)).astype(jnp.float32)


def _sequence_outputs(outputs: Outputs) -> tuple[jax.Array, jax.Array]:
    """(logits [B, T, K], paddings [B, T]) from a sequence model's outputs."""
    if isinstance(outputs, tuple | list):
        logits, paddings = outputs
    else:
        logits = outputs
        paddings = jnp.zeros(logits.shape[:2], jnp.float32)
    return logits.astype(jnp.float32), paddings.astype(jnp.float32)


def _label_paddings(batch: Batch) -> jax.Array:
    return batch.get("y_paddings", jnp.zeros(batch["y"].shape, jnp.float32)).astype(jnp.float32)


def _ctc_loss(outputs: Outputs, batch: Batch) -> jax.Array:
    """Per-utterance CTC negative log-likelihood (module docstring)."""
    logits, logit_paddings = _sequence_outputs(outputs)
    return optax.ctc_loss(
        logits,
        logit_paddings,
        batch["y"].astype(jnp.int32),
        _label_paddings(batch),
        blank_id=BLANK_ID,
    )


def _greedy_token_errors(outputs: Outputs, batch: Batch) -> jax.Array:
    logits, logit_paddings = _sequence_outputs(outputs)
    ids, emitted = greedy_ctc_frames(jax.lax.stop_gradient(logits), logit_paddings)
    return edit_distance(ids, (~emitted).astype(jnp.float32), batch["y"], _label_paddings(batch))


def _ref_tokens(outputs: Outputs, batch: Batch) -> jax.Array:
    return jnp.sum(_label_paddings(batch) < 0.5, axis=1).astype(jnp.float32)


def _text_errors(outputs: Outputs, batch: Batch) -> Mapping[str, jax.Array]:
    """Edit counts and reference lengths of the greedy transcripts (one decoding)."""
    logits, logit_paddings = _sequence_outputs(outputs)
    return text_errors(
        jax.lax.stop_gradient(logits),
        logit_paddings,
        batch["y"].astype(jnp.int32),
        _label_paddings(batch),
        SPACE_ID,
    )


def _token_error_rate(outputs: Outputs, batch: Batch) -> jax.Array:
    return _greedy_token_errors(outputs, batch) / jnp.maximum(_ref_tokens(outputs, batch), 1.0)


TEXT_METRICS = ("char_errors", "ref_chars", "word_errors", "ref_words")
TASKS: dict[str, Task] = {
    "classification": Task(
        "classification", _cross_entropy, {"accuracy": _accuracy}, "test_accuracy", "max"
    ),
    "mse": Task("mse", _squared_error, {}, "test_loss", "min"),
    "ctc": Task(
        "ctc",
        _ctc_loss,
        {
            "token_error_rate": _token_error_rate,
            "token_errors": _greedy_token_errors,
            "ref_tokens": _ref_tokens,
        },
        "test_corpus_token_error_rate",
        "min",
        sequence_outputs=True,
        ratios={"corpus_token_error_rate": ("token_errors", "ref_tokens")},
    ),
    "asr": Task(
        "asr",
        _ctc_loss,
        {},
        "test_wer",
        "min",
        sequence_outputs=True,
        ratios={"cer": ("char_errors", "ref_chars"), "wer": ("word_errors", "ref_words")},
        train_metrics=(),
        metric_groups={TEXT_METRICS: _text_errors},
    ),
    "binary_mse": Task(
        "binary_mse", _squared_error, {"accuracy": _sign_accuracy}, "test_accuracy", "max"
    ),
}


def get_task(name: str) -> Task:
    """The task registered as `name`; ConfigError listing the known names otherwise."""
    if name not in TASKS:
        raise ConfigError(f"task must be one of {sorted(TASKS)}, got {name!r}")
    return TASKS[name]


def num_outputs_for(task: Task, num_classes: int, y_train: jax.Array) -> int:
    """Output width a model needs for `task` on a data set (ctc: V tokens + the blank)."""
    if task.name in ("ctc", "asr"):
        if num_classes < 1:
            raise ConfigError(
                f"task={task.name} needs a data set with num_classes >= 1 (tokens), "
                f"got {num_classes}"
            )
        return int(num_classes) + 1
    if task.name == "classification":
        if num_classes < 2:
            raise ConfigError(
                f"task=classification needs a data set with num_classes >= 2, got {num_classes}"
            )
        return int(num_classes)
    return 1 if y_train.ndim == 1 else int(y_train.shape[-1])

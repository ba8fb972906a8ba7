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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from repro.errors import ConfigError

Batch = Mapping[str, jax.Array]
# Model outputs: an array, or a pytree such as a sequence model's (logits, paddings).
Outputs = Any
PerExample = Callable[[Outputs, Batch], jax.Array]
BLANK_ID = 0  # CTC blank: label ids are 1..V, logits have V + 1 entries per frame


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

    def per_example(self, outputs: Outputs, batch: Batch) -> dict[str, jax.Array]:
        """{"loss": [B], **metrics: [B]}."""
        self.check_outputs(outputs)
        values = {"loss": self.loss(outputs, batch)}
        for name, fn in self.metrics.items():
            values[name] = fn(outputs, batch)
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


def greedy_ctc_decode(
    logits: jax.Array, paddings: jax.Array, blank_id: int = BLANK_ID
) -> tuple[jax.Array, jax.Array]:
    """Greedy CTC transcripts, left-aligned: ``(tokens [B, T] int32, token_paddings [B, T])``
    (padding entries of ``tokens`` are 0)."""
    ids, emitted = greedy_ctc_frames(logits, paddings, blank_id)
    frames = ids.shape[1]
    position = jnp.where(emitted, jnp.cumsum(emitted, axis=1) - 1, frames)  # frames = dropped

    def compact(row_ids: jax.Array, row_position: jax.Array) -> jax.Array:
        return jnp.zeros_like(row_ids).at[row_position].set(row_ids, mode="drop")

    tokens = jax.vmap(compact)(ids, position)
    count = jnp.sum(emitted, axis=1, keepdims=True)
    token_paddings = (jnp.arange(frames)[None, :] >= count).astype(jnp.float32)
    return tokens, token_paddings


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
    """
    ref = ref.astype(jnp.int32)
    hyp = hyp.astype(jnp.int32)
    columns = jnp.arange(ref.shape[1] + 1, dtype=jnp.int32)
    first_row = jnp.broadcast_to(columns, (ref.shape[0], columns.size))

    def next_row(row: jax.Array, inputs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        token, padded = inputs  # [B], [B]
        substitute = row[:, :-1] + (token[:, None] != ref).astype(jnp.int32)
        skip_hyp = row[:, 1:] + 1
        without_left = jnp.concatenate([row[:, :1] + 1, jnp.minimum(substitute, skip_hyp)], axis=1)
        new = jax.lax.cummin(without_left - columns, axis=1) + columns
        return jnp.where(padded[:, None] > 0.5, row, new), None

    last_row, _ = jax.lax.scan(next_row, first_row, (hyp.T, hyp_paddings.T))
    ref_length = jnp.sum(ref_paddings < 0.5, axis=1).astype(jnp.int32)
    distance = jnp.take_along_axis(last_row, ref_length[:, None], axis=1)[:, 0]
    return distance.astype(jnp.float32)


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


def _token_error_rate(outputs: Outputs, batch: Batch) -> jax.Array:
    return _greedy_token_errors(outputs, batch) / jnp.maximum(_ref_tokens(outputs, batch), 1.0)


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
    if task.name == "ctc":
        if num_classes < 1:
            raise ConfigError(
                f"task=ctc needs a data set with num_classes >= 1 (tokens), got {num_classes}"
            )
        return int(num_classes) + 1
    if task.name == "classification":
        if num_classes < 2:
            raise ConfigError(
                f"task=classification needs a data set with num_classes >= 2, got {num_classes}"
            )
        return int(num_classes)
    return 1 if y_train.ndim == 1 else int(y_train.shape[-1])

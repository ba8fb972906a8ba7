"""The epoch loop: train each epoch in a few scanned chunks, evaluate, tell the callbacks.

Per epoch: reset the running sums (unless resuming mid-epoch), advance the feed chunk by
chunk (`trainer.chunks_per_epoch`; `on_chunk` after each), then, on evaluated epochs
(`trainer.eval_every_epochs` and the last), build the metrics record (training means from
the sums, evaluation sets, diagnostics hooks, timing) and pass it to `on_epoch_end` (None on
epochs without evaluation). What happens with chunks and records (progress bar, checkpoints,
metrics.jsonl, the logger) lives in the callbacks (repro/engine/callbacks.py).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax

from repro.engine import outputs as out
from repro.engine.epoch import chunk_stops
from repro.engine.experiment import Experiment
from repro.engine.hooks import HookContext
from repro.engine.sharding import to_host
from repro.engine.train_state import TrainState, reset_sums

# Stream id of the diagnostics hooks' key, folded into the run's seed key: after the
# replicas' training streams (replicas.STREAM_*), so hooks never draw training randomness.
STREAM_DIAGNOSTICS = 5


def diagnostics_key(seed: int, epoch: int) -> jax.Array:
    """The hooks' typed key at `epoch`: fold_in(fold_in(key(seed), STREAM_DIAGNOSTICS), epoch)
    for the run's base `seed`, so it changes with the seed and is disjoint from every
    replica's training streams fold_in(key(replica seed), STREAM_*)."""
    base = jax.random.fold_in(jax.random.key(seed), STREAM_DIAGNOSTICS)
    return jax.random.fold_in(base, epoch)


@dataclasses.dataclass(frozen=True)
class ChunkEnd:
    """A chunk of steps [start, stop) of epoch `epoch` (0-based) has been dispatched."""

    epoch: int
    start: int
    stop: int
    epoch_base: int  # first step of the epoch
    ends_epoch: bool


class LoopCallback:
    """Hooks into the epoch loop; every method does nothing unless overridden."""

    def on_epoch_start(self, epoch: int) -> None:
        """Epoch `epoch` (0-based) is about to train."""

    def on_chunk(self, state: TrainState, chunk: ChunkEnd) -> None:
        """After each chunk (the state is not waited for: reading it blocks)."""

    def on_epoch_end(self, state: TrainState, epoch: int, record: dict[str, Any] | None) -> None:
        """After epoch `epoch` (1-based, completed); `record` is None if not evaluated."""


class RunClock:
    """Training time of the run: `offset` seconds of earlier invocations (from the restored
    checkpoint) plus the time since this invocation's loop started."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = float(offset)
        self.start = time.perf_counter()

    def restart(self) -> None:
        """Count this invocation's time from now."""
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return self.offset + time.perf_counter() - self.start


def _train_epoch(
    exp: Experiment, state: TrainState, step: int, chunks: int, callbacks: list[LoopCallback]
) -> tuple[TrainState, float]:
    """Train from `step` to the end of its epoch; returns the state and the seconds taken."""
    epoch = step // exp.steps_per_epoch
    base = epoch * exp.steps_per_epoch
    if step == base:
        state = reset_sums(state)
    for callback in callbacks:
        callback.on_epoch_start(epoch)
    start_time = time.perf_counter()
    for stop in (s for s in chunk_stops(epoch, exp.steps_per_epoch, chunks) if s > step):
        state = exp.feed.advance(state, exp.hparams, step, stop)
        chunk = ChunkEnd(epoch, step, stop, base, stop == base + exp.steps_per_epoch)
        for callback in callbacks:
            callback.on_chunk(state, chunk)
        step = stop
    jax.block_until_ready(state.step)
    return state, time.perf_counter() - start_time


def epoch_record(exp: Experiment, state: TrainState, epoch: int, seed: int) -> dict[str, Any]:
    """The metrics of a completed epoch: training means of the epoch's sums (a run resumed
    mid-epoch restored partial sums), every evaluation set, the diagnostics hooks."""
    replicas = state.replicas
    step = int(state.step)
    record: dict[str, Any] = {"epoch": epoch, "step": step}
    for name, total in replicas.sums.items():
        record[f"train_{name}"] = to_host(total) / exp.steps_per_epoch
    record = exp.task.with_ratios(record, "train_")
    for set_name, evaluate in exp.evaluators.items():
        means = {f"{set_name}_{k}": to_host(v) for k, v in evaluate(replicas).items()}
        record.update(exp.task.with_ratios(means, f"{set_name}_"))
    record["diverged"] = to_host(replicas.diverged)
    for name, hook in exp.hooks.items():
        # The last epoch always logs, as evaluation does: a hook whose interval exceeds the
        # run (the Hessian hooks default to every 50 epochs) would otherwise never report.
        if epoch % int(getattr(hook, "every_epochs", 1)) == 0 or epoch == exp.epochs:
            ctx = HookContext(
                epoch=epoch,
                step=step,
                program=exp.program,
                replicas=replicas,
                train_data=exp.train_data,
                key=diagnostics_key(seed, epoch),
                eval_data=exp.eval_data,
            )
            for key, value in hook(ctx).items():
                record[f"{name}/{key}"] = to_host(value)
    return record


def run_epochs(
    exp: Experiment,
    state: TrainState,
    *,
    seed: int,
    chunks_per_epoch: int,
    eval_every_epochs: int,
    clock: RunClock,
    callbacks: list[LoopCallback],
) -> TrainState:
    """Train from `state.step` to the last step of the run; returns the final state."""
    step = int(state.step)
    while step < exp.total_steps:
        first_step = step
        state, train_time = _train_epoch(exp, state, step, chunks_per_epoch, callbacks)
        step = int(state.step)
        epoch = step // exp.steps_per_epoch
        record = None
        if epoch % eval_every_epochs == 0 or epoch == exp.epochs:
            record = epoch_record(exp, state, epoch, seed)
            record["wall_time_s"] = clock.elapsed()
            examples = (step - first_step) * exp.examples_per_step
            record["examples_per_s"] = examples / train_time if train_time > 0 else None
            record = out.jsonable(record)
        for callback in callbacks:
            callback.on_epoch_end(state, epoch, record)
    return state

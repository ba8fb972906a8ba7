"""The epoch loop's callbacks: progress bar, checkpoints, metrics.jsonl, the logger.

Called in list order (the pipeline passes progress, metrics, logger, checkpoints), so an
epoch's record is on disk before the checkpoint that covers it: a run killed in between
resumes from the previous checkpoint and drops the record (MetricsLog.truncate_after_epoch).
"""

from __future__ import annotations

import math
import time
from typing import Any

import jax
import numpy as np

from repro.engine import outputs as out
from repro.engine.checkpointing import Checkpointer
from repro.engine.epoch_loop import ChunkEnd, LoopCallback, RunClock
from repro.engine.invocations import RunHistory
from repro.engine.progress import Progress
from repro.engine.sharding import to_host
from repro.engine.train_state import TrainState
from repro.loggers import Logger


def finite_mean(values: Any) -> float:
    """Mean of the finite entries (NaN if none): the progress bar's loss over replicas."""
    finite = [float(v) for v in np.ravel(values) if v is not None and math.isfinite(float(v))]
    return float(np.mean(finite)) if finite else float("nan")


class ProgressCallback(LoopCallback):
    """Progress bar over steps with the mean training loss and throughput, once per chunk."""

    def __init__(self, progress: Progress, examples_per_step: int) -> None:
        self.progress = progress
        self.examples_per_step = examples_per_step
        self.last_update = time.perf_counter()

    def on_epoch_start(self, epoch: int) -> None:
        self.last_update = time.perf_counter()

    def on_chunk(self, state: TrainState, chunk: ChunkEnd) -> None:
        # With several processes every process reads the sums (a collective, to_host), even
        # those without a bar. Reading them waits for the chunk: a few times per epoch.
        if self.progress.bar is None and jax.process_count() == 1:
            return
        sums = to_host(state.replicas.sums["loss"]) / (chunk.stop - chunk.epoch_base)
        now = time.perf_counter()
        steps = chunk.stop - chunk.start
        rate = steps * self.examples_per_step / (now - self.last_update)
        self.progress.update(steps, finite_mean(sums), rate, chunk.epoch + 1)
        self.last_update = now


class CheckpointPolicy:
    """When to save: at the end of every `every_epochs`-th epoch (0: only the last one), at
    most once per `min_interval_s` seconds (the last epoch is always saved); with
    `within_epoch`, also at chunk boundaries once `min_interval_s` (> 0) has passed, for
    epochs too long to lose (a run resumed mid-epoch continues bit-identically)."""

    def __init__(self, every_epochs: int, min_interval_s: float, within_epoch: bool) -> None:
        self.every_epochs = every_epochs
        self.min_interval_s = min_interval_s
        self.within_epoch = within_epoch
        self.last_save = time.perf_counter()

    def _interval_passed(self) -> bool:
        return time.perf_counter() - self.last_save >= self.min_interval_s

    def due_at_epoch_end(self, epoch: int, final: bool) -> bool:
        if final:
            return True
        return (
            bool(self.every_epochs) and epoch % self.every_epochs == 0 and self._interval_passed()
        )

    def due_within_epoch(self) -> bool:
        return self.within_epoch and self.min_interval_s > 0 and self._interval_passed()

    def saved(self) -> None:
        self.last_save = time.perf_counter()


class CheckpointCallback(LoopCallback):
    """Saves the whole train state when `policy` says so; the JSON record holds the step, the
    epoch, the run's training time so far and its invocations up to now (both continued by a
    resumed run)."""

    def __init__(
        self,
        checkpointer: Checkpointer,
        policy: CheckpointPolicy,
        clock: RunClock,
        history: RunHistory,
        steps_per_epoch: int,
        epochs: int,
    ) -> None:
        self.checkpointer = checkpointer
        self.policy = policy
        self.clock = clock
        self.history = history
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs

    def meta(self, state: TrainState) -> dict[str, Any]:
        step = int(state.step)
        return {
            "step": step,
            "epoch": step // self.steps_per_epoch,
            "wall_time_s": self.clock.elapsed(),
            "invocations": self.history.invocations(),
        }

    def _save(self, state: TrainState) -> None:
        self.checkpointer.save(state, self.meta(state))
        self.policy.saved()

    def on_chunk(self, state: TrainState, chunk: ChunkEnd) -> None:
        if not chunk.ends_epoch and self.policy.due_within_epoch():
            self._save(state)

    def on_epoch_end(self, state: TrainState, epoch: int, record: dict[str, Any] | None) -> None:
        if self.policy.due_at_epoch_end(epoch, final=epoch == self.epochs):
            self._save(state)


class MetricsCallback(LoopCallback):
    """Appends each evaluated epoch's record to metrics.jsonl."""

    def __init__(self, metrics_log: out.MetricsLog) -> None:
        self.metrics_log = metrics_log

    def on_epoch_end(self, state: TrainState, epoch: int, record: dict[str, Any] | None) -> None:
        if record is not None:
            self.metrics_log.append(record)


class LoggerCallback(LoopCallback):
    """Sends each evaluated epoch's record to the experiment logger (W&B or none)."""

    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def on_epoch_end(self, state: TrainState, epoch: int, record: dict[str, Any] | None) -> None:
        if record is not None:
            self.logger.log_epoch(record, int(record["step"]))

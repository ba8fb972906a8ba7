"""`train_and_evaluate(cfg, workdir)`: one run of R replicas, from config to summary.json.

The stages, each in a module of its own:

1. run spec (run_spec.py): the config's three forms, trainer defaults, whole-config
   validation (ConfigError naming the key) -- before anything slow;
2. work directory (workdir.py): fresh / resume / finished (return the stored summary) /
   refused (another config in the same directory);
3. experiment (experiment.py): data, model, program, feeds, evaluators, hooks, the device
   mesh; the data-dependent checks run before the first compilation;
4. resume: the latest checkpoint, and `metrics.jsonl` cut back to it;
5. epoch loop (epoch_loop.py) with callbacks (callbacks.py): progress, metrics log, logger,
   checkpoints;
6. summary (summary.py): written atomically, only now (an unfinished run has none).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from repro import run_metadata
from repro.engine import distributed
from repro.engine import outputs as out
from repro.engine.callbacks import (
    CheckpointCallback,
    CheckpointPolicy,
    LoggerCallback,
    MetricsCallback,
    ProgressCallback,
)
from repro.engine.checkpointing import Checkpointer
from repro.engine.distributed import is_writer
from repro.engine.epoch_loop import RunClock, run_epochs
from repro.engine.experiment import Experiment, build_experiment
from repro.engine.invocations import RunHistory, total_wall_time_s
from repro.engine.progress import Progress
from repro.engine.run_dir import RunLock
from repro.engine.run_spec import RunSpec, TrainerSpec, run_spec
from repro.engine.sharding import to_host
from repro.engine.summary import build_summary
from repro.engine.train_state import TrainState
from repro.engine.workdir import (
    Workdir,
    WorkdirState,
    open_workdir,
    save_config,
    shared_decision,
)
from repro.loggers import Logger, build_logger


@dataclasses.dataclass(frozen=True)
class Resumed:
    """Where this invocation starts: the restored step (None for a fresh start), the
    training time of earlier invocations and their records (invocations.py)."""

    step: int | None
    wall_offset_s: float
    invocations: tuple[dict[str, Any], ...] = ()


def restore_or_start(
    checkpointer: Checkpointer,
    state: TrainState,
    metrics_log: out.MetricsLog,
    exp: Experiment,
    eval_every_epochs: int,
) -> tuple[TrainState, Resumed]:
    """The newest intact checkpoint's state (and metrics cut back to its epoch, which must
    then hold every evaluated epoch before it), else `state`."""
    if checkpointer.latest_step() is None:
        metrics_log.truncate_after_epoch(-1, [])
        return state, Resumed(None, 0.0)
    state, meta = checkpointer.restore(state)
    step = int(state.step)
    done = step // exp.steps_per_epoch
    metrics_log.truncate_after_epoch(
        done, out.evaluated_epochs(exp.epochs, eval_every_epochs, through=done)
    )
    earlier = tuple(meta.get("invocations") or ())
    return state, Resumed(step, float(meta.get("wall_time_s", 0.0)), earlier)


def _checkpointer(workdir: Path, trainer: TrainerSpec) -> Checkpointer:
    return Checkpointer(workdir / out.CHECKPOINT_DIR, max_to_keep=trainer.checkpoint_max_to_keep)


def _policy(trainer: TrainerSpec) -> CheckpointPolicy:
    return CheckpointPolicy(
        every_epochs=trainer.checkpoint_every_epochs,
        min_interval_s=float(trainer.checkpoint_min_interval_s or 0.0),
        within_epoch=trainer.checkpoint_within_epoch,
    )


def _hydra_overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except Exception:  # no Hydra context (called from Python)
        return []


def _metadata(exp: Experiment, trained: _Trained) -> dict[str, Any]:
    invocations = trained.history.invocations()
    metadata = run_metadata.collect(trained.history.start_time)
    metadata["end_time"] = invocations[-1]["end_time"]
    metadata["wall_time_s"] = total_wall_time_s(invocations)
    metadata["training_time_s"] = trained.clock.elapsed()
    metadata["invocations"] = invocations
    metadata["resumed_from_step"] = trained.resumed.step
    # Float rounding (not the statistics) depends on how many replicas share a device:
    # XLA:CPU picks its matmul blocking by operand size. Recorded so a run can be repeated
    # bit-for-bit (trainer.cpu_devices / replica_devices / data_devices).
    metadata["mesh"] = dict(exp.mesh.shape) if exp.mesh is not None else {}
    metadata["data"] = exp.data_description
    metadata["processes"] = distributed.describe()
    return metadata


@dataclasses.dataclass
class _Trained:
    state: TrainState
    resumed: Resumed
    logger: Logger
    metrics_log: out.MetricsLog
    history: RunHistory
    clock: RunClock
    exit_code: int = 1  # what the logger is told at the end (0 once the summary is written)
    checkpoint: dict[str, Any] | None = None  # Checkpointer.save_report of the final step


def _train(
    spec: RunSpec,
    exp: Experiment,
    workdir: Path,
    stack: contextlib.ExitStack,
    started: tuple[str, float],
) -> _Trained:
    """Resume or start, then run the epoch loop. Everything opened here is closed by
    `stack` (the logger with the run's exit code). `started`: this invocation's start (ISO
    time, perf_counter)."""
    trainer = spec.trainer
    writer = is_writer()  # with several processes only process 0 writes files and logs
    log_class = out.MetricsLog if writer else out.ReadOnlyMetricsLog
    metrics_log = log_class(workdir / out.METRICS_FILE)
    checkpointer = _checkpointer(workdir, trainer)
    stack.callback(checkpointer.close)
    state, resumed = restore_or_start(
        checkpointer, exp.initial_state, metrics_log, exp, trainer.eval_every_epochs
    )
    logger = build_logger(
        spec.plain.get("logger") if writer else None,
        spec.container,
        workdir,
        f"{spec.plain['name']}/{workdir.name}",
    )
    history = RunHistory(resumed.invocations, *started, resumed.step)
    clock = RunClock(resumed.wall_offset_s)
    trained = _Trained(state, resumed, logger, metrics_log, history, clock)
    stack.callback(lambda: logger.finish(trained.exit_code))
    progress = Progress(exp.total_steps, int(state.step), trainer.progress if writer else "never")
    stack.callback(progress.close)
    if resumed.step is not None and writer:
        epoch = resumed.step // exp.steps_per_epoch
        print(f"resumed from step {resumed.step} (epoch {epoch})")
    callbacks = [
        ProgressCallback(progress, exp.examples_per_step),
        MetricsCallback(metrics_log),
        LoggerCallback(logger),
        CheckpointCallback(
            checkpointer, _policy(trainer), clock, history, exp.steps_per_epoch, exp.epochs
        ),
    ]
    clock.restart()  # training time counts from here (not the logger's or bar's set-up)
    trained.state = run_epochs(
        exp,
        state,
        seed=int(spec.plain["seed"]),
        chunks_per_epoch=trainer.chunks_per_epoch,
        eval_every_epochs=trainer.eval_every_epochs,
        clock=clock,
        callbacks=callbacks,
    )
    trained.checkpoint = checkpointer.save_report(exp.total_steps)
    return trained


def _open_workdir(workdir: str | Path, spec: RunSpec, lock: contextlib.ExitStack) -> Workdir:
    """Lock the run directory (one run per directory, from before it is read until its
    summary is written, run_dir.py; the OS releases the lock of a killed process), decide
    fresh / resume / finished and store the config. With several processes, process 0 does
    all of it and the others take its decision (workdir.shared_decision)."""

    def decide() -> Workdir:
        lock.enter_context(RunLock(workdir))
        work = open_workdir(workdir, spec.container, spec.trainer.overwrite)
        if work.state is not WorkdirState.FINISHED:
            save_config(work, spec.container)
        return work

    return shared_decision(decide, Path(workdir))


def train_and_evaluate(cfg: DictConfig | Mapping[str, Any], workdir: str | Path) -> dict[str, Any]:
    """Run (or resume, or skip) the experiment `cfg` in `workdir`; returns summary.json's dict.

    The returned dict carries `"already_finished": True` when the run had finished before.
    """
    start_time = run_metadata.now_iso()
    wall_start = time.perf_counter()
    spec = run_spec(cfg)
    with contextlib.ExitStack() as lock:
        work = _open_workdir(workdir, spec, lock)
        if work.state is WorkdirState.FINISHED:
            return {**(work.finished_summary or {}), "already_finished": True}
        exp = build_experiment(spec)
        with contextlib.ExitStack() as stack:
            stack.callback(exp.close)
            trained = _train(spec, exp, work.path, stack, (start_time, wall_start))
            # This run's records (what it resumed with and appended), every evaluated epoch
            # once; metrics.jsonl is rewritten from them if it changed behind the run's back.
            metrics_note = trained.metrics_log.reconcile()
            records = trained.metrics_log.records
            trained.metrics_log.check(
                records, out.evaluated_epochs(exp.epochs, spec.trainer.eval_every_epochs)
            )
            summary = build_summary(
                spec.container,
                records,
                steps=exp.total_steps,
                diverged_step=to_host(trained.state.replicas.diverged_step).tolist(),
            )
            summary["metadata"] = _metadata(exp, trained)
            summary["overrides"] = _hydra_overrides()
            summary["checkpoint"] = trained.checkpoint
            summary["metrics_log"] = metrics_note
            if is_writer():
                out.write_json_atomic(work.path / out.SUMMARY_FILE, summary)
                trained.logger.log_summary(summary)
            trained.exit_code = 0
    return summary

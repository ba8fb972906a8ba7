"""`train_and_evaluate(cfg, workdir)`: one run of R replicas, from config to summary.json.

Order of work, and why:
1. validate the whole config (ValueError naming the key) -- before anything slow;
2. skip a finished run whose stored config matches, refuse a different config in the same
   directory (the directory is a function of the command line);
3. load data, build the model (constructors validate their arguments), validate batch size;
4. compile init / chunk / eval programs once; restore the latest checkpoint if there is one
   and drop `metrics.jsonl` records past it;
5. per epoch: run the epoch in a few scanned chunks (progress bar between chunks), evaluate,
   run diagnostics hooks, append the record, log, checkpoint;

Data is either resident (an ArrayDataset, put whole on the device; chunks gather batches by
index, epoch.py) or streamed (a `_partial_` data node building a stream, see
repro.data.streaming; chunks of host-fed batches, feeding.py); both sit behind one
`feed.advance(state, hparams, start, stop)`, and evaluation sets behind one callable each.
6. write `summary.json` atomically (only now: an unfinished run has none).
"""

from __future__ import annotations

import functools
import logging
import math
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf

from repro import run_metadata
from repro.data.streaming import is_stream
from repro.engine import outputs as out
from repro.engine import replicas as rep
from repro.engine.checkpointing import Checkpointer
from repro.engine.config_validation import validate_against_data, validate_config
from repro.engine.epoch import ResidentFeed, chunk_stops, make_chunk_fn, make_order_fn
from repro.engine.evaluation import make_eval_fn, make_eval_sums_fn, pad_to_batches
from repro.engine.feeding import StreamEvaluator, StreamFeed, stream_sample
from repro.engine.hooks import EpochHook, HookContext
from repro.engine.instantiate import call_target, to_plain
from repro.engine.optimizers import UpdateRule
from repro.engine.progress import Progress
from repro.engine.sharding import (
    batch_sharding,
    check_data_devices,
    replica_mesh,
    replicate,
    shard_replica_axis,
    to_devices,
)
from repro.engine.steps import ReplicaModel, make_init_fn
from repro.engine.tasks import Task, get_task, num_outputs_for
from repro.engine.train_state import ReplicaState, TrainState, reset_sums
from repro.loggers import build_logger

# Config keys that do not change what a run computes: a stored run whose config differs only
# in these is the same run (it may be resumed, or skipped when finished).
NON_RESULT_KEYS = (
    "logger",
    "paths",
    "sweep_name",
    "trainer.progress",
    "trainer.overwrite",
    "trainer.chunks_per_epoch",
    "trainer.checkpoint_every_epochs",
    "trainer.checkpoint_max_to_keep",
    "trainer.checkpoint_min_interval_s",
    "trainer.checkpoint_within_epoch",
    "trainer.cpu_devices",
    "trainer.replica_devices",
    "trainer.stream_chunk_steps",
    "trainer.stream_prefetch",
)
HOOK_STREAM = 1_000_003  # fold-in id of the diagnostics key, disjoint from training streams
# Orbax logs every save at INFO through absl (dozens of lines per checkpoint), and warns at
# every save of a single-process run that it has no per-process OCDBT files to merge.
QUIET_LOGGERS = ("absl", "orbax", "jax._src.xla_bridge")
HARMLESS_WARNINGS = ("Skipping merge of OCDBT checkpoints",)


def _drop_harmless(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(text in message for text in HARMLESS_WARNINGS)


def _drop_keys(tree: Mapping[str, Any], dotted_keys: tuple[str, ...]) -> dict[str, Any]:
    tree = dict(tree)
    for dotted in dotted_keys:
        head, _, rest = dotted.partition(".")
        if head not in tree:
            continue
        if rest and isinstance(tree[head], Mapping):
            tree[head] = _drop_keys(tree[head], (rest,))
        elif not rest:
            del tree[head]
    return tree


def config_differences(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain configs."""
    keys = sorted(set(a) | set(b))
    diffs: list[str] = []
    for key in keys:
        name = f"{prefix}{key}"
        va, vb = a.get(key, "<missing>"), b.get(key, "<missing>")
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            diffs.extend(config_differences(va, vb, f"{name}."))
        elif va != vb:
            diffs.append(name)
    return diffs


def result_config(container: Mapping[str, Any]) -> dict[str, Any]:
    return _drop_keys(container, NON_RESULT_KEYS)


def prepare_workdir(
    workdir: Path, container: Mapping[str, Any], overwrite: bool
) -> dict[str, Any] | None:
    """The stored summary if this exact run already finished; else clear the way to run."""
    metrics = workdir / out.METRICS_FILE
    summary_path = workdir / out.SUMMARY_FILE
    checkpoints = workdir / out.CHECKPOINT_DIR
    stored_config = workdir / out.CONFIG_FILE
    has_outputs = metrics.exists() or summary_path.exists() or checkpoints.exists()
    if overwrite:
        for path in (metrics, summary_path):
            path.unlink(missing_ok=True)
        shutil.rmtree(checkpoints, ignore_errors=True)
        return None
    if has_outputs and stored_config.exists():
        stored = OmegaConf.to_container(OmegaConf.load(stored_config), resolve=False)
        diffs = config_differences(result_config(stored), result_config(container))
        if diffs:
            shown = ", ".join(diffs[:5]) + (" ..." if len(diffs) > 5 else "")
            raise ValueError(
                f"{workdir} holds a run with a different config (differs in: {shown}); "
                "pass trainer.overwrite=true to replace it, or use another output dir"
            )
    summary = out.read_summary(workdir)
    if summary is not None and summary.get("status") == "finished":
        return summary
    return None


def _prefix_model_error(error: ValueError, spec: Mapping[str, Any], group: str) -> ValueError:
    """`depth must be >= 1` -> `model.depth must be >= 1` when `depth` is a key of the node."""
    message = str(error)
    first = message.split(" ", 1)[0]
    if first in spec and not first.startswith(f"{group}."):
        return ValueError(f"{group}.{message}")
    return error


def build_model(spec: Mapping[str, Any], num_outputs: int) -> Any:
    overrides = {"num_outputs": num_outputs} if spec.get("num_outputs") is None else {}
    try:
        return call_target(spec, **overrides)
    except ValueError as error:
        raise _prefix_model_error(error, spec, "model") from None


def load_data(
    spec: Mapping[str, Any],
    data_dir: str | None = None,
    *,
    batch_size: int | None = None,
    seed: int | None = None,
) -> Any:
    """The data set of the `data` node; a missing local file gets a hint on where to put it
    (TFDS loaders already say how to prepare their data). A `_partial_: true` node builds a
    stream: it is called with `batch_size` (examples per step) and `seed` (data seed)."""
    stream_args = {"batch_size": batch_size, "seed": seed} if spec.get("_partial_") else {}
    try:
        return call_target(spec, **stream_args)
    except ValueError as error:
        if stream_args and str(error).startswith("batch_size"):
            raise ValueError(
                f"trainer.batch_size: {error} (a streamed set's batch size is the examples per "
                "step)"
            ) from None
        raise _prefix_model_error(error, spec, "data") from None
    except FileNotFoundError as error:
        if "prepare" in str(error):
            raise
        raise FileNotFoundError(
            f"{error}; put the file in paths.data_dir (now {data_dir}; set it on the command "
            "line or with $REPRO_DATA_DIR), e.g. MNIST as mnist.npz (../shared/data/README.md), "
            "or load it through TFDS with data=mnist_tfds"
        ) from None


def build_hooks(spec: Mapping[str, Any] | None) -> dict[str, EpochHook]:
    hooks: dict[str, EpochHook] = {}
    for name, node in (spec or {}).items():
        if node is None:  # an experiment can disable an inherited hook with `name: null`
            continue
        try:
            hooks[name] = call_target(node)
        except ValueError as error:
            raise ValueError(f"diagnostics.{name}: {error}") from None
    return hooks


def _reduce(values: list[float | None], how: str) -> float:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return float("nan")
    fn = {"mean": np.mean, "median": np.median, "max": np.max, "min": np.min}[how]
    return float(fn(finite))


def _hydra_overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except Exception:  # no Hydra context (called from Python)
        return []


def train_and_evaluate(cfg: DictConfig | Mapping[str, Any], workdir: str | Path) -> dict[str, Any]:
    """Run (or resume, or skip) the experiment `cfg` in `workdir`; returns summary.json's dict.

    The returned dict carries `"already_finished": True` when the run had finished before.
    """
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if _drop_harmless not in logging.getLogger("absl").filters:
        logging.getLogger("absl").addFilter(_drop_harmless)
    start_time = run_metadata.now_iso()
    wall_start = time.perf_counter()
    workdir = Path(workdir)
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    if "hydra" in cfg:  # composed with return_hydra_config=True: not part of the run's config
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    container = OmegaConf.to_container(cfg, resolve=True)
    plain = to_plain(container)
    validate_config(plain)
    trainer = plain["trainer"]

    workdir.mkdir(parents=True, exist_ok=True)
    finished = prepare_workdir(workdir, container, bool(trainer.get("overwrite", False)))
    if finished is not None:
        return {**finished, "already_finished": True}
    OmegaConf.save(OmegaConf.create(container), workdir / out.CONFIG_FILE)

    # ---- data, model, update rule (all validation before compiling) ----
    plan = rep.plan_from_config(plain)
    task = get_task(plain["task"])
    epochs = int(trainer["epochs"])
    batch_size = int(trainer["batch_size"])
    rule0 = UpdateRule(plain["optimizer"], plain["noise"], trainer.get("clip_norm"), 1, 1)
    try:
        examples_per_step = rule0.examples_per_step(batch_size)
    except ValueError as error:
        raise _prefix_model_error(error, plain["noise"], "noise") from None
    shared_order = bool(trainer.get("shared_data_order", True))
    data_seed = trainer.get("data_seed")
    data_seed = int(plain["seed"] if data_seed is None else data_seed)
    eval_batch_size = int(trainer.get("eval_batch_size", 1000))
    eval_train = int(trainer.get("eval_train_examples", 0) or 0)
    hooks = build_hooks(plain.get("diagnostics"))
    source = load_data(
        plain["data"],
        (plain.get("paths") or {}).get("data_dir"),
        batch_size=examples_per_step,
        seed=data_seed,
    )
    stream = source if is_stream(source) else None
    if stream is None:
        train_arrays = {k: np.asarray(v) for k, v in source.train_arrays().items()}
        num_train = int(train_arrays["x"].shape[0])
        test_source: Any = source.test_arrays()
    else:
        num_train = int(stream.num_examples)
        hook_examples = [int(getattr(h, "num_examples", 0) or 0) for h in hooks.values()]
        # Streams are never whole on the device: init, hooks and train_eval use a sample.
        train_arrays = stream_sample(stream, max(1, eval_train, *hook_examples))
        test_source = stream.test_source(eval_batch_size)
    validate_against_data(plain, num_train, examples_per_step)
    data_devices = trainer.get("data_devices", 1)
    check_data_devices(data_devices, batch_size, examples_per_step)
    steps_per_epoch = num_train // examples_per_step if stream is None else stream.steps_per_epoch
    total_steps = epochs * steps_per_epoch
    rule = UpdateRule(
        plain["optimizer"], plain["noise"], trainer.get("clip_norm"), total_steps, steps_per_epoch
    )
    model = build_model(
        plain["model"], num_outputs_for(task, source.num_classes, train_arrays["y"])
    )
    program = ReplicaModel(
        model, task, rule, examples_per_step, str(trainer.get("divergence_check", "loss"))
    )

    # ---- device data and compiled programs ----
    train_data = {k: jnp.asarray(v) for k, v in train_arrays.items()}
    resident_eval: dict[str, dict[str, jax.Array]] = {}
    streamed_eval = {}
    if is_stream(test_source):
        streamed_eval["test"] = test_source
    elif test_source is not None:
        resident_eval["test"] = {
            k: jnp.asarray(v) for k, v in pad_to_batches(test_source, eval_batch_size).items()
        }
    if eval_train:
        resident_eval["train_eval"] = {
            k: jnp.asarray(v)
            for k, v in pad_to_batches(
                {k: v[:eval_train] for k, v in train_arrays.items()}, eval_batch_size
            ).items()
        }
    hparams = plan.hparam_arrays()
    seed_keys = plan.seed_keys()
    if shared_order:
        data_key = jax.random.fold_in(jax.random.key(data_seed), rep.STREAM_DATA_ORDER)
    else:
        data_key = rep.stream_keys(seed_keys, rep.STREAM_DATA_ORDER)
    init_fn = make_init_fn(program)
    eval_fn = make_eval_fn(program)

    state: TrainState = init_fn(seed_keys, hparams, train_data["x"][:1])

    # ---- replicas sharded over devices (no communication; see sharding.py) ----
    mesh = replica_mesh(plan.num_replicas, trainer.get("replica_devices"), data_devices)
    state = shard_replica_axis(state, mesh)
    hparams = shard_replica_axis(hparams, mesh)
    data_key = replicate(data_key, mesh) if shared_order else shard_replica_axis(data_key, mesh)
    train_data = replicate(train_data, mesh)
    resident_eval = replicate(resident_eval, mesh)

    chunks = int(trainer.get("chunks_per_epoch", 4))
    rows = int(trainer.get("stream_chunk_steps", 16))
    prefetch = int(trainer.get("stream_prefetch", 2))
    evaluators: dict[str, Callable[[ReplicaState], dict[str, jax.Array]]] = {}
    for set_name in ("test", "train_eval"):
        if set_name in resident_eval:
            evaluators[set_name] = functools.partial(_evaluate, eval_fn, resident_eval[set_name])
        elif set_name in streamed_eval:
            evaluators[set_name] = StreamEvaluator(
                program,
                make_eval_sums_fn(program),
                streamed_eval[set_name],
                rows=rows,
                put=functools.partial(to_devices, mesh=mesh),
                prefetch=prefetch,
            )
    if stream is None:
        feed: ResidentFeed | StreamFeed = ResidentFeed(
            make_chunk_fn(program, steps_per_epoch, shared_order, batch_sharding(mesh)),
            make_order_fn(num_train, steps_per_epoch, examples_per_step, shared_order),
            data_key,
            train_data,
            steps_per_epoch,
        )
    else:
        feed = StreamFeed(
            program,
            stream,
            total_steps=total_steps,
            chunks_per_epoch=chunks,
            rows=rows,
            put=functools.partial(to_devices, mesh=mesh, example_axis=1),
            prefetch=prefetch,
            batch_sharding=batch_sharding(mesh),
        )

    # ---- resume ----
    metrics_log = out.MetricsLog(workdir / out.METRICS_FILE)
    policy = CheckpointPolicy(
        every_epochs=int(trainer.get("checkpoint_every_epochs", 1)),
        min_interval_s=float(trainer.get("checkpoint_min_interval_s", 0.0) or 0.0),
        within_epoch=bool(trainer.get("checkpoint_within_epoch", False)),
    )
    checkpointer = Checkpointer(
        workdir / out.CHECKPOINT_DIR, max_to_keep=int(trainer.get("checkpoint_max_to_keep", 2))
    )
    wall_offset = 0.0
    resumed_from = None
    if checkpointer.latest_step() is not None:
        state, meta = checkpointer.restore(state)
        wall_offset = float(meta.get("wall_time_s", 0.0))
        resumed_from = int(state.step)
        metrics_log.truncate_after_epoch(int(state.step) // steps_per_epoch)
    else:
        metrics_log.truncate_after_epoch(-1)

    logger = build_logger(
        plain.get("logger"), container, workdir, f"{plain['name']}/{workdir.name}"
    )
    progress = Progress(total_steps, int(state.step), trainer.get("progress", "auto"))
    exit_code = 1
    try:
        step = int(state.step)
        run_start = time.perf_counter()
        if resumed_from is not None:
            print(f"resumed from step {resumed_from} (epoch {resumed_from // steps_per_epoch})")
        while step < total_steps:
            epoch = step // steps_per_epoch
            if step % steps_per_epoch == 0:
                state = reset_sums(state)
            first_step = step
            epoch_start = last_update = time.perf_counter()
            base = epoch * steps_per_epoch
            for stop in (s for s in chunk_stops(epoch, steps_per_epoch, chunks) if s > step):
                state = feed.advance(state, hparams, step, stop)
                if progress.bar is not None:
                    # Reading the sums waits for the chunk: once per chunk, a few per epoch.
                    loss = _reduce(
                        list(np.asarray(state.replicas.sums["loss"]) / (stop - base)), "mean"
                    )
                    now = time.perf_counter()
                    progress.update(
                        stop - step,
                        loss,
                        (stop - step) * examples_per_step / (now - last_update),
                        epoch + 1,
                    )
                    last_update = now
                step = stop
                if step < base + steps_per_epoch and policy.due_within_epoch():
                    checkpointer.save(
                        state, _ckpt_meta(state, steps_per_epoch, wall_offset, run_start)
                    )
                    policy.saved()
            jax.block_until_ready(state.step)
            train_time = time.perf_counter() - epoch_start
            trained_steps = step - first_step
            epoch += 1

            evaluate = epoch % int(trainer.get("eval_every_epochs", 1)) == 0 or epoch == epochs
            if evaluate:
                record = _epoch_record(state, epoch, step, steps_per_epoch, evaluators, task)
                for name, hook in hooks.items():
                    if epoch % int(getattr(hook, "every_epochs", 1)) == 0:
                        ctx = HookContext(
                            epoch=epoch,
                            step=step,
                            program=program,
                            replicas=state.replicas,
                            train_data=train_data,
                            key=jax.random.fold_in(jax.random.key(HOOK_STREAM), epoch),
                        )
                        for key, value in hook(ctx).items():
                            record[f"{name}/{key}"] = np.asarray(value)
                elapsed = wall_offset + time.perf_counter() - run_start
                record["wall_time_s"] = elapsed
                record["examples_per_s"] = (
                    trained_steps * examples_per_step / train_time if train_time > 0 else None
                )
                record = out.jsonable(record)
                metrics_log.append(record)
                logger.log_epoch(record, step)
            if policy.due_at_epoch_end(epoch, final=epoch == epochs):
                checkpointer.save(state, _ckpt_meta(state, steps_per_epoch, wall_offset, run_start))
                policy.saved()
        checkpointer.wait()
        summary = _summary(
            plain,
            plan,
            state,
            metrics_log.read(),
            start_time,
            wall_start,
            resumed_from,
            total_steps,
        )
        # Float rounding (not the statistics) depends on how many replicas share a device:
        # XLA:CPU picks its matmul blocking by operand size. Recorded so a run can be repeated
        # bit-for-bit (trainer.cpu_devices / replica_devices / data_devices).
        summary["metadata"]["mesh"] = dict(mesh.shape) if mesh is not None else {}
        out.write_json_atomic(workdir / out.SUMMARY_FILE, summary)
        logger.log_summary(summary)
        exit_code = 0
        return summary
    finally:
        feed.close()
        progress.close()
        checkpointer.close()
        logger.finish(exit_code)


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


def _ckpt_meta(
    state: TrainState, steps_per_epoch: int, wall_offset: float, run_start: float
) -> dict[str, Any]:
    step = int(state.step)
    return {
        "step": step,
        "epoch": step // steps_per_epoch,
        "wall_time_s": wall_offset + time.perf_counter() - run_start,
    }


def _evaluate(
    eval_fn: Any, data: Mapping[str, jax.Array], replicas: ReplicaState
) -> dict[str, jax.Array]:
    return eval_fn(replicas, data)


def _epoch_record(
    state: TrainState,
    epoch: int,
    step: int,
    steps_per_epoch: int,
    evaluators: Mapping[str, Callable[[ReplicaState], Mapping[str, jax.Array]]],
    task: Task,
) -> dict[str, Any]:
    replicas = state.replicas
    record: dict[str, Any] = {"epoch": epoch, "step": step}
    # Steps of this epoch summed in `sums` (a run resumed mid-epoch restored partial sums).
    for name, total in replicas.sums.items():
        record[f"train_{name}"] = np.asarray(total) / steps_per_epoch
    record = task.with_ratios(record, "train_")
    for set_name, evaluate in evaluators.items():
        means = {f"{set_name}_{k}": np.asarray(v) for k, v in evaluate(replicas).items()}
        record.update(task.with_ratios(means, f"{set_name}_"))
    record["diverged"] = np.asarray(replicas.diverged)
    return record


def _summary(
    plain: Mapping[str, Any],
    plan: rep.ReplicaPlan,
    state: TrainState,
    records: list[dict[str, Any]],
    start_time: str,
    wall_start: float,
    resumed_from: int | None,
    total_steps: int,
) -> dict[str, Any]:
    objective_cfg = plain.get("objective") or {}
    task = get_task(plain["task"])
    metric = objective_cfg.get("metric") or task.default_objective
    mode = objective_cfg.get("mode") or task.default_mode
    last = records[-1] if records else {}
    final_keys = [k for k, v in last.items() if isinstance(v, list) and k != "diverged"]
    diverged = np.asarray(state.replicas.diverged).tolist()
    diverged_step = np.asarray(state.replicas.diverged_step).tolist()

    def best_of(index: int) -> dict[str, Any]:
        series = [
            (r["epoch"], r[metric][index])
            for r in records
            if isinstance(r.get(metric), list) and r[metric][index] is not None
        ]
        if not series:
            return {metric: None, "epoch": None}
        pick = max if mode == "max" else min
        epoch, value = pick(series, key=lambda item: item[1])
        return {metric: value, "epoch": epoch}

    replicas = []
    for i in range(plan.num_replicas):
        replicas.append(
            {
                "index": i,
                "seed": plan.seeds[i],
                "hparams": plan.hparams(i),
                "final": {k: last[k][i] for k in final_keys},
                "best": best_of(i),
                "diverged": bool(diverged[i]),
                "diverged_step": None if diverged_step[i] < 0 else int(diverged_step[i]),
            }
        )
    aggregate = {k: out.aggregate_stats(last[k]) for k in final_keys}
    by_grid: dict[str, Any] = {}
    if plan.grid_key is not None:
        for g, value in enumerate(plan.grid_values):
            members = [i for i in range(plan.num_replicas) if plan.grid_index[i] == g]
            by_grid[repr(value)] = {
                k: out.aggregate_stats([last[k][i] for i in members]) for k in final_keys
            }
    objective_values = last.get(metric, [])
    metadata = run_metadata.collect(start_time)
    metadata["end_time"] = run_metadata.now_iso()
    metadata["wall_time_s"] = time.perf_counter() - wall_start
    metadata["resumed_from_step"] = resumed_from
    return {
        "status": "finished",
        "experiment": plain["name"],
        "objective": _reduce(objective_values, objective_cfg.get("reduce", "mean")),
        "objective_metric": metric,
        "objective_mode": mode,
        "num_replicas": plan.num_replicas,
        "grid_key": plan.grid_key,
        "epochs": int(plain["trainer"]["epochs"]),
        "steps": total_steps,
        "replicas": replicas,
        "aggregate": aggregate,
        "aggregate_by_grid": by_grid,
        "metadata": metadata,
        "overrides": _hydra_overrides(),
    }

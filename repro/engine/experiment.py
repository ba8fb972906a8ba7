"""The build stage: a RunSpec -> everything the epoch loop runs (data, model, program, feeds,
evaluators, hooks, the device mesh and the initial state).

Order: every check that needs the data (batch size vs. set size, data devices) happens
before the first compilation (`init_fn`). Data is either resident (an ArrayDataset put whole
on every device, or split over the data devices, split_data.py; chunks gather batches by
index, epoch.py) or streamed (a `stream: true` data
node, repro/data/streaming.py; chunks of host-fed batches, feeding.py); both sit behind one
`feed.advance(state, hparams, start, stop)`, and each evaluation set behind one callable.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from repro.data.streaming import is_stream
from repro.engine import replicas as rep
from repro.engine.config_validation import validate_against_data
from repro.engine.data_loading import (
    TrainingData,
    load_data,
    prefixed_config_error,
    training_data,
)
from repro.engine.epoch import ResidentFeed, make_chunk_fn, make_order_fn
from repro.engine.evaluation import make_eval_fn, make_eval_sums_fn, pad_to_batches
from repro.engine.feeding import StreamEvaluator, StreamFeed
from repro.engine.hooks import EpochHook, check_hooks
from repro.engine.instantiate import call_target
from repro.engine.optimizers import UpdateRule
from repro.engine.run_spec import RunSpec
from repro.engine.sharding import (
    batch_sharding,
    check_data_devices,
    process_part,
    put_process_part,
    replica_mesh,
    replicate,
    shard_replica_axis,
    to_devices,
)
from repro.engine.split_data import describe as describe_split
from repro.engine.split_data import eval_batch_multiple, is_split, make_split_gather, place_split
from repro.engine.steps import ReplicaModel, make_init_fn
from repro.engine.tasks import Task, get_task, num_outputs_for
from repro.engine.train_state import ReplicaState, TrainState
from repro.errors import ConfigError

Evaluator = Callable[[ReplicaState], Mapping[str, jax.Array]]


@dataclasses.dataclass
class Experiment:
    """A built run: the compiled program, its inputs on the devices and its schedule."""

    plan: rep.ReplicaPlan
    task: Task
    program: ReplicaModel
    hooks: dict[str, EpochHook]
    mesh: Mesh | None
    hparams: dict[str, jax.Array]  # grid values [R], sharded over the replica axis
    train_data: dict[str, jax.Array]  # hooks' view: the set, or its first examples (split/stream)
    feed: ResidentFeed | StreamFeed
    evaluators: dict[str, Evaluator]  # set name (test, validation, train_eval) -> means [R]
    eval_data: dict[str, dict[str, jax.Array]]  # the resident sets behind them (padded batches)
    data_description: dict[str, Any]  # summary.json metadata.data (sizes, counted skips)
    initial_state: TrainState
    examples_per_step: int
    steps_per_epoch: int
    epochs: int

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def close(self) -> None:
        self.feed.close()


def build_network(spec: Mapping[str, Any], num_outputs: int) -> Any:
    """The Flax module of the `model` node (`num_outputs` filled in unless the node sets it);
    a constructor's complaint about one of the node's keys is a ConfigError."""
    overrides = {"num_outputs": num_outputs} if spec.get("num_outputs") is None else {}
    try:
        return call_target(spec, **overrides)
    except ValueError as error:
        raise prefixed_config_error(error, spec, "model") from None


def build_hooks(spec: Mapping[str, Any] | None) -> dict[str, EpochHook]:
    """The diagnostics hooks of the `diagnostics` node (`name: null` disables one)."""
    hooks: dict[str, EpochHook] = {}
    for name, node in (spec or {}).items():
        if node is None:  # an experiment can disable an inherited hook with `name: null`
            continue
        try:
            hooks[name] = call_target(node)
        except ValueError as error:
            raise ConfigError(f"diagnostics.{name}: {error}") from None
    return hooks


def _examples_per_step(spec: RunSpec) -> int:
    plain = spec.plain
    rule = UpdateRule(plain["optimizer"], plain["noise"], spec.trainer.clip_norm, 1, 1)
    batch_size = spec.trainer.batch_size
    try:
        return rule.examples_per_step(batch_size)
    except ValueError as error:
        converted = prefixed_config_error(error, plain["noise"], "noise")
        sampler, _, rest = str(error).partition(" ")
        key = rest.split(" ", 1)[0]
        if converted is error and key in plain["noise"]:
            # A sampler's check of the batch it weights: "<sampler> <key> must ...".
            raise ConfigError(
                f"noise.{rest} (noise: {plain['noise'].get('_target_', sampler)}; the batch is "
                f"trainer.batch_size={batch_size})"
            ) from None
        raise converted from None


def _hook_sample(spec: RunSpec, hooks: Mapping[str, EpochHook]) -> int:
    """How many of the first training examples hooks and train_eval read."""
    hook_examples = [int(getattr(h, "num_examples", 0) or 0) for h in hooks.values()]
    return max(spec.trainer.eval_train_examples, *hook_examples, 1)


def _load(spec: RunSpec, examples_per_step: int, hooks: Mapping[str, EpochHook]) -> TrainingData:
    source = load_data(
        spec.plain["data"], spec.data_dir, batch_size=examples_per_step, seed=spec.data_seed
    )
    # Streams are never whole on the device: init, hooks and train_eval use a sample.
    data = training_data(source, _hook_sample(spec, hooks), spec.trainer.eval_batch_size)
    validate_against_data(spec.plain, data.num_train, examples_per_step)
    try:
        check_data_devices(spec.trainer.data_devices, spec.trainer.batch_size, examples_per_step)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return data


def _resident_eval_sets(
    spec: RunSpec, data: TrainingData, multiple: int = 1
) -> dict[str, dict[str, np.ndarray]]:
    """The resident evaluation sets as padded batches on the host (batch size rounded up to
    `multiple`, the data devices a split set is sharded over)."""

    def padded(arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return pad_to_batches(arrays, spec.trainer.eval_batch_size, multiple)

    sets: dict[str, dict[str, np.ndarray]] = {}
    if data.test_source is not None and not is_stream(data.test_source):
        sets["test"] = padded(data.test_source)
    if data.validation_arrays is not None:
        sets["validation"] = padded(data.validation_arrays)
    if n := spec.trainer.eval_train_examples:
        sets["train_eval"] = padded({k: v[:n] for k, v in data.train_arrays.items()})
    return sets


def _evaluate(
    eval_fn: Any, data: Mapping[str, jax.Array], replicas: ReplicaState
) -> Mapping[str, jax.Array]:
    return eval_fn(replicas, data)


def _evaluators(
    spec: RunSpec,
    program: ReplicaModel,
    data: TrainingData,
    resident: Mapping[str, dict[str, jax.Array]],
    mesh: Mesh | None,
) -> dict[str, Evaluator]:
    eval_fn = make_eval_fn(program)
    evaluators: dict[str, Evaluator] = {}
    for set_name in ("test", "validation", "train_eval"):
        if set_name in resident:
            evaluators[set_name] = functools.partial(_evaluate, eval_fn, resident[set_name])
        elif set_name == "test" and is_stream(data.test_source):
            evaluators[set_name] = StreamEvaluator(
                program,
                make_eval_sums_fn(program),
                data.test_source,
                rows=spec.trainer.stream_chunk_steps,
                put=functools.partial(to_devices, mesh=mesh),
                prefetch=spec.trainer.stream_prefetch,
            )
    return evaluators


@dataclasses.dataclass(frozen=True)
class _Placed:
    """The run's arrays on the replica mesh."""

    mesh: Mesh | None
    state: TrainState
    hparams: dict[str, jax.Array]
    train_data: dict[str, jax.Array]  # what the resident feed gathers from (split or whole)
    hook_data: dict[str, jax.Array]  # what hooks read: the first examples, whole
    data_key: jax.Array
    resident_eval: dict[str, dict[str, jax.Array]]
    split: bool  # resident sets split over the data devices (split_data.py)


def _place(
    spec: RunSpec, plan: rep.ReplicaPlan, program: ReplicaModel, data: TrainingData, sample: int
) -> _Placed:
    """Initialise the replicas (the first compilation) and shard/replicate over the mesh."""
    trainer = spec.trainer
    mesh = replica_mesh(plan.num_replicas, trainer.replica_devices, trainer.data_devices)
    split = is_split(trainer.resident_split, mesh, trainer.batch_size)
    hparams = plan.hparam_arrays()
    first = jnp.asarray(data.train_arrays["x"][:1])
    state = make_init_fn(program)(plan.seed_keys(), hparams, first)
    data_key = _data_order_key(spec, plan)
    data_key = (replicate if trainer.shared_data_order else shard_replica_axis)(data_key, mesh)
    host_sets = _resident_eval_sets(spec, data, eval_batch_multiple(mesh, split))
    if split:  # never the whole set on one device
        assert mesh is not None
        hook_data = replicate(_as_jax({k: v[:sample] for k, v in data.train_arrays.items()}), mesh)
        train_data = hook_data if data.stream else place_split(data.train_arrays, mesh)
        resident = {name: place_split(b, mesh, axis=1) for name, b in host_sets.items()}
    else:
        train_data = hook_data = replicate(_as_jax(data.train_arrays), mesh)
        resident = replicate({n: _as_jax(b) for n, b in host_sets.items()}, mesh)
    return _Placed(
        mesh,
        shard_replica_axis(state, mesh),
        shard_replica_axis(hparams, mesh),
        train_data,
        hook_data,
        data_key,
        resident,
        split,
    )


def _data_description(data: TrainingData, placed: _Placed) -> dict[str, Any]:
    description = dict(data.description)
    if placed.split and placed.mesh is not None:
        description["resident_split"] = describe_split(placed.mesh, data.num_train)
    return description


def _as_jax(arrays: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    return {k: jnp.asarray(v) for k, v in arrays.items()}


def _feed(
    spec: RunSpec,
    program: ReplicaModel,
    data: TrainingData,
    placed: _Placed,
    examples_per_step: int,
    steps_per_epoch: int,
) -> ResidentFeed | StreamFeed:
    shared_order = spec.trainer.shared_data_order
    mesh = placed.mesh
    if data.stream is None:
        return ResidentFeed(
            make_chunk_fn(
                program,
                steps_per_epoch,
                shared_order,
                batch_sharding(mesh),
                gather=make_split_gather(mesh) if placed.split and mesh is not None else None,
            ),
            make_order_fn(data.num_train, steps_per_epoch, examples_per_step, shared_order),
            placed.data_key,
            placed.train_data,
            steps_per_epoch,
        )
    put: Callable[[Any], Any] = functools.partial(to_devices, mesh=mesh, example_axis=1)
    stacked = batch_sharding(mesh, example_axis=1)
    part = process_part(stacked, data.stream.batch_size)
    if part is not None:  # the batch is split over processes: each reads only its part
        if "part" not in inspect.signature(data.stream.epoch_batches).parameters:
            raise ConfigError(
                f"data: the {type(data.stream).__name__} stream cannot be split by process "
                f"(its epoch_batches has no part=); trainer.data_devices="
                f"{spec.trainer.data_devices} splits each batch over {jax.process_count()} "
                "processes: use a data_devices that fits in one process, or a stream with part="
            )
        put = functools.partial(
            put_process_part, sharding=stacked, batch_size=data.stream.batch_size
        )
    return StreamFeed(
        program,
        data.stream,
        total_steps=spec.trainer.epochs * steps_per_epoch,
        chunks_per_epoch=spec.trainer.chunks_per_epoch,
        rows=spec.trainer.stream_chunk_steps,
        put=put,
        prefetch=spec.trainer.stream_prefetch,
        batch_sharding=batch_sharding(mesh),
        part=part,
    )


def _program(
    spec: RunSpec, task: Task, data: TrainingData, examples_per_step: int, steps_per_epoch: int
) -> ReplicaModel:
    plain, trainer = spec.plain, spec.trainer
    rule = UpdateRule(
        plain["optimizer"],
        plain["noise"],
        trainer.clip_norm,
        trainer.epochs * steps_per_epoch,
        steps_per_epoch,
        trainer.batch_size,
    )
    outputs = num_outputs_for(task, data.num_classes, data.train_arrays["y"])
    model = build_network(plain["model"], outputs)
    return ReplicaModel(model, task, rule, examples_per_step, str(trainer.divergence_check))


def _data_order_key(spec: RunSpec, plan: rep.ReplicaPlan) -> jax.Array:
    if spec.trainer.shared_data_order:
        return jax.random.fold_in(jax.random.key(spec.data_seed), rep.STREAM_DATA_ORDER)
    return rep.stream_keys(plan.seed_keys(), rep.STREAM_DATA_ORDER)


def _num_params(program: ReplicaModel, data: TrainingData) -> int:
    """Parameters of one replica, from the shapes of the model's init."""
    sample = jnp.asarray(data.train_arrays["x"][:1])
    shapes = jax.eval_shape(
        lambda x: program.model.init({"params": jax.random.key(0)}, x, train=False), sample
    )
    return sum(int(leaf.size) for leaf in jax.tree.leaves(shapes.get("params", {})))


def build_experiment(spec: RunSpec) -> Experiment:
    """Load the data, build model and program, compile the init, place everything on the
    replica mesh (no communication between replicas; see sharding.py)."""
    plan = rep.plan_from_config(spec.plain)
    task = get_task(spec.plain["task"])
    examples_per_step = _examples_per_step(spec)
    hooks = build_hooks(spec.plain.get("diagnostics"))
    data = _load(spec, examples_per_step, hooks)
    steps_per_epoch = (
        data.num_train // examples_per_step if data.stream is None else data.stream.steps_per_epoch
    )
    program = _program(spec, task, data, examples_per_step, steps_per_epoch)
    if hooks:  # before the first compilation: shapes only (eval_shape traces, never compiles)
        available = int(data.train_arrays["x"].shape[0])
        check_hooks(hooks, available, _num_params(program, data), task.name)
    placed = _place(spec, plan, program, data, _hook_sample(spec, hooks))
    return Experiment(
        plan=plan,
        task=task,
        program=program,
        hooks=hooks,
        mesh=placed.mesh,
        hparams=placed.hparams,
        train_data=placed.hook_data,
        feed=_feed(spec, program, data, placed, examples_per_step, steps_per_epoch),
        evaluators=_evaluators(spec, program, data, placed.resident_eval, placed.mesh),
        eval_data=placed.resident_eval,
        data_description=_data_description(data, placed),
        initial_state=placed.state,
        examples_per_step=examples_per_step,
        steps_per_epoch=steps_per_epoch,
        epochs=spec.trainer.epochs,
    )

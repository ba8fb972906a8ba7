"""One optimizer step of one replica, and the vmapped init of all replicas.

For replica r at global step t with batch b (examples i = 1..n, n = examples per step):

    l_i     = task.loss(model(params_r, x_i), y_i)
    L_r     = mean_i(w_i * l_i)          w = sampler(key, n), or w = 1 without a sampler
    g_r     = dL_r / dparams_r
    u, s'   = tx_r.update(g_r, s_r, params_r)      tx_r = chain(clip, noise, optimizer)
    params' = params_r + u

If L_r is not finite, replica r is marked diverged at step t, the update of step t is
dropped and its state is frozen from then on (its reported training metrics become NaN); the
other replicas go on. `divergence_check="full"` also tests |g_r| and |u| every step, so the
frozen state is the last finite one even when a gradient overflows while the loss is still
finite; it costs two reductions over all parameters per step, which on CPU is about a third
of a small MLP's step, hence the default "loss" (with gradient clipping the gradient norm is
computed anyway and is always tested).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from repro.engine import replicas as rep
from repro.engine.optimizers import UpdateRule
from repro.engine.tasks import Batch, Task
from repro.engine.train_state import ReplicaState, TrainState, select_tree


@dataclasses.dataclass(frozen=True)
class ReplicaModel:
    """The model, loss and update rule shared by all replicas (static program structure)."""

    model: nn.Module
    task: Task
    rule: UpdateRule
    examples_per_step: int
    divergence_check: str = "loss"  # "loss" | "full" (see module docstring)

    def apply(
        self,
        params: Any,
        model_state: Any,
        batch: Batch,
        *,
        train: bool,
        rngs: Mapping[str, jax.Array] | None = None,
    ) -> tuple[jax.Array, Any]:
        """Model outputs and (when training with mutable collections) the new model state.

        The model gets ``batch["x"]`` and, as keyword arguments, the further batch entries it
        names in its ``input_keys`` class attribute (e.g. Jasper's ``("x", "x_paddings")``);
        an entry the batch lacks is left out, so the model's default applies (Jasper: no
        padding). Outputs may be any pytree (Jasper: ``(logits, output_paddings)``); they go
        to the task as they are.
        """
        variables = {"params": params, **model_state}
        extra = {k: batch[k] for k in model_input_keys(self.model)[1:] if k in batch}
        if train and model_state:
            outputs, new_state = self.model.apply(
                variables, batch["x"], **extra, train=True, rngs=rngs, mutable=list(model_state)
            )
            return outputs, dict(new_state)
        outputs = self.model.apply(variables, batch["x"], **extra, train=train, rngs=rngs)
        return outputs, model_state

    def init_replica(
        self, seed_key: jax.Array, hparams: Mapping[str, jax.Array], sample_x: jax.Array
    ) -> ReplicaState:
        """State of one replica from its seed key (vmapped over replicas by `init_state`)."""
        variables = dict(
            self.model.init(
                {"params": jax.random.fold_in(seed_key, rep.STREAM_INIT)}, sample_x, train=False
            )
        )
        params = variables.pop("params")
        noise_key = jax.random.fold_in(seed_key, rep.STREAM_GRADIENT_NOISE)
        opt_state = self.rule.transformation(hparams, noise_key).init(params)
        metric_names = ("loss", *self.task.training_metric_names)
        return ReplicaState(
            params=params,
            model_state=variables,
            opt_state=opt_state,
            key=seed_key,
            diverged=jnp.zeros((), bool),
            diverged_step=jnp.full((), -1, jnp.int32),
            sums={name: jnp.zeros((), jnp.float32) for name in metric_names},
        )

    def replica_step(
        self,
        rs: ReplicaState,
        hparams: Mapping[str, jax.Array],
        batch: Batch,
        step: jax.Array,
    ) -> ReplicaState:
        """One optimizer step of one replica (see module docstring)."""
        rngs = {"dropout": _step_key(rs.key, rep.STREAM_DROPOUT, step)}
        sampler = self.rule.sampler(hparams)

        def loss_fn(params: Any) -> tuple[jax.Array, tuple[Any, dict[str, jax.Array]]]:
            outputs, new_model_state = self.apply(
                params, rs.model_state, batch, train=True, rngs=rngs
            )
            per_example = self.task.per_example(outputs, batch, train=True)
            losses = per_example["loss"]
            if sampler is None:
                loss = jnp.mean(losses)
            else:
                weights = sampler(
                    _step_key(rs.key, rep.STREAM_EXAMPLE_WEIGHTS, step), self.examples_per_step
                )
                loss = jnp.mean(weights * losses)
            return loss, (new_model_state, per_example)

        (loss, (new_model_state, per_example)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            rs.params
        )
        noise_key = jax.random.fold_in(rs.key, rep.STREAM_GRADIENT_NOISE)
        tx = self.rule.transformation(hparams, noise_key)
        updates, new_opt_state = tx.update(grads, rs.opt_state, rs.params)
        new_params = optax.apply_updates(rs.params, updates)

        finite = jnp.isfinite(loss)
        if self.divergence_check == "full" or self.rule.clip_norm is not None:
            # Same expression as in clip_by_global_norm, so XLA computes it once.
            finite &= jnp.isfinite(optax.tree.norm(grads))
        if self.divergence_check == "full":
            finite &= jnp.isfinite(optax.tree.norm(updates))
        accept = finite & ~rs.diverged
        diverged = rs.diverged | ~finite
        step_metrics = {name: jnp.mean(v) for name, v in per_example.items()}
        sums = {
            name: jnp.where(diverged, jnp.nan, rs.sums[name] + step_metrics[name])
            for name in rs.sums
        }
        return ReplicaState(
            params=select_tree(accept, new_params, rs.params),
            model_state=select_tree(accept, new_model_state, rs.model_state),
            opt_state=select_tree(accept, new_opt_state, rs.opt_state),
            key=rs.key,
            diverged=diverged,
            diverged_step=jnp.where(
                ~rs.diverged & ~finite, step.astype(jnp.int32), rs.diverged_step
            ),
            sums=sums,
        )


def model_input_keys(model: nn.Module) -> tuple[str, ...]:
    """Batch entries a model takes: its ``input_keys`` class attribute, ``("x",)`` by default."""
    keys = tuple(getattr(model, "input_keys", ("x",)))
    if not keys or keys[0] != "x":
        raise ValueError(f"{type(model).__name__}.input_keys must start with 'x', got {keys}")
    return keys


def _step_key(seed_key: jax.Array, stream: int, step: jax.Array) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(seed_key, stream), step)


def make_init_fn(
    program: ReplicaModel,
) -> Callable[[jax.Array, Mapping[str, jax.Array], jax.Array], TrainState]:
    """jit(init) of all replicas: (seed_keys [R], hparams {k: [R]}, sample_x) -> TrainState."""

    def init_state(
        seed_keys: jax.Array, hparams: Mapping[str, jax.Array], sample_x: jax.Array
    ) -> TrainState:
        replicas = jax.vmap(program.init_replica, in_axes=(0, 0, None))(
            seed_keys, hparams, sample_x
        )
        return TrainState(step=jnp.zeros((), jnp.int32), replicas=replicas)

    return jax.jit(init_state)

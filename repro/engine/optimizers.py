"""The per-replica update rule: clipping, gradient noise, optimizer, example weights.

The gradient transformation of one replica is, as in Neelakantan et al. (noise after
clipping, before the optimizer):

    optax.chain(clip_by_global_norm(c), noise_transform, optimizer(schedule(lr)))

Every noise source has its own stream: the noise transform draws from the replica's
gradient-noise key, and an optimizer that draws noise too (it takes a ``key``) from
``fold_in(key, OPTIMIZER_NOISE_STREAM)``, or from the key itself when it is the only source.

It is built *inside* the vmapped replica function from plain config dicts, so a grid value
(``optimizer.learning_rate``, ``noise.eta``, ``trainer.clip_norm``, any numeric optimizer or
noise argument) arrives as a traced scalar. Noise of kind ``example_weights`` instead draws
per-example loss weights w (E[w] = 1) from a ``repro.optim`` sampler: the replica's loss is
``mean(w * per_example_loss)`` over ``sampler.num_examples(B)`` examples (2B for noise
enhancement).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

import jax
import optax

from repro.engine.instantiate import (
    RESERVED_KEYS,
    accepts_argument,
    call_target,
    set_dotted,
    target_of,
)
from repro.engine.schedules import batch_scaling_factor, build_schedule
from repro.errors import ConfigError

NOISE_KINDS = ("none", "gradient", "example_weights")
# Stream of an optimizer's own noise (e.g. repro.optim.noisy_sgd) when a `noise` transform of
# kind `gradient` draws too: fold_in(replica noise key, OPTIMIZER_NOISE_STREAM). A single source
# keeps the replica's noise key itself, so one-source runs draw what they always drew.
OPTIMIZER_NOISE_STREAM = 1
# Keys of the noise node that the engine reads and never passes to the target.
NOISE_ENGINE_KEYS = ("kind",)
OPTIMIZER_ENGINE_KEYS = ("schedule", "learning_rate", "batch_scaling")
# Hydra `instantiate` flags: the engine calls `_target_` itself (inside the replica function,
# with traced hyperparameters), so none of them could take effect.
_INSTANTIATE_FLAGS = tuple(key for key in RESERVED_KEYS if key != "_target_")


class ExampleWeightSampler(Protocol):
    """repro.optim sampler interface (see DESIGN.md)."""

    def num_examples(self, batch_size: int) -> int: ...

    def __call__(self, key: jax.Array, num_examples: int) -> jax.Array: ...


def _apply_hparams(
    spec: Mapping[str, Any], prefix: str, hparams: Mapping[str, Any]
) -> dict[str, Any]:
    spec = dict(spec)
    for key, value in hparams.items():
        if key.startswith(prefix):
            spec = set_dotted(spec, key[len(prefix) :], value)
    return spec


@dataclasses.dataclass(frozen=True)
class UpdateRule:
    """Everything static about how a replica turns gradients into parameter updates."""

    optimizer: Mapping[str, Any]  # plain `optimizer` node (with `schedule`)
    noise: Mapping[str, Any]  # plain `noise` node (with `kind`)
    clip_norm: float | None
    total_steps: int
    steps_per_epoch: int
    batch_size: int | None = None  # trainer.batch_size, for optimizer.batch_scaling

    def __post_init__(self) -> None:
        for group, node in (("optimizer", self.optimizer), ("noise", self.noise)):
            for flag in _INSTANTIATE_FLAGS:
                if flag in node:
                    raise ConfigError(
                        f"{group}.{flag}={node[flag]!r} has no effect: the engine calls "
                        f"{group}._target_ itself; remove {group}.{flag}"
                    )

    @property
    def noise_kind(self) -> str:
        return str(self.noise.get("kind", "none"))

    def transformation(
        self, hparams: Mapping[str, Any], noise_key: jax.Array
    ) -> optax.GradientTransformation:
        """The replica's optax transformation; `hparams` values may be traced."""
        opt = _apply_hparams(self.optimizer, "optimizer.", hparams)
        learning_rate = opt["learning_rate"]
        factor = batch_scaling_factor(opt.get("batch_scaling"), self.batch_size)
        if factor != 1.0:
            learning_rate = learning_rate * factor
        learning_rate = build_schedule(
            opt.get("schedule"), learning_rate, self.total_steps, self.steps_per_epoch
        )
        optimizer_fn = target_of(opt)
        extra = {}
        if accepts_argument(optimizer_fn, "key"):
            extra["key"] = self._optimizer_noise_key(noise_key)
        optimizer = call_target(
            opt, exclude=OPTIMIZER_ENGINE_KEYS, learning_rate=learning_rate, **extra
        )
        chain: list[optax.GradientTransformation] = []
        clip = hparams.get("trainer.clip_norm", self.clip_norm)
        if clip is not None:
            chain.append(optax.clip_by_global_norm(clip))
        if self.noise_kind == "gradient":
            noise = _apply_hparams(self.noise, "noise.", hparams)
            chain.append(call_target(noise, exclude=NOISE_ENGINE_KEYS, key=noise_key))
        chain.append(optimizer)
        return optax.chain(*chain) if len(chain) > 1 else chain[0]

    def _optimizer_noise_key(self, noise_key: jax.Array) -> jax.Array:
        """The optimizer's key: its own stream when the noise transform uses `noise_key`.

        Two sources on one key would draw identical noise (variance (s1 + s2)^2, not
        s1^2 + s2^2).
        """
        if self.noise_kind == "gradient":
            return jax.random.fold_in(noise_key, OPTIMIZER_NOISE_STREAM)
        return noise_key

    def sampler(self, hparams: Mapping[str, Any]) -> ExampleWeightSampler | None:
        """The example-weight sampler (noise kind `example_weights`), else None."""
        if self.noise_kind != "example_weights":
            return None
        noise = _apply_hparams(self.noise, "noise.", hparams)
        return call_target(noise, exclude=NOISE_ENGINE_KEYS)

    def examples_per_step(self, batch_size: int) -> int:
        """Examples one step consumes: B, or `sampler.num_examples(B)` (2B for enhancement).

        Evaluated on the base config (concrete values): the count must not depend on a grid
        value, because it fixes the shapes of the compiled program.
        """
        sampler = self.sampler({})
        if sampler is None:
            return int(batch_size)
        return int(sampler.num_examples(int(batch_size)))

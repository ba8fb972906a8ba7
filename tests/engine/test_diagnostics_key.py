"""The diagnostics hooks' key: derived from the run's seed, disjoint from training streams."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from repro.engine import replicas as rep
from repro.engine import train_and_evaluate
from repro.engine.epoch_loop import STREAM_DIAGNOSTICS, diagnostics_key
from repro.engine.hooks import HookContext

TRAINING_STREAMS = sorted(v for k, v in vars(rep).items() if k.startswith("STREAM_"))


class KeyRecorder:
    """A hook that reports the raw bits of the key it was given."""

    every_epochs = 1

    def __call__(self, ctx: HookContext) -> Mapping[str, Any]:
        return {"key_bits": np.asarray(jax.random.key_data(ctx.key))}


def _bits(key: jax.Array) -> tuple[int, ...]:
    return tuple(int(b) for b in np.asarray(jax.random.key_data(key)).ravel())


def test_the_stream_id_is_not_a_training_stream() -> None:
    assert STREAM_DIAGNOSTICS not in TRAINING_STREAMS


def test_key_is_disjoint_from_every_replica_stream_and_changes_with_the_seed() -> None:
    """The old key, fold_in(key(1_000_003), epoch), was replica seed 1,000,003's training
    stream `epoch` (dropout at epoch 1, gradient noise at epoch 2) and ignored the run seed."""
    seeds = (0, 1, 7, 1_000_003)
    training = {
        _bits(jax.random.fold_in(jax.random.key(s), stream))
        for s in seeds
        for stream in TRAINING_STREAMS
    }
    hooks = {(s, e): _bits(diagnostics_key(s, e)) for s in seeds for e in range(1, 6)}
    assert not training & set(hooks.values())
    assert len(set(hooks.values())) == len(hooks)  # distinct per (seed, epoch)


def test_hooks_get_a_key_that_depends_on_the_run_seed(compose_cfg, read_metrics, tmp_path: Path):
    hook = ("+diagnostics.keys._target_=test_diagnostics_key.KeyRecorder", "trainer.epochs=1")
    for seed in (0, 1):
        train_and_evaluate(compose_cfg(f"seed={seed}", *hook), tmp_path / str(seed))
    got = [read_metrics(tmp_path / str(seed))[-1]["keys/key_bits"] for seed in (0, 1)]
    assert got[0] != got[1]
    assert tuple(got[0]) == _bits(diagnostics_key(0, 1))

"""Orbax checkpoints of the whole train state plus a small JSON record.

A checkpoint holds everything needed to continue bit-for-bit: parameters, optimizer state
(with the gradient-noise key and step count), model state, divergence flags, running epoch
sums and the global step (data order and dropout keys are functions of the step and seeds).
Saving is asynchronous; Orbax commits a step by renaming its temporary directory, so a run
killed during a save leaves the previous checkpoint intact and the torn one is cleaned up
at the next start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from repro.engine.train_state import TrainState, from_storable, to_storable


class Checkpointer:
    """Save/restore `TrainState` under `<workdir>/checkpoints/<step>/`."""

    def __init__(self, directory: Path, max_to_keep: int = 2, async_save: bool = True) -> None:
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            create=True,
            cleanup_tmp_directories=True,
            enable_async_checkpointing=async_save,
        )
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, state: TrainState, meta: dict[str, Any]) -> None:
        """Start saving `state` at its global step (returns before the write finishes)."""
        step = int(state.step)
        if step in self.manager.all_steps():
            return
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(to_storable(state)),
                meta=ocp.args.JsonSave(meta),
            ),
        )

    def restore(self, template: TrainState) -> tuple[TrainState, dict[str, Any]]:
        """The latest checkpoint, with shapes, dtypes and key types taken from `template`."""
        step = self.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, to_storable(template))
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return from_storable(template, restored["state"]), dict(restored["meta"])

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

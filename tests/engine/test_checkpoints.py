"""Checkpoints verified on restore, and runs that survive failing saves
(repro/engine/checkpointing.py; through the CLI: tests/test_run_dir.py)."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from repro.engine import train_and_evaluate
from repro.engine.checkpointing import (
    DIGEST_KEY,
    MANIFEST_DIR,
    Checkpointer,
    describe_cause,
    files_manifest,
    state_digest,
)
from repro.engine.run_dir import RunDirError
from repro.engine.train_state import ReplicaState, TrainState, to_storable

# What Orbax raised at the final save of a real run on a full disk (tmpfs), shortened.
TENSORSTORE_ENOSPC = (
    'RESOURCE_EXHAUSTED: Error writing local file "/x/checkpoints/66.orbax-checkpoint-tmp/'
    'state.orbax-checkpoint-tmp/_sharding": Failed writing: "/x/_sharding.__lock": Failed to '
    "write 3565 bytes to file 13: No space left on device [os_error_code='28'] "
    "[tensorstore_spec='{\"context\":{}}']"
)


def _state(step: int, seed: int) -> TrainState:
    key = jax.random.key(seed)
    replicas = ReplicaState(
        params={"w": jax.random.normal(key, (2, 3000)), "b": jnp.arange(6.0).reshape(2, 3)},
        model_state={},
        opt_state=(jnp.full((2,), step, jnp.int32),),
        key=jax.random.split(key, 2),
        diverged=jnp.array([False, True]),
        diverged_step=jnp.array([-1, step], jnp.int32),
        sums={"loss": jnp.array([0.5, jnp.nan])},
    )
    return TrainState(step=jnp.int32(step), replicas=replicas)


def _leaves(state: TrainState) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(to_storable(state))]


def _assert_same(a: TrainState, b: TrainState) -> None:
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes()


@pytest.fixture
def saved(tmp_path: Path) -> Callable[..., Checkpointer]:
    """saved(*steps) -> a Checkpointer over tmp_path/ckpt holding _state(step, step)."""

    def _saved(*steps: int) -> Checkpointer:
        checkpointer = Checkpointer(tmp_path / "ckpt", max_to_keep=5)
        for step in steps:
            checkpointer.save(_state(step, step), {"step": step})
        checkpointer.wait()
        return checkpointer

    return _saved


def _overwrite_middle(step_dir: Path) -> None:
    files = [p for p in (step_dir / "state").rglob("d/*") if p.is_file()]
    target = max(files, key=lambda p: p.stat().st_size)
    data = target.read_bytes()
    size = min(5000, len(data) - 16)
    start = (len(data) - size) // 2
    noise = np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes()
    target.write_bytes(data[:start] + noise + data[start + size :])


def test_the_digest_covers_every_bit_path_and_dtype() -> None:
    state = to_storable(_state(3, 0))
    base = state_digest(state)
    assert state_digest(to_storable(_state(3, 0))) == base
    w = np.asarray(state.replicas.params["w"]).copy()
    w.view(np.uint32)[1, 17] ^= 1  # one bit of one float
    params = {**state.replicas.params, "w": w}
    flipped = state.replace(replicas=state.replicas.replace(params=params))
    assert state_digest(flipped) != base
    as_f64 = jax.tree.map(lambda x: np.asarray(x, np.float64), state.replicas.params)
    assert state_digest(state.replace(replicas=state.replicas.replace(params=as_f64))) != base


def test_restore_gives_the_newest_state_bit_for_bit_with_its_checksum(
    saved: Callable[..., Checkpointer],
) -> None:
    checkpointer = saved(1, 2)
    state, meta = checkpointer.restore(_state(0, 0))
    _assert_same(state, _state(2, 2))
    assert meta["step"] == 2 and meta[DIGEST_KEY] == state_digest(to_storable(_state(2, 2)))
    checkpointer.close()


def _wrong_checksum(step_dir: Path) -> None:
    record = step_dir / "meta" / "metadata"
    meta = json.loads(record.read_text())
    meta[DIGEST_KEY] = state_digest(to_storable(_state(0, 0)))
    record.write_text(json.dumps(meta))


def _manifests(checkpointer: Checkpointer) -> Path:
    return checkpointer.directory.parent / MANIFEST_DIR


# Orbax's failed read tasks, printed again when collected ("Exception ignored in"): dropped.
# Without a manifest (a run killed between commit and manifest) the step goes through Orbax.
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(
    ("damage", "with_manifest", "why"),
    [
        (_overwrite_middle, True, "file state/"),
        (_wrong_checksum, True, "file meta/metadata changed since it was saved"),
        (_overwrite_middle, False, "cannot be read ("),
        (_wrong_checksum, False, "its arrays do not match"),
    ],
)
def test_a_damaged_step_is_skipped_deleted_and_logged_once(
    saved: Callable[..., Checkpointer],
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[Path], None],
    with_manifest: bool,
    why: str,
) -> None:
    checkpointer = saved(1, 2)
    damage(checkpointer.directory / "2")
    if not with_manifest:
        (_manifests(checkpointer) / "2.json").unlink()
    with caplog.at_level(logging.WARNING, logger="repro.engine.checkpointing"):
        state, _ = checkpointer.restore(_state(0, 0))
    _assert_same(state, _state(1, 1))
    lines = [r.getMessage() for r in caplog.records if r.name == "repro.engine.checkpointing"]
    assert len(lines) == 1 and lines[0].startswith(
        f"checkpoint step 2 in {checkpointer.directory} skipped and deleted: {why}"
    )
    assert lines[0].endswith("restoring step 1") and "TensorStore details" not in lines[0]
    assert checkpointer.manager.all_steps() == [1]
    assert sorted(p.name for p in _manifests(checkpointer).iterdir()) == ["1.json"]
    checkpointer.close()


def test_a_step_whose_files_changed_is_never_handed_to_orbax(
    saved: Callable[..., Checkpointer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed Orbax read leaves TensorStore printing "Event loop is closed" tracebacks from
    its threads; the file manifest keeps a damaged step from being read at all."""
    checkpointer = saved(1, 2)
    step_dir = checkpointer.directory / "2"
    manifest = json.loads((_manifests(checkpointer) / "2.json").read_text())["files"]
    assert manifest == files_manifest(step_dir) and "state/manifest.ocdbt" in manifest
    for path in step_dir.rglob("d/*"):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    read: list[int] = []
    orbax_restore = checkpointer.manager.restore

    def restore(step: int, **kwargs: Any) -> Any:
        read.append(step)
        return orbax_restore(step, **kwargs)

    monkeypatch.setattr(checkpointer.manager, "restore", restore)
    state, _ = checkpointer.restore(_state(0, 0))
    _assert_same(state, _state(1, 1))
    assert read == [1]
    checkpointer.close()


def _unraisable(error: BaseException, obj: object = None) -> SimpleNamespace:
    return SimpleNamespace(
        exc_type=type(error),
        exc_value=error,
        exc_traceback=error.__traceback__,
        err_msg=None,
        object=obj,
    )


def _closed_loop_callback_error() -> RuntimeError:
    loop = asyncio.new_event_loop()
    loop.close()
    try:
        loop.call_soon_threadsafe(lambda: None)
    except RuntimeError as error:
        return error
    raise AssertionError("a closed loop accepted a callback")


def test_late_read_callbacks_are_dropped_after_restore_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TensorStore's callbacks into Orbax's closed loop can arrive after `restore` returned
    (a CI run printed two such tracebacks from the no-manifest case): the hook installed with
    a Checkpointer drops them, for the life of the process, and hands on every other report."""
    seen: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    Checkpointer(tmp_path / "ckpt").close()
    Checkpointer(tmp_path / "ckpt").close()
    late = _closed_loop_callback_error()
    sys.unraisablehook(_unraisable(late))
    assert seen == []
    others = [
        _unraisable(late, obj=object()),
        _unraisable(RuntimeError("Event loop is closed")),
        _unraisable(ValueError("Event loop is closed")),
        _unraisable(RuntimeError("something else")),
    ]
    for other in others:
        sys.unraisablehook(other)
    assert seen == others


def test_manifests_follow_the_steps_orbax_keeps(tmp_path: Path) -> None:
    """Written once each save completed; dropped with steps Orbax deletes (max_to_keep) and,
    at start, for steps that are gone (trainer.overwrite deletes the checkpoint directory),
    so a stale manifest never rejects a new step."""
    checkpointer = Checkpointer(tmp_path / "ckpt", max_to_keep=2)
    for step in (1, 2, 3):
        checkpointer.save(_state(step, step), {"step": step})
    checkpointer.close()
    manifests = tmp_path / MANIFEST_DIR
    assert sorted(p.name for p in manifests.iterdir()) == ["2.json", "3.json"]
    for step in (2, 3):
        recorded = json.loads((manifests / f"{step}.json").read_text())["files"]
        assert recorded == files_manifest(tmp_path / "ckpt" / str(step))
    (tmp_path / "ckpt" / "3").rename(tmp_path / "elsewhere")
    Checkpointer(tmp_path / "ckpt", max_to_keep=2).close()
    assert sorted(p.name for p in manifests.iterdir()) == ["2.json"]


def test_no_intact_step_is_one_run_dir_error(saved: Callable[..., Checkpointer]) -> None:
    checkpointer = saved(1, 2)
    for step in (1, 2):
        _overwrite_middle(checkpointer.directory / str(step))
    with pytest.raises(RunDirError, match=f"^no intact checkpoint in {checkpointer.directory} "):
        checkpointer.restore(_state(0, 0))
    checkpointer.close()


def test_describe_cause_finds_the_os_error() -> None:
    assert describe_cause(ValueError(TENSORSTORE_ENOSPC)).startswith(
        'No space left on device (RESOURCE_EXHAUSTED: Error writing local file "/x/'
    )
    error = OSError(errno.ENOSPC, "No space left on device", "/x/meta")
    try:
        raise RuntimeError("save failed") from error
    except RuntimeError as wrapped:
        assert describe_cause(wrapped) == "No space left on device (OSError: /x/meta)"


def _failing_saves(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Every save fails the way a full disk makes it fail: at once, or in Orbax's background
    thread (raised by the next wait)."""
    if how == "at once":

        def save(self: Any, step: int, **kwargs: Any) -> bool:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.directory))

        monkeypatch.setattr(ocp.CheckpointManager, "save", save)
        return
    pending: list[int] = []
    original_wait = ocp.CheckpointManager.wait_until_finished

    def save_in_background(self: Any, step: int, **kwargs: Any) -> bool:
        pending.append(step)
        return True

    def wait(self: Any) -> None:
        original_wait(self)
        if pending:
            pending.clear()
            raise ValueError(TENSORSTORE_ENOSPC)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save_in_background)
    monkeypatch.setattr(ocp.CheckpointManager, "wait_until_finished", wait)


@pytest.mark.parametrize("how", ["at once", "in the background"])
def test_a_finished_run_survives_a_failing_final_save(
    compose_cfg: Callable[..., Any],
    read_metrics: Callable[..., list[dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    how: str,
) -> None:
    cfg = compose_cfg("trainer.checkpoint_every_epochs=0")  # only the final save
    workdir = tmp_path / "run"
    with monkeypatch.context() as patch, caplog.at_level(logging.WARNING):
        _failing_saves(patch, how)
        summary = train_and_evaluate(cfg, workdir)
    assert summary["status"] == "finished"
    report = summary["checkpoint"]
    assert report["final_save"] == "failed" and report["step"] == summary["steps"]
    assert report["error"].startswith("No space left on device")
    assert json.loads((workdir / "summary.json").read_text())["checkpoint"] == report
    assert [r["epoch"] for r in read_metrics(workdir)] == [1, 2]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(
        f"checkpoint of step {summary['steps']} not saved in {workdir.absolute()}/checkpoints: "
        "No space left on device"
    )
    again = train_and_evaluate(cfg, workdir)  # finished: not started over
    assert again["already_finished"] and again["replicas"] == summary["replicas"]


def test_a_saved_final_checkpoint_is_reported(
    compose_cfg: Callable[..., Any], tmp_path: Path
) -> None:
    summary = train_and_evaluate(compose_cfg("trainer.epochs=1"), tmp_path / "run")
    assert summary["checkpoint"] == {"final_save": "ok", "step": summary["steps"]}
    assert summary["metrics_log"] is None

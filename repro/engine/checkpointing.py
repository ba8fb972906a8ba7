"""Orbax checkpoints of the whole train state plus a small JSON record, verified on restore.

A checkpoint holds everything needed to continue bit-for-bit: parameters, optimizer state
(with the gradient-noise key and step count), model state, divergence flags, running epoch
sums and the global step (data order and dropout keys are functions of the step and seeds).
Saving is asynchronous; Orbax commits a step by renaming its temporary directory, so a run
killed during a save leaves the previous checkpoint intact and the torn one is cleaned up
at the next start.

Integrity. The JSON record of each checkpoint carries `state_sha256`, a SHA-256 over every
leaf of the state as saved (its tree path, dtype, shape and bytes). It is committed in the
same Orbax step as the arrays, so there is no moment at which a checkpoint exists without
its checksum. `restore` reads the newest step, recomputes the digest of what it read and
compares; a step that cannot be read or does not match (truncated, overwritten or missing
files) is skipped with one logged line naming the step and why, and deleted (the run saves
that step again when it gets there); the newest intact step is restored. If no step is
intact, `RunDirError` (one line, exit 2).

File manifests. Once a save has completed (Orbax has merged and committed the step), the size
and SHA-256 of every file of the step directory are written to `<workdir>/checkpoint_files/
<step>.json`, outside the directory Orbax manages. `restore` checks a step's files against
its manifest before handing the step to Orbax: a damaged step is skipped without being read,
because a failed Orbax read leaves TensorStore completing the step's other reads after
Orbax's event loop closed, each printing an "Event loop is closed" traceback from a thread no
Python hook sees. A step without a manifest (killed between commit and manifest) is read and
verified by its digest as before; the late callbacks of such a read that do reach Python's
unraisable hook (object None, "Event loop is closed" from `call_soon_threadsafe`), possibly
after `restore` returned, are dropped by a hook installed with the first `Checkpointer`.

Failures to save (disk full, permissions) never end a run: each is logged as one line naming
the checkpoint directory and the cause, the run goes on (a resume starts from the last step
that was saved), and `save_report(step)` tells the summary whether the final step was saved.
Orbax logs each failure of its background threads with a full traceback before raising it
to the caller; those log records are dropped here, as the caller reports the failure.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from repro.engine.distributed import is_writer
from repro.engine.outputs import write_json_atomic
from repro.engine.run_dir import RunDirError
from repro.engine.sharding import to_host
from repro.engine.train_state import TrainState, from_storable, to_storable

log = logging.getLogger(__name__)
DIGEST_KEY = "state_sha256"
MAX_CAUSE_CHARS = 300
TENSORSTORE_NOISE = (" [tensorstore_spec", ". See full TensorStore details")
MANIFEST_DIR = "checkpoint_files"  # a sibling of the checkpoint directory
HASH_CHUNK_BYTES = 1 << 20


def state_digest(tree: Any) -> str:
    """SHA-256 over the leaves of a (storable) pytree: tree path, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        array = np.ascontiguousarray(to_host(leaf))
        header = f"{jax.tree_util.keystr(path)}|{array.dtype.str}|{array.shape}|"
        digest.update(header.encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def files_manifest(directory: Path) -> dict[str, list[int | str]]:
    """`{path relative to directory: [size in bytes, SHA-256]}` for every file under it."""
    return {
        path.relative_to(directory).as_posix(): [path.stat().st_size, file_sha256(path)]
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def manifest_problem(directory: Path, manifest: dict[str, list[int | str]]) -> str | None:
    """Why the files under `directory` differ from `manifest`, or None (files added since
    are not checked: Orbax reads only what it wrote)."""
    for name, (size, sha256) in manifest.items():
        path = directory / name
        if not path.is_file():
            return f"file {name} is missing"
        if path.stat().st_size != size or file_sha256(path) != sha256:
            return f"file {name} changed since it was saved"
    return None


def describe_cause(error: BaseException) -> str:
    """One short line for an I/O failure: the OS error if there is one in the chain (also
    tensorstore's `[os_error_code='28']`), else the first line of the message."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            where = f": {seen.filename}" if seen.filename else ""
            return f"{os.strerror(seen.errno)} ({type(seen).__name__}{where})"
        seen = seen.__cause__ or seen.__context__
    message = str(error)
    for noise in TENSORSTORE_NOISE:  # a JSON spec of the store, many lines long
        message = message.split(noise, 1)[0]
    lines = message.splitlines() or [type(error).__name__]
    code = re.search(r"os_error_code='(\d+)'", message)
    if code:
        return f"{os.strerror(int(code.group(1)))} ({lines[0][: MAX_CAUSE_CHARS // 2]}...)"
    first = lines[0]
    return first if len(first) <= MAX_CAUSE_CHARS else f"{first[:MAX_CAUSE_CHARS]}..."


def _codes(tb: TracebackType | None) -> Iterator[Any]:
    while tb is not None:
        yield tb.tb_frame.f_code
        tb = tb.tb_next


def _through_orbax(tb: TracebackType | None) -> bool:
    return any("orbax" in code.co_filename for code in _codes(tb))


def _reported_elsewhere(record: logging.LogRecord) -> bool:
    """An Orbax error log with a traceback: Orbax also raises it to the caller."""
    if record.levelno < logging.ERROR or record.exc_info is None:
        return False
    return "orbax" in record.pathname or _through_orbax(record.exc_info[2])


@contextlib.contextmanager
def _quiet_failed_reads() -> Iterator[None]:
    """Orbax's read tasks of a damaged step hold the exception that `restore` reports in one
    line; when they are garbage-collected, Python prints it again ("Exception ignored in"),
    a traceback per task. Those are collected here, and dropped."""
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        origin = type(unraisable.object).__module__ or ""
        if not (_through_orbax(unraisable.exc_traceback) or "tensorstore" in origin):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        gc.collect()
        sys.unraisablehook = previous


def _is_late_read_callback(unraisable: Any) -> bool:
    """TensorStore completing a failed step's read after Orbax closed its event loop: its
    thread's callback to `call_soon_threadsafe` raises, and Python reports it with no object."""
    error = unraisable.exc_value
    if unraisable.object is not None or not isinstance(error, RuntimeError):
        return False
    if str(error) != "Event loop is closed":
        return False
    return any(
        code.co_name == "call_soon_threadsafe" and "asyncio" in Path(code.co_filename).parts
        for code in _codes(unraisable.exc_traceback)
    )


class _DropLateReadCallbacks:
    """An unraisable hook that drops late read callbacks and hands on everything else."""

    def __init__(self, previous: Callable[[Any], None]) -> None:
        self.previous = previous

    def __call__(self, unraisable: Any) -> None:
        if not _is_late_read_callback(unraisable):
            self.previous(unraisable)


def quiet_late_read_callbacks() -> None:
    """Drop the "Event loop is closed" reports of a failed read's late callbacks (idempotent).

    Installed for the life of the process, not around `restore`: the callbacks arrive from
    TensorStore's threads whenever their reads finish, which can be after `restore` returned.
    """
    if not isinstance(sys.unraisablehook, _DropLateReadCallbacks):
        sys.unraisablehook = _DropLateReadCallbacks(sys.unraisablehook)


def _drop_reported(record: logging.LogRecord) -> bool:
    return not _reported_elsewhere(record)


def quiet_orbax_error_logs() -> None:
    """Drop Orbax's traceback logs of failures it raises to the caller (idempotent)."""
    for name in ("absl", "asyncio"):
        logger = logging.getLogger(name)
        if _drop_reported not in logger.filters:
            logger.addFilter(_drop_reported)


class Checkpointer:
    """Save/restore `TrainState` under `<workdir>/checkpoints/<step>/`."""

    def __init__(self, directory: Path, max_to_keep: int = 2, async_save: bool = True) -> None:
        quiet_orbax_error_logs()
        quiet_late_read_callbacks()
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
        self.failed: dict[int, str] = {}  # step -> cause, for saves that did not complete
        self._in_flight: int | None = None
        self.manifests = self.directory.parent / MANIFEST_DIR
        self._drop_stale_manifests()

    def _manifest_path(self, step: int) -> Path:
        return self.manifests / f"{step}.json"

    def _drop_stale_manifests(self) -> None:
        """Manifests of steps Orbax deleted (max_to_keep) or that were deleted with the whole
        checkpoint directory (trainer.overwrite): a stale one would reject a new step."""
        if not self.manifests.is_dir() or not is_writer():
            return
        kept = {str(step) for step in self.manager.all_steps()}
        for path in self.manifests.glob("*.json"):
            if path.stem not in kept:
                path.unlink(missing_ok=True)

    def _read_manifest(self, step: int) -> dict[str, list[int | str]] | None:
        """The step's manifest; None if absent or unreadable (the step is then verified by
        its digest alone)."""
        try:
            return dict(json.loads(self._manifest_path(step).read_text())["files"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_manifest(self, step: int) -> None:
        """After the save of `step` completed: Orbax writes nothing in the step after that."""
        self.manifests.mkdir(parents=True, exist_ok=True)
        manifest = files_manifest(self.directory / str(step))
        write_json_atomic(self._manifest_path(step), {"step": step, "files": manifest})

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def _failed(self, step: int | None, error: BaseException) -> None:
        cause = describe_cause(error)
        if step is not None:
            self.failed[step] = cause
        log.warning(
            "checkpoint of step %s not saved in %s: %s (the run goes on; a resume starts from "
            "the last saved step)",
            step,
            self.directory,
            cause,
        )

    def save(self, state: TrainState, meta: dict[str, Any]) -> None:
        """Start saving `state` at its global step (returns before the write finishes, after
        the previous save finished). A failure is logged and recorded, never raised."""
        step = int(state.step)
        self.wait()
        if step in self.manager.all_steps():
            return
        if is_writer():
            self._manifest_path(step).unlink(missing_ok=True)
        storable = to_storable(state)
        try:
            self.manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(storable),
                    meta=ocp.args.JsonSave({**meta, DIGEST_KEY: state_digest(storable)}),
                ),
            )
        except Exception as error:  # disk full, permissions: the run's results are not at risk
            self._failed(step, error)
        else:
            self._in_flight = step

    def wait(self) -> None:
        """Wait for the save in flight; a failure is logged and recorded, never raised."""
        step, self._in_flight = self._in_flight, None
        try:
            self.manager.wait_until_finished()
        except Exception as error:
            self._failed(step, error)
            return
        if not is_writer():  # process 0 writes the manifests (Orbax finalizes there last)
            return
        try:
            if step is not None and step in self.manager.all_steps():
                self._write_manifest(step)
            self._drop_stale_manifests()
        except OSError as error:  # the step is saved; without a manifest it is still verified
            self._failed(step, error)

    def save_report(self, step: int) -> dict[str, Any]:
        """`{"final_save": "ok" | "failed", "step": step[, "error": cause]}` for the summary."""
        self.wait()
        if step in self.failed or step not in self.manager.all_steps():
            cause = self.failed.get(step, "no checkpoint of this step was written")
            return {"final_save": "failed", "step": step, "error": cause}
        return {"final_save": "ok", "step": step}

    def _restore_step(self, step: int, template: TrainState) -> tuple[TrainState, dict[str, Any]]:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, to_storable(template))
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], dict(restored["meta"])

    def _problem(self, step: int, template: TrainState) -> tuple[str | None, Any, dict]:
        """(why step cannot be used or None, its storable state, its record)."""
        manifest = self._read_manifest(step)
        if manifest is not None:
            problem = manifest_problem(self.directory / str(step), manifest)
            if problem is not None:  # never handed to Orbax (see the module docstring)
                return problem, None, {}
        try:
            stored, meta = self._restore_step(step, template)
        except Exception as error:  # any damage to any file of the step
            return f"cannot be read ({describe_cause(error)})", None, {}
        expected = meta.get(DIGEST_KEY)
        if expected is None:
            log.warning(
                "checkpoint step %d in %s has no checksum (written before checksums were "
                "stored): restored unverified",
                step,
                self.directory,
            )
        elif state_digest(stored) != expected:
            return "its arrays do not match the stored checksum", None, {}
        return None, stored, meta

    def restore(self, template: TrainState) -> tuple[TrainState, dict[str, Any]]:
        """The newest intact checkpoint, with shapes, dtypes and key types from `template`.

        Damaged newer steps are skipped and deleted (one logged line each). Raises
        `RunDirError` if no step is intact, FileNotFoundError if there is none.
        """
        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        skipped: list[tuple[int, str]] = []
        for step in steps:
            with _quiet_failed_reads():
                problem, stored, meta = self._problem(step, template)
            if problem is not None:
                skipped.append((step, problem))
                continue
            for bad, why in skipped:
                # Deleted so that the run saves this step again when it gets there.
                self.manager.delete(bad)
                self._manifest_path(bad).unlink(missing_ok=True)
                log.warning(
                    "checkpoint step %d in %s skipped and deleted: %s; restoring step %d",
                    bad,
                    self.directory,
                    why,
                    step,
                )
            return from_storable(template, stored), meta
        reasons = "; ".join(f"step {step} {why}" for step, why in skipped)
        raise RunDirError(
            f"no intact checkpoint in {self.directory} ({reasons}); start over with "
            "trainer.overwrite=true"
        )

    def close(self) -> None:
        self.wait()
        try:
            self.manager.close()
        except Exception as error:  # a failed save already reported by wait()
            log.debug("closing %s: %s", self.directory, describe_cause(error))

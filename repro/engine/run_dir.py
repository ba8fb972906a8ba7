"""One writer per run directory, and the error for a run directory that cannot be used as is.

A run directory is a function of the command line, so a requeued job, a second terminal or
two overlapping sweeps all land in the same one. Two writers interleave `metrics.jsonl`,
race on checkpoints and summaries; so a run holds an exclusive `flock` on `<workdir>/.lock`
from before it looks at the directory until its summary is written. The OS drops the lock
when the process dies, however it dies, so a killed run (kill -9 included) resumes as
before. A second process is refused with one line naming the holder (pid, host, start time
and command, which the holder writes into the lock file).

`RunDirError` is a `ConfigError`: like bad input, the user has to act (wait, stop the other
run, or start over with `trainer.overwrite=true`), so the command line prints one line and
exits with code 2, before anything compiles where it can.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from repro.errors import ConfigError
from repro.run_metadata import now_iso

LOCK_FILE = ".lock"
NOT_RECORDED = "holder not recorded"


class RunDirError(ConfigError):
    """The run directory cannot be used as it is (in use, damaged outputs): one line naming
    the file, what is wrong with it and what to do."""


class RunDirBusyError(RunDirError):
    """Another process holds the run directory's lock."""


def describe_holder(text: str) -> str:
    """`pid 123 on host, since 2026-01-01T00:00:00Z: python -m repro.train ...` from the lock
    file's content (the holder may still be writing it: then what is known)."""
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return NOT_RECORDED
    return (
        f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('start_time')}: "
        f"{holder.get('command')}"
    )


def _read_holder(fd: int, patience_s: float = 2.0) -> str:
    """The lock file's content; the holder writes it just after taking the lock, so an
    empty or partial file is read again for up to `patience_s`."""
    deadline = time.monotonic() + patience_s
    while True:
        text = os.pread(fd, 64 * 1024, 0).decode(errors="replace")
        if time.monotonic() > deadline or describe_holder(text) != NOT_RECORDED:
            return text
        time.sleep(0.05)


class RunLock:
    """Exclusive lock on `<workdir>/.lock` for as long as a run writes to `workdir`.

    `acquire()` raises `RunDirBusyError` at once (no waiting) if another process, or another
    `RunLock` of this process, holds it. Use as a context manager.
    """

    def __init__(self, workdir: str | Path) -> None:
        self.workdir = Path(workdir)
        self.path = self.workdir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.workdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunDirBusyError(
                f"{self.workdir} is in use by another run ({describe_holder(holder)}); one "
                "process per run directory: wait for it to finish, or stop it (it resumes "
                "from its last checkpoint)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        # Written in place, not replaced: the lock belongs to this inode.
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "start_time": now_iso(),
            "command": " ".join(["python", *sys.argv]) if sys.argv else None,
        }
        payload = json.dumps(holder).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, payload, 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # no stale holder shown to the next reader
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

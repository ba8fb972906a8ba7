"""Run outputs: `metrics.jsonl`, `summary.json`, `config_resolved.yaml` (schema: OUTPUTS.md).

JSON has no NaN/inf: non-finite floats are written as null (a diverged replica's training
loss). Every file is written atomically (temp file, fsync, rename: `write_text_atomic`) or,
for `metrics.jsonl`, appended one complete line per write; `summary.json` only for a
finished run.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from repro.engine.run_dir import RunDirError

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config_resolved.yaml"
CHECKPOINT_DIR = "checkpoints"
log = logging.getLogger(__name__)


def jsonable(value: Any) -> Any:
    """Plain JSON types: numpy/JAX scalars and arrays to Python, non-finite floats to None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "__array__") and not isinstance(value, str | bytes):
        array = np.asarray(value)
        return jsonable(array.tolist()) if array.ndim else jsonable(array.item())
    if isinstance(value, float | np.floating):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers, and a run killed at any moment, see either the
    old file or the whole new one (temp file, fsync, rename, fsync of the directory)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Write JSON to `path` atomically (see `write_text_atomic`)."""
    write_text_atomic(path, json.dumps(jsonable(payload), indent=2, sort_keys=False) + "\n")


def evaluated_epochs(epochs: int, every: int, through: int | None = None) -> list[int]:
    """The epochs that have a `metrics.jsonl` record: every `every`-th and the last one,
    up to `through` (default: all)."""
    last = epochs if through is None else min(through, epochs)
    return [e for e in range(1, last + 1) if e % every == 0 or e == epochs]


def _span(epochs: Sequence[int]) -> str:
    if not epochs:
        return "none"
    return f"{epochs[0]}..{epochs[-1]} ({len(epochs)} records)"


def history_problem(records: Sequence[Mapping[str, Any]], expected: Sequence[int]) -> str | None:
    """Why the records' epochs are not exactly `expected` (in order), or None."""
    got = [int(r["epoch"]) for r in records]
    if got == list(expected):
        return None
    counts = Counter(got)
    repeated = [e for e in got if counts[e] > 1]
    missing = [e for e in expected if e not in counts]
    extra = [e for e in got if e not in set(expected)]
    if repeated:
        problem = f"epoch {repeated[0]} appears {counts[repeated[0]]} times"
    elif missing:
        problem = f"epoch {missing[0]} is missing"
    elif extra:
        problem = f"epoch {extra[0]} is not an evaluated epoch of this run"
    else:
        # Same epochs, once each: a permutation of `expected`.
        first = next(g for g, e in zip(got, expected, strict=True) if g != e)
        problem = f"epochs out of order at epoch {first}"
    return f"{problem} (records: epochs {_span(got)}; expected {_span(list(expected))})"


class MetricsLog:
    """`metrics.jsonl`: one complete JSON line per evaluated epoch, never silently lost.

    Appends are line-atomic (one `write` of the whole line on an O_APPEND descriptor, then
    fsync), so a killed run leaves at most a torn final line, which is the only damage that is
    repaired silently (dropped). A damaged line before the end, or missing, repeated or
    out-of-order epochs are a `RunDirError` naming the file and the epoch, and the file is
    left as it is. `records` holds what this run has kept and appended; the summary is made
    from them, and the file is rewritten from them if it changed behind the run's back.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.records: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        """All records of the file; a torn final line (a killed append) is dropped."""
        if not self.path.exists():
            return []
        lines = self.path.read_text().split("\n")
        records: list[dict[str, Any]] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            record = _parse_record(line)
            if record is None:
                if number == len(lines):  # no newline after it: the append was cut short
                    break
                after = f"the record of epoch {records[-1]['epoch']}" if records else "the start"
                raise RunDirError(
                    f"{self.path} line {number} (after {after}) is not a complete record; the "
                    "records after it would be lost, so the file was left as it is: repair or "
                    "delete that line, or start over with trainer.overwrite=true"
                )
            records.append(record)
        return records

    def check(self, records: Sequence[Mapping[str, Any]], expected: Sequence[int]) -> None:
        """`RunDirError` unless `records` hold exactly the epochs `expected`."""
        problem = history_problem(records, expected)
        if problem is not None:
            raise RunDirError(
                f"{self.path}: {problem}; the run's history is not complete, so it is not "
                "continued: start over with trainer.overwrite=true"
            )

    def truncate_after_epoch(
        self, epoch: int, expected: Sequence[int] | None = None
    ) -> list[dict[str, Any]]:
        """Keep records with `epoch <= epoch` (those a restored checkpoint has seen), after
        checking (if given) that they hold exactly the epochs `expected`."""
        kept = [r for r in self.read() if int(r["epoch"]) <= epoch]
        if expected is not None:
            self.check(kept, expected)
        self._rewrite(kept)
        self.records = kept
        return kept

    def _rewrite(self, records: Iterable[Mapping[str, Any]]) -> None:
        write_text_atomic(self.path, "".join(_line(r) for r in records))

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record as one write of one complete line, flushed to disk."""
        line = _line(record).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")
            os.fsync(fd)
        finally:
            os.close(fd)
        self.records.append(json.loads(line))

    def reconcile(self) -> str | None:
        """Make the file hold exactly this run's records; say why it had to be rewritten
        (deleted, edited or appended to by someone else during the run; also logged), or
        None."""
        try:
            on_disk: list[dict[str, Any]] | None = self.read()
        except RunDirError:
            on_disk = None
        if on_disk == self.records:
            return None
        if on_disk is None:
            why = "held a damaged line"
        else:
            why = history_problem(on_disk, [int(r["epoch"]) for r in self.records]) or (
                "records differed"
            )
        self._rewrite(self.records)
        note = f"{self.path.name} {why}; rewritten from the records of this run"
        log.warning("%s: %s", self.path.parent, note)
        return note


class ReadOnlyMetricsLog(MetricsLog):
    """The metrics log of a process other than 0 in a run over several processes: it reads
    the file process 0 writes (what a resumed run continues from) and keeps its own records
    in memory, but never writes."""

    def _rewrite(self, records: Iterable[Mapping[str, Any]]) -> None:
        pass

    def append(self, record: Mapping[str, Any]) -> None:
        self.records.append(json.loads(_line(record)))

    def reconcile(self) -> str | None:
        return None


def _line(record: Mapping[str, Any]) -> str:
    return json.dumps(jsonable(record)) + "\n"


def _parse_record(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
        return None
    return record


def aggregate_stats(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """mean/std/min/max/median over finite values, plus how many were finite."""
    finite = np.asarray(
        [v for v in values if v is not None and math.isfinite(float(v))], np.float64
    )
    if finite.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "median": None, "count": 0}
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
        "min": float(finite.min()),
        "max": float(finite.max()),
        "median": float(np.median(finite)),
        "count": int(finite.size),
    }


def read_summary(workdir: Path) -> dict[str, Any] | None:
    path = Path(workdir) / SUMMARY_FILE
    if not path.exists():
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None

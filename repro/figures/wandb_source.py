"""Fetch runs from Weights & Biases into local job dirs, so the offline path reads them.

Two sources: a project on the W&B server (``wandb.Api()``, needs the network), or offline run
dirs (``wandb/offline-run-*``, written with ``WANDB_MODE=offline`` or ``logger.mode=offline``)
read from their ``.wandb`` transaction log without wandb's service (:class:`OfflineRun`). For
each W&B run a dir ``<dest>/<run id>/`` is written in the engine's run-dir layout:

1. files saved with the run (``summary.json``, ``metrics.jsonl``, ``.hydra/overrides.yaml``,
   ``config_resolved.yaml``) are downloaded as they are;
2. otherwise they are rebuilt from what ``repro.loggers.WandbLogger`` logs: the resolved
   config (``name``, ``seed``, ``replicas``, ``trainer.epochs``) and one history row per
   evaluated epoch with per-replica values ``<metric>/r<i>``. Replica ``i`` gets the engine's
   layout (grid-major): grid value ``grid.values[i // seeds]``, seed ``seed + i % seeds``.
   The summary is built by the engine's own builder (``repro.engine.summary``), so the best
   epoch is that of the config's objective, else the task's default (test_loss for
   ``task=mse``, the corpus token error rate for ctc), exactly as in a local run.

summary.json is only written for a run whose W&B state is "finished"; any other run stays an
unfinished job dir. Runs logged with more replicas than ``max_replicas_logged`` have no
per-replica history and cannot be rebuilt (they stay unfinished).
"""

from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path
from typing import Any

import yaml

RUN_FILES = ("summary.json", "metrics.jsonl", ".hydra/overrides.yaml", "config_resolved.yaml")
_REPLICA_KEY = re.compile(r"^(?P<metric>.+)/r(?P<index>\d+)$")


def _download(run: Any, name: str, dest: Path) -> bool:
    try:
        run.file(name).download(root=str(dest), replace=True)
    except Exception:  # wandb raises assorted errors for a missing file; absent is fine
        return False
    return (dest / name).is_file()


def history_records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """W&B history rows -> metrics.jsonl records with per-replica lists (``<m>/r<i>`` keys)."""
    records = []
    for row in rows:
        if row.get("epoch") is None:
            continue
        lists: dict[str, dict[int, Any]] = {}
        record: dict[str, Any] = {"epoch": int(row["epoch"])}
        for key, value in row.items():
            match = _REPLICA_KEY.match(key)
            if match:
                lists.setdefault(match["metric"], {})[int(match["index"])] = value
            elif not key.startswith("_") and "/" not in key and key != "epoch":
                record[key] = value
        for metric, by_index in lists.items():
            record[metric] = [by_index.get(i) for i in range(max(by_index) + 1)]
        if "diverged" in record and isinstance(record["diverged"], list):
            record["diverged"] = [bool(v) for v in record["diverged"]]
        records.append(record)
    return records


def summary_from_history(
    config: dict[str, Any], records: list[dict[str, Any]], run: Any
) -> dict[str, Any] | None:
    """summary.json rebuilt from the config and per-replica history; None if impossible.

    The engine's own summary builder (:func:`repro.engine.summary.build_summary`) does the
    work, so replica layout, best epochs (by the objective, or the task's default), diverged
    replicas and aggregates are exactly what the engine writes; W&B adds the wall time.
    """
    from repro.engine.summary import build_summary

    last = records[-1] if records else {}
    if not any(isinstance(value, list) for value in last.values()):
        return None
    summary = build_summary(config, records, steps=int(last.get("step") or 0))
    run_summary = dict(run.summary or {})
    summary["metadata"] = {
        "source": f"wandb:{getattr(run, 'path', run.id)}",
        "wall_time_s": run_summary.get("_runtime"),
        "end_time": getattr(run, "heartbeat_at", None),
    }
    summary["overrides"] = []
    return summary


def materialize_run(run: Any, dest: Path) -> Path:
    """Write one W&B run as a job dir under ``dest``; returns the job dir."""
    job_dir = dest / str(run.id)
    (job_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    present = {name for name in RUN_FILES if _download(run, name, job_dir)}
    config = dict(run.config or {})
    records: list[dict[str, Any]] = []
    if "metrics.jsonl" not in present:
        records = history_records(list(run.scan_history()))
        if records:
            text = "".join(json.dumps(r) + "\n" for r in records)
            (job_dir / "metrics.jsonl").write_text(text)
    if "config_resolved.yaml" not in present and config:
        (job_dir / "config_resolved.yaml").write_text(yaml.safe_dump(config))
    if ".hydra/overrides.yaml" not in present:
        (job_dir / ".hydra" / "overrides.yaml").write_text("[]\n")
    if "summary.json" not in present and run.state == "finished":
        summary = summary_from_history(config, records, run)
        if summary is not None:
            (job_dir / "summary.json").write_text(json.dumps(summary, default=str))
    return job_dir


def fetch_wandb_runs(project: str, dest: Path, api: Any = None) -> Path:
    """Materialise every run of ``project`` (ENTITY/PROJECT) under ``dest``; returns ``dest``."""
    if api is None:
        import wandb

        api = wandb.Api()
    dest.mkdir(parents=True, exist_ok=True)
    for run in api.runs(project):
        materialize_run(run, dest)
    return dest


# ----------------------------------------------------------------------------- offline runs

_LOG_HEADER = 7  # b":W&B" + magic 0xBEE1 + version: the .wandb file's first bytes
_BLOCK = 32768  # the transaction log is LevelDB's log format: 32 KiB blocks of records
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _log_records(path: Path) -> list[bytes]:
    """The payloads of a LevelDB-format log (a record may span blocks: FIRST, MIDDLE, LAST)."""
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B transaction log")
    records, pending, position = [], b"", _LOG_HEADER
    while position + 7 <= len(data):
        left = _BLOCK - position % _BLOCK
        if left < 7:  # block trailer: zero padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0 or position + 7 + length > len(data):  # the end, or a torn last record
            break
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (_FULL, _LAST):
            records.append(pending)
            pending = b""
    return records


def _item_key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


class _LocalFile:
    def __init__(self, source: Path) -> None:
        self.source = source

    def download(self, root: str, replace: bool) -> None:
        if not self.source.is_file():
            raise FileNotFoundError(self.source)
        target = Path(root) / self.source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.source, target)


class OfflineRun:
    """An offline W&B run dir, read like a ``wandb.Api()`` run (id, state, config, summary,
    history, files) from its ``run-<id>.wandb`` log; no network, no wandb service."""

    def __init__(self, run_dir: Path) -> None:
        from wandb.proto import wandb_internal_pb2

        self.run_dir = Path(run_dir)
        [log] = sorted(self.run_dir.glob("run-*.wandb"))
        self.id = log.stem.removeprefix("run-")
        self.path = f"offline:{self.run_dir}"
        self.config: dict[str, Any] = {}
        self.summary: dict[str, Any] = {}
        self.heartbeat_at = None
        self.state = "running"
        self._history: list[dict[str, Any]] = []
        for payload in _log_records(log):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            self._read(record, record.WhichOneof("record_type"))

    def _read(self, record: Any, kind: str | None) -> None:
        if kind in ("run", "config"):
            updates = record.run.config.update if kind == "run" else record.config.update
            for item in updates:
                if _item_key(item) != "_wandb":
                    self.config[_item_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            self._history.append(
                {_item_key(i): json.loads(i.value_json) for i in record.history.item}
            )
        elif kind == "summary":
            for item in record.summary.update:
                self.summary[_item_key(item)] = json.loads(item.value_json)
        elif kind == "exit":
            self.state = "finished" if record.exit.exit_code == 0 else "failed"

    def file(self, name: str) -> _LocalFile:
        return _LocalFile(self.run_dir / "files" / name)

    def scan_history(self) -> Any:
        return iter(self._history)


def offline_run_dirs(paths: Any) -> list[Path]:
    """Every ``offline-run-*`` dir at or below ``paths`` (sorted)."""
    found: dict[Path, None] = {}
    for raw in paths:
        root = Path(raw)
        candidates = [root] if root.name.startswith("offline-run-") else []
        candidates += sorted(root.rglob("offline-run-*"))
        found.update(dict.fromkeys(p for p in candidates if any(p.glob("run-*.wandb"))))
    return sorted(found)


def read_wandb_offline(paths: Any, dest: Path) -> Path:
    """Materialise every offline run dir under ``paths`` as a job dir under ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for run_dir in offline_run_dirs(paths):
        materialize_run(OfflineRun(run_dir), dest)
    return dest

"""The run directory's lock, `metrics.jsonl` and atomic writes (repro/engine/run_dir.py,
repro/engine/outputs.py), without training."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from repro.engine import outputs as out
from repro.engine.replicas import plan_from_config
from repro.engine.run_dir import LOCK_FILE, RunDirBusyError, RunDirError, RunLock
from repro.engine.summary import build_summary
from repro.errors import ConfigError


def test_a_second_lock_is_refused_with_one_line_naming_the_holder(tmp_path: Path) -> None:
    with RunLock(tmp_path), pytest.raises(RunDirBusyError) as refused:
        RunLock(tmp_path).acquire()
    message = str(refused.value)
    assert isinstance(refused.value, ConfigError) and "\n" not in message
    assert message.startswith(f"{tmp_path} is in use by another run (pid {os.getpid()} on ")
    assert f"pid {os.getpid()} on {socket.gethostname()}, since 20" in message
    with RunLock(tmp_path) as again:  # released on exit
        assert again.held


def test_a_holder_recorded_just_after_it_took_the_lock_is_named(tmp_path: Path) -> None:
    """The holder writes its pid into the lock file just after the flock: a process refused
    in between waits for it."""
    fd = os.open(tmp_path / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        holder = {"pid": 4242, "host": "node7", "start_time": "T", "command": "python x"}
        timer = threading.Timer(0.3, os.pwrite, (fd, json.dumps(holder).encode(), 0))
        timer.start()
        with pytest.raises(RunDirBusyError, match=r"\(pid 4242 on node7, since T: python x\)"):
            RunLock(tmp_path).acquire()
        timer.join()
    finally:
        os.close(fd)


def test_the_lock_of_a_killed_process_is_released_by_the_os(tmp_path: Path) -> None:
    script = (
        "import sys, time; from repro.engine.run_dir import RunLock; "
        f"RunLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); time.sleep(120)"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirBusyError, match=f"pid {holder.pid} on "):
            RunLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with RunLock(tmp_path) as lock:
        assert lock.held


def _write_records(path: Path, epochs: list[int]) -> None:
    path.write_text("".join(json.dumps({"epoch": e, "step": 10 * e}) + "\n" for e in epochs))


def test_metrics_log_drops_only_a_torn_final_line(tmp_path: Path) -> None:
    path = tmp_path / out.METRICS_FILE
    _write_records(path, [1, 2, 3])
    with open(path, "a") as f:
        f.write('{"epoch": 4, "st')  # an append cut short by a kill
    assert [r["epoch"] for r in out.MetricsLog(path).read()] == [1, 2, 3]


def test_metrics_log_refuses_a_torn_line_before_the_end_and_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / out.METRICS_FILE
    _write_records(path, [1, 2, 3, 4])
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2][:7] + "\n"
    path.write_text("".join(lines))
    before = path.read_bytes()
    with pytest.raises(RunDirError) as refused:
        out.MetricsLog(path).truncate_after_epoch(4, [1, 2, 3, 4])
    assert f"{path} line 3 (after the record of epoch 2) is not a complete record" in str(
        refused.value
    )
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("epochs", "problem"),
    [
        ([1, 3], "epoch 2 is missing (records: epochs 1..3 (2 records); expected 1..3 (3"),
        ([1, 2, 2, 3], "epoch 2 appears 2 times"),
        ([2, 1, 3], "epochs out of order at epoch 2"),
        ([1, 2, 3, 4], "epoch 4 is not an evaluated epoch of this run"),
    ],
)
def test_metrics_history_problems_name_the_epoch(
    tmp_path: Path, epochs: list[int], problem: str
) -> None:
    path = tmp_path / out.METRICS_FILE
    _write_records(path, epochs)
    log = out.MetricsLog(path)
    with pytest.raises(RunDirError, match=r"^" + str(path)) as refused:
        log.check(log.read(), [1, 2, 3])
    assert problem in str(refused.value)


def test_evaluated_epochs_include_the_last_one() -> None:
    assert out.evaluated_epochs(10, 3) == [3, 6, 9, 10]
    assert out.evaluated_epochs(10, 3, through=7) == [3, 6]
    assert out.evaluated_epochs(4, 1, through=-1) == []


def test_reconcile_rewrites_a_file_deleted_during_the_run(tmp_path: Path) -> None:
    path = tmp_path / out.METRICS_FILE
    log = out.MetricsLog(path)
    log.truncate_after_epoch(-1)
    for epoch in (1, 2):
        log.append({"epoch": epoch, "step": 10 * epoch, "loss": [0.5, float("nan")]})
    assert log.reconcile() is None
    path.unlink()
    log.append({"epoch": 3, "step": 30, "loss": [0.25, None]})
    note = log.reconcile()
    assert note is not None and "epoch 1 is missing" in note and "rewritten" in note
    assert [r["epoch"] for r in out.MetricsLog(path).read()] == [1, 2, 3]
    assert out.MetricsLog(path).read()[0]["loss"] == [0.5, None]


def test_a_failed_atomic_write_keeps_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / out.SUMMARY_FILE
    out.write_json_atomic(path, {"status": "finished"})
    with pytest.raises(TypeError):
        out.write_json_atomic(path, {"status": "new", "bad": object()})
    assert json.loads(path.read_text()) == {"status": "finished"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.SUMMARY_FILE]


def test_the_final_record_is_the_last_epoch_not_the_last_line(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    """A file a second writer appended to ended with its older epoch; the summary's final
    numbers must be those of the last epoch."""
    config = OmegaConf.to_container(compose_cfg(), resolve=True)
    replicas = plan_from_config(config).num_replicas
    records = [
        {"epoch": e, "step": 10 * e, "test_accuracy": [e / 10] * replicas} for e in (1, 2, 1)
    ]
    summary = build_summary(config, records, steps=20)
    assert summary["objective"] == 0.2
    assert summary["replicas"][0]["final"] == {"test_accuracy": 0.2}

"""Run-directory integrity through the real command line: one process per run directory,
damaged checkpoints and metrics files (subprocesses, tiny runs; OUTPUTS.md "Run directory
guarantees").

Most tests start from a copy of one finished 3-epoch run (checkpoints at every epoch) whose
`summary.json` is deleted, which is what a run killed after its last checkpoint looks like;
resuming it, with or without damage, must end exactly where the undamaged run ended."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_train_cli import TINY, _env, _records, _train

ARGS = [
    *TINY,
    "trainer.epochs=3",
    "trainer.checkpoint_min_interval_s=0",
    "trainer.checkpoint_max_to_keep=3",
]


def _job(root: Path) -> Path:
    (job,) = (root / "out" / "runs" / "smoke").iterdir()
    return job


def _steps(job: Path) -> list[int]:
    return sorted(int(p.name) for p in (job / "checkpoints").iterdir() if p.name.isdigit())


def _output(result: subprocess.CompletedProcess) -> list[str]:
    return (result.stdout + result.stderr).splitlines()


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run: `<root>/out/runs/smoke/<job>/`, checkpoints at epochs 1, 2 and 3."""
    root = tmp_path_factory.mktemp("finished")
    result = _train(root, *ARGS)
    assert result.returncode == 0, result.stderr
    assert len(_steps(_job(root))) == 3
    return root


@pytest.fixture
def unfinished(finished: Path, tmp_path: Path) -> Path:
    """A copy of `finished` without its summary (the job directory)."""
    shutil.copytree(finished / "out", tmp_path / "out", symlinks=True)
    job = _job(tmp_path)
    (job / "summary.json").unlink()
    return job


def _resume(job: Path) -> subprocess.CompletedProcess:
    return _train(job.parents[3], *ARGS)


def _assert_same_as_finished(job: Path, finished: Path) -> None:
    reference = _job(finished)
    assert _records(job) == _records(reference)
    got = json.loads((job / "summary.json").read_text())
    want = json.loads((reference / "summary.json").read_text())
    assert got["replicas"] == want["replicas"]
    assert got["objective"] == want["objective"]


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    rest = [line for line in result.stderr.splitlines() if not line.startswith("error: ")]
    assert "\n".join(rest).strip() == "", result.stderr
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_a_second_process_is_refused_and_a_killed_holder_resumes(tmp_path: Path) -> None:
    """The holder is stopped (SIGSTOP) once it has a checkpoint, so that it holds the lock
    for as long as the second process takes, then SIGKILLed."""
    args = [*TINY, "trainer.epochs=4", "trainer.checkpoint_min_interval_s=0"]
    cmd = [sys.executable, "-m", "repro.train", *args]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    holder = subprocess.Popen(cmd, cwd=tmp_path, env=_env(tmp_path), **quiet)
    job = tmp_path / "out" / "runs" / "smoke" / "trainer.epochs=4"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and holder.poll() is None:
            if (job / "checkpoints").exists() and _steps(job):
                holder.send_signal(signal.SIGSTOP)
                break
            time.sleep(0.02)
        assert holder.poll() is None, "the first run ended before it could be stopped"
        error = _one_error_line(_train(tmp_path, *args))
        assert "is in use by another run" in error and f"pid {holder.pid} on " in error
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    # The OS released the killed holder's lock: the same command resumes and finishes.
    resumed = _train(tmp_path, *args)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step" in resumed.stdout
    assert [r["epoch"] for r in _records(job)] == [1, 2, 3, 4]


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:  # overwrite 5,000 bytes (or all but the ends of a smaller file) in the middle
        size = min(5000, len(data) - 16)
        start = (len(data) - size) // 2
        noise = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
        path.write_bytes(data[:start] + noise + data[start + size :])


def _damage_array_files(step_dir: Path, how: str) -> None:
    """Damage every OCDBT data file of the step: Orbax may hold the arrays in the per-process
    store, in the merged one, or both, and reads only one of them, so damaging a single file
    (the largest, say) can leave the step readable and the test passing for the wrong
    reason."""
    files = [p for p in (step_dir / "state").rglob("d/*") if p.is_file()]
    assert files, f"no array files under {step_dir}"
    for path in files:
        _damage(path, how)


DAMAGES = {
    "truncated array files": lambda step: _damage_array_files(step, "truncate"),
    "truncated metadata file": lambda step: _damage(step / "state" / "_METADATA", "truncate"),
    "5000 bytes overwritten": lambda step: _damage_array_files(step, "overwrite"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_checkpoint_is_skipped_for_the_newest_intact_one(
    unfinished: Path, finished: Path, damage: str
) -> None:
    """Killed just before the final save (epoch 3's record written), with the epoch-2
    checkpoint damaged: the resume says so in one line, restores epoch 1 and ends
    bit-identical to the undamaged run."""
    first, second, last = _steps(unfinished)
    shutil.rmtree(unfinished / "checkpoints" / str(last))
    DAMAGES[damage](unfinished / "checkpoints" / str(second))
    result = _resume(unfinished)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and 'File "' not in result.stderr, result.stderr
    skipped = [line for line in _output(result) if "skipped" in line]
    assert len(skipped) == 1 and f"checkpoint step {second} " in skipped[0], _output(result)
    assert f"restoring step {first}" in skipped[0]
    assert f"resumed from step {first} " in result.stdout
    _assert_same_as_finished(unfinished, finished)
    assert _steps(unfinished) == [first, second, last]  # the damaged step saved again


def test_no_intact_checkpoint_is_one_error_line(unfinished: Path) -> None:
    for step in _steps(unfinished):
        _damage_array_files(unfinished / "checkpoints" / str(step), "truncate")
    error = _one_error_line(_resume(unfinished))
    assert f"no intact checkpoint in {unfinished / 'checkpoints'}" in error
    assert "trainer.overwrite=true" in error
    assert not (unfinished / "summary.json").exists()


def _edit_lines(path: Path, edit: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    if edit == "torn line in the middle":
        lines[1] = lines[1][: len(lines[1]) // 2] + "\n"
    elif edit == "missing epoch":
        del lines[0]
    else:  # repeated epoch
        lines.insert(1, lines[0])
    path.write_text("".join(lines))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("torn line in the middle", "line 2 (after the record of epoch 1) is not a complete"),
        ("missing epoch", "epoch 1 is missing"),
        ("repeated epoch", "epoch 1 appears 2 times"),
    ],
)
def test_damaged_metrics_history_is_an_error_and_left_as_it_is(
    unfinished: Path, edit: str, message: str
) -> None:
    metrics = unfinished / "metrics.jsonl"
    _edit_lines(metrics, edit)
    before = metrics.read_bytes()
    error = _one_error_line(_resume(unfinished))
    assert str(metrics) in error and message in error, error
    assert metrics.read_bytes() == before
    assert not (unfinished / "summary.json").exists()


def test_a_torn_final_metrics_line_is_dropped_and_recomputed(
    unfinished: Path, finished: Path
) -> None:
    """Killed while appending epoch 3's record (before its checkpoint)."""
    shutil.rmtree(unfinished / "checkpoints" / str(_steps(unfinished)[-1]))
    metrics = unfinished / "metrics.jsonl"
    text = metrics.read_text()
    metrics.write_text(text[: text.rstrip("\n").rfind("\n") + 40])
    result = _resume(unfinished)
    assert result.returncode == 0, result.stderr
    _assert_same_as_finished(unfinished, finished)


def test_metrics_deleted_during_a_run_are_rewritten_in_full(tmp_path: Path) -> None:
    args = [*TINY, "trainer.epochs=12"]
    cmd = [sys.executable, "-m", "repro.train", *args]
    run = subprocess.Popen(
        cmd, cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    job = tmp_path / "out" / "runs" / "smoke" / "trainer.epochs=12"
    metrics = job / "metrics.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and run.poll() is None:
        if metrics.exists() and metrics.read_text().count("\n") >= 2:
            metrics.unlink()
            break
        time.sleep(0.02)
    _, stderr = run.communicate(timeout=240)
    assert run.returncode == 0, stderr
    records = _records(job)
    assert [r["epoch"] for r in records] == list(range(1, 13))
    summary = json.loads((job / "summary.json").read_text())
    assert "rewritten" in summary["metrics_log"] and "epoch 1 is missing" in summary["metrics_log"]
    best = max(records, key=lambda r: r["test_accuracy"][0])
    assert summary["replicas"][0]["best"]["epoch"] == best["epoch"]

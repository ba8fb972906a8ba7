"""repro.aggregate: discovery, tidy rows, grouped numbers, unfinished jobs, CLI."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from repro.aggregate import (
    find_job_dirs,
    group_summary,
    load_runs,
    parse_overrides,
    read_metrics,
    replicas_frame,
)
from repro.aggregate import main as aggregate_main

from .commands import run_module
from .factory import LR, RunFactory, replica


def _sweep(runs: RunFactory) -> Path:
    """Multirun 'toy': job 0 (noise off, 3 replicas), job 1 (noise on, 2), job 2 unfinished."""
    runs.multirun(
        "toy",
        [
            dict(
                name="toy/no_noise",
                overrides=["optimizer=sgd", "optimizer.eta=0.0", "seed=5"],
                replicas=[replica(0, 0.5, 0.1), replica(1, 0.7, 0.1), replica(2, 0.9, 0.01)],
            ),
            dict(
                name="toy/noise",
                overrides=["optimizer=noisy_sgd", "optimizer.eta=0.01", "seed=5"],
                replicas=[replica(0, 0.2, 0.1, diverged=True), replica(1, 0.4, 0.01)],
            ),
            dict(
                name="toy/noise",
                overrides=["optimizer.eta=0.3"],
                replicas=[replica(0, 0.1)],
                finished=False,
                epochs=2,
            ),
        ],
    )
    return runs.root / "multirun" / "toy"


def test_parse_overrides_types_and_prefixes() -> None:
    parsed = parse_overrides(
        [
            "optimizer=noisy_sgd",
            "+trainer.epochs=5",
            "++lr=1e-3",
            "~logger",
            "noise=none",
            "flag=true",
            "x=null",
            "grid=[0.1,0.01]",
            "quoted='a b'",
        ]
    )
    assert parsed == {
        "optimizer": "noisy_sgd",
        "trainer.epochs": 5,
        "lr": 1e-3,
        "logger": "<deleted>",
        "flag": True,
        "x": None,
        "noise": "none",
        "grid": "[0.1,0.01]",
        "quoted": "a b",
    }


def test_find_job_dirs_recursive_natural_order_skips_checkpoints(runs: RunFactory) -> None:
    jobs = [dict(name="n", replicas=[replica(i, 0.5)]) for i in range(12)]
    made = runs.multirun("big", jobs)
    # A stray summary.json inside checkpoints/ must not count as a job.
    (made[0] / "checkpoints" / "7").mkdir(parents=True)
    (made[0] / "checkpoints" / "7" / "summary.json").write_text("{}")
    single = runs.job("single", [replica(0, 0.5)])
    found = find_job_dirs([runs.root])
    assert found[:12] == made  # 0, 1, ..., 11: 10 after 9
    assert found[12:] == [single]
    assert find_job_dirs([made[3]]) == [made[3]]  # a job dir itself


def test_rows_columns_and_values(runs: RunFactory) -> None:
    frame = load_runs([_sweep(runs)]).frame()
    assert len(frame) == 5  # 3 + 2 replicas; the unfinished job contributes nothing
    assert list(frame.columns[:5]) == ["job", "name", "replica", "seed", LR]
    # Override keys become columns; "seed" clashes with the replica seed, so it is prefixed.
    assert frame["optimizer"].tolist() == ["sgd"] * 3 + ["noisy_sgd"] * 2
    assert frame["optimizer.eta"].tolist() == [0.0] * 3 + [0.01] * 2
    assert frame["override.seed"].tolist() == [5] * 5
    assert frame["seed"].tolist() == [0, 1, 2, 0, 1]
    assert frame[LR].tolist() == [0.1, 0.1, 0.01, 0.1, 0.01]
    assert frame["final.test_accuracy"].tolist() == [0.5, 0.7, 0.9, 0.2, 0.4]
    assert frame["diverged"].tolist() == [False, False, False, True, False]
    assert frame["best.epoch"].tolist() == [3] * 5
    assert frame["wall_time_s"].tolist() == [12.5] * 5
    assert frame["git_commit"].unique().tolist() == ["abc1234"]


def test_group_numbers_by_hand(runs: RunFactory) -> None:
    frame = load_runs([_sweep(runs)]).frame()
    by_job = group_summary(frame)  # default: per job
    assert by_job["name"].tolist() == ["toy/no_noise", "toy/noise"]
    assert by_job["n"].tolist() == [3, 2]
    # job 0: mean(0.5, 0.7, 0.9) = 0.7, sample std = sqrt((0.04 + 0 + 0.04) / 2) = 0.2
    # job 1: mean(0.2, 0.4) = 0.3, sample std = sqrt(0.02 / 1) = 0.141421...
    assert by_job["mean"].tolist() == pytest.approx([0.7, 0.3], abs=1e-12)
    assert by_job["std"].tolist() == pytest.approx([0.2, math.sqrt(0.02)], abs=1e-12)
    assert by_job["best"].tolist() == pytest.approx([0.9, 0.4])
    assert by_job["n_diverged"].tolist() == [0, 1]

    by_lr = group_summary(frame, [LR], metric="test_accuracy").set_index(LR)
    # lr 0.1: 0.5, 0.7, 0.2 -> mean 0.4666..., lr 0.01: 0.9, 0.4 -> mean 0.65
    assert by_lr.loc[0.1, "mean"] == pytest.approx(1.4 / 3)
    assert by_lr.loc[0.01, "mean"] == pytest.approx(0.65)
    assert by_lr.loc[0.1, "n"] == 3

    # A loss is minimised: best is the smallest final test loss (1 - 0.9 = 0.1 in job 0).
    losses = group_summary(frame, metric="final.test_loss")
    assert losses["best"].tolist() == pytest.approx([0.1, 0.6])


def test_group_single_replica_std_is_nan_and_bad_columns_raise(runs: RunFactory) -> None:
    runs.job("one", [replica(0, 0.5)])
    frame = load_runs([runs.root]).frame()
    assert math.isnan(group_summary(frame)["std"].iloc[0])
    with pytest.raises(
        ValueError, match=r"group_by columns must be among .* got unknown \['nope'\]"
    ):
        group_summary(frame, ["nope"])
    with pytest.raises(ValueError, match="metric must be one of"):
        group_summary(frame, metric="final.bleu")


def test_unfinished_jobs_listed_not_counted(runs: RunFactory) -> None:
    runs.job("done", [replica(0, 0.5)])
    running = runs.job("half", [replica(0, 0.9)], finished=False, epochs=4)
    crashed = runs.job("bad_status", [replica(0, 0.9)], status="failed")
    collection = load_runs([runs.root])
    assert [job.name for job in collection.finished] == ["done"]
    unfinished = {job.path: job for job in collection.unfinished}
    assert set(unfinished) == {running, crashed}
    assert unfinished[running].status == "no summary.json"
    assert unfinished[running].last_epoch == 4
    assert unfinished[running].name == "half"  # from config_resolved.yaml
    assert unfinished[crashed].status == "failed"
    assert collection.frame()["name"].tolist() == ["done"]
    with pytest.raises(ValueError, match="is not finished"):
        replicas_frame(collection.unfinished)


def test_metrics_reader_tolerates_only_a_torn_last_line(runs: RunFactory) -> None:
    job = runs.job("m", [replica(0, 0.5), replica(1, 0.6)], epochs=2)
    with (job / "metrics.jsonl").open("a") as handle:
        handle.write('{"epoch": 3, "test_acc')
    records = read_metrics(job)
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[1]["test_accuracy"] == [0.5, 0.6]
    lines = (job / "metrics.jsonl").read_text().splitlines()
    (job / "metrics.jsonl").write_text("\n".join([lines[0], "garbage", lines[1]]) + "\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: invalid JSON"):
        read_metrics(job)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_module("repro.aggregate", *args, cwd=cwd, timeout=120)


def test_cli_csv_markdown_and_unfinished(runs: RunFactory, tmp_path: Path) -> None:
    sweep = _sweep(runs)
    out = tmp_path / "tables" / "toy.csv"
    result = _cli(str(sweep), "--out", str(out), "--group-by", "name", LR, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    assert len(table) == 5
    assert table["final.test_accuracy"].sum() == pytest.approx(2.7)
    stdout = result.stdout
    assert "| job | name | replica | seed |" in stdout
    assert "## final.test_accuracy by name, optimizer.learning_rate" in stdout
    # toy/no_noise at lr 0.1: mean(0.5, 0.7) = 0.6, std = 0.1414
    assert "| toy/no_noise | 0.1 | 2 | 0.6 | 0.1414 | 0.7 | 0 |" in stdout
    assert "## 1 unfinished job(s) (not counted)" in stdout
    assert "no summary.json" in stdout


def test_cli_errors(tmp_path: Path, runs: RunFactory, capsys) -> None:
    assert aggregate_main([str(tmp_path / "nowhere")]) == 2
    assert "run path does not exist" in capsys.readouterr().err
    runs.job("x", [replica(0, 0.5)])
    assert aggregate_main([str(runs.root), "--group-by", "nope"]) == 2
    assert "got unknown ['nope']" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert aggregate_main([str(empty)]) == 1
    assert "0 replica rows from 0 finished job(s)" in capsys.readouterr().out


def test_null_metric_of_diverged_replica_is_nan_not_counted(runs: RunFactory) -> None:
    # The engine writes non-finite values as null; they must not enter n, mean or best.
    runs.job("d", [replica(0, 0.5), replica(1, None, diverged=True), replica(2, 0.7)])
    frame = load_runs([runs.root]).frame()
    assert frame["final.test_accuracy"].isna().tolist() == [False, True, False]
    assert frame["diverged_step"].tolist()[1] == 7
    row = group_summary(frame).iloc[0]
    assert (row["n"], row["n_diverged"]) == (2, 1)
    assert row["mean"] == pytest.approx(0.6)

"""`python -m repro.train` through the real command line (subprocesses, tiny runs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["experiment=smoke", "trainer.progress=never"]  # digits, 3 x 16 MLP, 2 seeds, 2 epochs


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        REPRO_OUTPUT_ROOT=str(tmp_path / "out"),
        JAX_PLATFORMS="cpu",
        WANDB_MODE="offline",
        WANDB_DIR=str(tmp_path / "wandb"),
        WANDB_SILENT="true",
        HYDRA_FULL_ERROR="0",
        # One compilation cache per test session (and xdist worker): runs of the same program
        # in different tests load it instead of compiling again.
        REPRO_JAX_CACHE_DIR=str(tmp_path.parent / "jax_cache"),
    )
    return env


def _train(tmp_path: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "repro.train", *args],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    timing = ("wall_time_s", "examples_per_s")
    return [{k: v for k, v in json.loads(x).items() if k not in timing} for x in lines if x]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.learning_rate=-1", "error: optimizer.learning_rate must be > 0, got -1"),
        ("model.depth=0", "error: model.depth must be an integer >= 1, got 0"),
        ("model.kernel_init_name=bogus", "error: model.kernel_init_name"),
        ("trainer.batch_size=4096", "error: trainer.batch_size=4096 is larger than the training"),
        ("replicas.seeds=0", "error: replicas.seeds must be an integer >= 1, got 0"),
        ("data=mnist", "error: data file"),
        ("+trainer.epoch=3", "error: trainer.epoch is not a trainer setting (closest: trainer.ep"),
        ("trainer.cpu_devices=abc", "error: trainer.cpu_devices must be 'auto' or an integer"),
        ("trainer.cpu_devices=0", "error: trainer.cpu_devices must be 'auto' or an integer"),
    ],
)
def test_bad_input_gives_one_error_line_and_exit_code_2(
    tmp_path: Path, override: str, message: str
) -> None:
    extra = ["paths.data_dir=/nonexistent/data"] if override == "data=mnist" else []
    result = _train(tmp_path, *TINY, override, *extra)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(message), result.stderr
    assert not list((tmp_path / "out").rglob("summary.json"))
    assert not list((tmp_path / "out").rglob("checkpoints"))


def test_missing_data_names_the_data_dir(tmp_path: Path) -> None:
    result = _train(tmp_path, *TINY, "data=mnist", f"paths.data_dir={tmp_path}/no_data")
    assert result.returncode == 2
    assert f"{tmp_path}/no_data/mnist.npz" in result.stderr


def test_unknown_group_option_lists_the_options(tmp_path: Path) -> None:
    result = _train(tmp_path, "optimizer=no_such_optimizer")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: optimizer=no_such_optimizer: "), lines
    assert "optimizer= takes: adam, adamw, lamb, lars" in lines[0] and "sgd" in lines[0]


def test_multirun_gives_one_dir_per_job_and_rerun_skips_them(tmp_path: Path) -> None:
    # smoke trains replicas.seeds=2 replicas per job: seeds 0, 1 and 2, 3 (no overlap).
    args = ["-m", *TINY, "sweep_name=s", "seed=0,2"]
    first = _train(tmp_path, *args)
    assert first.returncode == 0, first.stderr
    sweep = tmp_path / "out" / "multirun" / "s" / "smoke"
    jobs = sorted(p.name for p in sweep.iterdir())
    assert jobs == ["seed=0", "seed=2"]
    summaries = [json.loads((sweep / j / "summary.json").read_text()) for j in jobs]
    assert [s["replicas"][0]["seed"] for s in summaries] == [0, 2]
    assert all((sweep / j / ".hydra" / "overrides.yaml").exists() for j in jobs)
    again = _train(tmp_path, *args)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already finished") == 2
    assert "final test_accuracy" not in again.stdout


def test_killed_run_resumes_to_bit_identical_metrics(tmp_path: Path) -> None:
    """Start, SIGKILL after a few checkpoints, start the same command again: the metrics and
    summary equal those of an uninterrupted run (timing fields aside)."""
    args = [
        *TINY,
        "noise=additive",
        "trainer.clip_norm=10",
        "trainer.epochs=15",
        "trainer.checkpoint_min_interval_s=0",
    ]
    reference = tmp_path / "reference"
    interrupted = tmp_path / "interrupted"
    reference.mkdir()
    interrupted.mkdir()
    cmd = [sys.executable, "-m", "repro.train", *args]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    proc = subprocess.Popen(cmd, cwd=interrupted, env=_env(interrupted), **quiet)
    ref_proc = subprocess.Popen(cmd, cwd=reference, env=_env(reference), **quiet)
    run_dir = interrupted / "out" / "runs" / "smoke"
    deadline = time.monotonic() + 180
    killed_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        metrics = list(run_dir.glob("*/metrics.jsonl"))
        checkpoints = list(run_dir.glob("*/checkpoints/[0-9]*"))
        done = [c for c in checkpoints if not c.name.endswith("tmp")]
        if metrics and len(metrics[0].read_text().splitlines()) >= 4 and len(done) >= 2:
            proc.send_signal(signal.SIGKILL)
            killed_at = len(metrics[0].read_text().splitlines())
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert killed_at is not None, "the run finished before it could be killed"
    (job,) = run_dir.iterdir()
    assert not (job / "summary.json").exists()

    resumed = _train(interrupted, *args)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step" in resumed.stdout
    assert ref_proc.wait(timeout=240) == 0
    (ref_job,) = (reference / "out" / "runs" / "smoke").iterdir()
    assert ref_job.name == job.name
    assert _records(job) == _records(ref_job)
    assert [r["epoch"] for r in _records(job)] == list(range(1, 16))
    got = json.loads((job / "summary.json").read_text())
    want = json.loads((ref_job / "summary.json").read_text())
    assert got["replicas"] == want["replicas"]
    assert got["aggregate"] == want["aggregate"]
    assert got["metadata"]["resumed_from_step"] is not None


def test_wandb_offline_writes_a_local_run(tmp_path: Path) -> None:
    result = _train(tmp_path, *TINY, "logger=wandb", "logger.mode=offline", "trainer.epochs=1")
    assert result.returncode == 0, result.stderr
    (job,) = (tmp_path / "out" / "runs" / "smoke").iterdir()
    runs = list(job.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(runs) == 1, list(job.rglob("*"))
    assert (job / "summary.json").exists()


def test_default_demo_config_runs(tmp_path: Path) -> None:
    """The default (demo) experiment, shrunk: digits, noise grid eta in {0, 0.3}."""
    shrink = ["trainer.epochs=1", "model.depth=2", "model.width=16", "replicas.seeds=1"]
    shrink.append("trainer.progress=never")
    result = _train(tmp_path, *shrink)
    assert result.returncode == 0, result.stderr
    assert "demo: 2 replica(s)" in result.stdout
    assert "noise.eta=0.3 vs 0.0" in result.stdout
    job = ",".join(sorted(s for s in shrink if not s.startswith("trainer.progress")))
    summary = json.loads((tmp_path / "out" / "runs" / "demo" / job / "summary.json").read_text())
    # The headline objective is reported per arm; the overall value says it mixes the arms.
    arms = summary["objective_by_grid"]
    assert set(arms) == {"0.0", "0.3"}
    per_arm = [line for line in result.stdout.splitlines() if "objective per arm" in line]
    assert len(per_arm) == 1
    for value, objective in arms.items():
        assert f"noise.eta={value} {objective:.4f}" in per_arm[0]
    overall = [line for line in result.stdout.splitlines() if "of all 2 arms together" in line]
    assert len(overall) == 1 and overall[0].endswith(f"{summary['objective']:.4f}")


# A model with a shape bug: it splits its 10 outputs into 3 equal parts, a ValueError raised
# by JAX while tracing -- a bug in code, not bad input. `shape_bug` takes the model node's
# keyword arguments (whatever the experiment sets) and builds the module.
BUGGY_MODEL = """
import flax.linen as nn
import jax.numpy as jnp


class ShapeBug(nn.Module):
    num_outputs: int

    @nn.compact
    def __call__(self, x, *, train):
        h = nn.Dense(self.num_outputs)(x.reshape(x.shape[0], -1))
        return jnp.split(h, 3, axis=1)[0]


def shape_bug(num_outputs, **unused):
    return ShapeBug(num_outputs)
"""


def test_a_bug_inside_a_model_keeps_its_traceback_and_exits_1(tmp_path: Path) -> None:
    """Only bad input (ConfigError) is one line and exit 2: an error raised by code, here a
    shape bug in a model's forward pass, is a bug and keeps its traceback (exit 1)."""
    (tmp_path / "buggy_model.py").write_text(BUGGY_MODEL)
    result = _train(tmp_path, *TINY, "model._target_=buggy_model.shape_bug")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" in result.stderr
    assert "ValueError: array split does not result in an equal division" in result.stderr
    assert not any(line.startswith("error: ") for line in result.stderr.splitlines())


def test_run_in_which_every_replica_diverged_exits_3_without_objective(tmp_path: Path) -> None:
    """Frozen parameters score chance accuracy (0.1 on digits): that is no objective."""
    result = _train(tmp_path, *TINY, "optimizer.learning_rate=1e30", "trainer.epochs=1")
    assert result.returncode == 3, result.stderr[-2000:]
    assert "every replica diverged" in result.stdout
    (job,) = (tmp_path / "out" / "runs" / "smoke").iterdir()
    summary = json.loads((job / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["objective"] is None
    assert summary["num_diverged"] == summary["num_replicas"] == 2
    assert summary["aggregate"]["test_accuracy"]["count"] == 0
    assert summary["aggregate"]["test_accuracy"]["diverged"] == 2
    again = _train(tmp_path, *TINY, "optimizer.learning_rate=1e30", "trainer.epochs=1")
    assert again.returncode == 3 and "already finished" in again.stdout

"""Hydra launchers: basic (sequential), joblib (`hydra/launcher=local`), submitit.

Every launcher must give the same job dirs and bit-identical results, since a job's output dir
and everything it computes are functions of its overrides alone. submitit's local executor
runs the same code path as its SLURM executor (pickled job, submission folder, requeue
bookkeeping) without a cluster; the SLURM config itself is checked by composition.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf
from test_train_cli import TINY, _env, _records

from repro.train import CONFIG_DIR

REPO = Path(__file__).resolve().parents[1]


def _multirun(tmp_path: Path, root: str, *args: str) -> Path:
    env = _env(tmp_path)
    env["REPRO_OUTPUT_ROOT"] = str(tmp_path / root)
    result = subprocess.run(
        [sys.executable, "-m", "repro.train", "-m", *TINY, "sweep_name=s", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path / root / "multirun" / "s" / "smoke"


def test_joblib_and_submitit_launchers_match_the_basic_launcher(tmp_path: Path) -> None:
    # seed=0,2: each smoke job trains replicas.seeds=2 seeds (0-1 and 2-3, disjoint)
    basic = _multirun(tmp_path, "basic", "seed=0,2")
    joblib = _multirun(tmp_path, "joblib", "seed=0,2", "hydra/launcher=local")
    submitit = _multirun(tmp_path, "submitit", "seed=2", "hydra/launcher=submitit_local")

    assert sorted(p.name for p in basic.iterdir()) == ["seed=0", "seed=2"]
    assert sorted(p.name for p in joblib.iterdir()) == ["seed=0", "seed=2"]
    assert [p.name for p in submitit.iterdir() if p.is_dir()] == ["seed=2"]
    for job in ("seed=0", "seed=2"):
        assert _records(joblib / job) == _records(basic / job)
    assert _records(submitit / "seed=2") == _records(basic / "seed=2")
    summary = json.loads((submitit / "seed=2" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["replicas"][0]["seed"] == 2
    # submitit kept its own bookkeeping (pickled job, logs) outside the job dirs
    assert list((tmp_path / "submitit" / "multirun" / "s" / ".submitit").rglob("*_submitted.pkl"))


def test_slurm_launcher_config() -> None:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(
                "config",
                overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                return_hydra_config=True,
            )
    finally:
        GlobalHydra.instance().clear()
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.max_num_timeout >= 1
    assert "export XLA_PYTHON_CLIENT_PREALLOCATE=false" in launcher.setup
    # A requeued job must land in the same dir to resume: the subdir is built from the
    # overrides, never from a job number or id.
    subdir = OmegaConf.to_container(cfg.hydra.sweep, resolve=False)["subdir"]
    assert subdir == "${name}/${repro.dirname:${hydra.overrides.task}}"


def _launcher(name: str, *overrides: str) -> DictConfig:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(
                "config", overrides=[f"hydra/launcher={name}", *overrides], return_hydra_config=True
            )
    finally:
        GlobalHydra.instance().clear()
    return cfg.hydra.launcher


def test_slurm_multinode_launcher_config() -> None:
    launcher = _launcher(
        "slurm_multinode", "hydra.launcher.nodes=4", "hydra.launcher.gpus_per_node=4"
    )
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.nodes == 4 and launcher.gpus_per_node == 4
    assert launcher.tasks_per_node == 4  # one process per GPU, every one in the group
    assert launcher.max_num_timeout >= 1 and launcher.timeout_min > 0
    assert list(launcher.setup) == []  # one process per GPU may preallocate


def test_local_gpu_launcher_config() -> None:
    launcher = _launcher("local_gpu", "hydra.launcher.n_jobs=4")
    assert launcher._target_.endswith("joblib_launcher.JoblibLauncher")
    assert launcher.n_jobs == 4 and launcher.prefer == "processes"

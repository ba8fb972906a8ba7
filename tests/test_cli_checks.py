"""Traps for new users and bad input, through the real command line (`python -m repro.train`).

Every case must exit 2 with exactly one stderr line, `error: ...`, and leave no run behind:
no summary.json, and (for everything the command-line pre-check catches) no run dir at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from test_train_cli import TINY, _env

from repro.cli_checks import (
    check_command_line,
    check_grid_override,
    check_seed_ranges,
    closest_keys,
    describe_experiments,
    experiment_names,
)
from repro.errors import ConfigError
from repro.train import CONFIG_DIR

DEMO_ONE_EPOCH = ["trainer.epochs=1", "trainer.progress=never"]


def _run(tmp_path: Path, args: list[str], env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "repro.train", *args],
        cwd=tmp_path,
        env=env or _env(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
    )


def _small_npz(path: Path) -> Path:
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.integers(0, 255, (64, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, 64),
        x_test=rng.integers(0, 255, (16, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, 16),
    )
    return path


def _random_bytes(tmp_path: Path) -> Path:
    path = tmp_path / "random.npz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def _truncated(tmp_path: Path) -> Path:
    path = _small_npz(tmp_path / "truncated.npz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _overwritten(tmp_path: Path) -> Path:
    path = _small_npz(tmp_path / "overwritten.npz")
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo("x_train.npy")
    start = member.header_offset + 200  # inside x_train's pixels: the CRC no longer matches
    data[start : start + 500] = bytes(500)
    path.write_bytes(bytes(data))
    return path


NPZ_FILES: dict[str, Callable[[Path], Path]] = {
    "random": _random_bytes,
    "truncated": _truncated,
    "overwritten": _overwritten,
}

# (id, args, substrings of the error line). "{npz:<kind>}" is replaced by a damaged file.
CASES = [
    (
        "grid_key_set_explicitly",
        ["noise.eta=0.5", *DEMO_ONE_EPOCH],
        ["noise.eta=0.5", "replicas.grid"],
    ),
    (
        "overlapping_seed_ranges",
        ["-m", *TINY, "sweep_name=s", "seed=0,1"],
        ["seed", "replicas.seeds=2", "overlap"],
    ),
    (
        "unknown_experiment",
        ["experiment=nope"],
        ["nope", "demo", "smoke", "neelakantan2015/{", "he_clip10,", "jasper/{smoke}"],
    ),
    (
        "unknown_optimizer",
        [*TINY, "optimizer=adamax"],
        ["optimizer=adamax: no such option", "adam, adamw, lamb, lars, momentum"],
    ),
    ("key_typo_trainer", [*TINY, "trainer.epoch=3"], ["trainer.epoch", "trainer.epochs"]),
    (
        "key_typo_optimizer",
        [*TINY, "optimizer.learnig_rate=0.1"],
        ["optimizer.learnig_rate", "optimizer.learning_rate"],
    ),
    (
        "one_invalid_job_of_a_sweep",
        ["-m", *TINY, "sweep_name=s", "optimizer.learning_rate=0.1,-1"],
        ["optimizer.learning_rate=-1", "optimizer.learning_rate must be > 0"],
    ),
    (
        "ghost_size_not_an_integer",
        [*TINY, "noise=ghost_batch_gaussian", "noise.ghost_size=0.5"],
        ["noise.ghost_size must be an integer >= 1, got 0.5"],
    ),
    (
        "anneal_not_a_bool",
        [*TINY, "noise=additive", "noise.anneal=maybe"],
        ["noise.anneal must be true or false, got 'maybe'"],
    ),
    (
        "nesterov_not_a_bool",
        [*TINY, "optimizer=momentum", "optimizer.nesterov=maybe"],
        ["optimizer.nesterov must be true or false, got 'maybe'"],
    ),
    (
        "grid_over_an_integer_key",
        [
            *TINY,
            "noise=ghost_batch_gaussian",
            "replicas.grid.key=noise.ghost_size",
            "replicas.grid.values=[8,16]",
        ],
        ["replicas.grid.key='noise.ghost_size'", "-m noise.ghost_size="],
    ),
    (
        "grid_over_a_bool_key",
        [*TINY, "noise=additive", "replicas.grid.key=noise.anneal", "replicas.grid.values=[0,1]"],
        ["replicas.grid.key='noise.anneal'", "-m noise.anneal="],
    ),
    (
        "grid_over_nesterov_without_momentum",
        [*TINY, "replicas.grid.key=optimizer.nesterov", "replicas.grid.values=[0,1]"],
        ["replicas.grid.key='optimizer.nesterov'"],
    ),
    ("npz_random_bytes", [*TINY, "data=mnist", "data.path={npz:random}"], ["random.npz", "not"]),
    (
        "npz_truncated",
        [*TINY, "data=mnist", "data.path={npz:truncated}"],
        ["truncated.npz", "truncated or corrupt"],
    ),
    (
        "npz_overwritten",
        [*TINY, "data=mnist", "data.path={npz:overwritten}"],
        ["overwritten.npz", "x_train"],
    ),
    (
        "wandb_online_without_api_key",
        [*TINY, "logger=wandb", "logger.mode=online"],
        ["logger.mode=online", "wandb login", "logger.mode=offline"],
    ),
]


def _no_wandb_key_env(tmp_path: Path) -> dict[str, str]:
    env = _env(tmp_path)
    for name in ("WANDB_API_KEY", "WANDB_MODE", "NETRC", "WANDB_BASE_URL"):
        env.pop(name, None)
    env["HOME"] = str(tmp_path / "home")  # no ~/.netrc
    env["WANDB_CONFIG_DIR"] = str(tmp_path / "home" / ".config" / "wandb")
    return env


@pytest.mark.parametrize(("args", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_error_line_and_no_run(
    tmp_path: Path, args: list[str], expected: list[str]
) -> None:
    resolved = []
    for arg in args:
        if "{npz:" in arg:
            kind = arg.split("{npz:", 1)[1].rstrip("}")
            arg = arg.split("{npz:", 1)[0] + str(NPZ_FILES[kind](tmp_path))
        resolved.append(arg)
    env = _no_wandb_key_env(tmp_path) if "logger=wandb" in args else None
    result = _run(tmp_path, resolved, env)
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    for text in expected:
        assert text in lines[0], lines[0]
    out = tmp_path / "out"
    assert not list(out.rglob("summary.json"))
    assert not list(out.rglob("checkpoints"))
    if not any("{npz:" in a for a in args):
        # Caught before Hydra starts a job: not even an empty run dir is left.
        assert not [p for p in out.rglob("*") if p.name != ".jax_cache"], list(out.rglob("*"))


def test_valid_jobs_of_a_refused_sweep_did_not_run(tmp_path: Path) -> None:
    """The sweep is refused as a whole before its valid first job starts (nothing trained)."""
    result = _run(tmp_path, ["-m", *TINY, "sweep_name=s", "optimizer.learning_rate=0.1,-1"])
    assert result.returncode == 2
    assert not (tmp_path / "out" / "multirun").exists()


def test_disjoint_seed_ranges_and_an_unswept_grid_key_still_run(tmp_path: Path) -> None:
    """The checks refuse only the traps: seed=0,2 with 2 seeds per job is disjoint, and the
    grid key may be set when the grid is switched off."""
    sweep = _run(tmp_path, ["-m", *TINY, "trainer.epochs=1", "sweep_name=s", "seed=0,2"])
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    single = _run(
        tmp_path,
        [
            "noise.eta=0.5",
            "replicas.grid.key=null",
            *DEMO_ONE_EPOCH,
            "replicas.seeds=1",
            "model.depth=2",
            "model.width=16",
        ],
    )
    assert single.returncode == 0, single.stderr[-3000:]
    assert "demo: 1 replica(s)" in single.stdout


def test_wandb_online_with_an_api_key_passes_the_check(tmp_path: Path) -> None:
    """With WANDB_API_KEY set the credential check passes (W&B itself is not reached: mode
    disabled on the wandb side keeps the test offline)."""
    from repro.loggers import check_wandb_credentials

    env = {"WANDB_API_KEY": "x" * 40}
    check_wandb_credentials({"name": "wandb", "mode": "online"}, env=env, home=tmp_path)
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "y" * 40 + "\n")
    os.chmod(netrc, 0o600)
    check_wandb_credentials({"name": "wandb", "mode": "online"}, env={}, home=tmp_path)


# ---------------------------------------------------------------------------- in-process units


def test_closest_keys_rank_the_same_node_first() -> None:
    cfg = OmegaConf.create(
        {
            "trainer": {"epochs": 1, "eval_every_epochs": 1, "batch_size": 2},
            "optimizer": {"learning_rate": 0.1, "momentum": None},
        }
    )
    assert closest_keys("trainer.epoch", cfg) == ["trainer.epochs"]
    assert closest_keys("optimizer.learnig_rate", cfg) == ["optimizer.learning_rate"]
    assert closest_keys("optimzer", cfg) == ["optimizer"]
    assert closest_keys("zzz.qqq", cfg) == []


def test_every_experiment_is_listed() -> None:
    names = experiment_names(CONFIG_DIR)
    on_disk = {
        p.relative_to(CONFIG_DIR / "experiment").with_suffix("").as_posix()
        for p in (CONFIG_DIR / "experiment").rglob("*.yaml")
    }
    assert set(names) == on_disk and "neelakantan2015/he_clip10" in names
    assert describe_experiments(["demo", "a/x", "smoke", "a/y", "b/z"]) == (
        "demo, smoke, a/{x, y}, b/{z}"
    )


def _cfg(seed: int, seeds: int, lr: float = 0.1) -> dict:
    return {
        "seed": seed,
        "replicas": {"seeds": seeds},
        "optimizer": {"learning_rate": lr},
        "trainer": {"progress": "never"},
    }


def test_seed_ranges_overlap_only_within_one_configuration() -> None:
    check_seed_ranges([((), _cfg(0, 4)), ((), _cfg(4, 4)), ((), _cfg(8, 4))])
    check_seed_ranges([((), _cfg(0, 4, 0.1)), ((), _cfg(1, 4, 0.01))])  # other lr: no overlap
    with pytest.raises(ConfigError, match=r"seed=0 and seed=3 .* \(0-3 and 3-6\).*seed=0,4"):
        check_seed_ranges([((), _cfg(0, 4)), ((), _cfg(3, 4))])
    with pytest.raises(ConfigError, match="seed=5 and seed=5"):  # the same job twice
        check_seed_ranges([((), _cfg(5, 1)), ((), _cfg(5, 1))])
    # settings that do not change results (run_identity) do not separate two jobs
    other = _cfg(1, 2)
    other["trainer"]["progress"] = "always"
    with pytest.raises(ConfigError, match="overlapping"):
        check_seed_ranges([((), _cfg(0, 2)), ((), other)])


def test_grid_key_override_is_refused_only_while_the_grid_sweeps_it() -> None:
    grid = {"replicas": {"grid": {"key": "noise.eta", "values": [0.0, 0.3]}}}
    with pytest.raises(ConfigError, match=r"^noise\.eta=0\.5 is replaced by the replica grid"):
        check_grid_override(grid, ["model.depth=5", "noise.eta=0.5"])
    with pytest.raises(ConfigError, match=r"^\+\+noise\.eta=1 is replaced"):
        check_grid_override(grid, ["++noise.eta=1"])
    check_grid_override(grid, ["noise.gamma=0.5", "~noise.eta"])
    check_grid_override({"replicas": {"grid": {"key": None}}}, ["noise.eta=0.5"])


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["experiment=neelakantan2015/he_clip10", "trainer.epochs=5"],
        ["-m", "seed=0,4"],
        ["-m", "+sweep=neelakantan2015_protocol"],
        ["--cfg", "job"],  # Hydra's own options: left to Hydra
    ],
)
def test_valid_command_lines_pass(argv: list[str]) -> None:
    check_command_line(argv, CONFIG_DIR, "config")


def test_sweep_jobs_are_those_of_the_basic_sweeper() -> None:
    from repro.cli_checks import JobComposer, _hydra_initialized, sweep_jobs

    with _hydra_initialized(CONFIG_DIR):
        jobs = sweep_jobs(
            JobComposer(CONFIG_DIR, "config"), ["+sweep=neelakantan2015_protocol", "seed=0,10"]
        )
    assert len(jobs) == 2 * 2 * 2 * 2  # experiment x batch size x scaling x seed
    assert jobs[0] == [
        "experiment=neelakantan2015/he_clip10",
        "trainer.batch_size=64",
        "data.scaling=unit",
        "+sweep=neelakantan2015_protocol",
        "seed=0",
    ]


def test_appending_an_existing_key_is_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        check_command_line(["+optimizer.learning_rate=3"], CONFIG_DIR, "config")
    assert str(info.value) == (
        "+optimizer.learning_rate=3: optimizer.learning_rate already exists, so '+' (add a key) "
        "does not apply; set it with optimizer.learning_rate=3"
    )

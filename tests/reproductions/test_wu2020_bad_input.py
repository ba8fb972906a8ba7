"""Bad input of the noise classes' configs: one ConfigError line naming the key, exit 2,
before any data is loaded or anything compiles.

Checks that already existed elsewhere (noise.scale / noise.alpha < 0, noise.p outside (0, 1],
data.n_train larger than the data, trainer.batch_size larger than n, with and without noise
enhancement's 2B) are tested in tests/engine/test_config_validation.py and
tests/test_cli_checks.py; here: a sampler's own check of the batch it weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from repro.engine.data_loading import load_data
from repro.engine.experiment import build_experiment
from repro.engine.run_spec import run_spec
from repro.errors import ConfigError
from repro.train import CONFIG_DIR
from tests.reporting.commands import run_module

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = ("experiment=smoke", "trainer.progress=never", "trainer.batch_size=32")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["noise=ghost_batch_gaussian", "noise.ghost_size=5"],
            "noise.ghost_size must divide the batch size (32), got 5 "
            "(noise: repro.optim.ghost_batch_gaussian; the batch is trainer.batch_size=32)",
        ),
        (
            ["noise=sparse_gaussian", "noise.num_noisy=100"],
            "noise.num_noisy must be <= the batch size (32), got 100 "
            "(noise: repro.optim.sparse_gaussian; the batch is trainer.batch_size=32)",
        ),
        (
            ["noise=sgd_sampling", "noise.batch_size=64"],
            "noise.batch_size must be <= the number of examples sampled from (32), got 64 "
            "(noise: repro.optim.sgd_sampling; the batch is trainer.batch_size=32)",
        ),
    ],
)
def test_sampler_that_cannot_weight_the_batch_is_a_config_error(overrides, message, tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[*TINY, *overrides])
    GlobalHydra.instance().clear()
    spec = run_spec(cfg)  # the config alone is valid: the batch decides
    with pytest.raises(ConfigError) as error:
        build_experiment(spec)
    assert str(error.value) == message


def test_ghost_size_not_dividing_the_large_batch_exits_2_in_one_line(tmp_path):
    result = run_module(
        "repro.train", "experiment=wu2020/large_batch_ghost", "noise.ghost_size=30",
        cwd=REPO_ROOT, env={"REPRO_OUTPUT_ROOT": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "error: noise.ghost_size must divide the batch size (500), got 30 "
        "(noise: repro.optim.ghost_batch_gaussian; the batch is trainer.batch_size=500)"
    ]
    assert not list(tmp_path.rglob("summary.json"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        # The training set is the official test split: 10,000 images, not 60,000.
        (
            "data.n_train=20000",
            "data.n_train must be an integer in [1, 10000] (train examples in mnist), got 20000",
        ),
        (
            "data.split_train=valid",
            "data.split_train must be one of ['train', 'test'], got 'valid'",
        ),
    ],
)
def test_wu2020_split_bad_input_names_the_data_key(override, message):
    mnist = REPO_ROOT.parent / "shared" / "data" / "mnist.npz"
    if not mnist.exists():
        pytest.skip(f"real MNIST not found at {mnist}")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=wu2020/gd", override])
    GlobalHydra.instance().clear()
    with pytest.raises(ConfigError) as error:
        load_data(run_spec(cfg).plain["data"])
    assert str(error.value) == message

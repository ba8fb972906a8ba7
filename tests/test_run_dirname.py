"""Run-directory names come from run_identity.NON_RESULT_KEYS (no second list in conf/)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from repro.run_identity import NON_RESULT_KEYS
from repro.train import CONFIG_DIR, run_dirname

# A composable override for each NON_RESULT_KEYS entry that is a config group rather than a
# key with a value (a new group entry must be added here, or the drift test fails).
GROUP_OVERRIDES = {
    "experiment": "experiment=smoke",
    "sweep": "+sweep=neelakantan2015",
    "logger": "logger=wandb",
    "paths": "paths.output_root=/elsewhere",
    "distributed": "distributed.heartbeat_timeout_s=30",  # a node, not a group
}


@pytest.fixture
def hydra_dirs() -> Iterator:
    def _compose(*overrides: str) -> tuple[str, str]:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        output_root = cfg.paths.output_root
        run_dir = cfg.hydra.run.dir.removeprefix(f"{output_root}/runs/{cfg.name}/")
        subdir = cfg.hydra.sweep.subdir.removeprefix(f"{cfg.name}/")
        return run_dir, subdir

    yield _compose
    HydraConfig.instance().cfg = None
    GlobalHydra.instance().clear()


def _override_for(entry: str, defaults: dict) -> str:
    if entry in GROUP_OVERRIDES:
        return GROUP_OVERRIDES[entry]
    value = OmegaConf.select(defaults, entry, throw_on_missing=False)
    assert value is not None or entry.startswith("trainer."), f"add {entry} to GROUP_OVERRIDES"
    return f"{entry}={'null' if value is None else value}"


def test_no_non_result_override_reaches_the_directory_name(hydra_dirs) -> None:
    """An override of every NON_RESULT_KEYS entry, plus two that change results: only the two
    name the directory (run and multirun alike)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        defaults = compose("config", overrides=["~experiment"])
    non_result = [_override_for(entry, defaults) for entry in NON_RESULT_KEYS]
    run_dir, subdir = hydra_dirs(*non_result, "seed=3", "optimizer.learning_rate=0.05")
    assert run_dir == subdir == "optimizer.learning_rate=0.05,seed=3"


def test_conf_keeps_no_second_list_of_excluded_keys() -> None:
    conf = OmegaConf.load(CONFIG_DIR / "config.yaml")
    assert "config" not in conf.hydra.get("job", {})  # no override_dirname.exclude_keys
    raw = OmegaConf.to_container(conf.hydra, resolve=False)
    assert raw["run"]["dir"].endswith("${repro.dirname:${hydra.overrides.task}}")
    assert raw["sweep"]["subdir"] == "${name}/${repro.dirname:${hydra.overrides.task}}"


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ([], "default"),
        (["trainer.progress=never", "logger.mode=offline"], "default"),
        (["seed=1", "experiment=smoke", "trainer.cpu_devices=1"], "seed=1"),
        (
            ["trainer.epochs=1", "model.depth=2", "model.width=16", "replicas.seeds=1"],
            "model.depth=2,model.width=16,replicas.seeds=1,trainer.epochs=1",
        ),
        (
            ["optimizer/schedule=warmup_cosine", "+trainer.progress=never", "noise=additive"],
            "noise=additive,optimizer_schedule=warmup_cosine",
        ),
    ],
)
def test_names_are_hydra_override_dirnames_without_non_result_keys(
    overrides: list[str], name: str
) -> None:
    """Same names as Hydra's override_dirname with the exclusions: sorted, `,`-joined."""
    assert run_dirname(overrides) == name


def test_long_names_are_truncated_with_a_hash() -> None:
    overrides = [f"optimizer.learning_rate={'1' * 200}"]
    name = run_dirname(overrides)
    assert len(name) == 120 and name != run_dirname([f"optimizer.learning_rate={'2' * 200}"])

"""The one list of settings that do not change results, and what it covers."""

from repro.run_identity import (
    config_differences,
    is_result_key,
    override_key,
    result_config,
    result_differences,
    result_overrides,
)


def test_override_key_strips_prefixes_and_group_separators():
    assert override_key("+trainer.epoch=3") == "trainer.epoch"
    assert override_key("~diagnostics.noise") == "diagnostics.noise"
    assert override_key("optimizer/schedule=warmup_cosine") == "optimizer.schedule"
    assert override_key("replicas.grid.values=[0.1,0.01]") == "replicas.grid.values"


def test_entries_cover_their_subtree_but_not_siblings_with_a_common_prefix():
    assert not is_result_key("logger")
    assert not is_result_key("logger.mode")
    assert not is_result_key("paths.data_dir")
    assert not is_result_key("experiment")
    assert is_result_key("trainer.epochs")
    assert is_result_key("loggerx")  # a prefix of the name is not the node
    assert is_result_key("trainer.progress_extra")


def test_result_overrides_keep_order_and_drop_non_result_keys():
    overrides = ["seed=1", "trainer.progress=never", "experiment=demo", "noise.eta=0.3"]
    assert result_overrides(overrides) == ["seed=1", "noise.eta=0.3"]


def test_result_config_drops_nested_nodes_only():
    config = {
        "seed": 0,
        "logger": {"kind": "wandb"},
        "trainer": {"epochs": 3, "progress": "never", "checkpoint_min_interval_s": 30},
    }
    assert result_config(config) == {"seed": 0, "trainer": {"epochs": 3}}


def test_differences_name_dotted_keys_and_ignore_non_result_ones():
    a = {"seed": 0, "trainer": {"epochs": 3, "progress": "never"}}
    b = {"seed": 1, "trainer": {"epochs": 3, "progress": "always"}, "extra": 1}
    assert config_differences(a, b) == ["extra", "seed", "trainer.progress"]
    assert result_differences(a, b) == ["extra", "seed"]


def test_data_paths_are_compared_relative_to_the_data_dir() -> None:
    # The same run made in two checkouts (or machines): data.path differs only by paths.data_dir.
    def config(root: str, name: str = "mnist.npz") -> dict:
        data_dir = f"{root}/../shared/data"
        return {"paths": {"data_dir": data_dir}, "data": {"path": f"{data_dir}/{name}"}}

    assert result_differences(config("/work/main"), config("/home/me/repro")) == []
    assert result_config(config("/a/b"))["data"]["path"] == "${paths.data_dir}/mnist.npz"
    assert result_differences(config("/a"), config("/a", "fashion.npz")) == ["data.path"]
    # A path outside the data dir is compared as it is.
    outside = {"paths": {"data_dir": "/data"}, "data": {"path": "/elsewhere/mnist.npz"}}
    assert result_config(outside)["data"]["path"] == "/elsewhere/mnist.npz"

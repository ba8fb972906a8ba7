"""Resident sets split over the "data" devices (repro/engine/split_data.py), on 4 fake XLA CPU
devices in one subprocess (`_SCRIPT`, the device count is fixed before JAX starts). Checked:
- placement: each device holds ceil(N/d) examples of a set of N=37 (zero-padded), on a
  (2 replicas x 2 data) and a (1 x 4) mesh;
- the batch gathered in shard_map equals the whole-set gather bit for bit (floats with a NaN,
  int labels, booleans; repeated indices, the last example), sharded over "data";
- the compiled chunk of a split run communicates the batch by one reduce-scatter and never
  all-gathers the set;
- through the engine (`trainer.resident_split=split` vs `whole`, data_devices=4, gradient
  noise, clipping, train_eval, an evaluation batch of 101 rounded up to 104): every metric
  equal to rtol 1e-6 (measured here: the training metrics and the final train state
  bit-identical; the evaluation's example sums are reduced across devices in another order,
  worst relative difference 1.2e-7), and summary.json records the split;
- bad values of trainer.resident_split are one-line errors before JAX starts.
"""

from __future__ import annotations

import numpy as np
import pytest

from repro.engine.config_validation import validate_trainer
from repro.engine.run_spec import complete_trainer
from repro.errors import ConfigError
from tests.engine.fake_devices import run_on_fake_devices

_SCRIPT = r"""
import json, re, sys, tempfile
from pathlib import Path
import jax, jax.numpy as jnp, numpy as np
from hydra import compose, initialize_config_dir
sys.path.insert(0, str(Path.cwd() / "tests" / "engine"))
from conftest import TINY
from repro.train import CONFIG_DIR
from repro.engine import train_and_evaluate
from repro.engine.epoch import make_chunk_fn, make_order_fn
from repro.engine.optimizers import UpdateRule
from repro.engine.sharding import batch_sharding, replica_mesh, replicate, shard_replica_axis
from repro.engine.split_data import make_split_gather, place_split
from repro.engine.steps import ReplicaModel, make_init_fn
from repro.engine.tasks import get_task
from repro.models import DeepMLP

assert len(jax.devices()) == 4
out = {}
rng = np.random.default_rng(0)
data = {
    "x": rng.normal(size=(37, 3)).astype(np.float32),
    "y": rng.integers(0, 5, 37).astype(np.int32),
    "b": rng.random(37) > 0.5,
}
data["x"][5, 1] = np.nan
indices = np.array([36, 5, 5, 0, 7, 18, 19, 20], np.int32)
for replicas, devices in ((2, 2), (1, 4)):
    mesh = replica_mesh(replicas, None, devices)
    placed = place_split(data, mesh)
    batch = jax.jit(make_split_gather(mesh))(placed, jnp.asarray(indices))
    out[f"{replicas}x{devices}"] = {
        "mesh": dict(mesh.shape),
        "shards": {k: [list(s.data.shape) for s in v.addressable_shards] for k, v in placed.items()
        },
        "equal": {
            k: bool(np.array_equal(np.asarray(batch[k]), data[k][indices], equal_nan=True))
            for k in data
        },
        "dtypes": {k: str(batch[k].dtype) for k in data},
        "spec": {k: list(batch[k].sharding.spec) for k in data},
    }

# The compiled chunk of a split run: which collectives it contains.
rule = UpdateRule({"_target_": "optax.sgd", "learning_rate": 0.1}, {"kind": "none"}, None, 10, 10)
model = DeepMLP(depth=2, width=8, num_outputs=3)
program = ReplicaModel(model, get_task("classification"), rule, 16)
train = {"x": rng.normal(size=(160, 5)).astype(np.float32), "y": rng.integers(0, 3, 160)}
keys = jax.vmap(jax.random.key)(np.arange(2, dtype=np.uint32))
mesh = replica_mesh(2, None, 2)
state = shard_replica_axis(make_init_fn(program)(keys, {}, train["x"][:1]), mesh)
chunk = make_chunk_fn(program, 10, True, batch_sharding(mesh), gather=make_split_gather(mesh))
order = make_order_fn(160, 10, 16, True)(jax.random.key(0), 0)
args = (state, {}, place_split(train, mesh), replicate(order, mesh), 10)
text = chunk.lower(*args).compile().as_text()
out["collectives"] = sorted(set(re.findall(r"\b(all-gather|reduce-scatter|all-to-all)\b", text)))

def cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=[*TINY, *overrides])

def run(name, *overrides):
    workdir = root / name
    summary = train_and_evaluate(cfg(*common, *overrides), workdir)
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines]
    for record in records:
        record.pop("wall_time_s", None), record.pop("examples_per_s", None)
    return {"records": records, "data": summary["metadata"]["data"]}

common = [
    "noise=additive", "noise.eta=0.05", "trainer.clip_norm=10", "replicas.seeds=2",
    "trainer.data_devices=4", "trainer.eval_train_examples=100", "trainer.eval_batch_size=101",
]
root = Path(tempfile.mkdtemp())
out["whole"] = run("whole", "trainer.resident_split=whole")
out["split"] = run("split", "trainer.resident_split=split")
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_on_fake_devices(_SCRIPT, 4, tmp_path_factory.mktemp("jax_cache"))


@pytest.mark.parametrize(("mesh", "rows"), [("2x2", 19), ("1x4", 10)])
def test_each_device_holds_its_shard_of_the_set(report: dict, mesh: str, rows: int) -> None:
    got = report[mesh]
    replicas, devices = (int(n) for n in mesh.split("x"))
    assert got["mesh"] == {"replicas": replicas, "data": devices}
    assert got["shards"]["x"] == [[rows, 3]] * 4
    assert got["shards"]["y"] == got["shards"]["b"] == [[rows]] * 4


@pytest.mark.parametrize("mesh", ["2x2", "1x4"])
def test_split_gather_is_the_whole_set_gather(report: dict, mesh: str) -> None:
    got = report[mesh]
    assert got["equal"] == {"x": True, "y": True, "b": True}
    assert got["dtypes"] == {"x": "float32", "y": "int32", "b": "bool"}
    assert list(got["spec"].values()) == [["data"]] * 3


def test_split_chunk_moves_batches_not_the_set(report: dict) -> None:
    assert report["collectives"] == ["reduce-scatter"]


def test_split_run_trains_like_whole(report: dict) -> None:
    # Measured here: the final state and the training metrics bit-identical (the batches are,
    # test above). Asserted to rtol 1e-6, as the evaluation: the programs around the two
    # gathers differ, and another CPU's compiler may fuse them differently.
    whole, split = report["whole"], report["split"]
    assert len(split["records"]) == len(whole["records"]) == 2
    for got, want in zip(split["records"], whole["records"], strict=True):
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-6, err_msg=key)
    assert split["records"][-1]["train_loss"] != split["records"][0]["train_loss"]  # it trained
    assert split["data"]["resident_split"] == {
        "data_devices": 4,
        "train_examples": 1437,
        "train_examples_this_process": 1437,
    }
    assert "resident_split" not in whole["data"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"resident_split": "half"},
            "trainer.resident_split must be one of auto/split/whole, got 'half'",
        ),
        (
            {"resident_split": "split"},
            "trainer.resident_split=split needs trainer.data_devices >= 2 (the sets are split "
            "over the data devices), got data_devices=1",
        ),
    ],
)
def test_bad_resident_split_is_one_line(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        validate_trainer(complete_trainer(overrides))
    assert str(error.value) == message

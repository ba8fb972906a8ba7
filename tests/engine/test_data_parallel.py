"""Data parallelism over a ("replicas", "data") mesh of 4 fake XLA CPU devices.

The device count must be set before JAX starts, so the runs happen in one subprocess
(`_SCRIPT`), which reports JSON. Checked:
- the compiled chunk all-reduces over the data devices (the batch really is split);
- every data shard holds bit-identical parameters after noisy steps (the gradient noise is
  drawn after the all-reduce from the replicated key: same noise on every shard);
- `trainer.data_devices=2` equals `data_devices=1` for 2 epochs of a tiny MLP with 2
  replicas, gradient noise and clipping, on the resident and on the streamed path (which
  with one data device is the resident run bit for bit, test_streaming.py), to
  rtol 1e-4 on metrics and atol 1e-5 on parameters (example sums are reduced in another
  order; float32 rounding, grown over 44 steps);
- bad values give one line naming trainer.data_devices, before compiling.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.engine.fake_devices import run_on_fake_devices

_SCRIPT = r"""
import json, os, sys, tempfile
from pathlib import Path
import jax, numpy as np
import orbax.checkpoint as ocp
from hydra import compose, initialize_config_dir
sys.path.insert(0, str(Path.cwd() / "tests" / "engine"))
from conftest import TINY
from repro.train import CONFIG_DIR
from repro.engine import train_and_evaluate
from repro.engine.epoch import make_chunk_fn, make_order_fn
from repro.engine.optimizers import UpdateRule
from repro.engine.sharding import batch_sharding, replica_mesh, replicate, shard_replica_axis
from repro.engine.steps import ReplicaModel, make_init_fn
from repro.engine.tasks import get_task
from repro.models import DeepMLP

assert len(jax.devices()) == 4
out = {}

# Low level: a (2 replicas x 2 data) mesh, 10 noisy steps.
rule = UpdateRule(
    {"_target_": "optax.sgd", "learning_rate": 0.1},
    {"kind": "gradient", "_target_": "repro.optim.add_noise", "eta": 0.3, "gamma": 0.55},
    None, 10, 10,
)
model = DeepMLP(depth=2, width=8, num_outputs=3, kernel_init_name="he")
program = ReplicaModel(model, get_task("classification"), rule, 16)
rng = np.random.default_rng(0)
data = {"x": rng.normal(size=(160, 5)).astype(np.float32), "y": rng.integers(0, 3, 160)}
keys = jax.vmap(jax.random.key)(np.arange(2, dtype=np.uint32))
state = make_init_fn(program)(keys, {}, data["x"][:1])
mesh = replica_mesh(2, None, 2)
out["mesh"] = dict(mesh.shape)
state = shard_replica_axis(state, mesh)
chunk = make_chunk_fn(program, 10, True, batch_sharding(mesh))
order = make_order_fn(160, 10, 16, True)(jax.random.key(0), 0)
args = (state, {}, replicate(data, mesh), replicate(order, mesh), 10)
out["all_reduce"] = "all-reduce" in chunk.lower(*args).compile().as_text()
state = chunk(*args)
same = True
for leaf in jax.tree.leaves(state.replicas.params):
    copies = {}
    for shard in leaf.addressable_shards:
        copies.setdefault(str(shard.index), []).append(np.asarray(shard.data))
    assert len(copies) == 2 and all(len(c) == 2 for c in copies.values())
    same &= all(np.array_equal(c[0], c[1]) for c in copies.values())
out["shards_identical"] = bool(same)

# Through the engine.
def cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=[*TINY, *overrides])

def params(workdir):
    manager = ocp.CheckpointManager(workdir / "checkpoints", item_names=("state", "meta"))
    restored = manager.restore(
        manager.latest_step(), args=ocp.args.Composite(state=ocp.args.StandardRestore())
    )
    manager.close()
    leaves = jax.tree.leaves(restored["state"]["replicas"]["params"])
    return [np.asarray(x).tolist() for x in leaves]

common = ["noise=additive", "noise.eta=0.05", "trainer.clip_norm=10", "replicas.seeds=2"]
root = Path(tempfile.mkdtemp())
# (stream, 1) is bit-identical to (resident, 1) (test_streaming.py): not run again here.
for path, d in (("resident", 1), ("resident", 2), ("stream", 2)):
    extra = ["data=digits_stream", "trainer.stream_chunk_steps=5"] if path == "stream" else []
    workdir = root / f"{path}_{d}"
    summary = train_and_evaluate(cfg(*common, *extra, f"trainer.data_devices={d}"), workdir)
    out[f"{path}_{d}"] = {
        "finals": [r["final"] for r in summary["replicas"]],
        "params": params(workdir),
    }
errors = []
for bad in ("trainer.data_devices=0", "trainer.data_devices=3", "trainer.data_devices=8"):
    try:
        train_and_evaluate(cfg(bad), root / bad)
    except ValueError as error:
        errors.append(str(error))
out["errors"] = errors
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_on_fake_devices(_SCRIPT, 4, tmp_path_factory.mktemp("jax_cache"))


def test_batch_is_split_and_data_shards_stay_identical(report: dict) -> None:
    assert report["mesh"] == {"replicas": 2, "data": 2}
    assert report["all_reduce"]
    assert report["shards_identical"]


@pytest.mark.parametrize("path", ["resident", "stream"])
def test_two_data_devices_equal_one(report: dict, path: str) -> None:
    # A streamed run with one data device is the resident run, bit for bit.
    one, two = report["resident_1"], report[f"{path}_2"]
    for a, b in zip(one["finals"], two["finals"], strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_allclose(b[key], a[key], rtol=1e-4, err_msg=key)
    for a, b in zip(one["params"], two["params"], strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0, atol=1e-5)
    assert one["finals"][0] != one["finals"][1]  # the replicas differ (seeds)


def test_streamed_and_resident_agree_under_data_parallelism(report: dict) -> None:
    assert report["stream_2"]["finals"] == report["resident_2"]["finals"]


def test_bad_data_devices_are_one_line_errors(report: dict) -> None:
    zero, odd, many = report["errors"]
    assert zero == "trainer.data_devices must be an integer >= 1, got 0"
    assert odd.startswith("trainer.data_devices=3 must divide trainer.batch_size=64")
    assert many == "trainer.data_devices=8 is more than the 4 devices available"
    assert all("\n" not in e for e in report["errors"])

"""A TFDS stream through the training engine, offline, on a tiny locally prepared 'mnist'
(300 train / 100 test images, tests/data/conftest.py): training batches and the test split
are streamed (the last test batch padded and masked), and a run resumed mid-epoch reads the
exact batches of an uninterrupted one (bit-identical metrics, tolerance 0).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

pytest.importorskip("tensorflow_datasets")

from repro.data import TFDSStream, load_tfds
from repro.engine import train_and_evaluate
from repro.engine.evaluation import make_eval_fn, make_eval_sums_fn, pad_to_batches
from repro.engine.feeding import StreamEvaluator
from repro.engine.optimizers import UpdateRule
from repro.engine.steps import ReplicaModel, make_init_fn
from repro.engine.tasks import get_task
from repro.models import DeepMLP
from repro.train import CONFIG_DIR

# 300 examples, batch 32 -> 9 steps per epoch; chunk ends at 3, 6, 9; eval batches 64 + 36.
OVERRIDES = (
    "~experiment",
    "name=tfds_stream",
    "data=mnist_tfds_stream",
    "model=deep_mlp",
    "model.depth=2",
    "model.width=16",
    "model.kernel_init_name=he",
    "optimizer=sgd",
    "optimizer.learning_rate=0.1",
    "noise=additive",
    "replicas.seeds=2",
    "trainer.epochs=2",
    "trainer.batch_size=32",
    "trainer.eval_batch_size=64",
    "trainer.stream_chunk_steps=2",
    "trainer.chunks_per_epoch=3",
    "trainer.checkpoint_within_epoch=true",
    "trainer.checkpoint_min_interval_s=1e-9",
    "trainer.checkpoint_max_to_keep=20",
    "trainer.progress=never",
)


@pytest.fixture(autouse=True)
def _offline(no_network):
    return no_network


def _cfg(data_dir: Path, *extra: str):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose("config", overrides=[*OVERRIDES, f"data.data_dir={data_dir}", *extra])
    finally:
        GlobalHydra.instance().clear()


def _records(workdir: Path) -> list[dict]:
    timing = ("wall_time_s", "examples_per_s")
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in timing} for x in lines if x]


def test_tfds_stream_trains_evaluates_and_resumes(tiny_tfds_mnist, tmp_path: Path) -> None:
    full = train_and_evaluate(_cfg(tiny_tfds_mnist), tmp_path / "full")
    assert full["steps"] == 2 * (300 // 32)
    records = _records(tmp_path / "full")
    assert [r["step"] for r in records] == [9, 18]
    for record in records:
        assert len(record["test_accuracy"]) == 2
        assert all(0 <= a <= 1 for a in record["test_accuracy"])
        assert all(np.isfinite(record["train_loss"]))

    run = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full", run)
    for path in (run / "checkpoints").iterdir():
        if path.name.isdigit() and int(path.name) > 12:  # keep the one mid-epoch 2
            shutil.rmtree(path)
    (run / "summary.json").unlink()
    resumed = train_and_evaluate(_cfg(tiny_tfds_mnist), run)
    assert resumed["metadata"]["resumed_from_step"] == 12
    assert _records(run) == records
    assert resumed["replicas"] == full["replicas"]


def test_streamed_test_split_metrics_equal_the_resident_evaluation(tiny_tfds_mnist) -> None:
    """The engine's streamed evaluation (masked sums over padded host batches) against the
    resident padded pass over the same 100 images, same parameters: bit-identical (same
    per-batch program, sums in the same order, one host division; evaluation.py)."""
    stream = TFDSStream("mnist", tiny_tfds_mnist, batch_size=32, test_split="test")
    test = stream.test_source(64)
    assert (test.steps_per_epoch, test.num_examples) == (2, 100)
    model = DeepMLP(depth=2, width=16, num_outputs=10, kernel_init_name="he")
    rule = UpdateRule({"_target_": "optax.sgd", "learning_rate": 0.1}, {}, None, 1, 1)
    # rows=1: one eval batch per call, the last one (36 of 64) padded and masked.
    program = ReplicaModel(model, get_task("classification"), rule, 32)
    keys = jax.vmap(jax.random.key)(np.arange(3, dtype=np.uint32))
    state = make_init_fn(program)(keys, {}, np.zeros((1, 28, 28, 1), np.float32))
    streamed = StreamEvaluator(
        program, make_eval_sums_fn(program), test, rows=1, put=jax.device_put
    )(state.replicas)
    # The in-memory TFDS loader with order="source" reads the split in the stream's order.
    arrays = load_tfds("mnist", tiny_tfds_mnist, order="source").test_arrays()
    resident = make_eval_fn(program)(state.replicas, pad_to_batches(arrays, 64))
    for name in ("loss", "accuracy"):
        np.testing.assert_array_equal(streamed[name], resident[name])


def test_tfds_stream_parts_are_slices_of_the_whole_batches(tiny_tfds_mnist) -> None:
    """What each of two processes reads when a batch is split over them: examples lo..hi-1
    of every batch (only those decoded), equal to the slices of the whole batches, also
    when resuming mid-epoch."""
    stream = TFDSStream("mnist", tiny_tfds_mnist, batch_size=32, seed=5)
    for start in (0, 4):
        whole = list(stream.epoch_batches(1, start))
        halves = [list(stream.epoch_batches(1, start, part=p)) for p in ((0, 16), (16, 32))]
        assert len(whole) == len(halves[0]) == len(halves[1]) == 9 - start
        for batch, first, second in zip(whole, *halves, strict=True):
            for key in ("x", "y"):
                np.testing.assert_array_equal(batch[key][:16], first[key])
                np.testing.assert_array_equal(batch[key][16:], second[key])
    with pytest.raises(ValueError, match="part must satisfy"):
        next(iter(stream.epoch_batches(0, part=(16, 40))))

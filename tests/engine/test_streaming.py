"""Host-fed (streamed) training through `train_and_evaluate`, against the resident path.

An ArrayStream over the digits arrays yields exactly the batches the resident engine gathers
(same data seed -> same permutation), so the streamed run must be BIT-IDENTICAL to the
resident one: metrics, summary and final parameters (tolerance 0). Resumed streamed runs
must be bit-identical to uninterrupted ones. Feeding pieces are checked in isolation too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

from repro.data import ArrayStream
from repro.data.streaming import DATA_ORDER_STREAM
from repro.engine import train_and_evaluate
from repro.engine.epoch import chunk_stops, make_order_fn
from repro.engine.feeding import Prefetcher, piece_bounds, stack_batches
from repro.engine.replicas import STREAM_DATA_ORDER

REPO = Path(__file__).resolve().parents[2]
STREAM = ("data=digits_stream",)
# 1437 digits: batch 64 -> 22 steps per epoch; chunks of 3 -> stops at 8, 15, 22; pieces of
# 5 steps therefore come in lengths 5, 3, 5, 2, 5, 2 (short pieces padded).
PIECES = ("trainer.stream_chunk_steps=5",)


def _assert_same_params(final_params: Callable[[Path], Any], a: Path, b: Path) -> None:
    pa, pb = final_params(a), final_params(b)
    assert jax.tree.structure(pa) == jax.tree.structure(pb)
    for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb), strict=True):
        np.testing.assert_array_equal(x, y)


def test_data_order_streams_agree() -> None:
    assert DATA_ORDER_STREAM == STREAM_DATA_ORDER


def test_array_stream_batches_are_the_resident_batches() -> None:
    rng = np.random.default_rng(0)
    arrays = {"x": rng.normal(size=(50, 3)).astype(np.float32), "y": np.arange(50)}
    stream = ArrayStream(arrays, batch_size=8, num_classes=50, seed=3)
    assert (stream.steps_per_epoch, stream.input_shape) == (6, (3,))
    order_fn = make_order_fn(50, 6, 8, True)
    key = jax.random.fold_in(jax.random.key(3), STREAM_DATA_ORDER)
    for epoch in (0, 1):
        order = np.asarray(order_fn(key, epoch))
        batches = list(stream.epoch_batches(epoch))
        assert [b["y"].tolist() for b in batches] == order.tolist()
        resumed = list(stream.epoch_batches(epoch, 4))  # a pure function of the position
        assert [b["y"].tolist() for b in resumed] == order[4:].tolist()
    plain = ArrayStream(arrays, batch_size=8, num_classes=50, shuffle=False, drop_remainder=False)
    assert [len(b["y"]) for b in plain.epoch_batches(0)] == [8] * 6 + [2]


def test_array_stream_parts_are_slices_of_the_whole_batches() -> None:
    """Each process of a batch split over processes reads its examples lo..hi-1 only."""
    arrays = {"x": np.arange(100, dtype=np.float32)[:, None], "y": np.arange(100)}
    for shuffle in (True, False):
        stream = ArrayStream(arrays, batch_size=12, num_classes=100, seed=1, shuffle=shuffle)
        whole = list(stream.epoch_batches(2, 3))
        parts = [list(stream.epoch_batches(2, 3, part=p)) for p in ((0, 3), (3, 9), (9, 12))]
        for batch, *pieces in zip(whole, *parts, strict=True):
            assert np.concatenate([p["y"] for p in pieces]).tolist() == batch["y"].tolist()
    with pytest.raises(ValueError, match="part must satisfy 0 <= lo < hi <= 12"):
        next(iter(stream.epoch_batches(0, part=(5, 5))))


@pytest.mark.parametrize(
    "overrides",
    [
        ("noise=additive", "trainer.clip_norm=10", "replicas.seeds=2", "trainer.epochs=3"),
        # 2B examples per step; streamed test split, last eval batch padded (360 = 3*100 + 60).
        (
            "noise=noise_enhancement",
            "noise.alpha=1.0",
            "replicas.seeds=2",
            "trainer.eval_batch_size=100",
            "data.stream_test=true",
        ),
    ],
    ids=["additive_noise", "noise_enhancement_streamed_test"],
)
def test_streamed_run_is_bit_identical_to_resident_run(
    compose_cfg, read_metrics, final_params, tmp_path: Path, overrides: tuple[str, ...]
) -> None:
    resident_overrides = [o for o in overrides if not o.startswith("data.")]
    resident = train_and_evaluate(compose_cfg(*resident_overrides), tmp_path / "resident")
    streamed = train_and_evaluate(compose_cfg(*STREAM, *PIECES, *overrides), tmp_path / "stream")
    assert streamed["steps"] == resident["steps"]
    assert read_metrics(tmp_path / "stream", timing=False) == read_metrics(
        tmp_path / "resident", timing=False
    )
    assert streamed["replicas"] == resident["replicas"]
    assert resident["replicas"][0]["final"] != resident["replicas"][1]["final"]
    _assert_same_params(final_params, tmp_path / "resident", tmp_path / "stream")


def test_streamed_run_resumes_bit_identically(
    compose_cfg, read_metrics, final_params, tmp_path: Path
) -> None:
    """Checkpoints at every chunk end; resume once from mid-epoch 2 and once from the end of
    epoch 1 (fed serially, without the prefetch thread): both continue with the exact
    batches and end as the uninterrupted run."""
    overrides = (
        *STREAM,
        *PIECES,
        "noise=additive",
        "replicas.seeds=2",
        "trainer.epochs=3",
        "trainer.checkpoint_within_epoch=true",
        "trainer.checkpoint_min_interval_s=1e-9",
        "trainer.checkpoint_max_to_keep=20",
    )
    full = train_and_evaluate(compose_cfg(*overrides), tmp_path / "full")
    records = read_metrics(tmp_path / "full", timing=False)
    saved = sorted(
        int(p.name) for p in (tmp_path / "full" / "checkpoints").iterdir() if p.name.isdigit()
    )
    assert saved == [s for e in range(3) for s in chunk_stops(e, 22, 3)]
    for resume_step in (30, 22):  # mid-epoch 2 (after the stop at 30), end of epoch 1
        run = tmp_path / f"from_{resume_step}"
        shutil.copytree(tmp_path / "full", run)
        for step in saved:
            if step > resume_step:
                shutil.rmtree(run / "checkpoints" / str(step))
        (run / "summary.json").unlink()
        serial = ("trainer.stream_prefetch=0",) if resume_step == 22 else ()
        resumed = train_and_evaluate(compose_cfg(*overrides, *serial), run)
        assert resumed["metadata"]["resumed_from_step"] == resume_step
        assert read_metrics(run, timing=False) == records
        assert resumed["replicas"] == full["replicas"]
        _assert_same_params(final_params, tmp_path / "full", run)


def test_stream_config_errors_before_compiling(compose_cfg, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^trainer.shared_data_order=false cannot be used"):
        train_and_evaluate(compose_cfg(*STREAM, "trainer.shared_data_order=false"), tmp_path)
    with pytest.raises(ValueError, match=r"^trainer.batch_size: batch_size must be an integer"):
        train_and_evaluate(compose_cfg(*STREAM, "trainer.batch_size=2000"), tmp_path / "b")
    with pytest.raises(ValueError, match=r"^trainer.stream_chunk_steps must be an integer >= 1"):
        train_and_evaluate(compose_cfg(*STREAM, "trainer.stream_chunk_steps=0"), tmp_path / "c")


def test_pieces_split_at_chunk_stops_and_resume_anywhere() -> None:
    assert chunk_stops(1, 22, 3) == [30, 37, 44]
    assert list(piece_bounds(0, 22, 22, 3, 5)) == [
        (0, 5),
        (5, 8),
        (8, 13),
        (13, 15),
        (15, 20),
        (20, 22),
    ]
    assert list(piece_bounds(33, 44, 22, 3, 5)) == [(33, 37), (37, 42), (42, 44)]


def test_stack_batches_pads_and_masks() -> None:
    full = {"x": np.ones((4, 2), np.float32), "y": np.arange(4)}
    part = {"x": np.ones((3, 2), np.float32), "y": np.arange(3)}
    train = stack_batches([full, full], 3, 4)
    assert train["x"].shape == (3, 4, 2) and not train["x"][2].any()
    evaluation = stack_batches([full, part], 3, 4, mask=True)
    assert evaluation["mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0], [0, 0, 0, 0]]
    with pytest.raises(RuntimeError, match="batch of 3 examples, expected 4"):
        stack_batches([full, part], 3, 4)


def test_prefetcher_keeps_order_and_raises_producer_errors() -> None:
    def produce():
        yield from range(5)
        raise KeyError("broken record")

    with Prefetcher(produce(), depth=2) as items:
        assert [next(items) for _ in range(5)] == list(range(5))
        with pytest.raises(KeyError, match="broken record"):
            next(items)
    endless = Prefetcher(iter(int, 1), depth=2)  # an infinite producer stops on close
    assert next(endless) == 0
    endless.close()
    assert not endless._thread.is_alive()


def test_cli_trains_from_a_stream(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        REPRO_OUTPUT_ROOT=str(tmp_path / "out"),
        JAX_PLATFORMS="cpu",
        REPRO_JAX_CACHE_DIR=str(tmp_path.parent / "jax_cache"),
    )

    def train(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "repro.train", "experiment=smoke", "data=digits_stream"]
        return subprocess.run(
            [*command, "trainer.progress=never", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )

    result = train()
    assert result.returncode == 0, result.stderr
    assert "final test_accuracy" in result.stdout
    (summary,) = (tmp_path / "out").rglob("summary.json")
    assert "data=digits_stream" in str(summary)
    bad = train("trainer.shared_data_order=false")
    assert bad.returncode == 2
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "trainer.shared_data_order=false" in errors[0], bad.stderr

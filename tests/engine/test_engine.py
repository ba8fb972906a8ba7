"""Engine numerics through `train_and_evaluate` on tiny runs (digits, 3 x 16 MLP, 2 epochs).

Tolerances: replicas vmapped in one program use batched matmuls whose summation order may
differ from a lone replica's, so "equal" means rtol 1e-4 on metrics after 2 epochs.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from repro.engine import build_summary, train_and_evaluate

RTOL = 1e-4


def _final(summary: dict, index: int, key: str) -> float:
    return summary["replicas"][index]["final"][key]


def test_outputs_follow_the_schema(compose_cfg, read_metrics, tmp_path: Path) -> None:
    cfg = compose_cfg(
        "replicas.seeds=2",
        "replicas.grid.key=optimizer.learning_rate",
        "replicas.grid.values=[0.1,0.05]",
    )
    summary = train_and_evaluate(cfg, tmp_path)
    for name in ("config_resolved.yaml", "metrics.jsonl", "summary.json", "checkpoints"):
        assert (tmp_path / name).exists(), name
    records = read_metrics(tmp_path)
    assert [r["epoch"] for r in records] == [1, 2]
    steps_per_epoch = 1437 // 64
    assert [r["step"] for r in records] == [steps_per_epoch, 2 * steps_per_epoch]
    for record in records:
        for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "diverged"):
            assert len(record[key]) == 4, key
        assert record["examples_per_s"] > 0
        assert 0 <= min(record["test_accuracy"]) <= max(record["test_accuracy"]) <= 1
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["status"] == "finished"
    assert on_disk["experiment"] == "test"
    assert on_disk["num_replicas"] == 4
    assert [r["seed"] for r in on_disk["replicas"]] == [0, 1, 0, 1]
    assert on_disk["replicas"][2]["hparams"] == {"optimizer.learning_rate": 0.05}
    assert set(on_disk["replicas"][0]["final"]) >= {"test_accuracy", "test_loss", "train_loss"}
    assert on_disk["replicas"][0]["best"]["epoch"] in (1, 2)
    stats = on_disk["aggregate"]["test_accuracy"]
    assert set(stats) >= {"mean", "std", "min", "max", "median"}
    assert set(on_disk["aggregate_by_grid"]) == {"0.1", "0.05"}
    meta = on_disk["metadata"]
    for key in (
        "git_commit",
        "git_dirty",
        "command",
        "hostname",
        "platform",
        "devices",
        "versions",
        "start_time",
        "end_time",
        "wall_time_s",
    ):
        assert key in meta, key
    assert meta["versions"]["jax"]
    expected = float(np.mean(records[-1]["test_accuracy"]))
    assert math.isclose(on_disk["objective"], expected, rel_tol=1e-9)
    assert summary["objective"] == on_disk["objective"]


def test_replicas_in_one_program_equal_separate_runs(compose_cfg, tmp_path: Path) -> None:
    together = train_and_evaluate(compose_cfg("seed=5", "replicas.seeds=3"), tmp_path / "all")
    # Replica 2 has seed 7; the shared data order comes from the base seed 5.
    alone = train_and_evaluate(
        compose_cfg("seed=7", "replicas.seeds=1", "trainer.data_seed=5"), tmp_path / "one"
    )
    for key in ("train_loss", "test_loss", "test_accuracy"):
        np.testing.assert_allclose(_final(together, 2, key), _final(alone, 0, key), rtol=RTOL)
    assert _final(together, 0, "test_loss") != _final(together, 2, "test_loss")


def test_per_replica_data_order_equals_separate_runs(compose_cfg, tmp_path: Path) -> None:
    together = train_and_evaluate(
        compose_cfg("replicas.seeds=2", "trainer.shared_data_order=false"), tmp_path / "all"
    )
    alone = train_and_evaluate(
        compose_cfg("seed=1", "trainer.shared_data_order=false"), tmp_path / "one"
    )
    for key in ("train_loss", "test_loss"):
        np.testing.assert_allclose(_final(together, 1, key), _final(alone, 0, key), rtol=RTOL)


def test_divergent_replica_is_frozen_and_others_go_on(
    compose_cfg, read_metrics, tmp_path: Path
) -> None:
    grid = ("replicas.grid.key=optimizer.learning_rate", "replicas.grid.values=[0.1,1e30]")
    mixed = train_and_evaluate(compose_cfg(*grid), tmp_path / "mixed")
    alone = train_and_evaluate(compose_cfg("optimizer.learning_rate=0.1"), tmp_path / "alone")
    good, bad = mixed["replicas"]
    assert not good["diverged"] and bad["diverged"]
    assert bad["diverged_step"] is not None and bad["diverged_step"] <= 2
    assert bad["final"]["train_loss"] is None  # NaN -> null in JSON
    for key in ("train_loss", "test_loss", "test_accuracy"):
        np.testing.assert_allclose(good["final"][key], _final(alone, 0, key), rtol=RTOL)
    records = read_metrics(tmp_path / "mixed")
    assert records[-1]["diverged"] == [False, True]
    # The diverged replica (frozen, chance accuracy) is out of the objective and the means,
    # counted separately; objective.include_diverged=true puts it back.
    accuracy = good["final"]["test_accuracy"]
    assert mixed["status"] == "finished" and mixed["num_diverged"] == 1
    assert mixed["objective"] == accuracy
    assert mixed["objective_by_grid"] == {"0.1": accuracy, "1e+30": None}
    assert mixed["aggregate"]["test_accuracy"]["mean"] == accuracy
    assert mixed["aggregate"]["test_accuracy"]["count"] == 1
    assert mixed["aggregate"]["test_accuracy"]["diverged"] == 1
    assert mixed["aggregate_by_grid"]["1e+30"]["test_accuracy"]["count"] == 0
    config = OmegaConf.to_container(OmegaConf.load(tmp_path / "mixed" / "config_resolved.yaml"))
    config["objective"]["include_diverged"] = True
    both = build_summary(config, records, steps=mixed["steps"])
    assert both["aggregate"]["test_accuracy"]["count"] == 2
    assert both["objective"] == pytest.approx(np.mean(records[-1]["test_accuracy"]), rel=1e-12)


def test_full_divergence_check_gives_the_same_healthy_run(compose_cfg, tmp_path: Path) -> None:
    full = train_and_evaluate(compose_cfg("trainer.divergence_check=full"), tmp_path / "full")
    loss = train_and_evaluate(compose_cfg(), tmp_path / "loss")
    assert full["replicas"][0]["final"] == loss["replicas"][0]["final"]


def test_zero_noise_replica_equals_noise_free_run(compose_cfg, tmp_path: Path) -> None:
    noisy = train_and_evaluate(
        compose_cfg(
            "noise=additive",
            "trainer.clip_norm=10",
            "replicas.grid.key=noise.eta",
            "replicas.grid.values=[0.0,0.05]",
        ),
        tmp_path / "noisy",
    )
    plain = train_and_evaluate(compose_cfg("trainer.clip_norm=10"), tmp_path / "plain")
    for key in ("train_loss", "test_loss"):
        np.testing.assert_allclose(_final(noisy, 0, key), _final(plain, 0, key), rtol=RTOL)
    assert _final(noisy, 1, "train_loss") != pytest.approx(_final(noisy, 0, "train_loss"), rel=1e-3)


def test_noise_enhancement_consumes_two_minibatches(compose_cfg, tmp_path: Path) -> None:
    summary = train_and_evaluate(
        compose_cfg(
            "noise=noise_enhancement",
            "replicas.grid.key=noise.alpha",
            "replicas.grid.values=[0.0,1.0]",
        ),
        tmp_path,
    )
    assert summary["steps"] == 2 * (1437 // 128)
    assert not any(r["diverged"] for r in summary["replicas"])
    assert _final(summary, 0, "train_loss") != _final(summary, 1, "train_loss")


def test_warmup_schedule_and_momentum_with_traced_grid(compose_cfg, tmp_path: Path) -> None:
    summary = train_and_evaluate(
        compose_cfg(
            "optimizer=momentum",
            "optimizer/schedule=warmup_polynomial",
            "optimizer.schedule.warmup_epochs=1",
            "replicas.grid.key=optimizer.momentum",
            "replicas.grid.values=[0.0,0.9]",
        ),
        tmp_path,
    )
    assert summary["grid_key"] == "optimizer.momentum"
    finals = [r["final"]["train_loss"] for r in summary["replicas"]]
    assert all(math.isfinite(v) for v in finals) and finals[0] != finals[1]


def test_validation_split_and_batch_scaled_learning_rate(
    compose_cfg, read_metrics, tmp_path: Path
) -> None:
    # Base lr 0.05 stated at batch 16, run at batch 64 with sqrt scaling: lr 0.1, exactly.
    scaled = compose_cfg(
        "+data.n_validation=300",
        "optimizer.learning_rate=0.05",
        "+optimizer.batch_scaling.rule=sqrt",
        "+optimizer.batch_scaling.base_batch_size=16",
    )
    summary = train_and_evaluate(scaled, tmp_path / "scaled")
    assert summary["steps"] == 2 * ((1437 - 300) // 64)
    record = read_metrics(tmp_path / "scaled")[-1]
    assert 0 < record["validation_accuracy"][0] <= 1
    assert record["validation_accuracy"] != record["test_accuracy"]
    assert set(summary["replicas"][0]["final"]) >= {"validation_accuracy", "validation_loss"}
    plain = train_and_evaluate(compose_cfg("+data.n_validation=300"), tmp_path / "plain")
    for key in ("train_loss", "validation_loss", "test_loss"):
        assert summary["replicas"][0]["final"][key] == plain["replicas"][0]["final"][key], key


def test_finished_run_is_skipped_and_other_config_refused(compose_cfg, tmp_path: Path) -> None:
    first = train_and_evaluate(compose_cfg(), tmp_path)
    again = train_and_evaluate(compose_cfg("trainer.progress=always"), tmp_path)
    assert again["already_finished"] and again["objective"] == first["objective"]
    with pytest.raises(ValueError, match=r"different config \(differs in: optimizer.learning_rate"):
        train_and_evaluate(compose_cfg("optimizer.learning_rate=0.05"), tmp_path)
    replaced = train_and_evaluate(
        compose_cfg("optimizer.learning_rate=0.05", "trainer.overwrite=true"), tmp_path
    )
    assert "already_finished" not in replaced


def test_resume_from_mid_run_checkpoint_is_bit_identical(
    compose_cfg, read_metrics, tmp_path: Path
) -> None:
    """In-process resume: a 1-epoch run's checkpoint continued to 3 epochs equals 3 epochs."""
    full = train_and_evaluate(compose_cfg("trainer.epochs=3", "noise=additive"), tmp_path / "a")
    # Same directory layout as an interrupted run: outputs of epoch 1, config of the full run.
    train_and_evaluate(compose_cfg("trainer.epochs=1", "noise=additive"), tmp_path / "b")
    (tmp_path / "b" / "summary.json").unlink()
    (tmp_path / "b" / "config_resolved.yaml").unlink()
    resumed = train_and_evaluate(compose_cfg("trainer.epochs=3", "noise=additive"), tmp_path / "b")
    assert resumed["metadata"]["resumed_from_step"] == 1437 // 64
    assert read_metrics(tmp_path / "a", timing=False) == read_metrics(tmp_path / "b", timing=False)
    assert full["replicas"] == resumed["replicas"]
    # Time across invocations: the 1-epoch start and the resumed one, each recorded.
    meta = resumed["metadata"]
    first, second = meta["invocations"]
    assert first["resumed_from_step"] is None and second["resumed_from_step"] == 1437 // 64
    assert first["end_time"] <= second["start_time"] == meta["start_time"]
    assert meta["wall_time_s"] == pytest.approx(first["wall_time_s"] + second["wall_time_s"])
    assert meta["wall_time_s"] > second["wall_time_s"] > 0 and first["wall_time_s"] > 0
    assert meta["training_time_s"] >= read_metrics(tmp_path / "b")[-1]["wall_time_s"]
    assert len(full["metadata"]["invocations"]) == 1


def test_resume_from_mid_epoch_checkpoint_is_bit_identical(
    compose_cfg, read_metrics, tmp_path: Path
) -> None:
    """Chunk-boundary checkpoints (long epochs): drop every checkpoint after one taken in the
    middle of epoch 2 and the summary, rerun: the run continues mid-epoch to the same end."""
    overrides = (
        "noise=additive",
        "trainer.chunks_per_epoch=3",
        "trainer.checkpoint_within_epoch=true",
        "trainer.checkpoint_min_interval_s=1e-9",
        "trainer.checkpoint_max_to_keep=20",
    )
    full = train_and_evaluate(compose_cfg(*overrides), tmp_path)
    before = read_metrics(tmp_path, timing=False)
    steps_per_epoch = 1437 // 64
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    mid = [s for s in saved if steps_per_epoch < s < 2 * steps_per_epoch]
    assert mid, saved
    for step in saved:
        if step > mid[0]:
            shutil.rmtree(tmp_path / "checkpoints" / str(step))
    (tmp_path / "summary.json").unlink()
    resumed = train_and_evaluate(compose_cfg(*overrides), tmp_path)
    assert resumed["metadata"]["resumed_from_step"] == mid[0]
    assert read_metrics(tmp_path, timing=False) == before
    assert resumed["replicas"] == full["replicas"]

"""Jasper on real (synthesized) audio through the real command lines: a tiny corpus built by
`python -m repro.data.speech build`, `python -m repro.train experiment=jasper2019/protocol`
on it with task=asr, and what the run writes (WER/CER, decoded transcripts, skip counts).
Also SpecAugment inside the model (training only) and the transcripts hook's bad input.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from repro.models import Jasper
from tests.reporting.commands import run_module

# A run that overfits 16 training utterances (its train_eval set, one full batch per step),
# so that the WER it measures falls within a minute on a CPU. Measured: a CTC model leaves
# the blank-only plateau within ~50 full-batch steps on 16 utterances; on 64 utterances in
# batches of 16 it still sits there after 200 steps (README, "Jasper on audio").
TINY_RUN = (
    "experiment=jasper2019/protocol",
    "data.n_train=16",
    "data.n_test=8",
    "data.n_validation=8",
    "replicas.seeds=1",
    "trainer.epochs=50",
    "trainer.batch_size=16",
    "trainer.eval_every_epochs=10",
    "trainer.eval_train_examples=16",
    "trainer.eval_batch_size=16",
    "model.dropout=0.0",
    "model.epilogue_dropout=0.0",
    "optimizer/schedule=constant",
    "optimizer.weight_decay=0.0",
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("speech")
    out = root / "corpus"
    done = run_module("repro.data.speech", "build", "--out", str(out), "--hours", "0.02", cwd=root)
    assert done.returncode == 0, done.stderr
    return out


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tiny_jasper_run_lowers_the_wer_and_saves_transcripts(corpus: Path, tmp_path: Path):
    done = run_module(
        "repro.train",
        *TINY_RUN,
        f"data.path={corpus}",
        f"paths.output_root={tmp_path / 'out'}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = next((tmp_path / "out" / "runs" / "jasper2019" / "protocol").iterdir())
    records = _records(run_dir)
    first, last = records[0], records[-1]
    assert first["epoch"] == 10 and last["epoch"] == 50
    # Chance for a CTC model is the empty transcript: WER = CER = 1.
    assert first["train_eval_wer"][0] > 0.9, first["train_eval_wer"]
    # Measured: train CER 0.83 / 0.79 / 0.13 / 0.005 at epochs 10 / 20 / 30 / 40; 50 leaves
    # room for a later drop on another CPU.
    assert last["train_eval_cer"][0] < 0.2, last["train_eval_cer"]
    assert last["train_eval_wer"][0] < 0.5, last["train_eval_wer"]
    for key in ("test_wer", "test_cer", "validation_wer", "validation_cer"):
        assert np.isfinite(last[key][0]), key
    references = last["transcripts/references"][0]
    hypotheses = last["transcripts/hypotheses"][0]
    assert len(references) == len(hypotheses) == 4 and all(references)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["objective_metric"] == "test_wer"
    assert "transcripts/hypotheses" not in summary["aggregate"]
    data = summary["metadata"]["data"]
    built = json.loads((corpus / "corpus.json").read_text())["splits"]
    assert data["num_examples"] == 16
    assert data["num_validation_examples"] == min(8, built["validation"]["utterances"])
    assert data["skipped"]["train"]["counts"] == {}


def test_missing_corpus_is_one_line_exit_2(tmp_path: Path) -> None:
    done = run_module(
        "repro.train",
        "experiment=jasper2019/protocol",
        f"data.path={tmp_path / 'nowhere'}",
        f"paths.output_root={tmp_path / 'out'}",
        cwd=tmp_path,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "corpus directory" in lines[0] and "build" in lines[0]
    assert not (tmp_path / "out" / "runs").exists() or not list(
        (tmp_path / "out").rglob("summary.json")
    )


def test_transcripts_hook_needs_task_asr(tmp_path: Path) -> None:
    done = run_module(
        "repro.train",
        "experiment=jasper/smoke",
        "+diagnostics.transcripts._target_=repro.engine.transcript_samples.TranscriptSamples",
        f"paths.output_root={tmp_path / 'out'}",
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "diagnostics.transcripts" in done.stderr and "task=asr" in done.stderr


def test_spec_augment_masks_training_inputs_only() -> None:
    model = Jasper(num_outputs=29, spec_augment=(2, 8, 2, 10))
    x = jax.random.normal(jax.random.key(0), (2, 40, 16))
    variables = model.init(jax.random.key(1), x, train=False)

    def train_logits(key: int) -> jax.Array:
        (logits, _), _ = model.apply(
            variables,
            x,
            train=True,
            rngs={"dropout": jax.random.key(key)},
            mutable=["batch_stats"],
        )
        return logits

    plain = Jasper(num_outputs=29)
    (want, _), _ = plain.apply(
        variables, x, train=True, rngs={"dropout": jax.random.key(3)}, mutable=["batch_stats"]
    )
    assert not np.allclose(train_logits(3), want)  # masked input, other outputs
    assert not np.allclose(train_logits(3), train_logits(4))  # fresh masks per key
    evaluated, _ = model.apply(variables, x, train=False)
    np.testing.assert_allclose(evaluated, plain.apply(variables, x, train=False)[0])
    with pytest.raises(ValueError, match="spec_augment must be 4 integers"):
        Jasper(spec_augment=(1, 2, 3))
    assert jnp.isfinite(train_logits(5)).all()


PAPER_CELLS = ("jasper_dr10x5", "jasper_dr10x5_momentum", "quartznet_15x5")
TINY_MODEL = (
    "model.blocks=2",
    "model.repeats=1",
    "model.filters=[8]",
    "model.kernel_sizes=[11]",
    "model.dropout=0.0",
    "model.prologue_filters=8",
    "model.epilogue_filters=[8,8]",
)


@pytest.mark.parametrize("cell", PAPER_CELLS)
def test_paper_scale_cells_compose_with_the_papers_settings(cell: str) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from repro.train import CONFIG_DIR

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[f"experiment=jasper2019/paper/{cell}"])
    finally:
        GlobalHydra.instance().clear()
    assert cfg.task == "asr" and cfg.data.split_train == "train_clean100"
    assert cfg.data.max_duration_s == 16.7 and cfg.trainer.data_devices == 8
    assert cfg.model.dtype == "bfloat16"  # mixed precision on accelerators
    if cell == "quartznet_15x5":
        assert (cfg.model.blocks, cfg.model.separable, cfg.optimizer.b2) == (15, True, 0.5)
        assert cfg.optimizer.schedule.name == "warmup_cosine"
    else:
        assert (cfg.model.blocks, cfg.model.repeats, cfg.model.residual) == (10, 5, "dense")
    if cell == "jasper_dr10x5":
        opt = cfg.optimizer
        assert (opt.learning_rate, opt.b1, opt.b2, opt.weight_decay) == (0.02, 0.95, 0.98, 0.001)
        assert opt.schedule.power == 2.0


# QuartzNet's run (45 s) is slow: its config is checked above, and the TFDS LibriSpeech path
# it shares with Jasper DR is run in the default suite.
@pytest.mark.parametrize(
    "cell", ["jasper_dr10x5", pytest.param("quartznet_15x5", marks=pytest.mark.slow)]
)
def test_paper_scale_cells_train_at_tiny_size_on_a_local_tfds_librispeech(
    cell: str, tmp_path: Path
) -> None:
    pytest.importorskip("tensorflow_datasets")
    from tests.data.speech_helpers import good_utterances, write_tfds_librispeech

    splits = {
        "train_clean100": good_utterances(4, 0),
        "dev_clean": good_utterances(2, 50),
        "test_clean": good_utterances(2, 9),
    }
    tfds_dir = write_tfds_librispeech(tmp_path / "tfds", splits)
    done = run_module(
        "repro.train",
        f"experiment=jasper2019/paper/{cell}",
        f"data.data_dir={tfds_dir}",
        *TINY_MODEL,
        "trainer.epochs=1",
        "trainer.batch_size=2",
        "trainer.data_devices=1",
        "trainer.eval_batch_size=2",
        "trainer.eval_every_epochs=1",
        "diagnostics.transcripts.every_epochs=1",
        "diagnostics.transcripts.num_examples=2",
        f"paths.output_root={tmp_path / 'out'}",
        cwd=tmp_path,
        env={"TFDS_DATA_DIR": str(tfds_dir)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = next((tmp_path / "out" / "runs" / "jasper2019" / "paper" / cell).iterdir())
    (record,) = _records(run_dir)
    assert np.isfinite(record["test_wer"][0]) and np.isfinite(record["validation_cer"][0])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["metadata"]["data"]["source"].startswith("tfds:librispeech:")

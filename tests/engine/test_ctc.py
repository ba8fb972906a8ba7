"""CTC task: loss against brute-force alignment sums, greedy decoding and edit distance
against pure-Python references, metric bookkeeping, and the model-input plumbing of steps.py.

Tolerances: float32 log-likelihoods of a few frames, rtol 1e-5; decoding and distances exact.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from repro.data.speech.dataset import pad_sequences as _padded
from repro.engine.steps import ReplicaModel, model_input_keys
from repro.engine.tasks import (
    BLANK_ID,
    edit_distance,
    get_task,
    greedy_ctc_decode,
    greedy_ctc_frames,
    num_outputs_for,
)
from repro.models import DeepMLP, Jasper

CTC = get_task("ctc")
REPO = Path(__file__).resolve().parents[2]


def _collapse(path: list[int]) -> list[int]:
    """CTC's many-to-one map B: merge repeats, then drop blanks."""
    return [k for k, _ in itertools.groupby(path) if k != BLANK_ID]


def _brute_force_nll(logits: np.ndarray, label: list[int]) -> float:
    """-log sum over all K^T frame paths that collapse to `label` of prod_t p_t(path_t)."""
    log_p = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    frames, classes = log_p.shape
    total = 0.0
    for path in itertools.product(range(classes), repeat=frames):
        if _collapse(list(path)) == label:
            total += math.exp(sum(log_p[t, k] for t, k in enumerate(path)))
    return -math.log(total)


def _python_edit_distance(a: list[int], b: list[int]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        new = [i]
        for j, y in enumerate(b, 1):
            new.append(min(row[j] + 1, new[j - 1] + 1, row[j - 1] + (x != y)))
        row = new
    return row[-1]


def test_two_frame_closed_form() -> None:
    # Label [1] in 2 frames: paths (1,1), (1,-), (-,1) -> p = a1 b1 + a1 b0 + a0 b1.
    logits = np.log(np.array([[[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]], np.float32))
    p = 0.5 * 0.1 + 0.5 * 0.6 + 0.2 * 0.1
    batch = {"y": jnp.array([[1]]), "y_paddings": jnp.zeros((1, 1))}
    loss = CTC.loss((jnp.asarray(logits), jnp.zeros((1, 2))), batch)
    np.testing.assert_allclose(loss, [-math.log(p)], rtol=1e-5)


def test_ctc_loss_matches_brute_force_with_paddings() -> None:
    rng = np.random.default_rng(0)
    frames, classes, width = 5, 3, 3
    labels = [[1], [2, 1], [1, 1], [2, 2, 1], [1, 2]]
    num_frames = [5, 4, 5, 5, 3]  # [1, 1] needs a blank between: 3 frames at least
    logits = rng.standard_normal((len(labels), frames, classes)).astype(np.float32)
    logit_paddings = (np.arange(frames)[None] >= np.array(num_frames)[:, None]).astype(np.float32)
    # Padded frames hold garbage: it must not matter.
    logits = np.where(logit_paddings[..., None] > 0, 50.0, logits).astype(np.float32)
    y, y_paddings = _padded(labels, width)
    loss = CTC.loss(
        (jnp.asarray(logits), jnp.asarray(logit_paddings)),
        {"y": jnp.asarray(y), "y_paddings": jnp.asarray(y_paddings)},
    )
    want = [_brute_force_nll(logits[i, : num_frames[i]], labels[i]) for i in range(len(labels))]
    np.testing.assert_allclose(np.asarray(loss), want, rtol=1e-5)


def test_greedy_decoding_matches_python_reference() -> None:
    rng = np.random.default_rng(1)
    batch, frames, classes = 64, 12, 4  # few classes: many repeats and blanks
    logits = rng.standard_normal((batch, frames, classes)).astype(np.float32)
    lengths = rng.integers(0, frames + 1, batch)
    paddings = (np.arange(frames)[None] >= lengths[:, None]).astype(np.float32)
    tokens, token_paddings = greedy_ctc_decode(jnp.asarray(logits), jnp.asarray(paddings))
    tokens, token_paddings = np.asarray(tokens), np.asarray(token_paddings)
    for i in range(batch):
        want = _collapse(list(np.argmax(logits[i, : lengths[i]], axis=-1)))
        n = int((token_paddings[i] == 0).sum())
        assert tokens[i, :n].tolist() == want
        assert (token_paddings[i, :n] == 0).all() and (tokens[i, n:] == 0).all()


def test_edit_distance_matches_python_reference() -> None:
    rng = np.random.default_rng(2)
    batch, hyp_width, ref_width = 128, 9, 7
    hyps = [list(rng.integers(1, 4, rng.integers(0, hyp_width + 1))) for _ in range(batch)]
    refs = [list(rng.integers(1, 4, rng.integers(0, ref_width + 1))) for _ in range(batch)]
    hyp, hyp_pad = _padded(hyps, hyp_width)
    ref, ref_pad = _padded(refs, ref_width)
    got = jax.jit(edit_distance)(hyp, hyp_pad, ref, ref_pad)
    want = [_python_edit_distance(h, r) for h, r in zip(hyps, refs, strict=True)]
    np.testing.assert_array_equal(np.asarray(got), want)
    # Padded hypothesis positions anywhere are skipped (what the uncompacted decode relies on).
    scattered_pad = rng.random((batch, hyp_width)) < 0.4
    scattered = rng.integers(1, 4, (batch, hyp_width)).astype(np.int32)
    got = edit_distance(scattered, scattered_pad.astype(np.float32), ref, ref_pad)
    want = [
        _python_edit_distance(list(scattered[i][~scattered_pad[i]]), refs[i]) for i in range(batch)
    ]
    np.testing.assert_array_equal(np.asarray(got), want)


def test_ctc_metrics_and_corpus_rate() -> None:
    rng = np.random.default_rng(3)
    batch, frames, classes, width = 32, 10, 5, 4
    logits = rng.standard_normal((batch, frames, classes)).astype(np.float32)
    lengths = rng.integers(1, frames + 1, batch)
    logit_paddings = (np.arange(frames)[None] >= lengths[:, None]).astype(np.float32)
    refs = [list(rng.integers(1, classes, rng.integers(0, width + 1))) for _ in range(batch)]
    y, y_paddings = _padded(refs, width)
    values = CTC.per_example(
        (jnp.asarray(logits), jnp.asarray(logit_paddings)),
        {"y": jnp.asarray(y), "y_paddings": jnp.asarray(y_paddings)},
    )
    assert set(values) == {"loss", "token_error_rate", "token_errors", "ref_tokens"}
    hyps = [_collapse(list(np.argmax(logits[i, : lengths[i]], -1))) for i in range(batch)]
    errors = np.array([_python_edit_distance(h, r) for h, r in zip(hyps, refs, strict=True)])
    ref_len = np.array([len(r) for r in refs])
    np.testing.assert_array_equal(values["token_errors"], errors)
    np.testing.assert_array_equal(values["ref_tokens"], ref_len)
    np.testing.assert_allclose(values["token_error_rate"], errors / np.maximum(ref_len, 1))
    # The engine reports means over examples; their ratio is the corpus-level rate.
    corpus = float(np.mean(values["token_errors"]) / np.mean(values["ref_tokens"]))
    assert math.isclose(corpus, errors.sum() / ref_len.sum(), rel_tol=1e-6)
    # Without y_paddings every label counts; a bare logits array means no logit padding.
    full = CTC.per_example(jnp.asarray(logits), {"y": jnp.asarray(y)})
    assert np.all(np.asarray(full["ref_tokens"]) == width)


def test_greedy_frames_separate_repeats_by_blanks() -> None:
    # argmax per frame: 1 1 0 1 2 2 | pad: emits 1, 1, 2.
    ids = np.array([1, 1, 0, 1, 2, 2, 1])
    logits = np.eye(3, dtype=np.float32)[ids][None] * 5
    paddings = np.array([[0, 0, 0, 0, 0, 0, 1]], np.float32)
    frame_ids, emitted = greedy_ctc_frames(jnp.asarray(logits), jnp.asarray(paddings))
    assert np.asarray(frame_ids)[0][np.asarray(emitted)[0]].tolist() == [1, 1, 2]


def test_num_outputs_and_task_validation() -> None:
    y = jnp.zeros((4, 3), jnp.int32)
    assert num_outputs_for(CTC, 5, y) == 6
    with pytest.raises(ValueError, match=r"task=ctc needs a data set with num_classes >= 1"):
        num_outputs_for(CTC, 0, y)
    assert CTC.default_objective == "test_corpus_token_error_rate" and CTC.default_mode == "min"
    means = {"test_token_errors": np.array([3.0, 0.0]), "test_ref_tokens": np.array([4.0, 0.0])}
    rates = CTC.with_ratios(means, "test_")["test_corpus_token_error_rate"]
    np.testing.assert_array_equal(rates, [0.75, np.nan])
    # The other tasks are unchanged.
    assert num_outputs_for(get_task("classification"), 10, jnp.zeros(4)) == 10
    assert num_outputs_for(get_task("mse"), 0, jnp.zeros((4, 2))) == 2


def test_model_input_keys() -> None:
    assert model_input_keys(DeepMLP(depth=1, width=2, num_outputs=2)) == ("x",)
    assert model_input_keys(Jasper()) == ("x", "x_paddings")


def test_models_without_input_keys_get_x_only() -> None:
    # The classification/mse path: extra batch entries never reach a model that does not
    # declare them, and the outputs are those of model.apply(variables, x).
    model = DeepMLP(depth=2, width=8, num_outputs=3)
    x = jax.random.normal(jax.random.key(0), (4, 5))
    variables = model.init(jax.random.key(1), x, train=False)
    program = ReplicaModel(model, get_task("classification"), rule=None, examples_per_step=4)
    batch = {"x": x, "y": jnp.zeros(4, jnp.int32), "x_paddings": jnp.ones((4, 5))}
    outputs, state = program.apply(variables["params"], {}, batch, train=False)
    np.testing.assert_array_equal(outputs, model.apply(variables, x, train=False))
    assert state == {}


def test_task_and_model_mismatch_raises_while_tracing() -> None:
    with pytest.raises(ValueError, match=r"task=ctc needs a sequence model with logits"):
        CTC.per_example(jnp.zeros((4, 3)), {"y": jnp.ones((4, 2), jnp.int32)})
    with pytest.raises(ValueError, match=r"task=classification needs a model returning one"):
        get_task("classification").per_example(
            (jnp.zeros((4, 5, 3)), jnp.zeros((4, 5))), {"y": jnp.zeros(4, jnp.int32)}
        )


def _corpus_rate(final: dict) -> float:
    return final["test_token_errors"] / final["test_ref_tokens"]


def test_jasper_smoke_experiment_learns_through_the_cli(tmp_path: Path) -> None:
    """`python -m repro.train experiment=jasper/smoke` with a smaller test set: the corpus token
    error rate (empty transcripts: 1.0) falls below 0.2 for every replica (measured: ~0.05).
    The test set (100) is not a multiple of eval_batch_size (64): padded examples are masked."""
    env = dict(os.environ)
    env.update(
        REPRO_OUTPUT_ROOT=str(tmp_path / "out"),
        JAX_PLATFORMS="cpu",
        WANDB_MODE="disabled",
        PYTHONPATH=str(REPO),
        REPRO_JAX_CACHE_DIR=str(tmp_path.parent / "jax_cache"),
    )
    args = [
        "experiment=jasper/smoke",
        "data.num_test=100",
        "trainer.eval_batch_size=64",
        "trainer.progress=never",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "repro.train", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (summary_path,) = (tmp_path / "out" / "runs" / "jasper" / "smoke").glob("*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "finished"
    assert summary["objective_metric"] == "test_corpus_token_error_rate"
    assert summary["num_replicas"] == 2
    for replica in summary["replicas"]:
        final = replica["final"]
        for key in ("token_error_rate", "token_errors", "ref_tokens", "loss"):
            assert math.isfinite(final[f"test_{key}"]) and math.isfinite(final[f"train_{key}"])
        # Mean reference length of the test set: between 2 and 6 tokens.
        assert 2 <= final["test_ref_tokens"] <= 6
        assert _corpus_rate(final) < 0.2, final
        assert final["test_corpus_token_error_rate"] == pytest.approx(_corpus_rate(final))
        assert final["test_token_error_rate"] < 0.2, final
    records = [json.loads(line) for line in (summary_path.parent / "metrics.jsonl").open()]
    first = records[0]
    assert min(first["test_token_errors"][i] / first["test_ref_tokens"][i] for i in (0, 1)) > 0.5


def test_noise_strength_hook_uses_the_padding_masks() -> None:
    """The per-example gradients of the SGD-noise hook must see each example's paddings
    (x_paddings, y_paddings), like the training step does."""
    from repro.data.sequences import make_synthetic_speech
    from repro.engine.hooks import GradientNoiseStrength, HookContext
    from repro.engine.train_state import ReplicaState

    data = make_synthetic_speech(num_train=8, num_test=2, max_tokens=4, seed=3)
    model = Jasper(
        num_outputs=data.num_classes + 1, blocks=1, repeats=1, filters=(8,), kernel_sizes=(5,)
    )
    program = ReplicaModel(model, CTC, None, 8)  # type: ignore[arg-type]
    arrays = {k: jnp.asarray(v) for k, v in data.train_arrays().items()}
    variables = dict(model.init(jax.random.key(0), arrays["x"][:1], train=False))
    params = variables.pop("params")

    def example_loss(p: object, example: dict) -> jax.Array:
        batch = {k: v[None] for k, v in example.items()}
        out, _ = program.apply(p, variables, batch, train=False)
        return CTC.loss(out, batch)[0]

    # One compiled per-example gradient, called in a Python loop: independent of the hook's vmap.
    example_grad = jax.jit(jax.grad(example_loss))
    grads = [example_grad(params, {k: v[i] for k, v in arrays.items()}) for i in range(8)]
    flat = np.stack([np.concatenate([np.ravel(g) for g in jax.tree.leaves(t)]) for t in grads])
    expected = np.mean(np.sum(flat**2, axis=1)) - np.sum(np.mean(flat, axis=0) ** 2)

    def stacked(tree: object) -> object:
        return jax.tree.map(lambda v: v[None], tree)

    replicas = ReplicaState(
        params=stacked(params),
        model_state=stacked(variables),
        opt_state={},
        key=jax.random.key(0),
        diverged=jnp.zeros(1, bool),
        diverged_step=jnp.zeros(1, jnp.int32),
        sums={},
    )
    ctx = HookContext(0, 0, program, replicas, arrays, jax.random.key(1))
    value = GradientNoiseStrength(num_examples=8, chunk=4)(ctx)["noise_strength"]
    np.testing.assert_allclose(np.asarray(value)[0], expected, rtol=1e-3)
    # Without the paddings the value is different: the check above can fail.
    bare = {"x": arrays["x"], "y": arrays["y"]}
    ctx = HookContext(0, 0, program, replicas, bare, jax.random.key(1))
    no_pad = GradientNoiseStrength(num_examples=8, chunk=4)(ctx)["noise_strength"]
    assert abs(float(np.asarray(no_pad)[0]) - expected) > 1e-2 * abs(expected)

"""NovoGrad study: configs, the memory accounting against a hand count, every verdict rule
flipped on fabricated runs, and a tiny run of each study through the real command line.

Fabricated job dirs (tests/reporting/factory.py) carry each cell's exact config, so they are
matched by identity like real runs. Accuracies are percent here; every cell's replicas are
(learning rate x seed), seed s adds SEED_OFFSET[s] to the curve of its learning rate, so the
pooled seed spread and every interval below are known in closed form.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from repro.figures import novograd2019 as paper
from repro.figures.claims import evaluate_claims
from repro.figures.data import load_paper_data
from repro.figures.identity import composed_config
from repro.figures.novograd2019_memory import measure_cell
from tests.reporting.factory import make_job, replica

REPO = Path(__file__).resolve().parents[2]
SEED_OFFSET = (0.1, -0.1)  # pooled seed sd: 0.1 * sqrt(2)
PEAKED = (60.0, 80.0, 90.0, 95.0, 97.0, 95.0, 80.0, 20.0)  # best at index 4, interior
FLAT = (80.0, 95.0, 96.5, 96.8, 97.0, 96.9, 96.2, 90.0)  # 5 rates within 1 point of 97


def grid(model: str, optimizer: str) -> list[float]:
    return composed_config([f"experiment=novograd2019/{model}_{optimizer}"])["replicas"]["grid"][
        "values"
    ]


def cell_job(
    root: Path, model: str, optimizer: str, batch: int, curve: Sequence[float], spread: float = 1.0
) -> Path:
    """A job of cell <model>_<optimizer>_b<batch>: test = validation = curve[i] + offset."""
    specs = [
        replica(
            seed,
            (curve[i] + spread * offset) / 100,
            lr,
            validation=(curve[i] + spread * offset) / 100,
        )
        for i, lr in enumerate(grid(model, optimizer.replace("_warmup", "")))
        for seed, offset in enumerate(SEED_OFFSET)
    ]
    key = paper.cell_key(model, optimizer, batch)
    name = f"novograd2019/{model}_{optimizer}"
    return make_job(root / key, name, specs, [f"trainer.batch_size={batch}"])


def shifted(curve: Sequence[float], by: float) -> list[float]:
    return [v - by for v in curve]


def scaling_jobs(root: Path, drops: Mapping[str, float], spread: float = 1.0) -> None:
    for opt in paper.OPTIMIZERS:
        cell_job(root, "mlp", opt, 64, PEAKED, spread)
        cell_job(root, "mlp", opt, 8192, shifted(PEAKED, drops.get(opt, 2.0)), spread)


def judged(root: Path) -> dict[str, dict]:
    data = load_paper_data(paper.PAPER, [root])
    return {c["id"]: c for c in evaluate_claims(data, "cmd")}


def test_cells_and_grids_are_the_configs() -> None:
    for model in paper.MODELS:
        for opt in paper.OPTIMIZERS:
            config = composed_config([f"experiment=novograd2019/{model}_{opt}"])
            values = np.asarray(config["replicas"]["grid"]["values"])
            # 8 log-spaced rates over 3.5 decades (half-decades written with 4 digits)
            np.testing.assert_allclose(np.diff(np.log10(values)), 0.5, atol=1e-4)
            assert len(values) == 8 and config["replicas"]["seeds"] == 2
            assert config["optimizer"]["batch_scaling"] == {"rule": "sqrt", "base_batch_size": 64}
            assert config["data"]["n_validation"] == 10_000 and config["trainer"]["epochs"] == 5
            assert config["objective"]["metric"] == "validation_accuracy"
    sweep = (REPO / "conf/sweep/novograd2019.yaml").read_text()
    for opt in paper.OPTIMIZERS:
        assert f"novograd2019/mlp_{opt}" in sweep
    assert "8192,2048,512,64" in sweep
    warm = composed_config(["experiment=novograd2019/mlp_adam_warmup"])["optimizer"]
    assert warm["schedule"] == {"name": "warmup_polynomial", "warmup_epochs": 1.0,
                                "power": 1.0, "end_factor": 1.0}  # fmt: skip


def test_state_bytes_match_a_hand_count() -> None:
    # MLP 784-100-100-10: P = 78,500 + 10,100 + 1,010 = 89,610 float32 in 6 tensors.
    p = 784 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
    adam = measure_cell("mlp", "adam", 512)
    novograd = measure_cell("mlp", "novograd", 512)
    assert adam["num_params"] == novograd["num_params"] == p == 89_610
    assert adam["state_bytes"] == 2 * 4 * p + 4  # mu, nu and an int32 count
    assert novograd["state_bytes"] == 4 * p + 6 * 4 + 4  # mu, one nu per tensor, count
    assert novograd["state_bytes"] / adam["state_bytes"] == pytest.approx(0.50003, abs=1e-5)
    assert novograd["step"]["peak"] < adam["step"]["peak"]
    # The small CNN: 11,330 parameters (Wu et al.'s count) in 8 tensors.
    cnn = measure_cell("cnn", "novograd", 512)
    assert cnn["num_params"] == 11_330 and cnn["state_bytes"] == 4 * 11_330 + 8 * 4 + 4


@pytest.mark.parametrize(
    ("drops", "spread", "verdict"),
    [
        ({}, 1.0, "reproduced"),  # every drop 2 points: difference 0 +- 0.49
        ({"novograd": 4.0}, 1.0, "not reproduced"),  # 2 points more: [+1.51, +2.49]
        ({"novograd": 2.5}, 10.0, "inconclusive"),  # sd x10: [-4.4, +5.4], unresolved
    ],
)
def test_batch_scaling_verdicts(tmp_path: Path, drops, spread, verdict) -> None:
    scaling_jobs(tmp_path, drops, spread)
    claim = judged(tmp_path)["N2-mlp"]
    assert claim["verdict"] == verdict, claim
    half = 2.447 * 0.1 * math.sqrt(2) * spread * math.sqrt(2)  # t(0.975, 6) x SE
    low, high = claim["effect"]["interval"]
    assert high - low == pytest.approx(2 * half, rel=1e-3)
    assert judged(tmp_path)["N2-cnn"]["verdict"] == "not run"


def test_batch_scaling_with_a_rate_at_the_grid_end_is_inconclusive(tmp_path: Path) -> None:
    scaling_jobs(tmp_path, {})
    falling = [97.0, 95.0, 90.0, 80.0, 60.0, 40.0, 20.0, 10.0]  # best at the smallest rate
    cell_job(tmp_path, "mlp", "novograd", 8192, falling)
    claim = judged(tmp_path)["N2-mlp"]
    assert claim["verdict"] == "inconclusive"
    assert "mlp_novograd_b8192" in claim["reason"]


@pytest.mark.parametrize(
    ("novograd", "adam", "verdict"),
    [(FLAT, PEAKED, "reproduced"), (PEAKED, FLAT, "not reproduced")],
)
def test_robustness_counts(tmp_path: Path, novograd, adam, verdict) -> None:
    cell_job(tmp_path, "mlp", "novograd", 512, novograd, spread=0.0)
    cell_job(tmp_path, "mlp", "adam", 512, adam, spread=0.0)
    claim = judged(tmp_path)["N3"]
    assert claim["verdict"] == verdict
    assert {claim["requirements"][0]["value"], claim["requirements"][0]["against"]} == {5.0, 1.0}


def test_robustness_plateau_at_the_grid_end_is_inconclusive(tmp_path: Path) -> None:
    cell_job(tmp_path, "mlp", "novograd", 512, [97.0, *FLAT[1:]], spread=0.0)
    cell_job(tmp_path, "mlp", "adam", 512, PEAKED, spread=0.0)
    claim = judged(tmp_path)["N3"]
    assert claim["verdict"] == "inconclusive" and "at an end" in claim["reason"]


@pytest.mark.parametrize(
    ("novograd_drop", "verdict"), [(0.2, "reproduced"), (2.2, "not reproduced")]
)
def test_warmup_non_inferiority(tmp_path: Path, novograd_drop: float, verdict: str) -> None:
    cell_job(tmp_path, "mlp", "novograd", 512, shifted(PEAKED, novograd_drop))
    cell_job(tmp_path, "mlp", "adam_warmup", 512, PEAKED)
    claim = judged(tmp_path)["N4"]
    assert claim["verdict"] == verdict
    assert claim["effect"]["estimate"] == pytest.approx(-novograd_drop, abs=1e-9)
    # t(0.975, df 2) x pooled sd 0.1414 x sqrt(1/2 + 1/2)
    low, high = claim["effect"]["interval"]
    assert high - low == pytest.approx(2 * 4.303 * 0.1 * math.sqrt(2), rel=1e-3)


@pytest.mark.parametrize(("ratio", "verdict"), [(0.5, "reproduced"), (0.6, "not reproduced")])
def test_memory_claim_reads_memory_json(tmp_path: Path, ratio: float, verdict: str) -> None:
    novograd = {"state_ratio_to_adam": ratio, "state_bytes": 5, "peak_ratio_to_adam": 0.9}
    cells = {"novograd": novograd, "adam": {"state_bytes": 10}}
    tmp_path.mkdir(exist_ok=True)
    assert judged(tmp_path)["N1"]["verdict"] == "not run"
    payload = {"models": {"mlp": cells}, "overrides": []}
    (tmp_path / "memory.json").write_text(json.dumps(payload))
    assert judged(tmp_path)["N1"]["verdict"] == verdict
    payload["overrides"] = ["model.width=8"]
    (tmp_path / "memory.json").write_text(json.dumps(payload))
    assert judged(tmp_path)["N1"]["verdict"] == "not run"


def test_each_study_runs_through_the_command_line(tmp_path: Path) -> None:
    """One tiny job per study (the optimizer cells, the warmup arm; the CNN cells are the same
    cells with another model, composed above), the memory CLI and the figures, as
    scripts/novograd2019.py chains them."""
    env = {**os.environ, "REPRO_OUTPUT_ROOT": str(tmp_path), "JAX_PLATFORMS": "cpu"}
    tiny = [
        "trainer.epochs=1",
        "data.n_train=1024",
        "++data.n_validation=512",
        "data.n_test=500",
        "trainer.progress=never",
    ]
    cells = ("mlp_novograd", "mlp_adam", "mlp_adam_warmup")
    experiments = ",".join(f"novograd2019/{cell}" for cell in cells)
    train = [sys.executable, "-m", "repro.train", "-m", f"experiment={experiments}",
             "trainer.batch_size=512", *tiny]  # fmt: skip
    subprocess.run(train, check=True, cwd=REPO, env=env, capture_output=True)
    sweep = tmp_path / "multirun" / "novograd2019"
    memory = [
        sys.executable,
        "-m",
        "repro.figures.novograd2019_memory",
        "--out",
        str(sweep / "memory.json"),
    ]
    subprocess.run(memory, check=True, cwd=REPO, env=env, capture_output=True)
    out = tmp_path / "figures"
    figures = [sys.executable, "-m", "repro.figures", "novograd2019", "--out-dir", str(out),
               "--overrides", *tiny[:4]]  # fmt: skip
    subprocess.run(figures, check=True, cwd=REPO, env=env, capture_output=True)
    for name in ("batch_scaling.png", "lr_robustness.png", "tuned.md", "memory.md", "claims.json",
                 "README.md", "replicas.csv"):  # fmt: skip
        assert (out / name).is_file(), name
    claims = {c["id"]: c for c in json.loads((out / "claims.json").read_text())["claims"]}
    assert claims["N1"]["verdict"] == "reproduced"
    assert claims["N2-mlp"]["verdict"] == "not run" and claims["N2-cnn"]["verdict"] == "not run"
    assert claims["N3"]["verdict"] in ("reproduced", "not reproduced", "inconclusive")
    assert claims["N4"]["effect"]["n"] == 2
    tuned = (out / "tuned.md").read_text()
    assert "NovoGrad | 512" in tuned and "## cnn\n\nnot run" in tuned
    rows = (out / "replicas.csv").read_text().splitlines()
    assert sum(row.startswith("mlp_adam_warmup_b512,") for row in rows) == 16

"""The Jasper CPU-scale study (repro/figures/jasper2019.py): its cells are the configs of the
pre-registration, and every verdict rule flips on fabricated runs.

Fabricated job dirs (tests/reporting/factory.py) carry each cell's exact config, so they are
matched by identity like real runs; their final test / validation CER and WER are set here
(percent below, fractions in the files). Seed s adds OFFSET[s] points to every value of its
replica, so intervals are known: with offsets (1, -1, 0.5, -0.5) the sd over seeds is 0.913
and the 95 % t half-width of a mean of 4 is 1.45 points; paired differences of two cells are
exact (the offsets cancel).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from repro.figures import jasper2019 as paper
from repro.figures.claims import evaluate_claims
from repro.figures.data import load_paper_data
from repro.figures.generate import generate
from repro.figures.identity import composed_config
from tests.reporting.factory import make_job, replica

OFFSET = (1.0, -1.0, 0.5, -0.5)
GRIDS = {"mini_novograd": (0.01, 0.02, 0.04), "mini_momentum": (0.01, 0.03, 0.1)}
# Test CER per cell (grid cells: per learning rate); validation = test - 1, WER = 2 x CER.
GOOD = {
    "mini_novograd": (60.0, 40.0, 45.0),
    "mini_momentum": (70.0, 41.0, 50.0),
    "deep_block": 40.0,
    "deep_none": 80.0,
    "deep_dense": 39.0,
}


def _job(root: Path, key: str, cer: float | tuple[float, ...]) -> Path:
    lrs = GRIDS.get(key, (None,))
    values = cer if isinstance(cer, tuple) else (cer,)
    rows = [(s, lr, v + o) for lr, v in zip(lrs, values, strict=True) for s, o in enumerate(OFFSET)]
    specs = [replica(seed, 0.5, lr) for seed, lr, _ in rows]
    job = make_job(root / key, f"jasper2019/{key}", specs)
    summary = json.loads((job / "summary.json").read_text())
    for entry, (_, _, value) in zip(summary["replicas"], rows, strict=True):
        entry["final"].update(
            test_cer=value / 100, validation_cer=(value - 1) / 100, test_wer=2 * value / 100
        )
    (job / "summary.json").write_text(json.dumps(summary))
    lines = [json.loads(x) for x in (job / "metrics.jsonl").read_text().splitlines()]
    with (job / "metrics.jsonl").open("w") as handle:
        for record in lines:
            share = record["epoch"] / len(lines)
            record["test_cer"] = [(100 - (100 - v) * share) / 100 for _, _, v in rows]
            record["test_wer"] = [min(1.0, 2 * c) for c in record["test_cer"]]
            handle.write(json.dumps(record) + "\n")
    return job


def verdicts(root: Path, cells: Mapping[str, float | tuple[float, ...]]) -> dict[str, dict]:
    for key, cer in cells.items():
        _job(root, key, cer)
    data = load_paper_data(paper.PAPER, [root])
    return {entry["id"]: entry for entry in evaluate_claims(data, "python -m repro.figures")}


def test_cells_are_the_preregistered_configs() -> None:
    for key, lrs in GRIDS.items():
        config = composed_config([f"experiment=jasper2019/{key}"])
        assert config["replicas"]["grid"]["key"] == "optimizer.learning_rate"
        assert tuple(config["replicas"]["grid"]["values"]) == lrs
    for key in ("mini_novograd", "mini_momentum", "deep_block", "deep_none", "deep_dense"):
        config = composed_config([f"experiment=jasper2019/{key}"])
        assert config["task"] == "asr" and config["replicas"]["seeds"] == 4
        assert (config["trainer"]["epochs"], config["trainer"]["batch_size"]) == (6, 8)
        assert config["optimizer"]["schedule"]["name"] == "warmup_polynomial"
        assert config["optimizer"]["schedule"]["warmup_epochs"] == 0.0
        deep = key.startswith("deep")
        assert config["model"]["blocks"] == (10 if deep else 5)
        assert config["model"]["residual"] == (key.split("_")[1] if deep else "block")
        if key != "mini_momentum":
            opt = config["optimizer"]
            assert (opt["b1"], opt["b2"], opt["weight_decay"]) == (0.95, 0.98, 0.001)
            assert opt["_target_"] == "repro.optim.novograd" and opt["learning_rate"] == 0.02
    momentum = composed_config(["experiment=jasper2019/mini_momentum"])["optimizer"]
    assert momentum["_target_"] == "repro.optim.sgd.sgd_weight_decay"
    assert (momentum["momentum"], momentum["weight_decay"]) == (0.9, 0.001)


def test_every_claim_reproduced_on_good_runs(tmp_path: Path) -> None:
    found = verdicts(tmp_path, GOOD)
    assert {k: v["verdict"] for k, v in found.items()} == dict.fromkeys(
        ("J1", "J2", "J3", "J4"), "reproduced"
    )
    j1 = found["J1"]["effect"]
    assert j1["estimate"] == pytest.approx(40.0) and j1["n"] == 4
    assert j1["interval"] == pytest.approx([40.0 - 1.4529, 40.0 + 1.4529], abs=1e-3)
    assert found["J4"]["effect"]["estimate"] == pytest.approx(-1.0)
    assert "lr 0.02" in found["J4"]["finding"] and "lr 0.03" in found["J4"]["finding"]
    assert found["J2"]["effect"]["estimate"] == pytest.approx(40.0)


@pytest.mark.parametrize(
    ("changes", "claim", "verdict"),
    [
        ({"mini_novograd": (70.0, 60.0, 65.0)}, "J1", "not reproduced"),
        ({"mini_novograd": (70.0, 49.5, 65.0)}, "J1", "inconclusive"),  # 49.5 +- 1.45
        ({"deep_none": 43.0}, "J2", "not reproduced"),  # measurably worse, by < 5 points
        ({"deep_block": 70.0, "deep_none": 90.0}, "J2", "inconclusive"),  # block stays high
        ({"deep_dense": 43.0}, "J3", "not reproduced"),  # dense 3 points worse
        ({"deep_block": 70.0}, "J3", "inconclusive"),
        ({"mini_novograd": (70.0, 45.0, 50.0)}, "J4", "not reproduced"),  # 4 points worse
        ({"mini_momentum": (41.0, 50.0, 60.0)}, "J4", "inconclusive"),  # tuned at the grid's end
    ],
)
def test_each_rule_flips(tmp_path: Path, changes: dict, claim: str, verdict: str) -> None:
    assert verdicts(tmp_path, {**GOOD, **changes})[claim]["verdict"] == verdict


def test_a_cell_without_runs_is_not_run(tmp_path: Path) -> None:
    cells = {k: v for k, v in GOOD.items() if k != "mini_momentum"}
    found = verdicts(tmp_path, cells)
    assert found["J4"]["verdict"] == "not run"
    assert found["J1"]["verdict"] == "reproduced"


def test_outputs_are_written(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for key, cer in GOOD.items():
        _job(runs, key, cer)
    out = tmp_path / "figures"
    generate(paper.PAPER, [runs], out, "python -m repro.figures jasper2019")
    names = {p.name for p in out.iterdir()}
    for stem in ("curves", "ablation", "lr_grids"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
    results = (out / "results.md").read_text()
    assert "5x3 NovoGrad | 0.02 | 40.0 +- 0.9 | 80.0 +- 1.8" in results
    claims = json.loads((out / "claims.json").read_text())
    cells = {c["id"]: c for c in claims["claims"]}
    assert cells["J1"]["verdict"] == "reproduced"


def test_deep_cells_run_at_the_modules_rate() -> None:
    for key in ("deep_block", "deep_none", "deep_dense"):
        config = composed_config([f"experiment=jasper2019/{key}"])
        assert config["optimizer"]["learning_rate"] == paper.DEEP_LR

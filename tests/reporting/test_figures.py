"""repro.figures: files produced, tables in percent, README, default paths, CLI, W&B path."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from repro.figures import PAPERS, get_paper
from repro.figures import main as figures_main
from repro.figures.core import evaluate_claims, load_paper_data
from repro.figures.wandb_source import fetch_wandb_runs

from .factory import RunFactory, make_job, replica

REPO = Path(__file__).resolve().parents[2]
P = "neelakantan2015/"


def _demo(no_noise: list[float], noise: list[float]) -> list[dict]:
    """The demo's replicas: grid-major over noise.eta in {0.0, 0.3}, seeds 0, 1, ..."""
    return [
        replica(seed, accuracy, hparams={"noise.eta": eta})
        for eta, accuracies in ((0.0, no_noise), (0.3, noise))
        for seed, accuracy in enumerate(accuracies)
    ]


def _figures(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "repro.figures", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=180,
        env={
            "PYTHONPATH": str(REPO),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "MPLBACKEND": "Agg",
            **(env or {}),
        },
    )


def _assert_figure_files(out: Path, stems: list[str]) -> None:
    for stem in stems:
        png, pdf = out / f"{stem}.png", out / f"{stem}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000


def test_registry_lists_modules_and_rejects_unknown() -> None:
    assert {"demo", "neelakantan2015"} <= set(PAPERS)
    for name in PAPERS:
        assert get_paper(name).name == name
    with pytest.raises(ValueError, match=r"paper must be one of \[.*'demo'.*\], got 'nope'"):
        get_paper("nope")


def test_neelakantan_cli_tables_claims_figures_readme(runs: RunFactory, tmp_path: Path) -> None:
    # Two Table 1 rows ran (2 seeds x 2 lrs each); everything else must read "not run".
    runs.cell(P + "simple_clip10", [95.0, 30.0, 93.0, 32.0])  # best 95.0, mean 62.5
    runs.cell(P + "simple_clip10_noise", [97.0, 33.0, 96.0, 34.0])  # best 97.0, mean 65.0
    runs.cell(P + "zero_clip10", [11.35, 11.35, 11.35, 11.35])
    runs.cell(P + "zero_clip10_noise", [90.0, 40.0, 91.0, 42.0], wall_time_s=321.0)
    runs.cell(P + "he_clip10", [97.0, 90.0, 96.0, 91.0], finished=False)
    out = tmp_path / "figs"
    result = _figures(
        "neelakantan2015", "--runs", str(runs.root), "--out-dir", str(out), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "4 finished job(s), 16 replica(s), 1 unfinished job(s) not counted" in result.stdout

    _assert_figure_files(out, ["curves", "ablations"])
    tables = (out / "tables.md").read_text()
    row = (
        "| simple init, clip 10 | 95.7 / 51.6 | 95.0 / 62.5 (n=4) | 97.0 / 53.6 | 97.0 / 65.0 (n=4)"
    )
    assert row + " |" in tables
    assert (
        "| zero init, clip 10 | 11.4 / 10.1 | 11.3 / 11.3 (n=4) | 94.5 / 49.7 | 91.0 / 65.8 (n=4) |"
        in tables
    )
    assert (
        "| good init (He et al. 2015), clip 10 | 97.4 / 91.7 | not run | 97.2 / 91.7 | not run |"
        in tables
    )
    # Means split by learning rate: simple_clip10 at lr 0.1 -> (95 + 93) / 2 = 94.0
    assert f"| {P}simple_clip10 | 31.0 (n=2) | 94.0 (n=2) |" in tables

    payload = json.loads((out / "claims.json").read_text())
    claims = {c["id"]: c for c in payload["claims"]}
    assert payload["paper"] == "neelakantan2015"
    assert claims["1"]["verdict"] == "reproduced"
    assert claims["2c"]["verdict"] == "reproduced"
    assert claims["3b"]["verdict"] == "not run"  # he_clip10 unfinished, noise cell absent
    for claim in claims.values():
        assert claim["verdict"] in ("reproduced", "not reproduced", "not run")
        assert claim["command"].startswith("python -m repro.figures neelakantan2015 --runs ")
        assert claim["rule"] and claim["paper"] is not None
    assert claims["1"]["run_commands"] == [
        f"python -m repro.train experiment={P}zero_clip10",
        f"python -m repro.train experiment={P}zero_clip10_noise",
    ]

    readme = (out / "README.md").read_text()
    assert "python -m repro.figures neelakantan2015 --runs" in readme
    assert "## Runs used (4 finished jobs, 16 replicas)" in readme
    assert "| abc1234 | 321 |" in readme  # git commit and wall time of the zero-noise job
    assert "## Unfinished jobs (1, not counted)" in readme and f"{P}he_clip10" in readme


def test_curves_are_per_epoch_means_in_percent(runs: RunFactory) -> None:
    runs.cell(P + "simple_clip10", [90.0, 30.0, 70.0, 50.0])  # epochs=3, linear ramp
    data = load_paper_data(get_paper("neelakantan2015"), [runs.root])
    curves = data.curves("simple_clip10")
    assert len(curves) == 4 * 3
    lr01 = curves[curves["optimizer.learning_rate"] == 0.1].groupby("epoch")["value"].mean()
    # lr 0.1 replicas end at 90 and 70 -> mean 80; epoch 1 is a third of that.
    assert lr01.to_dict() == pytest.approx({1: 80 / 3, 2: 160 / 3, 3: 80.0})


def test_demo_default_paths_from_output_root(runs: RunFactory, tmp_path: Path) -> None:
    runs.multirun(
        "demo",
        [dict(name="demo", replicas=_demo([0.10, 0.11, 0.12], [0.81, 0.92, 0.93]))],
    )
    work = tmp_path / "work"
    work.mkdir()
    result = _figures("demo", cwd=work, env={"REPRO_OUTPUT_ROOT": str(runs.root)})
    assert result.returncode == 0, result.stderr
    out = work / "paper_figures" / "demo"
    _assert_figure_files(out, ["curves"])
    learns, claim = json.loads((out / "claims.json").read_text())["claims"]
    assert (learns["id"], learns["verdict"]) == ("D1", "reproduced")
    assert learns["ours"]["best"] == {"no_noise": 12.0, "noise": 93.0}
    assert (claim["id"], claim["verdict"]) == ("D2", "reproduced")
    assert claim["ours"]["paired"]["mean_diff"] == pytest.approx((71 + 81 + 81) / 3)
    assert f"`{runs.root / 'multirun' / 'demo'}`" in (out / "README.md").read_text()


def test_demo_claim_flips_when_pairing_removes_the_gain(
    runs: RunFactory, tmp_path: Path, capsys
) -> None:
    # Unpaired, noise looks much better (mean 92.0 vs 80.75: seed 3's no-noise replica failed
    # and has no noise partner); paired on seed it is 3 points worse: not reproduced.
    runs.job("demo", _demo([0.95, 0.95, 0.95, 0.38], [0.92, 0.92, 0.92]))
    out = tmp_path / "demo"
    assert figures_main(["demo", "--runs", str(runs.root), "--out-dir", str(out)]) == 0
    assert "claim D2: not reproduced" in capsys.readouterr().out
    claim = json.loads((out / "claims.json").read_text())["claims"][1]
    assert claim["ours"]["noise"]["mean"] > claim["ours"]["no_noise"]["mean"]
    assert claim["ours"]["paired"]["n_pairs"] == 3
    assert claim["ours"]["paired"]["mean_diff"] == pytest.approx(-3.0)
    assert claim["verdict"] == "not reproduced"
    assert claim["cells"] == {"no_noise": "demo[noise.eta=0.0]", "noise": "demo[noise.eta=0.3]"}
    tables = (out / "tables.md").read_text()
    assert "| simple init, clip 10 | - | 95.0 / 80.8 (n=4) | - | 92.0 / 92.0 (n=3) |" in tables


def test_demo_learning_check_flips_at_chance(runs: RunFactory) -> None:
    # Both arms at chance: nothing learned (D1 fails) and noise rescued nothing (D2 fails).
    runs.job("demo", _demo([0.10, 0.10, 0.102], [0.10, 0.101, 0.10]))
    data = load_paper_data(get_paper("demo"), [runs.root])
    learns, rescues = evaluate_claims(data, "cmd")
    assert learns["verdict"] == "not reproduced"
    assert learns["ours"]["best"] == {"no_noise": pytest.approx(10.2), "noise": pytest.approx(10.1)}
    assert rescues["verdict"] == "not reproduced"


def test_no_runs_still_writes_every_file_as_not_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("REPRO_OUTPUT_ROOT", str(tmp_path / "none"))
    out = tmp_path / "figs"
    assert figures_main(["demo", "--out-dir", str(out)]) == 0
    claims = json.loads((out / "claims.json").read_text())["claims"]
    assert [c["verdict"] for c in claims] == ["not run", "not run"]
    assert "not run" in (out / "tables.md").read_text()
    assert "No finished runs found" in (out / "README.md").read_text()
    _assert_figure_files(out, ["curves"])


def test_cli_errors(tmp_path: Path, capsys) -> None:
    assert figures_main(["nope"]) == 2
    assert "paper must be one of" in capsys.readouterr().err
    assert figures_main(["demo", "--runs", str(tmp_path / "absent")]) == 2
    assert "run path does not exist" in capsys.readouterr().err
    assert figures_main(["--list"]) == 0
    assert "neelakantan2015:" in capsys.readouterr().out


class _FakeFile:
    def __init__(self, name: str, source: Path) -> None:
        self.name, self.source = name, source

    def download(self, root: str, replace: bool) -> None:
        if not (self.source / self.name).is_file():
            raise ValueError(f"no file {self.name}")
        target = Path(root) / self.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((self.source / self.name).read_bytes())


class _FakeRun:
    def __init__(
        self,
        run_id: str,
        source: Path,
        *,
        state: str = "finished",
        summary=None,
        history=(),
        config=None,
    ) -> None:
        self.id, self.source, self.state = run_id, source, state
        self.summary, self.history, self.config = summary or {}, list(history), config or {}

    def file(self, name: str) -> _FakeFile:
        return _FakeFile(name, self.source)

    def scan_history(self):
        return iter(self.history)


def test_wandb_runs_materialise_as_job_dirs(runs: RunFactory, tmp_path: Path) -> None:
    # Run a: the engine's files were saved with the run. Run b: only what WandbLogger logs
    # (config + per-replica history "<metric>/r<i>"). Run c: still running.
    saved = make_job(tmp_path / "src_a", P + "he_clip10", [replica(0, 0.9), replica(1, 0.8)])
    empty = tmp_path / "src_b"
    empty.mkdir()
    config_b = {
        "name": P + "he_clip10_noise",
        "seed": 10,
        "replicas": {"seeds": 2, "grid": {"key": "optimizer.learning_rate", "values": [0.1, 0.01]}},
        "trainer": {"epochs": 2},
    }
    history_b = [
        {"_step": 5, "epoch": 1, "test_accuracy/mean": 0.5, "diverged/r0": 0.0}
        | {f"test_accuracy/r{i}": 0.5 for i in range(4)},
        {"_step": 9, "epoch": 2, "wall_time_s": 3.0}
        | {f"test_accuracy/r{i}": v for i, v in enumerate([0.9, 0.7, 0.6, 0.4])}
        | {f"diverged/r{i}": float(i == 3) for i in range(4)},
        {"_step": 10, "system/cpu": 3.0},
    ]
    api = SimpleNamespace(
        runs=lambda project: [
            _FakeRun("a", saved),
            _FakeRun("b", empty, summary={"_runtime": 42.0}, history=history_b, config=config_b),
            _FakeRun("c", empty, state="running", history=history_b, config=config_b),
        ]
    )
    dest = fetch_wandb_runs("me/proj", tmp_path / "cache", api=api)
    data = load_paper_data(get_paper("neelakantan2015"), [dest])
    assert sorted(job.name for job in data.jobs) == [P + "he_clip10", P + "he_clip10_noise"]
    assert [job.path.name for job in data.unfinished] == ["c"]
    assert data.stats("he_clip10").mean == pytest.approx(85.0)
    rebuilt = data.cell("he_clip10_noise")
    # Engine layout, grid-major: replica i has lr values[i // 2] and seed 10 + i % 2.
    assert rebuilt["seed"].tolist() == [10, 11, 10, 11]
    assert rebuilt["optimizer.learning_rate"].tolist() == [0.1, 0.1, 0.01, 0.01]
    assert rebuilt["final.test_accuracy"].tolist() == [0.9, 0.7, 0.6, 0.4]
    assert rebuilt["best.epoch"].tolist() == [2, 2, 2, 1]  # replica 3 peaked at epoch 1
    assert rebuilt["diverged"].tolist() == [False, False, False, True]
    assert rebuilt["wall_time_s"].tolist() == [42.0] * 4
    assert data.curves("he_clip10_noise").groupby("epoch")["value"].mean().to_dict() == (
        pytest.approx({1: 50.0, 2: 65.0})
    )


def test_paper_script_dry_run_prints_the_hydra_multirun(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    script = REPO / "scripts" / "neelakantan2015.py"
    argv = [
        str(script),
        "--dry-run",
        "--cells",
        "zero_clip10,zero_clip10_noise",
        "trainer.epochs=1",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(script), run_name="__main__")
    assert exit_info.value.code == 0
    stdout = capsys.readouterr().out
    assert (
        f"-m repro.train -m experiment={P}zero_clip10,{P}zero_clip10_noise "
        "sweep_name=neelakantan2015 trainer.epochs=1" in stdout
    )
    assert "$ python -m repro.figures neelakantan2015" in stdout
    assert not (tmp_path / "paper_figures").exists()  # dry run: nothing written

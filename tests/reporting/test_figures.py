"""repro.figures: files produced, tables in percent, README, default paths, CLI, bad input."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from repro.aggregate import load_runs
from repro.figures import PAPERS, get_paper
from repro.figures import main as figures_main
from repro.figures.claims import evaluate_claims
from repro.figures.data import load_paper_data

from .commands import REPO, run_module
from .factory import RunFactory, replica

P = "neelakantan2015/"


def _demo(no_noise: list[float], noise: list[float]) -> list[dict]:
    """The demo's replicas: grid-major over noise.eta in {0.0, 0.3}, seeds 0, 1, ..."""
    return [
        replica(seed, accuracy, hparams={"noise.eta": eta})
        for eta, accuracies in ((0.0, no_noise), (0.3, noise))
        for seed, accuracy in enumerate(accuracies)
    ]


def _figures(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_module("repro.figures", *args, cwd=cwd, env=env, timeout=180)


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


def test_every_cell_composes_to_a_config_named_like_the_cell() -> None:
    # A cell whose experiment is renamed, or whose name differs from the config's `name`,
    # could never match a run: every claim on it would silently stay "not run".
    from repro.figures.identity import expected_config

    for paper in PAPERS:
        for cell in get_paper(paper).cells:
            assert expected_config(cell)["name"] == cell.name, (paper, cell.key)


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
    assert (
        "neelakantan2015: 4 of 18 cell(s) have runs of their config; 16 replica(s) used, "
        "0 run(s) of another config and 1 unfinished job(s) not used" in result.stdout
    )
    assert f"  cell he_clip10 ({P}he_clip10): not run: no finished run of its config" in (
        result.stdout
    )

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
    assert payload["paper"] == "neelakantan2015" and "arXiv:1511.06807" in payload["citation"]
    # 1: lift 54.4 [9.0, 99.8] >= 30, paper +39.6 inside; 2c: +2.5 [1.6, 3.4], paper +2.0 inside
    assert {k: c["verdict"] for k, c in claims.items()} == {
        "1": "reproduced",
        "2a": "not run",
        "2b": "not run",
        "2c": "reproduced",
        "3a": "not run",
        "3b": "not run",  # he_clip10 unfinished, its noise cell absent
        "4": "not run",
        "5": "not run",
    }
    assert claims["2c"]["effect"]["interval"] == pytest.approx([1.581, 3.419], abs=1e-3)
    assert claims["2c"]["paper"]["source"] == "Table 1, row 3"
    command = claims["1"]["command"]
    assert command == (
        f"python -m repro.figures neelakantan2015 --runs {runs.root} --out-dir {out}"
    )
    assert claims["1"]["run_commands"] == [
        f"python -m repro.train experiment={P}zero_clip10",
        f"python -m repro.train experiment={P}zero_clip10_noise",
    ]
    csv = (out / "replicas.csv").read_text().splitlines()
    assert csv[0].startswith("cell,job,name,replica,seed,optimizer.learning_rate")
    assert len(csv) == 1 + 16

    readme = (out / "README.md").read_text()
    assert command in readme
    assert "## Runs used (4 finished jobs, 16 replicas)" in readme
    assert "| abc1234 | 321 |" in readme  # git commit and wall time of the zero-noise job
    assert "| 2c | simple init, clip 10 | reproduced | +2.5 [+1.6, +3.4] points (n=4) | " in readme
    assert "## Unfinished jobs (1, not used)" in readme and f"{P}he_clip10" in readme


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
    assert learns["requirements"][0]["value"] == pytest.approx(93.0)
    # differences 71, 81, 81: mean 77.7, 95 % t-interval 77.7 +- 4.303 * 5.774 / sqrt(3)
    assert (claim["id"], claim["verdict"]) == ("D2", "reproduced")
    assert claim["effect"]["estimate"] == pytest.approx((71 + 81 + 81) / 3)
    assert claim["effect"]["interval"] == pytest.approx([63.32, 92.01], abs=0.01)
    # The command spells out the run path it read, though it came from REPRO_OUTPUT_ROOT.
    sweep = runs.root / "multirun" / "demo"
    assert claim["command"] == f"python -m repro.figures demo --runs {sweep}"
    assert f"`{sweep}`" in (out / "README.md").read_text()


def test_regenerate_command_works_verbatim(runs: RunFactory, tmp_path: Path) -> None:
    runs.multirun("demo", [dict(name="demo", replicas=_demo([0.10, 0.11], [0.81, 0.92]))])
    work = tmp_path / "work"
    work.mkdir()
    first = _figures("demo", cwd=work, env={"REPRO_OUTPUT_ROOT": str(runs.root)})
    assert first.returncode == 0, first.stderr
    claims = (work / "paper_figures" / "demo" / "claims.json").read_text()
    command = json.loads(claims)["command"].split()
    assert command[:3] == ["python", "-m", "repro.figures"]
    again = _figures(*command[3:], cwd=work)  # no environment variable this time
    assert again.returncode == 0, again.stderr
    assert (work / "paper_figures" / "demo" / "claims.json").read_text() == claims


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
    assert claim["effect"]["n"] == 3
    assert claim["effect"]["estimate"] == pytest.approx(-3.0)
    assert claim["verdict"] == "not reproduced"
    assert claim["cells"] == {"noise": "demo[noise.eta=0.3]", "no_noise": "demo[noise.eta=0.0]"}
    tables = (out / "tables.md").read_text()
    assert "| simple init, clip 10 | - | 95.0 / 80.8 (n=4) | - | 92.0 / 92.0 (n=3) |" in tables


def test_demo_learning_check_flips_at_chance(runs: RunFactory) -> None:
    # Both arms at chance: nothing learned (D1 fails) and noise rescued nothing (D2 fails).
    runs.job("demo", _demo([0.10, 0.10, 0.102], [0.10, 0.101, 0.10]))
    data = load_paper_data(get_paper("demo"), [runs.root])
    learns, rescues = evaluate_claims(data, "cmd")
    assert learns["verdict"] == "not reproduced"
    assert learns["requirements"][0]["value"] == pytest.approx(10.2)
    assert rescues["verdict"] == "not reproduced"


def test_no_runs_writes_every_file_as_not_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("REPRO_OUTPUT_ROOT", str(tmp_path / "none"))
    out = tmp_path / "figs"
    assert figures_main(["demo", "--out-dir", str(out)]) == 0
    claims = json.loads((out / "claims.json").read_text())["claims"]
    assert [c["verdict"] for c in claims] == ["not run", "not run"]
    assert "not run" in (out / "tables.md").read_text()
    assert "No finished run of any cell's config" in (out / "README.md").read_text()
    _assert_figure_files(out, ["curves"])


def test_no_matching_runs_never_overwrite_existing_outputs(
    runs: RunFactory, tmp_path: Path, capsys
) -> None:
    # Committed outputs exist; the runs found are of another config (a smoke run): nothing
    # is rewritten, and the user learns which cell has which runs and how they differ.
    out = tmp_path / "figs"
    out.mkdir()
    (out / "claims.json").write_text("committed")
    runs.job("demo", _demo([0.1], [0.9]), overrides=["trainer.epochs=2"])
    assert figures_main(["demo", "--runs", str(runs.root), "--out-dir", str(out)]) == 2
    captured = capsys.readouterr()
    assert "  cell no_noise (demo[noise.eta=0.0]): not run: no finished run of its config" in (
        captured.out
    )
    assert "(trainer.epochs: 40 -> 2)" in captured.out
    assert "is left as it is" in captured.err
    assert (out / "claims.json").read_text() == "committed"
    assert sorted(p.name for p in out.iterdir()) == ["claims.json"]
    assert (
        figures_main(["demo", "--runs", str(runs.root), "--out-dir", str(out), "--allow-empty"])
        == 0
    )
    assert "not run" in (out / "claims.json").read_text()


def test_partial_sweep_marks_missing_cells_and_never_judges_mismatched_ones(
    runs: RunFactory, tmp_path: Path, capsys
) -> None:
    runs.cell(P + "zero_clip10", [11.35] * 4)
    runs.cell(P + "zero_clip10_noise", [90.0, 40.0, 91.0, 42.0])
    runs.cell(P + "he_clip10", [97.0, 90.0, 96.0, 91.0], overrides=["trainer.batch_size=64"])
    runs.cell(P + "he_clip10_noise", [97.0, 90.0, 96.0, 91.0])
    runs.cell(P + "simple_clip10", [95.0, 30.0, 93.0, 32.0], finished=False)
    out = tmp_path / "figs"
    assert figures_main(["neelakantan2015", "--runs", str(runs.root), "--out-dir", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "3 of 18 cell(s) have runs of their config" in stdout
    assert "1 run(s) of another config and 1 unfinished job(s) not used" in stdout
    assert "(trainer.batch_size: 128 -> 64)" in stdout
    claims = {c["id"]: c for c in json.loads((out / "claims.json").read_text())["claims"]}
    assert claims["1"]["verdict"] == "reproduced"
    assert claims["3b"]["verdict"] == "not run" and claims["3b"]["effect"] is None
    assert "1 run(s) of another config, not used" in claims["3b"]["reason"]
    assert "claim 3b: not run" in stdout
    readme = (out / "README.md").read_text()
    assert "## Runs of another config (1, not used)" in readme
    assert "trainer.batch_size: 128 -> 64" in readme


def test_cli_errors(tmp_path: Path, capsys) -> None:
    assert figures_main(["nope"]) == 2
    assert "paper must be one of" in capsys.readouterr().err
    assert figures_main(["demo", "--runs", str(tmp_path / "absent")]) == 2
    assert "--runs must be existing dirs" in capsys.readouterr().err
    assert figures_main(["demo", "--overrides", "trainer.nope=1"]) == 2
    assert "do not compose a config of conf/" in capsys.readouterr().err
    assert figures_main(["--list"]) == 0
    assert "neelakantan2015:" in capsys.readouterr().out


def _log_offline_wandb_run(directory: Path, config: dict, records: list[dict], exit_code=0):
    """A run logged by the project's WandbLogger with wandb itself, WANDB_MODE=offline."""
    from repro.loggers import WandbLogger

    spec = {"name": "wandb", "mode": "offline", "dir": str(directory), "project": "t"}
    logger = WandbLogger(spec, config, directory, run_name="test")
    for step, record in enumerate(records, start=1):
        logger.log_epoch(record, step=step)
    logger.log_summary({"objective": 0.5, "aggregate": {}})
    logger.finish(exit_code=exit_code)


def test_wandb_offline_runs_written_by_wandb_read_back(tmp_path: Path, monkeypatch) -> None:
    # Two runs logged by wandb itself (offline, no network): a classification cell of
    # Neelakantan et al. (4 replicas: 2 seeds x 2 learning rates) and an mse run whose best
    # epoch must be chosen by the task's default objective (min test_loss), not by accuracy.
    from repro.figures.identity import composed_config
    from repro.figures.wandb_source import read_wandb_offline

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    overrides = ("replicas.seeds=2",)
    config = composed_config([f"experiment={P}he_clip10_noise", *overrides])
    records = [
        {"epoch": 1, "test_accuracy": [0.5] * 4, "test_loss": [1.0] * 4, "diverged": [False] * 4},
        {
            "epoch": 2,
            "test_accuracy": [0.9, 0.7, 0.6, 0.4],
            "test_loss": [0.3, 0.5, 0.6, 2.0],
            "diverged": [False, False, False, True],
        },
    ]
    _log_offline_wandb_run(tmp_path / "a", config, records)
    mse = composed_config(["experiment=demo", "task=mse", "replicas.seeds=1"])
    mse_records = [
        {"epoch": 1, "test_loss": [0.2, 0.9]},
        {"epoch": 2, "test_loss": [0.4, 0.5]},
    ]
    _log_offline_wandb_run(tmp_path / "b", mse, mse_records)
    dest = read_wandb_offline([tmp_path / "a", tmp_path / "b"], tmp_path / "cache")

    data = load_paper_data(get_paper("neelakantan2015"), [dest], overrides)
    rebuilt = data.cell("he_clip10_noise")
    # Engine layout, grid-major: replica i has lr values[i // 2] and seed i % 2.
    assert rebuilt["seed"].tolist() == [0, 1, 0, 1]
    assert rebuilt["optimizer.learning_rate"].tolist() == [0.1, 0.1, 0.01, 0.01]
    assert rebuilt["final.test_accuracy"].tolist() == [0.9, 0.7, 0.6, 0.4]
    assert rebuilt["best.epoch"].tolist() == [2, 2, 2, 1]  # replica 3 peaked at epoch 1
    assert rebuilt["diverged"].tolist() == [False, False, False, True]
    assert data.curves("he_clip10_noise").groupby("epoch")["value"].mean().to_dict() == (
        pytest.approx({1: 50.0, 2: 65.0})
    )
    [mse_job] = [job for job in load_runs([dest]).finished if job.name == "demo"]
    best = [replica["best"] for replica in mse_job.summary["replicas"]]
    assert best == [{"test_loss": 0.2, "epoch": 1}, {"test_loss": 0.5, "epoch": 2}]

    # A log cut mid-record (a crashed run): read up to the tear, an unfinished job, no error.
    [log] = (tmp_path / "a").rglob("run-*.wandb")
    log.write_bytes(log.read_bytes()[: log.stat().st_size - 5])
    torn = read_wandb_offline([tmp_path / "a"], tmp_path / "torn")
    assert [job.name for job in load_runs([torn]).unfinished] == [P + "he_clip10_noise"]


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
    # A smoke run's figures go to a scratch dir, told the overrides the runs were made with.
    output_root = os.environ.get("REPRO_OUTPUT_ROOT", "outputs")
    assert (
        f"$ python -m repro.figures neelakantan2015 --out-dir {output_root}/figures/"
        "neelakantan2015 --overrides trainer.epochs=1" in stdout
    )
    assert not (tmp_path / "paper_figures").exists()  # dry run: nothing written


def test_paper_script_rejects_unknown_cells(capsys) -> None:
    from repro.figures.sweep import run_paper

    assert run_paper("neelakantan2015", ["--dry-run", "--cells", "zero_clip10,nope"]) == 2
    assert "--cells must be among ['simple_noclip'" in capsys.readouterr().err

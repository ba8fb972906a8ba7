"""The protocol-exploration README is generated from its committed replicas.csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from repro.figures.exploration import Exploration, main, readme_text
from repro.figures.neelakantan2015_protocol import EXPLORATION

REPO = Path(__file__).resolve().parents[2]


def test_committed_readme_is_the_generated_one() -> None:
    directory = REPO / EXPLORATION.directory
    frame = pd.read_csv(directory / "replicas.csv")
    assert (directory / "README.md").read_text() == readme_text(EXPLORATION, frame)


def test_readme_lists_every_commit_and_the_total_wall_time(tmp_path: Path) -> None:
    rows = [
        {
            "job": f"j{job}",
            "name": "x",
            "replica": r,
            "seed": r,
            "optimizer.learning_rate": 0.1,
            "trainer.batch_size": batch,
            "final.test_accuracy": 0.5 + 0.1 * r,
            "diverged": False,
            "wall_time_s": wall,
            "git_commit": commit,
        }
        for job, (batch, wall, commit) in enumerate([(64, 60.0, "a" * 40), (128, 120.0, "b" * 40)])
        for r in range(2)
    ]
    (tmp_path / "replicas.csv").write_text(pd.DataFrame(rows).to_csv(index=False))
    exploration = Exploration(
        tmp_path, "T", "intro", "cmd", ("name", "trainer.batch_size"), "final.test_accuracy", "f"
    )
    text = readme_text(exploration, pd.read_csv(tmp_path / "replicas.csv"))
    assert "## Runs (2 jobs, 4 replicas, 3.0 min of wall time in total)" in text
    assert f"The runs came from 2 commit(s): `{'a' * 12}`, `{'b' * 12}`." in text
    assert "| x | 64 | 2 | 0.55 |" in text  # n, mean of 0.5 and 0.6
    assert main(["nope"]) == 2

"""Provenance: a tree with untracked files is dirty, for the runs and for the figures."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import repro.run_metadata as run_metadata
from repro.figures import readme


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return tmp_path


def test_untracked_file_makes_the_run_metadata_dirty(repo: Path, monkeypatch) -> None:
    monkeypatch.setattr(run_metadata, "repo_root", lambda: repo)
    assert run_metadata.git_info()["git_dirty"] is False
    (repo / "new_module.py").write_text("y = 2\n")  # e.g. a new loss not yet committed
    assert run_metadata.git_info()["git_dirty"] is True


def test_untracked_file_makes_the_figures_commit_dirty(repo: Path, monkeypatch) -> None:
    monkeypatch.setattr(readme, "__file__", str(repo / "a.py"))
    assert not readme.git_state().endswith("(dirty)")
    (repo / "new_module.py").write_text("y = 2\n")
    assert readme.git_state().endswith("(dirty)")


def test_outputs_being_written_do_not_make_the_figures_commit_dirty(
    repo: Path, monkeypatch
) -> None:
    monkeypatch.setattr(readme, "__file__", str(repo / "a.py"))
    (repo / "paper_figures" / "demo").mkdir(parents=True)
    (repo / "paper_figures" / "demo" / "claims.json").write_text("{}\n")
    assert not readme.git_state().endswith("(dirty)")


def test_effects_print_signed_differences_and_unsigned_levels() -> None:
    difference = {"unit": "%", "effect": {"estimate": 2.0, "interval": [-1.0, 5.0], "n": 4}}
    level = {"unit": "%", "effect": {**difference["effect"], "kind": "level"}}
    assert readme.format_effect(difference) == "+2.0 [-1.0, +5.0] points (n=4)"
    assert readme.format_effect(level) == "2.0 [-1.0, 5.0] % (n=4)"

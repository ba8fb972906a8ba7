"""Atomic writes: a failed write leaves the previous file whole and no temporary file behind."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from repro.figures.files import atomic_write, write_json, write_text


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = write_text(tmp_path / "claims.json", "old")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["claims.json"]


def test_json_is_strict_and_rounded(tmp_path: Path) -> None:
    path = write_json(tmp_path / "x.json", {"a": np.float32(0.1), "b": math.nan, "c": (1, 2)})
    assert json.loads(path.read_text()) == {"a": 0.1, "b": None, "c": [1, 2]}

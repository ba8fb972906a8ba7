"""Fixtures of the reporting tests: ``runs`` makes synthetic run dirs under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from .factory import RunFactory


@pytest.fixture
def runs(tmp_path: Path) -> RunFactory:
    return RunFactory(tmp_path)

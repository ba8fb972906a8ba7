"""conf/ in a checkout and in a non-editable install (`pip install .`)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from repro import run_metadata

REPO = Path(__file__).resolve().parents[1]


def _conf(root: Path) -> Path:
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "config.yaml").write_text("name: x\n")
    return root / "conf"


def test_a_checkout_finds_its_own_conf_first(tmp_path: Path) -> None:
    checkout = _conf(tmp_path / "checkout")
    installed = _conf(tmp_path / "prefix" / "share" / "repro")
    assert run_metadata.find_config_dir(checkout.parent, [installed]) == checkout


def test_an_install_without_a_checkout_finds_the_shipped_conf(tmp_path: Path) -> None:
    """site-packages has no conf/ next to repro/: the copy under <prefix>/share is used."""
    site_packages = tmp_path / "site-packages"
    (site_packages / "repro").mkdir(parents=True)
    installed = _conf(tmp_path / "prefix" / "share" / "repro")
    missing = tmp_path / "other" / "conf"
    assert run_metadata.find_config_dir(site_packages, [missing, installed]) == installed
    assert run_metadata.find_config_dir(site_packages, [missing]) is None


def test_this_checkout_uses_its_top_level_conf() -> None:
    assert run_metadata.config_dir() == REPO / "conf"


def test_every_conf_directory_is_shipped_by_the_wheel() -> None:
    """pyproject's data-files must list each directory of conf/ that holds configs."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    shipped = pyproject["tool"]["setuptools"]["data-files"]
    dirs = sorted({p.parent.relative_to(REPO) for p in (REPO / "conf").rglob("*.yaml")})
    assert {f"share/repro/{d}": [f"{d}/*.yaml"] for d in dirs} == shipped


def test_missing_conf_is_one_line_saying_how_to_install(tmp_path: Path) -> None:
    """The CLI of an install whose conf/ cannot be found: one line, exit 2."""
    code = (
        "import sys; from pathlib import Path; import repro.train as t; "
        f"t.CONFIG_DIR = Path({str(tmp_path / 'nowhere')!r}); sys.argv = ['repro-train']; t.cli()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: repro's config directory conf/")
    assert "pip install -e ." in lines[0]

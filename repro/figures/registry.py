"""Registry of paper figure modules: paper name -> module defining ``PAPER`` (a PaperSpec)."""

from __future__ import annotations

import importlib

from repro.errors import ConfigError
from repro.figures.spec import PaperSpec

# One line per paper. Modules import lazily so one broken paper cannot break the others.
PAPERS: dict[str, str] = {
    "demo": "repro.figures.demo",
    "neelakantan2015": "repro.figures.neelakantan2015",
    "neelakantan2015_budget": "repro.figures.neelakantan2015_budget",
    "mori2020": "repro.figures.mori2020",
    "mori2022": "repro.figures.mori2022",
    "wu2020": "repro.figures.wu2020",
    "novograd2019": "repro.figures.novograd2019",
    "jasper2019": "repro.figures.jasper2019",
}


def get_paper(name: str) -> PaperSpec:
    """The PaperSpec registered as ``name``; ConfigError lists the registered names."""
    if name not in PAPERS:
        raise ConfigError(f"paper must be one of {sorted(PAPERS)}, got {name!r}")
    spec = importlib.import_module(PAPERS[name]).PAPER
    if spec.name != name:
        raise ValueError(f"module {PAPERS[name]} defines paper {spec.name!r}, expected {name!r}")
    return spec

"""Paper figures: ``python -m repro.figures <paper>`` writes ``paper_figures/<paper>/``.

Each paper is a module ``repro/figures/<paper>.py`` defining ``PAPER`` (a
:class:`~repro.figures.core.PaperSpec`), registered in :mod:`repro.figures.registry`.
"""

from repro.figures.cli import main
from repro.figures.registry import PAPERS, get_paper

__all__ = ["PAPERS", "get_paper", "main"]

"""``python -m repro.figures <paper>``."""

import sys

from repro.figures.cli import main

sys.exit(main())

"""``python -m repro.aggregate``."""

import sys

from repro.aggregate.cli import main

sys.exit(main())

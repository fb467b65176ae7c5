"""``python -m runner.cli``: the ``runner`` command (the tests and the benchmarks start it this way)."""

import sys

from . import main

sys.exit(main())

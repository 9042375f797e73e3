"""``python -m skdiffmic``: the ``skdiffmic`` command (:mod:`skdiffmic.cli`)."""

import sys

from .cli import main

sys.exit(main())

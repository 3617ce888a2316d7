"""``python -m engine`` runs the ``fld`` command line."""

import sys

from engine.cli import main

sys.exit(main())

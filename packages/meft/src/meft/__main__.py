"""``python -m meft`` runs the ``meft`` command line."""

import sys

from meft.cli import main

sys.exit(main())

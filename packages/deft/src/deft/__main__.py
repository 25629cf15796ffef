"""``python -m deft`` runs the ``deft`` command line."""

import sys

from deft.cli import main

sys.exit(main())

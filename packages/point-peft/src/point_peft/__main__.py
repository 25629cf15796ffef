"""``python -m point_peft`` runs the ``point-peft`` command line."""

import sys

from point_peft.cli import main

sys.exit(main())

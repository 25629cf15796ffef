"""``python -m point_peft`` runs the ``point-peft`` command line."""

import sys

from point_peft.cli import main

if __name__ == "__main__":  # importing the module (as docs tools do) runs nothing
    sys.exit(main())

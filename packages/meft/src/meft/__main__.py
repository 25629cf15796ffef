"""``python -m meft`` runs the ``meft`` command line."""

import sys

from meft.cli import main

if __name__ == "__main__":  # importing the module (as docs tools do) runs nothing
    sys.exit(main())

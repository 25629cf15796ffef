"""``python -m deft`` runs the ``deft`` command line."""

import sys

from deft.cli import main

if __name__ == "__main__":  # importing the module (as docs tools do) runs nothing
    sys.exit(main())

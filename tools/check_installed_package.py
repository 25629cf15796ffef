"""Checks an installed package the way a user meets it (run by `nox -s build` in a clean venv per
wheel, without extras):

* its ``__version__`` equals the version in the installed metadata;
* every name in its ``__all__`` resolves. The packages import their public names lazily, so
  ``import <package>`` alone would not notice a module left out of the wheel, or one that needs
  an optional dependency at import time.

Prints what it found and exits 1 on any problem. Standard library only.

    python tools/check_installed_package.py IMPORT_NAME DISTRIBUTION_NAME
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys


def problems(module_name: str, distribution: str) -> list[str]:
    module = importlib.import_module(module_name)
    found = []
    version = importlib.metadata.version(distribution)
    if module.__version__ != version:
        found.append(f"{module_name}.__version__ is {module.__version__}, metadata says {version}")
    for name in module.__all__:
        try:
            getattr(module, name)
        except Exception as error:  # whatever the import behind the name raises
            found.append(f"{module_name}.{name} does not resolve: {type(error).__name__}: {error}")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    module_name, distribution = argv
    found = problems(module_name, distribution)
    for problem in found:
        print(problem, file=sys.stderr)
    if found:
        return 1
    module = sys.modules[module_name]
    print(f"{distribution} {module.__version__}: {len(module.__all__)} public names resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Print the installed version of each distribution named on the command line ("absent" if none).

The `latest` nox session runs it first, so that a failure against the newest releases says
which releases they were.

Usage: python tools/print_versions.py torch transformers peft
"""

from __future__ import annotations

import sys
from importlib import metadata


def installed_versions(names: list[str]) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    versions = installed_versions(argv)
    width = max(map(len, versions))
    for name, version in versions.items():
        print(f"{name:<{width}}  {version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

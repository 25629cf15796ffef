"""tools/print_versions.py (what the `latest` session prints before its tests): each named
distribution's installed version, "absent" for one that is not installed."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "print_versions.py"


def _run(*names: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *names], capture_output=True, text=True)


def test_installed_and_absent_distributions_one_per_line():
    result = _run("torch", "no-such-distribution-here")
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines == [
        ["torch", metadata.version("torch")],
        ["no-such-distribution-here", "absent"],
    ]


def test_without_names_it_prints_its_usage_and_fails():
    result = _run()
    assert result.returncode == 2
    assert "Usage: python tools/print_versions.py" in result.stderr

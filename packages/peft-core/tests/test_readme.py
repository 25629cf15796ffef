"""The README's examples run as written (they are the first code a user copies)."""

from __future__ import annotations

from pathlib import Path

from peft_core.testing.readme import run_python_blocks

README = Path(__file__).parents[1] / "README.md"


def test_readme_examples_run(tmp_path):
    assert run_python_blocks(README, tmp_path) >= 3

"""The README's examples run as written (they are the first code a user copies)."""

from __future__ import annotations

from pathlib import Path

import pytest

from peft_core.testing.readme import run_python_blocks

README = Path(__file__).parents[1] / "README.md"


def test_readme_examples_run_and_print_what_they_claim(tmp_path, capsys):
    pytest.importorskip("peft")
    assert run_python_blocks(README, tmp_path) >= 3
    printed = capsys.readouterr().out
    # the claims in the examples' comments
    assert "(density in % of non-zero activations, dtype float32)" in printed
    for key in ("'task_loss'", "'density'", "'density_loss'"):  # DensityTrainer's training logs
        assert key in printed
    assert "[0.0, 0.0, 0.5, 1.0, 1.0]" in printed
    assert "['query', 'value']" in printed
    assert "50.0% non-zero" in printed

"""Every docstring example in peft-core runs and prints what it claims."""

from __future__ import annotations

import pytest

from peft_core.testing.doctests import failed_docstring_examples, package_modules


@pytest.mark.parametrize("name", package_modules("peft_core"))
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    assert failed_docstring_examples(name) == 0

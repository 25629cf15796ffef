"""Every docstring example in meft runs and prints what it claims."""

from __future__ import annotations

import doctest

import pytest

from peft_core.testing.doctests import failed_docstring_examples, package_modules


@pytest.mark.parametrize("name", package_modules("meft"))
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    assert failed_docstring_examples(name) == 0


def test_the_examples_are_found():
    from meft import model

    finder = doctest.DocTestFinder()
    examples = sum(len(test.examples) for test in finder.find(model))
    assert examples >= 3  # get_meft_model's example is collected, not silently skipped

"""Every docstring example in meft runs and prints what it claims."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import meft

MODULES = sorted(info.name for info in pkgutil.walk_packages(meft.__path__, prefix="meft."))


@pytest.mark.parametrize("name", ["meft", *MODULES])
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0


def test_the_examples_are_found():
    from meft import model

    finder = doctest.DocTestFinder()
    examples = sum(len(test.examples) for test in finder.find(model))
    assert examples >= 3  # get_meft_model's example is collected, not silently skipped

"""The examples in the corpora modules' docstrings run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["", "._cache", ".mesh", ".off", ".vrml", ".sampling", ".datasets"]


@pytest.mark.parametrize("suffix", MODULES, ids=lambda suffix: suffix or "__init__")
def test_docstring_examples(suffix):
    module = importlib.import_module("point_peft.corpora" + suffix)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0

"""The examples in the data modules' docstrings run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "",
    ".augmentations",
    ".geometry",
    ".sampling",
    ".primitives",
    ".shapes",
    ".scanning",
    ".procedural",
    ".scanobjectnn",
]


@pytest.mark.parametrize("suffix", MODULES, ids=lambda suffix: suffix or "__init__")
def test_docstring_examples(suffix):
    module = importlib.import_module("point_peft.data" + suffix)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0

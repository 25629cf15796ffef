"""The examples in the models' docstrings run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "",
    ".blocks",
    ".chamfer",
    ".config",
    ".encoder",
    ".heads",
    ".loading",
    ".losses",
    ".patch_encoder",
    ".point_bert",
    ".point_mae",
    ".pretraining",
]


@pytest.mark.parametrize("suffix", MODULES, ids=lambda suffix: suffix or "__init__")
def test_docstring_examples(suffix):
    module = importlib.import_module("point_peft.models" + suffix)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0

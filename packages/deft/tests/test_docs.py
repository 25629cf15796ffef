"""The examples in the docstrings run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "deft",
    "deft._shapes",
    "deft.callbacks",
    "deft.discovery",
    "deft.loss",
    "deft.metrics",
    "deft.monitor",
    "deft.report",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0

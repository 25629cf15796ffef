"""The docstring examples of deft.sparse and deft.thresholding run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "deft.sparse",
    "deft.sparse.convert",
    "deft.sparse.kernels",
    "deft.sparse.modules",
    "deft.thresholding",
]


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    if name == "deft.sparse":
        pytest.importorskip("transformers")
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0

"""Every docstring example in peft-core runs and prints what it claims."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import peft_core

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(peft_core.__path__, prefix="peft_core.")
)


@pytest.mark.parametrize("name", ["peft_core", *MODULES])
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0

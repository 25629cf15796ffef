"""The examples in the Point-PEFT method's docstrings run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

MODULES = [
    "",
    ".config",
    ".ffn_adapter",
    ".geometry_adapter",
    ".memory_bank",
    ".model",
    ".prompt",
    ".query",
    ".retrieval",
]


@pytest.mark.parametrize("suffix", MODULES, ids=lambda suffix: suffix or "__init__")
def test_docstring_examples(suffix):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        module = importlib.import_module("point_peft.method" + suffix)
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    finally:
        torch.set_num_threads(threads)
    assert result.failed == 0
    assert result.attempted > 0

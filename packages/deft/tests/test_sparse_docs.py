"""The docstring examples of deft.sparse and deft.thresholding run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

MODULES = [
    "deft.sparse",
    "deft.sparse.convert",
    "deft.sparse.kernels",
    "deft.sparse.modules",
    "deft.thresholding",
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny matmuls on a shared 2-core machine: a preempted second OpenMP thread makes each op
    # wait for it; one thread is all these sizes need.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    if name == "deft.sparse":
        pytest.importorskip("transformers")
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0

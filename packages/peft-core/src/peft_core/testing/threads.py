"""Run tiny-model tests on one intra-op thread.

Test models here are a few kilobytes: each op takes microseconds, so a second OpenMP thread buys
nothing, and on a busy 2-core machine a preempted second thread makes every op wait for it
(forwards measured 100x slower). Tests that use real pretrained models keep all threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from peft_core.optional_imports import import_optional

# fixtures for the test suites of the packages: pytest comes with the test extra
pytest = import_optional(
    "pytest", needed_by="peft_core.testing.threads", install='pip install "peft-core[test]"'
)


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Set torch's intra-op thread count to 1 inside the block; restore it on exit, even on error."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def one_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    """One torch thread for this test, unless it is marked ``slow`` (real models use the cores)."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def one_thread_per_module() -> Iterator[None]:
    """One torch thread for a whole module, module-scoped fixtures (trained tiny models) included."""
    with one_torch_thread():
        yield

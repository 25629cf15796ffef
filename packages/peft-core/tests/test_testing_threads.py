"""The one-thread helper restores torch's thread count, also when the block raises."""

from __future__ import annotations

import pytest
import torch

from peft_core.testing.threads import one_torch_thread


def test_one_thread_inside_and_the_old_count_after():
    before = torch.get_num_threads()
    with one_torch_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_the_old_count_comes_back_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="boom"), one_torch_thread():
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before

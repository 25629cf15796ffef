"""Fixtures shared by this package's tests."""

from peft_core.testing.threads import one_thread, one_thread_per_module

__all__ = ["one_thread", "one_thread_per_module"]

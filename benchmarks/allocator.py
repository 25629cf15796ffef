"""How the C heap hands memory back to the kernel, and what that costs a CPU training step.

glibc's malloc serves an allocation above its mmap threshold (which grows with the blocks freed,
up to 32 MiB) with fresh pages from the kernel, and gives them back when the block is freed. A
training step that saves gigabytes of activations for backward then pays, every step, for the
kernel to fault those pages in and zero them again. On the BERT-base-shaped model at 8 x 512
tokens (`meft-allocator` record, 2-core CPU) a vanilla-backprop step took 1.56 million page
faults and 6.6 s of kernel CPU time, 16.9 s in all, against 12.5 s with freed memory kept; a
reversible step, which saves almost nothing, took no faults and 21.0 - 21.6 s either way. On a
GPU PyTorch's caching allocator keeps freed blocks, so there the vanilla step does not pay this.

:func:`keep_freed_memory` makes glibc keep freed memory too, so that CPU step times compare the
arithmetic of two methods rather than how much memory each hands back to the kernel;
:func:`kernel_usage` measures what each call spends in the kernel.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
from collections.abc import Callable
from typing import Any

# mallopt(3) parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

DEFAULT = "glibc default (large blocks mmapped and returned to the kernel when freed)"
KEPT = "glibc keeping freed memory (mallopt M_MMAP_MAX=0, M_TRIM_THRESHOLD=-1)"


def glibc() -> ctypes.CDLL | None:
    """The C library, if it is glibc (mallopt, malloc_trim); None otherwise."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # mallopt exists in other C libraries too (musl's does nothing): glibc names its version
    return libc if hasattr(libc, "gnu_get_libc_version") else None


def keep_freed_memory() -> str:
    """From now on, serve every allocation from the heap (no mmap) and never trim it: freed
    memory stays in the process for the next step, as a caching allocator keeps it. Returns the
    allocator in effect, for a record: :data:`KEPT`, or why nothing changed.

    Call it before the memory it should govern is allocated; blocks mmapped earlier are still
    returned when freed. The process's RSS then stays at its high-water mark, so this is for
    timing, not for peak-memory figures.
    """
    libc = glibc()
    if libc is None:
        return "unchanged: not glibc"
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # -1 as the trim threshold means never trim (mallopt(3))
    if not (libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, -1)):
        return "unchanged: mallopt refused"
    return KEPT


def kernel_usage(
    rows: dict[str, Callable[[], Any]],
) -> tuple[dict[str, Callable[[], Any]], dict[str, list[dict[str, float]]]]:
    """``rows`` wrapped so that each call also records the kernel CPU time this process spent
    in it (seconds, all threads) and the minor page faults it took, in call order per row.

    Example:
        >>> wrapped, usage = kernel_usage({"a": lambda: bytearray(1 << 20)})
        >>> wrapped["a"]()
        >>> sorted(usage["a"][0])
        ['kernel_s', 'minor_faults']
    """
    usage: dict[str, list[dict[str, float]]] = {name: [] for name in rows}

    def measured(name: str, fn: Callable[[], Any]) -> Callable[[], None]:
        def call() -> None:
            before = resource.getrusage(resource.RUSAGE_SELF)
            fn()
            after = resource.getrusage(resource.RUSAGE_SELF)
            usage[name].append(
                {
                    "kernel_s": after.ru_stime - before.ru_stime,
                    "minor_faults": after.ru_minflt - before.ru_minflt,
                }
            )

        return call

    return {name: measured(name, fn) for name, fn in rows.items()}, usage


def usage_fields(calls: list[dict[str, float]]) -> dict[str, list[float]]:
    """The record fields of some calls' kernel usage (from :func:`kernel_usage`), in call order.

    Example:
        >>> usage_fields([{"kernel_s": 0.5, "minor_faults": 3}])
        {'kernel_s_per_call': [0.5], 'minor_faults_per_call': [3]}
    """
    return {
        "kernel_s_per_call": [call["kernel_s"] for call in calls],
        "minor_faults_per_call": [call["minor_faults"] for call in calls],
    }

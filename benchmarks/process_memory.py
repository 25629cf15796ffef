"""This process's resident memory on Linux, for "peak memory above the built model" figures.

The peak is the RSS high-water mark (``VmHWM`` in ``/proc/self/status``), reset with
``/proc/self/clear_refs`` once the model is built. Not ``getrusage``'s ``ru_maxrss``: Linux
carries it over from the parent through fork and exec, so a child of a large benchmark process
would report the parent's peak, and it cannot be reset between a warm-up and the measured step.

Memory freed before the measured step can stay resident (glibc keeps freed heap pages for reuse):
counted in the baseline, reused by the step, it would hide part of the step's peak. So the heap is
trimmed (``malloc_trim``) before the baseline is read.
"""

from __future__ import annotations

import gc

from benchmarks.allocator import glibc


def _status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in KiB; None off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Start the peak RSS afresh from the current RSS (Linux >= 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def current_rss_bytes() -> int | None:
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def peak_rss_bytes() -> int | None:
    kib = _status_kib("VmHWM")
    return None if kib is None else kib * 1024


def release_free_memory() -> None:
    """Collect garbage and hand the C heap's free pages back to the system (glibc's
    ``malloc_trim``; a C library without it keeps them)."""
    gc.collect()
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)  # returns whether it released anything; either is fine


def peak_rss_above_current(step) -> int | None:
    """Bytes the peak RSS rises above the current RSS (after :func:`release_free_memory`) while
    ``step()`` runs; None off Linux."""
    release_free_memory()
    baseline = current_rss_bytes()
    if baseline is None or not reset_peak_rss():
        step()
        return None
    step()
    return peak_rss_bytes() - baseline

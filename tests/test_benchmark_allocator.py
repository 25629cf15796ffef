"""benchmarks.allocator and the meft-allocator suite: glibc keeps freed memory when told to (a
repeated large allocation then takes no page faults), each call's kernel time and faults are
recorded, and the suite's ratios and report rows are exact on hand-made samples."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import allocator  # noqa: E402

# Allocates and zero-fills 256 MiB twice (freed in between) and prints the page faults of the
# second time: in a process of its own, since keep_freed_memory changes the process for good.
_REPEATED_ALLOCATION = textwrap.dedent(
    """
    import resource, sys
    sys.path.insert(0, sys.argv[2])
    from benchmarks.allocator import keep_freed_memory
    if sys.argv[1] == "kept":
        assert keep_freed_memory().startswith("glibc keeping"), keep_freed_memory()

    def faults_of_one_allocation():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = bytearray(256 << 20)  # malloc, then every page written with zeros
        del block
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults_of_one_allocation()
    print(faults_of_one_allocation())
    """
)


def _faults_of_the_second_allocation(which: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", _REPEATED_ALLOCATION, which, str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(allocator.glibc() is None, reason="glibc's mallopt only")
def test_kept_memory_is_reused_without_page_faults():
    default = _faults_of_the_second_allocation("default")
    kept = _faults_of_the_second_allocation("kept")
    # 256 MiB in 4 KiB pages is 65,536 faults (fewer with huge pages); kept, the heap has them
    assert default > 1000, default
    assert kept < default / 20, (kept, default)


def test_kernel_usage_records_every_call_of_every_row_in_order():
    calls = []
    wrapped, usage = allocator.kernel_usage(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    )
    for name in ("a", "b", "a"):
        wrapped[name]()
    assert calls == ["a", "b", "a"]
    assert [len(usage["a"]), len(usage["b"])] == [2, 1]
    assert all(call["kernel_s"] >= 0 and call["minor_faults"] >= 0 for call in usage["a"])


def test_interleaved_timing_keeps_the_kernel_usage_of_the_timed_calls_only():
    from benchmarks.timing import time_interleaved

    calls = {"a": 0, "b": 0}

    def count(name):
        def call():
            calls[name] += 1

        return call

    timings = time_interleaved(
        {"a": count("a"), "b": count("b")}, 3, warmup=1, repeats=2, kernel_usage=True
    )
    assert calls == {"a": 8, "b": 8}  # 2 warm-up calls, then 3 rounds of 2
    for row in timings.values():
        assert len(row["kernel_s_per_call"]) == len(row["minor_faults_per_call"]) == 6
    assert "kernel_s_per_call" not in time_interleaved({"a": count("a")}, 1, warmup=0)["a"]


def _row(samples_ms, kernel_s, faults):
    return {
        "median_ms": statistics.median(samples_ms),
        "min_ms": min(samples_ms),
        "max_ms": max(samples_ms),
        "samples": len(samples_ms),
        "samples_ms": list(samples_ms),
        "kernel_s_per_call": list(kernel_s),
        "minor_faults_per_call": list(faults),
    }


def test_allocator_ratios_and_report_rows_on_hand_made_samples():
    from benchmarks.meft import bench_allocator
    from benchmarks.meft.report_sections import allocator_section

    def timings(vanilla_ms):
        return {
            bench_allocator.FULL: _row([400.0, 400.0, 400.0], [1.0, 2.0, 3.0], [9, 9, 9]),
            bench_allocator.VANILLA: _row(vanilla_ms, [0.5, 0.5, 0.5], [100, 200, 300]),
            bench_allocator.FORWARD: _row([50.0, 50.0, 50.0], [0, 0, 0], [0, 0, 0]),
            bench_allocator.REVERSIBLE: _row([300.0, 300.0, 300.0], [0, 0, 0], [0, 0, 0]),
        }

    default, kept = timings([200.0, 250.0, 300.0]), timings([200.0, 200.0, 200.0])
    ratios = bench_allocator.ratios(default)
    assert ratios["ratio_per_round"] == pytest.approx([1.5, 1.2, 1.0])
    assert ratios["median_ratio_per_round"] == pytest.approx(1.2)
    assert ratios["ratio_of_medians"] == pytest.approx(1.2)
    assert ratios["estimate"] == pytest.approx(1.2)  # 1 + 50 / 250
    assert ratios["vanilla_over_full_fine_tuning"] == pytest.approx(0.625)

    record = {
        "run_info": {"config": {"rounds": 3}},
        "train_info": {
            "load_average_1min": {"before": 1.0, "after": 1.5},
            "allocators": {
                "default": {"allocator": "as it comes", "rows": default,
                            "meft1_versus_vanilla": ratios},
                "kept": {"allocator": "kept", "rows": kept,
                         "meft1_versus_vanilla": bench_allocator.ratios(kept)},
            },
        },
    }  # fmt: skip
    text = "\n".join(allocator_section(json.loads(json.dumps(record, sort_keys=True))))
    assert "| MEFT1 vanilla backprop | default | 0.25 | 0.50 | 200 |" in text
    assert "| full fine-tuning | kept | 0.40 | 2.00 | 9 |" in text
    assert "| default: as it comes | 1.20 | 1.20 | 1.20 | 0.62 |" in text
    assert "| kept: kept | 1.50 | 1.50 | 1.25 | 0.50 |" in text
    assert text.index("| full fine-tuning | default") < text.index("| MEFT1 vanilla backprop |")


def _memory_speed_row(step_s, kernel_s, faults, **extra):
    timing = {"median_s": step_s, "kernel_s_per_call": kernel_s, "minor_faults_per_call": faults}
    return {
        "trainable_params": 10,
        "activation_bytes": 2**20,
        "activation_ratio_to_full": 1.0,
        "peak_bytes_above_model": 2**20,
        "peak_ratio_to_full": 1.0,
        "step_time_s": timing,
        "time_ratio_to_full": 1.0,
        **extra,
    }


def test_the_meft_table_says_which_allocator_timed_it_and_what_the_kernel_took(
    monkeypatch, tmp_path
):
    from benchmarks import plotting
    from benchmarks.meft.report_sections import memory_speed_section

    monkeypatch.setattr(plotting, "PLOTS", tmp_path)  # the section draws its scatter plot

    rows = {
        "full fine-tuning": _memory_speed_row(2.0, [0.25, 0.5, 0.75], [10, 30, 20]),
        "MEFT1": _memory_speed_row(
            3.0, [0.0, 0.0, 0.0], [0, 5, 0],
            time_ratio_to_vanilla_same_architecture=1.5, floor_ratio_to_vanilla=1.4,
        ),
    }  # fmt: skip
    record = {
        "name": "hand-made",
        "run_info": {"config": {"allocator": "kept"}, "device": {"kind": "cpu"}},
        "train_info": {"rows": rows},
    }
    text = "\n".join(memory_speed_section(json.loads(json.dumps(record, sort_keys=True))))
    # The largest of the rows' medians: 0.5 s (full fine-tuning) and 20 faults.
    assert "with kept: per timed step at most 0.50 s of kernel CPU time and 20 page faults" in text
    assert "default allocator" not in text

    del record["run_info"]["config"]["allocator"]  # a record from before the setting
    text = "\n".join(memory_speed_section(json.loads(json.dumps(record, sort_keys=True))))
    assert "under glibc's default allocator" in text
    assert "page faults in any row" not in text

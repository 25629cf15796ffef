"""Render benchmarks/REPORT.md (tables) and benchmarks/plots/*.png from the JSON records.

`python -m benchmarks.report`. Each method's suite may register a renderer for its records by
name prefix; anything without one gets a generic flattened table, so no record goes unreported.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.deft.bench_sparse import render_section as render_deft_sparse
from benchmarks.deft.report_sections import RENDERERS as DEFT_RENDERERS
from benchmarks.meft.report_sections import RENDERERS as MEFT_RENDERERS
from benchmarks.plotting import bar_plot, figure_name
from benchmarks.point.report_sections import RENDERERS as POINT_RENDERERS
from benchmarks.records import RESULTS_DIR, is_quick, read_records

REPORT = Path(__file__).parent / "REPORT.md"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(value, list) and len(value) > 8:
        return {prefix: f"[{len(value)} values]"}
    return {prefix: value}


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def generic_section(record: dict[str, Any]) -> list[str]:
    rows = {**_flatten(record["train_info"], "train"), **_flatten(record["eval_info"], "eval")}
    lines = ["| quantity | value |", "|---|---|"]
    lines += [f"| {key} | {_format(value)} |" for key, value in rows.items()]
    return lines


def activation_memory_section(record: dict[str, Any]) -> list[str]:
    rows = record["train_info"]["activation_memory"]
    lines = [
        "| setting | activation MiB | ratio to full FT | trainable params |",
        "|---|---:|---:|---:|",
    ]
    for setting, row in rows.items():
        lines.append(
            f"| {setting} | {row['activation_mib']:.1f} | {row['ratio_to_full']:.3f} | {row['trainable_params']:,} |"
        )
    return lines + bar_plot(
        figure_name(record),
        {k: v["activation_mib"] for k, v in rows.items()},
        ylabel="MiB saved for backward",
        title=record["name"],
    )


def trainer_overhead_section(record: dict[str, Any]) -> list[str]:
    info = record["train_info"]
    runs = len(next(iter(info["step_time_s"].values()))["all"])
    lines = [
        f"Seconds per step: each run's mean over {info['steps_per_run']} steps, {runs} runs of "
        "each loop, interleaved after a warm-up round; the median over runs:",
        "",
        "| loop | median s | each run |",
        "|---|---:|---|",
    ]
    for loop, times in info["step_time_s"].items():
        each = " / ".join(f"{t:.3f}" for t in times["all"])
        lines.append(f"| {loop} | {times['median']:.4f} | {each} |")
    paired = info.get("trainer_to_hand_loop_ratio_per_round")
    if not paired:  # recorded before the rounds alternated which loop runs first
        ratio = f"peft-core Trainer / hand-written loop: {info['trainer_to_hand_loop_ratio']:.3f}×"
        return [*lines, "", ratio]
    return [
        *lines,
        "",
        f"peft-core Trainer / hand-written loop, round by round (the two loops' order "
        f"alternating): median {statistics.median(paired):.3f}×, from {min(paired):.3f}× to "
        f"{max(paired):.3f}× (ratio of the medians above: {info['trainer_to_hand_loop_ratio']:.3f}×)",
    ]


def startup_section(record: dict[str, Any]) -> list[str]:
    info = record["eval_info"]
    rows = sorted(info["rows"].items(), key=lambda item: item[1]["median_ms"])
    lines = [
        f"Wall time of a fresh interpreter per row, {record['run_info']['config']['rounds']} "
        "interleaved rounds after a warm-up round; ratios of the medians to "
        f"`{info['reference']}`, which every command paid before its package's names were "
        "imported lazily:",
        "",
        f"| row | median ms | min ms | × `{info['reference']}` |",
        "|---|---:|---:|---:|",
    ]
    for name, row in rows:
        lines.append(
            f"| {name} | {row['median_ms']:.0f} | {row['min_ms']:.0f} "
            f"| {row['ratio_to_import_torch']:.3f} |"
        )
    return lines


# record-name prefix -> renderer; each suite keeps its renderers beside its benchmark.
RENDERERS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "core activation memory": activation_memory_section,
    "core trainer overhead": trainer_overhead_section,
    "core command start-up": startup_section,
    **MEFT_RENDERERS,
    "deft sparse inference": render_deft_sparse,
    **DEFT_RENDERERS,
    **POINT_RENDERERS,
}


def _code_version(info: dict[str, Any]) -> str:
    """The commit that measured (short, marked when it had uncommitted changes), if recorded."""
    commit = info.get("commit")
    if not commit:
        return ""
    return f"; commit {commit['sha'][:7]}" + (" (uncommitted changes)" if commit["dirty"] else "")


def _resumed(info: dict[str, Any]) -> str:
    resumed = info.get("resumed") or []
    if not resumed:
        return ""
    times = "once" if len(resumed) == 1 else f"{len(resumed)} times"
    return f", resumed {times} (last {resumed[-1]['at']})"


def render(records: list[dict[str, Any]]) -> str:
    """The report of ``records``, leaving out ``--quick`` smoke runs."""
    records = [record for record in records if not is_quick(record)]
    lines = [
        "# Benchmark report",
        "",
        "Generated by `python -m benchmarks.report` from the JSON records in `benchmarks/results/`.",
        "Every ratio compares rows measured side by side in one run.",
        "",
    ]
    for record in sorted(records, key=lambda r: r["name"]):
        info = record["run_info"]
        renderer = next(
            (f for p, f in RENDERERS.items() if record["name"].startswith(p)), generic_section
        )
        lines += [
            f"## {record['name']}",
            "",
            f"- method: {info['method']}; model: {info['model']}; data: {info['data']}",
            f"- device: {info['device'].get('cuda_device') or info['device']['cpu']} "
            f"({info['device']['kind']}, {info['device']['torch_threads']} threads); "
            f"torch {info['versions'].get('torch', '?')}{_code_version(info)}; "
            f"recorded {info['created_at']}{_resumed(info)}",
            "",
            *renderer(record),
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    records = read_records(RESULTS_DIR)
    REPORT.write_text(render(records), encoding="utf-8")
    print(f"wrote {REPORT} from {len(records)} records")


if __name__ == "__main__":
    main()

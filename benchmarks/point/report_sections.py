"""How the Point-PEFT fine-tuning records read in benchmarks/REPORT.md: tables against the targets."""

from __future__ import annotations

from typing import Any

from benchmarks.plotting import figure_name, scatter_plot

MIB = 2**20

# The targets, checked in the rendered tables.
TRAINABLE_PERCENT_TARGET = 5.0  # Point-PEFT trains at most 5% of the parameters ...
ACCURACY_TARGET_POINTS = 0.0  # ... and reaches at least full fine-tuning's accuracy
STEP_TIME_TARGET = 1.2  # a training step at most 1.2x full fine-tuning's


def _mark(ok: bool) -> str:
    return "meets" if ok else "misses"


def _percent(summary: dict[str, float]) -> str:
    return f"{100 * summary['mean']:.2f} ± {100 * summary['std']:.2f}"


def finetune_section(record: dict[str, Any]) -> list[str]:
    from benchmarks.point.bench_finetune import SETTINGS

    info = record["eval_info"]
    order = list(SETTINGS)
    rows = sorted(info["settings"].items(), key=lambda item: order.index(item[0]))
    lines = [
        "| setting | lr | trainable | trainable % | accuracy % (mean ± std) | mean class acc. % "
        "| seeds | vs full FT (points) | step ms (median) | × full FT | activation MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method, row in rows:
        points = row.get("accuracy_minus_full_points")
        ratio = row.get("step_time_ratio_to_full")
        lines.append(
            f"| {SETTINGS.get(method, method)} | {row['learning_rate']:g} "
            f"| {row['trainable_params']:,} | {row['trainable_percent']:.2f} "
            f"| {_percent(row['test_accuracy'])} | {_percent(row['mean_class_accuracy'])} "
            f"| {len(row['runs'])} | {'' if points is None else f'{points:+.2f}'} "
            f"| {1000 * row['step_time_median_s']:.0f} | {'' if ratio is None else f'{ratio:.2f}'} "
            f"| {row['activation_mib']:.1f} |"
        )
    point_peft, full = info["settings"].get("point-peft"), info["settings"].get("full")
    if point_peft is not None and full is not None:
        points = point_peft["accuracy_minus_full_points"]
        share = point_peft["trainable_percent"]
        ratio = point_peft["step_time_ratio_to_full"]
        lines += [
            "",
            f"- Point-PEFT accuracy {100 * point_peft['test_accuracy']['mean']:.2f}% vs full "
            f"fine-tuning {100 * full['test_accuracy']['mean']:.2f}% ({points:+.2f} points: "
            f"{_mark(points >= ACCURACY_TARGET_POINTS)} ≥ full FT) with {share:.2f}% of the "
            f"parameters trained ({_mark(share <= TRAINABLE_PERCENT_TARGET)} ≤ "
            f"{TRAINABLE_PERCENT_TARGET:g}%; the small backbone's head alone is a large share — "
            "see the step-cost record for the official scale)",
            f"- Point-PEFT training-loop step {ratio:.2f}× full fine-tuning's "
            f"({_mark(ratio <= STEP_TIME_TARGET)} ≤ {STEP_TIME_TARGET}×; loop medians of runs "
            "that ran one after another, the side-by-side ratio is in the step-cost record)",
        ]
    cached = info["settings"].get("point-peft-cached")
    if point_peft is not None and cached is not None:
        points = 100 * (cached["test_accuracy"]["mean"] - point_peft["test_accuracy"]["mean"])
        speed = cached["step_time_median_s"] / point_peft["step_time_median_s"]
        lines.append(
            f"- Cached queries: accuracy {points:+.2f} points against queries per step, "
            f"training-loop step {speed:.2f}× theirs"
        )
    return lines + scatter_plot(
        figure_name(record),
        {
            SETTINGS.get(method, method): (
                row["trainable_percent"],
                100 * row["test_accuracy"]["mean"],
            )
            for method, row in rows
        },
        xlabel="trainable parameters, % of the model (log)",
        ylabel="test accuracy %, mean over seeds",
        title=f"{record['name']}: accuracy against what trains",
        log_x=True,
    )


def _peak(row: dict[str, Any]) -> tuple[str, str]:
    peak = row.get("peak_bytes_above_model")
    if peak is None:
        return "-", "-"
    return f"{peak / MIB:.0f}", f"{row['peak_ratio_to_full']:.2f}"


def _query_floor(row: dict[str, Any]) -> str:
    """The bound the per-step query pass puts on the ratio, where the record has it."""
    if "floor_ratio_to_full" not in row:
        return ""
    return (
        f"; the query pass alone is {row['query_pass_ratio_to_full']:.2f}× a full-FT step, and the "
        f"cached step plus it, the floor of any per-step query, is {row['floor_ratio_to_full']:.2f}×"
    )


def cost_section(record: dict[str, Any]) -> list[str]:
    from benchmarks.point.bench_finetune import COST_ROWS

    lines = []
    tables = record["train_info"]["tables"]
    # JSON records sort their keys: the small backbone first, rows in the benchmark's order.
    for configuration in sorted(tables, key=lambda name: not name.startswith("small")):
        rows = dict(
            sorted(tables[configuration].items(), key=lambda i: list(COST_ROWS).index(i[0]))
        )
        batch = record["run_info"]["config"]["configurations"][configuration]["batch"]
        lines += [
            f"**{configuration}, batch {batch}**",
            "",
            "| setting | trainable | trainable % | step ms (median) | × full FT | activation MiB "
            "| × full FT | peak MiB above model | × full FT |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, row in rows.items():
            peak, peak_ratio = _peak(row)
            lines.append(
                f"| {name} | {row['trainable_params']:,} | {row['trainable_percent']:.2f} "
                f"| {1000 * row['step_time_s']['median_s']:.0f} | {row['time_ratio_to_full']:.2f} "
                f"| {row['activation_bytes'] / MIB:.1f} | {row['activation_ratio_to_full']:.2f} "
                f"| {peak} | {peak_ratio} |"
            )
        lines.append("")
        for name in ("Point-PEFT", "Point-PEFT (cached queries)"):
            if name not in rows:
                continue
            row = rows[name]
            ratio, share = row["time_ratio_to_full"], row["trainable_percent"]
            lines.append(
                f"- {name}: step {ratio:.2f}× full FT ({_mark(ratio <= STEP_TIME_TARGET)} ≤ "
                f"{STEP_TIME_TARGET}×), {share:.2f}% trained "
                f"({_mark(share <= TRAINABLE_PERCENT_TARGET)} ≤ {TRAINABLE_PERCENT_TARGET:g}%)"
                + _query_floor(row)
            )
        lines.append("")
    load = record["train_info"].get("load_average_1min")
    if load:
        lines.append(
            f"Load average (1 min) before / after: {load['before']:.2f} / {load['after']:.2f}."
        )
    return lines


def backbone_section(record: dict[str, Any]) -> list[str]:
    """One row per configuration: forward and training step, where the step's time goes, memory."""
    batch = record["run_info"]["config"]["batch"]
    lines = [
        f"Batch {batch}; medians of interleaved rounds; stage shares are of the whole step.",
        "",
        "| configuration | forward ms | train step ms | clouds/s (train) | grouping "
        "| patch encoder fwd+bwd | transformer fwd+bwd | AdamW | activation MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for configuration, measured in record["train_info"].items():
        shares = record["eval_info"]["shares"][configuration]["train"]

        def share(part: str, shares: dict[str, float] = shares) -> str:
            return f"{shares[f'{part} / train step']:.2f}"

        lines.append(
            f"| {configuration} | {measured['forward_ms']['forward']['median_ms']:.0f} "
            f"| {measured['train_ms']['train step']['median_ms']:.0f} "
            f"| {measured['clouds_per_second_train']:.1f} | {share('grouping')} "
            f"| {share('patch encoder fwd+bwd')} | {share('transformer fwd+bwd')} "
            f"| {share('AdamW step')} | {measured['activation_mib']['train step']:.0f} |"
        )
    lines += ["", *(f"- {note}" for note in record["eval_info"].get("notes", []))]
    return lines


def pretraining_section(record: dict[str, Any]) -> list[str]:
    """Pre-training time, held-out reconstruction against the trivial predictors, linear probes."""
    train, info = record["train_info"], record["eval_info"]
    losses, baselines = info["held_out_reconstruction_loss"], info["trivial_baselines"]
    blob, matched = baselines["blob_best"], baselines["blob_moment_matched"]
    prints = info["fingerprints"]
    same = prints.get("fresh_equals_cached")
    lines = [
        f"- wall time: {train['data_seconds']:.0f} s generating {train['clouds']:,} clouds "
        f"(and the held-out ones), {train['train_seconds']:.0f} s training ({train['steps']} "
        f"steps, {train['threads']} threads), {train['pretrain_wall_seconds']:.0f} s for the "
        f"whole pre-training call; load average (1 min) before / after "
        f"{train['load_average_1min']['before']:.2f} / {train['load_average_1min']['after']:.2f}",
        f"- backbone key {record['run_info']['config']['backbone_key']} (default recipe: "
        f"{record['run_info']['config']['default_recipe']}); fresh build {prints['fresh_build']}"
        + (
            ""
            if same is None
            else f", cached default {prints['cached_default']} "
            f"({'the same weights' if same else 'other weights'})"
        ),
        "",
        f"Held-out reconstruction (Chamfer-L2, {losses['clouds']} procedural test clouds, fixed "
        "masks; lower is better):",
        "",
        "| predictor | loss |",
        "|---|---:|",
        f"| random init (before pre-training) | {losses['initial']:.4f} |",
        f"| pre-trained | {losses['final']:.5f} |",
        f"| each masked patch as its centre point | {baselines['centre']:.5f} |",
        f"| each masked patch as an isotropic Gaussian blob (σ {matched['sigma']:.3f}, matched "
        f"to the patches' mean square radius) | {matched['loss']:.5f} |",
        f"| each masked patch as an isotropic Gaussian blob (σ {blob['sigma']:.3f}, best of a "
        f"grid on these patches) | {blob['loss']:.5f} |",
        "",
        "Linear probe on frozen features (" + record["run_info"]["config"]["probe_protocol"] + "):",
        "",
        "| split | backbone | accuracy % | mean class acc. % | trainable |",
        "|---|---|---:|---:|---:|",
    ]
    for split, row in info["linear_probe"].items():
        for backbone in ("pre-trained", "random init"):
            probe = row[backbone]
            lines.append(
                f"| {split} | {backbone} | {100 * probe['test_accuracy']:.2f} "
                f"| {100 * probe['mean_class_accuracy']:.2f} | {probe['trainable_params']:,} |"
            )
    return lines


# Columns of the grouping table: (timed row in the record, heading).
GROUPING_COLUMNS = (
    ("ours: fps", "ours FPS"),
    ("fpsample fps_sampling: fps", "fpsample FPS"),
    ("fpsample bucket_fps_kdline_sampling: fps", "fpsample bucket FPS"),
    ("naive loop: fps", "per-cloud loop FPS"),
    ("ours: group", "ours FPS + kNN"),
    ("fpsample fps_sampling + ours knn: group", "fpsample FPS + our kNN"),
    ("naive loop: group", "per-cloud loop FPS + kNN"),
)


def grouping_section(record: dict[str, Any]) -> list[str]:
    """Median milliseconds per batch for each FPS / grouping implementation, per configuration."""
    timings, info = record["train_info"]["time_ms"], record["eval_info"]
    lines = [
        "Median ms per batch (B clouds of N points → G centres, k neighbours each); "
        "rows interleaved per round.",
        "",
        "| configuration | "
        + " | ".join(heading for _, heading in GROUPING_COLUMNS)
        + " | FPS picks equal to fps_sampling's |",
        "|---|" + "---:|" * (len(GROUPING_COLUMNS) + 1),
    ]
    for configuration, measured in timings.items():
        cells = " | ".join(
            f"{measured[key]['median_ms']:.1f}" if key in measured else "-"
            for key, _ in GROUPING_COLUMNS
        )
        agreement = info["fps_sequence_agreement_with_fpsample"].get(configuration)
        shown = "-" if agreement is None else f"{100 * agreement:.0f} %"
        lines.append(f"| {configuration} | {cells} | {shown} |")
    return [*lines, "", *(f"- {note}" for note in info.get("notes", []))]


RENDERERS = {
    "point grouping": grouping_section,
    "point-peft finetune": finetune_section,
    "point-peft step cost": cost_section,
    "point-peft pretraining": pretraining_section,
    "point backbone": backbone_section,
}

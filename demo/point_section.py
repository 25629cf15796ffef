"""Point-PEFT section: the small pre-trained Point-MAE on simulated scans, three ways to fine-tune.

The default of ``point-peft train``: the small Point-MAE pre-trained here once and cached, the
procedural hard split (15 classes, one visible side, floor, clutter and occluders), the default
recipe. Point-PEFT against full fine-tuning and a linear probe, the same data, seed and number of
steps for each; the section ignores the demo's text task and its --epochs (which size the text
sections' runs).
"""

from __future__ import annotations

from pathlib import Path

from demo_options import SMOKE_POINT_DATA, SMOKE_POINT_TRAINING, DemoOptions

TITLE = "Point-PEFT: small pre-trained Point-MAE on the procedural hard split (simulated scans)"
NEEDS_TEXT_TASK = False

# (row name, point-peft train --method); "full fine-tuning" is format_results_table's reference.
SETTINGS = (
    ("Point-PEFT", "point-peft"),
    ("full fine-tuning", "full"),
    ("linear probe", "linear"),
)


def run(task, output_dir: Path, options: DemoOptions, earlier: dict[str, list[dict]]) -> list[dict]:
    from point_peft.finetuning import FinetuneRecipe, finetune
    from point_peft.finetuning_data import load_task

    sizes = SMOKE_POINT_DATA if options.smoke else {}
    steps = SMOKE_POINT_TRAINING if options.smoke else {}
    data = load_task("procedural-hard", **sizes)  # read once, shared by the rows
    rows = []
    for name, method in SETTINGS:
        print(f"[{name}]", flush=True)
        recipe = FinetuneRecipe(tuning_method=method, seed=options.seed, **sizes, **steps)
        result = finetune(recipe, output_dir / method, task=data, overwrite=True, save_every=None)
        parameters = result["parameters"]
        rows.append({
            "setting": name,
            "method": method,
            "test_accuracy": result["test_accuracy"],
            "mean_class_accuracy": result["mean_class_accuracy"],
            "trainable_params": parameters["trainable"],
            "total_params": parameters["total"],
            "trainable_percent": parameters["trainable_percent"],
            "activation_mib": result["activation_mib"],
            "step_ms": 1000 * result["step_time"]["median_s"],
            "train_seconds": result["seconds"]["train"],
            "steps": result["steps"],
            "learning_rate": result["learning_rate"],
            "dataset": result["dataset"],
        })  # fmt: skip
    print(format_step_table(rows))
    return rows


def format_step_table(rows: list[dict]) -> str:
    """Mean class accuracy and the median training step, against full fine-tuning's."""
    full = next((row["step_ms"] for row in rows if row["setting"] == "full fine-tuning"), None)
    header = (
        f"{'setting':<18} {'mean class acc':>14} {'step (ms)':>10} {'vs full FT':>10} {'lr':>8}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        ratio = f"{row['step_ms'] / full:.2f}x" if full else "-"
        lines.append(
            f"{row['setting']:<18} {100 * row['mean_class_accuracy']:>13.2f}% "
            f"{row['step_ms']:>10.0f} {ratio:>10} {row['learning_rate']:>8g}"
        )
    return "\n".join(lines) + f"\n({rows[0]['steps']} steps each, median step over the run)"


# run_demo.py prints this under the section's row table in the final summary.
format_extra = format_step_table

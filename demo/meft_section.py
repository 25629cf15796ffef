"""MEFT section: reversible fine-tuning of real MiniLM, against full fine-tuning's activation memory."""

from __future__ import annotations

import warnings
from pathlib import Path

from demo_options import DemoOptions

from peft_core.recipes import TextTask, fine_tune, load_classifier

TITLE = "MEFT: reversible adapters (activation memory measured on a 16-sentence batch)"


def run(
    task: TextTask, output_dir: Path, options: DemoOptions, earlier: dict[str, list[dict]]
) -> list[dict]:
    from meft import MeftConfig, get_meft_model

    epochs, seed = options.epochs, options.seed

    # The same full fine-tuning run as the core section's: reuse it when that section ran.
    full = next((r for r in earlier.get("core", []) if r["setting"] == "full fine-tuning"), None)
    if full is None:
        full = fine_tune(load_classifier(task, seed), task, output_dir / "full", name="full fine-tuning",
                         learning_rate=1e-4, epochs=epochs, seed=seed, overwrite=True)  # fmt: skip
    rows = [full]
    for variant in ("meft1", "meft2", "meft3"):
        config = MeftConfig(variant=variant, stream_dtype="float64")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = get_meft_model(load_classifier(task, seed), config)
        name = f"{variant.upper()} (float64 streams)"
        rows.append(fine_tune(model, task, output_dir / variant, name=name, learning_rate=5e-3, epochs=epochs,
                              seed=seed, method_config=config, overwrite=True))  # fmt: skip
    return rows

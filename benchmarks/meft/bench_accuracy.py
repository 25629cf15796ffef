"""Accuracy of MEFT against full fine-tuning and LoRA on a real model and real data.

Real all-MiniLM-L6-v2 on the embedded Rotten-Tomatoes polarity task (a seeded random training
subset, the full validation and test splits), several seeds per setting, mean ± std of test
accuracy. Every setting trains with peft-core's Trainer through the shared recipe, with the
learning rate that suits it (full fine-tuning wants ~1e-4, adapters ~1e-3 or more). MEFT runs with
float64 streams: with float32 streams the bottom layers' reconstructed inputs of this real model
are off by up to 80% (see the package README), which is a precision finding, not a training recipe.

`python -m benchmarks.run meft-accuracy` (about 1 h on 2 quiet CPU cores; `--quick` for a smoke
run). Each finished run is recorded at once; a rerun with --resume after an interruption resumes.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.records import make_record, read_matching_record, summary, write_record

SEEDS = (0, 1, 2)
MAX_TRAIN = 2000
EPOCHS = 2.0
MODEL = "all-MiniLM-L6-v2 (real weights), sequence classification head"
BATCH_SIZE = 32  # the shared recipe's defaults, recorded with every run
WARMUP_RATIO = 0.06
LAST_EPOCH_KEY = "best_validation_includes_last_epoch"


def _full(model):
    return model, None


def _lora(model):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"]
    )
    return get_peft_model(model, config), None


def _meft(variant: str) -> Callable:
    def attach(model):
        from meft import MeftConfig, get_meft_model

        config = MeftConfig(variant=variant, stream_dtype="float64")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the precision warning concerns float32 streams
            return get_meft_model(model, config), config

    return attach


# setting -> (how to adapt a fresh classifier, learning rate)
SETTINGS: dict[str, tuple[Callable, float]] = {
    "full fine-tuning": (_full, 1e-4),
    "LoRA r=8 (q,v)": (_lora, 1e-3),
    "MEFT1 (float64 streams)": (_meft("meft1"), 5e-3),
    "MEFT2 (float64 streams)": (_meft("meft2"), 5e-3),
    "MEFT3 (float64 streams)": (_meft("meft3"), 5e-3),
}


def run_one(
    name: str, seed: int, max_train: int, epochs: float, learning_rate: float | None = None
) -> dict[str, Any]:
    """One fine-tune of setting ``name``, at its own learning rate unless one is given."""
    from peft_core.recipes import fine_tune, load_classifier, load_text_task

    adapt, default_rate = SETTINGS[name]
    learning_rate = default_rate if learning_rate is None else learning_rate
    task = load_text_task(max_train=max_train, seed=seed)
    model, method_config = adapt(load_classifier(task, seed))
    with tempfile.TemporaryDirectory() as output_dir:
        result = fine_tune(
            model, task, Path(output_dir), name=f"{name} seed {seed}",
            learning_rate=learning_rate, epochs=epochs, seed=seed, method_config=method_config,
            progress_bar=False,
        )  # fmt: skip
    result["seed"] = seed
    # peft-core's trainer evaluates at the end of the last epoch too (it once skipped it): this
    # run's best validation figure covers every epoch; runs recorded before lack the mark
    result[LAST_EPOCH_KEY] = True
    print(
        f"   {name} lr {learning_rate:g} seed {seed}: test accuracy {result['test_accuracy']:.4f}",
        flush=True,
    )
    return result


def summarise_setting(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "learning_rate": SETTINGS[name][1],
        "test_accuracy": summary([r["test_accuracy"] for r in runs]),
        "trainable_params": runs[0]["trainable_params"],
        "total_params": runs[0]["total_params"],
        "activation_mib": runs[0]["activation_mib"],
        "train_seconds": summary([r["train_seconds"] for r in runs]),
        "runs": runs,
    }


def run_config(
    names: list[str], epochs: float, seeds: tuple[int, ...], max_train: int
) -> dict[str, Any]:
    """What a record of these runs must match for a rerun to resume from it."""
    return {
        "epochs": epochs, "batch_size": BATCH_SIZE, "seeds": list(seeds),
        "warmup_ratio": WARMUP_RATIO,
        "max_train": max_train, "learning_rates": {k: SETTINGS[k][1] for k in names},
    }  # fmt: skip


def data_description(max_train: int) -> str:
    return (
        f"Rotten-Tomatoes polarity: {max_train} random training sentences per seed, "
        "full validation/test splits, max length 64"
    )


def finished_runs(name: str, config: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    """Runs an earlier, interrupted invocation with the same configuration already recorded; the
    seeds may differ, since each run is one (setting, seed) and is looked up as such, and so may
    the settings: a setting added to a suite is run, and the others' runs are kept where their
    learning rate is the one asked for."""
    record = read_matching_record(name, config, ignoring=("seeds", "learning_rates"))
    if record is None:
        return {}
    recorded_rates = record["run_info"]["config"]["learning_rates"]
    wanted_rates = config["learning_rates"]
    return {
        (setting, run["seed"]): run
        for setting, row in record["eval_info"]["settings"].items()
        if setting in wanted_rates and recorded_rates.get(setting) == wanted_rates[setting]
        for run in row["runs"]
    }


RECORD_NAME = "meft accuracy minilm rotten-tomatoes"


def longer_record_name(epochs: float) -> str:
    """The record of a suite that reruns some settings for more than :data:`EPOCHS` epochs."""
    return f"{RECORD_NAME} {epochs:g} epochs"


def main(quick: bool = False) -> list[Path]:
    """Every setting, seeds 0-2, :data:`EPOCHS` epochs of :data:`MAX_TRAIN` sentences."""
    return run_accuracy(list(SETTINGS), EPOCHS, RECORD_NAME, quick)


def run_accuracy(
    names: list[str],
    epochs: float,
    record_name: str,
    quick: bool,
    seeds: tuple[int, ...] = SEEDS,
) -> list[Path]:
    """Runs every (setting of ``names``, seed), seed by seed, so that an interrupted invocation
    leaves every seed it reached measured for every setting. The record is rewritten after each
    run, and a rerun with --resume skips the runs already recorded with the same configuration,
    except those recorded before peft-core's trainer evaluated the last epoch: each of these is
    measured again and replaced, and kept in the record until then.
    ``names`` must start with full fine-tuning, the reference of every difference."""
    if names[0] != "full fine-tuning":
        raise ValueError(f"the settings must start with full fine-tuning, got {names}")
    seeds = seeds[:1] if quick else seeds
    max_train = 128 if quick else MAX_TRAIN
    epochs = 0.5 if quick else epochs
    name = record_name + (" quick" if quick else "")
    config = run_config(names, epochs, seeds, max_train)
    done = finished_runs(name, config)  # (setting, seed) -> run, this invocation's added in
    for seed in seeds:
        for setting in names:
            if is_current(done.get((setting, seed))):
                continue
            done[(setting, seed)] = run_one(setting, seed, max_train, epochs)
            write_record(_record(name, _summaries(done, names, seeds), config, max_train))
    return [write_record(_record(name, _summaries(done, names, seeds), config, max_train))]


def is_current(run: dict[str, Any] | None) -> bool:
    """Whether ``run`` was recorded and its best validation figure covers the last epoch (runs
    recorded before peft-core's trainer evaluated the last epoch do not)."""
    return run is not None and run.get(LAST_EPOCH_KEY) is True


def best_validation_includes_last_epoch(runs: list[dict[str, Any]]) -> bool:
    """Whether every run's best validation figure covers the last epoch: runs kept from a record
    written before peft-core's trainer evaluated at the end of the last epoch do not."""
    return all(map(is_current, runs))


def _summaries(
    done: dict[tuple[str, int], dict[str, Any]], names: list[str], seeds: tuple[int, ...]
) -> dict[str, dict[str, Any]]:
    """Every setting with a run, over all its runs: this invocation's and every recorded one it
    has not replaced yet, so that a record rewritten mid-way drops nothing."""
    runs = {
        setting: [done[(setting, s)] for s in seeds if (setting, s) in done] for setting in names
    }
    return {setting: summarise_setting(setting, rows) for setting, rows in runs.items() if rows}


def _record(name, settings, config, max_train) -> dict[str, Any]:
    compared = list(settings)[1:]
    if "full fine-tuning" in settings:  # run first, so absent only from an empty record
        full = settings["full fine-tuning"]["test_accuracy"]["mean"]
        for row in settings.values():
            row["accuracy_minus_full_points"] = 100 * (row["test_accuracy"]["mean"] - full)
    return make_record(
        name,
        method=f"{', '.join(compared)} vs full fine-tuning",
        model=MODEL,
        data=data_description(max_train),
        config=config,
        seed=None,
        eval_info={
            "settings": settings,
            "completed_runs": {k: len(v["runs"]) for k, v in settings.items()},
            LAST_EPOCH_KEY: best_validation_includes_last_epoch(
                [run for row in settings.values() for run in row["runs"]]
            ),
            "metric": "test accuracy of the final weights",
        },
    )

"""DEFT on QLoRA: real MiniLM loaded in 4-bit NF4, plain QLoRA vs QLoRA + the density loss.

The `deft-minilm` recipe with the base weights quantised: all-MiniLM-L6-v2 loaded through
bitsandbytes in 4-bit NF4 with double quantisation, computing in bf16
(:func:`deft.methods.qlora_quantization_config`; the classifier head stays fp32 and trains), LoRA
r=8 on Q/V on top (``apply_method(model, "qlora")``), lr 2e-3, :data:`~bench_minilm.EPOCHS`
epochs of the same 2,000 sentences, seeds 0–2. Per seed, side by side: QLoRA (λ = 0), QLoRA +
DEFT (λ = 1, the paper's), the matched-density threshold baseline on the plain QLoRA model, and
the step-time overhead of the loss (seed 0; 30 interleaved steps of each kind, timed before
the training). It runs where bitsandbytes does: on a CUDA device,
or on the CPU with bitsandbytes ≥ 0.46 and transformers ≥ 4.55 (the CPU dequantises the weights
in every forward). The report sets it beside the fp32 LoRA rows of `deft-minilm` (same seeds,
data and recipe).

`python -m benchmarks.run deft-qlora` (about 40 min on 2 quiet CPU cores; `--quick` for a smoke
run). The record is rewritten after every seed, and a rerun with --resume resumes after the last
one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from benchmarks.deft.bench_minilm import (
    EPOCHS,
    EVAL_BATCH_SIZE,
    MAX_TRAIN,
    METHODS,
    QUICK_EVAL,
    SEEDS,
    _quick_task,
    _step_time,
    aggregate,
    run_seed,
)
from benchmarks.deft.bench_minilm import _config as minilm_config
from benchmarks.deft.bench_minilm import _print as print_run
from benchmarks.deft.measurements import batches
from benchmarks.records import make_record, read_matching_record, record_path, write_record

RECORD_NAME = "deft qlora minilm"
ROW = (
    "QLoRA"  # the record keeps deft-minilm's layout, {method name: row}, so one renderer reads both
)
QLORA_TIMING_ROUNDS = 5  # rounds of 6 interleaved steps with and without the loss
LEARNING_RATE = METHODS["LoRA"][1]  # the LoRA row's: QLoRA trains the same adapters


def _device() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def _config(quick: bool) -> dict[str, Any]:
    """deft-minilm's configuration for its LoRA row, with the quantisation and the device."""
    from deft.methods import HEAD_MODULES

    seeds = SEEDS[:1] if quick else SEEDS
    config = minilm_config(seeds, 64 if quick else MAX_TRAIN, 0.5 if quick else EPOCHS, quick)
    del config["learning_rates"]
    if not quick:
        # a QLoRA step on this CPU varied by ±20 % from step to step: more samples than deft-minilm
        config["step_time"]["rounds"] = QLORA_TIMING_ROUNDS
    return {
        **config,
        "method": "qlora",
        "quantization": {
            "quant_type": "nf4",
            "double_quant": True,
            "compute_dtype": "bfloat16",
            "unquantised_modules": list(HEAD_MODULES),
        },
        "learning_rate": LEARNING_RATE,
        "max_train": 64 if quick else MAX_TRAIN,
        "device": _device(),
        "quick": quick,
    }


def _record(row: dict[str, Any], config: dict[str, Any], name: str) -> dict[str, Any]:
    import bitsandbytes

    return make_record(
        name,
        method="DEFT (density loss, λ=1) on QLoRA (LoRA r=8 on Q/V over 4-bit NF4 base weights) "
        "vs plain QLoRA (λ=0) and vs post-hoc thresholding at matched density",
        model=f"all-MiniLM-L6-v2 (real weights) in 4-bit NF4 (bitsandbytes "
        f"{bitsandbytes.__version__}), bf16 compute, fp32 classifier head",
        data=f"Rotten-Tomatoes polarity: {config['max_train']} random training sentences per "
        "seed, "
        + (f"{QUICK_EVAL}-sentence validation/test subsets" if config["quick"] else "full splits")
        + ", max length 64",
        config=config,
        seed=None,
        train_info={"step_time": row.get("step_time"), "train_seconds": row.get("train_seconds")},
        eval_info={
            "methods": {ROW: row},
            "completed": [f"{ROW} seed {run['seed']}" for run in row["runs"]],
            "metric": "test accuracy of the final weights; density in % of non-zero MLP "
            "activations (GELU output) on the test split, measured in fp32",
        },
    )


def main(quick: bool = False) -> list[Path]:
    from deft.methods import qlora_unavailable_reason
    from peft_core.recipes import load_text_task, random_subset

    if (reason := qlora_unavailable_reason()) is not None:
        raise SystemExit(f"deft-qlora: {reason}")
    config = _config(quick)
    name = RECORD_NAME + (" quick" if quick else "")
    seeds = config["seeds"]
    earlier = read_matching_record(name, config, ignoring=("step_time",))
    recorded = {} if earlier is None else earlier["eval_info"]["methods"][ROW]
    done = {run["seed"]: run for run in recorded.get("runs", [])}
    row: dict[str, Any] = {"method": "qlora", "learning_rate": LEARNING_RATE, "runs": []}
    timing = config["step_time"]
    unsaved = False  # a timing no record holds yet
    if recorded.get("step_time", {}).get("samples") == timing["batches"] * timing["rounds"]:
        row["step_time"] = recorded["step_time"]
    else:  # first run, or an earlier one timed with other settings: timed first, alone
        unsaved = True
        task = load_text_task(max_train=config["max_train"], seed=seeds[0], verbose=False)
        row["step_time"] = _step_time(
            task, "qlora", LEARNING_RATE, seeds[0],
            (timing["batch_size"], timing["batches"], timing["rounds"]),
        )  # fmt: skip
    for seed in seeds:
        if seed in done:  # recorded by an interrupted earlier invocation
            row["runs"].append(done[seed])
            row.update(aggregate(row["runs"]))
            row["trainable_params"] = done[seed]["peft"]["trainable_params"]
            continue
        task = load_text_task(max_train=config["max_train"], seed=seed, verbose=False)
        if quick:
            task = _quick_task(task, QUICK_EVAL, seed)
        calibration_set = random_subset(task.train, config["calibration_examples"], seed + 1)
        calibration = batches(calibration_set, task.collate, EVAL_BATCH_SIZE)
        run = run_seed(task, "qlora", LEARNING_RATE, seed, config["epochs"], calibration)
        row["runs"].append(run)
        row.update(aggregate(row["runs"]))
        row["trainable_params"] = run["peft"]["trainable_params"]
        print_run(ROW, run, row)
        write_record(_record(row, config, name))
        unsaved = False
    if unsaved:  # every seed was recorded before; only the timing is new
        write_record(_record(row, config, name))
    return [record_path(name)]

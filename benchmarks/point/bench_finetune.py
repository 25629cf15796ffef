"""Point-PEFT against the usual ways to fine-tune a pre-trained point-cloud backbone.

Two records of the fine-tuning runs, one per task, and one of the training-step cost:

- ``point-peft finetune kicad`` — the real task: KiCad's CAD models in 14 categories
  (:class:`point_peft.corpora.KiCadCategories`, fetched once by ``nox -s corpora``), and
  ``point-peft finetune procedural-hard`` — simulated scans of 15 procedural classes. The small
  Point-MAE pre-trained here (:func:`point_peft.default_backbone_checkpoint`) is fine-tuned with
  Point-PEFT (queries per step, and cached per training sample), full fine-tuning, a linear
  probe, bottleneck adapters, VPT-deep and BitFit, each with its step size, the same recipe and
  data otherwise (``point-peft train``'s, :data:`EPOCHS` epochs), for every seed of
  :data:`SEEDS`; mean ± std of overall and mean class accuracy of the final weights, trainable
  parameters, the median step of the training loop and its ratio to full fine-tuning's,
  activation memory.
- ``point-peft step cost`` — one training step (forward, backward, AdamW) of each setting, timed
  side by side and interleaved round by round, with activation memory (bytes autograd saves,
  exact) and peak memory (CPU: the process's RSS high-water mark above its RSS with the model
  built, each row in a fresh process; CUDA: the allocator's peak), on the small backbone and at the
  official scale (12 × 384, 1,024 points in 64 patches of 32, random weights; 40 classes).

``python -m benchmarks.run point-peft`` (estimated 1 to 2 hours on 2 quiet CPU cores from the
step times of the default recipe; ``--quick``: a smoke run of about a minute on tiny subsets).
Each finished run is recorded at once; a rerun with --resume after an interruption resumes from the
recorded runs of the same configuration. On a busy machine set ``OMP_NUM_THREADS=1``: two intra-op
threads on two contended cores make every step many times slower.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.process_memory import peak_rss_above_current
from benchmarks.records import (
    add_run_arguments,
    configure,
    make_record,
    read_matching_record,
    summary,
    write_record,
)

SEEDS = (0, 1, 2)
EPOCHS = 8.0
TASKS = ("kicad", "procedural-hard")
#: setting -> row name, in table order ("full fine-tuning" is every ratio's reference). A setting
#: is a ``--method`` unless :data:`SETTING_RECIPES` says otherwise.
SETTINGS = {
    "point-peft": "Point-PEFT",
    "point-peft-cached": "Point-PEFT (cached queries)",
    "full": "full fine-tuning",
    "linear": "linear probe",
    "adapter": "adapters",
    "vpt-deep": "VPT-deep",
    "bitfit": "BitFit",
}
#: settings that are not a plain ``--method``: its method and options. Cached queries are the
#: features of the first augmented copy a sample was seen as, reused in later epochs: the step
#: skips the query encoder, and this row measures what that costs in accuracy.
SETTING_RECIPES: dict[str, tuple[str, dict[str, Any]]] = {
    "point-peft-cached": ("point-peft", {"cache_query_features": True}),
}
MIB = 2**20


# -- fine-tuning runs ------------------------------------------------------------------------------


def subset(task, per_class: int | None, test_per_class: int | None):
    """The first ``per_class`` train and ``test_per_class`` test clouds of every class."""
    from point_peft.finetuning_data import ClassificationTask, LabelledClouds

    def take(split: LabelledClouds, count: int | None) -> LabelledClouds:
        if count is None:
            return split
        keep = torch.cat([torch.nonzero(split.labels == label).flatten()[:count]
                          for label in range(len(split.class_names))])  # fmt: skip
        keep = keep.sort().values
        return LabelledClouds(split.points[keep], split.labels[keep], split.class_names)

    return ClassificationTask(
        task.name, take(task.train, per_class), take(task.test, test_per_class)
    )


def load_benchmark_task(dataset: str, quick: bool):
    """The task, or None when the KiCad corpus is not cached in a quick run (a full run fails)."""
    from point_peft.finetuning_data import load_task

    options: dict[str, Any] = {"progress": False}
    if quick and dataset.startswith("procedural"):
        options.update(num_points=256, samples_per_class=4, test_samples_per_class=2)
    try:
        task = load_task(dataset, **options)
    except FileNotFoundError as error:
        if not quick:
            raise FileNotFoundError(
                f"{error}\nthe {dataset} benchmark needs its corpus: nox -s corpora "
                "(or python -m point_peft.corpora fetch)"
            ) from None
        print(f"   {dataset}: skipped in the quick run, corpus not cached ({error})", flush=True)
        return None
    return subset(task, 4, 2) if quick and dataset == "kicad" else task


def checkpoint_fingerprint(path: str | Path) -> str:
    """16 hex digits of a checkpoint's weights (names, shapes, dtypes and values)."""
    import hashlib

    from point_peft.models.loading import read_checkpoint

    state = read_checkpoint(path)
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().contiguous().cpu()
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def backbone_fingerprint() -> str:
    """:func:`checkpoint_fingerprint` of the default backbone.

    The backbone is pre-trained on the machine that runs the benchmark, and the same recipe and
    seed can give other weights on another machine (float reductions may round differently with
    another CPU or thread count); the fine-tuning runs of one record must share one backbone, so
    the fingerprint is part of the configuration a resumed run has to match.
    """
    from point_peft.pretrained import default_backbone_checkpoint

    return checkpoint_fingerprint(default_backbone_checkpoint(progress=False))


def run_one(task, setting: str, seed: int, recipe_options: dict[str, Any]) -> dict[str, Any]:
    from point_peft.finetuning import FinetuneRecipe, finetune

    method, method_options = SETTING_RECIPES.get(setting, (setting, {}))
    recipe = FinetuneRecipe(dataset=task.name, tuning_method=method, seed=seed,
                            method_options=dict(method_options), **recipe_options)  # fmt: skip
    with tempfile.TemporaryDirectory() as output_dir:
        result = finetune(recipe, output_dir, task=task, progress=False, save_every=None)
    print(
        f"   {task.name} {SETTINGS[setting]} seed {seed}: accuracy {result['test_accuracy']:.4f}, "
        f"median step {1000 * result['step_time']['median_s']:.0f} ms",
        flush=True,
    )
    return {
        "seed": seed,
        "test_accuracy": result["test_accuracy"],
        "mean_class_accuracy": result["mean_class_accuracy"],
        "trainable_params": result["parameters"]["trainable"],
        "total_params": result["parameters"]["total"],
        "learning_rate": result["learning_rate"],
        "step_time_s": result["step_time"],
        "activation_mib": result["activation_mib"],
        "train_seconds": result["seconds"]["train"],
        "memory_bank_seconds": result["seconds"]["memory_bank"],
        "steps": result["steps"],
        "first_loss": result["first_loss"],
        "last_loss": result["last_loss"],
        "loss_curve": result["loss_curve"],
    }


def summarise_setting(runs: list[dict[str, Any]]) -> dict[str, Any]:
    first = runs[0]
    return {
        "learning_rate": first["learning_rate"],
        "test_accuracy": summary([run["test_accuracy"] for run in runs]),
        "mean_class_accuracy": summary([run["mean_class_accuracy"] for run in runs]),
        "trainable_params": first["trainable_params"],
        "total_params": first["total_params"],
        "trainable_percent": 100 * first["trainable_params"] / first["total_params"],
        "step_time_median_s": statistics.median(run["step_time_s"]["median_s"] for run in runs),
        "activation_mib": first["activation_mib"],
        "train_seconds": summary([run["train_seconds"] for run in runs]),
        "runs": runs,
    }


def finetune_records(quick: bool) -> list[Path]:
    seeds = SEEDS[:1] if quick else SEEDS
    recipe_options: dict[str, Any] = (
        {"max_steps": 2, "batch_size": 8} if quick else {"epochs": EPOCHS}
    )
    paths = []
    for dataset in TASKS:
        task = load_benchmark_task(dataset, quick)
        if task is None:
            continue
        name = f"point-peft finetune {dataset}" + (" quick" if quick else "")
        config = {"seeds": list(seeds), "recipe": recipe_options, "data": task.describe(),
                  "backbone": f"default small Point-MAE {backbone_fingerprint()}"}  # fmt: skip
        earlier = read_matching_record(name, config)
        finished = {
            (method, run["seed"]): run
            for method, row in (earlier or {}).get("eval_info", {}).get("settings", {}).items()
            for run in row["runs"]
        }
        runs: dict[str, list[dict[str, Any]]] = {}
        for setting in SETTINGS:
            for seed in seeds:
                run = finished.get((setting, seed)) or run_one(task, setting, seed, recipe_options)
                runs.setdefault(setting, []).append(run)
                path = write_record(_finetune_record(name, task, config, runs))
        paths.append(path)
    return paths


def _finetune_record(name, task, config, runs) -> dict[str, Any]:
    settings = {method: summarise_setting(method_runs) for method, method_runs in runs.items()}
    full = settings.get("full")
    for row in settings.values():
        if full is not None:
            row["accuracy_minus_full_points"] = 100 * (
                row["test_accuracy"]["mean"] - full["test_accuracy"]["mean"]
            )
            row["step_time_ratio_to_full"] = row["step_time_median_s"] / full["step_time_median_s"]
    data = task.describe()
    return make_record(
        name,
        method="Point-PEFT (queries per step, and cached) vs full fine-tuning, linear probe, "
        "adapters, VPT-deep, BitFit",
        model="small Point-MAE (4 x 96, 32 patches of 16) pre-trained by point-peft, new head",
        data=f"{task.name}: {data['train_clouds']} train / {data['test_clouds']} test clouds of "
        f"{data['num_points']} points, {len(data['classes'])} classes",
        config=config,
        train_info={
            "step": "training-loop median (forward, backward, AdamW, data); the first step "
            "left out",
            "load_average_1min": os.getloadavg()[0],
        },
        eval_info={
            "settings": settings,
            "row_names": SETTINGS,
            "metric": "overall and mean class accuracy of the final weights on the test split",
        },
    )


# -- the cost of a training step -------------------------------------------------------------------

COST_ROWS = {
    "Point-PEFT": ("point-peft", False),
    "Point-PEFT (cached queries)": ("point-peft", True),
    "full fine-tuning": ("full", False),
    "linear probe": ("linear", False),
    "adapters": ("adapter", False),
    "VPT-deep": ("vpt-deep", False),
    "BitFit": ("bitfit", False),
}
OFFICIAL_ROWS = ("Point-PEFT", "Point-PEFT (cached queries)", "full fine-tuning")


def cost_configurations(quick: bool) -> dict[str, dict[str, Any]]:
    """Name -> architecture, points per cloud, memory-bank size, batch and the rows measured."""
    from point_peft.models import PointTransformerConfig

    small_rows = list(COST_ROWS) if not quick else list(OFFICIAL_ROWS)
    return {
        "small 4x96 N1024 G32 k16": {
            "config": PointTransformerConfig.small(num_classes=15).to_dict(),
            "num_points": 1024, "bank_size": 3000, "batch": 8 if quick else 32,
            "rows": small_rows,
        },
        "official 12x384 N1024 G64 k32": {
            "config": PointTransformerConfig.point_mae(num_classes=40).to_dict(),
            "num_points": 1024, "bank_size": 9840, "batch": 2 if quick else 32,
            "rows": list(OFFICIAL_ROWS),
        },
    }  # fmt: skip


def build_row(row: str, setting: dict[str, Any], device: str):
    """The model of ``row``, a batch, and its step function (forward, backward, AdamW)."""
    from point_peft.baselines import get_baseline_model
    from point_peft.finetuning_methods import ClassificationLoss, point_peft_config_for
    from point_peft.method import MemoryBank, get_point_peft_model
    from point_peft.models import PointMAE, PointTransformerConfig

    method, cached = COST_ROWS[row]
    config = PointTransformerConfig.from_dict(dict(setting["config"]))
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    backbone = PointMAE(config)
    if method == "point-peft":
        method_config = point_peft_config_for(config, cache_query_features=cached)
        features = torch.randn(config.embed_dim, setting["bank_size"], generator=generator)
        bank = MemoryBank(features, num_groups=method_config.query_num_groups,
                          group_size=method_config.query_group_size)  # fmt: skip
        model = get_point_peft_model(backbone, method_config, memory_bank=bank)
    else:
        model = get_baseline_model(backbone, method)
    model = model.to(device).train()
    batch = setting["batch"]
    inputs = {
        "points": (torch.rand(batch, setting["num_points"], 3, generator=generator) * 2 - 1),
        "labels": torch.randint(config.num_classes, (batch,), generator=generator),
        "sample_indices": torch.arange(batch),
    }
    inputs = {key: value.to(device) for key, value in inputs.items()}
    loss = ClassificationLoss(None, 0.0, pass_sample_indices=cached)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        loss(model, inputs)[0].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return model, inputs, loss, step


def peak_memory(row: str, setting: dict[str, Any], threads: int) -> dict[str, Any]:
    """Runs in a fresh process: the memory the first training step takes above the built model.

    The peak is the process's RSS high-water mark, reset once the model is built
    (:mod:`benchmarks.process_memory`).
    """
    from peft_core import cuda_peak_memory

    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    _, _, _, step = build_row(row, setting, device)
    # the first step: AdamW's state, the backward peak, the query cache filled
    result: dict[str, Any] = {"peak_bytes_above_model": peak_rss_above_current(step)}
    if device == "cuda":
        result["cuda_peak_bytes"] = cuda_peak_memory(step)
    return result


def _in_fresh_process(*args) -> dict[str, Any]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(peak_memory, args)


QUERY_PASS = "query pass"


def _query_pass(built_row):
    """The frozen query encoder's forward on the row's batch (no autograd), or None: the part of
    a Point-PEFT step that ``cache_query_features`` skips."""
    if built_row is None:
        return None
    model, inputs = built_row[0], built_row[1]
    return lambda: model.query_encoder(inputs["points"])


def _add_query_floor(measured: dict, query: dict, full: dict) -> None:
    """Point-PEFT's step is its cached step plus one query pass; its time ratio to full
    fine-tuning cannot go below (cached step + query pass) / full step, whatever the code does."""
    row = measured["Point-PEFT"]
    row["query_pass_s"] = query["step_time_s"]
    row["query_pass_ratio_to_full"] = (
        query["step_time_s"]["median_s"] / full["step_time_s"]["median_s"]
    )
    cached = measured.get("Point-PEFT (cached queries)")
    if cached is not None:
        row["floor_ratio_to_full"] = (
            cached["step_time_s"]["median_s"] + query["step_time_s"]["median_s"]
        ) / full["step_time_s"]["median_s"]


def measure_costs(setting: dict[str, Any], rounds: int, device: str) -> dict[str, dict[str, Any]]:
    from peft_core import count_parameters, measure_activation_memory, time_step

    built = {row: build_row(row, setting, device) for row in setting["rows"]}
    measured: dict[str, dict[str, Any]] = {}
    for row, (model, inputs, loss, step) in built.items():
        trainable, total = count_parameters(model)
        step()  # warm-up: allocator, AdamW state, the query cache of the cached row
        activation = measure_activation_memory(lambda m=model, i=inputs, f=loss: f(m, i)[0], model)
        measured[row] = {"trainable_params": trainable, "total_params": total,
                         "trainable_percent": 100 * trainable / total,
                         "activation_bytes": activation, "samples_s": []}  # fmt: skip
    timed = {row: step for row, (_, _, _, step) in built.items()}
    query_pass = _query_pass(built.get("Point-PEFT"))
    if query_pass is not None:
        timed[QUERY_PASS] = query_pass
        measured[QUERY_PASS] = {"samples_s": []}
    for _ in range(rounds):  # interleaved: load from other processes hits every row alike
        for row, step in timed.items():
            measured[row]["samples_s"].extend(time_step(step, warmup=0, repeats=1).samples)
    for row, values in measured.items():
        samples = values["samples_s"]
        values["step_time_s"] = {"median_s": statistics.median(samples), "min_s": min(samples),
                                 "max_s": max(samples)}  # fmt: skip
        if row != QUERY_PASS:
            values.update(_in_fresh_process(row, setting, torch.get_num_threads()))
    query = measured.pop(QUERY_PASS, None)
    full = measured["full fine-tuning"]
    if query is not None:
        _add_query_floor(measured, query, full)
    for values in measured.values():
        values["time_ratio_to_full"] = (
            values["step_time_s"]["median_s"] / full["step_time_s"]["median_s"]
        )
        values["activation_ratio_to_full"] = values["activation_bytes"] / full["activation_bytes"]
        if values["peak_bytes_above_model"] is not None:
            values["peak_ratio_to_full"] = values["peak_bytes_above_model"] / max(
                full["peak_bytes_above_model"], 1
            )
    return measured


def cost_record(quick: bool) -> Path:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rounds = 2 if quick else 7
    load_before = os.getloadavg()[0]
    configurations = cost_configurations(quick)
    tables = {}
    for key, setting in configurations.items():
        print(f"   step cost, {key}, batch {setting['batch']} ...", flush=True)
        tables[key] = measure_costs(setting, rounds, device)
        for row, values in tables[key].items():
            print(f"      {row:>28}: step {1000 * values['step_time_s']['median_s']:8.1f} ms "
                  f"({values['time_ratio_to_full']:.2f}x full FT), activations "
                  f"{values['activation_bytes'] / MIB:7.1f} MiB", flush=True)  # fmt: skip
        if "floor_ratio_to_full" in tables[key].get("Point-PEFT", {}):
            row = tables[key]["Point-PEFT"]
            print(f"      query pass {1000 * row['query_pass_s']['median_s']:.1f} ms: cached step + "
                  f"query = {row['floor_ratio_to_full']:.2f}x full FT (floor)", flush=True)  # fmt: skip
    record = make_record(
        "point-peft step cost" + (" quick" if quick else ""),
        method="Point-PEFT (queries per step, and cached) vs full fine-tuning and the baselines",
        model="Point-MAE small 4x96 and official 12x384 (64 x 32 patches), random init",
        data="uniform random clouds in [-1, 1]^3, float32",
        config={"rounds": rounds, "device": device, "configurations": configurations},
        seed=0,
        train_info={
            "tables": tables,
            "step": "forward + backward + AdamW, median of interleaved rounds after a warm-up "
            "step; peak memory of each row in a fresh process",
            "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        },
    )
    return write_record(record)


def main(quick: bool = False) -> list[Path]:
    """The fine-tuning records (one run at a time, recorded after each), then the step costs."""
    return [*finetune_records(quick), cost_record(quick)]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser)
    parser.add_argument("--cost-only", action="store_true", help="only the step-cost record")
    arguments = parser.parse_args()
    configure(quick=arguments.quick, resume=arguments.resume, directory=arguments.output_dir)
    written = [cost_record(arguments.quick)] if arguments.cost_only else main(arguments.quick)
    for path in written:
        print(f"   wrote {path}")

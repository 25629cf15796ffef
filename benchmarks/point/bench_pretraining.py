"""What pre-training the default small Point-MAE costs and buys: time, reconstruction, probes.

One record, ``point-peft pretraining``, of the default backbone recipe
(:func:`point_peft.pretrained.default_backbone_config` / ``default_backbone_recipe``), pre-trained
afresh into a temporary folder (the cached default backbone is never written; it is read, where
present, only to compare its weights' fingerprint with the fresh build's):

- wall time: generating the clouds (train and held-out), training, the whole ``pretrain`` call;
- the held-out reconstruction loss (Chamfer-L2 on the procedural test clouds of both variants,
  fixed masks: :func:`point_peft.pretraining_recipe.reconstruction_loss`) of the initial and the
  pre-trained weights, and two trivial predictors scored on the same masked patches: every
  masked patch predicted as its centre point (k copies of it), and as an isotropic Gaussian blob
  around it (seeded draws; the scale chosen on these held-out patches, so an oracle-sized blob);
- a linear probe (:mod:`point_peft.baselines` ``"linear"``: the new head only, the backbone
  frozen) of the pre-trained backbone and of a random-init one of the same architecture (the
  pre-training's own initial weights, seed 0) on the clean and the hard procedural splits, each
  by :func:`point_peft.finetuning.finetune` with the default :class:`FinetuneRecipe`, seed 0.

``python -m benchmarks.run point-pretraining`` (about 4 minutes on 2 quiet CPU cores;
``--quick``: a smoke run of seconds on a tiny recipe, recorded as ``... quick``).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.point.bench_finetune import checkpoint_fingerprint
from benchmarks.records import add_run_arguments, configure, make_record, write_record

NAME = "point-peft pretraining"
SEED = 0
PROBE_TASKS = ("procedural-clean", "procedural-hard")
BACKBONES = ("pre-trained", "random init")
#: multiples of the moment-matched scale tried for the blob predictor (best one reported)
BLOB_SCALES = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2)
PROBE_PROTOCOL = (
    "point_peft.finetuning.finetune, tuning_method 'linear' (the new head only; encoder, cls "
    "token/pos and final norm frozen), default FinetuneRecipe: 4 epochs, batch 32, AdamW lr 1e-2, "
    "weight decay 0.05, cosine schedule with 10% warm-up, scale-rotate augmentation, label "
    "smoothing 0, no voting, training seed 0, data seed 0; accuracy of the final weights on the "
    "test split"
)


def setup(quick: bool):
    """The architecture, the pre-training recipe and the fine-tuning options of the probes."""
    from point_peft.pretrained import default_backbone_config, default_backbone_recipe

    config, recipe = default_backbone_config(), default_backbone_recipe()
    probe: dict[str, Any] = {}
    if quick:
        config = config.replace(depth=1, decoder_depth=1, num_groups=8)
        recipe = dataclasses.replace(
            recipe, num_points=128, procedural_samples_per_class=2, max_steps=3, batch_size=8,
            eval_samples_per_class=1,
        )  # fmt: skip
        probe = {"num_points": 128, "samples_per_class": 4, "test_samples_per_class": 2,
                 "max_steps": 2, "batch_size": 8}  # fmt: skip
    return config, recipe, probe


def _pretrainer(config, state: dict[str, torch.Tensor]):
    from point_peft.models import PointMAEPretrainer

    model = PointMAEPretrainer(config)
    model.load_state_dict(state)
    return model.eval()


@torch.no_grad()
def trivial_baselines(model, clouds: torch.Tensor, batch_size: int = 32) -> dict[str, Any]:
    """Chamfer-L2 of the centre and blob predictors on the masked patches that
    :func:`reconstruction_loss` scores (batch ``b`` masked by a generator seeded ``b``)."""
    from point_peft.models.chamfer import chamfer_l2

    model.eval()
    targets = []  # (batch, M, k, 3) relative to the centres; the weights play no part in them
    for index, start in enumerate(range(0, clouds.shape[0], batch_size)):
        output = model(clouds[start : start + batch_size],
                       generator=torch.Generator().manual_seed(index))  # fmt: skip
        targets.append(output.target)

    def score(predict) -> float:
        total = 0.0
        for index, target in enumerate(targets):
            flat = target.reshape(-1, target.shape[-2], 3)
            predicted = predict(flat, torch.Generator().manual_seed(1000 + index))
            total += float(chamfer_l2(predicted, flat)) * target.shape[0]
        return total / clouds.shape[0]

    mean_square = float(torch.cat([t.reshape(-1, 3) for t in targets]).pow(2).sum(-1).mean())
    sigma = (mean_square / 3) ** 0.5  # E|x|^2 of the blob = the patches' mean square radius
    blobs = {
        factor: score(lambda t, g, s=factor * sigma: s * torch.randn(t.shape, generator=g))
        for factor in BLOB_SCALES
    }
    best = min(blobs, key=blobs.get)
    return {
        "centre": score(lambda t, g: torch.zeros_like(t)),
        "blob_moment_matched": {"sigma": sigma, "loss": blobs[1.0]},
        "blob_best": {"sigma": best * sigma, "factor": best, "loss": blobs[best]},
        "blob_by_factor": {str(factor): loss for factor, loss in blobs.items()},
        "patch_mean_square_radius": mean_square,
    }


def write_random_init(config, recipe, path: Path) -> None:
    """The pre-training's initial weights (seeded as :func:`pretrain` seeds them), as a file."""
    from point_peft.models import PointMAEPretrainer
    from point_peft.pretraining_recipe import RECIPE_VERSION, write_checkpoint

    torch.manual_seed(recipe.seed)
    run_config = {
        "recipe_version": RECIPE_VERSION,
        "model_config": config.to_dict(),
        "recipe": None,
    }
    write_checkpoint(PointMAEPretrainer(config), path, run_config, global_step=0)


def linear_probes(checkpoints: dict[str, Path], probe: dict[str, Any], cache_dir: Path):
    from point_peft.finetuning import FinetuneRecipe, finetune
    from point_peft.finetuning_data import load_task

    results: dict[str, dict[str, Any]] = {}
    for dataset in PROBE_TASKS:
        recipe = FinetuneRecipe(dataset=dataset, tuning_method="linear", seed=SEED, **probe)
        started = time.perf_counter()
        task = load_task(
            dataset, num_points=recipe.num_points, samples_per_class=recipe.samples_per_class,
            test_samples_per_class=recipe.test_samples_per_class, cache_dir=cache_dir,
            seed=recipe.data_seed, progress=False,
        )  # fmt: skip
        row: dict[str, Any] = {
            "data": task.describe(),
            "data_seconds": time.perf_counter() - started,
        }
        for backbone, checkpoint in checkpoints.items():
            with tempfile.TemporaryDirectory() as output_dir:
                result = finetune(recipe, output_dir, backbone=checkpoint, task=task,
                                  cache_dir=cache_dir, progress=False, save_every=None)  # fmt: skip
            row[backbone] = {
                "test_accuracy": result["test_accuracy"],
                "mean_class_accuracy": result["mean_class_accuracy"],
                "trainable_params": result["parameters"]["trainable"],
                "learning_rate": result["learning_rate"],
                "steps": result["steps"],
                "train_seconds": result["seconds"]["train"],
                "first_loss": result["first_loss"],
                "last_loss": result["last_loss"],
            }
            print(f"   linear probe, {dataset}, {backbone}: accuracy "
                  f"{result['test_accuracy']:.4f}", flush=True)  # fmt: skip
        row["recipe"] = recipe.to_dict()
        results[dataset] = row
    return results


def main(quick: bool = False) -> list[Path]:
    from point_peft.pretrained import backbone_key, default_backbone_dir
    from point_peft.pretraining_recipe import (
        CHECKPOINT_NAME,
        evaluation_clouds,
        pretrain,
        reconstruction_loss,
    )

    suite_started = time.perf_counter()
    load_before = os.getloadavg()[0]
    config, recipe, probe = setup(quick)
    key = backbone_key(config, recipe)
    cached = default_backbone_dir() / CHECKPOINT_NAME  # read only, never built here
    is_default = default_backbone_dir().name.endswith(key)
    if not quick and not is_default:
        raise RuntimeError("the suite's recipe is not the default backbone's (key mismatch)")
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        print(f"   pre-training ({'tiny' if quick else 'default'} recipe, key {key}) ...",
              flush=True)  # fmt: skip
        started = time.perf_counter()
        # as default_backbone_checkpoint() builds it (save_every=50), in a folder of our own
        result = pretrain(config, recipe, work / "run", save_every=50, progress=False,
                          cache_dir=work / "cache")  # fmt: skip
        pretrain_wall = time.perf_counter() - started
        checkpoint = work / "run" / CHECKPOINT_NAME
        random_init = work / "random_init.pth"
        write_random_init(config, recipe, random_init)

        held_out = evaluation_clouds(recipe)
        trained = _pretrainer(config, torch.load(checkpoint, weights_only=True)["base_model"])
        initial = _pretrainer(config, torch.load(random_init, weights_only=True)["base_model"])
        recorded = result["held_out_reconstruction_loss"]
        losses = {
            "clouds": recorded["clouds"],
            "initial": recorded["initial"],
            "final": recorded["final"],
            # re-measured from the written files: the random-init file is pretrain's start
            "initial_from_file": reconstruction_loss(initial, held_out),
            "final_from_file": reconstruction_loss(trained, held_out),
        }
        baselines = trivial_baselines(trained, held_out)
        print(f"   held-out reconstruction {losses['initial']:.4f} -> {losses['final']:.5f}; "
              f"centre {baselines['centre']:.5f}, blob {baselines['blob_best']['loss']:.5f}",
              flush=True)  # fmt: skip
        fingerprints = {
            "fresh_build": checkpoint_fingerprint(checkpoint),
            "random_init": checkpoint_fingerprint(random_init),
            "cached_default": checkpoint_fingerprint(cached)
            if is_default and cached.is_file()
            else None,
        }
        probes = linear_probes(
            {"pre-trained": checkpoint, "random init": random_init}, probe, work / "cache"
        )
    record = make_record(
        NAME + (" quick" if quick else ""),
        method="Point-MAE masked autoencoding (default small-backbone recipe), then a linear "
        "probe of the frozen encoder vs a random-init encoder",
        model="small Point-MAE (4 x 96, 32 patches of 16)" if not quick else "tiny Point-MAE",
        data="pre-training: procedural clean + hard train splits; held-out: their test splits; "
        "probes: procedural clean and hard, "
        + ", ".join(
            f"{row['data']['train_clouds']} train / {row['data']['test_clouds']} test "
            f"clouds of {row['data']['num_points']} points"
            for row in probes.values()
        ),
        config={
            "architecture": config.to_dict(),
            "recipe": recipe.to_dict(),
            "backbone_key": key,
            "default_recipe": is_default,
            "probe_options": probe,
            "probe_protocol": PROBE_PROTOCOL,
        },
        seed=SEED,
        train_info={
            "data_seconds": result["data"]["seconds"],
            "train_seconds": result["train_seconds"],
            "pretrain_wall_seconds": pretrain_wall,
            "suite_wall_seconds": time.perf_counter() - suite_started,
            "timing_note": "data_seconds: generating the train clouds and the held-out clouds; "
            "train_seconds: the trainer's loop (checkpoints every 50 steps, as "
            "default_backbone_checkpoint builds it); pretrain_wall_seconds: the whole pretrain() "
            "call (data, initial held-out loss, training, final held-out loss, writing)",
            "clouds": result["data"]["clouds"],
            "steps": result["steps"],
            "threads": result["threads"],
            "first_loss": result["first_loss"],
            "last_loss": result["last_loss"],
            "loss_curve": result["loss_curve"],
            "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        },
        eval_info={
            "held_out_reconstruction_loss": losses,
            "trivial_baselines": baselines,
            "fingerprints": {
                **fingerprints,
                "fresh_equals_cached": fingerprints["cached_default"] == fingerprints["fresh_build"]
                if fingerprints["cached_default"] is not None
                else None,
            },
            "linear_probe": probes,
            "metric": "held-out Chamfer-L2 (lower is better); probe: overall and mean class "
            "accuracy on the test split",
        },
    )
    return [write_record(record)]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser)
    arguments = parser.parse_args()
    configure(quick=arguments.quick, resume=arguments.resume, directory=arguments.output_dir)
    for path in main(arguments.quick):
        print(f"   wrote {path}")

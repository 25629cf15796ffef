"""Point-MAE pre-training on the peft-core :class:`~peft_core.Trainer`, ending in an official file.

:func:`pretrain` pools the clouds of a :class:`PretrainingRecipe`'s sources
(:mod:`point_peft.pretraining_data`), trains :class:`~point_peft.models.PointMAEPretrainer` (60%
of the patches masked, Chamfer-L2 reconstruction) with AdamW and a cosine schedule, and writes
into ``output_dir``:

- ``point_mae_pretrain.pth``: ``{"base_model": state_dict, "point_peft": {...}}``, the layout of
  the official Point-MAE pre-train files, written atomically. :meth:`PointMAE.from_pretrained`
  loads it (the ``point_peft`` entry records the architecture, which the official files do not);
- ``pretrain_result.json``: architecture, recipe, data, loss curve, held-out reconstruction loss
  before and after, time (``train_seconds``: all segments of a resumed run, as the checkpoints
  record them; ``train_seconds_this_segment``: the last one);
- the trainer's ``checkpoints/`` (every ``save_every`` steps) and ``log.jsonl``: a run that is
  interrupted continues with ``resume=True`` and ends with the weights an uninterrupted run has.

Example (a few seconds on a CPU):
    >>> from point_peft.models import PointMAE, PointTransformerConfig
    >>> config = PointTransformerConfig.small(depth=1, decoder_depth=1, num_groups=8)
    >>> recipe = PretrainingRecipe(
    ...     data=("procedural-clean",), num_points=64, procedural_samples_per_class=1, max_steps=2,
    ...     batch_size=5, eval_samples_per_class=0,
    ... )  # fmt: skip
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     result = pretrain(config, recipe, folder, progress=False)
    ...     model = PointMAE.from_pretrained(result["checkpoint"], num_classes=15, config=config)
    >>> result["steps"], result["loss_curve"][-1][0]  # [step, loss] every log_every steps and last
    (2, 2)
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from peft_core import (
    ConfigError,
    MethodConfig,
    atomic_write,
    atomic_write_text,
    count_parameters,
)
from point_peft._runs import (
    check_dataset_folder,
    check_optimisation_fields,
    check_points_per_cloud,
    loss_curve,
    prepare_output_dir,
    require_int,
    write_run_record,
)
from point_peft.data import ScaleAndTranslate
from point_peft.models import PointMAEPretrainer, PointTransformerConfig, PretrainOutput
from point_peft.models.pretraining import masked_patch_count
from point_peft.pretraining_data import (
    PROCEDURAL_SOURCES,
    PointClouds,
    build_pretraining_clouds,
    collate_points,
    resolve_sources,
)

RECIPE_VERSION = 1
"""Bump when :func:`pretrain` changes what a recipe trains to (caches key on it)."""
CHECKPOINT_NAME = "point_mae_pretrain.pth"
RESULT_NAME = "pretrain_result.json"
RUN_CONFIG_NAME = "pretrain_config.json"
AUGMENTATIONS = ("scale_translate", "none")


@dataclasses.dataclass
class PretrainingRecipe(MethodConfig):
    """Data and optimisation of a Point-MAE pre-training run (the architecture is separate).

    The defaults follow the official recipe (AdamW, lr 1e-3, weight decay 0.05, cosine schedule
    with warm-up, Point-MAE's scale-and-translate augmentation) at the batch size that suits a
    CPU; the data default is both procedural variants, which need nothing on disk.
    """

    method: ClassVar[str] = "point_mae_pretraining"
    # Checkpoints must hold the BatchNorm statistics too, or a resumed run would differ.
    saved_buffers: ClassVar[tuple[str, ...]] = (
        "*.running_mean",
        "*.running_var",
        "*.num_batches_tracked",
    )

    data: tuple[str, ...] = PROCEDURAL_SOURCES
    """Sources (see :mod:`point_peft.pretraining_data`); ``auto`` adds corpora already cached."""
    num_points: int = 1024
    """Points per cloud."""
    procedural_samples_per_class: int | None = None
    """Clouds per class and procedural variant (``None``: the dataset's default, 200)."""
    cgal_samples_per_mesh: int = 8
    """Differently sampled clouds per CGAL mesh."""
    epochs: float = 1.0
    """Passes over the pooled clouds (ignored when ``max_steps`` is set)."""
    max_steps: int | None = None
    """Optimizer steps in all, overriding ``epochs``."""
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    """AdamW weight decay; never applied to biases, norms and tokens."""
    warmup_ratio: float = 0.05
    """Share of the steps with a linearly rising learning rate, before the cosine decay."""
    max_grad_norm: float | None = 10.0
    augmentation: str = "scale_translate"
    """``"scale_translate"`` (Point-MAE's: per-axis scale U(2/3, 3/2), shift U(-0.2, 0.2)) or
    ``"none"``; applied to each training batch."""
    eval_samples_per_class: int = 4
    """Held-out procedural test clouds per class and variant for the reconstruction loss before
    and after training (0: skip)."""
    seed: int = 0
    """Seeds the model's initialisation, the masks, the data order and the procedural shapes."""

    def validate(self) -> None:
        if isinstance(self.data, str):
            self.data = (self.data,)
        self.data = tuple(self.data)
        if not self.data:
            raise ConfigError("data must name at least one source")
        for name in ("num_points", "cgal_samples_per_mesh", "batch_size"):
            require_int(name, getattr(self, name), minimum=1)
        for name in ("procedural_samples_per_class", "max_steps"):
            if getattr(self, name) is not None:
                require_int(name, getattr(self, name), minimum=1)
        require_int("eval_samples_per_class", self.eval_samples_per_class, minimum=0)
        require_int("seed", self.seed, minimum=0)
        check_optimisation_fields(self, AUGMENTATIONS)

    def check_model(self, config: PointTransformerConfig) -> None:
        """Refuse an architecture this recipe cannot pre-train, before any data is built: a
        ``mask_ratio`` that masks no patch or every patch (the rule of
        :class:`~point_peft.models.PointMAEPretrainer`), or clouds of fewer points than
        ``num_groups`` or ``group_size``. Raises :class:`~peft_core.ConfigError`."""
        masked_patch_count(config)
        check_points_per_cloud(self.num_points, config, model="model")


class ReconstructionLoss:
    """``compute_loss`` for the trainer: augment the batch, mask, reconstruct, Chamfer-L2.

    The augmentation and the masks draw from torch's global random state, which the trainer
    checkpoints and restores: a resumed run draws exactly what an uninterrupted one would.
    """

    def __init__(self, augmentation: str = "scale_translate") -> None:
        self.augment = ScaleAndTranslate() if augmentation == "scale_translate" else None

    def __call__(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, Any]:
        points = batch["points"]
        if self.augment is not None and model.training:
            points = self.augment(points)
        output: PretrainOutput = model(points)
        return output.loss, output


@torch.no_grad()
def reconstruction_loss(
    model: PointMAEPretrainer, clouds: torch.Tensor, *, batch_size: int = 32
) -> float:
    """Mean Chamfer-L2 of ``model`` over ``clouds`` (M, N, 3) in eval mode, with fixed masks.

    Batch ``b`` masks with a generator seeded ``b``, so values at different training steps (and
    of different models) are measured on the same masked patches; the global RNG is untouched.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total = 0.0
    try:
        for index, start in enumerate(range(0, clouds.shape[0], batch_size)):
            batch = clouds[start : start + batch_size].to(device)
            output = model(batch, generator=torch.Generator().manual_seed(index))
            total += float(output.loss) * batch.shape[0]
    finally:
        model.train(was_training)
    return total / clouds.shape[0]


def evaluation_clouds(recipe: PretrainingRecipe, *, progress: bool = False) -> torch.Tensor | None:
    """Held-out clouds: procedural test split, both variants (never seen in training)."""
    if recipe.eval_samples_per_class == 0:
        return None
    held_out = build_pretraining_clouds(
        PROCEDURAL_SOURCES, num_points=recipe.num_points, split="test",
        procedural_samples_per_class=recipe.eval_samples_per_class, seed=recipe.seed,
        progress=progress,
    )  # fmt: skip
    return held_out.points


def write_checkpoint(
    model: PointMAEPretrainer, path: str | Path, run_config: dict[str, Any], global_step: int
) -> None:
    """``model`` in the official Point-MAE layout, with what produced it under ``point_peft``
    (``run_config``: recipe version, model config, recipe), written atomically."""
    official = model.to_official_checkpoint()
    official["point_peft"] = {**run_config, "global_step": global_step}
    atomic_write(Path(path), lambda temporary: torch.save(official, temporary))


def pretrain(
    config: PointTransformerConfig,
    recipe: PretrainingRecipe,
    output_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    save_every: int | None = 100,
    log_every: int = 10,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    download: bool = False,
    cpu: bool = False,
    mixed_precision: str = "no",
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Pre-train a Point-MAE of architecture ``config`` as ``recipe`` says; see the module doc.

    Args:
        resume: continue from the newest checkpoint in ``output_dir`` (same config and recipe).
        overwrite: delete an earlier run's checkpoints and log in ``output_dir`` first. Without
            ``resume`` or ``overwrite``, a folder with checkpoints is refused.
        save_every: steps between resumable checkpoints (``None``: none).
        cache_dir, download: where the corpora are cached, and whether missing ones may be
            fetched (see :mod:`point_peft.corpora`).
        cpu, mixed_precision: passed to :class:`~peft_core.TrainingArguments`.
        callbacks: :class:`~peft_core.TrainerCallback` objects.

    Returns:
        The JSON-able record also written to ``pretrain_result.json``.
    """
    from peft_core.trainer import Trainer, TrainingArguments

    output_dir = Path(output_dir)
    recipe.check_model(config)
    sources = resolve_sources(recipe.data, cache_dir)
    for source in sources:
        check_dataset_folder(source)
    recipe = dataclasses.replace(recipe, data=sources)  # 'auto' resolved: what really ran
    run_config = {
        "recipe_version": RECIPE_VERSION,
        "model_config": config.to_dict(),
        "recipe": recipe.to_dict(),
    }
    # The record is written once the data and the model exist: a run that fails before leaves
    # none behind (nor a folder, when it made none).
    prepare_output_dir(
        output_dir, run_config, record_name=RUN_CONFIG_NAME, artifacts=(CHECKPOINT_NAME, RESULT_NAME),
        resume=resume, overwrite=overwrite, what="architecture or recipe", write_record=False,
    )  # fmt: skip

    started = time.perf_counter()
    clouds: PointClouds = build_pretraining_clouds(
        sources, num_points=recipe.num_points,
        procedural_samples_per_class=recipe.procedural_samples_per_class,
        cgal_samples_per_mesh=recipe.cgal_samples_per_mesh, cache_dir=cache_dir,
        download=download, seed=recipe.seed, progress=progress,
    )  # fmt: skip
    held_out = evaluation_clouds(recipe, progress=progress)
    data_seconds = time.perf_counter() - started

    torch.manual_seed(recipe.seed)  # the initial weights depend on the seed alone
    model = PointMAEPretrainer(config)
    # Before the trainer exists (and restores a checkpoint): the same number in a resumed run.
    initial_eval = None if held_out is None else reconstruction_loss(model, held_out)
    args = TrainingArguments(
        str(output_dir), num_epochs=recipe.epochs, max_steps=recipe.max_steps,
        per_device_batch_size=recipe.batch_size, learning_rate=recipe.learning_rate,
        weight_decay=recipe.weight_decay, lr_schedule="cosine", warmup_ratio=recipe.warmup_ratio,
        max_grad_norm=recipe.max_grad_norm, mixed_precision=mixed_precision, seed=recipe.seed,
        # A short last batch would weigh a few clouds like a full batch in BatchNorm and the mean.
        drop_last=len(clouds) >= recipe.batch_size, eval_strategy="no", save_every=save_every,
        log_every=log_every, resume=resume, progress_bar=progress, cpu=cpu,
    )  # fmt: skip
    trainer = Trainer(
        model, args, clouds, collate_fn=collate_points,
        compute_loss=ReconstructionLoss(recipe.augmentation), callbacks=callbacks,
        method_config=recipe,
    )  # fmt: skip
    if trainer.is_main_process:
        write_run_record(output_dir, run_config, record_name=RUN_CONFIG_NAME)
    summary = trainer.train()
    trained: PointMAEPretrainer = trainer.unwrapped_model
    final_eval = None if held_out is None else reconstruction_loss(trained, held_out)

    checkpoint = output_dir / CHECKPOINT_NAME
    if trainer.is_main_process:
        write_checkpoint(trained, checkpoint, run_config, summary["global_step"])
    curve = loss_curve(trainer.log_path)
    result = {
        "checkpoint": str(checkpoint),
        **run_config,
        "data": {"sources": clouds.sources, "clouds": len(clouds), "seconds": data_seconds},
        "parameters": {
            "pretrainer": count_parameters(trained)[1],
            "encoder": count_parameters(trained.MAE_encoder)[1],
        },
        "device": str(trainer.accelerator.device),
        "threads": torch.get_num_threads(),
        "steps": summary["global_step"],
        "epochs_completed": summary["epochs_completed"],
        "resumed_from_step": summary["resumed_from_step"],
        # All segments of a resumed run (as the checkpoints record them), and the last one alone.
        "train_seconds": summary["train_seconds"],
        "train_seconds_this_segment": summary["train_seconds_this_segment"],
        "loss_curve": curve,
        "first_loss": curve[0][1] if curve else None,
        "last_loss": curve[-1][1] if curve else None,
        "held_out_reconstruction_loss": {
            "clouds": 0 if held_out is None else held_out.shape[0],
            "initial": initial_eval,
            "final": final_eval,
        },
    }
    if trainer.is_main_process:
        atomic_write_text(output_dir / RESULT_NAME, json.dumps(result, indent=2) + "\n")
    return result

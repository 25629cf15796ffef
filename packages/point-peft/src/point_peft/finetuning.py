"""Fine-tuning a pre-trained point-cloud backbone on a labelled task, with Point-PEFT or a baseline.

:func:`finetune` reads the task (:mod:`point_peft.finetuning_data`), loads the backbone with a new
head, adapts it (:mod:`point_peft.finetuning_methods`: Point-PEFT builds its memory bank first),
trains with the peft-core :class:`~peft_core.Trainer` (AdamW, cosine schedule with warm-up,
gradient clipping, augmentation on the batches), evaluates the final weights on the test split
(:func:`point_peft.evaluation.evaluate`, with optional voting) and writes into ``output_dir``:

- ``result.json``: method, dataset, backbone, trainable / total parameters, test accuracy, mean
  class accuracy, median step time, loss curve, seed, library versions, times;
- ``final/``: the trained tensors (``adapter_model.safetensors`` + ``adapter_config.json``; for
  Point-PEFT ``peft_core.load(backbone, "final")`` rebuilds the model, memory bank included);
- the trainer's ``checkpoints/`` (every ``save_every`` steps) and ``log.jsonl``: an interrupted run
  continues with ``resume=True``. The query-feature cache (``cache_query_features``) is not
  checkpointed: a resumed run recomputes the queries of the samples it meets again.

The same ``seed`` gives the same result: it seeds the head, the new modules, the data order, the
augmentation and dropout. Model selection is none: the numbers are those of the final weights
(the reference reports its best test-set epoch, which is optimistic).

Example (a few seconds on a CPU; tiny backbone, two classes of tiny clouds)::

    recipe = FinetuneRecipe(
        dataset="procedural-hard",
        num_points=128,
        samples_per_class=4,
        test_samples_per_class=2,
        max_steps=5,
        batch_size=8,
    )
    result = finetune(recipe, "runs/train", backbone="pretrain.pth")
    result["test_accuracy"], result["parameters"]["trainable"]
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader

from peft_core import ConfigError, MethodConfig, atomic_write_text, count_parameters
from point_peft._runs import (
    check_optimisation_fields,
    check_points_per_cloud,
    loss_curve,
    prepare_output_dir,
    require_int,
)
from point_peft.finetuning_data import ClassificationTask, load_task, parse_dataset
from point_peft.finetuning_methods import (
    AUGMENTATIONS,
    METHODS,
    ClassificationLoss,
    adapt,
    augmentation,
    load_backbone,
)
from point_peft.models import PointTransformerConfig

RESULT_NAME = "result.json"
RUN_CONFIG_NAME = "train_config.json"
FINAL_DIR = "final"

DEFAULT_LEARNING_RATES: dict[str, float] = {
    "point-peft": 5e-3,
    "full": 2e-3,
    "linear": 1e-2,
    "adapter": 1e-2,
    "vpt-deep": 1e-2,
    "bitfit": 1e-2,
}
"""Each method's step size for the default recipe: the best of a small sweep on the procedural
hard split with the small backbone, seed 0. At 3 epochs, Point-PEFT 5e-4 / 2e-3 / 5e-3 / 1e-2
reached 17 / 40 / 51 / 46% and full fine-tuning 5e-4 / 1e-3 / 2e-3 34 / 37 / 45%; at 4 epochs
Point-PEFT 5e-3 61%, full fine-tuning 2e-3 / 5e-3 61 / 59%, BitFit 1e-2 27%; the linear probe,
adapters and VPT-deep stay near 20% from 2e-3 to 3e-2. The official recipe trains 300 epochs at
5e-4 for every method."""


@dataclasses.dataclass
class FinetuneRecipe(MethodConfig):
    """Data, method and optimisation of a fine-tuning run (the backbone is separate).

    The defaults follow Point-PEFT's recipe (AdamW, weight decay 0.05, cosine schedule with
    warm-up, gradient clipping at 10, the "-aug" augmentation) at a length that suits a CPU.
    """

    method: ClassVar[str] = "point_peft_finetuning"
    # Checkpoints must hold the BatchNorm statistics, or a resumed run would differ.
    saved_buffers: ClassVar[tuple[str, ...]] = (
        "*.running_mean",
        "*.running_var",
        "*.num_batches_tracked",
    )

    dataset: str = "procedural-hard"
    """See :mod:`point_peft.finetuning_data`: ``procedural-hard``, ``procedural-clean``,
    ``kicad``, ``modelnet40=DIR``, ``scanobjectnn=DIR``, ..."""
    tuning_method: str = "point-peft"
    """``point-peft``, ``full``, ``linear``, ``adapter``, ``vpt-deep`` or ``bitfit``."""
    method_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Point-PEFT: fields of :class:`~point_peft.PointPeftConfig`; a baseline: keyword arguments
    of :func:`point_peft.baselines.get_baseline_model`."""
    num_points: int = 1024
    samples_per_class: int | None = None
    """Procedural training clouds per class (``None``: 200)."""
    test_samples_per_class: int | None = None
    """Procedural test clouds per class (``None``: 50)."""
    data_seed: int = 0
    """Seeds the procedural shapes and the KiCad point sampling (not the training)."""
    epochs: float = 4.0
    max_steps: int | None = None
    """Optimizer steps in all, overriding ``epochs``."""
    batch_size: int = 32
    learning_rate: float | None = None
    """``None``: the method's entry of :data:`DEFAULT_LEARNING_RATES`."""
    weight_decay: float = 0.05
    """AdamW weight decay; never applied to biases, norms and tokens."""
    warmup_ratio: float = 0.1
    max_grad_norm: float | None = 10.0
    augmentation: str = "scale-rotate"
    """See :data:`~point_peft.finetuning_choices.AUGMENTATIONS`."""
    label_smoothing: float | None = None
    """``None``: the backbone's (0 for Point-MAE, 0.2 for Point-BERT)."""
    votes: int = 1
    """Test-time votes: predictions averaged over this many augmented copies (1: none)."""
    seed: int = 0
    """Seeds the new weights, the data order, the augmentation and dropout."""

    @property
    def resolved_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return DEFAULT_LEARNING_RATES[self.tuning_method]

    def validate(self) -> None:
        try:
            parse_dataset(self.dataset)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if self.tuning_method not in METHODS:
            raise ConfigError(
                f"method must be one of {', '.join(METHODS)}; got {self.tuning_method!r}"
            )
        if not isinstance(self.method_options, dict):
            raise ConfigError(f"method_options must be a dict, got {self.method_options!r}")
        _check_method_options(self.tuning_method, self.method_options)
        for name in ("num_points", "batch_size", "votes"):
            require_int(name, getattr(self, name), minimum=1)
        for name in ("samples_per_class", "test_samples_per_class", "max_steps"):
            if getattr(self, name) is not None:
                require_int(name, getattr(self, name), minimum=1)
        for name in ("seed", "data_seed"):
            require_int(name, getattr(self, name), minimum=0)
        check_optimisation_fields(self, AUGMENTATIONS, learning_rate_may_be_none=True)
        if self.label_smoothing is not None and not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")


def _check_method_options(method: str, options: dict[str, Any]) -> None:
    """Refuse options the method does not take, before any data is read."""
    if method == "point-peft":
        from point_peft.method import PointPeftConfig

        known = sorted(f.name for f in dataclasses.fields(PointPeftConfig) if f.init)
        known.remove("memory_bank_size")  # set from the bank that is built
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(
                f"point-peft takes no option {', '.join(map(repr, unknown))}; its options are "
                f"the PointPeftConfig fields: {', '.join(known)}"
            )
        return
    from point_peft.baselines import BaselineConfig

    try:
        BaselineConfig.from_options(method, **options)
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from None


def library_versions() -> dict[str, str]:
    """Versions of the libraries a result depends on."""
    versions = {}
    for name in ("point-peft", "peft-core", "torch", "accelerate"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _check_batch_size_for_batch_norm(batch_size: int, model: nn.Module) -> None:
    """Point-MAE's head normalises over the clouds of a batch, which needs two of them."""
    head = getattr(model, "cls_head_finetune", None)
    has_batch_norm = head is not None and any(
        isinstance(module, nn.modules.batchnorm._BatchNorm) for module in head.modules()
    )
    if has_batch_norm and batch_size < 2:
        raise ConfigError(
            f"batch_size={batch_size}: this backbone's classification head has BatchNorm, which "
            "needs at least 2 clouds per training batch"
        )


def finetune(
    recipe: FinetuneRecipe,
    output_dir: str | os.PathLike,
    *,
    backbone: str | os.PathLike | None = None,
    backbone_config: PointTransformerConfig | None = None,
    task: ClassificationTask | None = None,
    resume: bool = False,
    overwrite: bool = False,
    save_every: int | None = 100,
    log_every: int = 10,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    download: bool = False,
    cpu: bool = False,
    mixed_precision: str = "no",
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Fine-tune as ``recipe`` says; see the module docstring.

    Args:
        backbone: a Point-MAE / Point-BERT pre-train checkpoint (official layout); ``None``: the
            default small backbone (pre-trained and cached on first use, minutes on a CPU).
        backbone_config: its architecture when the file records none (see
            :func:`~point_peft.finetuning_methods.load_backbone`).
        task: the data already in memory (the benchmarks reuse it across runs); default: read
            ``recipe.dataset``.
        resume: continue from the newest checkpoint in ``output_dir`` (same recipe and backbone).
        overwrite: delete an earlier run's checkpoints, log and result in ``output_dir`` first;
            without ``resume`` or ``overwrite``, a folder with checkpoints is refused.
        save_every: steps between resumable checkpoints (``None``: none).
        cache_dir, download: the corpus / backbone cache, and whether ``kicad`` may be fetched.
        cpu, mixed_precision: passed to :class:`~peft_core.TrainingArguments`.
        callbacks: :class:`~peft_core.TrainerCallback` objects.

    Returns:
        The JSON-able record also written to ``result.json``.
    """
    from peft_core.trainer import Trainer

    output_dir = Path(output_dir)
    if backbone is not None and not Path(backbone).is_file():
        raise FileNotFoundError(f"no backbone checkpoint at {backbone}")
    started = time.perf_counter()
    if task is None:
        task = _read_task(recipe, cache_dir=cache_dir, download=download, progress=progress)
    data_seconds = time.perf_counter() - started

    torch.manual_seed(recipe.seed)  # the new head: the same in a resumed run
    model, backbone_info = load_backbone(
        backbone, task.num_classes, config=backbone_config, cache_dir=cache_dir, progress=progress
    )
    check_points_per_cloud(recipe.num_points, model.config)
    _check_batch_size_for_batch_norm(recipe.batch_size, model)
    run_config = {"recipe": recipe.to_dict(), "backbone": backbone_info["config"],
                  "backbone_checkpoint": backbone_info["checkpoint"], "data": task.describe()}  # fmt: skip
    prepare_output_dir(
        output_dir, run_config, record_name=RUN_CONFIG_NAME, artifacts=(RESULT_NAME,),
        resume=resume, overwrite=overwrite, what="recipe, backbone or data",
    )  # fmt: skip
    device = "cuda" if torch.cuda.is_available() and not cpu else "cpu"
    model = model.to(device)
    torch.manual_seed(recipe.seed)  # the new modules
    uses_cache = bool(recipe.method_options.get("cache_query_features"))
    model, method_config, method_info = adapt(
        model, recipe.tuning_method, recipe.method_options, task.train,
        batch_size=recipe.batch_size, progress=progress,
    )  # fmt: skip
    trainable, total = count_parameters(model)
    smoothing = recipe.label_smoothing
    if smoothing is None:
        smoothing = backbone_info["config"]["label_smoothing"]
    compute_loss = ClassificationLoss(
        augmentation(recipe.augmentation), smoothing, pass_sample_indices=uses_cache
    )
    activation_bytes = activation_memory(model, compute_loss, task, recipe.batch_size, device)
    train_data = task.train
    if uses_cache:
        from point_peft.method import WithSampleIndices

        train_data = WithSampleIndices(task.train)
    args = _training_arguments(
        recipe, output_dir, len(train_data), save_every=save_every, log_every=log_every,
        resume=resume, progress_bar=progress, cpu=cpu, mixed_precision=mixed_precision,
    )  # fmt: skip
    trainer = Trainer(
        model, args, train_data, compute_loss=compute_loss, callbacks=callbacks,
        method_config=method_config if method_config is not None else recipe,
    )  # fmt: skip
    summary = trainer.train()  # saves final/ with method_config, frozen cls tokens included

    evaluation_started = time.perf_counter()
    evaluation = evaluate_on(trainer.unwrapped_model, task, recipe, progress=progress)
    evaluation_seconds = time.perf_counter() - evaluation_started
    curve = loss_curve(trainer.log_path)
    result = {
        "method": recipe.tuning_method,
        "dataset": task.name,
        "test_accuracy": evaluation["accuracy"],
        "mean_class_accuracy": evaluation["mean_class_accuracy"],
        "votes": recipe.votes,
        "vote_augmentation": evaluation["vote_augmentation"],
        "parameters": {
            "trainable": trainable,
            "total": total,
            "trainable_percent": 100 * trainable / total,
        },
        "step_time": _step_time(compute_loss, summary, output_dir),
        "activation_mib": activation_bytes / 2**20,
        "learning_rate": recipe.resolved_learning_rate,
        "label_smoothing": smoothing,
        "seed": recipe.seed,
        "steps": summary["global_step"],
        "epochs_completed": summary["epochs_completed"],
        "resumed_from_step": summary["resumed_from_step"],
        "first_loss": curve[0][1] if curve else None,
        "last_loss": curve[-1][1] if curve else None,
        "loss_curve": curve,
        "evaluation": evaluation,
        "seconds": {
            "data": data_seconds,
            "train": summary["train_seconds"],  # every segment of a resumed run
            "train_this_segment": summary["train_seconds_this_segment"],
            "evaluation": evaluation_seconds,
            "memory_bank": method_info.get("memory_bank", {}).get("seconds"),
        },
        "data": task.describe(),
        "backbone": backbone_info,
        "method_details": method_info,
        "recipe": recipe.to_dict(),
        "trained_tensors": str(output_dir / FINAL_DIR),
        "versions": library_versions(),
        "device": str(trainer.accelerator.device),
        "threads": torch.get_num_threads(),
    }
    if trainer.is_main_process:
        atomic_write_text(output_dir / RESULT_NAME, json.dumps(result, indent=2) + "\n")
    return result


def _read_task(
    recipe: FinetuneRecipe, *, cache_dir: Any, download: bool, progress: bool
) -> ClassificationTask:
    return load_task(
        recipe.dataset, num_points=recipe.num_points, samples_per_class=recipe.samples_per_class,
        test_samples_per_class=recipe.test_samples_per_class, cache_dir=cache_dir,
        download=download, seed=recipe.data_seed, progress=progress,
    )  # fmt: skip


def _training_arguments(
    recipe: FinetuneRecipe, output_dir: Path, train_size: int, **run_options: Any
) -> Any:
    """The peft-core trainer's arguments for ``recipe``, plus ``run_options`` (arguments that
    say how this run goes, not what it learns: checkpoints, logs, progress bar, device)."""
    from peft_core.trainer import TrainingArguments

    return TrainingArguments(
        str(output_dir), num_epochs=recipe.epochs, max_steps=recipe.max_steps,
        per_device_batch_size=recipe.batch_size, learning_rate=recipe.resolved_learning_rate,
        weight_decay=recipe.weight_decay, lr_schedule="cosine", warmup_ratio=recipe.warmup_ratio,
        max_grad_norm=recipe.max_grad_norm, seed=recipe.seed, eval_strategy="no",
        # A short last batch would weigh a few clouds like a full batch in BatchNorm.
        drop_last=train_size >= recipe.batch_size, **run_options,
    )  # fmt: skip


def _step_time(
    compute_loss: ClassificationLoss, summary: dict[str, Any], output_dir: str | os.PathLike
) -> Any:
    """This segment's step times; a resume of a finished run trains no step, so it keeps those
    the finished run measured rather than replace them with none."""
    measured = compute_loss.step_times()
    if measured is None and summary["resumed_from_step"] == summary["global_step"]:
        earlier = Path(output_dir) / RESULT_NAME
        if earlier.is_file():
            return json.loads(earlier.read_text(encoding="utf-8")).get("step_time")
    return measured


def activation_memory(
    model: torch.nn.Module,
    compute_loss: ClassificationLoss,
    task: ClassificationTask,
    batch_size: int,
    device: str,
) -> int:
    """Bytes autograd saves for backward in one training step on the first training batch
    (``peft_core.measure_activation_memory``: exact, on any device); the model is left as it was
    (BatchNorm statistics restored, random state untouched)."""
    from peft_core import measure_activation_memory

    count = min(batch_size, len(task.train))
    batch = {"points": task.train.points[:count].to(device),
             "labels": task.train.labels[:count].to(device)}  # fmt: skip
    buffers = {name: value.clone() for name, value in model.named_buffers()}
    timer = ClassificationLoss(None, compute_loss.label_smoothing)
    was_training = model.training
    model.train()
    try:
        with torch.random.fork_rng(devices=[] if device == "cpu" else None):
            return measure_activation_memory(lambda: timer(model, batch)[0], model)
    finally:
        model.train(was_training)
        with torch.no_grad():
            for name, value in model.named_buffers():
                value.copy_(buffers[name])


def evaluate_on(
    model: torch.nn.Module,
    task: ClassificationTask,
    recipe: FinetuneRecipe,
    *,
    progress: bool = False,
) -> dict[str, Any]:
    """Overall and mean class accuracy of ``model`` on the task's test split, with voting over
    the recipe's training augmentation (Point-MAE's scale-and-translate when training has none);
    ``vote_augmentation`` names the one used (None without voting)."""
    from point_peft.evaluation import evaluate

    loader = DataLoader(task.test, batch_size=recipe.batch_size, shuffle=False)
    votes = recipe.votes
    vote_augmentation = augmentation(recipe.augmentation) if votes > 1 else None
    metrics = dict(
        evaluate(model, loader, votes=votes, augmentation=vote_augmentation, seed=recipe.seed)
    )
    used = recipe.augmentation if vote_augmentation is not None else "scale-translate"
    metrics["vote_augmentation"] = used if votes > 1 else None
    return metrics

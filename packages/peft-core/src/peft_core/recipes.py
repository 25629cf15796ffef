"""A ready text-classification fine-tuning recipe shared by the method CLIs and the demo.

It loads a model and a data set (offline defaults: real all-MiniLM-L6-v2 and Rotten-Tomatoes
polarity; or any local/Hub model and data set), lets the caller adapt the model (freeze, MEFT,
LoRA, …), trains with the core :class:`~peft_core.Trainer`, and returns a JSON-able result with
test accuracy, parameter counts, activation memory and time.

Example:
    >>> task = load_text_task(max_train=512)  # doctest: +SKIP
    >>> model = load_classifier(task)  # doctest: +SKIP
    >>> freeze(model, trainable=["classifier.*"])  # doctest: +SKIP
    >>> result = fine_tune(model, task, "runs/probe", learning_rate=3e-3)  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from peft_core.assets import OFFLINE_MODELS, offline_model_path
from peft_core.config import MethodConfig
from peft_core.memory import measure_activation_memory
from peft_core.optional_imports import import_optional
from peft_core.parameters import count_parameters, format_trainable_parameters
from peft_core.recipe_arguments import DEFAULT_DATASET, DEFAULT_MODEL
from peft_core.recipe_arguments import add_recipe_arguments as add_recipe_arguments  # its old home
from peft_core.trainer import Trainer, TrainerCallback, TrainingArguments

TEXT_EXTRA = 'pip install "peft-core[text]"'


@dataclasses.dataclass
class TextTask:
    """A tokenized text-classification (or sequence-regression) task, ready for the trainer."""

    model_path: str
    dataset: str
    num_labels: int  # 1 for a regression task (float labels, as GLUE's STS-B)
    train: torch.utils.data.Dataset
    validation: torch.utils.data.Dataset
    test: torch.utils.data.Dataset
    collate: Any
    probe_batch: dict[str, torch.Tensor]  # a fixed batch of 16 for activation-memory measurement
    # how the splits were made when the source lacked some (e.g. GLUE: validation is the test)
    notes: tuple[str, ...] = ()
    #: The metric that picks the best checkpoint and leads the results: ``"accuracy"``, or
    #: ``"pearson"`` for a regression task.
    metric: str = "accuracy"


def resolve_model_path(model: str) -> str:
    """An offline model name, a local folder, or a Hub id (the latter needs network access).

    A name that can only be a folder (absolute, ``./``, ``~``, or more than one ``/``; a Hub id
    is ``name`` or ``owner/name``) must exist: otherwise the Hub client would report it as a
    malformed repository id.
    """
    if model in OFFLINE_MODELS:
        return str(offline_model_path(model))
    if _names_a_folder(model) and not Path(model).expanduser().is_dir():
        raise FileNotFoundError(
            f"model {model!r}: no such folder (give an offline name, one of "
            f"{sorted(OFFLINE_MODELS)}, a local folder, or a Hub id such as owner/name)"
        )
    return str(Path(model).expanduser()) if model.startswith("~") else model


def _names_a_folder(model: str) -> bool:
    return (
        Path(model).is_absolute()
        or model.startswith(("./", "../", "~", ".\\"))
        or model.count("/") > 1
    )


def model_display_name(model_path: str) -> str:
    """How results name a model: its offline name (``"all-MiniLM-L6-v2"``, not the ``model``
    folder it is stored in), a local folder's name, or the Hub id as given.

    Example:
        >>> model_display_name(resolve_model_path("all-MiniLM-L6-v2"))  # doctest: +SKIP
        'all-MiniLM-L6-v2'
        >>> model_display_name("bert-base-uncased")
        'bert-base-uncased'
    """
    path = Path(model_path)
    if not path.exists():
        return model_path
    for name in OFFLINE_MODELS:
        try:
            if offline_model_path(name).resolve() == path.resolve():
                return name
        except ModuleNotFoundError:  # that offline model is not installed, so it is not this one
            continue
    return path.resolve().name


def load_text_task(
    model: str = DEFAULT_MODEL,
    dataset: str = DEFAULT_DATASET,
    *,
    max_length: int = 64,
    max_train: int | None = None,
    max_eval: int | None = None,
    seed: int = 0,
    verbose: bool = True,
    pad_to_max_length: bool = False,
    **source_options: Any,
) -> TextTask:
    """Tokenize ``dataset`` for ``model``; ``source_options`` go to ``load_text_classification``
    (``text_column``, ``label_column``, ``subset`` … for files and Hub data sets).

    ``max_train`` caps the training examples (a seeded random subset); ``None`` uses them all.
    ``max_eval`` caps the validation and the test examples alike, for quick checks of a pipeline:
    accuracy on a few hundred sentences moves by points from one subset to the next.

    A source without a validation or test split gets one carved from its train split by
    :func:`~peft_core.data.with_evaluation_splits` (a source with train and validation only, such
    as GLUE with its hidden test labels, is tested on its validation split); what was done is
    printed with the data summary.

    Batches are padded to their longest sentence (rounded up to 8), or with
    ``pad_to_max_length`` to ``max_length`` as many reference scripts do; pads cost compute,
    and they change any statistic that counts them.
    """
    transformers = import_optional("transformers", needed_by="load_text_task", install=TEXT_EXTRA)

    from peft_core.data import (
        DynamicPaddingCollator,
        load_text_classification,
        with_evaluation_splits,
    )

    _check_cap("max_train", max_train, "to train on every example")
    _check_cap("max_eval", max_eval, "to evaluate on every example")
    path = resolve_model_path(model)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    options = {key: value for key, value in source_options.items() if value is not None}
    data = load_text_classification(dataset, seed=seed, **options)
    fractions = {
        key: options[key] for key in ("validation_fraction", "test_fraction") if key in options
    }
    data = with_evaluation_splits(data, seed=seed, **fractions)
    if verbose:
        print(data.summary())
    train = data.tokenize(tokenizer, split="train", max_length=max_length)
    if max_train is not None:
        train = random_subset(train, max_train, seed)
    collate = (
        DynamicPaddingCollator.from_tokenizer(tokenizer, pad_to_length=max_length)
        if pad_to_max_length
        else DynamicPaddingCollator.from_tokenizer(tokenizer, pad_to_multiple_of=8)
    )
    validation = data.tokenize(tokenizer, split="validation", max_length=max_length)
    test = data.tokenize(tokenizer, split="test", max_length=max_length)
    notes = list(data.notes)
    if max_eval is not None and max(len(validation), len(test)) > max_eval:
        # Said in every result: an accuracy on a sample is not the split's accuracy.
        notes.append(
            f"validation and test: a seeded random sample of at most {max_eval} examples each "
            f"(max_eval), of {len(validation)} and {len(test)}"
        )
        if verbose:
            print(f"  note: {notes[-1]}")
        validation = random_subset(validation, max_eval, seed)
        test = random_subset(test, max_eval, seed)
    probe = collate([test[i] for i in range(min(16, len(test)))])
    return TextTask(
        path, str(dataset), data.num_labels, train, validation, test, collate, probe,
        notes=tuple(notes), metric="pearson" if data.is_regression else "accuracy",
    )  # fmt: skip


def _check_cap(name: str, cap: int | None, no_cap_means: str) -> None:
    """A cap on a split's examples is a positive int, or None for no cap."""
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int)):
        raise TypeError(f"{name} must be an int or None (no cap), got {cap!r}")
    if cap is not None and cap < 1:
        raise ValueError(f"{name} must be at least 1, got {cap}; pass None {no_cap_means}")


def random_subset(
    dataset: torch.utils.data.Dataset, size: int, seed: int
) -> torch.utils.data.Dataset:
    """``size`` examples drawn without replacement, seeded.

    Never the first ``size``: corpora are often stored sorted (the Rotten-Tomatoes snippets by
    rating, so the first 2,000 training sentences are 98% positive).
    """
    if size >= len(dataset):
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return torch.utils.data.Subset(dataset, sorted(order[:size].tolist()))


def load_classifier(task: TextTask, seed: int = 0, *, quantization_config: Any = None) -> nn.Module:
    """A sequence classifier on the task's model, its head freshly initialised from ``seed``.

    ``quantization_config`` (e.g. a ``transformers.BitsAndBytesConfig``) loads the weights
    quantised, placed whole on the first CUDA device or, without one, on the CPU: quantised
    weights cannot be moved after loading.
    """
    transformers = import_optional("transformers", needed_by="load_classifier", install=TEXT_EXTRA)
    from transformers.utils import logging

    logging.set_verbosity_error()  # "classifier newly initialised" is expected here
    torch.manual_seed(seed)
    placement: dict[str, Any] = {}
    if quantization_config is not None:
        device = torch.cuda.current_device() if torch.cuda.is_available() else "cpu"
        placement = {"quantization_config": quantization_config, "device_map": {"": device}}
    # A checkpoint whose head has another size (fine-tuned with another number of classes, or
    # this is a regression task's one output) gets a new head of this task's size, not an error;
    # only the head's shape depends on num_labels, so nothing else can be skipped.
    return transformers.AutoModelForSequenceClassification.from_pretrained(
        task.model_path, num_labels=task.num_labels, ignore_mismatched_sizes=True, **placement
    )


def fine_tune(
    model: nn.Module,
    task: TextTask,
    output_dir: str | Path,
    *,
    name: str = "run",
    learning_rate: float = 1e-3,
    epochs: float = 1.0,
    batch_size: int = 32,
    seed: int = 0,
    method_config: MethodConfig | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    progress_bar: bool = True,
    save_every: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    run_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` on ``task`` and evaluate the final weights on its test split.

    The best validation accuracy is reported too (its weights are saved in ``output_dir/best``);
    with ``save_every`` set, ``resume=True`` continues a killed run from its newest checkpoint.
    A fresh run refuses a folder holding an earlier run's checkpoints unless ``overwrite``.
    ``run_settings`` (see :func:`peft_core.command_checks.recipe_run_settings`) is what else a resume must match besides
    the hyperparameters, ``method_config`` and the training-set size, which the trainer records.
    """
    trainable, total = count_parameters(model)
    model.train()
    # A quantised model is already on its device (load_classifier); the probe batch must follow.
    device = next(model.parameters()).device
    probe = {name: tensor.to(device) for name, tensor in task.probe_batch.items()}
    activation_bytes = measure_activation_memory(lambda: model(**probe).loss, model)
    args = TrainingArguments(
        str(output_dir), num_epochs=epochs, per_device_batch_size=batch_size, learning_rate=learning_rate,
        warmup_ratio=0.06, weight_decay=0.01, eval_strategy="epoch", metric_for_best=f"eval_{task.metric}", seed=seed,
        resume=resume, overwrite_output_dir=overwrite, progress_bar=progress_bar, save_every=save_every,
    )  # fmt: skip
    print(f"[{name}] {format_trainable_parameters(model)}", flush=True)
    started = time.perf_counter()
    trainer = Trainer(
        model, args, task.train, task.validation, collate_fn=task.collate, callbacks=callbacks,
        method_config=method_config, run_settings=run_settings,
    )  # fmt: skip
    summary = trainer.train()
    seconds = time.perf_counter() - started
    test = trainer.evaluate(task.test)
    return {
        "setting": name,
        "model": model_display_name(task.model_path),
        "dataset": task.dataset,
        "data_notes": list(task.notes),  # e.g. which split the test accuracy was measured on
        "test_metric": task.metric,  # what test_score and best_validation_score are
        "test_score": test[f"eval_{task.metric}"],
        # Every test metric: accuracy, macro_f1, matthews_correlation (GLUE's CoLA metric) for
        # classification; pearson, spearman, mse for regression; and the loss.
        "test_metrics": {
            key.removeprefix("eval_"): value for key, value in test.items() if key != "step"
        },
        "test_accuracy": test.get("eval_accuracy"),  # None for a regression task
        "test_macro_f1": test.get("eval_macro_f1"),
        "best_validation_score": summary["best_metric"],
        "best_validation_accuracy": summary["best_metric"] if task.metric == "accuracy" else None,
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": 100 * trainable / total,
        "activation_mib": activation_bytes / 2**20,
        "train_seconds": seconds,
        "steps": summary["global_step"],
    }


def task_from_arguments(args: argparse.Namespace) -> TextTask:
    return load_text_task(
        args.model, args.dataset, max_length=args.max_length, max_train=args.max_train,
        max_eval=args.max_eval, seed=args.seed,
        text_column=args.text_column, text_pair_column=args.text_pair_column,
        label_column=args.label_column, subset=args.dataset_subset,
        pad_to_max_length=args.pad_to_max_length,
    )  # fmt: skip


def format_results_table(
    rows: list[dict[str, Any]], reference: str | None = "full fine-tuning"
) -> str:
    base = next((r["activation_mib"] for r in rows if r["setting"] == reference), None)
    header = (
        f"{'setting':<26} {score_header(rows):>9} {'trainable':>12} {'trainable %':>12} "
        f"{'activations':>12} {'vs full FT':>10} {'time (s)':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        ratio = f"{row['activation_mib'] / base:.3f}x" if base else "-"
        lines.append(
            f"{row['setting']:<26} {format_score(row):>9} {row['trainable_params']:>12,} "
            f"{row['trainable_percent']:>11.3f}% {row['activation_mib']:>8.1f} MiB {ratio:>10} "
            f"{row['train_seconds']:>9.1f}"
        )
    return "\n".join(lines)


def score_header(rows: list[dict[str, Any]]) -> str:
    """The results table's score column: test accuracy, or a regression task's Pearson r."""
    return "test r" if rows and rows[0].get("test_metric") == "pearson" else "test acc"


def format_score(row: dict[str, Any]) -> str:
    """A row's test score as the table shows it: accuracy in percent, a correlation as is."""
    if row.get("test_metric") == "pearson":
        return f"{row['test_score']:.4f}"
    return f"{100 * row['test_accuracy']:.2f}%"

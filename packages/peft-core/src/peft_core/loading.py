"""Rebuilding a fine-tuned model from a saved folder, whatever method produced it."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from torch import nn

from peft_core.freezing import freeze
from peft_core.registry import get_method
from peft_core.rollback import ModelSnapshot
from peft_core.saved_record import WEIGHTS_NAME, read_saved_record
from peft_core.serialization import CheckpointError, load_with_record, read_trainable_file


def load(model: nn.Module, directory: str | os.PathLike, *, strict: bool = True) -> nn.Module:
    """Apply the saved method to ``model`` and load its trained tensors.

    ``model`` is the *base* model (e.g. a fresh ``from_pretrained``). The method named in
    ``adapter_config.json`` is looked up in the registry (installed method packages register
    themselves through the ``peft_core.methods`` entry-point group), applied with the saved config,
    and then the trained tensors are loaded. A folder saved without a method config (a model you
    froze yourself) loads its tensors and leaves trainable exactly the parameters it holds, as
    they were when saved. Returns the (possibly wrapped) model.

    The method is applied in place before the saved tensors can be checked against the converted
    model. If applying it or loading then fails (a checkpoint of another model size), the method's
    changes are undone and the error is raised with ``model`` as it was: nothing is lost, and the
    same ``model`` can be loaded again from the right folder.

    Example:
        >>> model = peft_core.load(
        ...     AutoModelForSequenceClassification.from_pretrained(path), "run/"
        ... )  # doctest: +SKIP
    """
    directory = Path(directory)
    record = read_saved_record(directory, stacklevel=2)  # refuses a newer format up front
    saved = read_trainable_file(directory / WEIGHTS_NAME)
    method = record.get("method")
    spec = get_method(method) if method else None
    snapshot = ModelSnapshot(model)
    try:
        if spec is not None:
            config = spec.config_class.from_dict(record)  # ignores the keys save_trainable added
            model = spec.apply(model, config)
        else:
            _freeze_to_saved(model, saved, record.get("frozen_parameters", []))
        load_with_record(model, directory, saved, record, strict=strict)
    except BaseException as error:
        snapshot.restore()
        if isinstance(error, CheckpointError):
            undone = f"; {method!r} was undone" if method else ""
            raise CheckpointError(
                f"{error} (the model is as it was before the call{undone})"
            ) from error
        raise
    return model


def _freeze_to_saved(model: nn.Module, saved: dict, frozen: list[str]) -> None:
    """Without a method to rebuild, the saved tensors say what was trained: they stay trainable,
    except those saved while frozen (``include_parameters``), and everything else is frozen (a
    fresh base model has everything trainable, which would all count as missing)."""
    parameters = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    kept_frozen = set(frozen)
    trainable = [n for n in saved if n in parameters and n not in kept_frozen]
    freeze(model, trainable=[glob.escape(name) for name in trainable])

"""Rebuilding a fine-tuned model from a saved folder, whatever method produced it."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from torch import nn

from peft_core.config import read_config_dict
from peft_core.registry import get_method
from peft_core.serialization import CONFIG_NAME, load_trainable


def load(model: nn.Module, directory: str | os.PathLike, *, strict: bool = True) -> nn.Module:
    """Apply the saved method to ``model`` and load its trained tensors.

    ``model`` is the *base* model (e.g. a fresh ``from_pretrained``). The method named in
    ``adapter_config.json`` is looked up in the registry (installed method packages register
    themselves through the ``peft_core.methods`` entry-point group), applied with the saved config,
    and then the trained tensors are loaded. A folder saved without a method config only loads the
    tensors. Returns the (possibly wrapped) model.

    Example:
        >>> model = peft_core.load(
        ...     AutoModelForSequenceClassification.from_pretrained(path), "run/"
        ... )  # doctest: +SKIP
    """
    directory = Path(directory)
    record = read_config_dict(directory / CONFIG_NAME)
    method = record.get("method")
    if method:
        spec = get_method(method)
        # Keys save_trainable writes next to the config's own; kept where the config class has a
        # field of that name (a config may declare ``saved_buffers``, which save_trainable honours).
        config_fields = {f.name for f in dataclasses.fields(spec.config_class)}
        added = {"peft_core_version", "saved_buffers"} - config_fields
        fields = {k: v for k, v in record.items() if k not in added}
        config = spec.config_class.from_dict(fields)
        model = spec.apply(model, config)
    load_trainable(model, directory, strict=strict)
    return model

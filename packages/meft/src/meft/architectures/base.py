"""How MEFT reads an architecture: a small description instead of a fork of each model class.

An :class:`Architecture` says where the layer stacks are, how one layer splits into an attention
half-block and an FFN half-block (each with its own residual and norm, exactly as the layer
computes them), which hyperparameters the adapters copy, and which modules form the task head.
Everything else (the coupling, reversible backprop, adapter insertion, freezing) is generic.

To support a new family, write the two half-block functions and register a description::

    register_architecture(
        Architecture(
            name="my-encoder",
            matches=lambda model: getattr(model.config, "model_type", None) == "my_encoder",
            stacks=("encoder.layers",),
            attention=my_attention_half,  # (layer, x, context, adapters) -> x after attention + residual/norm
            ffn=my_ffn_half,  # (layer, x, context, adapters) -> x after FFN + residual/norm
            hidden_size=lambda model: model.config.hidden_size,
            activation=lambda model: model.config.hidden_act,
            dropout=lambda model: model.config.hidden_dropout_prob,
            head=("classifier",),
        )
    )

``context`` holds the arguments the model passed to the layer (attention mask, position
embeddings, encoder states, …) by the names of the layer's ``forward`` signature. The
hyperparameter getters receive the whole model (not only a Hugging Face config), so that models
without a config, such as timm's, can be described too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from meft.adapters import LayerAdapters

HalfBlock = Callable[[nn.Module, torch.Tensor, dict[str, Any], LayerAdapters], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class Architecture:
    name: str
    matches: Callable[[nn.Module], bool]
    stacks: tuple[
        str, ...
    ]  # dotted paths (suffixes) of the ModuleLists of layers, bottom stack first
    attention: HalfBlock
    ffn: HalfBlock
    hidden_size: Callable[[nn.Module], int]  # the model -> the width of the streams
    activation: Callable[[nn.Module], str]  # the model -> the adapters' activation name
    dropout: Callable[[nn.Module], float]  # the model -> the adapters' dropout
    head: tuple[str, ...] = ()  # candidate task-head module names, trained with the adapters
    check: Callable[[nn.Module], None] | None = (
        None  # raise for unsupported settings (e.g. LayerDrop)
    )
    # Layer arguments that hold a key/value cache the attention writes to. A cache serves
    # generation: MEFT passes it only when no backward will follow (see MeftStack), and never to a
    # backward recompute, which would write every key and value a second time.
    cache_arguments: tuple[str, ...] = ()
    # Model methods that read every layer's output by calling the layers one by one (timm's
    # forward_intermediates). While one runs, each layer returns its own output, not the stack's.
    layer_output_methods: tuple[str, ...] = ()
    # Model methods that wrap layer calls in the host's activation checkpointing when its flag is
    # on (timm's forward_features and forward_intermediates checkpoint around each block, and the
    # first block runs the whole stack). MEFT switches the flag off while one runs: checkpointing
    # saves nothing here, and reentrant checkpointing would leave every adapter without a gradient.
    checkpointing_methods: tuple[str, ...] = ()


_ARCHITECTURES: list[Architecture] = []


def register_architecture(architecture: Architecture) -> Architecture:
    _ARCHITECTURES[:] = [a for a in _ARCHITECTURES if a.name != architecture.name]
    _ARCHITECTURES.append(architecture)
    return architecture


def supported_architectures() -> list[str]:
    return [a.name for a in _ARCHITECTURES]


def find_architecture(model: nn.Module) -> Architecture:
    for architecture in _ARCHITECTURES:
        if architecture.matches(model):
            return architecture
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    raise ValueError(
        f"MEFT does not know how to make {type(model).__name__} (model_type={model_type!r}) reversible. "
        f"Supported families: {', '.join(supported_architectures())}. To add one, describe it with "
        "meft.Architecture and meft.register_architecture (see meft.architectures.base for an example)."
    )


def model_type_is(*names: str) -> Callable[[nn.Module], bool]:
    def matches(model: nn.Module) -> bool:
        return getattr(getattr(model, "config", None), "model_type", None) in names

    return matches


def find_module_list(model: nn.Module, path: str) -> tuple[str, nn.ModuleList]:
    """The ModuleList whose qualified name ends with ``path`` (heads wrap the base model differently)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList | nn.Sequential) and (
            name == path or name.endswith("." + path)
        ):
            return name, module
    raise ValueError(f"no layer stack named '*{path}' in {type(model).__name__}")

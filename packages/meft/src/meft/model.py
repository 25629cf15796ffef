"""``get_meft_model``: insert adapters, build the coupled layers, route the layer loop through them."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import torch
from torch import nn

import peft_core
from meft.adapters import ATTRIBUTE, LayerAdapters, adapters_of
from meft.architectures import Architecture, find_architecture, find_module_list
from meft.config import MeftConfig
from meft.coupling import CoupledLayer
from meft.reversible import StackRun, run_stack


class MeftStack:
    """One stack of layers made reversible. Its first layer runs the whole stack; the others pass
    their input through, so the host model's own layer loop, masks and position handling stay."""

    def __init__(
        self, name: str, layers: nn.ModuleList, architecture: Architecture, config: MeftConfig
    ):
        self.name = name
        self.layers = list(layers)
        self.config = config
        x1_factor, x2_factor = config.factors
        self.coupled = [
            _couple_layer(layer, architecture, config.variant, x1_factor, x2_factor)
            for layer in layers
        ]
        self.num_reversible = (
            len(self.layers)
            if config.num_reversible_layers is None
            else config.num_reversible_layers
        )
        if self.num_reversible > len(self.layers):
            raise ValueError(
                f"MeftConfig.num_reversible_layers={self.num_reversible} exceeds the {len(self.layers)} layers of {name}"
            )
        self.cache_arguments = architecture.cache_arguments
        self.last_run: StackRun | None = None
        _warn_if_reconstruction_is_unstable(config, self.num_reversible, name)
        self._original_forwards = [layer.forward for layer in self.layers]
        self._signature = inspect.signature(self._original_forwards[0])

    def install(self) -> None:
        self.layers[0].forward = self._run_from_first_layer
        for layer in self.layers[1:]:
            layer.forward = _pass_through

    def uninstall(self) -> None:
        for layer, forward in zip(self.layers, self._original_forwards, strict=True):
            layer.forward = forward

    def _run_from_first_layer(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        bound = self._signature.bind(*args, **kwargs)
        arguments = dict(bound.arguments)
        for name, parameter in self._signature.parameters.items():
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                arguments.update(arguments.pop(name, {}))
        hidden = arguments.pop(next(iter(self._signature.parameters)))
        if self.layers[0].training and torch.is_grad_enabled():
            # As under Hugging Face's gradient checkpointing: a cache written while training is
            # never read, and would keep every layer's keys and values (memory growing with depth)
            # alive for as long as the model's output is.
            arguments.update({name: None for name in self.cache_arguments if name in arguments})
        output, self.last_run = run_stack(
            self.coupled, hidden, arguments,
            num_reversible=self.num_reversible,
            cache_arguments=self.cache_arguments,
            stream_dtype=getattr(torch, self.config.stream_dtype),
            check_reconstruction=self.config.check_reconstruction,
            reconstruction_tolerance=self.config.reconstruction_tolerance,
        )  # fmt: skip
        return output

    @property
    def reconstruction_errors(self) -> list[float] | None:
        """Per-layer relative reconstruction error of the last backward (``check_reconstruction``)."""
        return None if self.last_run is None else self.last_run.reconstruction_errors


# Rounding of the stream dtype, and the relative error past which reconstruction is useless.
_EPSILON = {"float32": 6e-8, "float64": 1.1e-16}
_UNSTABLE = 1e-2


def _warn_if_reconstruction_is_unstable(config: MeftConfig, num_reversible: int, name: str) -> None:
    """Each inverse divides by λ and β: rounding grows ~1/(λβ) per layer down the stack."""
    x1_factor, x2_factor = config.factors
    growth = 1 / (x1_factor * x2_factor)
    predicted = _EPSILON[config.stream_dtype] * growth**num_reversible
    if predicted > _UNSTABLE:
        warnings.warn(
            f"MEFT ({config.variant}, λ={x1_factor}, β={x2_factor}): reconstructing the inputs of "
            f"{num_reversible} reversible layers of {name} amplifies {config.stream_dtype} rounding by "
            f"~{growth:.0f}x per layer (predicted relative error ~{predicted:.0e} at the bottom). "
            "Use stream_dtype='float64', fewer num_reversible_layers, or check_reconstruction=True to measure.",
            stacklevel=3,
        )


def _pass_through(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return hidden_states


def _couple_layer(
    layer: nn.Module, architecture: Architecture, variant: str, x1_factor: float, x2_factor: float
):
    adapters = adapters_of(layer)

    def attention(x, context):
        return architecture.attention(layer, x, context, adapters)

    def ffn(x, context):
        return architecture.ffn(layer, x, context, adapters)

    def whole_layer(x, context):
        return ffn(attention(x, context), context)

    def stream_adapter(x, context):
        return adapters.stream(x)

    F, G = {
        "meft1": (whole_layer, stream_adapter),
        "meft2": (stream_adapter, whole_layer),
        "meft3": (attention, ffn),
    }[variant]
    return CoupledLayer(F, G, x1_factor, x2_factor, swap=variant != "meft3", module=layer)


def _head_patterns(model: nn.Module, architecture: Architecture) -> list[str]:
    names = {name for name, _ in model.named_modules()}
    return [f"{head}.*" for head in architecture.head if head in names]


@peft_core.register_method("meft", MeftConfig)
def get_meft_model(model: nn.Module, config: MeftConfig | None = None) -> nn.Module:
    """Make ``model`` reversible in place and return it, with only adapters and the task head trainable.

    Example:
        >>> from transformers import BertConfig, BertForSequenceClassification
        >>> base = BertForSequenceClassification(
        ...     BertConfig(
        ...         hidden_size=32,
        ...         num_hidden_layers=2,
        ...         num_attention_heads=2,
        ...         intermediate_size=64,
        ...         vocab_size=100,
        ...     )
        ... )
        >>> model = get_meft_model(base, MeftConfig(variant="meft1"))
        >>> peft_core.print_trainable_parameters(model)
        trainable params: 2,210 || all params: 106,962 || trainable%: 2.0662
    """
    config = config or MeftConfig()
    if getattr(model, "meft_stacks", None):
        raise ValueError("this model is already a MEFT model; call meft.unload(model) first")
    architecture = find_architecture(model)
    if architecture.check is not None:
        architecture.check(model)
    activation = config.adapter_activation or architecture.activation(model)
    dropout = (
        config.adapter_dropout
        if config.adapter_dropout is not None
        else architecture.dropout(model)
    )
    hidden_size = architecture.hidden_size(model)
    stacks = []
    for path in architecture.stacks:
        name, layers = find_module_list(model, path)
        for layer in layers:
            adapters = LayerAdapters(
                config.variant, hidden_size, config.adapter_dim,
                activation, dropout, config.adapter_init,
            )  # fmt: skip
            # Same device and dtype as the layer they live in (half-precision and GPU models too).
            reference = next(p for p in layer.parameters() if p.is_floating_point())
            layer.add_module(ATTRIBUTE, adapters.to(device=reference.device, dtype=reference.dtype))
        stacks.append(MeftStack(name, layers, architecture, config))
    head = (
        list(config.trainable)
        if config.trainable is not None
        else _head_patterns(model, architecture)
    )
    peft_core.freeze(model, trainable=[f"*.{ATTRIBUTE}.*", *head])
    for stack in stacks:
        stack.install()
    model.meft_stacks = stacks
    model.meft_config = config
    return model


def unload(model: nn.Module) -> nn.Module:
    """Restore the layers' own forward passes and remove the adapters (trained values are lost)."""
    for stack in getattr(model, "meft_stacks", []):
        stack.uninstall()
        for layer in stack.layers:
            delattr(layer, ATTRIBUTE)
    model.meft_stacks = []
    return model


def reconstruction_errors(model: nn.Module) -> dict[str, list[float] | None]:
    """Per stack, per layer relative error of the inputs reconstructed in the last backward."""
    return {stack.name: stack.reconstruction_errors for stack in getattr(model, "meft_stacks", [])}


__all__ = ["MeftStack", "get_meft_model", "reconstruction_errors", "unload"]

"""``get_meft_model``: insert adapters, build the coupled layers, route the layer loop through them."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import sys
import warnings
from typing import Any

import torch
from torch import nn

import peft_core
from meft.adapters import ATTRIBUTE, LayerAdapters, adapters_of
from meft.architectures import Architecture, find_architecture, find_module_list
from meft.architectures.base import HalfBlock
from meft.checkpointing import (
    checkpointing_enabled,
    checkpointing_message,
    checkpointing_suspended,
    suspended_checkpointing_message,
)
from meft.config import MeftConfig
from meft.coupling import CoupledLayer
from meft.precision import lowest_precision, warn_if_reconstruction_is_unstable
from meft.reversible import StackRun, run_stack
from peft_core.activations import activation_names, get_activation
from peft_core.data_parallel import ONE_PROCESS_PER_GPU


class MeftStack:
    """One stack of layers made reversible. Its first layer runs the whole stack; the others hand on
    its result, so the host model's own layer loop, masks and position handling stay.

    When something reads each layer's output (``output_hidden_states``, a forward hook on a layer,
    timm's ``forward_intermediates``), the first layer also keeps every layer's output (the mean of
    its two streams) and each layer returns its own; otherwise only the final output is kept.
    """

    def __init__(
        self,
        name: str,
        layers: nn.ModuleList,
        architecture: Architecture,
        config: MeftConfig,
        host: nn.Module | None = None,
    ):
        self.name = name
        self.layers = list(layers)
        self.host = host  # the module whose loop calls the layers (its checkpointing flag)
        self.config = config
        x1_factor, x2_factor = config.factors
        self.coupled = [
            _couple_layer(layer, architecture, config.variant, x1_factor, x2_factor)
            for layer in layers
        ]
        self.num_reversible = _num_reversible(config, len(self.layers), name)
        self.cache_arguments = architecture.cache_arguments
        self.last_run: StackRun | None = None
        self.recording_layer_outputs = 0  # > 0 while a reader of every layer's output runs
        self._layer_outputs: list[torch.Tensor] | None = None
        self._reconstruction_errors: list[float] | None = None
        self._warned_about_cache = False
        self._warned_about_checkpointing = False
        warn_if_reconstruction_is_unstable(
            config, self.num_reversible, name, lowest_precision(self.layers)
        )
        self._signature = inspect.signature(self.layers[0].forward)
        # A forward set on the instance before MEFT's (e.g. by accelerate's hooks), to restore.
        self._instance_forwards = [layer.__dict__.get("forward") for layer in self.layers]

    def __getstate__(self) -> dict[str, Any]:
        # The last call's context and layer outputs belong to that call (and may hold tensors in
        # an autograd graph, which cannot be copied): a copy or a pickle starts without them.
        return {**self.__dict__, "last_run": None, "_layer_outputs": None}

    def install(self) -> None:
        for index, layer in enumerate(self.layers):
            layer.forward = _StackLayerForward(self, index)
            # An instance attribute shadows nn.Module's method, which nn.DataParallel calls on
            # every module it copies: the refusal comes before any replica runs.
            layer._replicate_for_data_parallel = _RefuseDataParallel(self.name)

    def uninstall(self) -> None:
        for layer, forward in zip(self.layers, self._instance_forwards, strict=True):
            layer.__dict__.pop("_replicate_for_data_parallel", None)
            if forward is None:
                layer.__dict__.pop("forward", None)  # the class's own forward is visible again
            else:
                layer.forward = forward

    def _run_from_first_layer(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        bound = self._signature.bind(*args, **kwargs)
        arguments = dict(bound.arguments)
        for name, parameter in self._signature.parameters.items():
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                arguments.update(arguments.pop(name, {}))
        hidden = arguments.pop(next(iter(self._signature.parameters)))
        self._handle_caches(arguments)
        self._warn_if_checkpointing()
        outputs = [] if self._layer_outputs_requested() else None
        self._layer_outputs = None
        output, self.last_run = run_stack(
            self.coupled, hidden, arguments,
            num_reversible=self.num_reversible,
            cache_arguments=self.cache_arguments,
            stream_dtype=getattr(torch, self.config.stream_dtype),
            check_reconstruction=self.config.check_reconstruction,
            reconstruction_tolerance=self.config.reconstruction_tolerance,
            layer_outputs=outputs,
            on_reconstructed=self._record_reconstruction_errors,
            save_inputs_every=self.config.save_inputs_every,
        )  # fmt: skip
        if outputs is None or len(outputs) == 1:
            return output
        outputs[-1] = output  # the same values; this one carries the reversible Function's graph
        self._layer_outputs = outputs
        return outputs[0]

    def _hand_on(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        """Layer ``index`` > 0: its own output if the first layer kept it, else the stack's output."""
        outputs = self._layer_outputs
        if outputs is None:
            return hidden
        if index == len(self.layers) - 1:
            self._layer_outputs = None
        return outputs[index]

    def _layer_outputs_requested(self) -> bool:
        if self.recording_layer_outputs:
            return True
        # Hugging Face's output_hidden_states: hooks on each layer read its output while a
        # collector is active (installed once, so the hooks alone do not mean a request).
        capturing = sys.modules.get("transformers.utils.output_capturing")
        collector = getattr(capturing, "_active_collector", None)
        try:
            collected = collector.get() if collector is not None else None
        except Exception:  # a transformers version with other internals: rely on the hooks below
            collected = None
        if collected is not None and "hidden_states" in collected:
            return True
        return any(
            getattr(hook, "__name__", "") != "output_capturing_hook"
            for layer in self.layers
            for hook in layer._forward_hooks.values()
        )

    def _handle_caches(self, arguments: dict[str, Any]) -> None:
        """Refuse a filled key/value cache the reversible backward could not replay; drop an empty
        one in training (as Hugging Face does under gradient checkpointing), warning once."""
        caches = {n: arguments[n] for n in self.cache_arguments if arguments.get(n) is not None}
        filled = {n: length for n, c in caches.items() if (length := _cache_length(c)) > 0}
        grad = torch.is_grad_enabled()
        if filled and grad and self.num_reversible > 0:
            name, length = next(iter(filled.items()))
            raise ValueError(
                f"MEFT: a key/value cache holding {length} earlier positions was passed to "
                f"{self.name} (argument {name!r}) with gradients enabled. The reversible backward "
                "recomputes each layer from its output and cannot replay a cache, so the "
                "gradients would be wrong. Run cached forwards (generation) under torch.no_grad() "
                "or torch.inference_mode(), or convert with MeftConfig(num_reversible_layers=0) "
                "to train on top of a cache with vanilla backprop."
            )
        if caches and not filled and grad and self.layers[0].training:
            # A cache written while training is never read, and would keep every layer's keys and
            # values (memory growing with depth) alive for as long as the model's output is.
            arguments.update(dict.fromkeys(caches))
            if not self._warned_about_cache:
                self._warned_about_cache = True
                warnings.warn(
                    f"MEFT: caching is incompatible with training ({self.name}); the key/value "
                    "cache is not written. Pass use_cache=False to silence this.",
                    stacklevel=2,
                )

    def _warn_if_checkpointing(self) -> None:
        """Once per stack: the host's activation checkpointing saves nothing here (see
        meft.checkpointing), so say so rather than let the user believe it does."""
        if self._warned_about_checkpointing or not torch.is_grad_enabled():
            return
        if self.layers[0].training and checkpointing_enabled([self.host, *self.layers]):
            self._warned_about_checkpointing = True
            warnings.warn(checkpointing_message(self.name), stacklevel=3)

    def _record_reconstruction_errors(self, errors: list[float]) -> None:
        self._reconstruction_errors = errors

    @property
    def reconstruction_errors(self) -> list[float] | None:
        """Per-layer relative reconstruction error of the last backward (``check_reconstruction``);
        kept until the next backward replaces it."""
        return self._reconstruction_errors


class _StackLayerForward:
    """The forward MEFT installs on layer ``index`` of a stack (an object, not a closure, so that
    copies and pickles of the model call their own stack)."""

    def __init__(self, stack: MeftStack, index: int):
        self.stack, self.index = stack, index

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.index == 0:
            return self.stack._run_from_first_layer(*args, **kwargs)
        hidden = args[0] if args else kwargs[next(iter(self.stack._signature.parameters))]
        return self.stack._hand_on(self.index, hidden)


class _RefuseDataParallel:
    """Stands in for ``nn.Module._replicate_for_data_parallel`` on a MEFT layer.

    A replica's layers would keep calling the original stack (its forward is an attribute that
    refers to the stack, and a replica's ``parameters()`` is empty, so the coupled layers could not
    see the replica's weights): replicas on other GPUs would fail on mixed devices. An object, not
    a closure, so that copies and pickles of the model keep it."""

    def __init__(self, stack_name: str):
        self.stack_name = stack_name

    def __call__(self) -> nn.Module:
        raise RuntimeError(
            f"MEFT does not run under nn.DataParallel ({self.stack_name} is reversible): "
            + ONE_PROCESS_PER_GPU
        )


def _cache_length(cache: Any) -> int:
    """Positions already held by a key/value cache (a cache of unknown type counts as filled)."""
    get_seq_length = getattr(cache, "get_seq_length", None)
    return int(get_seq_length()) if callable(get_seq_length) else 1


def _num_reversible(config: MeftConfig, num_layers: int, name: str) -> int:
    if config.num_reversible_layers is None:
        return num_layers
    if config.num_reversible_layers > num_layers:
        raise ValueError(
            f"MeftConfig.num_reversible_layers={config.num_reversible_layers} exceeds the "
            f"{num_layers} layers of {name}"
        )
    return config.num_reversible_layers


@dataclasses.dataclass(eq=False)
class LayerPart:
    """F or G of one coupled layer: ``part`` of ``layer`` with its adapters.

    An object rather than a closure, so that ``copy.deepcopy`` (``AveragedModel``, EMA teachers) and
    pickling give a copy that computes with the copied layer; the adapters are looked up on the
    layer at call time.
    """

    layer: nn.Module = dataclasses.field(repr=False)
    part: str  # "attention", "ffn", "layer" (attention then FFN) or "stream" (the lone adapter)
    attention: HalfBlock = dataclasses.field(repr=False)
    ffn: HalfBlock = dataclasses.field(repr=False)

    def __call__(self, x: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        adapters = adapters_of(self.layer)
        if self.part == "stream":
            return adapters.stream(x)
        if self.part != "ffn":
            x = self.attention(self.layer, x, context, adapters)
        if self.part != "attention":
            x = self.ffn(self.layer, x, context, adapters)
        return x


def _couple_layer(
    layer: nn.Module, architecture: Architecture, variant: str, x1_factor: float, x2_factor: float
) -> CoupledLayer:
    F, G = {
        "meft1": ("layer", "stream"),
        "meft2": ("stream", "layer"),
        "meft3": ("attention", "ffn"),
    }[variant]
    parts = [LayerPart(layer, part, architecture.attention, architecture.ffn) for part in (F, G)]
    return CoupledLayer(*parts, x1_factor, x2_factor, swap=variant != "meft3", module=layer)


def _is_peft_model(model: nn.Module) -> bool:
    return hasattr(model, "peft_config") and type(model).__module__.startswith("peft.")


def _head_patterns(model: nn.Module, architecture: Architecture) -> list[str]:
    names = {name for name, _ in model.named_modules()}
    return [f"{head}.*" for head in architecture.head if head in names]


def _warn_about_a_frozen_head(model: nn.Module, architecture: Architecture) -> None:
    """``trainable`` replaces the default (the task head): say so when the head is left frozen,
    which for a freshly initialised head is almost never what was meant."""
    modules = dict(model.named_modules())
    for head in architecture.head:
        parameters = list(modules[head].parameters()) if head in modules else []
        if parameters and not any(p.requires_grad for p in parameters):
            warnings.warn(
                f"MEFT: MeftConfig.trainable replaces the default trainable parameters (the task "
                f"head), so {head!r} stays frozen; add '{head}.*' to trainable to train it",
                stacklevel=3,
            )


def _model_activation(model: nn.Module, architecture: Architecture) -> str:
    """The adapters' activation when the config names none: the model's own, if peft-core knows it."""
    name = architecture.activation(model)
    try:
        get_activation(name)  # peft-core builds the adapters' activation: ask it, not a copy
    except ValueError:
        raise ValueError(
            f"MEFT: the adapters would use {type(model).__name__}'s activation {name!r} (from its "
            f"config), which has no adapter counterpart here; pass MeftConfig(adapter_activation=...) "
            f"with one of {', '.join(activation_names())}"
        ) from None
    return name


@peft_core.register_method("meft", MeftConfig)
def get_meft_model(model: nn.Module, config: MeftConfig | None = None) -> nn.Module:
    """Make ``model`` reversible in place and return it, with only adapters and the task head trainable.

    Everything is checked before the model is changed: on an error it is left as it was.

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
        trainable params: 2,274 || all params: 40,130 || trainable%: 5.6666
    """
    config = config or MeftConfig()
    config.validate()  # again: a field may have been changed since the config was built
    if getattr(model, "meft_stacks", None):
        raise ValueError("this model is already a MEFT model; call meft.unload(model) first")
    if _is_peft_model(model):
        # Its layers would be found through the wrapper, but not its head, and the freeze would
        # leave only MEFT's adapters trainable: the LoRA weights and peft's copy of the head too.
        raise ValueError(
            f"MEFT converts a transformers or timm model, not a Hugging Face peft "
            f"{type(model).__name__}: call model.merge_and_unload() first; MEFT then trains its "
            "adapters and the task head"
        )
    architecture = find_architecture(model)
    if architecture.check is not None:
        architecture.check(model)
    activation = config.adapter_activation or _model_activation(model, architecture)
    dropout = (
        config.adapter_dropout
        if config.adapter_dropout is not None
        else architecture.dropout(model)
    )
    hidden_size = architecture.hidden_size(model)
    stacks = [find_module_list(model, path) for path in architecture.stacks]
    for name, layers in stacks:
        _num_reversible(config, len(layers), name)
    adapters = {}  # built before any is inserted: a bad activation name leaves the model as it was
    for _, layers in stacks:
        for layer in layers:
            # Same device and dtype as the layer they live in (half-precision and GPU models too).
            reference = next(p for p in layer.parameters() if p.is_floating_point())
            adapters[layer] = LayerAdapters(
                config.variant, hidden_size, config.adapter_dim,
                activation, dropout, config.adapter_init,
            ).to(device=reference.device, dtype=reference.dtype)  # fmt: skip
    head = (
        list(config.trainable)
        if config.trainable is not None
        else _head_patterns(model, architecture)
    )
    for layer, layer_adapters in adapters.items():
        layer.add_module(ATTRIBUTE, layer_adapters)
    try:
        peft_core.freeze(model, trainable=[f"*.{ATTRIBUTE}.*", *head])
    except ValueError:  # a `trainable` pattern matches nothing (freeze changed nothing yet)
        for layer in adapters:
            delattr(layer, ATTRIBUTE)
        raise
    if config.trainable is not None:
        _warn_about_a_frozen_head(model, architecture)
    meft_stacks = []
    for name, layers in stacks:  # a loop, not a comprehension: warnings point at the caller
        host = model.get_submodule(name.rpartition(".")[0])  # "" is the model itself
        meft_stacks.append(MeftStack(name, layers, architecture, config, host))
    for stack in meft_stacks:
        stack.install()
    for method in dict.fromkeys(
        [*architecture.layer_output_methods, *architecture.checkpointing_methods]
    ):
        setattr(model, method, _HostMethod(model, method, architecture))
    model.meft_stacks = meft_stacks
    model.meft_config = config
    return model


class _HostMethod:
    """Wraps a model method MEFT has to see run. One that reads every layer's output (timm's
    ``forward_intermediates``): while it runs, each layer returns its own output rather than the
    stack's. One that checkpoints around layer calls (timm's ``forward_features``): it runs with the
    model's checkpointing flag off (see :mod:`meft.checkpointing`), and says so once."""

    def __init__(self, model: nn.Module, method: str, architecture: Architecture):
        self.model, self.method = model, method
        self.records_layer_outputs = method in architecture.layer_output_methods
        self.suspends_checkpointing = method in architecture.checkpointing_methods

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        stacks = self.model.meft_stacks if self.records_layer_outputs else []
        for stack in stacks:
            stack.recording_layer_outputs += 1
        suspending = (
            checkpointing_suspended(self.model)
            if self.suspends_checkpointing
            else contextlib.nullcontext(False)
        )
        try:
            with suspending as suspended:
                if suspended:
                    self._warn_once()
                return getattr(type(self.model), self.method)(self.model, *args, **kwargs)
        finally:
            for stack in stacks:
                stack.recording_layer_outputs -= 1

    def _warn_once(self) -> None:
        stack = self.model.meft_stacks[0]
        if (
            self.model.training
            and torch.is_grad_enabled()
            and not stack._warned_about_checkpointing
        ):
            stack._warned_about_checkpointing = True
            warnings.warn(suspended_checkpointing_message(type(self.model).__name__), stacklevel=3)


def unload(model: nn.Module) -> nn.Module:
    """Restore the layers' own forward passes and remove the adapters (trained values are lost).

    ``requires_grad`` stays as MEFT set it: the base model frozen, the task head (and any
    ``trainable`` pattern) trainable; the flags from before ``get_meft_model`` are not recorded,
    so set them yourself to train further. ``model.meft_config`` is removed.
    """
    for stack in getattr(model, "meft_stacks", []):
        stack.uninstall()
        for layer in stack.layers:
            delattr(layer, ATTRIBUTE)
    for name, value in list(vars(model).items()):
        if isinstance(value, _HostMethod):
            delattr(model, name)
    model.meft_stacks = []
    if "meft_config" in vars(model):
        del model.meft_config
    return model


def reconstruction_errors(model: nn.Module) -> dict[str, list[float] | None]:
    """Per stack, per layer relative error of the inputs reconstructed in the last backward
    (``check_reconstruction=True``; ``None`` before the first). Forwards without a backward, such
    as evaluation under ``torch.no_grad()``, leave it unchanged."""
    return {stack.name: stack.reconstruction_errors for stack in getattr(model, "meft_stacks", [])}


__all__ = ["MeftStack", "get_meft_model", "reconstruction_errors", "unload"]

"""Capture the MLP activations of a model during its forward pass, and turn them into the loss."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from deft.discovery import (
    ActivationTarget,
    GatedMode,
    find_targets,
    wrapper_chain,
)
from deft.discovery import (
    is_encoder_decoder as _model_is_encoder_decoder,
)
from deft.loss import DEFAULT_EPS, density_loss
from peft_core.data_parallel import ONE_PROCESS_PER_GPU, is_data_parallel_replica

# Hugging Face's label value for positions the loss ignores (decoder padding).
IGNORE_INDEX = -100


class DensityMonitor:
    """Forward hooks on every MLP activation of ``model`` (see :mod:`deft.discovery`).

    Each forward pass of ``model`` (or of any wrapper that calls it, or of the model a wrapper such
    as peft's wraps: ``peft_model.generate()`` calls only the latter) replaces the captured tensors.
    They are references to the very tensors the activation modules return — the ones autograd keeps
    for the backward pass anyway — never copies; the monitor holds them until the next forward or
    :meth:`clear`. Hooks run while ``model`` runs, so activations recomputed by gradient
    checkpointing during backward are ignored (use ``use_reentrant=False`` checkpointing: the
    re-entrant kind runs the forward without autograd, so the loss would get no gradient).

    Args:
        model: any ``nn.Module``; Hugging Face peft, DDP, accelerate and ``torch.compile`` wrappers
            are looked through.
        targets: ``"auto"`` (the table in :mod:`deft.discovery`) or module names / glob patterns,
            optionally suffixed ``":input"`` to capture a module's input instead of its output.
        gated: for gated MLPs, ``"gate"`` captures act(x W_gate) as the reference does; ``"product"``
            captures act(x W_gate) ⊙ (x W_up), the input of the down projection — the zeros that let
            its rows be skipped. Non-gated MLPs are unaffected.

    Example:
        >>> from peft_core.testing import TinyClassifier
        >>> model = TinyClassifier(num_layers=2)
        >>> with DensityMonitor(model) as monitor:
        ...     _ = model(torch.randint(0, 32, (3, 5)))
        ...     print(list(monitor.activations), tuple(monitor.loss().shape))
        ['blocks.0.act', 'blocks.1.act'] ()
    """

    def __init__(
        self,
        model: nn.Module,
        targets: str | Sequence[str] = "auto",
        *,
        gated: GatedMode = "gate",
    ) -> None:
        self.model = model
        self.gated = gated
        self.targets: list[ActivationTarget] = find_targets(model, targets, gated=gated)
        self._encoder_decoder = _model_is_encoder_decoder(model)
        self._captured: dict[str, list[torch.Tensor]] = {}
        self._depth = 0  # how deep inside model.forward (or a wrapped model's) we are
        self._managed = False  # True once the hooks on model (or a wrapped model) were seen to run
        self._warned = False
        self._warned_positional = False
        self._forward_had_grad = True  # whether the last forward ran with autograd on
        self._handles: list[Any] = []
        # A forward may enter through the wrapper or through any model it wraps: peft's
        # generate() calls the wrapped model's generate, which calls that model, never the
        # wrapper. Each of them marks "inside a forward"; captures outside every one of them are
        # gradient-checkpointing recomputation during backward.
        for _, entry in wrapper_chain(model):
            self._handles += [
                entry.register_forward_pre_hook(self._enter),
                entry.register_forward_hook(self._exit, always_call=True),
            ]
        for target in self.targets:
            if target.capture == "output":
                hook = partial(self._on_output, target.name)
                self._handles.append(target.module.register_forward_hook(hook))
            else:
                hook = partial(self._on_input, target.name)
                self._handles.append(
                    target.module.register_forward_pre_hook(hook, with_kwargs=True)
                )

    # -- hooks ---------------------------------------------------------------------------------
    def _enter(self, module: nn.Module, args: Any) -> None:
        if is_data_parallel_replica(module):
            # Replicas run the hooked layers in parallel threads, each on its slice of the batch:
            # their activations would land in one list, against the whole batch's mask.
            raise RuntimeError(
                "DensityMonitor: the model runs under torch.nn.DataParallel, whose replicas the "
                "monitor cannot tell apart; " + ONE_PROCESS_PER_GPU
            )
        if self._depth == 0:
            self._captured = {}
            self._forward_had_grad = torch.is_grad_enabled()
        self._depth += 1
        self._managed = True

    def _exit(self, module: nn.Module, args: Any, output: Any) -> None:
        self._depth -= 1

    def _on_output(self, name: str, module: nn.Module, args: Any, output: Any) -> None:
        self._store(name, output)

    def _on_input(self, name: str, module: nn.Module, args: Any, kwargs: dict) -> None:
        tensor = args[0] if args else next(iter(kwargs.values()), None)
        self._store(name, tensor)

    def _store(self, name: str, tensor: Any) -> None:
        if self._depth == 0:
            if self._managed and _in_backward():
                return  # outside model's forward: gradient-checkpoint recomputation in backward
            # A forward that skipped the hooks of model and of every model it wraps (a call of
            # a submodule such as model.bert, or of their forward methods): a layer firing a
            # second time is the start of the next forward.
            if name in self._captured:
                self._captured = {}
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(
                f"DensityMonitor: {name} produced {type(tensor).__name__}, not a tensor; "
                "target the module whose output (or ':input') is the activation tensor"
            )
        self._captured.setdefault(name, []).append(tensor)

    # -- what was captured -----------------------------------------------------------------------
    @property
    def layer_names(self) -> list[str]:
        """The hooked tensors, in module order (``name:input`` for input captures)."""
        return [target.name for target in self.targets]

    @property
    def groups(self) -> dict[str, list[str]]:
        """Layer names per stack: ``"encoder"`` / ``"decoder"`` / ``"vision"`` (a vision tower), or
        ``"model"`` outside them (see :func:`deft.discovery.group_of`)."""
        grouped: dict[str, list[str]] = {}
        for target in self.targets:
            grouped.setdefault(target.group, []).append(target.name)
        return grouped

    @property
    def is_encoder_decoder(self) -> bool:
        """Whether the model has an encoder and a decoder stack (whichever of them is targeted)."""
        return self._encoder_decoder

    @property
    def virtual_tokens(self) -> int:
        """Leading positions the batch's masks do not cover: a peft prompt-learning config's
        ``num_virtual_tokens`` (prompt tuning prepends them to the input), else 0."""
        for _, entry in wrapper_chain(self.model):
            try:
                config = entry.active_peft_config
            except (AttributeError, KeyError, ValueError):
                continue
            if getattr(config, "is_prompt_learning", False):
                tokens = getattr(config, "num_virtual_tokens", None)
                return tokens if isinstance(tokens, int) and tokens > 0 else 0
        return 0

    @property
    def activations(self) -> dict[str, torch.Tensor]:
        """The tensors of the last forward by layer name, in the order they were computed.

        A module called several times per forward (weights shared across layers, as in ALBERT)
        appears once per call: ``name``, ``name#1``, ``name#2`` …
        """
        return {
            name if index == 0 else f"{name}#{index}": tensor
            for name, calls in self._captured.items()
            for index, tensor in enumerate(calls)
        }

    @property
    def activations_by_group(self) -> dict[str, dict[str, torch.Tensor]]:
        group = {target.name: target.group for target in self.targets}
        grouped: dict[str, dict[str, torch.Tensor]] = {}
        for name, tensor in self.activations.items():
            grouped.setdefault(group[name.split("#")[0]], {})[name] = tensor
        return grouped

    def clear(self) -> None:
        """Drop the references to the last forward's activations."""
        self._captured = {}

    # -- masks and loss --------------------------------------------------------------------------
    def masks(
        self,
        attention_mask: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor | None]:
        """The token mask for each group, by the stack its layers belong to.

        The decoder stack of an encoder-decoder model gets ``decoder_attention_mask`` (whether or
        not the encoder is targeted too); a vision tower (group ``"vision"``, e.g. CLIP's) gets
        none, as every patch token is real; every other group gets ``attention_mask``.
        """
        masks: dict[str, torch.Tensor | None] = {}
        for group in self.groups:
            if group == "vision":
                masks[group] = None
            elif group == "decoder" and self.is_encoder_decoder:
                masks[group] = decoder_attention_mask
            else:
                masks[group] = attention_mask
        return masks

    def masks_from_batch(self, batch: Any) -> dict[str, torch.Tensor | None]:
        """:meth:`masks` read from a Hugging Face-style batch dict.

        For encoder-decoder models without ``decoder_attention_mask``, decoder positions whose
        label is -100 (ignored by the task loss) are padding.
        """
        if not isinstance(batch, Mapping):
            if isinstance(batch, (tuple, list)) and not self._warned_positional:
                # A TensorDataset's (input_ids, attention_mask[, labels]): nothing names the mask.
                self._warned_positional = True
                warnings.warn(
                    f"DensityMonitor: a {type(batch).__name__} batch names none of its tensors, so "
                    "no attention_mask is read and padding counts as real tokens (and "
                    "model(*batch) passes them positionally); use dict batches "
                    "{'input_ids': ..., 'attention_mask': ...}",
                    stacklevel=3,
                )
            return self.masks()
        decoder_mask = batch.get("decoder_attention_mask")
        labels = batch.get("labels")
        if decoder_mask is None and self.is_encoder_decoder and _is_token_labels(labels):
            decoder_mask = labels != IGNORE_INDEX
        return self.masks(batch.get("attention_mask"), decoder_mask)

    def loss_terms(
        self,
        attention_mask: torch.Tensor | None = None,
        *,
        decoder_attention_mask: torch.Tensor | None = None,
        eps: float = DEFAULT_EPS,
    ) -> dict[str, torch.Tensor]:
        """:func:`deft.density_loss` of the last forward, one term per group."""
        return self._terms(self.masks(attention_mask, decoder_attention_mask), eps)

    def loss(
        self,
        attention_mask: torch.Tensor | None = None,
        *,
        decoder_attention_mask: torch.Tensor | None = None,
        eps: float = DEFAULT_EPS,
    ) -> torch.Tensor:
        """The density loss of the last forward: the sum of :meth:`loss_terms` (λ = 1 per stack).

        ``attention_mask=None`` counts padding positions, as the reference implementation does.
        """
        masks = self.masks(attention_mask, decoder_attention_mask)
        return torch.stack(list(self._terms(masks, eps).values())).sum()

    def loss_for_batch(
        self, batch: Any, eps: float = DEFAULT_EPS, *, count_padding: bool = False
    ) -> torch.Tensor:
        """:meth:`loss` with the masks read from the batch (see :meth:`masks_from_batch`).

        ``count_padding=True`` ignores the masks and averages over every position, pads
        included: the reference implementation's loss, for replicating it. With batches padded
        to a fixed length (the reference pads to 128) most positions are pads, and the loss can
        then fall by sparsifying them without touching the real tokens.
        """
        masks = self.masks() if count_padding else self.masks_from_batch(batch)
        return torch.stack(list(self._terms(masks, eps).values())).sum()

    def _terms(self, masks: dict[str, torch.Tensor | None], eps: float) -> dict[str, torch.Tensor]:
        by_group = self.activations_by_group
        if not by_group:
            state = "the monitor was removed" if not self._handles else "no forward ran since"
            raise RuntimeError(
                f"DensityMonitor has no activations ({state}): run a forward pass of the model "
                "it was built on (or of a wrapper around it) before asking for the loss"
            )
        self._warn_if_nothing_can_learn(by_group)
        virtual = self.virtual_tokens
        return {
            group: density_loss(
                list(tensors.values()), masks.get(group), eps, virtual_tokens=virtual
            )
            for group, tensors in by_group.items()
        }

    def _warn_if_nothing_can_learn(self, by_group: dict[str, dict[str, torch.Tensor]]) -> None:
        # Single layers without a gradient are expected (with adapters after the FFN, layer 0's
        # input depends on no trainable parameter); a whole stack without one is worth a word.
        if self._warned or not torch.is_grad_enabled():
            return
        frozen_groups = [
            group
            for group, tensors in by_group.items()
            if not any(t.requires_grad for t in tensors.values())
        ]
        # Checked every step: the parameter scan only runs when a stack looks frozen.
        if not frozen_groups or not any(p.requires_grad for p in self.model.parameters()):
            return
        self._warned = True
        if len(frozen_groups) == len(by_group) and not self._forward_had_grad:
            message = (
                "DensityMonitor: the last forward ran without autograd (torch.no_grad() or "
                "torch.inference_mode()), so its density loss cannot train anything; run the "
                "forward with gradients enabled"
            )
        elif len(frozen_groups) == len(by_group):
            message = (
                "DensityMonitor: no captured activation requires grad although the model has "
                "trainable parameters, so the density loss cannot train anything. Re-entrant "
                "gradient checkpointing runs the forward without autograd: use use_reentrant=False."
            )
        else:
            # Hugging Face peft's prefix tuning on an encoder-decoder gives its prefixes to the
            # decoder only, so the encoder's MLPs see nothing that trains.
            message = (
                f"DensityMonitor: the {' and '.join(frozen_groups)} term of the density loss is a "
                "constant: no trainable parameter reaches those MLP activations (prefix tuning "
                "on an encoder-decoder adapts the decoder only), so only "
                f"{' and '.join(g for g in by_group if g not in frozen_groups)} can become sparser"
            )
        warnings.warn(message, stacklevel=4)

    # -- lifetime --------------------------------------------------------------------------------
    def remove(self) -> None:
        """Remove every hook and drop the captured tensors; the model is as before."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.clear()

    def __enter__(self) -> DensityMonitor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        groups = ", ".join(f"{group}: {len(names)}" for group, names in self.groups.items())
        return f"DensityMonitor({type(self.model).__name__}, {groups} layers, gated={self.gated!r})"


def _in_backward() -> bool:
    """Whether autograd runs a backward pass in this thread (where checkpointing recomputes)."""
    graph_task_id = getattr(torch._C, "_current_graph_task_id", None)
    return graph_task_id is None or graph_task_id() != -1


def _is_token_labels(labels: Any) -> bool:
    return isinstance(labels, torch.Tensor) and labels.ndim == 2 and not labels.is_floating_point()

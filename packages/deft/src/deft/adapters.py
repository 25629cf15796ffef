"""Pfeiffer bottleneck adapters: DEFT's adapter variant (spec §5), on peft-core's BottleneckAdapter.

One adapter per layer, applied to the output of the FFN's output projection, before the residual
add (and, in post-LN models such as BERT, before the LayerNorm):

    h = W2 · act(W1 x)                    the FFN output
    h ← h + up(act(down(h)))              the adapter, reduction 16 (d → d/16 → d), ReLU
    …the layer goes on as before: dropout, + residual, LayerNorm

Everything else is frozen except the task head. For BERT this is ``layer.output.dense``'s output.
The reference code used adapter-transformers' ``PfeifferConfig``, which places the adapter at the
same FFN output but also re-uses the layer's LayerNorm around it; this module implements the
placement stated in the spec, without that LayerNorm call.

The adapter lives as a child module ``pfeiffer_adapter`` of the projection, applied by a forward
hook, so the projection stays an ``nn.Linear`` (code that reads ``.weight``, Hugging Face peft's
target matching and quantisation keep working) and the adapter's tensors are saved under names
such as ``bert.encoder.layer.0.output.dense.pfeiffer_adapter.down.weight``.

Where the projection is, per MLP layout found by :mod:`deft.discovery` (``^.`` = the MLP
container's parent; BERT splits its FFN into ``intermediate`` and ``output``):

    BERT / RoBERTa / ELECTRA / ViT (4.x)   ^.output.dense
    OPT, HF ViT (5.x), CLIP, timm Mlp      fc2
    Llama family, Phi-3                    down_proj
    T5, Flan-T5                            wo
    GPT-2 c_proj · GPT-NeoX dense_4h_to_h · GPT-J fc_out · DistilBERT lin2
    timm SwiGLU, timm GluMlp               fc2

Initialisation: ``init="normal"`` (the default, as adapter-transformers' "bert" init: weights
N(0, 0.02²), biases 0) starts *near* the base model — on a random 2-layer BERT (hidden 32) the
last hidden state moves by a relative 2e-5 to 4e-5 — and ``init="zero_up"`` starts exactly at it
(the up projection is zero).

Example:
    >>> import torch
    >>> from transformers import BertConfig, BertForSequenceClassification
    >>> model = BertForSequenceClassification(
    ...     BertConfig(
    ...         hidden_size=32,
    ...         num_hidden_layers=2,
    ...         num_attention_heads=2,
    ...         intermediate_size=64,
    ...         vocab_size=100,
    ...     )
    ... )
    >>> model = get_pfeiffer_adapter_model(model, PfeifferAdapterConfig())
    >>> [name for name, _ in pfeiffer_adapters(model)]
    ['bert.encoder.layer.0.output.dense', 'bert.encoder.layer.1.output.dense']
    >>> sum(p.numel() for p in model.parameters() if p.requires_grad)  # 2·(32·2+2+2·32+32) + 66
    390
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from typing import Any, ClassVar

import torch
from torch import nn

from deft.discovery import find_targets, unwrap
from peft_core.activations import get_activation
from peft_core.adapters import ADAPTER_INITS, BottleneckAdapter
from peft_core.config import ConfigError, MethodConfig
from peft_core.freezing import freeze
from peft_core.registry import register_method

ADAPTER_NAME = "pfeiffer_adapter"

# The FFN output projection, relative to the MLP container of each discovery layout.
FFN_OUTPUT_PROJECTIONS: dict[str, str] = {
    "T5 gated (Flan-T5, mT5)": "wo",
    "T5": "wo",
    "Llama-family gated": "down_proj",
    "Phi-3 fused gate_up": "down_proj",
    "timm SwiGLU": "fc2",
    "timm GluMlp (fused fc1)": "fc2",
    "OPT / ViT / CLIP (fc1, fc2)": "fc2",
    "timm Mlp (fc1, fc2)": "fc2",
    "BERT / RoBERTa / ELECTRA": "^.output.dense",
    "GPT-2": "c_proj",
    "GPT-NeoX / Falcon": "dense_4h_to_h",
    "GPT-J": "fc_out",
    "DistilBERT": "lin2",
}


@dataclasses.dataclass
class PfeifferAdapterConfig(MethodConfig):
    """Pfeiffer adapters after every FFN output (spec §5: reduction 16, ReLU).

    Attributes:
        reduction_factor: the bottleneck is ``hidden_size // reduction_factor`` (at least 1).
        activation: the adapter's non-linearity (any name ``peft_core.get_activation`` knows).
        init: ``"normal"`` (near the base model, adapter-transformers' default), ``"zero_up"``
            (exactly the base model) or ``"xavier"``; see :class:`peft_core.BottleneckAdapter`.
        dropout: dropout inside the adapter, after the activation.
        trainable_head: glob patterns of parameters that train with the adapters (the task head);
            patterns that match nothing are ignored, so the default serves BERT-style
            ``classifier``, decoder-style ``score`` and timm's ``head`` (ViT, DeiT; ``head.fc``
            of ConvNeXt-style heads) alike. ``()`` freezes the head too.
    """

    method: ClassVar[str] = "pfeiffer_adapter"

    reduction_factor: int = 16
    activation: str = "relu"
    init: str = "normal"
    dropout: float = 0.0
    trainable_head: tuple[str, ...] = ("classifier.*", "score.*", "head.*")

    def validate(self) -> None:
        factor = self.reduction_factor
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ConfigError(f"reduction_factor must be a positive integer, got {factor!r}")
        if not isinstance(self.activation, str):
            raise ConfigError(f"activation must be a name, got {self.activation!r}")
        try:
            get_activation(self.activation)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if self.init not in ADAPTER_INITS:
            raise ConfigError(f"init must be one of {ADAPTER_INITS}, got {self.init!r}")
        if not isinstance(self.dropout, (int, float)) or math.isnan(self.dropout):
            raise ConfigError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.trainable_head, str) or not all(
            isinstance(pattern, str) for pattern in self.trainable_head
        ):
            raise ConfigError(
                f"trainable_head must be a sequence of glob patterns, got {self.trainable_head!r}"
            )
        self.trainable_head = tuple(self.trainable_head)

    def bottleneck(self, hidden_size: int) -> int:
        return max(1, hidden_size // self.reduction_factor)


def ffn_output_projections(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The FFN output projection of every MLP that :func:`deft.find_targets` finds, in order.

    Names are paths in ``model`` as given (wrapper prefixes included).
    """
    prefix = unwrap(model)[1]
    found = []
    for target in find_targets(model):
        if target.family not in FFN_OUTPUT_PROJECTIONS:
            raise ValueError(
                f"{target.module_name}: no FFN output projection is known for the "
                f"{target.family} layout; add it to deft.adapters.FFN_OUTPUT_PROJECTIONS"
            )
        container = prefix + target.container if target.container else prefix.rstrip(".")
        relative = FFN_OUTPUT_PROJECTIONS[target.family]
        if relative.startswith("^."):
            container, relative = container.rpartition(".")[0], relative[2:]
        name = f"{container}.{relative}" if container else relative
        found.append((name, model.get_submodule(name)))
    return found


def _output_features(projection: nn.Module, name: str) -> int:
    features = getattr(projection, "out_features", None) or getattr(projection, "nf", None)
    if not isinstance(features, int):
        raise TypeError(
            f"{name} ({type(projection).__name__}) has neither out_features nor nf: cannot size "
            "its adapter"
        )
    return features


def apply_adapter(module: nn.Module, output: torch.Tensor) -> torch.Tensor:
    """``output + adapter(output)`` with the Pfeiffer adapter that ``module`` carries.

    What the forward hook does to the projection's output; :mod:`deft.sparse` calls it after
    computing the projection sparsely. The residual path keeps the projection's own output
    untouched (and its dtype).
    """
    adapter = module._modules[ADAPTER_NAME]
    return output + adapter(output.to(adapter.up.weight.dtype)).to(output.dtype)


def _apply_adapter(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
    # A module-level function rather than a closure, so that models with adapters deep-copy and
    # pickle.
    return apply_adapter(module, output)


def is_adapter_hook(hook: object) -> bool:
    """Whether ``hook`` is the forward hook that applies a Pfeiffer adapter."""
    return hook is _apply_adapter


def pfeiffer_adapters(model: nn.Module) -> list[tuple[str, BottleneckAdapter]]:
    """(projection name, adapter) for every Pfeiffer adapter in ``model``."""
    return [
        (name, module._modules[ADAPTER_NAME])
        for name, module in model.named_modules()
        if isinstance(module._modules.get(ADAPTER_NAME), BottleneckAdapter)
    ]


@register_method("pfeiffer_adapter", PfeifferAdapterConfig)
def get_pfeiffer_adapter_model(
    model: nn.Module, config: PfeifferAdapterConfig | None = None
) -> nn.Module:
    """Add a Pfeiffer adapter after every FFN output of ``model`` and freeze all but adapters+head.

    Modifies ``model`` in place and returns it. Saved and restored with peft-core's
    ``save_trainable(model, folder, config)`` / ``peft_core.load(base_model, folder)``.
    """
    config = PfeifferAdapterConfig() if config is None else config
    if not isinstance(config, PfeifferAdapterConfig):
        raise TypeError(f"config must be a PfeifferAdapterConfig, got {type(config).__name__}")
    if pfeiffer_adapters(model):
        raise ValueError(f"{type(model).__name__} already has Pfeiffer adapters")
    for name, projection in ffn_output_projections(model):
        features = _output_features(projection, name)
        adapter = BottleneckAdapter(
            features, config.bottleneck(features), config.activation, config.dropout,
            residual=False, init=config.init,
        )  # fmt: skip
        weight = getattr(projection, "weight", None)
        floating = isinstance(weight, torch.Tensor) and weight.is_floating_point()
        # Quantised projections (int8/4-bit weights) get float32 adapters.
        adapter.to(
            device=weight.device if isinstance(weight, torch.Tensor) else None,
            dtype=weight.dtype if floating else torch.float32,
        )
        projection.add_module(ADAPTER_NAME, adapter)
        projection.register_forward_hook(_apply_adapter)
    names = [name for name, _ in model.named_parameters(remove_duplicate=False)]
    head = [p for p in config.trainable_head if any(fnmatch.fnmatchcase(n, p) for n in names)]
    freeze(model, trainable=[f"*.{ADAPTER_NAME}.*", *head])
    return model


def remove_pfeiffer_adapters(model: nn.Module) -> nn.Module:
    """Take every Pfeiffer adapter (and its hook) out of ``model``; ``requires_grad`` flags stay."""
    holders = [module for _, module in model.named_modules() if ADAPTER_NAME in module._modules]
    for module in holders:
        for key, hook in list(module._forward_hooks.items()):
            if hook is _apply_adapter:
                del module._forward_hooks[key]
        del module._modules[ADAPTER_NAME]
    return model


__all__ = [
    "ADAPTER_NAME",
    "FFN_OUTPUT_PROJECTIONS",
    "PfeifferAdapterConfig",
    "apply_adapter",
    "ffn_output_projections",
    "get_pfeiffer_adapter_model",
    "is_adapter_hook",
    "pfeiffer_adapters",
    "remove_pfeiffer_adapters",
]

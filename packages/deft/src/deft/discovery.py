"""Where the MLP activations live: a table of MLP layouts and the search that applies it (spec §4).

An MLP is recognised by its *container* (the module holding the projections) and the attribute
names of its children, not by class names, so that renamed copies of an architecture (RoBERTa,
ELECTRA, Mistral, Qwen2 …) and layers wrapped by Hugging Face peft (a LoRA ``Linear`` keeps its
attribute name) are found too. The table (first match wins):

    family                    the container has                      A = output of          gate ⊙ up = input of
    T5 gated (Flan-T5, mT5)   wi_0, wi_1, wo, act                    act                    dropout
    T5                        wi, wo, act                            act
    Llama family (Mistral …)  gate_proj, up_proj, down_proj, act_fn  act_fn                 down_proj
    Phi-3 (fused gate_up)     gate_up_proj, down_proj, activation_fn activation_fn          down_proj
    timm SwiGLU               fc1_g, fc1_x, fc2, act                 act                    drop1
    timm GluMlp (fused fc1)   fc1, fc2, act, gate_last               act                    drop1
    OPT, HF ViT (5.x), CLIP   fc1, fc2, activation_fn                activation_fn
    timm Mlp (ViT …)          fc1, fc2, act                          act
    BERT, RoBERTa, ViT (4.x)  dense, intermediate_act_fn             intermediate_act_fn *
    GPT-2                     c_fc, c_proj, act                      act
    GPT-NeoX, Falcon          dense_h_to_4h, dense_4h_to_h, act      act
    GPT-J                     fc_in, fc_out, act                     act
    DistilBERT                lin1, lin2, activation                 activation

    * or the container itself when the activation is a plain function (its output is A).

An activation that is a plain function elsewhere is an error naming the MLP: hooking something else
would need a copy or would see dropout in between. ``gated="product"`` captures the input of the
last column instead of A for gated MLPs, so no product is ever computed by the monitor.

Wrappers are looked through: DDP / DataParallel / accelerate (``module.``), ``torch.compile``
(``_orig_mod.``) and Hugging Face peft (``base_model.model.`` or ``base_model.``). Names are reported
relative to the unwrapped model, so a plain model and its peft-wrapped copy name layers alike.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from torch import nn

Capture = Literal["output", "input"]
GatedMode = Literal["gate", "product"]


@dataclass(frozen=True)
class MLPLayout:
    """One row of the discovery table."""

    family: str
    activation: str
    siblings: tuple[str, ...]
    # Gated MLPs: the module whose (first) input is act(gate) ⊙ up, the tensor down_proj reads.
    product_input_of: str | None = None
    # The container's own output is exactly A, so it can be hooked when ``activation`` is a
    # plain function rather than a module (BertIntermediate returns act(dense(x))).
    container_returns_activation: bool = False
    # An attribute only this layout's containers have: timm's GluMlp has the children of a plain
    # Mlp, but its act sees half of fc1's output and the gate multiplies the other half.
    marker: str | None = None

    def matches(self, container: nn.Module) -> bool:
        children = container._modules
        return (
            all(children.get(name) is not None for name in self.siblings)
            and callable(getattr(container, self.activation, None))
            and (self.marker is None or hasattr(container, self.marker))
        )

    def describe(self) -> str:
        return f"{self.family}: {' + '.join((*self.siblings, self.activation))}"


MLP_LAYOUTS: tuple[MLPLayout, ...] = (
    MLPLayout("T5 gated (Flan-T5, mT5)", "act", ("wi_0", "wi_1", "wo"), "dropout"),
    MLPLayout("T5", "act", ("wi", "wo")),
    MLPLayout("Llama-family gated", "act_fn", ("gate_proj", "up_proj", "down_proj"), "down_proj"),
    MLPLayout("Phi-3 fused gate_up", "activation_fn", ("gate_up_proj", "down_proj"), "down_proj"),
    MLPLayout("timm SwiGLU", "act", ("fc1_g", "fc1_x", "fc2"), "drop1"),
    MLPLayout("OPT / ViT / CLIP (fc1, fc2)", "activation_fn", ("fc1", "fc2")),
    MLPLayout("timm GluMlp (fused fc1)", "act", ("fc1", "fc2"), "drop1", marker="gate_last"),
    MLPLayout("timm Mlp (fc1, fc2)", "act", ("fc1", "fc2")),
    MLPLayout(
        "BERT / RoBERTa / ELECTRA",
        "intermediate_act_fn",
        ("dense",),
        container_returns_activation=True,
    ),
    MLPLayout("GPT-2", "act", ("c_fc", "c_proj")),
    MLPLayout("GPT-NeoX / Falcon", "act", ("dense_h_to_4h", "dense_4h_to_h")),
    MLPLayout("GPT-J", "act", ("fc_in", "fc_out")),
    MLPLayout("DistilBERT", "activation", ("lin1", "lin2")),
)

# Attribute names that hold activations: the hint shown when a named target matches nothing.
_ACTIVATION_NAMES = {row.activation for row in MLP_LAYOUTS}


@dataclass(frozen=True)
class ActivationTarget:
    """A tensor to capture: the output (or first input) of ``module``."""

    name: str  # relative to the unwrapped model; ":input" appended for input captures
    module_name: str  # the module's path in the model as given (wrapper prefixes included)
    module: nn.Module
    capture: Capture
    family: str
    group: str
    # The MLP container (relative to the unwrapped model) of an automatically found target, where
    # its projections are looked up; None for targets the user named.
    container: str | None = None


def unwrap(model: nn.Module) -> tuple[nn.Module, str]:
    """Return the innermost wrapped model and the name prefix that leads to it.

    Example:
        >>> class DDPLike(nn.Module):
        ...     def __init__(self, module):
        ...         super().__init__()
        ...         self.module = module
        >>> unwrap(DDPLike(nn.Linear(2, 2)))[1]
        'module.'
    """
    chain = wrapper_chain(model)
    return chain[-1][1], chain[-1][0]


def wrapper_chain(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name prefix, module) of ``model`` and of every wrapped model inside it, outermost first.

    The last entry is what :func:`unwrap` returns. A wrapper's methods may call any of these
    directly (peft's ``generate`` calls the wrapped model's, skipping the wrapper's ``__call__``).
    """
    prefix = ""
    chain = [(prefix, model)]
    while True:
        children = model._modules
        if set(children) in ({"module"}, {"_orig_mod"}):  # DDP, DataParallel, torch.compile
            step = next(iter(children))
        elif _is_peft(model) and "base_model" in children:  # PeftModel
            step = "base_model"
        elif _is_peft(model) and "model" in children:  # a peft tuner: LoraModel, IA3Model …
            step = "model"
        else:
            return chain
        model, prefix = children[step], f"{prefix}{step}."
        chain.append((prefix, model))


def _is_peft(model: nn.Module) -> bool:
    # By module path, not isinstance: peft stays an optional dependency. transformers models that
    # carry a peft_config of their own (``model.add_adapter``) are not wrappers and stay as they are.
    return type(model).__module__.split(".", 1)[0] == "peft"


def group_of(name: str) -> str:
    """The stack a module belongs to, from the first path part that names one.

    ``"vision"`` for a vision tower (a part ``vision…`` or ``visual``: CLIP's ``vision_model``,
    LLaVA's ``vision_tower``, whose patch tokens are all real and take no attention mask),
    ``"encoder"`` or ``"decoder"`` when the path goes through such a stack, else ``"model"``.

    Example:
        >>> group_of("vision_model.encoder.layers.0.mlp.activation_fn")
        'vision'
        >>> group_of("text_model.encoder.layers.0.mlp.activation_fn")
        'encoder'
    """
    for part in name.split("."):
        if part == "visual" or part.startswith("vision"):
            return "vision"
        if part in ("encoder", "decoder"):
            return part
    return "model"


def is_encoder_decoder(model: nn.Module) -> bool:
    """Whether ``model`` (wrappers looked through) has an encoder and a decoder stack.

    The Hugging Face config's ``is_encoder_decoder`` decides where there is one; otherwise a module
    path through an ``encoder`` and one through a ``decoder`` (see :func:`group_of`). OPT's lone
    ``decoder`` stack is a decoder-only model, and reads the ``attention_mask``.
    """
    inner = unwrap(model)[0]
    flag = getattr(getattr(inner, "config", None), "is_encoder_decoder", None)
    if isinstance(flag, bool):
        return flag
    return {"encoder", "decoder"} <= {group_of(name) for name, _ in inner.named_modules()}


def find_targets(
    model: nn.Module, targets: str | Sequence[str] = "auto", *, gated: GatedMode = "gate"
) -> list[ActivationTarget]:
    """The activation tensors to capture in ``model``, in module order.

    ``targets="auto"`` applies :data:`MLP_LAYOUTS`; otherwise a list of module names or glob
    patterns (``"encoder.layer.*.intermediate.intermediate_act_fn"``), matched against names with
    and without wrapper prefixes. A ``":input"`` suffix captures the module's first input instead
    of its output (e.g. ``"*.mlp.down_proj:input"`` for act(gate) ⊙ up).

    Example:
        >>> mlp = nn.Sequential()
        >>> mlp.fc1, mlp.act, mlp.fc2 = nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4)
        >>> [t.name for t in find_targets(nn.ModuleDict({"block": mlp}))]
        ['block.act']
    """
    if gated not in ("gate", "product"):
        raise ValueError(f"gated must be 'gate' or 'product', got {gated!r}")
    inner, prefix = unwrap(model)
    if isinstance(targets, str) and targets == "auto":
        return _auto_targets(inner, prefix, gated)
    return _named_targets(inner, prefix, [targets] if isinstance(targets, str) else targets)


def _target(
    inner: nn.Module,
    prefix: str,
    name: str,
    capture: Capture,
    family: str,
    container: str | None = None,
) -> ActivationTarget:
    module = inner.get_submodule(name)
    label = f"{name}:input" if capture == "input" else name
    return ActivationTarget(
        label, prefix + name, module, capture, family, group_of(name), container
    )


def _join(container: str, child: str) -> str:
    return f"{container}.{child}" if container else child


def _auto_targets(inner: nn.Module, prefix: str, gated: GatedMode) -> list[ActivationTarget]:
    found: list[ActivationTarget] = []
    for container_name, container in inner.named_modules():
        layout = next((row for row in MLP_LAYOUTS if row.matches(container)), None)
        if layout is None:
            continue
        product = layout.product_input_of
        if gated == "product" and product is not None and container._modules.get(product):
            name = _join(container_name, product)
            found.append(_target(inner, prefix, name, "input", layout.family, container_name))
        elif isinstance(getattr(container, layout.activation), nn.Module):
            name = _join(container_name, layout.activation)
            found.append(_target(inner, prefix, name, "output", layout.family, container_name))
        elif layout.container_returns_activation:
            found.append(
                _target(inner, prefix, container_name, "output", layout.family, container_name)
            )
        else:
            raise ValueError(
                f"{prefix + container_name} looks like a {layout.family} MLP, but its "
                f"{layout.activation!r} is a plain function, not a module, so it cannot be hooked; "
                "name the module whose output is the activation with targets=[...]"
            )
    if not found:
        looked_for = "\n  ".join(row.describe() for row in MLP_LAYOUTS)
        raise ValueError(
            f"found no MLP activation in {type(inner).__name__}. Looked for MLP containers with "
            f"these children (family: attributes):\n  {looked_for}\n"
            "Name the activation modules yourself with targets=['pattern', ...] "
            "(module names or glob patterns; suffix ':input' to capture a module's input)."
        )
    _warn_about_uncovered_experts(inner, prefix, found)
    return found


def _warn_about_uncovered_experts(
    inner: nn.Module, prefix: str, found: list[ActivationTarget]
) -> None:
    """Mixture-of-experts blocks keep their experts' weights fused in one module (Qwen2-MoE's
    ``experts``) that no MLP layout matches; their activations would be missing from the loss and
    the report while a shared expert beside them is found, so say what is left out."""
    covered = [target.module_name for target in found]
    uncovered = [
        name
        for name, module in inner.named_modules()
        if name
        and type(module).__name__.endswith("Experts")
        and not any(target.startswith(prefix + name + ".") for target in covered)
    ]
    if uncovered:
        warnings.warn(
            f"DensityMonitor: {len(uncovered)} mixture-of-experts blocks (e.g. "
            f"{prefix + uncovered[0]}, {type(inner.get_submodule(uncovered[0])).__name__}) hold "
            "fused experts no MLP layout matches: their activations are not in the loss or the "
            "density report. Name their activation modules with targets=[...] to include them.",
            stacklevel=5,  # DensityMonitor(...)'s caller
        )


def _named_targets(
    inner: nn.Module, prefix: str, patterns: Sequence[str]
) -> list[ActivationTarget]:
    if not patterns:
        raise ValueError("targets is empty: pass 'auto' or a list of module names or patterns")
    names = [name for name, _ in inner.named_modules() if name]
    chosen: dict[tuple[str, Capture], None] = {}
    for entry in patterns:
        if not isinstance(entry, str):
            raise TypeError(f"targets must be strings, got {type(entry).__name__}: {entry!r}")
        pattern, _, capture = entry.partition(":")
        capture = capture or "output"
        if capture not in ("output", "input"):
            raise ValueError(f"target {entry!r}: the suffix must be ':input' or ':output'")
        hits = [
            name
            for name in names
            if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(prefix + name, pattern)
        ]
        if not hits:
            hint = [n for n in names if n.rsplit(".", 1)[-1] in _ACTIVATION_NAMES][:5] or names[:5]
            raise ValueError(
                f"target {entry!r} matches no module of {type(inner).__name__}; "
                f"module names look like {hint}"
            )
        chosen.update(((name, capture), None) for name in hits)
    order = {name: index for index, name in enumerate(names)}
    ordered = sorted(chosen, key=lambda key: order[key[0]])
    return [_target(inner, prefix, name, capture, "user") for name, capture in ordered]

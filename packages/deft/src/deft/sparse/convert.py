"""``sparsify(model)`` / ``densify(model)``: swap every MLP's down projection for a sparse one and back.

MLPs are found by :func:`deft.find_targets` (the discovery table of :mod:`deft.discovery`); each
row of that table has a conversion rule here:

    family                      replaced module                    becomes
    BERT / RoBERTa / ELECTRA    the layer's ``output.dense``       SparseLinear (LayerNorm etc. stay)
    T5                          ``DenseReluDense.wo``              SparseLinear
    OPT / HF ViT / CLIP         ``fc2``                            SparseLinear
    timm Mlp                    ``mlp.fc2`` (needs no ``norm``)    SparseLinear
    GPT-2                       ``mlp.c_proj`` (Conv1D)            SparseLinear
    GPT-NeoX, GPT-J, DistilBERT the down projection                SparseLinear
    Llama family, Flan-T5 gated the whole MLP container            SparseGatedMLP
    Phi-3 (fused gate_up)       the whole MLP container            SparseGatedMLP
    timm SwiGLU (needs no norm) the whole MLP container            SparseGatedMLP
    timm GluMlp (fused fc1)     the whole MLP container            SparseGatedMLP

Hugging Face peft: a ``PeftModel`` is looked through, and MLPs whose projections are plain
``nn.Linear`` are converted (LoRA on attention only is fine). An MLP projection that carries an
adapter (a LoRA/IA3 layer, a quantised layer) is refused with a clear error: merge first with
``model = model.merge_and_unload()``. We do not merge ourselves: merging rewrites the base weights
for good, which ``densify`` could not undo.

Pfeiffer adapters (``deft.methods.apply_method(model, "adapter")``, :mod:`deft.adapters`) on the
down projections are kept: the sparse module holds the same adapter (same ``state_dict`` keys) and
adds it to its output as the adapter's hook does, so τ = 0 still gives the dense outputs. Anything
else the sparse module would skip is refused with an error naming the module: forward hooks or
pre-hooks on a replaced projection, on a gated MLP container or on its children other than the
activation (a ``DensityMonitor(..., gated="product")`` or ``apply_threshold`` on ``down_proj``,
for instance), and child modules of a projection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn

from deft.adapters import ADAPTER_NAME, is_adapter_hook
from deft.discovery import find_targets, unwrap
from deft.sparse.kernels import (
    DEFAULT_DENSE_ABOVE,
    Strategy,
    check_strategy,
    per_layer_thresholds,
)
from deft.sparse.modules import SparseGatedMLP, SparseLinear, is_conv1d
from peft_core.adapters import BottleneckAdapter


@dataclass(frozen=True)
class SparseRule:
    """How to convert one family of the discovery table.

    Non-gated: ``down`` is the path of the down projection relative to the MLP container
    (``"../output.dense"``: the container's parent's ``output.dense``, as in BERT, whose
    down projection lives in a sibling module). Gated: ``gate``/``up``/``down``/``act`` name the
    container's children; ``up=None`` means a fused ``[gate; up]`` projection.
    """

    down: str
    gate: str | None = None
    up: str | None = None
    act: str | None = None
    # Children that must be nn.Identity: a norm between activation and down projection would
    # turn the zeros into non-zeros (and the gated path does not run it).
    must_be_identity: tuple[str, ...] = ()
    # Fused [gate; up] projections: the container's attribute saying the gate is the second half
    # (timm's GluMlp.gate_last); without one the gate is the first half (Phi-3).
    gate_last_attribute: str | None = None

    @property
    def gated(self) -> bool:
        return self.gate is not None


RULES: dict[str, SparseRule] = {
    "T5 gated (Flan-T5, mT5)": SparseRule("wo", gate="wi_0", up="wi_1", act="act"),
    "T5": SparseRule("wo"),
    "Llama-family gated": SparseRule("down_proj", gate="gate_proj", up="up_proj", act="act_fn"),
    "Phi-3 fused gate_up": SparseRule("down_proj", gate="gate_up_proj", act="activation_fn"),
    "timm SwiGLU": SparseRule(
        "fc2", gate="fc1_g", up="fc1_x", act="act", must_be_identity=("norm",)
    ),
    "timm GluMlp (fused fc1)": SparseRule(
        "fc2", gate="fc1", act="act", must_be_identity=("norm",), gate_last_attribute="gate_last"
    ),
    "OPT / ViT / CLIP (fc1, fc2)": SparseRule("fc2"),
    "timm Mlp (fc1, fc2)": SparseRule("fc2", must_be_identity=("norm",)),
    "BERT / RoBERTa / ELECTRA": SparseRule("../output.dense"),
    "GPT-2": SparseRule("c_proj"),
    "GPT-NeoX / Falcon": SparseRule("dense_4h_to_h"),
    "GPT-J": SparseRule("fc_out"),
    "DistilBERT": SparseRule("lin2"),
}
_SPARSE_TYPES = (SparseLinear, SparseGatedMLP)


@dataclass(frozen=True)
class _Plan:
    name: str  # the activation's name (what calibrate_threshold and DensityMonitor call the layer)
    parent: nn.Module  # the module holding the replaced one
    attribute: str
    module: nn.Module
    rule: SparseRule
    container: nn.Module


@dataclass(frozen=True)
class _Replaced:
    path: str  # in the unwrapped model
    module: nn.Module


def _parent_path(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


def _resolve(container_path: str, relative: str) -> tuple[str, str]:
    """(parent path, attribute) of ``relative`` seen from the container at ``container_path``."""
    base = container_path
    while relative.startswith("../"):
        base, relative = _parent_path(base), relative[3:]
    full = f"{base}.{relative}" if base else relative
    return _parent_path(full), full.rsplit(".", 1)[-1]


def _plan(model: nn.Module) -> list[_Plan]:
    inner, _ = unwrap(model)
    if any(isinstance(module, _SPARSE_TYPES) for module in inner.modules()):
        raise ValueError(
            f"{type(inner).__name__} is already sparsified; call deft.sparse.densify(model) first "
            "(e.g. to change the threshold)"
        )
    plans = []
    for target in find_targets(model, "auto"):
        rule = RULES.get(target.family)
        if rule is None or target.container is None:
            raise ValueError(
                f"{target.name}: no sparse conversion for MLP family {target.family!r}"
            )
        container_path = target.container
        container = inner.get_submodule(container_path)
        for child in rule.must_be_identity:
            if type(container._modules.get(child, nn.Identity())) is not nn.Identity:
                raise ValueError(
                    f"{target.name}: cannot sparsify this {target.family} MLP: its {child!r} "
                    f"({type(container._modules[child]).__name__}) sits between the activation and "
                    "the down projection and turns the zeros into non-zeros"
                )
        if not container_path:
            raise ValueError(f"{target.name}: the model itself is the MLP; wrap it in a module")
        if rule.gated:
            parent_path, attribute = _parent_path(container_path), container_path.rsplit(".", 1)[-1]
        else:
            parent_path, attribute = _resolve(container_path, rule.down)
        parent = inner.get_submodule(parent_path)
        module = parent._modules.get(attribute)
        _check_projections(target.name, target.family, rule, container, module)
        replaced = _Replaced(f"{parent_path}.{attribute}" if parent_path else attribute, module)
        _check_hooks_and_children(target.name, rule, container, container_path, replaced)
        plans.append(_Plan(target.name, parent, attribute, module, rule, container))
    return plans


def _check_projections(
    name: str, family: str, rule: SparseRule, container: nn.Module, replaced: nn.Module | None
) -> None:
    projections = (
        {p: container._modules.get(p) for p in (rule.gate, rule.up, rule.down) if p}
        if rule.gated
        else {rule.down: replaced}
    )
    for path, module in projections.items():
        if module is None:
            raise ValueError(
                f"{name}: this {family} MLP has no {path!r} down projection to sparsify"
            )
        if hasattr(module, "base_layer") or type(module).__module__.split(".")[0] == "peft":
            raise ValueError(
                f"{name}: {path} carries a Hugging Face peft adapter ({type(module).__name__}); "
                "merge the adapter into the base weights first: model = model.merge_and_unload()"
            )
        if not (type(module) is nn.Linear or (is_conv1d(module) and path == rule.down)):
            raise ValueError(
                f"{name}: {path} is a {type(module).__name__}; deft.sparse converts plain "
                "nn.Linear projections (and GPT-2's Conv1D) with float weights only"
            )
        if not module.weight.is_floating_point():
            raise ValueError(
                f"{name}: {path} has {module.weight.dtype} weights; need float weights"
            )
    if rule.gated and rule.up is None and container._modules[rule.gate].out_features % 2:
        raise ValueError(f"{name}: fused {rule.gate} has an odd number of outputs")


def _hook_names(hooks: Mapping[int, object]) -> str:
    functions = (getattr(hook, "func", hook) for hook in hooks.values())  # through partial()
    return ", ".join(getattr(f, "__qualname__", type(f).__name__) for f in functions)


def _check_module(
    layer: str, path: str, module: nn.Module, *, projection: bool, adapter: bool = False
) -> None:
    """Refuse what the sparse module would silently skip on ``module`` (found at ``path``).

    The sparse modules compute projections from their weights (and a gated MLP's other children,
    dropout for instance, are not called), so forward hooks and pre-hooks on them, and child modules
    of a projection, would never run. One thing is understood: a Pfeiffer adapter on the down
    projection (``adapter=True``; :mod:`deft.adapters`: a ``pfeiffer_adapter`` child applied by
    its forward hook), which the sparse module applies to its output.
    """
    hooks = dict(module._forward_hooks)
    children = dict(module._modules)
    if adapter and isinstance(children.get(ADAPTER_NAME), BottleneckAdapter):
        adapter_hooks = [key for key, hook in hooks.items() if is_adapter_hook(hook)]
        if len(adapter_hooks) != 1:
            raise ValueError(
                f"{layer}: cannot sparsify {path}: its Pfeiffer adapter is applied by "
                f"{len(adapter_hooks)} forward hooks instead of one"
            )
        del hooks[adapter_hooks[0]], children[ADAPTER_NAME]
    if projection and children:
        raise ValueError(
            f"{layer}: cannot sparsify {path} ({type(module).__name__}): it has child modules "
            f"{sorted(children)} that the sparse module would never run, as it reads the "
            "projection's weights directly; remove them first"
        )
    if hooks or module._forward_pre_hooks:
        found = _hook_names({**module._forward_pre_hooks, **hooks})
        raise ValueError(
            f"{layer}: cannot sparsify {path} ({type(module).__name__}): it has forward hooks or "
            f"pre-hooks ({found}) that the sparse module would never call, as it computes the "
            "projection from the weights; remove them first (e.g. a DensityMonitor or "
            "apply_threshold on this module)"
        )


def _check_hooks_and_children(
    layer: str, rule: SparseRule, container: nn.Module, container_path: str, replaced: _Replaced
) -> None:
    if not rule.gated:
        _check_module(layer, replaced.path, replaced.module, projection=True, adapter=True)
        return
    _check_module(layer, container_path, container, projection=False)  # replaced as a whole
    for child_name, child in container.named_children():
        if child_name == rule.act:
            continue  # called as a module: its hooks run
        _check_module(
            layer,
            f"{container_path}.{child_name}",
            child,
            projection=child_name in (rule.gate, rule.up, rule.down),
            adapter=child_name == rule.down,
        )


def sparsify(
    model: nn.Module,
    threshold: float | Mapping[str, float] = 0.0,
    *,
    strategy: Strategy = "auto",
    dense_above: float = DEFAULT_DENSE_ABOVE,
) -> nn.Module:
    """Replace every MLP's down projection of ``model`` by a sparse one, in place; returns ``model``.

    Args:
        model: a model whose MLPs :func:`deft.find_targets` finds (through peft/DDP wrappers).
        threshold: τ ≥ 0 for every layer, or a mapping from layer name to τ (the output of
            :func:`deft.thresholding.calibrate_threshold`). |a| ≤ τ counts as zero; τ = 0 skips
            exact zeros only, so outputs equal the dense model's up to float rounding.
        strategy: ``"auto"``, ``"gather"``, ``"rows"`` or ``"dense"`` (see :mod:`deft.sparse.kernels`).
        dense_above: with ``"auto"``, the fraction of active neurons above which the dense matmul
            is used.

    The result is inference-only: call it in ``eval()`` mode under ``torch.no_grad()`` or
    ``torch.inference_mode()``; a forward that needs gradients raises. ``densify(model)`` undoes
    the conversion (call it before saving: while sparse, down-projection weights are stored
    transposed).

    Example:
        >>> import torch
        >>> mlp = nn.Sequential()
        >>> mlp.fc1, mlp.act, mlp.fc2 = nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 4)
        >>> model = nn.ModuleDict({"block": mlp}).eval()
        >>> x = torch.randn(3, 4)
        >>> with torch.no_grad():
        ...     dense = mlp(x)
        ...     _ = sparsify(model)
        ...     print(type(mlp.fc2).__name__, torch.allclose(mlp(x), dense, atol=1e-6))
        SparseLinear True
        >>> type(densify(model)["block"].fc2).__name__
        'Linear'
    """
    check_strategy(strategy, dense_above)
    plans = _plan(model)
    taus = per_layer_thresholds([plan.name for plan in plans], threshold, "threshold")
    replacements = []
    for plan in plans:
        options = dict(
            threshold=taus[plan.name], strategy=strategy, dense_above=dense_above, name=plan.name
        )
        rule = plan.rule
        if rule.gated:
            gate_last = rule.gate_last_attribute is not None and bool(
                getattr(plan.container, rule.gate_last_attribute)
            )
            sparse = SparseGatedMLP(
                plan.container, gate=rule.gate, up=rule.up, down=rule.down, act=rule.act,
                gate_last=gate_last, **options,
            )  # fmt: skip
        else:
            sparse = SparseLinear(plan.module, **options)
        replacements.append((plan.parent, plan.attribute, sparse))
    # Replace only once every module was built: an error above leaves the model untouched.
    for parent, attribute, sparse in replacements:
        setattr(parent, attribute, sparse)
    return model


def densify(model: nn.Module) -> nn.Module:
    """Undo :func:`sparsify` in place: put the original modules (same objects) back; returns ``model``.

    A model without sparse modules is returned unchanged.
    """
    for parent in list(model.modules()):
        for attribute, child in list(parent._modules.items()):
            if isinstance(child, _SPARSE_TYPES):
                setattr(parent, attribute, child.restore())
    return model


def sparse_modules(model: nn.Module) -> dict[str, SparseLinear | SparseGatedMLP]:
    """The sparse modules of ``model`` by their layer name (the activation's name)."""
    return {
        module.layer_name: module for module in model.modules() if isinstance(module, _SPARSE_TYPES)
    }

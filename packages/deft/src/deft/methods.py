"""Apply a named PEFT method with the DEFT paper's hyperparameters (spec §5), to combine with DEFT.

    method    what                                         defaults (spec §5)
    lora      Hugging Face peft LoRA on the Q and V        r=8, lora_alpha=16, lora_dropout=0.1
              projections
    qlora     the same LoRA on a model loaded in 4-bit     + prepare_model_for_kbit_training
              (bitsandbytes NF4; CUDA, or CPU with
              bitsandbytes >= 0.46, transformers >= 4.55)
    prefix    peft prefix tuning (keys/values only)        num_virtual_tokens=60
    prompt    peft prompt tuning (virtual input tokens)    num_virtual_tokens=60
    ia3       peft IA3                                     peft's per-architecture targets
    adapter   Pfeiffer adapters (:mod:`deft.adapters`)     reduction 16, ReLU

``mlp_inputs=True`` (LoRA, QLoRA) adds every MLP input projection to the LoRA targets (see
:mod:`deft.mlp_inputs`: it gives the density loss a direct lever on the activations). Other keyword
options override the defaults and go to the method's config class (``peft.LoraConfig``,
``peft.PrefixTuningConfig`` … or :class:`deft.adapters.PfeifferAdapterConfig`). The peft task type
follows the model class (``…ForSequenceClassification`` → ``SEQ_CLS``, so the classifier head
trains too); pass ``task_type`` to override.

What the density monitor then sees: prompt tuning prepends its virtual tokens to the sequence, so
every MLP activation has T + P positions against a T-column attention mask (the monitor counts the
P leading positions as real tokens, as the spec asks); prefix tuning only adds keys and values, so
the MLPs see the T input positions.

Prefix tuning of classifiers: peft (0.21) looks for a ``past_key_values`` argument in the model's
``forward`` before prefix-tuning a sequence classifier, and transformers 5 renamed it ``cache``
(still accepting the old name), so peft refuses every such model with "Model does not support past
key values". For those models this module uses peft's feature-extraction wrapper, which passes
``past_key_values`` on without that check, and trains the head through ``modules_to_save``: the same
computation (checked in the tests: the prefix changes the logits, padding stays masked).

Example:
    >>> import torch
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
    >>> model = apply_method(base, "lora")
    >>> config = model.peft_config["default"]
    >>> config.r, config.lora_alpha, config.lora_dropout, sorted(config.target_modules)
    (8, 16, 0.1, ['query', 'value'])
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from deft.adapters import PfeifferAdapterConfig, get_pfeiffer_adapter_model
from deft.mlp_inputs import mlp_input_projections
from peft_core.optional_imports import import_optional

METHODS: tuple[str, ...] = ("lora", "prefix", "prompt", "ia3", "adapter", "qlora")

_LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1}
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "lora": _LORA,
    "qlora": _LORA,
    "prefix": {"num_virtual_tokens": 60},
    "prompt": {"num_virtual_tokens": 60},
    "ia3": {},
    "adapter": {},
}

# Query/value projection names by convention, for models peft has no LoRA default for (HF ViT).
_QUERY_VALUE_NAMES = (
    ("query", "value"), ("q_proj", "v_proj"), ("q", "v"), ("q_lin", "v_lin"),
    ("query_proj", "value_proj"),
)  # fmt: skip
# One projection computing Q, K and V together (GPT-2, Falcon, GPT-NeoX, MPT, ...): LoRA on it
# adapts K too, which a fused layout leaves no way around.
_FUSED_QKV_NAMES = ("c_attn", "query_key_value", "Wqkv", "qkv_proj", "in_proj")
_ATTENTION_INPUT_NAMES = frozenset(
    {name for pair in _QUERY_VALUE_NAMES for name in pair} | set(_FUSED_QKV_NAMES)
)
_HEAD_NAMES = ("classifier", "score")
_TASK_BY_CLASS_SUFFIX = (
    ("ForSequenceClassification", "SEQ_CLS"),
    ("ForTokenClassification", "TOKEN_CLS"),
    ("ForQuestionAnswering", "QUESTION_ANS"),
    ("ForCausalLM", "CAUSAL_LM"),
    ("ForSeq2SeqLM", "SEQ_2_SEQ_LM"),
)


def _import_peft() -> Any:
    return import_optional(
        "peft",
        needed_by="LoRA, QLoRA, prefix/prompt tuning and IA3 (from Hugging Face peft)",
        install='pip install "deft-peft[hf]"',
    )


def infer_task_type(model: nn.Module) -> str | None:
    """The peft task type of a transformers model, from its class name (``None`` if unknown)."""
    name = type(model).__name__
    for suffix, task in _TASK_BY_CLASS_SUFFIX:
        if name.endswith(suffix):
            return task
    config = getattr(model, "config", None)
    if name.endswith("ForConditionalGeneration") and getattr(config, "is_encoder_decoder", False):
        return "SEQ_2_SEQ_LM"
    return None


def _query_value_targets(model: nn.Module) -> list[str]:
    """LoRA's Q/V targets: the query/value names of peft's default for the architecture, else
    found by common names.

    peft's defaults are LoRA's usual targets, not always Q and V alone: Phi's adds the MLP's
    ``fc1``/``fc2``, the very layers whose activations DEFT penalises, and BTLM's ``c_proj`` is
    also the MLP's output. Only attention-input names are kept, so that "LoRA" means the paper's
    setup on every family (``mlp_inputs=True`` adds the MLP inputs deliberately).
    """
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    default = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)
    if isinstance(default, list | tuple):  # some defaults are a regex string: names them below
        kept = [name for name in default if name in _ATTENTION_INPUT_NAMES]
        if kept:
            return kept
    leaves = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()}
    for pair in _QUERY_VALUE_NAMES:
        if set(pair) <= leaves:
            return list(pair)
    for fused in _FUSED_QKV_NAMES:  # e.g. Phi-3's qkv_proj, for which peft has no default
        if fused in leaves:
            return [fused]
    raise ValueError(
        f"no query/value projections found in {type(model).__name__} (looked for "
        f"{_QUERY_VALUE_NAMES} and the fused {_FUSED_QKV_NAMES}); pass target_modules=[...] to "
        "choose LoRA's targets"
    )


def _accepts_past_key_values(model: nn.Module) -> bool:
    candidates = [model, getattr(model, "base_model", None)]
    return any(
        module is not None and "past_key_values" in inspect.signature(module.forward).parameters
        for module in candidates
    )


def _heads(model: nn.Module) -> list[str]:
    names = [name for name in _HEAD_NAMES if isinstance(getattr(model, name, None), nn.Module)]
    return names or _timm_head(model)


def _timm_head(model: nn.Module) -> list[str]:
    """The classifier a timm model declares (``pretrained_cfg["classifier"]``: ``head`` for ViT).

    Named by timm itself, not guessed: a bare ``head`` suffix would also catch other modules in
    peft's ``modules_to_save`` matching, which compares name endings.
    """
    config = getattr(model, "pretrained_cfg", None)
    name = config.get("classifier") if isinstance(config, Mapping) else None
    if not isinstance(name, str):
        return []
    try:
        model.get_submodule(name)
    except AttributeError:
        return []
    return [name]


def method_config(
    method: str,
    model: nn.Module,
    *,
    task_type: str | None = None,
    mlp_inputs: bool = False,
    **options: Any,
) -> Any:
    """The config object :func:`apply_method` would use: spec defaults, then ``options``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(mlp_inputs, bool):
        raise TypeError(f"mlp_inputs must be True or False, got {mlp_inputs!r}")
    if mlp_inputs and method not in ("lora", "qlora"):
        raise ValueError(
            f"mlp_inputs=True adds LoRA targets: it needs method 'lora' or 'qlora', got {method!r}"
        )
    values = {**METHOD_DEFAULTS[method], **options}
    if method == "adapter":
        return _build(PfeifferAdapterConfig, method, values)
    peft = _import_peft()
    task = task_type if task_type is not None else infer_task_type(model)
    if task is not None:
        values.setdefault("task_type", task)
    if method in ("lora", "qlora"):
        if values.get("target_modules") is None:
            values["target_modules"] = _query_value_targets(model)
        if mlp_inputs:
            values["target_modules"] = _with_mlp_inputs(values["target_modules"], model)
        if values.get("task_type") is None and _heads(model):  # e.g. an image classifier
            values.setdefault("modules_to_save", _heads(model))
        return _build(peft.LoraConfig, method, values)
    if method == "ia3":
        return _build(peft.IA3Config, method, values)
    if values.get("task_type") is None:
        # peft looks prompt learning up by task type and fails with a bare KeyError: None
        raise ValueError(
            f"{method}: peft's prompt learning needs a task_type, and none follows from "
            f"{type(model).__name__}; pass task_type= (e.g. 'SEQ_CLS', 'CAUSAL_LM', "
            "'SEQ_2_SEQ_LM', 'FEATURE_EXTRACTION') for a text model with input embeddings"
        )
    if method == "prompt":
        return _build(peft.PromptTuningConfig, method, values)
    if values.get("task_type") == "SEQ_CLS" and not _accepts_past_key_values(model):
        # see the module docstring: peft's classifier wrapper refuses models with `cache`
        heads = _heads(model)
        if not heads:
            raise ValueError(f"{type(model).__name__}: no classifier/score head to train")
        values["task_type"] = "FEATURE_EXTRACTION"
        values["modules_to_save"] = [*(values.get("modules_to_save") or ()), *heads]
    return _build(peft.PrefixTuningConfig, method, values)


def _with_mlp_inputs(targets: Any, model: nn.Module) -> list[str]:
    if isinstance(targets, str):
        raise ValueError(
            "mlp_inputs=True extends a list of LoRA targets; target_modules is a single string "
            f"({targets!r}, a regex to peft): pass a list of module names instead"
        )
    return [*targets, *mlp_input_projections(model)]


def _build(config_class: type, method: str, values: dict[str, Any]) -> Any:
    known = {field.name for field in dataclasses.fields(config_class) if field.init}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"{method}: unknown option(s) {unknown} for {config_class.__name__}; "
            f"it takes {sorted(known)}"
        )
    return config_class(**values)


def apply_method(
    model: nn.Module,
    method: str,
    *,
    task_type: str | None = None,
    mlp_inputs: bool = False,
    **options: Any,
) -> nn.Module:
    """Apply ``method`` (one of :data:`METHODS`) to ``model`` and return the trainable model.

    Peft methods return a ``PeftModel`` wrapping ``model``; ``"adapter"`` modifies ``model`` in
    place. ``"qlora"`` needs a model loaded in 4-bit (see :func:`qlora_quantization_config`).
    """
    if method == "qlora":
        _check_4bit(model)
    config = method_config(method, model, task_type=task_type, mlp_inputs=mlp_inputs, **options)
    if method == "adapter":
        return get_pfeiffer_adapter_model(model, config)
    peft = _import_peft()
    if method == "qlora":
        # No gradient checkpointing by default: peft enables the re-entrant kind, which runs the
        # forward without autograd, so the density loss would train nothing.
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        _keep_training_layout_on_cpu(model)
    return peft.get_peft_model(model, config)


def _keep_training_layout_on_cpu(model: nn.Module) -> None:
    """Stop bitsandbytes repacking 4-bit weights for its CPU inference kernel, and undo it.

    On a CPU with AVX512-BF16, bitsandbytes (0.50) repacks a ``Linear4bit``'s weight on its first
    forward without autograd (an evaluation) and never unpacks it for training, so the next
    training step runs the inference kernel and fails on the layer's bias. Training evaluates
    between epochs, so the repacking is switched off: evaluation then dequantises as training does.
    A weight already repacked (the model was evaluated before this) is unpacked the way
    bitsandbytes itself does before saving a state dict.
    """
    for module in model.modules():
        if not hasattr(module, "support_avx512bf16_for_cpu"):
            continue
        module.support_avx512bf16_for_cpu = False
        weight = module.weight
        if getattr(weight.quant_state, "packing_format_for_cpu", False):
            from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

            weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                weight.data, weight.quant_state
            )


def _check_4bit(model: nn.Module) -> None:
    if not getattr(model, "is_loaded_in_4bit", False):
        raise ValueError(
            f"qlora needs a model loaded in 4-bit; {type(model).__name__} is not. Load it with "
            "from_pretrained(path, quantization_config=deft.methods.qlora_quantization_config(), "
            "device_map=...) (bitsandbytes), or use method='lora'"
        )


# Task heads stay in full precision: they train (peft's modules_to_save), and a 4-bit weight
# cannot require a gradient. transformers only spares the module of the model's last parameter,
# and names it wrongly when that parameter is a bias (BERT's "classifier.bias"), so a sequence
# classifier would otherwise lose its head to 4 bits and fail in get_peft_model. A name matches
# a module path from its start or as its last component(s).
HEAD_MODULES: tuple[str, ...] = (
    "classifier",  # BERT, RoBERTa, DistilBERT, ViT, DeBERTa
    "pre_classifier",  # DistilBERT
    "classification_head",  # BART, T5
    "score",  # Llama-family, OPT, GPT-2 sequence classifiers
    "qa_outputs",  # extractive question answering
    "lm_head",  # causal and seq2seq LMs (what transformers spares by default)
)
# The lowest versions with which QLoRA was seen to run on a CPU (bitsandbytes' CPU backend;
# transformers 4.51 still refuses a CPU without Intel's extension).
CPU_QLORA_VERSIONS = {"bitsandbytes": (0, 46), "transformers": (4, 55)}


def qlora_quantization_config(
    compute_dtype: Any = None, skip_modules: Sequence[str] = HEAD_MODULES
) -> Any:
    """QLoRA's 4-bit NF4 quantisation with double quantisation, computing in bf16 by default.

    ``skip_modules`` stay unquantised (default :data:`HEAD_MODULES`, the task heads).
    """
    import torch

    transformers = import_optional(
        "transformers", needed_by="QLoRA", install='pip install "deft-peft[qlora]"'
    )
    return transformers.BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype or torch.bfloat16,
        llm_int8_skip_modules=list(skip_modules),
    )


def qlora_unavailable_reason() -> str | None:
    """Why QLoRA cannot run here (missing bitsandbytes, no CUDA and too old for the CPU), or None."""
    import importlib.metadata

    import torch

    try:
        installed = {name: importlib.metadata.version(name) for name in CPU_QLORA_VERSIONS}
    except importlib.metadata.PackageNotFoundError as missing:
        return f"QLoRA needs {missing.name}: pip install 'deft-peft[qlora]'"
    if torch.cuda.is_available():
        return None
    too_old = [
        f"{name} {installed[name]} (needs >= {'.'.join(map(str, floor))})"
        for name, floor in CPU_QLORA_VERSIONS.items()
        if _release(installed[name]) < floor
    ]
    if too_old:
        return "QLoRA without CUDA needs bitsandbytes' CPU backend; too old: " + ", ".join(too_old)
    return None


def _release(version: str) -> tuple[int, ...]:
    """The leading release numbers of a version string: "4.55.0.dev0" -> (4, 55, 0)."""
    numbers = []
    for part in version.split("."):
        digits = "".join(itertools.takewhile(str.isdigit, part))
        if not digits:
            break
        numbers.append(int(digits))
        if digits != part:
            break
    return tuple(numbers)


__all__ = [
    "HEAD_MODULES",
    "METHODS",
    "METHOD_DEFAULTS",
    "apply_method",
    "infer_task_type",
    "method_config",
    "qlora_quantization_config",
    "qlora_unavailable_reason",
]

"""DEFT with every PEFT method of the paper, as a matrix: one tuple per method, the same checks each.

Each method is built on a tiny BERT classifier by ``deft.methods.apply_method``; the monitor is
attached through the peft wrapper. Checks: the spec's defaults, every MLP layer found, the loss on
the right tokens (prompt tuning: T + P positions, virtual ones counted; prefix tuning: T), the
exact-zero density measured, and one optimisation step with λ > 0 lowering the density loss of a
fixed batch below the same step with λ = 0.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch

import deft
from deft.methods import METHOD_DEFAULTS, METHODS, apply_method, infer_task_type, method_config

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


LAYERS = 2
LAYER_NAMES = [f"bert.encoder.layer.{i}.intermediate.intermediate_act_fn" for i in range(LAYERS)]
EPS = 1e-7


class Case(NamedTuple):
    method: str
    options: dict
    virtual_tokens_in_mlp: int  # positions the MLPs see beyond the T input tokens
    trainable_marker: str  # a substring of the method's own trainable parameter names
    learning_rate: float  # one Adam step moves each parameter by about this much


MATRIX = [
    Case("lora", {}, 0, "lora_B", 0.1),
    Case("prefix", {"num_virtual_tokens": 3}, 0, "prompt_encoder", 0.3),
    Case("prompt", {"num_virtual_tokens": 3}, 3, "prompt_encoder", 0.1),
    Case("ia3", {}, 0, "ia3_l", 0.3),
    Case("adapter", {}, 0, "pfeiffer_adapter", 0.1),
]
IDS = [case.method for case in MATRIX]


def _bert(seed: int = 0, hidden_size: int = 32, intermediate_size: int = 64):
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        hidden_size=hidden_size, num_hidden_layers=LAYERS, num_attention_heads=2,
        intermediate_size=intermediate_size,
        vocab_size=100, hidden_act="relu", hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config)


def _batch():
    generator = torch.Generator().manual_seed(1)
    mask = torch.ones(8, 12, dtype=torch.long)
    mask[4:, 8:] = 0
    return {
        "input_ids": torch.randint(1, 100, (8, 12), generator=generator),
        "attention_mask": mask,
        "labels": torch.randint(0, 2, (8,), generator=generator),
    }


def _build(case: Case):
    model = apply_method(_bert(), case.method, **case.options)
    return model, deft.DensityMonitor(model)


def _density_by_hand(activations, mask):
    per_layer = []
    for activation in activations:
        a = activation.double()
        per_token = (a**2 / (a**2 + EPS)).mean(dim=-1)
        real = mask.double()
        per_layer.append(((per_token * real).sum(-1) / real.sum(-1)).mean())
    return torch.stack(per_layer).mean()


def test_the_matrix_covers_every_method_but_qlora():
    assert sorted(case.method for case in MATRIX) == sorted(set(METHODS) - {"qlora"})


def test_defaults_are_the_papers():
    model = _bert()
    lora = method_config("lora", model)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (8, 16, 0.1)
    assert sorted(lora.target_modules) == ["query", "value"]
    assert lora.task_type == "SEQ_CLS"
    assert method_config("prompt", model).num_virtual_tokens == 60
    assert method_config("prefix", model).num_virtual_tokens == 60
    adapter = method_config("adapter", model)
    assert (adapter.reduction_factor, adapter.activation) == (16, "relu")
    assert METHOD_DEFAULTS["qlora"] == METHOD_DEFAULTS["lora"]
    assert method_config("lora", model, r=4, lora_dropout=0.0).r == 4
    assert infer_task_type(model) == "SEQ_CLS"
    with pytest.raises(ValueError, match="method must be one of"):
        method_config("dora", model)
    with pytest.raises(ValueError, match=r"lora: unknown option\(s\) \['rank'\]"):
        method_config("lora", model, rank=4)
    with pytest.raises(ValueError, match="qlora needs a model loaded in 4-bit"):
        apply_method(model, "qlora")


@pytest.mark.parametrize("case", MATRIX, ids=IDS)
def test_the_monitor_finds_every_layer_through_the_wrapper(case):
    model, monitor = _build(case)
    assert monitor.layer_names == LAYER_NAMES  # named as in the plain model
    # peft tuners sit between PeftModel and the model; prompt learning wraps it directly; the
    # adapter method modifies the model in place
    prefix = {"adapter": "", "prefix": "base_model.", "prompt": "base_model."}.get(
        case.method, "base_model.model."
    )
    assert [t.module_name for t in monitor.targets] == [prefix + name for name in LAYER_NAMES]
    model(**_batch())
    assert list(monitor.activations) == LAYER_NAMES


@pytest.mark.parametrize("case", MATRIX, ids=IDS)
def test_only_the_method_and_the_head_train(case):
    model, _ = _build(case)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert any(case.trainable_marker in name for name in trainable)
    assert any("classifier" in name for name in trainable)
    assert all(case.trainable_marker in n or "classifier" in n or "lora_A" in n for n in trainable)


@pytest.mark.parametrize("case", MATRIX, ids=IDS)
def test_loss_for_batch_counts_the_right_tokens(case):
    model, monitor = _build(case)
    batch = _batch()
    model.eval()
    model(**batch)
    activations = list(monitor.activations.values())
    tokens = batch["input_ids"].shape[1] + case.virtual_tokens_in_mlp
    assert [tuple(a.shape) for a in activations] == [(8, tokens, 64)] * LAYERS
    # prompt tokens are real tokens: the user's T-column mask gets ones in front
    mask = torch.cat(
        [torch.ones(8, case.virtual_tokens_in_mlp, dtype=torch.long), batch["attention_mask"]], 1
    )
    expected = _density_by_hand(activations, mask)
    torch.testing.assert_close(monitor.loss_for_batch(batch).double(), expected, rtol=1e-6, atol=0)
    report = deft.measure_density(model, [batch], monitor=monitor)
    assert report.layers == LAYER_NAMES
    # ReLU zeros on a random init: about half, counted over real (and virtual) tokens only
    expected_masked = [
        100 * float(((a != 0).double().mean(-1) * mask).sum(-1).div(mask.sum(-1)).mean())
        for a in activations
    ]
    assert report.masked == pytest.approx(expected_masked, rel=1e-9)
    assert all(30.0 < value < 70.0 for value in report.masked)


def _density_after_one_step(case: Case, weight: float) -> tuple[float, float]:
    model, monitor = _build(case)
    batch = _batch()

    def measured() -> float:
        model.eval()
        with torch.no_grad():
            model(**batch)
            return monitor.loss_for_batch(batch).item()

    before = measured()
    model.train()
    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=case.learning_rate
    )
    torch.manual_seed(1)  # LoRA dropout: the same mask in both runs
    loss = model(**batch).loss + weight * monitor.loss_for_batch(batch)
    loss.backward()
    optimizer.step()
    return before, measured()


@pytest.mark.parametrize("case", MATRIX, ids=IDS)
def test_one_step_with_the_density_loss_lowers_the_density_more_than_without(case):
    before, plain = _density_after_one_step(case, weight=0.0)
    same_start, with_density = _density_after_one_step(case, weight=1.0)
    assert before == same_start
    # measured here (×1e-3 below plain): lora 1.8, prefix 1.3, prompt 5.5, ia3 1.1, adapter 4.4
    assert with_density < plain - 5e-4
    assert with_density < before


def test_prefix_tuning_of_a_classifier_really_uses_the_prefix_and_keeps_padding_masked():
    base = _bert().eval()
    batch = _batch()
    reference = base(**batch).logits
    model = apply_method(base, "prefix", num_virtual_tokens=3).eval()
    logits = model(**batch).logits
    assert (logits - reference).abs().max() > 1e-4  # attention reads the prefix keys/values
    changed = dict(batch, input_ids=batch["input_ids"].clone())
    changed["input_ids"][4:, 8:] = 7  # other tokens where the mask says padding
    torch.testing.assert_close(model(**changed).logits, logits)
    model.train()
    model(**batch).loss.backward()
    assert model.prompt_encoder.default.embedding.weight.grad.abs().sum() > 0


def _qlora_skip_reason() -> str | None:
    from deft.methods import qlora_unavailable_reason

    return qlora_unavailable_reason()


def _load_4bit(model_class, path):
    """``path`` loaded as QLoRA loads it, on the first CUDA device or else the CPU."""
    from deft.methods import qlora_quantization_config

    device = torch.cuda.current_device() if torch.cuda.is_available() else "cpu"
    return model_class.from_pretrained(
        path, quantization_config=qlora_quantization_config(), device_map={"": device}
    )


@pytest.mark.skipif(_qlora_skip_reason() is not None, reason=str(_qlora_skip_reason()))
@pytest.mark.parametrize("mlp_inputs", [False, True], ids=["q-v", "q-v-and-mlp-inputs"])
def test_qlora_trains_a_4bit_model_before_and_after_an_evaluation(tmp_path, mlp_inputs):
    """On CUDA, or on the CPU through bitsandbytes' CPU backend. Runs ``_bert()`` at 64 wide:
    bitsandbytes quantises in blocks of 64 values along a row."""
    from deft.methods import HEAD_MODULES

    _bert(hidden_size=64, intermediate_size=128).save_pretrained(tmp_path / "tiny")
    base = _load_4bit(transformers.BertForSequenceClassification, tmp_path / "tiny")
    assert base.is_loaded_in_4bit
    assert "classifier" in HEAD_MODULES
    assert type(base.classifier) is torch.nn.Linear  # the head stays full precision, it trains
    assert type(base.bert.encoder.layer[0].intermediate.dense).__name__ == "Linear4bit"
    batch = {key: value.to(base.device) for key, value in _batch().items()}
    base.eval()
    with torch.no_grad():  # evaluated before the method is applied (bitsandbytes repacks on a CPU)
        base(**batch)
    model = apply_method(base, "qlora", mlp_inputs=mlp_inputs)
    monitor = deft.DensityMonitor(model)
    assert monitor.layer_names == LAYER_NAMES
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)

    def train_step() -> list[torch.Tensor]:
        model.train()
        optimizer.zero_grad()
        loss = model(**batch).loss + monitor.loss_for_batch(batch)
        loss.backward()
        grads = [
            p.grad
            for n, p in model.named_parameters()
            if p.requires_grad and ("lora_B" in n or "classifier" in n)
        ]
        optimizer.step()
        return grads

    first = train_step()
    # query and value (and with mlp_inputs the MLP input) in both layers, the head's weight, bias
    assert len(first) == (3 if mlp_inputs else 2) * 2 + 2
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in first)
    report = deft.measure_density(model, [batch], monitor=monitor)  # an evaluation, no autograd
    assert report.layers == LAYER_NAMES
    # bitsandbytes' CPU inference repacking would break this step (see methods.py)
    second = train_step()
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in second)


@pytest.mark.skipif(_qlora_skip_reason() is not None, reason=str(_qlora_skip_reason()))
def test_qlora_on_a_gated_llama_monitors_the_gate_through_4bit_projections(tmp_path):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
    )  # fmt: skip
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path / "llama")
    base = _load_4bit(transformers.LlamaForCausalLM, tmp_path / "llama")
    assert type(base.lm_head) is torch.nn.Linear
    assert type(base.model.layers[0].mlp.gate_proj).__name__ == "Linear4bit"
    model = apply_method(base, "qlora")
    monitor = deft.DensityMonitor(model)
    assert monitor.layer_names == [f"model.layers.{i}.mlp.act_fn" for i in range(2)]
    tokens = torch.randint(0, 128, (2, 10), device=base.device)
    mask = torch.ones_like(tokens)
    model.train()
    (model(input_ids=tokens, labels=tokens).loss + monitor.loss(mask)).backward()
    lora_grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n and p.requires_grad]
    assert len(lora_grads) == 4
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in lora_grads)


def test_qlora_unavailable_reason_names_what_is_missing_or_too_old(monkeypatch):
    import importlib.metadata

    from deft import methods

    versions = {"bitsandbytes": "0.45.5", "transformers": "4.55.0.dev0"}

    def version(name):
        if name not in versions:
            raise importlib.metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert methods.qlora_unavailable_reason() == (
        "QLoRA without CUDA needs bitsandbytes' CPU backend; too old: bitsandbytes 0.45.5 "
        "(needs >= 0.46)"
    )
    versions["bitsandbytes"] = "0.46.1"
    assert methods.qlora_unavailable_reason() is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    versions["transformers"] = "4.48.1"  # old enough for CUDA
    assert methods.qlora_unavailable_reason() is None
    del versions["bitsandbytes"]
    assert methods.qlora_unavailable_reason() == (
        "QLoRA needs bitsandbytes: pip install 'deft-peft[qlora]'"
    )


@pytest.mark.parametrize(
    ("method", "options"), [("lora", {"target_modules": ["qkv"]}), ("adapter", {})]
)
def test_a_timm_vits_classifier_head_trains_with_the_method(method, options):
    # timm names its head "head" (pretrained_cfg["classifier"]): a frozen random head would make
    # the fine-tuned model useless, as for a BERT classifier
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    vit = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=3, img_size=32, patch_size=8, depth=2
    )
    model = apply_method(vit, method, **options)
    head = [n for n, p in model.named_parameters() if p.requires_grad and ".head." in f".{n}"]
    assert len(head) == 2  # weight and bias (peft: of its trainable copy)
    monitor = deft.DensityMonitor(model)
    model(torch.randn(2, 3, 32, 32)).sum().add(monitor.loss()).backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if n in head)


@pytest.mark.parametrize("method", ["prompt", "prefix"])
def test_prompt_learning_without_a_task_type_is_a_clear_error(method):
    # peft itself fails with "KeyError: None" for a model whose task type cannot be inferred
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        image_size=16, patch_size=8, num_labels=3,
    )  # fmt: skip
    vit = transformers.ViTForImageClassification(config)
    with pytest.raises(ValueError, match=f"{method}: peft's prompt learning needs a task_type"):
        apply_method(vit, method, num_virtual_tokens=2)


@pytest.mark.parametrize(
    ("config_class", "expected"),
    [
        ("PhiConfig", ["q_proj", "v_proj"]),  # peft's default adds the MLP's fc1 and fc2
        ("GPT2Config", ["c_attn"]),  # fused Q/K/V: the only attention input there is
        ("LlamaConfig", ["q_proj", "v_proj"]),
        ("Phi3Config", ["qkv_proj"]),  # peft has no default; found by its fused name
    ],
)
def test_lora_adapts_the_attention_inputs_and_never_the_mlp_it_penalises(config_class, expected):
    import transformers

    config = getattr(transformers, config_class)(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, n_embd=32, n_layer=1, n_head=2, n_inner=64, pad_token_id=0,
    )  # fmt: skip
    model = transformers.AutoModelForCausalLM.from_config(config)
    assert sorted(method_config("lora", model).target_modules) == expected


def test_a_regex_default_of_peft_falls_back_to_the_query_value_names(monkeypatch):
    from peft.utils import constants

    model = _bert()
    regex = {"bert": r".*\.(query|value)"}
    monkeypatch.setattr(constants, "TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING", regex)
    assert sorted(method_config("lora", model).target_modules) == ["query", "value"]

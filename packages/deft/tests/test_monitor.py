"""DensityMonitor behaviour: wrappers, gated modes, named targets, lifetime, masks and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import deft
from deft import DensityMonitor, density_loss
from peft_core.testing import TinyClassifier

transformers = pytest.importorskip("transformers")

IDS = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 0, 0]])
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])


def _bert_classifier(**extra):
    torch.manual_seed(0)
    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=100, **extra,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config)


def _llama():
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, vocab_size=100,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config)


def _t5(**extra):
    torch.manual_seed(0)
    config = transformers.T5Config(
        d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2, d_kv=16,
        vocab_size=100, decoder_start_token_id=0, pad_token_id=0, **extra,
    )  # fmt: skip
    return transformers.T5ForConditionalGeneration(config)


class DDPLike(nn.Module):
    """What DDP, DataParallel and accelerate's wrappers look like: the model under ``module``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def test_through_a_peft_lora_wrapper_and_a_ddp_wrapper_names_stay_those_of_the_plain_model():
    peft = pytest.importorskip("peft")
    plain = DensityMonitor(_bert_classifier())
    lora = peft.get_peft_model(
        _bert_classifier(), peft.LoraConfig(r=4, target_modules=["query", "value", "dense"])
    )
    wrapped = DDPLike(lora)
    monitor = DensityMonitor(wrapped)
    assert monitor.layer_names == plain.layer_names
    assert monitor.targets[0].module_name == (
        "module.base_model.model.bert.encoder.layer.0.intermediate.intermediate_act_fn"
    )
    returned = []
    lora.base_model.model.bert.encoder.layer[
        1
    ].intermediate.intermediate_act_fn.register_forward_hook(lambda m, i, o: returned.append(o))
    wrapped(input_ids=IDS, attention_mask=MASK)
    assert monitor.activations[monitor.layer_names[1]] is returned[0]
    assert monitor.loss(MASK).requires_grad


def test_a_data_parallel_replica_of_the_model_is_refused_with_the_way_out():
    # nn.DataParallel copies the model per GPU (the copies share its hooks) and runs the copies
    # in threads on slices of the batch: their activations would mix under one mask. Its first
    # step on the CPU, the shallow copy of a module, is enough to build a replica here.
    model = _bert_classifier()
    monitor = DensityMonitor(model)
    replica = model._replicate_for_data_parallel()
    with pytest.raises(RuntimeError, match=r"DataParallel.*one process per GPU"):
        replica(input_ids=IDS, attention_mask=MASK)
    model(input_ids=IDS, attention_mask=MASK)  # the model itself (one GPU: no replicas) still runs
    assert monitor.loss(MASK).requires_grad


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_data_parallel_on_two_gpus_is_refused():
    model = _bert_classifier().cuda()
    DensityMonitor(model)
    with pytest.raises(RuntimeError, match="one process per GPU"):
        nn.DataParallel(model)(input_ids=IDS.cuda(), attention_mask=MASK.cuda())


def test_prompt_tuning_virtual_tokens_are_counted_as_real_tokens():
    peft = pytest.importorskip("peft")
    config = peft.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3)
    model = peft.get_peft_model(_bert_classifier(), config)
    monitor = DensityMonitor(model)
    model(input_ids=IDS, attention_mask=MASK)
    activations = list(monitor.activations.values())
    assert activations[0].shape[:2] == (2, 3 + 5)
    extended = torch.cat([torch.ones(2, 3, dtype=MASK.dtype), MASK], dim=1)
    torch.testing.assert_close(monitor.loss(MASK), density_loss(activations, extended))


def test_product_mode_captures_gate_times_up_as_down_proj_reads_it():
    model = _llama()
    mlp = model.model.layers[0].mlp
    seen = {}
    mlp.act_fn.register_forward_hook(lambda m, i, o: seen.setdefault("gate", o))
    mlp.up_proj.register_forward_hook(lambda m, i, o: seen.setdefault("up", o))
    mlp.down_proj.register_forward_pre_hook(lambda m, args: seen.setdefault("down_in", args[0]))
    monitor = DensityMonitor(model, gated="product")
    assert monitor.layer_names == [f"model.layers.{i}.mlp.down_proj:input" for i in range(2)]
    model(input_ids=IDS, attention_mask=MASK)
    captured = monitor.activations["model.layers.0.mlp.down_proj:input"]
    assert captured is seen["down_in"]
    torch.testing.assert_close(captured, seen["gate"] * seen["up"])
    gate = DensityMonitor(model, gated="gate")
    model(input_ids=IDS)
    assert gate.activations["model.layers.0.mlp.act_fn"].data_ptr() != captured.data_ptr()


def test_gated_t5_product_mode_reads_the_product_before_dropout():
    model = _t5(feed_forward_proj="gated-gelu", dropout_rate=0.5).train()
    monitor = DensityMonitor(model, gated="product")
    ffn = model.encoder.block[0].layer[1].DenseReluDense
    seen = {}
    ffn.act.register_forward_hook(lambda m, i, o: seen.setdefault("gate", o))
    ffn.wi_1.register_forward_hook(lambda m, i, o: seen.setdefault("up", o))
    model(input_ids=IDS, decoder_input_ids=IDS[:, :3])
    captured = monitor.activations["encoder.block.0.layer.1.DenseReluDense.dropout:input"]
    torch.testing.assert_close(captured, seen["gate"] * seen["up"])


def test_encoder_decoder_loss_is_one_term_per_stack_with_the_decoder_mask_from_labels():
    model = _t5()
    monitor = DensityMonitor(model)
    labels = torch.tensor([[3, 4, 5], [6, -100, -100]])
    batch = {"input_ids": IDS, "attention_mask": MASK, "labels": labels}
    model(**batch)
    masks = monitor.masks_from_batch(batch)
    assert torch.equal(masks["encoder"], MASK)
    assert torch.equal(masks["decoder"], labels != -100)
    groups = monitor.activations_by_group
    encoder = density_loss(list(groups["encoder"].values()), MASK)
    decoder = density_loss(list(groups["decoder"].values()), labels != -100)
    torch.testing.assert_close(monitor.loss_for_batch(batch), encoder + decoder)
    torch.testing.assert_close(
        monitor.loss(MASK, decoder_attention_mask=labels != -100), encoder + decoder
    )
    assert set(monitor.loss_terms(MASK)) == {"encoder", "decoder"}


def _density_by_hand(activations, mask=None):
    """The density loss written out: s(a) = a²/(a²+ε), mean over features, over real tokens,
    over samples, over layers (float64)."""
    per_layer = []
    for activation in activations:
        a = activation.detach().double()
        per_token = (a**2 / (a**2 + 1e-7)).mean(dim=-1)  # [B, T]
        real = torch.ones_like(per_token) if mask is None else mask.double()
        per_layer.append(((per_token * real).sum(-1) / real.sum(-1)).mean())
    return torch.stack(per_layer).mean()


def _nonzero_percent_by_hand(activation, mask=None):
    flags = (activation.detach() != 0).double().mean(dim=-1)  # [B, T]
    real = torch.ones_like(flags) if mask is None else mask.double()
    return 100 * float(((flags * real).sum(-1) / real.sum(-1)).mean())


def test_decoder_only_targets_of_an_encoder_decoder_model_take_the_decoder_mask():
    model = _t5().eval()  # no dropout: measure_density's forward computes the same tensors
    monitor = DensityMonitor(model, targets=["decoder.block.*.layer.2.DenseReluDense.act"])
    assert set(monitor.groups) == {"decoder"}
    assert monitor.is_encoder_decoder
    labels = torch.tensor([[3, 4, 5, 6], [7, 8, -100, -100]])
    decoder_mask = labels != -100
    for tokens in (3, 8):  # encoder inputs shorter and longer than the decoder's
        encoder_mask = torch.ones(2, tokens, dtype=torch.long)
        encoder_mask[0, -1] = 0
        batch = {"input_ids": IDS[:, :1].repeat(1, tokens), "attention_mask": encoder_mask}
        batch["labels"] = labels
        model(**batch)
        activations = list(monitor.activations.values())
        assert [tuple(a.shape[:2]) for a in activations] == [(2, 4)] * 2
        assert torch.equal(monitor.masks_from_batch(batch)["decoder"], decoder_mask)
        assert monitor.masks(encoder_mask) == {"decoder": None}  # never the encoder's mask
        expected = _density_by_hand(activations, decoder_mask)
        torch.testing.assert_close(monitor.loss_for_batch(batch).double(), expected)
        torch.testing.assert_close(
            monitor.loss(encoder_mask, decoder_attention_mask=decoder_mask).double(), expected
        )
        report = deft.measure_density(model, [batch], monitor=monitor)
        by_hand = [_nonzero_percent_by_hand(a, decoder_mask) for a in activations]
        assert report.masked == pytest.approx(by_hand, rel=1e-9)


def test_a_decoder_only_model_with_a_decoder_stack_reads_the_attention_mask():
    torch.manual_seed(0)
    config = transformers.OPTConfig(
        hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=2, vocab_size=100,
        word_embed_proj_dim=32, max_position_embeddings=64,
    )  # fmt: skip
    model = transformers.OPTForCausalLM(config)
    monitor = DensityMonitor(model)
    assert set(monitor.groups) == {"decoder"}
    assert not monitor.is_encoder_decoder
    batch = {"input_ids": IDS, "attention_mask": MASK, "labels": IDS}
    model(**batch)
    assert torch.equal(monitor.masks_from_batch(batch)["decoder"], MASK)


def _clip():
    torch.manual_seed(0)
    text = transformers.CLIPTextConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        vocab_size=100, max_position_embeddings=32, hidden_act="relu",
    )  # fmt: skip
    vision = transformers.CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        image_size=32, patch_size=8, hidden_act="relu",
    )  # fmt: skip
    config = transformers.CLIPConfig(
        text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16
    )
    return transformers.CLIPModel(config).eval().requires_grad_(False)


def test_a_vision_tower_takes_no_mask_even_when_the_text_is_longer_than_the_patches():
    model = _clip()
    monitor = DensityMonitor(model)
    assert monitor.groups == {
        "encoder": ["text_model.encoder.layers.0.mlp.activation_fn"],
        "vision": ["vision_model.encoder.layers.0.mlp.activation_fn"],
    }
    text_mask = torch.ones(2, 20, dtype=torch.long)
    text_mask[1, 6:] = 0
    batch = {
        "input_ids": torch.randint(1, 100, (2, 20)),
        "attention_mask": text_mask,
        "pixel_values": torch.randn(2, 3, 32, 32),
    }
    with torch.no_grad():
        model(**batch)
    text = monitor.activations["text_model.encoder.layers.0.mlp.activation_fn"]
    vision = monitor.activations["vision_model.encoder.layers.0.mlp.activation_fn"]
    assert text.shape[:2] == (2, 20)
    assert vision.shape[:2] == (2, 17)  # 16 patches + the class token: fewer than the text
    assert monitor.masks_from_batch(batch) == {"encoder": text_mask, "vision": None}
    terms = monitor.loss_terms(text_mask)
    torch.testing.assert_close(terms["encoder"].double(), _density_by_hand([text], text_mask))
    torch.testing.assert_close(terms["vision"].double(), _density_by_hand([vision]))
    torch.testing.assert_close(
        monitor.loss_for_batch(batch).double(),
        _density_by_hand([text], text_mask) + _density_by_hand([vision]),
    )
    report = deft.measure_density(model, [batch], monitor=monitor)
    assert sorted(report.groups) == ["encoder", "vision"]
    masked = dict(zip(report.layers, report.masked, strict=True))
    assert masked["text_model.encoder.layers.0.mlp.activation_fn"] == pytest.approx(
        _nonzero_percent_by_hand(text, text_mask), rel=1e-9
    )
    assert masked["vision_model.encoder.layers.0.mlp.activation_fn"] == pytest.approx(
        _nonzero_percent_by_hand(vision), rel=1e-9
    )
    taus = deft.calibrate_threshold(model, [batch], target_density=0.5)
    assert set(taus) == set(monitor.layer_names)


def test_a_mask_of_the_wrong_length_is_an_error_unless_virtual_prompt_tokens_explain_it():
    model = _bert_classifier()
    monitor = DensityMonitor(model)
    model(input_ids=IDS, attention_mask=MASK)
    assert monitor.virtual_tokens == 0
    with pytest.raises(ValueError, match="covers 3 tokens but activations"):
        monitor.loss(MASK[:, :3])
    peft = pytest.importorskip("peft")
    config = peft.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3)
    prompted = peft.get_peft_model(_bert_classifier(), config)
    monitor = DensityMonitor(prompted)
    prompted(input_ids=IDS, attention_mask=MASK)
    assert monitor.virtual_tokens == 3
    monitor.loss(MASK)  # 3 + 5 positions: explained by the 3 virtual tokens
    with pytest.raises(ValueError, match="3 virtual prompt tokens explain only"):
        monitor.loss(MASK[:, :4])


def test_each_forward_replaces_the_captures_and_checkpoint_recomputation_is_ignored():
    model = TinyClassifier(num_layers=2)
    monitor = DensityMonitor(model)
    model(IDS % 32)
    first = monitor.activations["blocks.0.act"]
    model(IDS[:1] % 32)
    assert monitor.activations["blocks.0.act"].shape[0] == 1
    assert monitor.activations["blocks.0.act"] is not first

    def forward(input_ids):  # non-reentrant checkpointing re-runs the blocks inside backward
        hidden = model.embed(input_ids)
        for block in model.blocks:
            hidden = checkpoint(block, hidden, use_reentrant=False)
        return hidden

    original = model.forward
    model.forward = forward
    hidden = model(IDS % 32)
    captured = dict(monitor.activations)
    (hidden.sum() + monitor.loss()).backward()
    assert monitor.activations == captured  # the recomputed activations were not added
    model.forward = original


def test_peft_generate_entering_through_the_wrapped_model_replaces_the_captures():
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(
        _llama(), peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    )
    monitor = DensityMonitor(model)
    ids = IDS % 98 + 2
    model(input_ids=ids)  # through the wrapper first
    before = monitor.activations
    assert before["model.layers.0.mlp.act_fn"].shape == (2, 5, 64)
    model.eval()
    with torch.no_grad():  # peft's generate() calls the wrapped model, never the wrapper
        model.generate(input_ids=ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
    after = monitor.activations
    assert list(after) == list(before)
    # the last forward of generate(): one new token per row, reading the cache
    assert all(after[name] is not before[name] for name in before)
    assert after["model.layers.0.mlp.act_fn"].shape == (2, 1, 64)


def test_checkpoint_recomputation_is_ignored_when_the_forward_entered_through_the_wrapped_model():
    model = TinyClassifier(num_layers=2)
    wrapper = DDPLike(model)
    monitor = DensityMonitor(wrapper)
    wrapper(IDS % 32)  # the wrapper's hooks have run: depth-0 captures are recomputation

    def forward(input_ids):
        hidden = model.embed(input_ids)
        for block in model.blocks:
            hidden = checkpoint(block, hidden, use_reentrant=False)
        return hidden

    model.forward = forward
    hidden = model(IDS[:1] % 32)  # enters through the wrapped model only
    captured = dict(monitor.activations)
    assert captured["blocks.0.act"].shape[0] == 1
    (hidden.sum() + monitor.loss()).backward()
    assert monitor.activations == captured


def test_without_the_models_own_hooks_a_repeated_layer_starts_the_next_forward():
    model = TinyClassifier(num_layers=2)
    monitor = DensityMonitor(model)
    model.forward(IDS % 32)  # skips model.__call__, as old peft versions did
    model.forward(IDS[:1] % 32)
    assert list(monitor.activations) == ["blocks.0.act", "blocks.1.act"]
    assert monitor.activations["blocks.0.act"].shape[0] == 1


def test_a_module_called_several_times_per_forward_appears_once_per_call():
    shared = TinyClassifier(num_layers=1)
    shared.blocks = nn.ModuleList([shared.blocks[0]] * 3)  # ALBERT-style weight sharing
    monitor = DensityMonitor(shared)
    assert monitor.layer_names == ["blocks.0.act"]
    shared(IDS % 32)
    assert list(monitor.activations) == ["blocks.0.act", "blocks.0.act#1", "blocks.0.act#2"]
    assert set(monitor.activations_by_group["model"]) == set(monitor.activations)


def test_named_targets_with_globs_and_input_captures():
    model = TinyClassifier(num_layers=3).eval()
    monitor = DensityMonitor(model, targets=["blocks.0.act", "blocks.[12].fc2:input"])
    assert monitor.layer_names == ["blocks.0.act", "blocks.1.fc2:input", "blocks.2.fc2:input"]
    returned = []
    model.blocks[1].act.register_forward_hook(lambda m, i, o: returned.append(o))
    model(IDS % 32)
    assert monitor.activations["blocks.1.fc2:input"] is returned[0]  # eval dropout passes it on
    with pytest.raises(ValueError, match=r"target 'blocks\.9\.act' matches no module"):
        DensityMonitor(model, targets=["blocks.9.act"])
    with pytest.raises(ValueError, match="suffix must be"):
        DensityMonitor(model, targets=["blocks.0.act:weights"])
    with pytest.raises(ValueError, match="gated must be"):
        DensityMonitor(model, gated="both")


def test_a_model_without_mlp_activation_is_a_clear_error():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="found no MLP activation in Sequential") as error:
        DensityMonitor(model)
    for looked_for in ("gate_proj", "intermediate_act_fn", "wi_0", "fc1"):
        assert looked_for in str(error.value)
    assert "targets=" in str(error.value)


def test_an_activation_that_is_a_plain_function_is_hooked_through_its_container_or_refused():
    model = _bert_classifier()
    for layer in model.bert.encoder.layer:
        del layer.intermediate.intermediate_act_fn
        layer.intermediate.intermediate_act_fn = torch.relu  # not a module
    monitor = DensityMonitor(model)
    assert monitor.layer_names[0] == "bert.encoder.layer.0.intermediate"
    model(input_ids=IDS)
    assert (monitor.activations["bert.encoder.layer.0.intermediate"] >= 0).all()
    block = TinyClassifier()
    del block.blocks[0].act
    block.blocks[0].act = torch.relu
    with pytest.raises(ValueError, match="plain function"):
        DensityMonitor(block)


def test_remove_and_context_manager_leave_no_hook_and_loss_needs_a_forward():
    model = TinyClassifier(num_layers=2)
    with DensityMonitor(model) as monitor:
        with pytest.raises(RuntimeError, match="no forward ran"):
            monitor.loss()
        model(IDS % 32)
        assert monitor.loss().shape == ()
    hooks = [m._forward_hooks or m._forward_pre_hooks for m in model.modules()]
    assert not any(hooks)
    with pytest.raises(RuntimeError, match="removed"):
        monitor.loss()
    assert "DensityMonitor(TinyClassifier, model: 2 layers" in repr(monitor)


def test_density_loss_callback_adds_the_weighted_masked_loss():
    model = _bert_classifier()
    monitor = DensityMonitor(model)
    callback = deft.DensityLossCallback(monitor, weight=3.0)
    batch = {"input_ids": IDS, "attention_mask": MASK, "labels": torch.tensor([0, 1])}
    outputs = model(**batch)
    assert callback.name == "density_loss"
    torch.testing.assert_close(callback.extra_loss(None, batch, outputs), 3.0 * monitor.loss(MASK))
    with pytest.raises(ValueError, match="weight"):
        deft.DensityLossCallback(monitor, weight=-1.0)


def test_density_loss_callback_can_count_padding_as_the_reference_does():
    model = _bert_classifier()
    monitor = DensityMonitor(model)
    callback = deft.DensityLossCallback(monitor, weight=3.0, count_padding=True)
    batch = {"input_ids": IDS, "attention_mask": MASK, "labels": torch.tensor([0, 1])}
    outputs = model(**batch)
    counted = callback.extra_loss(None, batch, outputs)
    torch.testing.assert_close(counted, 3.0 * monitor.loss(None))
    assert not torch.allclose(counted, 3.0 * monitor.loss(MASK))  # the pads do change it


@pytest.mark.filterwarnings("ignore:None of the inputs have requires_grad")
def test_warns_when_no_activation_can_carry_a_gradient():
    model = TinyClassifier(num_layers=2)
    monitor = DensityMonitor(model)

    def forward(input_ids):  # re-entrant checkpointing runs the blocks without autograd
        hidden = model.embed(input_ids).detach()
        for block in model.blocks:
            hidden = checkpoint(block, hidden, use_reentrant=True)
        return hidden

    model.forward = forward
    model(IDS % 32)
    with pytest.warns(UserWarning, match="use_reentrant=False"):
        monitor.loss()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers renames past_key_values
def test_warns_when_one_stack_depends_on_nothing_trainable():
    pytest.importorskip("peft")
    from deft.methods import apply_method

    model = apply_method(_t5(), "prefix", num_virtual_tokens=3)
    monitor = DensityMonitor(model)
    model(input_ids=IDS, attention_mask=MASK, labels=IDS[:, :3].clone())
    by_group = monitor.activations_by_group  # prefixes reach the decoder only
    assert not any(a.requires_grad for a in by_group["encoder"].values())
    assert all(a.requires_grad for a in by_group["decoder"].values())
    with pytest.warns(UserWarning, match="the encoder term of the density loss is a constant"):
        monitor.loss(MASK)


def test_a_forward_through_the_backbone_alone_is_captured_also_after_a_full_one():
    # Custom heads and embedding losses call model.bert(...) directly; an evaluation step may
    # have run the whole model before. Such a capture is a new forward, not a recomputation.
    model = _bert_classifier()
    monitor = DensityMonitor(model)
    model(input_ids=IDS, attention_mask=MASK)
    longer = torch.randint(1, 100, (3, 9))
    model.bert(input_ids=longer)
    assert [tuple(a.shape) for a in monitor.activations.values()] == [(3, 9, 64)] * 2
    model.bert(input_ids=IDS)  # the next one replaces it
    assert [tuple(a.shape) for a in monitor.activations.values()] == [(2, 5, 64)] * 2


def test_a_loss_after_a_no_grad_forward_says_so():
    model = _bert_classifier()
    monitor = DensityMonitor(model)
    with torch.no_grad():
        model(input_ids=IDS, attention_mask=MASK)
    with pytest.warns(UserWarning, match=r"last forward ran without autograd \(torch\.no_grad"):
        monitor.loss(MASK)


def test_fused_mixture_of_experts_blocks_left_out_are_named():
    if not hasattr(transformers, "Qwen2MoeForCausalLM"):
        pytest.skip("this transformers has no Qwen2-MoE")
    config = transformers.Qwen2MoeConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=64, vocab_size=100, num_experts=4, num_experts_per_tok=2,
        moe_intermediate_size=32, shared_expert_intermediate_size=64,
    )  # fmt: skip
    model = transformers.Qwen2MoeForCausalLM(config)
    if not any(type(module).__name__.endswith("Experts") for module in model.modules()):
        # transformers before 5 keeps each expert as its own MLP, which the layouts find
        names = DensityMonitor(model).layer_names
        assert "model.layers.0.mlp.experts.3.act_fn" in names
        assert "model.layers.0.mlp.shared_expert.act_fn" in names
        return
    with pytest.warns(
        UserWarning, match=r"2 mixture-of-experts blocks \(e\.g\. model\.layers\.0\.mlp\.experts"
    ) as caught:
        monitor = DensityMonitor(model)
    assert caught[0].filename == __file__  # points at the caller
    assert monitor.layer_names == [f"model.layers.{i}.mlp.shared_expert.act_fn" for i in (0, 1)]

"""Family-specific behaviour: what trains, what is refused, BART's two stacks, generation, ViTs."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from tiny_models import (
    FAMILIES,
    image_batch,
    text_batch,
    timm_vit,
    tiny_bart,
    tiny_bert,
    tiny_llama,
    tiny_opt,
    tiny_vit,
)

from meft import MeftConfig, get_meft_model, reconstruction_errors
from meft.architectures import find_architecture
from meft.coupling import couple

# The task head that trains with the adapters; causal LM heads (tied to the embeddings) stay frozen.
HEADS = {
    "bert": "classifier",
    "roberta": "classifier",
    "vit": "classifier",
    "timm-vit": "head",
    "opt": None,
    "opt-post-ln-cls": "score",
    "llama": None,
    "mistral-cls": "score",
    "qwen2": None,
    "bart-cls": "classification_head",
    "bart": None,
    "bart-causal-lm": None,
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_only_adapters_and_the_family_head_train(family):
    assert set(HEADS) == set(FAMILIES)
    model = get_meft_model(FAMILIES[family].build(), MeftConfig(variant="meft3"))
    head = HEADS[family]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    is_head = {n for n in trainable if head is not None and n.startswith(head + ".")}
    assert trainable - is_head == {n for n in trainable if ".meft_adapters." in n}
    assert bool(is_head) == (head is not None)
    for stack in model.meft_stacks:  # every layer of every stack carries its adapters
        for layer in stack.layers:
            assert all(p.requires_grad for p in layer.meft_adapters.parameters())
    if hasattr(model, "lm_head"):
        assert not model.lm_head.weight.requires_grad


def test_bart_has_an_encoder_and_a_decoder_stack_and_its_generation_head_stays_frozen():
    model = get_meft_model(tiny_bart(task="lm"), MeftConfig())
    assert [stack.name for stack in model.meft_stacks] == [
        "model.encoder.layers",
        "model.decoder.layers",
    ]
    assert not model.lm_head.weight.requires_grad
    assert "final_logits_bias" in dict(model.named_buffers())


@pytest.mark.parametrize(
    ("build", "setting"),
    [
        (lambda: tiny_opt(), "layerdrop"),
        (lambda: tiny_bart(), "encoder_layerdrop"),
        (lambda: tiny_bart(task="lm"), "decoder_layerdrop"),
    ],
)
def test_layerdrop_is_refused_with_a_clear_error(build, setting):
    model = build()
    model.config.update({setting: 0.1})
    model = type(model)(model.config)  # the loop copies layerdrop from the config when built
    with pytest.raises(ValueError, match=r"LayerDrop .*layerdrop=0\.1.*drop every layer"):
        get_meft_model(model, MeftConfig())


def test_layerdrop_set_on_the_module_after_building_is_refused_too():
    model = tiny_opt()
    model.model.decoder.layerdrop = 0.2
    with pytest.raises(ValueError, match=r"model\.decoder\.layerdrop=0\.2"):
        get_meft_model(model, MeftConfig())


def test_qwen2_mixing_sliding_and_full_attention_is_refused():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=64, vocab_size=100, use_sliding_window=True, sliding_window=4,
        max_window_layers=1,
    )  # fmt: skip
    assert len(set(config.layer_types)) == 2
    with pytest.raises(ValueError, match="mix attention types"):
        get_meft_model(Qwen2ForCausalLM(config), MeftConfig())


def test_timm_blocks_other_than_the_pre_norm_block_are_refused():
    from timm.models.vision_transformer import ResPostBlock, VisionTransformer

    model = VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, block_fn=ResPostBlock
    )
    with pytest.raises(ValueError, match="ResPostBlock"):
        get_meft_model(model, MeftConfig())


@pytest.mark.parametrize(("act_layer", "expected"), [("gelu", "GELU"), ("silu", "SiLU")])
def test_timm_adapters_use_the_blocks_activation(act_layer, expected):
    from timm.models.vision_transformer import VisionTransformer

    model = VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, act_layer=act_layer
    )
    assert find_architecture(model).name == "timm-vit"
    model = get_meft_model(model, MeftConfig())
    assert type(model.blocks[0].meft_adapters.ffn.act).__name__ == expected


def _adapter_gradients(model, batch, stack_prefix):
    model.train()
    torch.manual_seed(3)
    model(**batch).loss.backward()
    return {
        name: p.grad.clone()
        for name, p in model.named_parameters()
        if p.requires_grad and name.startswith(stack_prefix)
    }


@pytest.mark.parametrize("variant", ["meft1", "meft3"])
def test_bart_decoder_returns_the_encoder_output_gradient_to_the_encoder(variant):
    # The classification head reads the decoder only: the encoder adapters get a gradient solely
    # through cross-attention, i.e. through the gradient of the encoder output that the decoder's
    # reversible backward accumulates over its layers and returns to the encoder's.
    base, batch = tiny_bart(dropout=0.1), text_batch(pad=True, eos=True)
    streams = "float64" if variant == "meft3" else "float32"  # see test_gradients.py
    results = {}
    for layers in (None, 0):
        torch.manual_seed(11)
        config = MeftConfig(variant=variant, stream_dtype=streams, num_reversible_layers=layers)
        model = get_meft_model(copy.deepcopy(base), config)
        results[layers] = _adapter_gradients(model, batch, "model.encoder.")
        if layers is None:  # the encoder output entered the decoder's Function as an input
            decoder_run = model.meft_stacks[1].last_run
            assert decoder_run is not None
            assert decoder_run.grad_context_positions
    reversible, vanilla = results[None], results[0]
    assert reversible.keys() == vanilla.keys()
    assert len(reversible) > 0
    for name, grad in vanilla.items():
        assert grad.norm() > 0, name
        assert (reversible[name] - grad).norm() / grad.norm() < 5e-5, name


def _next_token_logits(model, input_ids, **kwargs):
    return model(input_ids=input_ids, **kwargs).logits[:, -1]


def tiny_bert_decoder():
    from transformers import BertConfig, BertLMHeadModel

    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=100, max_position_embeddings=64, is_decoder=True, pad_token_id=1,
        eos_token_id=2, attn_implementation="eager",
    )  # fmt: skip
    return BertLMHeadModel(config)


@pytest.mark.parametrize(
    ("build", "variant"),
    [
        (tiny_llama, "meft1"), (tiny_llama, "meft2"), (tiny_llama, "meft3"), (tiny_opt, "meft2"),
        (tiny_bert_decoder, "meft1"),
    ],
    ids=["llama-meft1", "llama-meft2", "llama-meft3", "opt-meft2", "bert-decoder-meft1"],
)  # fmt: skip
def test_cached_decoding_matches_recomputing_the_coupled_stack(build, variant):
    # Each layer's attention runs once per step whichever sub-function holds it, so the key/value
    # cache of an incremental step holds what recomputing the whole prefix would compute.
    torch.manual_seed(0)
    model = get_meft_model(build(), MeftConfig(variant=variant)).eval()
    input_ids = text_batch()["input_ids"]
    prefix, last = input_ids[:, :-1], input_ids[:, -1:]
    with torch.no_grad():
        cache = model(input_ids=prefix, use_cache=True).cache
        assert cache.get_seq_length() == prefix.shape[1]
        incremental = _next_token_logits(model, last, cache=cache, use_cache=True)
        full = _next_token_logits(model, input_ids, use_cache=False)
        generated = model.generate(prefix, max_new_tokens=3, do_sample=False)
        recomputed = model.generate(prefix, max_new_tokens=3, do_sample=False, use_cache=False)
    torch.testing.assert_close(incremental, full, rtol=1e-5, atol=1e-5)
    assert generated.shape == (2, prefix.shape[1] + 3)
    assert torch.equal(generated, recomputed)


def test_bart_generates_with_the_cache_as_without():
    torch.manual_seed(0)
    model = get_meft_model(tiny_bart(task="lm"), MeftConfig()).eval()
    batch = text_batch(pad=True, eos=True)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        # min_new_tokens: the random model would otherwise emit EOS at once and stop.
        options = dict(max_new_tokens=3, min_new_tokens=3, do_sample=False)
        generated = model.generate(**inputs, **options)
        recomputed = model.generate(**inputs, **options, use_cache=False)
    assert generated.shape == (2, 4)  # decoder start token + 3
    assert torch.equal(generated, recomputed)


def test_training_writes_no_cache_and_a_backward_with_a_cache_recomputes_without_it():
    base, batch = tiny_llama(), text_batch(labels="tokens", pad=True)
    model = get_meft_model(copy.deepcopy(base), MeftConfig()).train()
    output = model(**batch, use_cache=True)
    # A training cache is never read; filling it would keep every layer's keys alive.
    assert output.cache is None or output.cache.get_seq_length() == 0
    # In eval mode with gradients on (a hand-written decoding loop) the cache is written once...
    gradients = {}
    for layers in (None, 0):
        torch.manual_seed(11)
        model = get_meft_model(copy.deepcopy(base), MeftConfig(num_reversible_layers=layers)).eval()
        output = model(**batch, use_cache=True)
        assert output.cache.get_seq_length() == batch["input_ids"].shape[1]
        output.loss.backward()  # ...and the reversible recompute must not write it again
        gradients[layers] = [p.grad for p in model.parameters() if p.requires_grad]
    for reversible, vanilla in zip(gradients[None], gradients[0], strict=True):
        assert (reversible - vanilla).norm() <= 1e-5 * vanilla.norm()


def test_post_ln_opt_float32_reconstruction_loss_is_reported():
    # Measured cause of post-LN OPT's float64 streams in test_gradients.py: its first layer's input
    # (a 0.02-scale embedding) is recovered from a sum dominated by a unit-scale LayerNorm output.
    def first_layer_error(streams):
        model = get_meft_model(
            tiny_opt(pre_norm=False, task="cls"),
            MeftConfig(variant="meft2", stream_dtype=streams, check_reconstruction=True),
        ).train()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model(**text_batch(pad=True)).loss.backward()
        return reconstruction_errors(model)["model.decoder.layers"][0]

    assert first_layer_error("float32") > 1e-3
    assert first_layer_error("float64") < 1e-9


def _train_one_step(model, batch, loss_of):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    adapters = {n: p.clone() for n, p in model.named_parameters() if ".meft_adapters." in n}
    model.train()
    loss = loss_of(model, batch)
    loss.backward()
    assert torch.isfinite(loss)
    for name, parameter in model.named_parameters():
        if ".meft_adapters." in name and name.endswith("up.weight"):
            assert parameter.grad is not None, name
            assert parameter.grad.norm() > 0, name
    optimizer.step()
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert any(
        not torch.equal(p, adapters[n]) for n, p in model.named_parameters() if n in adapters
    )


def test_a_plain_timm_vit_trains_one_step():
    model = get_meft_model(timm_vit(dropout=0.1), MeftConfig(variant="meft1"))
    batch = image_batch()

    def loss_of(model, batch):
        logits = model(batch["pixel_values"])  # timm's own forward: no labels, no loss
        return torch.nn.functional.cross_entropy(logits, batch["labels"])

    _train_one_step(model, batch, loss_of)


def test_a_hugging_face_vit_trains_one_step():
    model = get_meft_model(tiny_vit(dropout=0.1), MeftConfig(variant="meft3"))
    _train_one_step(model, image_batch(), lambda model, batch: model(**batch).loss)


def _prefix_cache(model, prefix):
    with torch.no_grad():
        return model(input_ids=prefix, use_cache=True).cache


@pytest.mark.parametrize("layers", [None, 1])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_a_filled_cache_with_gradients_enabled_is_refused(mode, layers):
    # The reversible backward recomputes the layers without the cache: refuse rather than drop it
    # (wrong outputs in training) or crash in backward (eval mode with gradients).
    model = get_meft_model(tiny_llama(), MeftConfig(num_reversible_layers=layers)).eval()
    input_ids = text_batch()["input_ids"]
    cache = _prefix_cache(model, input_ids[:, :4])
    getattr(model, mode)()
    with pytest.raises(
        ValueError, match=r"cannot replay a cache.*no_grad.*num_reversible_layers=0"
    ):
        model(input_ids=input_ids[:, 4:], cache=cache)
    with torch.no_grad():  # generation-style use stays fine
        model(input_ids=input_ids[:, 4:], cache=cache)


def test_training_on_a_cache_with_vanilla_backprop_matches_the_full_sequence():
    model = get_meft_model(tiny_llama(), MeftConfig(num_reversible_layers=0)).eval()
    input_ids = text_batch()["input_ids"]
    with torch.no_grad():
        full = model(input_ids=input_ids).logits[:, 4:]
    cache = _prefix_cache(model, input_ids[:, :4])
    model.train()
    logits = model(input_ids=input_ids[:, 4:], cache=cache).logits
    torch.testing.assert_close(logits, full, rtol=1e-5, atol=1e-5)
    logits.sum().backward()
    assert model.model.layers[0].meft_adapters.stream.up.weight.grad is not None


def test_use_cache_in_training_warns_once_and_writes_nothing():
    model = get_meft_model(tiny_llama(), MeftConfig()).train()
    batch = text_batch(labels="tokens", pad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        output = model(**batch, use_cache=True)
        model(**batch, use_cache=True)
    assert sum("caching is incompatible" in str(w.message) for w in caught) == 1
    assert output.cache is None or output.cache.get_seq_length() == 0


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: tiny_bert(dropout=0.1), 0.1),
        (lambda: tiny_opt(dropout=0.1), 0.1),
        (lambda: timm_vit(dropout=0.1), 0.1),  # proj_drop_rate
        (lambda: tiny_llama(dropout=0.3), 0.0),  # only attention dropout: no hidden dropout
    ],
    ids=["bert", "opt", "timm-vit", "llama"],
)
def test_adapters_drop_out_as_the_models_hidden_states_do(build, expected):
    model = get_meft_model(build(), MeftConfig())
    rates = {
        module.dropout.p
        for layer in model.modules()
        if hasattr(layer, "meft_adapters")
        for module in layer.meft_adapters.children()
    }
    assert rates == {expected}


def test_bert_with_cross_attention_is_refused():
    from transformers import BertConfig, BertLMHeadModel

    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=100, is_decoder=True, add_cross_attention=True,
    )  # fmt: skip
    model = BertLMHeadModel(config)
    with pytest.raises(ValueError, match=r"cross-attention .*crossattention"):
        get_meft_model(model, MeftConfig())
    assert not hasattr(model, "meft_stacks")


def test_bart_causal_lm_is_the_decoder_stack_alone():
    model = get_meft_model(tiny_bart(task="causal-lm"), MeftConfig())
    assert find_architecture(model).name == "bart-decoder"
    assert [stack.name for stack in model.meft_stacks] == ["model.decoder.layers"]
    assert find_architecture(tiny_bart(task="lm")).name == "bart"


def _coupled_reference(model, embeddings, context):
    """Each layer's output (the mean of its streams), coupled by hand, one layer at a time."""
    (stack,) = model.meft_stacks
    x1 = x2 = embeddings
    outputs = []
    with torch.no_grad():
        for layer in stack.coupled:
            x1, x2 = couple(layer, x1, x2, context, embeddings.dtype)
            outputs.append((x1 + x2) / 2)
    return outputs


@pytest.mark.parametrize("layers", [None, 1, 0])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_hidden_states_are_each_layers_output(mode, layers):
    model = get_meft_model(tiny_bert(num_layers=3), MeftConfig(num_reversible_layers=layers))
    getattr(model, mode)()
    input_ids = text_batch()["input_ids"]  # no padding: the layers see no mask
    output = model(input_ids=input_ids, output_hidden_states=True)
    hidden = output.hidden_states
    expected = _coupled_reference(model, hidden[0], {"attention_mask": None})
    assert len(hidden) == 4
    for index, reference in enumerate(expected, start=1):
        torch.testing.assert_close(hidden[index], reference, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(hidden[1], hidden[2])
    if mode == "train" and layers is None:
        # Reversible layers run without autograd: their outputs carry no graph (documented), so a
        # loss on them fails loudly; the last one is the stack's output, with its graph.
        assert not hidden[1].requires_grad
        with pytest.raises(RuntimeError, match="does not require grad"):
            hidden[1].sum().backward()
        output.logits.sum().backward()
    assert model.meft_stacks[0]._layer_outputs is None  # nothing kept past the host's loop


def test_a_forward_hook_on_a_layer_sees_that_layers_output():
    model = get_meft_model(tiny_bert(num_layers=3), MeftConfig()).eval()
    seen = {}
    layers = model.bert.encoder.layer
    layers[0].register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0]))
    layers[1].register_forward_hook(lambda module, args, output: seen.setdefault(1, output))
    with torch.no_grad():
        model(input_ids=text_batch()["input_ids"])
    expected = _coupled_reference(model, seen["x"], {"attention_mask": None})
    torch.testing.assert_close(seen[1], expected[1], rtol=1e-5, atol=1e-5)


def test_timm_forward_intermediates_are_each_blocks_output():
    model = get_meft_model(timm_vit(num_layers=3), MeftConfig()).eval()
    pixels = image_batch()["pixel_values"]
    seen = {}
    model.blocks[0].register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        intermediates = model.forward_intermediates(pixels, intermediates_only=True)
        expected = _coupled_reference(model, seen["x"], {})
        first = model.forward_intermediates(
            pixels, indices=[0], stop_early=True, intermediates_only=True
        )
        features = model.forward_features(pixels)
    assert len(intermediates) == 3
    for index, reference in enumerate(expected):
        # timm returns them as feature maps (B, C, H, W) without the class token
        torch.testing.assert_close(
            intermediates[index], _as_feature_map(model, reference), rtol=1e-5, atol=1e-5
        )
    torch.testing.assert_close(first[0], intermediates[0])
    torch.testing.assert_close(model.norm(expected[-1]), features, rtol=1e-5, atol=1e-5)


def _as_feature_map(model, tokens):
    patches = tokens[:, model.num_prefix_tokens :]
    side = int(patches.shape[1] ** 0.5)
    return patches.reshape(tokens.shape[0], side, side, -1).permute(0, 3, 1, 2)

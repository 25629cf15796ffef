"""The baseline rows: trainable sets and counts, starting points, training, saving, errors."""

from __future__ import annotations

import doctest
import fnmatch
import importlib
import sys
from pathlib import Path

import pytest
import torch

import peft_core
from peft_core.testing import TrainableRoundTripTests
from point_peft import BASELINE_METHODS, BaselineConfig, BaselineModel, get_baseline_model
from point_peft.baselines import apply_baseline
from point_peft.models import PointBERT, PointMAE, PointMAEPretrainer, PointTransformerConfig

sys.path.insert(0, str(Path(__file__).parent))
from method_helpers import (
    clouds,
    logits_after_fresh_process_load,
    tiny_backbone,
    tiny_backbone_config,
    tiny_model,
)

pytestmark = pytest.mark.usefixtures("one_thread")

DEPTH = 3  # tiny_backbone_config's blocks


def tiny_baseline(method: str, seed: int = 0, **options) -> BaselineModel:
    backbone = tiny_backbone(seed)
    torch.manual_seed(seed + 1)
    return get_baseline_model(backbone, method, **options)


def trainable_names(model: torch.nn.Module) -> set[str]:
    return {name for name, parameter in model.named_parameters() if parameter.requires_grad}


# -- what trains ------------------------------------------------------------------------------------
def expected_trainable(model: BaselineModel) -> set[str]:
    """Each row's documented trainable set, spelled out over the tiny model's names."""
    names = [name for name, _ in model.named_parameters()]
    head = {name for name in names if name.startswith("backbone.cls_head_finetune.")}
    head_norm_cls = head | {
        "backbone.cls_token",
        "backbone.cls_pos",
        "backbone.norm.weight",
        "backbone.norm.bias",
    }
    if model.baseline == "full":
        return set(names)
    if model.baseline == "linear":
        return head
    if model.baseline == "adapter":
        adapters = {
            f"adapters.{block}.{linear}.{kind}"
            for block in range(DEPTH)
            for linear in ("down", "up")
            for kind in ("weight", "bias")
        }
        return adapters | head_norm_cls
    if model.baseline == "vpt-deep":
        return {"prompts.embeddings"} | head_norm_cls
    assert model.baseline == "bitfit"
    return {name for name in names if name.endswith(".bias")} | head


@pytest.mark.parametrize("method", BASELINE_METHODS)
def test_trainable_set_is_exactly_the_documented_one(method):
    model = tiny_baseline(method)
    assert trainable_names(model) == expected_trainable(model)
    new = {name for name, _ in model.named_parameters() if not name.startswith("backbone.")}
    assert new <= trainable_names(model)  # every new parameter trains


def test_linear_probe_trains_the_head_and_nothing_else():
    model = tiny_baseline("linear")
    assert all(name.startswith("backbone.cls_head_finetune.") for name in trainable_names(model))
    for frozen in ("cls_token", "cls_pos", "norm.weight", "norm.bias"):
        assert not model.backbone.get_parameter(frozen).requires_grad, frozen


def test_bitfit_trains_every_bias_and_no_gain_or_token():
    trainable = trainable_names(tiny_baseline("bitfit"))
    for name in (
        "backbone.encoder.first_conv.0.bias",  # patch-encoder convolution
        "backbone.encoder.first_conv.1.bias",  # patch-encoder BatchNorm
        "backbone.pos_embed.0.bias",
        "backbone.blocks.blocks.0.norm1.bias",
        "backbone.blocks.blocks.2.attn.proj.bias",
        "backbone.blocks.blocks.1.mlp.fc1.bias",
        "backbone.norm.bias",
        "backbone.cls_head_finetune.0.weight",  # the head trains whole
    ):
        assert name in trainable, name
    for name in (
        "backbone.norm.weight",
        "backbone.encoder.first_conv.1.weight",
        "backbone.cls_token",
        "backbone.blocks.blocks.0.attn.qkv.weight",
    ):
        assert name not in trainable, name


@pytest.mark.parametrize("method", BASELINE_METHODS)
def test_every_trainable_parameter_gets_a_gradient(method):
    model = tiny_baseline(method).train()
    model(clouds(4), labels=torch.tensor([0, 1, 2, 3])).loss.backward()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, f"{name} got no gradient"
        else:
            assert parameter.grad is None, f"frozen {name} got a gradient"


# -- the official configuration: Point-MAE 12 x 384, 15 classes ----------------------------------------
C, BLOCKS, CLASSES, TOTAL = 384, 12, 15, 22_093_327
HEAD = (2 * C * 256 + 256) + 2 * 256 + (256 * 256 + 256) + 2 * 256 + (256 * CLASSES + CLASSES)
HEAD_NORM_AND_CLS = {
    "backbone.cls_head_finetune.*": HEAD,  # Linear, BN, Linear, BN, Linear
    "backbone.norm.*": 2 * C,  # final LayerNorm gain and bias
    "backbone.cls_token": C,
    "backbone.cls_pos": C,
}
BOTTLENECK_16 = (C * 16 + 16) + (16 * C + C)  # down, up
BIASES = (
    (128 + 128 + 256)  # patch encoder, first_conv: conv, BN, conv
    + (512 + 512 + C)  # patch encoder, second_conv: conv, BN, conv
    + (128 + C)  # positional MLP
    + BLOCKS * (C + C + C + 4 * C + C)  # norm1, attn.proj, norm2, fc1, fc2 (qkv has none)
    + C  # final LayerNorm
)
OFFICIAL = {  # method: (breakdown of the trainable count, parameters added to the backbone)
    "full": ({"*": TOTAL}, 0),
    "linear": ({"backbone.cls_head_finetune.*": HEAD}, 0),
    "adapter": (
        {"adapters.*": BLOCKS * BOTTLENECK_16, **HEAD_NORM_AND_CLS},
        BLOCKS * BOTTLENECK_16,
    ),
    "vpt-deep": ({"prompts.*": BLOCKS * 10 * C, **HEAD_NORM_AND_CLS}, BLOCKS * 10 * C),
    # every bias outside the head ([!c]: no backbone module but the head starts with "c"), the head
    "bitfit": ({"backbone.[!c]*.bias": BIASES, "backbone.cls_head_finetune.*": HEAD}, 0),
}


def official_backbone() -> PointMAE:
    with torch.device("meta"):  # shapes only: no memory, no values
        return PointMAE(PointTransformerConfig.point_mae(num_classes=CLASSES, num_groups=128))


def test_official_trainable_counts_equal_the_hand_computed_breakdown():
    rows = []
    for method in BASELINE_METHODS:
        breakdown, added = OFFICIAL[method]
        model = get_baseline_model(official_backbone(), method)
        found = dict.fromkeys(breakdown, 0)
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue
            matches = [pattern for pattern in breakdown if fnmatch.fnmatchcase(name, pattern)]
            assert len(matches) == 1, f"{method}: {name} falls in categories {matches}"
            found[matches[0]] += parameter.numel()
        assert found == breakdown, method
        trainable, total = peft_core.count_parameters(model)
        assert trainable == sum(breakdown.values())
        assert total == TOTAL + added
        rows.append(f"{method:9} {trainable:>12,d} / {total:,d} ({100 * trainable / total:.2f}%)")
    print("\nPoint-MAE 12x384, 15 classes:\n" + "\n".join(rows))
    counts = {method: sum(OFFICIAL[method][0].values()) for method in BASELINE_METHODS}
    assert counts == {
        "full": 22_093_327,
        "linear": 267_535,
        "adapter": 421_327,
        "vpt-deep": 315_151,
        "bitfit": 307_215,
    }


@pytest.mark.parametrize("method", BASELINE_METHODS)
def test_print_trainable_parameters(method, capsys):
    model = tiny_baseline(method)
    model.print_trainable_parameters()
    trainable, total = peft_core.count_parameters(model)
    assert capsys.readouterr().out == (
        f"trainable params: {trainable:,d} || all params: {total:,d} || "
        f"trainable%: {100 * trainable / total:.4f}\n"
    )


def test_no_weight_decay_holds_biases_norms_and_tokens():
    model = tiny_baseline("vpt-deep")
    no_decay = model.no_weight_decay()
    assert {"prompts.embeddings", "backbone.cls_token", "backbone.cls_pos"} <= no_decay
    assert {"backbone.norm.weight", "backbone.cls_head_finetune.0.bias"} <= no_decay
    assert "backbone.cls_head_finetune.0.weight" not in no_decay
    assert all(model.get_parameter(name).requires_grad for name in no_decay)
    adapter_model = tiny_baseline("adapter")
    assert "adapters.0.down.bias" in adapter_model.no_weight_decay()
    assert "adapters.0.down.weight" not in adapter_model.no_weight_decay()


# -- forward: starting points, layout, interface ------------------------------------------------------
def test_zero_initialised_adapters_start_exactly_at_the_backbone():
    model = tiny_baseline("adapter").eval()
    points = clouds(3)
    with torch.no_grad():
        assert torch.equal(model(points).logits, model.backbone(points))
        assert float(model.adapters[0].up.weight.abs().max()) == 0.0
        moved = tiny_baseline("adapter", adapter_init="normal").eval()
        assert not torch.equal(moved(points).logits, moved.backbone(points))


@pytest.mark.parametrize("method", ["full", "linear", "bitfit"])
def test_rows_without_new_modules_compute_the_backbone(method):
    model = tiny_baseline(method).eval()
    points = clouds(3)
    with torch.no_grad():
        assert torch.equal(model(points).logits, model.backbone(points))


def test_vpt_deep_prompts_enter_every_block_and_never_reach_the_head():
    model = tiny_baseline("vpt-deep", num_prompts=5).eval()
    points = clouds(2)
    lengths = {}

    def record(name):
        def hook(module, inputs):
            lengths[name] = inputs[0].shape[1]

        return hook

    for index, block in enumerate(model.backbone.blocks.blocks):
        block.norm1.register_forward_pre_hook(record(index))
    model.backbone.norm.register_forward_pre_hook(record("norm"))
    with torch.no_grad():
        backbone_logits = model.backbone(points)
        lengths.clear()
        logits = model(points).logits
    difference = float((logits - backbone_logits).abs().max())
    tokens = tiny_backbone_config().num_groups
    assert lengths == {0: 1 + 5 + tokens, 1: 1 + 5 + tokens, 2: 1 + 5 + tokens, "norm": 1 + tokens}
    # Prompts change what the tokens attend to: the logits move (by how much is not a property).
    assert difference > 0.0


def test_vpt_deep_prompts_are_per_block_and_dropped_per_sample_in_training():
    model = tiny_baseline("vpt-deep", num_prompts=4, prompt_dropout=0.5)
    assert model.prompts.embeddings.shape == (DEPTH, 4, tiny_backbone_config().embed_dim)
    x = torch.zeros(64, 3, tiny_backbone_config().embed_dim)
    model.train()
    inserted = model.prompts.insert(1, x)[:, 1:5]
    dropped = inserted == 0  # (64, 4, dim): the dropped entries
    assert 0.3 < float(dropped.float().mean()) < 0.7
    assert not torch.equal(dropped[0], dropped[1])  # each sample drops its own entries
    model.eval()
    torch.testing.assert_close(
        model.prompts.insert(1, x)[:, 1:5], model.prompts.embeddings[1].expand(64, -1, -1)
    )


def test_output_has_the_point_peft_interface():
    model = tiny_baseline("adapter")
    labels = torch.tensor([0, 1, 2, 3])
    output = model(clouds(4), labels=labels, sample_indices=torch.arange(4))
    assert isinstance(output, dict)
    assert list(output) == ["loss", "logits"]
    torch.testing.assert_close(output.loss, model.backbone.loss(output.logits, labels))
    assert model(clouds(4)).loss is None
    batch = {"points": clouds(4), "labels": labels, "sample_indices": torch.arange(4)}
    assert model(**batch).logits.shape == (4, 5)


@pytest.mark.parametrize("freeze", [True, False])
def test_frozen_batchnorm_statistics_are_selectable(freeze):
    model = tiny_baseline("linear", freeze_batchnorm_stats=freeze).train()
    patch_norm = model.backbone.encoder.first_conv[1]
    before = patch_norm.running_mean.clone()
    model(clouds(4))
    assert patch_norm.training is not freeze
    assert torch.equal(patch_norm.running_mean, before) is freeze
    assert model.backbone.cls_head_finetune[1].training  # the head's BatchNorm trains


def test_point_bert_backbones_are_supported():
    for method in BASELINE_METHODS:
        torch.manual_seed(0)
        backbone = PointBERT(tiny_backbone_config(patch_dim=12, label_smoothing=0.2))
        model = get_baseline_model(backbone, method).eval()
        assert model(clouds(2)).logits.shape == (2, 5)
        if method == "bitfit":
            assert model.backbone.reduce_dim.bias.requires_grad


# -- training ----------------------------------------------------------------------------------------
def train_steps(model, points, labels, steps, lr=5e-3):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        model.train()
        loss = model(points, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("method", BASELINE_METHODS)
def test_a_few_training_steps_reduce_the_loss(method):
    """Without dropout and drop path the train-mode loss of a batch is deterministic (BatchNorms
    use the batch's statistics): it measures the fit. Eval-mode losses would lag behind on the
    running statistics after 15 steps."""
    options = {"adapter": {"adapter_dropout": 0.0}, "vpt-deep": {"prompt_dropout": 0.0}}
    backbone = tiny_backbone(2, head_dropout=0.0, drop_path_rate=0.0)
    model = get_baseline_model(backbone, method, **options.get(method, {}))
    points, labels = clouds(8, seed=3), torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}

    def batch_loss():
        model.train()
        with torch.no_grad():
            return float(model(points, labels=labels).loss)

    before = batch_loss()
    train_steps(model, points, labels, steps=15)
    after = batch_loss()
    assert after < 0.6 * before, (before, after)
    for name, value in frozen.items():
        assert torch.equal(model.get_parameter(name), value), f"frozen {name} changed"


@pytest.mark.parametrize("method", ["adapter", "vpt-deep"])
def test_seeded_training_is_deterministic(method):
    points, labels = clouds(4, seed=5), torch.tensor([0, 1, 2, 3])
    runs = []
    for _ in range(2):
        model = tiny_baseline(method, seed=3)
        torch.manual_seed(11)  # dropout, drop path
        losses = train_steps(model, points, labels, steps=2)
        runs.append((losses, {n: p.detach().clone() for n, p in model.named_parameters()}))
    assert runs[0][0] == runs[1][0]
    for name, value in runs[0][1].items():
        assert torch.equal(value, runs[1][1][name]), name


# -- saving and loading --------------------------------------------------------------------------------
class _BaselineRoundTrip(TrainableRoundTripTests):
    """peft-core's round trip (save → load, only trained tensors saved, seeded construction,
    ``peft_core.load`` rebuild) for one row; a subclass per row below."""

    method = "linear"

    @property
    def method_config(self):
        return BaselineConfig(self.method)

    def make_model(self):
        return tiny_baseline(self.method, seed=self.seed)

    def make_inputs(self):
        return {"points": clouds(3, seed=21)}

    def base_model(self):
        return tiny_backbone(self.seed)


for _method in BASELINE_METHODS:
    _name = "TestRoundTrip" + _method.title().replace("-", "")
    globals()[_name] = type(_name, (_BaselineRoundTrip,), {"method": _method})


def trained_baseline(method: str, seed: int = 0, **options) -> BaselineModel:
    """Trainable tensors and BatchNorm statistics that differ from a fresh model's."""
    model = tiny_baseline(method, seed, **options)
    generator = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    model.train()
    for _ in range(2):
        model(clouds(4, seed=30))  # moves the running statistics
    return model.eval()


def test_peft_core_load_in_a_fresh_process_gives_identical_logits(tmp_path):
    model = trained_baseline("vpt-deep", seed=4, num_prompts=3)
    model.save_pretrained(tmp_path / "run")
    points = clouds(3, seed=22)
    with torch.no_grad():
        expected = model(points).logits
    # no import of point_peft: peft_core finds "point_baseline" through the entry point
    checks = """
        assert type(model).__name__ == "BaselineModel", type(model)
        assert model.baseline == "vpt-deep" and model.prompts.num_prompts == 3
    """
    logits = logits_after_fresh_process_load(tmp_path / "run", points, tmp_path, checks=checks)
    assert torch.equal(logits, expected)


@pytest.mark.parametrize("method", BASELINE_METHODS)
def test_save_and_load_restore_the_moved_statistics_and_the_options(method, tmp_path):
    options = {"adapter": {"bottleneck_dim": 3}, "vpt-deep": {"num_prompts": 2}}.get(method, {})
    model = trained_baseline(method, **options)
    model.save_pretrained(tmp_path)
    restored = peft_core.load(tiny_backbone(0), tmp_path).eval()
    assert restored.baseline_config == model.baseline_config
    points = clouds(3, seed=23)
    with torch.no_grad():
        assert torch.equal(restored(points).logits, model(points).logits)
    assert torch.equal(
        restored.backbone.encoder.first_conv[1].running_mean,
        model.backbone.encoder.first_conv[1].running_mean,
    )


@pytest.mark.parametrize("method", ["linear", "bitfit"])
def test_rows_with_a_frozen_cls_token_restore_on_a_freshly_loaded_pretrain_file(method, tmp_path):
    """A Point-MAE pre-train file has no cls token or position: loading it draws them anew. The
    rows that keep them frozen must save them, or the restored model is another model."""
    config = tiny_backbone_config()
    torch.manual_seed(0)
    pretrain_file = PointMAEPretrainer(config).to_official_checkpoint()

    def freshly_loaded_backbone(seed: int) -> PointMAE:
        torch.manual_seed(seed)
        return PointMAE.from_pretrained(pretrain_file, config=config)

    model = get_baseline_model(freshly_loaded_backbone(1), method).eval()
    model.save_pretrained(tmp_path)
    restored = peft_core.load(freshly_loaded_backbone(2), tmp_path).eval()
    points = clouds(3, seed=24)
    with torch.no_grad():
        assert torch.equal(restored(points).logits, model(points).logits)
    assert not any(
        parameter.requires_grad for parameter in (model.backbone.cls_token, model.backbone.cls_pos)
    )


def test_the_baselines_are_registered_with_peft_core():
    spec = peft_core.get_method("point_baseline")
    assert spec.apply is apply_baseline
    assert spec.config_class is BaselineConfig


def test_config_round_trips_and_records_only_the_rows_options():
    config = BaselineConfig("vpt-deep", num_prompts=4)
    record = config.to_dict()
    assert (record["num_prompts"], record["prompt_dropout"]) == (4, 0.1)
    assert (record["bottleneck_dim"], record["adapter_init"]) == (None, None)
    assert BaselineConfig.from_dict(record) == config
    assert config.options == {
        "num_prompts": 4,
        "prompt_dropout": 0.1,
        "freeze_batchnorm_stats": False,
    }


# -- documentation -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "suffix", ["", ".config", ".trainable", ".adapters", ".prompts", ".model"], ids=str
)
def test_docstring_examples(suffix):
    module = importlib.import_module("point_peft.baselines" + suffix)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0


# -- errors --------------------------------------------------------------------------------------------
def test_an_unknown_method_lists_the_valid_ones():
    with pytest.raises(
        ValueError,
        match=r"unknown baseline method 'lora'; valid methods: full, linear, adapter, vpt-deep, bitfit",
    ):
        get_baseline_model(tiny_backbone(), "lora")
    with pytest.raises(ValueError, match=r"'vpt_deep' \(did you mean 'vpt-deep'\?\)"):
        get_baseline_model(tiny_backbone(), "vpt_deep")


@pytest.mark.parametrize(
    ("method", "options", "error", "message"),
    [
        (
            "linear",
            {"bottleneck_dim": 8},
            TypeError,
            r"'linear' baseline takes no option 'bottleneck_dim' \(it is an option of 'adapter'\); its options: freeze_batchnorm_stats",
        ),
        (
            "adapter",
            {"num_prompt": 8},
            TypeError,
            r"no option 'num_prompt'; its options: bottleneck_dim, adapter_dropout, adapter_init, freeze_batchnorm_stats",
        ),
        (
            "adapter",
            {"bottleneck_dim": 0},
            ValueError,
            r"bottleneck_dim must be a positive integer \(the adapters' hidden width\), got 0",
        ),
        (
            "adapter",
            {"bottleneck_dim": 4.0},
            ValueError,
            r"bottleneck_dim must be a positive integer",
        ),
        (
            "adapter",
            {"adapter_dropout": 1.0},
            ValueError,
            r"adapter_dropout must be a probability in \[0, 1\), got 1.0",
        ),
        (
            "adapter",
            {"adapter_init": "zeros"},
            ValueError,
            r"adapter_init must be one of zero_up, normal, xavier, got 'zeros'",
        ),
        (
            "vpt-deep",
            {"num_prompts": -1},
            ValueError,
            r"num_prompts must be a positive integer \(prompt tokens per block\), got -1",
        ),
        (
            "vpt-deep",
            {"prompt_dropout": "0.1"},
            ValueError,
            r"prompt_dropout must be a probability",
        ),
        (
            "full",
            {"freeze_batchnorm_stats": 1},
            ValueError,
            r"freeze_batchnorm_stats must be True or False, got 1",
        ),
    ],
)
def test_bad_options_name_the_argument_and_what_was_expected(method, options, error, message):
    with pytest.raises(error, match=message):
        get_baseline_model(tiny_backbone(), method, **options)


def test_a_config_with_another_rows_option_is_refused():
    with pytest.raises(
        peft_core.ConfigError,
        match=r"num_prompts is an option of the 'vpt-deep' baseline; 'adapter' takes",
    ):
        BaselineConfig("adapter", num_prompts=3)


def test_wrapping_twice_or_a_non_classifier_is_refused():
    model = tiny_baseline("linear")
    with pytest.raises(ValueError, match="already a BaselineModel"):
        get_baseline_model(model, "adapter")
    with pytest.raises(ValueError, match="already a PointPeftModel"):
        get_baseline_model(tiny_model(), "adapter")
    with pytest.raises(TypeError, match="PointMAE or PointBERT classifier as backbone, got Linear"):
        get_baseline_model(torch.nn.Linear(3, 3), "full")

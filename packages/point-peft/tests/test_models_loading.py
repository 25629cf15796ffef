"""Official checkpoint layouts load: names, shapes, counts, missing/unexpected reports, errors.

Checkpoints are built with random values in EXACTLY the official layouts (``official_layouts``),
saved with ``torch.save`` the way the official code saves them, and loaded back.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

from peft_core import CheckpointError, count_parameters
from point_peft.models import (
    EXPECTED_MISSING,
    EXPECTED_UNEXPECTED,
    PointBERT,
    PointMAE,
    PointMAEPretrainer,
    PointTransformerConfig,
    PointTransformerEncoder,
    detect_checkpoint_kind,
    load_pretrained,
    read_checkpoint,
)

sys.path.insert(0, str(Path(__file__).parent))
import official_layouts as layouts


def save(tmp_path, state, name="ckpt.pth", **extra):
    """Save like the official runners: {"base_model": state_dict, "epoch": …, …}."""
    path = tmp_path / name
    torch.save({"base_model": state, **extra}, path)
    return path


def names(layout, prefix=""):
    return [name for name, _ in layout if name.startswith(prefix)]


def assert_loaded(model, state, rename=lambda name: name):
    """Every checkpoint tensor that the model has arrived with its exact value."""
    model_state = model.state_dict()
    compared = 0
    for name, tensor in state.items():
        target = rename(name)
        if target in model_state:
            assert torch.equal(model_state[target], tensor), name
            compared += 1
    return compared


def tiny(**overrides):
    return PointTransformerConfig.small(depth=2, num_classes=7, **overrides)


# --- the layouts themselves -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("layout", "entries", "parameters"),
    [
        (layouts.point_mae_pretrain(), 209, 29_006_432),
        (layouts.point_mae_finetuned(15), 174, 22_093_327),
        (layouts.point_bert_pretrain_transformer_q(), 167, 25_472_896),
        (layouts.point_bert_finetuned(40), 164, 22_065_960),
    ],
    ids=["mae-pretrain", "mae-finetuned", "bert-pretrain", "bert-finetuned"],
)
def test_layouts_have_the_reference_sizes(layout, entries, parameters):
    assert len(layout) == entries
    assert len({name for name, _ in layout}) == entries
    assert layouts.parameter_count(layout) == parameters


@pytest.mark.parametrize(
    ("build", "layout", "parameters"),
    [
        (lambda: PointMAE(num_classes=15), layouts.point_mae_finetuned(15), 22_093_327),
        (lambda: PointBERT(num_classes=40), layouts.point_bert_finetuned(40), 22_065_960),
        (PointMAEPretrainer, layouts.point_mae_pretrain(), 29_006_432),
    ],
    ids=["PointMAE", "PointBERT", "PointMAEPretrainer"],
)
def test_official_models_have_exactly_the_official_state_dict(build, layout, parameters):
    with torch.device("meta"):  # names, shapes and counts need no values
        model = build()
    assert [(name, list(t.shape)) for name, t in model.state_dict().items()] == layout
    assert count_parameters(model) == (parameters, parameters)


def test_point_mae_encoder_has_the_stated_size():
    """The pre-train file minus its decoder side: what PointMAE's encoder holds."""
    with torch.device("meta"):
        encoder = PointTransformerEncoder(PointTransformerConfig.point_mae(), cls_token=False)
    pretrain = layouts.point_mae_pretrain()
    assert count_parameters(encoder)[1] == layouts.parameter_count(
        [(n, s) for n, s in pretrain if n.startswith("MAE_encoder.")]
    )
    head = (768 * 256 + 256) + 2 * 256 + (256 * 256 + 256) + 2 * 256 + (256 * 15 + 15)
    assert count_parameters(encoder)[1] == 22_093_327 - 2 * 384 - head  # minus cls and head


# --- loading the four official layouts --------------------------------------------------------
def test_point_mae_pretrain_file_loads_with_the_expected_report(tmp_path):
    layout = layouts.point_mae_pretrain()
    state = layouts.random_state(layout, seed=1)
    # DataParallel prefixes and the extra entries the official runner saves next to the weights
    path = save(
        tmp_path,
        {"module." + name: tensor for name, tensor in state.items()},
        epoch=300,
        metrics={"acc": 0.0},
        optimizer={"state": {0: {"step": torch.tensor(5.0)}}, "param_groups": [{"lr": 1e-3}]},
    )
    model, report = PointMAE.from_pretrained(path, num_classes=15, output_loading_info=True)
    head = names(layouts.point_mae_finetuned(15), "cls_head_finetune.")
    assert report.kind == "point_mae_pretrain"
    assert report.missing_keys == ["cls_token", "cls_pos", *head]
    assert report.unexpected_keys == [
        "mask_token",
        *names(layout, "decoder_pos_embed."),
        *names(layout, "MAE_decoder."),
        "increase_dim.0.weight",
        "increase_dim.0.bias",
    ]
    assert report.ignored_keys == []
    encoder_keys = names(layout, "MAE_encoder.")
    assert len(report.loaded_keys) == len(encoder_keys) == 209 - 1 - 4 - 4 * 11 - 2 - 2
    compared = assert_loaded(model, state, lambda name: name.removeprefix("MAE_encoder."))
    assert compared == len(encoder_keys)
    assert model.training  # like any freshly built nn.Module


def test_point_bert_pretrain_file_loads_with_the_expected_report(tmp_path):
    layout = layouts.point_bert_pretrain_transformer_q()
    state = layouts.random_state(layout, seed=2)
    # The released file holds more than transformer_q: stand-ins for its momentum encoder and
    # dVAE entries check that everything outside transformer_q is ignored.
    others = {
        "transformer_k.cls_token": torch.randn(1, 1, 384),
        "dvae.encoder.first_conv.0.weight": torch.randn(128, 3, 1),
    }
    path = save(tmp_path, {**state, **others})
    model, report = PointBERT.from_pretrained(path, num_classes=40, output_loading_info=True)
    assert report.kind == "point_bert_pretrain"
    assert report.missing_keys == names(layouts.point_bert_finetuned(40), "cls_head_finetune.")
    assert report.unexpected_keys == ["mask_token", "lm_head.weight", "lm_head.bias"]
    assert report.ignored_keys == [
        *names(layout, "transformer_q.cls_head."),
        "transformer_k.cls_token",
        "dvae.encoder.first_conv.0.weight",
    ]
    compared = assert_loaded(model, state, lambda name: name.removeprefix("transformer_q."))
    assert compared == 167 - 3 - 4  # all but mask_token, lm_head (2) and cls_head (4)
    assert torch.equal(model.cls_token, state["transformer_q.cls_token"])


@pytest.mark.parametrize(
    ("model_class", "layout", "num_classes"),
    [
        (PointMAE, layouts.point_mae_finetuned(15), 15),
        (PointBERT, layouts.point_bert_finetuned(40), 40),
    ],
    ids=["point_mae", "point_bert"],
)
def test_fine_tuned_files_load_as_they_are(model_class, layout, num_classes):
    state = layouts.random_state(layout, seed=3)
    # the dict as torch.load returns it (files are covered above; 90 MB less disk traffic)
    checkpoint = {"base_model": {"module." + name: tensor for name, tensor in state.items()}}
    model, report = model_class.from_pretrained(checkpoint, output_loading_info=True)
    assert report.kind == f"{model_class.checkpoint_family}_finetuned"
    assert (report.missing_keys, report.unexpected_keys, report.ignored_keys) == ([], [], [])
    assert model.config.num_classes == num_classes  # taken from the checkpoint's head
    assert assert_loaded(model, state) == len(layout)


# --- errors and policy (tiny models) ----------------------------------------------------------
def tiny_pretrain_state(**overrides):
    torch.manual_seed(0)
    return PointMAEPretrainer(tiny(**overrides)).state_dict()


def test_shape_mismatch_names_the_tensor_and_both_shapes():
    source = PointMAE(tiny()).state_dict()
    with pytest.raises(
        CheckpointError,
        match=r"cls_head_finetune\.8\.weight: checkpoint \(7, 64\), model \(3, 64\)",
    ):
        PointMAE.from_pretrained({"base_model": source}, num_classes=3, config=tiny())
    with pytest.raises(
        CheckpointError,
        match=r"blocks\.blocks\.0\.attn\.qkv\.weight: checkpoint \(288, 96\), model \(144, 48\)",
    ):
        PointMAE.from_pretrained(tiny_pretrain_state(), config=tiny(embed_dim=48))


def test_a_head_of_another_class_count_says_how_to_start_a_new_one():
    source = PointMAE(tiny()).state_dict()  # fine-tuned for 7 classes
    with pytest.raises(CheckpointError, match=r"only the classification head differs.*drop_head"):
        PointMAE.from_pretrained({"base_model": source}, num_classes=3, config=tiny())


def test_drop_head_loads_a_fine_tuned_encoder_under_a_new_head():
    torch.manual_seed(0)
    fine_tuned = PointMAE(tiny()).state_dict()  # 7 classes
    torch.manual_seed(1)
    model, report = PointMAE.from_pretrained(
        {"base_model": fine_tuned}, num_classes=3, config=tiny(), drop_head=True,
        output_loading_info=True,
    )  # fmt: skip
    head = [name for name in fine_tuned if name.startswith("cls_head_finetune.")]
    assert head
    assert report.ignored_keys == head
    assert report.missing_keys == [
        n for n in model.state_dict() if n.startswith("cls_head_finetune.")
    ]
    assert report.unexpected_keys == []
    assert model.config.num_classes == 3
    encoder = {name: t for name, t in fine_tuned.items() if name not in head}
    assert assert_loaded(model, encoder) == len(encoder)  # every encoder tensor, exactly
    torch.manual_seed(1)
    assert torch.equal(  # the head keeps its fresh initialisation
        model.cls_head_finetune[0].weight,
        PointMAE(tiny().replace(num_classes=3)).cls_head_finetune[0].weight,
    )


def test_nothing_is_copied_when_a_check_fails():
    model = PointMAE(tiny())
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    state = tiny_pretrain_state()
    del state["MAE_encoder.norm.weight"]
    with pytest.raises(
        CheckpointError, match=r"missing keys not expected for point_mae_pretrain: norm\.weight"
    ):
        load_pretrained(model, state)
    assert all(torch.equal(before[name], t) for name, t in model.state_dict().items())


def test_strict_false_warns_and_reports_instead():
    model = PointMAE(tiny())
    state = tiny_pretrain_state()
    del state["MAE_encoder.norm.weight"]
    state["MAE_encoder.extra.weight"] = torch.zeros(3)
    with pytest.warns(UserWarning, match=r"norm\.weight.*extra\.weight"):
        report = load_pretrained(model, state, strict=False)
    assert "norm.weight" in report.missing_keys
    assert "extra.weight" in report.unexpected_keys
    assert torch.equal(model.norm.bias, state["MAE_encoder.norm.bias"])


def test_unexpected_keys_outside_the_expected_list_are_an_error():
    state = tiny_pretrain_state()
    state["MAE_encoder.blocks.blocks.7.norm1.weight"] = torch.ones(96)
    with pytest.raises(CheckpointError, match=r"unexpected keys not expected.*blocks\.blocks\.7"):
        load_pretrained(PointMAE(tiny()), state)


def test_the_wrong_family_is_refused_with_a_pointer_to_the_right_class():
    state = tiny_pretrain_state()
    with pytest.raises(CheckpointError, match="point_mae_pretrain checkpoint; PointBERT loads"):
        PointBERT.from_pretrained(state, num_classes=3, config=tiny(patch_dim=64))
    bert_state = {
        "transformer_q." + k: v for k, v in PointBERT(tiny(patch_dim=64)).state_dict().items()
    }
    with pytest.raises(CheckpointError, match=r"Point-BERT \(PointBERT\) checkpoint"):
        load_pretrained(PointMAE(tiny()), bert_state)


def test_unknown_layouts_are_refused_clearly():
    with pytest.raises(
        CheckpointError, match=r"unrecognised checkpoint layout \(first keys: fc\.weight"
    ):
        detect_checkpoint_kind({"fc.weight": torch.ones(2, 2)})
    with pytest.raises(CheckpointError, match="entry 'epoch' is a int, not a tensor"):
        read_checkpoint({"epoch": 3, "norm.weight": torch.ones(2)})
    with pytest.raises(CheckpointError, match="must be a checkpoint path or a dict, got a list"):
        read_checkpoint([torch.ones(2)])


def test_pretrain_files_need_num_classes():
    with pytest.raises(
        ValueError, match="num_classes is required: a point_mae_pretrain checkpoint"
    ):
        PointMAE.from_pretrained(tiny_pretrain_state())


def test_weights_only_refuses_pickled_objects_unless_told(tmp_path):
    state = tiny_pretrain_state()
    path = save(tmp_path, state, args=argparse.Namespace(lr=1e-3))
    with pytest.raises(CheckpointError, match="pass weights_only=False"):
        PointMAE.from_pretrained(path, config=tiny())
    model = PointMAE.from_pretrained(path, config=tiny(), weights_only=False)
    assert torch.equal(model.norm.weight, state["MAE_encoder.norm.weight"])


def test_missing_and_corrupt_files():
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        read_checkpoint("does/not/exist.pth")


def test_corrupt_file_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"broken\.pth cannot be read"):
        read_checkpoint(path)


def test_config_overrides_and_explicit_config_reach_the_model():
    model = PointMAE.from_pretrained(
        tiny_pretrain_state(), num_classes=4, config=tiny(), num_groups=16, group_size=8
    )
    assert (model.config.num_classes, model.config.num_groups, model.config.group_size) == (
        4,
        16,
        8,
    )
    assert model.config.embed_dim == 96


def test_a_bare_encoder_takes_the_encoder_part_of_any_file():
    state = tiny_pretrain_state()
    encoder = PointTransformerEncoder(tiny(), cls_token=False)
    report = load_pretrained(encoder, state)
    assert report.missing_keys == []
    assert set(report.unexpected_keys) >= {"mask_token", "increase_dim.0.weight"}
    with_cls = PointTransformerEncoder(tiny())
    finetuned = PointMAE(tiny()).state_dict()
    report = load_pretrained(with_cls, finetuned)
    assert report.missing_keys == []
    assert all(name.startswith("cls_head_finetune.") for name in report.unexpected_keys)
    assert torch.equal(with_cls.cls_pos, finetuned["cls_pos"])


def test_expected_lists_are_the_spec():
    assert EXPECTED_MISSING["point_mae_pretrain"] == ("cls_token", "cls_pos", "cls_head_finetune.*")
    assert EXPECTED_UNEXPECTED["point_bert_pretrain"] == ("mask_token", "lm_head.*")
    assert (
        EXPECTED_MISSING["point_mae_finetuned"] == EXPECTED_UNEXPECTED["point_bert_finetuned"] == ()
    )


def test_read_checkpoint_strips_module_and_base_model_prefixes():
    state = read_checkpoint({"base_model": {"module.base_model.norm.weight": torch.ones(1)}})
    assert list(state) == ["norm.weight"]
    with pytest.raises(CheckpointError, match=r"both become 'norm\.weight'"):
        read_checkpoint({"module.norm.weight": torch.ones(1), "norm.weight": torch.ones(1)})

"""freeze(): glob patterns, returned names, tied parameters and helpful errors."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from peft_core import freeze, trainable_parameter_names


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.query = nn.Linear(4, 4)
        self.value = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.ModuleList([Block(), Block()])
        self.classifier = nn.Linear(4, 2)


class TiedLM(nn.Module):
    """A language model whose output projection shares the embedding matrix."""

    def __init__(self, vocab: int = 10, dim: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.body = nn.Linear(dim, dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.embed.weight


def _requires_grad(model: nn.Module) -> dict[str, bool]:
    return {name: p.requires_grad for name, p in model.named_parameters()}


def test_single_string_pattern():
    model = Encoder()
    assert freeze(model, "classifier.*") == ["classifier.weight", "classifier.bias"]
    assert trainable_parameter_names(model) == ["classifier.weight", "classifier.bias"]


def test_glob_patterns_select_exactly_the_matching_parameters_in_model_order():
    model = Encoder()
    returned = freeze(model, trainable=["*.query.weight", "classifier.*", "layer.1.norm.?ias"])
    expected = [
        "layer.0.query.weight",
        "layer.1.query.weight",
        "layer.1.norm.bias",
        "classifier.weight",
        "classifier.bias",
    ]
    assert returned == expected
    flags = _requires_grad(model)
    assert {name for name, flag in flags.items() if flag} == set(expected)
    assert trainable_parameter_names(model) == expected


def test_matching_is_case_sensitive_and_anchored():
    model = Encoder()
    # "query.weight" without a leading "*" must not match "layer.0.query.weight".
    with pytest.raises(ValueError, match=r"query\.weight"):
        freeze(model, ["query.weight"])
    with pytest.raises(ValueError, match="Classifier"):
        freeze(model, ["Classifier.*"])


def test_freeze_refreezes_previously_trainable_parameters():
    model = Encoder()
    freeze(model, ["classifier.*"])
    assert freeze(model, ["layer.0.value.*"]) == ["layer.0.value.weight", "layer.0.value.bias"]
    assert not model.classifier.weight.requires_grad


def test_empty_pattern_list_freezes_everything():
    model = Encoder()
    assert freeze(model, []) == []
    assert not any(p.requires_grad for p in model.parameters())
    assert trainable_parameter_names(model) == []


def test_duplicate_and_overlapping_patterns_list_each_parameter_once():
    model = Encoder()
    returned = freeze(model, ["classifier.*", "classifier.weight", "*.weight"])
    assert len(returned) == len(set(returned))
    assert "classifier.weight" in returned
    assert "classifier.bias" in returned


@pytest.mark.parametrize("pattern", ["lm_head.weight", "embed.weight", "lm_head.*", "embed.*"])
def test_tied_parameters_train_when_either_name_matches_and_are_listed_once(pattern):
    model = TiedLM()
    assert model.lm_head.weight is model.embed.weight
    returned = freeze(model, [pattern])
    assert model.embed.weight.requires_grad
    assert model.lm_head.weight.requires_grad
    assert not model.body.weight.requires_grad
    # named_parameters() reports the shared tensor under its first name only.
    assert returned == ["embed.weight"]
    assert trainable_parameter_names(model) == ["embed.weight"]


def test_tied_parameters_frozen_when_neither_name_matches():
    model = TiedLM()
    assert freeze(model, ["body.*"]) == ["body.weight", "body.bias"]
    assert not model.embed.weight.requires_grad
    assert not model.lm_head.weight.requires_grad


def test_unmatched_pattern_lists_close_matches():
    model = Encoder()
    with pytest.raises(ValueError, match="match no parameter") as info:
        freeze(model, ["classifier.*", "layer.0.qeury.weight"])
    message = str(info.value)
    assert "'layer.0.qeury.weight'" in message
    assert "close matches" in message
    assert "layer.0.query.weight" in message
    assert "Encoder" in message
    # Only the failing pattern is reported.
    assert "'classifier.*'" not in message


def test_unmatched_glob_with_typo_suggests_the_intended_parameter():
    model = Encoder()
    with pytest.raises(ValueError, match=re.escape("classifier.")) as info:
        freeze(model, ["classifer.*"])
    assert "'classifer.*'" in str(info.value)


def test_unmatched_pattern_lists_every_failure():
    model = Encoder()
    with pytest.raises(ValueError, match="nothing_like_this") as info:
        freeze(model, ["nothing_like_this", "classifier.wieght"])
    message = str(info.value)
    assert "classifier.wieght" in message
    assert "classifier.weight" in message


def test_failed_freeze_leaves_model_untouched():
    model = Encoder()
    before = _requires_grad(model)
    with pytest.raises(ValueError, match=r"no\.such\.param"):
        freeze(model, ["classifier.*", "no.such.param"])
    assert _requires_grad(model) == before
    assert all(before.values())


@pytest.mark.parametrize(
    "bad", [[3], ["classifier.*", None], [re.compile("classifier")], [b"classifier.*"]]
)
def test_non_string_pattern_raises_type_error(bad):
    model = Encoder()
    with pytest.raises(TypeError, match="glob patterns as strings"):
        freeze(model, bad)


def test_trainable_parameter_names_reflects_manual_changes():
    model = Encoder()
    freeze(model, [])
    model.layer[1].value.bias.requires_grad_(True)
    assert trainable_parameter_names(model) == ["layer.1.value.bias"]


def test_freeze_does_not_change_values():
    torch.manual_seed(0)
    model = Encoder()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    freeze(model, ["classifier.*"])
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_matching_a_quantized_parameter_is_refused_naming_it_and_changes_nothing():
    # An integer parameter (a bitsandbytes 4-bit weight is uint8) cannot require gradients; torch
    # raised mid-loop without naming it, after freezing the parameters before it.
    model = Encoder()
    packed = torch.zeros(8, 1, dtype=torch.uint8)
    model.layer[1].value.weight = nn.Parameter(packed, requires_grad=False)
    before = _requires_grad(model)
    with pytest.raises(ValueError, match=r"layer\.1\.value\.weight \(torch\.uint8") as info:
        freeze(model, ["*.weight"])
    assert "layer.0.value.weight" not in str(info.value)
    assert _requires_grad(model) == before
    freeze(model, ["*.norm.weight"])  # a narrower pattern works


@pytest.mark.parametrize("bad", [None, 3])
def test_trainable_that_is_not_a_list_raises_type_error(bad):
    with pytest.raises(TypeError, match=r"freeze\(trainable=\.\.\.\) expects a glob pattern"):
        freeze(Encoder(), bad)

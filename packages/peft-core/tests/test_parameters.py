"""Parameter counting and the Hugging Face ``peft`` report line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from peft_core import (
    count_parameters,
    format_trainable_parameters,
    freeze,
    print_trainable_parameters,
)


class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 16)  # 1,600 (shared with lm_head.weight)
        self.lm_head = nn.Linear(16, 100)  # weight tied; bias: 100
        self.lm_head.weight = self.embed.weight
        self.adapter = nn.Linear(16, 16)  # 256 + 16 = 272


class Params4bit(nn.Parameter):
    """Stand-in for bitsandbytes' packed 4-bit parameter: matched by class name, like peft does."""


def _hf_peft_report(model: nn.Module) -> str:
    """Hugging Face peft's ``get_nb_trainable_parameters`` + ``print_trainable_parameters``, by hand.

    peft (peft/peft_model.py, checked against 0.21) loops over ``named_parameters()`` (which skips
    tied duplicates), doubles 4-bit parameters times the storage item size, and prints
    ``f"trainable params: {trainable_params:,d} || all params: {all_param:,d} || trainable%: {100 * trainable_params / all_param:.4f}"``.
    """
    trainable_params = 0
    all_param = 0
    for _, param in model.named_parameters():
        num_params = param.numel()
        if param.__class__.__name__ == "Params4bit":
            if hasattr(param, "element_size"):  # peft >= 0.13; every tensor has element_size()
                num_bytes = param.element_size()
            elif not hasattr(param, "quant_storage"):
                num_bytes = 1
            else:
                num_bytes = param.quant_storage.itemsize
            num_params = num_params * 2 * num_bytes
        all_param += num_params
        if param.requires_grad:
            trainable_params += num_params
    return (
        f"trainable params: {trainable_params:,d} || all params: {all_param:,d} || "
        f"trainable%: {100 * trainable_params / all_param:.4f}"
    )


def test_count_parameters_simple_linear():
    layer = nn.Linear(3, 2)
    assert count_parameters(layer) == (8, 8)
    layer.bias.requires_grad_(False)
    assert count_parameters(layer) == (6, 8)
    layer.weight.requires_grad_(False)
    assert count_parameters(layer) == (0, 8)


def test_count_parameters_counts_tied_parameters_once():
    model = TiedLM()
    # 1,600 shared + 100 head bias + 272 adapter; not 3,572 (the shared matrix twice).
    assert count_parameters(model) == (1972, 1972)
    freeze(model, ["adapter.*"])
    assert count_parameters(model) == (272, 1972)
    freeze(model, ["lm_head.weight"])
    assert count_parameters(model) == (1600, 1972)


def test_count_parameters_ignores_buffers():
    model = nn.BatchNorm1d(5)  # weight + bias = 10 parameters; running stats are buffers
    assert count_parameters(model) == (10, 10)


def test_count_parameters_of_empty_model():
    assert count_parameters(nn.Sequential()) == (0, 0)


def test_print_trainable_parameters_exact_hand_computed_line(capsys):
    model = TiedLM()
    freeze(model, ["adapter.*"])
    print_trainable_parameters(model)
    out = capsys.readouterr().out
    # 272 / 1972 = 0.137931... -> 13.7931 with four decimals.
    expected = "trainable params: 272 || all params: 1,972 || trainable%: 13.7931\n"
    assert out == expected
    assert out == _hf_peft_report(model) + "\n"


def test_print_trainable_parameters_thousands_separators_and_rounding(capsys):
    model = nn.Sequential(nn.Linear(1000, 1000), nn.Linear(1000, 3))  # 1,001,000 + 3,003
    freeze(model, ["1.*"])
    print_trainable_parameters(model)
    out = capsys.readouterr().out
    # 3003 / 1004003 * 100 = 0.29910269... -> "0.2991"
    assert out == "trainable params: 3,003 || all params: 1,004,003 || trainable%: 0.2991\n"
    assert out == _hf_peft_report(model) + "\n"


@pytest.mark.parametrize(
    ("trainable", "percent"),
    [(["*"], "100.0000"), (["0.bias"], "4.1667"), (["1.weight"], "12.5000"), (["2.*"], "66.6667")],
)
def test_format_matches_hf_peft_for_several_selections(trainable, percent):
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 12))  # 12 + 12 + 48 = 72
    freeze(model, trainable)
    line = format_trainable_parameters(model)
    assert line == _hf_peft_report(model)
    assert line.endswith(f"trainable%: {percent}")
    assert "all params: 72 ||" in line


def test_format_with_nothing_trainable_and_empty_model():
    model = nn.Linear(2, 2)
    freeze(model, [])
    assert (
        format_trainable_parameters(model)
        == "trainable params: 0 || all params: 6 || trainable%: 0.0000"
    )
    # peft would divide by zero here; we report 0% instead of crashing.
    empty = nn.Sequential()
    assert (
        format_trainable_parameters(empty)
        == "trainable params: 0 || all params: 0 || trainable%: 0.0000"
    )


@pytest.mark.parametrize(
    ("storage", "factor"), [(None, 2), (torch.uint8, 2), (torch.bfloat16, 4), (torch.float32, 8)]
)
def test_packed_4bit_parameters_count_logical_weights(storage, factor):
    # bitsandbytes stores two 4-bit weights per byte, in a tensor of dtype ``quant_storage``.
    model = nn.Module()
    data = torch.zeros(10, dtype=storage or torch.uint8)
    packed = Params4bit(data, requires_grad=False)
    if storage is not None:
        packed.quant_storage = storage
    model.packed = packed
    model.head = nn.Linear(2, 1)  # 3 trainable
    assert count_parameters(model) == (3, 10 * factor + 3)
    assert format_trainable_parameters(model) == _hf_peft_report(model)

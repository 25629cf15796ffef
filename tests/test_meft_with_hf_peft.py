"""MEFT meets Hugging Face peft (installed here through deft): a peft-wrapped model is refused
with the way to convert it, and nothing about the wrapped model changes."""

from __future__ import annotations

import pytest
from tiny_models import tiny_bert

from meft import MeftConfig, get_meft_model


def test_a_hugging_face_peft_model_is_refused_with_the_way_to_convert_it():
    peft = pytest.importorskip("peft")
    wrapped = peft.get_peft_model(
        tiny_bert(), peft.LoraConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS")
    )
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    with pytest.raises(ValueError, match=r"not a Hugging Face peft .*merge_and_unload\(\) first"):
        get_meft_model(wrapped, MeftConfig())
    assert trainable == {n for n, p in wrapped.named_parameters() if p.requires_grad}
    merged = get_meft_model(wrapped.merge_and_unload(), MeftConfig())
    assert merged.classifier.weight.requires_grad

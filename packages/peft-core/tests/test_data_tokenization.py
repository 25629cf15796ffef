"""Tokenizing into TokenizedDataset and batching it: a tiny offline tokenizer, real MiniLM when slow."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from peft_core.assets import offline_model_path
from peft_core.data import DynamicPaddingCollator, Example, TextClassificationData, TokenizedDataset

transformers = pytest.importorskip("transformers", reason="tokenization needs the text extra")

# [PAD] is deliberately not id 0, so a padding bug that writes zeros cannot pass unnoticed.
VOCAB = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "a", "good", "bad", "movie", "very", "is", "it", "not"]
ID = {token: i for i, token in enumerate(VOCAB)}


def _tiny_tokenizer(token_type_ids: bool = False) -> Any:
    """A BERT-shaped word-level tokenizer built in memory: [CLS] a [SEP] (b [SEP])."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    backend = Tokenizer(models.WordLevel(ID, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ID["[CLS]"]), ("[SEP]", ID["[SEP]"])],
    )
    names = (
        ["input_ids", "token_type_ids", "attention_mask"]
        if token_type_ids
        else ["input_ids", "attention_mask"]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        model_input_names=names,
    )


def _ids(text: str) -> list[int]:
    return [ID["[CLS]"], *(ID.get(word, 0) for word in text.split()), ID["[SEP]"]]


EXAMPLES = [Example("a good movie", 1), Example("bad", 0), Example("it is not very good movie", 1)]


def test_items_are_unpadded_dicts_of_ids_mask_and_label() -> None:
    dataset = TokenizedDataset(EXAMPLES, _tiny_tokenizer(), max_length=32)
    assert len(dataset) == 3
    assert dataset[0] == {"input_ids": _ids("a good movie"), "attention_mask": [1] * 5, "labels": 1}
    assert dataset[1] == {"input_ids": _ids("bad"), "attention_mask": [1, 1, 1], "labels": 0}
    assert dataset.lengths == [5, 3, 8]  # no padding at tokenization time
    assert all(isinstance(token, int) for token in dataset[2]["input_ids"])


def test_unknown_words_map_to_unk() -> None:
    dataset = TokenizedDataset([Example("a dreadful movie", 0)], _tiny_tokenizer())
    assert dataset[0]["input_ids"] == [ID["[CLS]"], ID["a"], ID["[UNK]"], ID["movie"], ID["[SEP]"]]


def test_truncation_keeps_the_special_tokens() -> None:
    dataset = TokenizedDataset(EXAMPLES, _tiny_tokenizer(), max_length=4)
    assert dataset.lengths == [4, 3, 4]
    assert dataset[2]["input_ids"] == [ID["[CLS]"], ID["it"], ID["is"], ID["[SEP]"]]
    assert dataset[2]["attention_mask"] == [1, 1, 1, 1]


def test_pairs_get_token_type_ids() -> None:
    examples = [Example("a movie", 0, text_pair="very bad"), Example("good", 1, text_pair="it is")]
    dataset = TokenizedDataset(examples, _tiny_tokenizer(token_type_ids=True), max_length=16)
    first = dataset[0]
    assert first["input_ids"] == [1, ID["a"], ID["movie"], 2, ID["very"], ID["bad"], 2]
    assert first["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]
    assert first["attention_mask"] == [1] * 7
    assert set(first) == {"input_ids", "token_type_ids", "attention_mask", "labels"}


def test_batched_tokenization_matches_one_batch() -> None:
    tokenizer = _tiny_tokenizer()
    whole = TokenizedDataset(EXAMPLES * 5, tokenizer)
    pieces = TokenizedDataset(EXAMPLES * 5, tokenizer, batch_size=2)
    assert [whole[i] for i in range(15)] == [pieces[i] for i in range(15)]


def test_items_are_copies() -> None:
    dataset = TokenizedDataset(EXAMPLES, _tiny_tokenizer())
    dataset[0]["extra"] = 1
    assert "extra" not in dataset[0]


def test_empty_split_gives_an_empty_dataset() -> None:
    assert len(TokenizedDataset([], _tiny_tokenizer())) == 0


@pytest.mark.parametrize("max_length", [0, -3, 2.5, True])
def test_bad_max_length(max_length: Any) -> None:
    with pytest.raises(ValueError, match="max_length must be a positive int or None"):
        TokenizedDataset(EXAMPLES, _tiny_tokenizer(), max_length=max_length)


def test_mixed_pairs_and_singles_are_refused() -> None:
    with pytest.raises(ValueError, match="mix single texts and text pairs"):
        TokenizedDataset([Example("a", 0), Example("a", 0, text_pair="b")], _tiny_tokenizer())


def test_data_tokenize_picks_a_split() -> None:
    data = TextClassificationData({"train": EXAMPLES, "test": EXAMPLES[:1]}, ["neg", "pos"])
    test = data.tokenize(_tiny_tokenizer(), split="test", max_length=3)
    assert len(test) == 1
    assert test[0]["input_ids"] == [1, ID["a"], 2]
    with pytest.raises(KeyError, match="no split 'validation'"):
        data.tokenize(_tiny_tokenizer(), split="validation")


def test_collator_from_tokenizer_pads_with_its_pad_id() -> None:
    tokenizer = _tiny_tokenizer(token_type_ids=True)
    dataset = TokenizedDataset(EXAMPLES, tokenizer, max_length=32)
    collate = DynamicPaddingCollator.from_tokenizer(tokenizer, pad_to_multiple_of=8)
    assert collate.pad_token_id == ID["[PAD]"] == 3
    batch = collate([dataset[0], dataset[1]])
    pad = ID["[PAD]"]
    assert batch["input_ids"].tolist() == [
        _ids("a good movie") + [pad] * 3,
        _ids("bad") + [pad] * 5,
    ]
    assert batch["attention_mask"].tolist() == [[1] * 5 + [0] * 3, [1] * 3 + [0] * 5]
    assert batch["token_type_ids"].tolist() == [[0] * 8, [0] * 8]
    assert batch["labels"].tolist() == [1, 0]
    assert {value.dtype for value in batch.values()} == {torch.long}


def test_dataloader_batches_to_each_batch_longest() -> None:
    tokenizer = _tiny_tokenizer()
    dataset = TokenizedDataset(EXAMPLES, tokenizer)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=2, collate_fn=DynamicPaddingCollator.from_tokenizer(tokenizer)
    )
    assert [tuple(batch["input_ids"].shape) for batch in loader] == [(2, 5), (1, 8)]


# --- the real MiniLM tokenizer (installed by the integration session) ---------------------------


@pytest.mark.slow
def test_minilm_tokenizes_and_collates() -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(offline_model_path())
    examples = [
        Example("The Rock is destined to be the 21st Century's new Conan", 1),
        Example("Dull.", 0),
    ]
    dataset = TokenizedDataset(examples, tokenizer, max_length=8)
    first, second = dataset[0], dataset[1]
    assert len(first["input_ids"]) == 8  # truncated
    assert first["input_ids"][0] == tokenizer.cls_token_id == 101
    assert first["input_ids"][-1] == tokenizer.sep_token_id == 102
    assert second["input_ids"] == tokenizer("Dull.")["input_ids"]
    assert set(first) == {"input_ids", "token_type_ids", "attention_mask", "labels"}

    collate = DynamicPaddingCollator.from_tokenizer(tokenizer, pad_to_multiple_of=8)
    batch = collate([first, second])
    n = len(second["input_ids"])
    assert batch["input_ids"].shape == (2, 8)
    assert batch["input_ids"][1, n:].tolist() == [tokenizer.pad_token_id] * (8 - n)
    assert batch["attention_mask"].sum(dim=1).tolist() == [8, n]
    assert batch["labels"].tolist() == [1, 0]


@pytest.mark.slow
def test_minilm_on_the_real_default_task() -> None:
    from peft_core.data import load_text_classification

    tokenizer = transformers.AutoTokenizer.from_pretrained(offline_model_path())
    data = load_text_classification("rotten_tomatoes", seed=0)
    validation = data.tokenize(tokenizer, split="validation", max_length=64)
    assert len(validation) == len(data["validation"]) == 1_007
    assert max(validation.lengths) <= 64
    assert [validation[i]["labels"] for i in range(10)] == [
        ex.label for ex in data["validation"][:10]
    ]
    batch = DynamicPaddingCollator.from_tokenizer(tokenizer)([validation[i] for i in range(32)])
    assert batch["input_ids"].shape[1] == max(validation.lengths[:32])

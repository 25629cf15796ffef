"""Small models, data and a reusable test mixin for the method packages' test suites."""

from peft_core.testing.mixins import TrainableRoundTripTests
from peft_core.testing.models import TinyClassifier, TokenParityDataset, collate_token_batches

__all__ = [
    "TinyClassifier",
    "TokenParityDataset",
    "TrainableRoundTripTests",
    "collate_token_batches",
]

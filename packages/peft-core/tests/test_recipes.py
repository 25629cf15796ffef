"""The recipe's training subset is a seeded random sample, not the head of a sorted corpus."""

from __future__ import annotations

from peft_core.recipes import random_subset


def test_random_subset_is_balanced_on_a_sorted_corpus_and_seeded():
    labels = [1] * 500 + [0] * 500  # a corpus stored sorted by label
    subset = random_subset(labels, 200, seed=0)
    positives = sum(labels[i] for i in subset.indices)
    assert 70 < positives < 130
    assert subset.indices == random_subset(labels, 200, seed=0).indices
    assert subset.indices != random_subset(labels, 200, seed=1).indices
    assert len(set(subset.indices)) == 200


def test_asking_for_more_than_there_is_returns_everything():
    data = list(range(10))
    assert random_subset(data, 50, seed=0) is data

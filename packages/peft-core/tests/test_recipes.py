"""The recipe's training subset is a seeded random sample, not the head of a sorted corpus."""

from __future__ import annotations

import argparse

from peft_core.recipes import earlier_run_refusal, random_subset


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


def test_an_earlier_runs_checkpoints_are_refused_unless_resumed_or_overwritten(tmp_path):
    def args(**flags):
        return argparse.Namespace(output_dir=tmp_path, resume=False, overwrite=False, **flags)

    assert earlier_run_refusal(args()) is None  # an empty folder
    (tmp_path / "b" / "checkpoints" / "step-00000007").mkdir(parents=True)
    (tmp_path / "b" / "checkpoints" / "step-00000007" / "trainer_state.json").write_text("{}")
    assert earlier_run_refusal(args()) is None  # not the folder asked about
    refusal = earlier_run_refusal(args(), tmp_path / "a", tmp_path / "b")
    assert refusal is not None
    assert "(newest: step-00000007)" in refusal
    assert "--resume" in refusal
    assert "--overwrite" in refusal
    for flag in ("resume", "overwrite"):
        flagged = argparse.Namespace(
            output_dir=tmp_path, **{"resume": False, "overwrite": False, flag: True}
        )
        assert earlier_run_refusal(flagged, tmp_path / "b") is None

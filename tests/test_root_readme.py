"""The root README's example runs as written, and its resume claim holds: the same script
started again in the same folder resumes from its last checkpoint and ends where the first run
ended."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from peft_core.testing.readme import python_blocks

README = Path(__file__).parents[1] / "README.md"


def _run_readme(workdir: Path) -> dict:
    namespace: dict = {"__name__": "__readme__"}
    previous = Path.cwd()
    os.chdir(workdir)
    try:
        for index, block in enumerate(python_blocks(README)):
            exec(compile(block, f"README.md[block {index}]", "exec"), namespace)
    finally:
        os.chdir(previous)
    return namespace


def test_the_readme_run_started_again_resumes_and_ends_with_the_same_weights(tmp_path):
    first = _run_readme(tmp_path)
    assert first["result"]["resumed_from_step"] is None
    second = _run_readme(tmp_path)  # a fresh process would build the same seeded model
    assert second["result"]["resumed_from_step"] == 40  # the newest of save_every=20's checkpoints
    assert second["result"]["eval_accuracy"] == first["result"]["eval_accuracy"]
    for (name, ours), (_, theirs) in zip(
        first["model"].state_dict().items(), second["model"].state_dict().items(), strict=True
    ):
        assert torch.equal(ours, theirs), name

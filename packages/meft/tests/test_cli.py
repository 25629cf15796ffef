"""`meft train` end to end on the embedded defaults (real MiniLM, Rotten-Tomatoes): slow."""

from __future__ import annotations

import json

import pytest

from meft.cli import main


def test_help_lists_the_train_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--variant",
        "--stream-dtype",
        "--num-reversible-layers",
        "--dataset",
        "--resume",
    ):
        assert option in out


@pytest.mark.slow
def test_meft_train_writes_a_result(tmp_path):
    output = tmp_path / "run"
    assert (
        main(["train", "--max-train", "96", "--batch-size", "16", "--output-dir", str(output)]) == 0
    )
    result = json.loads((output / "result.json").read_text())
    assert result["config"]["variant"] == "meft1"
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert result["activation_ratio_to_full_fine_tuning"] < 0.5
    assert (output / "final" / "adapter_model.safetensors").is_file()

"""A run killed with SIGKILL resumes from its last checkpoint and ends bit-identical, also with
data workers and augmentation that draws from the global RNGs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).parent / "scripts" / "train_tiny.py"


def _train(output_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), "--output-dir", str(output_dir), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def _final_weights(output_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(output_dir / "final" / "adapter_model.safetensors"))


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    # Dropout on (RNG state matters), accumulation 2 (position inside the data matters), 48
    # examples / batch 8 = 6 micro-batches = 3 steps per epoch, so the kill at step 7 lands in
    # epoch 2 while the last checkpoint (step 4) is in epoch 1.
    common = ["--dropout", "0.2", "--accumulation", "2", "--save-every", "4", "--epochs", "4"]
    reference = _train(tmp_path / "reference", *common)
    assert reference.returncode == 0, reference.stderr

    killed = _train(tmp_path / "interrupted", *common, "--kill-at-step", "7")
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    checkpoints = sorted(p.name for p in (tmp_path / "interrupted" / "checkpoints").iterdir())
    assert checkpoints == ["step-00000004"]
    assert not (tmp_path / "interrupted" / "final").exists()

    resumed = _train(
        tmp_path / "interrupted", *common, "--result-json", str(tmp_path / "result.json")
    )
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["resumed_from_step"] == 4
    assert result["global_step"] == 12
    # the time of the 4 checkpointed steps of the killed segment is counted in the total
    assert result["train_seconds"] > result["train_seconds_this_segment"] > 0

    expected, actual = (
        _final_weights(tmp_path / "reference"),
        _final_weights(tmp_path / "interrupted"),
    )
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), f"{name} differs after resume"

    # The log has one train record per step, with the killed run's records past step 4 replaced.
    reference_log = _train_records(tmp_path / "reference")
    resumed_log = _train_records(tmp_path / "interrupted")
    assert [r["step"] for r in resumed_log] == list(range(1, 13))
    assert [r["loss"] for r in resumed_log] == [r["loss"] for r in reference_log]


def test_a_resumed_log_and_best_weights_equal_the_uninterrupted_ones(tmp_path):
    # 3 steps per epoch and a checkpoint every 3: each checkpoint is written at an epoch's last
    # step, before that epoch's evaluation, which the killed run had logged already. Logging every
    # 2 steps, the record at step 4 averages steps 3 and 4, across the checkpoint at 3.
    common = ["--save-every", "3", "--log-every", "2", "--evaluate", "--epochs", "4"]
    common += ["--dataset-size", "24"]
    reference = _train(tmp_path / "reference", *common)
    assert reference.returncode == 0, reference.stderr
    killed = _train(tmp_path / "interrupted", *common, "--kill-at-step", "4")
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    resumed = _train(tmp_path / "interrupted", *common)
    assert resumed.returncode == 0, resumed.stderr

    def log_without_times(output_dir: Path) -> list[dict]:
        lines = (output_dir / "log.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "time"} for line in lines]

    expected = log_without_times(tmp_path / "reference")
    assert [(r["type"], r["step"]) for r in expected] == [
        ("train", 2), ("eval", 3), ("train", 4), ("train", 6), ("eval", 6),
        ("train", 8), ("eval", 9), ("train", 10), ("train", 12), ("eval", 12),
    ]  # fmt: skip
    assert log_without_times(tmp_path / "interrupted") == expected
    for folder in ("best", "final"):
        expected_weights = load_file(
            str(tmp_path / "reference" / folder / "adapter_model.safetensors")
        )
        actual = load_file(str(tmp_path / "interrupted" / folder / "adapter_model.safetensors"))
        for name in expected_weights:
            assert torch.equal(expected_weights[name], actual[name]), f"{folder}/{name} differs"


def _train_records(output_dir: Path) -> list[dict]:
    lines = (output_dir / "log.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record["type"] == "train"]


def test_augmented_data_with_workers_resumes_exactly_and_matches_no_workers(tmp_path):
    # Augmentation draws from Python's, numpy's and torch's global RNGs inside __getitem__. The
    # resumed run restarts its two workers mid-epoch; it must still end where a run without
    # workers ends, because each example's draws depend only on (seed, epoch, index).
    common = ["--dropout", "0.2", "--accumulation", "2", "--save-every", "4", "--epochs", "3"]
    common += ["--augment"]
    reference = _train(tmp_path / "reference", *common)
    assert reference.returncode == 0, reference.stderr

    workers = [*common, "--num-workers", "2"]
    killed = _train(tmp_path / "interrupted", *workers, "--kill-at-step", "6")
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    resumed = _train(tmp_path / "interrupted", *workers)
    assert resumed.returncode == 0, resumed.stderr

    expected, actual = (
        _final_weights(tmp_path / "reference"),
        _final_weights(tmp_path / "interrupted"),
    )
    for name in expected:
        assert torch.equal(expected[name], actual[name]), f"{name} differs"
    reference_losses = [r["loss"] for r in _train_records(tmp_path / "reference")]
    assert [r["loss"] for r in _train_records(tmp_path / "interrupted")] == reference_losses

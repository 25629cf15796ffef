"""Every package installed side by side: the registry finds each method, versions are stamped."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest
import torch

import peft_core


def test_all_packages_import_together():
    import deft
    import meft
    import point_peft

    for module, distribution in ((meft, "meft"), (deft, "deft-peft"), (point_peft, "point-peft")):
        assert module.__version__ == metadata.version(distribution)


@pytest.mark.parametrize(
    ("module", "command"), [("meft", "meft"), ("deft", "deft"), ("point_peft", "point-peft")]
)
def test_python_dash_m_runs_each_command_line(module, command):
    # `python -m meft train ...` is how clusters without the scripts on PATH call us.
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {command} ")


def test_registry_discovers_installed_methods_through_entry_points():
    assert "meft" in peft_core.registered_methods()


def test_meft_model_saved_then_rebuilt_by_peft_core_load(tmp_path):
    from tiny_models import text_batch, tiny_bert

    from meft import MeftConfig, get_meft_model

    model = get_meft_model(tiny_bert(), MeftConfig(variant="meft3", stream_dtype="float64"))
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05)
    peft_core.save_trainable(model, tmp_path, model.meft_config)
    rebuilt = peft_core.load(tiny_bert(), tmp_path)
    assert rebuilt.meft_config == model.meft_config
    batch = {k: v for k, v in text_batch().items() if k != "labels"}
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(**batch).logits, model.eval()(**batch).logits)


@pytest.mark.parametrize("variant", ["meft1", "meft3"])
def test_meft_trains_in_the_peft_core_trainer_and_resumes_exactly(tmp_path, variant):
    """MEFT's reversible Function inside the core trainer: a resumed run equals an uninterrupted one."""
    from tiny_models import text_batch, tiny_bert

    from meft import MeftConfig, get_meft_model
    from peft_core import Trainer, TrainingArguments

    data = [{k: v[i] for k, v in text_batch(batch=16, length=8).items()} for i in range(16)]

    def run(output_dir, max_steps):
        torch.manual_seed(0)
        model = get_meft_model(
            tiny_bert(dropout=0.1), MeftConfig(variant=variant, stream_dtype="float64")
        )
        args = TrainingArguments(
            str(output_dir), max_steps=max_steps, per_device_batch_size=4, learning_rate=1e-2,
            save_every=2, progress_bar=False, eval_strategy="no", cpu=True, lr_schedule="constant",
        )  # fmt: skip
        collate = lambda rows: {k: torch.stack([r[k] for r in rows]) for k in rows[0]}  # noqa: E731
        Trainer(model, args, data, collate_fn=collate, method_config=model.meft_config).train()
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    uninterrupted = run(tmp_path / "a", 6)
    run(tmp_path / "b", 4)  # stops after step 4, leaving a checkpoint there...
    resumed = run(tmp_path / "b", 6)  # ...which this run resumes from
    for name in uninterrupted:
        assert torch.equal(uninterrupted[name], resumed[name]), name

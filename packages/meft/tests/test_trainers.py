"""MEFT inside the trainers users have: Hugging Face's Trainer, and DDP under torchrun (and
nn.DataParallel refused with a way out)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import image_batch, text_batch, timm_vit_with_loss, tiny_bert

from meft import MeftConfig, get_meft_model, unload

SCRIPT = Path(__file__).parent / "scripts" / "train_meft.py"


def test_hugging_face_trainer_trains_a_meft_model(tmp_path):
    from transformers import Trainer, TrainingArguments

    rows = text_batch(batch=16, length=8)
    data = [{k: v[i] for k, v in rows.items()} for i in range(16)]
    model = get_meft_model(tiny_bert(dropout=0.1), MeftConfig(variant="meft2"))
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-2,
        report_to=[], use_cpu=True, save_strategy="no", logging_steps=1, gradient_accumulation_steps=2,
    )  # fmt: skip
    result = Trainer(model=model, args=args, train_dataset=data).train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    changed = [
        n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])
    ]
    assert any("meft_adapters" in n for n in changed)
    assert any(n.startswith("classifier") for n in changed)


def _with_checkpointing_switched_on(host: str):
    if host == "timm":
        model = get_meft_model(timm_vit_with_loss(), MeftConfig())
        model.set_grad_checkpointing(True)  # checkpoints the first block: the whole stack
        return model, image_batch()
    model = get_meft_model(tiny_bert(), MeftConfig())
    model.activation_checkpointing_enable()  # what TrainingArguments(activation_checkpointing=True) does
    return model, text_batch()


@pytest.mark.parametrize(
    ("host", "message"),
    [("hugging-face", r"checkpointing is enabled on .* saves nothing"),
     ("timm", r"checkpointing is enabled on this VisionTransformer\w*; MEFT runs the model without")],
)  # fmt: skip
def test_gradient_checkpointing_warns_once_that_it_saves_nothing(host, message):
    model, batch = _with_checkpointing_switched_on(host)
    model.train()
    with pytest.warns(UserWarning, match=message):
        model(**batch).loss.backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # once per stack, and not in evaluation
        model(**batch).loss.backward()
        model.eval()
        model(**batch)


@pytest.mark.parametrize("reentrant", [False, True])
def test_timm_checkpointing_leaves_the_gradients_as_they_are(monkeypatch, reentrant):
    # Reentrant checkpointing (older timm, or TIMM_REENTRANT_CKPT=1) of the stack, whose input
    # needs no gradient, cut every adapter off from the loss: only the head trained.
    layers_config = pytest.importorskip("timm.layers.config")
    if hasattr(layers_config, "_USE_REENTRANT_CKPT"):
        monkeypatch.setattr(layers_config, "_USE_REENTRANT_CKPT", reentrant)
    elif not reentrant:
        pytest.skip("this timm has only reentrant checkpointing")
    gradients = {}
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = get_meft_model(timm_vit_with_loss(), MeftConfig())
        model.set_grad_checkpointing(checkpointing)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model(**image_batch()).loss.backward()
        assert model.grad_checkpointing is checkpointing  # the user's setting stands
        gradients[checkpointing] = {
            n: p.grad for n, p in model.named_parameters() if p.requires_grad
        }
    assert all(g is not None for g in gradients[True].values())
    for name, expected in gradients[False].items():
        torch.testing.assert_close(gradients[True][name], expected, rtol=0, atol=0, msg=name)


@pytest.mark.distributed
def test_ddp_with_two_processes_matches_one(tmp_path):
    single = subprocess.run(
        [sys.executable, str(SCRIPT), "--output-dir", str(tmp_path / "one"), "--batch-size", "8"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT),
         "--output-dir", str(tmp_path / "two"), "--batch-size", "4"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert json.loads((tmp_path / "two" / "world.json").read_text()) == 2
    expected = load_file(str(tmp_path / "one" / "weights" / "adapter_model.safetensors"))
    actual = load_file(str(tmp_path / "two" / "weights" / "adapter_model.safetensors"))
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=1e-5, msg=name)


def _replicate_every_module(model: torch.nn.Module) -> None:
    # What nn.parallel.replicate does first, module by module, before it copies any tensor (the
    # copy itself needs CUDA devices).
    for module in model.modules():
        module._replicate_for_data_parallel()


def test_data_parallel_is_refused_before_any_replica_runs():
    # A replica's layers would call the original stack: on a second GPU, a mixed-device error.
    model = get_meft_model(tiny_bert(), MeftConfig())
    with pytest.raises(RuntimeError, match=r"nn\.DataParallel .*one process per GPU"):
        _replicate_every_module(model)
    with pytest.raises(RuntimeError, match=r"nn\.DataParallel"):
        _replicate_every_module(copy.deepcopy(model))  # copies keep the refusal
    _replicate_every_module(unload(model))  # and unload takes it away


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_data_parallel_on_two_gpus_names_the_way_out():
    model = torch.nn.DataParallel(get_meft_model(tiny_bert(), MeftConfig()).cuda())
    batch = {key: value.cuda() for key, value in text_batch().items()}
    with pytest.raises(RuntimeError, match="one process per GPU"):
        model(**batch)

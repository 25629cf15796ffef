"""DensityTrainer: the Hugging Face Trainer optimising task loss + λ·density loss, and add_density_loss."""

from __future__ import annotations

import math

import pytest
import torch

import deft.hf_trainer
from deft import DensityMonitor
from deft.hf_trainer import add_density_loss

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


LENGTH = 10
EPS = 1e-7


def _lora_bert(seed: int = 0, hidden_act: str = "gelu"):
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=100, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        hidden_act=hidden_act,
    )  # fmt: skip
    base = transformers.BertForSequenceClassification(config)
    lora = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=0.0)
    return peft.get_peft_model(base, lora)


def _rows(count: int, label_column: str = "labels", extra_columns: bool = False) -> list[dict]:
    """Fixed-length rows with right padding (real lengths 4 … LENGTH), as a tokenizer returns them."""
    generator = torch.Generator().manual_seed(7)
    rows = []
    for index in range(count):
        real = 4 + index % (LENGTH - 3)
        ids = torch.randint(1, 100, (LENGTH,), generator=generator)
        ids[real:] = 0
        row = {
            "input_ids": ids.tolist(),
            "attention_mask": [1] * real + [0] * (LENGTH - real),
            label_column: index % 2,
        }
        if extra_columns:
            row.update(text=f"sentence {index}", idx=index)
        rows.append(row)
    return rows


def _batch(rows: list[dict]) -> dict[str, torch.Tensor]:
    return {key: torch.tensor([row[key] for row in rows]) for key in rows[0]}


def _args(tmp_path, **overrides):
    options = dict(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-2,
        report_to=[], use_cpu=True, save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0,
    )  # fmt: skip
    options.update(overrides)
    return transformers.TrainingArguments(**options)


def _density_by_hand(activations: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """The spec's formula written out: s = a²/(a²+ε), mean over features, over real tokens,
    over samples, then over layers — in float64."""
    per_layer = []
    for activation in activations:
        a = activation.double()
        per_token = (a**2 / (a**2 + EPS)).mean(dim=-1)  # [B, T]
        real = mask.double()
        per_sample = (per_token * real).sum(dim=-1) / real.sum(dim=-1)
        per_layer.append(per_sample.mean())
    return torch.stack(per_layer).mean()


def test_the_optimised_loss_is_task_loss_plus_weight_times_density_computed_by_hand(tmp_path):
    model = _lora_bert()
    rows = _rows(8)
    trainer = deft.hf_trainer.DensityTrainer(
        model=model, args=_args(tmp_path), train_dataset=rows, density_weight=2.5
    )
    batch = _batch(rows)
    captured = []
    for layer in model.base_model.model.bert.encoder.layer:
        act = layer.intermediate.intermediate_act_fn
        act.register_forward_hook(lambda module, args, output: captured.append(output))
    model.train()  # dropout probabilities are 0: train mode is deterministic here
    loss = trainer.compute_loss(model, dict(batch))
    assert len(captured) == 2
    expected_density = _density_by_hand(captured, batch["attention_mask"])
    task = model(**batch).loss
    torch.testing.assert_close(
        loss.double(), task.double() + 2.5 * expected_density, rtol=1e-6, atol=1e-7
    )
    # the term really moves the loss: ReLU/GELU densities are far from 0
    assert 2.5 * expected_density > 1.0
    loss.backward()
    lora_grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert all(g is not None and g.abs().sum() > 0 for g in lora_grads)


def test_counting_padding_averages_over_every_position_as_the_reference(tmp_path):
    model = _lora_bert(hidden_act="relu")  # about half zeros: pads and real tokens differ
    rows = _rows(8)
    trainer = deft.hf_trainer.DensityTrainer(
        model=model, args=_args(tmp_path), train_dataset=rows, density_weight=2.5,
        density_count_padding=True,
    )  # fmt: skip
    batch = _batch(rows)
    captured = []
    for layer in model.base_model.model.bert.encoder.layer:
        act = layer.intermediate.intermediate_act_fn
        act.register_forward_hook(lambda module, args, output: captured.append(output))
    model.train()
    loss = trainer.compute_loss(model, dict(batch))
    every_position = torch.ones_like(batch["attention_mask"])
    expected = model(**batch).loss.double() + 2.5 * _density_by_hand(captured, every_position)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-6, atol=1e-7)
    masked = _density_by_hand(captured, batch["attention_mask"])
    assert abs(_density_by_hand(captured, every_position) - masked) > 1e-3  # pads matter here


def test_return_outputs_and_evaluation_keep_the_task_loss_alone(tmp_path):
    model = _lora_bert()
    rows = _rows(8)
    trainer = deft.hf_trainer.DensityTrainer(
        model=model, args=_args(tmp_path, per_device_eval_batch_size=8), train_dataset=rows,
        eval_dataset=rows, density_weight=4.0,
    )  # fmt: skip
    model.train()
    loss, outputs = trainer.compute_loss(model, _batch(rows), return_outputs=True)
    assert outputs.logits.shape == (8, 2)
    assert loss > outputs.loss + 1.0  # training: the density term is in
    metrics = trainer.evaluate()
    assert trainer.monitor.activations == {}  # references dropped after each compute_loss
    model.eval()
    with torch.no_grad():
        task = model(**_batch(rows)).loss
    assert math.isclose(metrics["eval_loss"], task.item(), rel_tol=1e-5)


@pytest.mark.parametrize(
    ("remove_unused_columns", "label_column", "extra_columns"),
    [(True, "label", True), (False, "labels", False)],
    ids=["datasets-columns-label", "plain-columns-labels"],
)
def test_training_logs_density_and_task_loss(
    tmp_path, remove_unused_columns, label_column, extra_columns
):
    datasets = pytest.importorskip("datasets")  # a datasets.Dataset, as users pass them
    model = _lora_bert(hidden_act="relu")
    data = datasets.Dataset.from_list(_rows(24, label_column, extra_columns))
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    args = _args(
        tmp_path, remove_unused_columns=remove_unused_columns, label_names=["labels"], max_steps=3
    )
    trainer = deft.hf_trainer.DensityTrainer(
        model=model, args=args, train_dataset=data, density_weight=0.5
    )
    result = trainer.train()
    assert math.isfinite(result.training_loss)
    logs = [record for record in trainer.state.log_history if "loss" in record]
    assert len(logs) == 3
    for record in logs:
        assert 0.0 < record["density"] <= 1.0
        assert math.isclose(record["density_loss"], 0.5 * record["density"], rel_tol=1e-6)
        assert math.isclose(
            record["task_loss"] + record["density_loss"], record["loss"], rel_tol=1e-6
        )
        assert 0.3 < record["task_loss"] < 1.2  # cross-entropy of 2 classes near log 2
    changed = [
        n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])
    ]
    assert any("lora_B" in n for n in changed)
    assert any("classifier" in n for n in changed)


def test_a_zero_weight_trains_plain_peft_and_still_logs_the_density(tmp_path):
    rows = _rows(8)
    updates = {}
    for weight in (0.0, 1.0):
        model = _lora_bert(hidden_act="relu")
        args = _args(tmp_path, max_steps=1, per_device_train_batch_size=8)
        trainer = deft.hf_trainer.DensityTrainer(
            model=model, args=args, train_dataset=rows, density_weight=weight
        )
        trainer.train()
        updates[weight] = torch.cat(
            [p.detach().flatten() for p in model.parameters() if p.requires_grad]
        )
        logged = next(r for r in trainer.state.log_history if "loss" in r)
        assert logged["density"] > 0.2
        if weight == 0.0:
            assert logged["density_loss"] == 0.0
            assert logged["task_loss"] == logged["loss"]
    assert not torch.allclose(updates[0.0], updates[1.0])


def _one_sgd_step(tmp_path, *, weight, micro_batch, accumulation, scaled_loss_func, unscaled):
    """Parameters after one SGD step (lr 1) on the same 8 rows, split into micro-batches."""
    model = _lora_bert(hidden_act="relu")
    args = _args(
        tmp_path, max_steps=1, per_device_train_batch_size=micro_batch, optim="sgd",
        gradient_accumulation_steps=accumulation, learning_rate=1.0, lr_scheduler_type="constant",
        max_grad_norm=0.0,
    )  # fmt: skip

    def summed_cross_entropy(outputs, labels, num_items_in_batch=None):
        total = torch.nn.functional.cross_entropy(outputs.logits, labels, reduction="sum")
        return total / num_items_in_batch

    trainer = deft.hf_trainer.DensityTrainer(
        model=model, args=args, train_dataset=_rows(8), density_weight=weight,
        compute_loss_func=summed_cross_entropy if scaled_loss_func else None,
    )  # fmt: skip
    if unscaled:
        trainer.loss_is_scaled_for_ga = False  # the workaround for heads ignoring num_items
    trainer.train()
    return torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad])


@pytest.mark.parametrize(
    ("scaled_loss_func", "unscaled"),
    [(True, False), (False, True)],
    ids=["loss-normalised-over-the-accumulated-batch", "trainer-divides-by-accumulation"],
)
def test_gradient_accumulation_equals_one_big_batch(tmp_path, scaled_loss_func, unscaled):
    options = dict(weight=3.0, scaled_loss_func=scaled_loss_func, unscaled=unscaled)
    big = _one_sgd_step(tmp_path, micro_batch=8, accumulation=1, **options)
    accumulated = _one_sgd_step(tmp_path, micro_batch=4, accumulation=2, **options)
    torch.testing.assert_close(accumulated, big, rtol=1e-4, atol=1e-6)
    options["weight"] = 0.0
    plain = _one_sgd_step(tmp_path, micro_batch=8, accumulation=1, **options)
    # the density term is a large part of the update, so a wrong scaling could not pass above
    assert (big - plain).abs().max() > 100 * 1e-4 * big.abs().max()


def test_the_trainer_builds_its_own_monitor_or_takes_one(tmp_path):
    model = _lora_bert()
    trainer = deft.hf_trainer.DensityTrainer(
        model=model, args=_args(tmp_path), train_dataset=_rows(4)
    )
    assert trainer.monitor.layer_names == [
        f"bert.encoder.layer.{i}.intermediate.intermediate_act_fn" for i in range(2)
    ]
    mine = DensityMonitor(model, targets=["*.layer.1.intermediate.intermediate_act_fn"])
    trainer = deft.hf_trainer.DensityTrainer(
        model=model, args=_args(tmp_path), train_dataset=_rows(4), monitor=mine
    )
    assert trainer.monitor is mine
    with pytest.raises(ValueError, match="density weight must be a non-negative number"):
        deft.hf_trainer.DensityTrainer(
            model=model, args=_args(tmp_path), train_dataset=_rows(4), density_weight=-1
        )


def test_model_init_trains_with_the_density_term_of_the_model_it_built(tmp_path):
    # train() replaces the model by a fresh one from model_init (as every hyperparameter trial
    # does): the monitor must follow it, and the run must equal the same run with model=.
    def logged(trainer):
        trainer.train()
        return [(h["loss"], h["density"]) for h in trainer.state.log_history if "density" in h]

    with_model = deft.hf_trainer.DensityTrainer(
        model=_lora_bert(), args=_args(tmp_path / "model"), train_dataset=_rows(12)
    )
    with_init = deft.hf_trainer.DensityTrainer(
        model_init=lambda: _lora_bert(), args=_args(tmp_path / "init"), train_dataset=_rows(12)
    )
    first_model = with_init.model  # built by Trainer.__init__, replaced by train()
    assert logged(with_init) == logged(with_model)
    assert with_init.monitor.model is with_init.model is not first_model
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in first_model.modules())
    with pytest.raises(ValueError, match="monitor= cannot be combined with model_init="):
        deft.hf_trainer.DensityTrainer(
            model_init=lambda: _lora_bert(),
            args=_args(tmp_path),
            train_dataset=_rows(4),
            monitor=DensityMonitor(_lora_bert()),
        )


def test_add_density_loss_for_custom_loops():
    model = _lora_bert()
    monitor = DensityMonitor(model)
    batch = _batch(_rows(4))
    task = model(**batch).loss
    expected = task + 0.25 * _density_by_hand(
        list(monitor.activations.values()), batch["attention_mask"]
    )
    torch.testing.assert_close(
        add_density_loss(task, monitor, batch, 0.25).double(), expected, rtol=1e-6, atol=1e-7
    )
    assert add_density_loss(task, monitor, batch, 0.0) is task
    with_pads = task + 0.25 * _density_by_hand(
        list(monitor.activations.values()), torch.ones_like(batch["attention_mask"])
    )
    torch.testing.assert_close(
        add_density_loss(task, monitor, batch, 0.25, count_padding=True).double(),
        with_pads, rtol=1e-6, atol=1e-7,
    )  # fmt: skip
    with pytest.raises(ValueError, match="non-negative"):
        add_density_loss(task, monitor, batch, float("nan"))


def test_a_missing_transformers_is_an_error_naming_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(ImportError, match=r"deft-peft\[hf\]"):
        deft.hf_trainer._build_density_trainer()
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        deft.hf_trainer.Nothing  # noqa: B018


def test_predicting_batches_without_labels_keeps_no_activations(tmp_path):
    # Without labels the Trainer evaluates without compute_loss; the monitor must not hold the
    # last batch's activations afterwards (memory only: results are unaffected).
    rows = [{key: value for key, value in row.items() if key != "labels"} for row in _rows(8)]
    trainer = deft.hf_trainer.DensityTrainer(
        model=_lora_bert(), args=_args(tmp_path), train_dataset=_rows(8)
    )
    predictions = trainer.predict(rows)
    assert predictions.predictions.shape == (8, 2)
    assert trainer.monitor.activations == {}


def test_several_gpus_in_one_process_are_refused(tmp_path):
    # nn.DataParallel's replicas run the hooked layers in threads on several devices: refused,
    # with the way out (one process per GPU), instead of a loss mixing their activations.
    args = _args(tmp_path)
    args._n_gpu = 2  # what TrainingArguments finds on a machine with two visible GPUs
    with pytest.raises(ValueError, match=r"DataParallel.*one process per GPU"):
        deft.hf_trainer.DensityTrainer(model=_lora_bert(), args=args, train_dataset=_rows(4))

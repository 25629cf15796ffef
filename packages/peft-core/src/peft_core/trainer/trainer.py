"""A small training loop on accelerate: exact resume, DDP, mixed precision, extra loss terms."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from peft_core._atomic import atomic_directory
from peft_core.config import MethodConfig
from peft_core.serialization import save_trainable
from peft_core.trainer import checkpointing as ckpt
from peft_core.trainer.arguments import TrainingArguments
from peft_core.trainer.callbacks import TrainerCallback, collect_extra_losses
from peft_core.trainer.evaluation import default_metrics, output_field
from peft_core.trainer.example_seeding import ExampleSeededDataset
from peft_core.trainer.frozen_weights import fingerprint, write_fingerprint
from peft_core.trainer.optim import build_optimizer, build_scheduler
from peft_core.trainer.run_log import RunLog
from peft_core.trainer.run_settings import check_resume_matches, describe_run, write_run_settings
from peft_core.trainer.sampling import EpochBatchSampler

LossFn = Callable[[nn.Module, Any], tuple[torch.Tensor, Any]]
MetricsFn = Callable[[torch.Tensor, torch.Tensor], dict[str, float]]


def default_compute_loss(model: nn.Module, batch: Any) -> tuple[torch.Tensor, Any]:
    """Call the model on the batch (a dict becomes keyword arguments) and read its ``loss``."""
    outputs = model(**batch) if isinstance(batch, dict) else model(batch)
    loss = output_field(outputs, "loss")
    if loss is None:
        raise ValueError(
            "the model returned no 'loss': pass labels in the batch, or give Trainer(compute_loss=...)"
        )
    return loss, outputs


def _allow_new_precision(mixed_precision: str) -> None:
    """Let several trainers with different precisions run one after another in one process.

    accelerate keeps its precision in a process-wide singleton and refuses a second Accelerator
    that asks for another one. The distributed setup (PartialState) is left untouched.
    """
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != mixed_precision:
        AcceleratorState._reset_state()


class Trainer:
    """Fine-tune the trainable parameters of ``model`` on ``train_dataset``.

    Example:
        >>> args = TrainingArguments(
        ...     "runs/demo", num_epochs=3, learning_rate=3e-4
        ... )  # doctest: +SKIP
        >>> result = Trainer(
        ...     model, args, train, eval_dataset=val, collate_fn=collate
        ... ).train()  # doctest: +SKIP

    Runs on CPU or GPU, and multi-process when launched by ``torchrun`` or ``accelerate launch``
    (each process takes its slice of every global batch). With ``args.save_every`` set, a run that
    is killed resumes from its newest checkpoint and ends with exactly the weights an uninterrupted
    run would have: model tensors, optimizer, scheduler, every RNG and the position in the data are
    all restored. A resume must have the run's own settings: the checkpoint records its training
    arguments (bookkeeping aside), ``method_config``, the number of training examples and
    ``run_settings`` (what else defines the run: model, data source, a loss weight), and a resume
    with other values is refused, naming each one.
    """

    def __init__(
        self,
        model: nn.Module,
        args: TrainingArguments,
        train_dataset: Dataset,
        eval_dataset: Dataset | None = None,
        *,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        compute_loss: LossFn | None = None,
        compute_metrics: MetricsFn | None = None,
        callbacks: Sequence[TrainerCallback] = (),
        method_config: MethodConfig | None = None,
        run_settings: dict[str, Any] | None = None,
    ) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        if eval_dataset is None and args.early_stopping_patience is not None:
            raise ValueError(
                f"early_stopping_patience={args.early_stopping_patience} needs evaluations: pass "
                "Trainer(eval_dataset=...), or leave early_stopping_patience=None"
            )
        self.args = args
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.collate_fn = collate_fn
        self.compute_loss = compute_loss or default_compute_loss
        self.compute_metrics = compute_metrics or default_metrics
        self.callbacks = list(callbacks)
        self.method_config = method_config
        self.output_dir = Path(args.output_dir)
        _allow_new_precision(args.mixed_precision)
        self.accelerator = Accelerator(
            cpu=args.cpu,
            mixed_precision=args.mixed_precision,
            kwargs_handlers=[
                DistributedDataParallelKwargs(
                    find_unused_parameters=args.ddp_find_unused_parameters
                )
            ],
        )
        self.state = ckpt.TrainerState(world_size=self.accelerator.num_processes)
        self._segment_started: float | None = None  # when train() began, for checkpointed time
        self.total_steps = self._total_steps()
        self.run_settings = describe_run(args, method_config, len(train_dataset), run_settings)
        optimizer = build_optimizer(model, args)
        self.scheduler = build_scheduler(optimizer, args, self.total_steps)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.history: list[dict[str, Any]] = []
        self._last_evaluation: dict[str, float] | None = None
        self._unlogged: dict[str, list[float]] = {}  # training values since the last log line
        self._frozen_weights: dict[str, list] | None = None  # taken once, see frozen_weights
        self.run_log = RunLog(self.output_dir / "log.jsonl", writes=self.is_main_process)

    # -- sizes -----------------------------------------------------------------------------
    def _epoch_sampler(self, epoch: int, start_batch: int = 0) -> EpochBatchSampler:
        return EpochBatchSampler(
            len(self.train_dataset),
            self.args.per_device_batch_size,
            seed=self.args.seed,
            epoch=epoch,
            shuffle=self.args.shuffle,
            drop_last=self.args.drop_last,
            rank=self.accelerator.process_index,
            world_size=self.accelerator.num_processes,
            start_batch=start_batch,
        )

    @property
    def micro_batches_per_epoch(self) -> int:
        return len(self._epoch_sampler(0))

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.micro_batches_per_epoch / self.args.gradient_accumulation_steps)

    def _total_steps(self) -> int:
        if self.args.max_steps is not None:
            return self.args.max_steps
        if self.micro_batches_per_epoch == 0:
            raise ValueError("the training set is smaller than one global batch and drop_last=True")
        return max(1, math.ceil(self.args.num_epochs * self.steps_per_epoch))

    @property
    def unwrapped_model(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.model)

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    # -- the loop ----------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Train to ``total_steps`` (or early stop); returns the final metrics and where it stopped."""
        from accelerate.utils import set_seed

        resumed_from = self._resume() if self.args.resume else None
        # A second train() of this Trainer with nothing to resume continues the run it holds.
        if resumed_from is None and self.state.global_step == 0:
            self._clear_earlier_run()
            set_seed(self.args.seed)
            self.run_log.keep_through_step(0)
        if self.is_main_process:
            ckpt.remove_unfinished_checkpoints(self.output_dir)
        progress = self._progress_bar()
        for callback in self.callbacks:
            callback.on_train_begin(self)
        stop = self._patience_ran_out()  # a run that early-stopped before its last checkpoint
        self._segment_started = started = time.perf_counter()
        earlier_seconds = self.state.train_seconds  # segments before a resume, as checkpointed
        while self.state.global_step < self.total_steps and not stop:
            for micro_batches in self._steps_of_current_epoch():
                logs = self._optimizer_step(micro_batches)
                for key, value in logs.items():
                    self._unlogged.setdefault(key, []).append(value)
                self.state.global_step += 1
                progress.update(1)
                if (
                    self.state.global_step % self.args.log_every == 0
                    or self.state.global_step == self.total_steps
                ):
                    record = self._log_window(self._unlogged)
                    progress.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
                    self._unlogged = {}
                stop = self._maybe_evaluate(at_epoch_end=False)
                self._maybe_checkpoint()
                if stop or self.state.global_step >= self.total_steps:
                    break
            # The last step of a run that ends with an epoch is that epoch's end too: its
            # evaluation counts for the best weights and early stopping like any other.
            if self.state.batches_into_epoch >= self.micro_batches_per_epoch:
                self.state.epoch += 1
                self.state.batches_into_epoch = 0
                stop = stop or self._maybe_evaluate(at_epoch_end=True)
        progress.close()
        segment_seconds = time.perf_counter() - started
        final = self._final_evaluation()
        self.accelerator.wait_for_everyone()
        if self.is_main_process:
            save_trainable(self.unwrapped_model, self.output_dir / "final", self.method_config)
        for callback in self.callbacks:
            callback.on_train_end(self)
        return {
            "global_step": self.state.global_step,
            "epochs_completed": self.state.global_step / max(1, self.steps_per_epoch),
            "resumed_from_step": resumed_from,
            # every segment of a resumed run (steps redone after a crash counted once), and this one
            "train_seconds": earlier_seconds + segment_seconds,
            "train_seconds_this_segment": segment_seconds,
            "best_metric": self.state.best_metric,
            "best_step": self.state.best_step,
            **final,
        }

    def _steps_of_current_epoch(self) -> Iterator[list[Any]]:
        """Yield the micro-batches of each optimizer step left in the current epoch."""
        sampler = self._epoch_sampler(self.state.epoch, start_batch=self.state.batches_into_epoch)
        loader = DataLoader(
            ExampleSeededDataset(self.train_dataset, seed=self.args.seed, epoch=self.state.epoch),
            batch_sampler=sampler,
            collate_fn=self.collate_fn,
            num_workers=self.args.num_workers,
            # Worker seeds come from this generator, not the global RNG, so creating the loader
            # mid-epoch on resume draws nothing from the RNG streams the model uses.
            generator=torch.Generator().manual_seed(self.args.seed + self.state.epoch),
        )
        iterator = iter(loader)
        remaining = len(sampler)
        while remaining > 0:
            count = min(self.args.gradient_accumulation_steps, remaining)
            micro_batches = [next(iterator) for _ in range(count)]
            remaining -= count
            # Count the batches as consumed before the step runs: a checkpoint written after this
            # step must resume at the next batch.
            self.state.batches_into_epoch += count
            yield micro_batches

    def _optimizer_step(self, micro_batches: list[Any]) -> dict[str, float]:
        self.model.train()
        totals: dict[str, float] = {}
        for index, batch in enumerate(micro_batches):
            batch = self._to_device(batch)
            last = index == len(micro_batches) - 1
            # Skip the gradient all-reduce until the last micro-batch of the step.
            sync = nullcontext() if last else self.accelerator.no_sync(self.model)
            with sync:
                with self.accelerator.autocast():
                    loss, outputs = self.compute_loss(self.model, batch)
                    extras = collect_extra_losses(self.callbacks, self, batch, outputs)
                    total = loss + sum(extras.values()) if extras else loss
                self.accelerator.backward(total / len(micro_batches))
            for name, value in {"loss": total, "task_loss": loss, **extras}.items():
                totals[name] = totals.get(name, 0.0) + value.detach().float().item() / len(
                    micro_batches
                )
        if self.args.max_grad_norm is not None:
            parameters = [p for p in self.model.parameters() if p.requires_grad]
            norm = self.accelerator.clip_grad_norm_(parameters, self.args.max_grad_norm)
            totals["grad_norm"] = float(norm)
        totals["learning_rate"] = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return totals

    def _to_device(self, batch: Any) -> Any:
        from accelerate.utils import send_to_device

        return send_to_device(batch, self.accelerator.device)

    # -- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, dataset: Dataset | None = None) -> dict[str, float]:
        """Loss and metrics on ``dataset`` (default: the eval set), sharded over processes."""
        from accelerate.utils import gather_object

        dataset = dataset if dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError(
                "evaluate() needs a dataset: pass one, or give Trainer(eval_dataset=...)"
            )
        self.model.eval()
        sampler = EpochBatchSampler(
            len(dataset),
            self.args.eval_batch_size or self.args.per_device_batch_size,
            shuffle=False,
            rank=self.accelerator.process_index,
            world_size=self.accelerator.num_processes,
        )
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=self.collate_fn)
        shards: list[tuple[float, int, torch.Tensor | None, torch.Tensor | None]] = []
        for batch in loader:
            batch = self._to_device(batch)
            with self.accelerator.autocast():
                loss, outputs = self.compute_loss(self.model, batch)
            logits = output_field(outputs, "logits")
            labels = batch.get("labels") if isinstance(batch, dict) else None
            size = len(labels) if labels is not None else 1
            keep = logits is not None and labels is not None and logits.ndim == 2
            shards.append(
                (
                    float(loss) * size,
                    size,
                    logits.float().cpu() if keep else None,
                    labels.cpu() if keep else None,
                )
            )
        gathered = gather_object(shards) if self.accelerator.num_processes > 1 else shards
        count = sum(s[1] for s in gathered)
        metrics = {"eval_loss": sum(s[0] for s in gathered) / max(count, 1)}
        if gathered and all(s[2] is not None for s in gathered):
            logits = torch.cat([s[2] for s in gathered])
            labels = torch.cat([s[3] for s in gathered])
            metrics.update(
                {f"eval_{k}": float(v) for k, v in self.compute_metrics(logits, labels).items()}
            )
        metrics["step"] = self.state.global_step
        if dataset is self.eval_dataset:
            self._last_evaluation = metrics
        self.run_log.write({"type": "eval", **metrics})
        for callback in self.callbacks:
            callback.on_evaluate(self, metrics)
        return metrics

    def _final_evaluation(self) -> dict[str, float]:
        """The eval metrics of the final weights; reused when the schedule just evaluated them."""
        if self.eval_dataset is None:
            return {}
        last = self._last_evaluation
        if last is not None and last["step"] == self.state.global_step:
            return last
        metrics = self.evaluate()  # a run that stopped between scheduled evaluations
        self._update_early_stopping(metrics)  # the final weights may be the best ones
        return metrics

    def _maybe_evaluate(self, *, at_epoch_end: bool) -> bool:
        """Evaluate when the schedule says so; return True when early stopping says stop."""
        if self.eval_dataset is None:
            return False
        strategy = self.args.eval_strategy
        due = (strategy == "epoch" and at_epoch_end) or (
            strategy == "steps"
            and not at_epoch_end
            and self.state.global_step % self.args.eval_every == 0
        )
        if not due:
            return False
        metrics = self.evaluate()
        return self._update_early_stopping(metrics)

    def _update_early_stopping(self, metrics: dict[str, float]) -> bool:
        key = self.args.metric_for_best
        if key not in metrics:
            raise KeyError(
                f"metric_for_best={key!r} is not among the eval metrics {sorted(metrics)}"
            )
        value, best = metrics[key], self.state.best_metric
        improved = best is None or (value > best if self.args.maximize_metric else value < best)
        if improved:
            self.state.best_metric, self.state.best_step = value, self.state.global_step
            self.state.evaluations_without_improvement = 0
            if self.is_main_process:
                save_trainable(self.unwrapped_model, self.output_dir / "best", self.method_config)
        else:
            self.state.evaluations_without_improvement += 1
        return self._patience_ran_out()

    def _patience_ran_out(self) -> bool:
        patience = self.args.early_stopping_patience
        return patience is not None and self.state.evaluations_without_improvement >= patience

    # -- logging -----------------------------------------------------------------------------
    def _progress_bar(self):
        from tqdm.auto import tqdm

        return tqdm(
            total=self.total_steps,
            initial=self.state.global_step,
            desc="training",
            unit="step",
            disable=not (self.args.progress_bar and self.is_main_process),
            dynamic_ncols=True,
        )

    def _log_window(self, window: dict[str, list[float]]) -> dict[str, Any]:
        record = {key: sum(values) / len(values) for key, values in window.items()}
        record.update(type="train", step=self.state.global_step, epoch=self.state.epoch)
        for callback in self.callbacks:  # before writing: callbacks may add entries
            callback.on_step_end(self, record)
        self.history.append(record)
        self.run_log.write(record)
        return record

    @property
    def log_path(self) -> Path:
        return self.run_log.path

    # -- checkpoints -----------------------------------------------------------------------------
    def _maybe_checkpoint(self) -> None:
        every = self.args.save_every
        if every is not None and self.state.global_step % every == 0:
            self.save_checkpoint()

    def save_checkpoint(self) -> Path:
        """Write a resumable checkpoint of the current step (collective: call on every process)."""
        from accelerate.utils import gather_object

        rng_states = gather_object([ckpt.capture_rng_state()])
        started = self._segment_started
        segment = 0.0 if started is None else time.perf_counter() - started
        state = dataclasses.replace(
            self.state,
            train_seconds=self.state.train_seconds + segment,
            log_lines=self.run_log.line_count(),
            unlogged=self._unlogged,
            last_evaluation=self._last_evaluation,
        )
        path = ckpt.checkpoint_path(self.output_dir, self.state.global_step)
        if self.is_main_process:
            with atomic_directory(path) as staging:
                save_trainable(self.unwrapped_model, staging / "trainable", self.method_config)
                torch.save(self.optimizer.state_dict(), staging / "optimizer.pt")
                torch.save(self.scheduler.state_dict(), staging / "scheduler.pt")
                torch.save(rng_states, staging / "rng_state.pt")
                scaler = getattr(self.accelerator, "scaler", None)
                if scaler is not None:
                    torch.save(scaler.state_dict(), staging / "scaler.pt")
                callback_states = {c.display_name: c.state_dict() for c in self.callbacks}
                (staging / "callbacks.json").write_text(
                    json.dumps(callback_states), encoding="utf-8"
                )
                (staging / "trainer_state.json").write_text(state.to_json(), encoding="utf-8")
                write_run_settings(staging, self.run_settings)
                write_fingerprint(staging, self._frozen_weights_fingerprint())
            ckpt.prune_checkpoints(self.output_dir, self.args.save_total_limit)
        self.accelerator.wait_for_everyone()
        return path

    def _frozen_weights_fingerprint(self) -> dict[str, list]:
        """The frozen weights' fingerprint, taken on first use: they do not change in training."""
        if self._frozen_weights is None:
            saved = tuple(getattr(self.method_config, "saved_parameters", ()) or ())
            self._frozen_weights = fingerprint(self.unwrapped_model, saved)
        return self._frozen_weights

    def _clear_earlier_run(self) -> None:
        """Before a fresh start (``resume=False``, or nothing to resume): refuse, or with
        ``overwrite_output_dir`` delete, an earlier run's checkpoints and weights. Left in place,
        checkpoints would outrank this run's own (pruning keeps the highest steps, so this run's
        would be deleted as they appear, and a later resume would continue the earlier run), and
        an earlier ``best/`` would pass for this run's when this one never evaluates."""
        earlier = ckpt.checkpoint_directories(self.output_dir)
        finished = ckpt.finished_run_outputs(self.output_dir)
        if not earlier and not finished:
            return
        if not self.args.overwrite_output_dir:
            what = (
                f"checkpoints of an earlier run (newest: {earlier[-1].name})"
                if earlier
                else f"an earlier run's weights ({', '.join(finished)}) and no checkpoint to resume"
            )
            raise FileExistsError(
                f"{self.output_dir} holds {what} and this run starts afresh: "
                + ("pass resume=True to continue that run, " if earlier else "")
                + "pass overwrite_output_dir=True to delete it, or use another output_dir"
            )
        self.accelerator.wait_for_everyone()  # every process has seen the outputs above
        if self.is_main_process:
            ckpt.delete_run_outputs(self.output_dir)
        self.accelerator.wait_for_everyone()

    def _resume(self) -> int | None:
        found = ckpt.checkpoint_directories(self.output_dir)
        if not found:
            return None
        path = found[-1]
        state = ckpt.TrainerState.from_json(
            (path / "trainer_state.json").read_text(encoding="utf-8")
        )
        if state.world_size != self.accelerator.num_processes:
            raise RuntimeError(
                f"{path} was written by {state.world_size} process(es) but this run has "
                f"{self.accelerator.num_processes}: the data position would not line up. Resume with "
                "the same number of processes, or start in a fresh output_dir."
            )
        check_resume_matches(path, self.run_settings, self._frozen_weights_fingerprint())
        ckpt.load_checkpoint_tensors(self.unwrapped_model, path)
        self.optimizer.load_state_dict(ckpt.load_torch(path / "optimizer.pt"))
        self.scheduler.load_state_dict(ckpt.load_torch(path / "scheduler.pt"))
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None and (path / "scaler.pt").exists():
            scaler.load_state_dict(ckpt.load_torch(path / "scaler.pt"))
        callback_states = json.loads((path / "callbacks.json").read_text(encoding="utf-8"))
        for callback in self.callbacks:
            callback.load_state_dict(callback_states.get(callback.display_name, {}))
        ckpt.restore_rng_state(
            ckpt.load_torch(path / "rng_state.pt")[self.accelerator.process_index]
        )
        self.state = state
        self._unlogged = {key: list(values) for key, values in state.unlogged.items()}
        self._last_evaluation = state.last_evaluation
        if state.log_lines is not None:
            self.run_log.keep_first(state.log_lines)
        else:  # a checkpoint from before log_lines was recorded
            self.run_log.keep_through_step(state.global_step)
        self.history = [record for record in self.history if record["step"] <= state.global_step]
        return state.global_step

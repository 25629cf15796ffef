"""DEFT inside the Hugging Face ``Trainer``, and one function for hand-written training loops.

    L_total = L_task + λ · L_density        (spec §2; λ = ``density_weight``, 1.0 by default)

:class:`DensityTrainer` is a ``transformers.Trainer`` whose ``compute_loss`` adds the density term
of the batch it just ran; :func:`add_density_loss` is the same line for any other loop. Named so
as not to collide with Hugging Face peft's unrelated ``DeftConfig`` / ``DeftModel`` tuner.

``DensityTrainer`` needs transformers (``pip install "deft-peft[hf]"``), imported on first use, so
that ``add_density_loss`` works without it.

Example:
    >>> import torch
    >>> from peft_core.testing import TinyClassifier
    >>> from deft.monitor import DensityMonitor
    >>> model = TinyClassifier()
    >>> monitor = DensityMonitor(model)
    >>> batch = {"input_ids": torch.randint(0, 32, (2, 5)), "labels": torch.tensor([0, 1])}
    >>> task = model(**batch)["loss"]
    >>> loss = add_density_loss(task, monitor, batch, weight=0.5)
    >>> bool(torch.isclose(loss, task + 0.5 * monitor.loss_for_batch(batch)))
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from deft.loss import DEFAULT_EPS
from deft.schedule import DensityWeightSchedule
from peft_core.data_parallel import ONE_PROCESS_PER_GPU
from peft_core.optional_imports import import_optional

if TYPE_CHECKING:
    from deft.monitor import DensityMonitor

# Keys DensityTrainer adds to the Trainer's training logs.
DENSITY_LOG_KEY = "density_loss"  # λ · L_density, as the peft-core DensityLossCallback logs it
UNWEIGHTED_LOG_KEY = "density"  # L_density itself: also logged for λ = 0 baselines
TASK_LOG_KEY = "task_loss"
WEIGHT_LOG_KEY = "density_weight"  # λ of the latest step (it changes under a schedule)


def _check_weight(weight: float) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
        raise ValueError(f"density weight must be a non-negative number, got {weight!r}")
    return float(weight)


def add_density_loss(
    loss: torch.Tensor,
    monitor: DensityMonitor,
    batch: Any,
    weight: float = 1.0,
    *,
    eps: float = DEFAULT_EPS,
    count_padding: bool = False,
) -> torch.Tensor:
    """``loss + weight · monitor.loss_for_batch(batch)``: DEFT in a custom training loop.

    Call it right after the forward pass on ``batch``: the monitor holds that forward's
    activations. The token masks come from the batch (``attention_mask``; for encoder-decoder
    models also ``decoder_attention_mask`` or ``labels`` with -100 on padding);
    ``count_padding=True`` counts pads as the reference implementation does. ``weight=0``
    returns ``loss`` itself and computes nothing.
    """
    weight = _check_weight(weight)
    if not weight:
        return loss
    return loss + weight * monitor.loss_for_batch(batch, eps=eps, count_padding=count_padding)


def _refuse_data_parallel(n_gpu: int) -> None:
    """The Trainer wraps the model in ``nn.DataParallel`` when one process sees several GPUs:
    its replicas run the hooked layers in parallel threads, on different devices, and the
    monitor would mix their activations into one loss. One process per GPU (DDP) is supported."""
    if n_gpu > 1:
        raise ValueError(
            f"DensityTrainer: this process sees {n_gpu} GPUs, so the Trainer would train with "
            "torch.nn.DataParallel, whose replicas the density monitor cannot follow; "
            + ONE_PROCESS_PER_GPU
        )


def _import_transformers_trainer() -> type:
    transformers = import_optional(
        "transformers",
        needed_by="deft.DensityTrainer (a Hugging Face Trainer)",
        install='pip install "deft-peft[hf]"',
    )
    return transformers.Trainer


def _build_density_trainer() -> type:
    Trainer = _import_transformers_trainer()

    class DensityTrainer(Trainer):
        """A ``transformers.Trainer`` that optimises ``L_task + density_weight · L_density``.

        Args:
            *args, **kwargs: what ``transformers.Trainer`` takes (``model``, ``args``, data …).
            monitor: a :class:`deft.DensityMonitor` on the model; by default one is built on
                ``model`` with ``density_targets`` (with ``model_init``, on every model it
                builds: a monitor of your own cannot follow those, so it is refused there).
            density_weight: λ; ``0`` trains plain PEFT and still logs the density. A
                :class:`deft.schedule.DensityWeightSchedule` holds λ at 0 for the first part of
                training and ramps it in, over the Trainer's ``max_steps``.
            density_targets: ``"auto"`` or module names/patterns for the default monitor.
            density_eps: ε of s(a) = a²/(a²+ε).
            density_count_padding: average the loss over pads too (the reference
                implementation's loss) instead of over real tokens only.

        Training logs gain ``density_loss`` (λ·L_density), ``density`` (L_density) and
        ``task_loss`` (``loss`` minus ``density_loss``), each averaged over the steps since the
        previous log like ``loss``, and ``density_weight`` (λ of the latest step). Evaluation
        is untouched: ``eval_loss`` is the task loss, so it compares with a λ = 0 run; measure
        density with :func:`deft.measure_density`.

        Gradient accumulation: the density term is a mean over the samples of one micro-batch,
        and it is scaled exactly as the Trainer scales the task loss, so that an accumulated
        step averages it over the whole batch. When the Trainer treats the task loss as already
        normalised over the accumulated batch (models that take ``num_items_in_batch``, or a
        ``compute_loss_func``), the density term is divided by the accumulation steps here.
        Note that transformers also treats models whose ``forward`` merely accepts
        ``**kwargs`` as normalised although they ignore ``num_items_in_batch`` (classification
        heads, and T5's ``ForConditionalGeneration`` in transformers 5.24: their
        task gradient then grows with the accumulation steps; transformers issue #47688); where the
        Trainer has the override (recent versions), set
        ``trainer.loss_is_scaled_for_ga = False`` for such models to get both terms averaged.

        Example:
            >>> trainer = DensityTrainer(
            ...     model=peft_model,
            ...     args=TrainingArguments("runs/deft"),
            ...     train_dataset=data,
            ...     density_weight=1.0,
            ... )  # doctest: +SKIP
            >>> trainer.train()  # doctest: +SKIP
        """

        # Recent transformers let users say whether compute_loss's loss is scaled for
        # gradient accumulation (trainer.loss_is_scaled_for_ga); 4.48.1 - 4.5x have no such override.
        _trainer_has_ga_override = hasattr(Trainer, "loss_is_scaled_for_ga")

        def __init__(
            self,
            *args: Any,
            monitor: DensityMonitor | None = None,
            density_weight: float | DensityWeightSchedule = 1.0,
            density_targets: str | list[str] = "auto",
            density_eps: float = DEFAULT_EPS,
            density_count_padding: bool = False,
            **kwargs: Any,
        ) -> None:
            if not isinstance(density_weight, DensityWeightSchedule):
                density_weight = DensityWeightSchedule(_check_weight(density_weight))
            if monitor is not None and kwargs.get("model_init") is not None:
                raise ValueError(
                    "DensityTrainer: monitor= cannot be combined with model_init=, which builds a "
                    "new model for every train() (and hyperparameter trial) that the monitor is not "
                    "on; leave monitor out (density_targets= chooses what the trainer's own "
                    "monitor hooks) or pass model= instead of model_init="
                )
            super().__init__(*args, **kwargs)
            _refuse_data_parallel(self.args.n_gpu)
            self.density_schedule = density_weight
            self.density_weight = float(density_weight.weight)  # λ once any ramp is over
            self._latest_weight = self.density_weight
            self.density_eps = density_eps
            self.density_count_padding = bool(density_count_padding)
            self.density_targets = density_targets
            self.monitor = self._build_monitor() if monitor is None else monitor
            # Per-micro-batch sums since the last training log, kept on the device (no sync
            # per step); read, gathered across processes and reset in log().
            self._density_sums: torch.Tensor | None = None
            self._density_batches = 0

        def _build_monitor(self) -> DensityMonitor:
            from deft.monitor import DensityMonitor

            return DensityMonitor(self.model, self.density_targets)

        def call_model_init(self, trial: Any = None) -> torch.nn.Module:
            # train() (and every hyperparameter trial) replaces self.model by a new model from
            # model_init: the monitor must move to it, or it waits for activations that never come.
            model = super().call_model_init(trial)
            monitor = getattr(self, "monitor", None)  # None while Trainer.__init__ builds the first
            if monitor is not None:
                monitor.remove()
                self.model = model
                self.monitor = self._build_monitor()
            return model

        def compute_loss(
            self,
            model: torch.nn.Module,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: torch.Tensor | int | None = None,
        ) -> torch.Tensor | tuple[torch.Tensor, Any]:
            batch = dict(inputs)  # the parent may pop "labels" from inputs
            loss, outputs = super().compute_loss(
                model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
            )
            if model.training:
                loss = loss + self._density_term(batch, num_items_in_batch)
            self.monitor.clear()  # autograd keeps what backward needs; drop our references
            return (loss, outputs) if return_outputs else loss

        def prediction_step(self, model: torch.nn.Module, inputs: dict[str, Any], *args, **kwargs):
            # A batch without labels is evaluated without compute_loss: clear here too, or the
            # monitor would hold the batch's activations until the next forward.
            try:
                return super().prediction_step(model, inputs, *args, **kwargs)
            finally:
                self.monitor.clear()

        def current_density_weight(self) -> float:
            """λ for the optimizer step being taken."""
            schedule = self.density_schedule
            if schedule.is_constant:
                return self.density_weight
            return schedule.for_step(self.state.global_step, max(1, self.state.max_steps))

        def _density_term(self, batch: dict[str, Any], num_items_in_batch: Any) -> torch.Tensor:
            weight = self._latest_weight = self.current_density_weight()
            options = {"eps": self.density_eps, "count_padding": self.density_count_padding}
            if weight:
                density = self.monitor.loss_for_batch(batch, **options)
            else:
                with torch.no_grad():  # logged only: no graph for a λ = 0 baseline
                    density = self.monitor.loss_for_batch(batch, **options)
            weighted = weight * density
            self._record(density.detach(), weighted.detach())
            if self._trainer_treats_loss_as_accumulation_scaled(num_items_in_batch):
                weighted = weighted / self._accumulation_steps()
            return weighted

        def _trainer_treats_loss_as_accumulation_scaled(self, num_items_in_batch: Any) -> bool:
            # Mirrors Trainer.training_step: the returned loss is divided by the accumulation
            # steps unless the Trainer counts it as normalised already. When the density term
            # is not divided there, it is divided here, so it averages over the window either way.
            accepts = getattr(self, "model_accepts_loss_kwargs", False)
            has_loss_func = getattr(self, "compute_loss_func", None) is not None
            if not self._trainer_has_ga_override:
                # transformers 4.48.1 - 4.5x: no override, no num_items_in_batch condition
                return bool(accepts) or has_loss_func
            explicit = getattr(self, "loss_is_scaled_for_ga", None)
            if explicit is not None:
                return bool(explicit)
            return bool(accepts and num_items_in_batch is not None) or has_loss_func

        def _accumulation_steps(self) -> int:
            # The last accumulation window of an epoch may be shorter; the Trainer knows.
            steps = getattr(self, "current_gradient_accumulation_steps", None)
            return int(steps or self.args.gradient_accumulation_steps)

        def _record(self, density: torch.Tensor, weighted: torch.Tensor) -> None:
            pair = torch.stack([density.float(), weighted.float()])
            self._density_sums = pair if self._density_sums is None else self._density_sums + pair
            self._density_batches += 1

        def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
            # Training logs carry "loss"; evaluation and the end-of-training summary do not.
            if "loss" in logs and self._density_sums is not None:
                count = self._density_sums.new_tensor([float(self._density_batches)])
                packed = torch.cat([self._density_sums, count]).unsqueeze(0)
                # Every process logs in step (the parent gathers "loss" the same way).
                totals = self.accelerator.gather(packed).sum(dim=0)
                density, weighted = (totals[:2] / totals[2]).tolist()
                logs[UNWEIGHTED_LOG_KEY] = density
                logs[DENSITY_LOG_KEY] = weighted
                # The logged loss is the mean over micro-batches of task + weighted density.
                logs[TASK_LOG_KEY] = logs["loss"] - weighted
                logs[WEIGHT_LOG_KEY] = self._latest_weight
                self._density_sums, self._density_batches = None, 0
            super().log(logs, *args, **kwargs)

    DensityTrainer.__module__ = __name__
    DensityTrainer.__qualname__ = "DensityTrainer"
    return DensityTrainer


def __getattr__(name: str) -> Any:
    # PEP 562: DensityTrainer is built (and transformers imported) on first access only.
    if name == "DensityTrainer":
        cls = _build_density_trainer()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DensityTrainer", "add_density_loss"]  # noqa: F822 (DensityTrainer: lazy, above)

"""Reversible backpropagation over a stack of coupled layers, as one autograd Function.

Forward runs every layer without recording a graph and saves only the final two streams (plus the
layer context every layer shares, and one RNG state per sub-function). Backward walks the layers in
reverse: it recomputes G(y1) and F(x2) with autograd on, one sub-function at a time, to get their
gradients, and inverts the coupling to recover each layer's inputs. Activation memory is therefore
that of one sub-function plus a few B×T×d streams, whatever the depth.

Trainable parameters (and context tensors that need a gradient, such as the encoder output a
decoder's cross-attention reads) are explicit inputs of the Function; their gradients are returned
to autograd rather than written into ``.grad`` behind its back, so gradient accumulation, DDP
reducers and hooks see them as usual.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.utils import _pytree as pytree

from meft.coupling import CoupledLayer, couple, run_sub_function, unswap
from meft.rng import RngStates, capture_rng_state, replayed_rng, states_consumed_since


@dataclasses.dataclass
class AutocastState:
    device_type: str
    enabled: bool
    dtype: torch.dtype

    @classmethod
    def current(cls, device_type: str) -> AutocastState:
        return cls(
            device_type,
            torch.is_autocast_enabled(device_type),
            torch.get_autocast_dtype(device_type),
        )

    def __call__(self) -> torch.autocast:
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)


@dataclasses.dataclass
class StackRun:
    """What one call of the reversible stack needs in backward, apart from the saved tensors."""

    layers: list[CoupledLayer]
    dtype: torch.dtype  # the dtype F and G compute in
    context_spec: pytree.TreeSpec | None = None
    context_leaves: list[Any] = dataclasses.field(default_factory=list)
    rng_states: list[dict[str, RngStates | None]] = dataclasses.field(default_factory=list)
    true_inputs: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # debug mode only
    reconstruction_errors: list[float] | None = None
    reconstruction_tolerance: float = 1e-3
    # Context entries (key/value caches) that forward may write and the recompute must not.
    cache_arguments: tuple[str, ...] = ()
    # Forward appends each layer's output here when asked (the mean of its streams, no graph).
    layer_outputs: list[torch.Tensor] | None = None
    # Called with the per-layer errors once a backward has measured them (debug mode).
    on_reconstructed: Callable[[list[float]], None] | None = None
    # Layers whose exact inputs forward saves, so that backward restarts reconstruction there.
    saved_input_layers: tuple[int, ...] = ()

    @property
    def grad_context_positions(self) -> list[int]:
        return [
            i
            for i, v in enumerate(self.context_leaves)
            if isinstance(v, torch.Tensor) and v.requires_grad
        ]

    def context(self, replacements: dict[int, torch.Tensor] | None = None) -> dict[str, Any]:
        leaves = list(self.context_leaves)
        for position, tensor in (replacements or {}).items():
            leaves[position] = tensor
        return pytree.tree_unflatten(leaves, self.context_spec)


class ReversibleStackFunction(torch.autograd.Function):
    """``apply(run, x1, x2, *grad_context, *parameters) -> (out1, out2)``."""

    @staticmethod
    def forward(ctx, run: StackRun, x1: torch.Tensor, x2: torch.Tensor, *inputs: torch.Tensor):
        ctx.run = run
        ctx.autocast = AutocastState.current(x1.device.type)
        ctx.num_grad_context = len(run.grad_context_positions)
        context = run.context()
        random = any(layer.module.training for layer in run.layers)
        run.rng_states = []
        if run.true_inputs is not None:
            run.true_inputs.clear()
        saved_inputs: list[torch.Tensor] = []
        with torch.no_grad():
            for index, layer in enumerate(run.layers):
                if index in run.saved_input_layers:
                    saved_inputs += [x1, x2]  # never written in place: no copy needed
                if run.true_inputs is not None:
                    run.true_inputs.append((x1.clone(), x2.clone()))
                states: dict[str, RngStates | None] = {"F": None, "G": None}
                before = capture_rng_state(x1.device) if random else None
                y1 = layer.x1_factor * x1 + run_sub_function(layer.F, x2, context, run.dtype)
                states["F"] = states_consumed_since(before, x1.device) if random else None
                before = capture_rng_state(x1.device) if random else None
                y2 = layer.x2_factor * x2 + run_sub_function(layer.G, y1, context, run.dtype)
                states["G"] = states_consumed_since(before, x1.device) if random else None
                x1, x2 = (y2, y1) if layer.swap else (y1, y2)
                run.rng_states.append(states)
                if run.layer_outputs is not None:
                    run.layer_outputs.append(((x1 + x2) / 2).to(run.dtype))
        # Everything backward needs goes through save_for_backward, so memory meters see it all.
        context_tensors = [v for v in run.context_leaves if isinstance(v, torch.Tensor)]
        rng_tensors = [
            t for states in run.rng_states for s in states.values() if s for t in s.values()
        ]
        ctx.save_for_backward(x1, x2, *saved_inputs, *context_tensors, *rng_tensors)
        return x1, x2

    @staticmethod
    def backward(ctx, grad1: torch.Tensor | None, grad2: torch.Tensor | None):
        _refuse_higher_order_gradients()
        run: StackRun = ctx.run
        saved = ctx.saved_tensors  # once: under torch.utils.checkpoint a second read raises
        out1, out2 = saved[:2]
        pairs = saved[2 : 2 + 2 * len(run.saved_input_layers)]
        exact_inputs = {
            index: (pairs[2 * i], pairs[2 * i + 1])
            for i, index in enumerate(run.saved_input_layers)
        }
        grad1 = torch.zeros_like(out1) if grad1 is None else grad1.to(out1.dtype)
        grad2 = torch.zeros_like(out2) if grad2 is None else grad2.to(out2.dtype)
        grad_positions = run.grad_context_positions
        detached = {p: run.context_leaves[p].detach().requires_grad_() for p in grad_positions}
        context = run.context(detached)
        # Forward already wrote this step's keys and values into any cache; the recompute must
        # read the same inputs forward read, not the cache forward left behind.
        context.update({name: None for name in run.cache_arguments if name in context})
        context_grads = {p: None for p in grad_positions}
        parameter_grads: dict[int, torch.Tensor] = {}
        if run.reconstruction_errors is not None:
            run.reconstruction_errors = [0.0] * len(run.layers)

        for index in reversed(range(len(run.layers))):
            layer = run.layers[index]
            parameters = layer.trainable_parameters()
            y1, y2 = unswap(layer, out1, out2)
            g1, g2 = unswap(layer, grad1, grad2)
            states = run.rng_states[index]
            targets = [*detached.values(), *parameters]

            def recompute(fn, x, grad_out, rng_states, targets=targets, parameters=parameters):
                out, grad_x, extra = _recompute(
                    fn, x, grad_out, rng_states, targets, context, run, ctx
                )
                _accumulate(context_grads, parameter_grads, grad_positions, parameters, extra)
                return out, grad_x

            # 1. recompute G(y1), backprop g2 through it, invert for x2
            exact = exact_inputs.get(index)
            g_out, dy1 = recompute(layer.G, y1, g2, states["G"])
            with torch.no_grad():
                x2 = (y2 - g_out) / layer.x2_factor if exact is None else exact[1]
                g1 = g1 + dy1
            del g_out
            # 2. recompute F(x2), backprop the corrected g1 through it, invert for x1
            f_out, dx2 = recompute(layer.F, x2, g1, states["F"])
            with torch.no_grad():
                x1 = (y1 - f_out) / layer.x1_factor if exact is None else exact[0]
                grad1, grad2 = layer.x1_factor * g1, layer.x2_factor * g2 + dx2
            out1, out2 = x1.detach(), x2.detach()
            if run.true_inputs is not None:
                _record_reconstruction(run, index, out1, out2)

        if run.reconstruction_errors is not None and run.on_reconstructed is not None:
            run.on_reconstructed(list(run.reconstruction_errors))
        all_parameters = [p for layer in run.layers for p in layer.trainable_parameters()]
        returned_parameter_grads = [parameter_grads.get(id(p)) for p in all_parameters]
        returned_context_grads = [context_grads[p] for p in grad_positions]
        return None, grad1, grad2, *returned_context_grads, *returned_parameter_grads


def _refuse_higher_order_gradients() -> None:
    """Autograd runs a backward in grad mode only for ``create_graph=True``. The gradients this
    backward returns carry no graph (each sub-function's is freed once used), so a second
    derivative through them would be silently zero: refuse instead."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            "MEFT: the reversible backward is not twice differentiable: it was run with "
            "create_graph=True (a gradient penalty, a Hessian-vector product, MAML, ...), and the "
            "gradients it returns carry no graph, so second derivatives through them would be "
            "silently zero. Convert with MeftConfig(num_reversible_layers=0) (vanilla backprop of "
            "the same architecture) for higher-order gradients."
        )


def _recompute(fn, x, grad_out, rng_states, targets, context, run: StackRun, ctx):
    """fn(x) recomputed exactly as forward ran it (RNG, autocast); backprop ``grad_out`` through it.

    Returns the detached output, the gradient w.r.t. ``x`` and those w.r.t. ``targets``.
    """
    x = x.detach().requires_grad_()
    with torch.enable_grad(), replayed_rng(rng_states, x.device), ctx.autocast():
        out = run_sub_function(fn, x, context, run.dtype)
    grad_x, *extra = _grad(out, [x, *targets], grad_out)
    return out.detach(), grad_x, extra


def _grad(
    output: torch.Tensor, inputs: list[torch.Tensor], grad_output: torch.Tensor
) -> list[torch.Tensor]:
    """Gradients of ``output`` w.r.t. ``inputs``; zeros (not None) for the first, None for unused others."""
    if not output.requires_grad:  # e.g. F ignores its input and has nothing trainable
        return [torch.zeros_like(inputs[0])] + [None] * (len(inputs) - 1)
    grads = torch.autograd.grad(output, inputs, grad_output, allow_unused=True)
    first = grads[0] if grads[0] is not None else torch.zeros_like(inputs[0])
    return [first, *grads[1:]]


def _accumulate(context_grads, parameter_grads, grad_positions, parameters, extra) -> None:
    context_part, parameter_part = extra[: len(grad_positions)], extra[len(grad_positions) :]
    for position, grad in zip(grad_positions, context_part, strict=True):
        if grad is not None:
            context_grads[position] = (
                grad if context_grads[position] is None else context_grads[position] + grad
            )
    for parameter, grad in zip(parameters, parameter_part, strict=True):
        if grad is not None:
            key = id(parameter)
            parameter_grads[key] = (
                grad if key not in parameter_grads else parameter_grads[key] + grad
            )


def _record_reconstruction(run: StackRun, index: int, x1: torch.Tensor, x2: torch.Tensor) -> None:
    true1, true2 = run.true_inputs[index]
    error = max(_relative_error(x1, true1), _relative_error(x2, true2))
    run.reconstruction_errors[index] = error
    if error > run.reconstruction_tolerance:
        warnings.warn(
            f"MEFT: layer {index} inputs were reconstructed with relative error {error:.2e} "
            f"(tolerance {run.reconstruction_tolerance:.0e}); gradients below it are approximate. "
            "Lower precision (fp16/bf16), very small x1/x2 factors and deep stacks amplify "
            "rounding; float64 streams or save_inputs_every bound it.",
            stacklevel=2,
        )


def _relative_error(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    return ((estimate - truth).norm() / truth.norm().clamp_min(1e-12)).item()


def run_stack(
    layers: list[CoupledLayer],
    hidden: torch.Tensor,
    context: dict[str, Any],
    *,
    num_reversible: int,
    stream_dtype: torch.dtype = torch.float32,
    check_reconstruction: bool = False,
    reconstruction_tolerance: float = 1e-3,
    cache_arguments: tuple[str, ...] = (),
    layer_outputs: list[torch.Tensor] | None = None,
    on_reconstructed: Callable[[list[float]], None] | None = None,
    save_inputs_every: int | None = None,
) -> tuple[torch.Tensor, StackRun | None]:
    """Run the coupled stack on ``hidden``: bottom ``num_reversible`` layers reversibly, the rest
    with vanilla autograd. Both streams start as ``hidden``; the result is their mean.
    ``cache_arguments`` name the context entries holding key/value caches, which the backward
    recompute runs without. ``layer_outputs``, if given, receives every layer's output (the mean
    of its streams; without a graph for the reversible layers, which run without autograd).
    ``on_reconstructed`` receives the debug mode's per-layer errors after each backward.
    ``save_inputs_every=k`` keeps the exact inputs of reversible layers 0, k, 2k, …"""
    dtype = hidden.dtype
    x1 = x2 = hidden.to(stream_dtype)
    run = None
    reversible = layers[:num_reversible]
    needs_graph = torch.is_grad_enabled() and (
        hidden.requires_grad or any(layer.trainable_parameters() for layer in reversible)
    )
    if reversible and needs_graph:
        leaves, spec = pytree.tree_flatten(context)
        run = StackRun(
            reversible, dtype, spec, leaves,
            true_inputs=[] if check_reconstruction else None,
            reconstruction_errors=[] if check_reconstruction else None,
            reconstruction_tolerance=reconstruction_tolerance,
            cache_arguments=cache_arguments,
            layer_outputs=layer_outputs,
            on_reconstructed=on_reconstructed,
            saved_input_layers=saved_input_layers(len(reversible), save_inputs_every),
        )  # fmt: skip
        grad_context = [leaves[p] for p in run.grad_context_positions]
        parameters = [p for layer in reversible for p in layer.trainable_parameters()]
        x1, x2 = ReversibleStackFunction.apply(run, x1, x2, *grad_context, *parameters)
        run.layer_outputs = None  # forward filled the caller's list; backward needs none of it
        rest = layers[num_reversible:]
    else:
        rest = layers
    for layer in rest:
        x1, x2 = couple(layer, x1, x2, context, dtype)
        if layer_outputs is not None:
            layer_outputs.append(((x1 + x2) / 2).to(dtype))
    return ((x1 + x2) / 2).to(dtype), run


def saved_input_layers(num_reversible: int, every: int | None) -> tuple[int, ...]:
    """The reversible layers whose inputs are saved: 0, k, 2k, … (none for ``every=None``)."""
    return () if every is None else tuple(range(0, num_reversible, every))

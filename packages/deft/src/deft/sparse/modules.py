"""Drop-in modules that compute an MLP's down projection over active neurons only.

- :class:`SparseLinear` replaces the down projection of a non-gated MLP (BERT ``output.dense``,
  OPT/ViT ``fc2``, T5 ``wo`` …); everything around it (activation, dropout, residual, LayerNorm)
  stays the model's own code.
- :class:`SparseGatedMLP` replaces a whole gated MLP (Llama ``mlp``, Flan-T5 ``DenseReluDense``),
  because the up projection must wait for the gate to know which rows to compute.

Both keep the replaced module's parameters (the same ``nn.Parameter`` objects, registered under the
same names, so ``state_dict()`` keys do not change) and remember the replaced module so that
:func:`deft.sparse.densify` puts it back. The down projection's weight is stored transposed once at
conversion: a ``nn.Linear`` weight [d, F] is re-laid out column-major, so ``weight.t()`` is the
contiguous [F, d] matrix with one row per neuron that the kernels gather from, and no second copy
exists. ``densify`` makes it row-major again. A Pfeiffer adapter on the down projection
(:mod:`deft.adapters`) is kept as the same child and added to the sparse output, as its forward
hook does on the dense projection.

They are inference-only: the sparse paths are not differentiable with respect to the weights in
any useful way and skip dropout, so a forward that needs gradients, or in training mode, raises.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from deft.adapters import ADAPTER_NAME, apply_adapter
from deft.sparse.kernels import (
    DEFAULT_DENSE_ABOVE,
    Strategy,
    check_strategy,
    sparse_down_projection,
    sparse_gated_mlp,
)


def is_conv1d(module: nn.Module) -> bool:
    """transformers' ``Conv1D`` (GPT-2): a linear layer whose weight is stored [in, out]."""
    return type(module).__name__ == "Conv1D" and type(module).__module__.startswith("transformers")


def _transposed_layout(linear: nn.Module) -> torch.Tensor:
    """The [F, d] view of a down projection's weight, re-laying out ``nn.Linear`` once if needed."""
    weight = linear.weight
    if is_conv1d(linear):  # already [in, out]
        return weight
    if not weight.t().is_contiguous():
        # Same Parameter object, new storage: column-major [d, F], i.e. contiguous [F, d] rows.
        weight.data = weight.data.t().contiguous().t()
    return weight.t()


def _restore_layout(linear: nn.Module) -> None:
    if not is_conv1d(linear) and not linear.weight.is_contiguous():
        linear.weight.data = linear.weight.data.contiguous()


def _with_adapter(holder: nn.Module, output: torch.Tensor) -> torch.Tensor:
    """``output`` plus the Pfeiffer adapter (:mod:`deft.adapters`) that ``holder`` carries, if any.

    The dense down projection applies it with a forward hook; the sparse paths compute the
    projection from its weights, so they apply it here, exactly as the hook does.
    """
    if ADAPTER_NAME not in holder._modules:
        return output
    return apply_adapter(holder, output)


class _InferenceOnly(nn.Module):
    """Shared checks and settings of the sparse modules."""

    def _setup(self, name: str, threshold: float, strategy: Strategy, dense_above: float) -> None:
        check_strategy(strategy, dense_above)
        if not isinstance(threshold, (int, float)) or not threshold >= 0:
            raise ValueError(f"{name}: threshold must be a number >= 0, got {threshold!r}")
        self.layer_name = name
        self.threshold = float(threshold)
        self.strategy = strategy
        self.dense_above = float(dense_above)

    def _check_inference(self, x: torch.Tensor) -> None:
        if self.training:
            raise RuntimeError(
                f"{self.layer_name}: deft.sparse modules are inference-only (they skip dropout); "
                "call model.eval(), or deft.sparse.densify(model) to train"
            )
        if torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in self.parameters())
        ):
            raise RuntimeError(
                f"{self.layer_name}: deft.sparse modules are inference-only and this forward needs "
                "gradients; run it under torch.no_grad() or torch.inference_mode() (generate() "
                "does), freeze the model with model.requires_grad_(False), or "
                "deft.sparse.densify(model) to train"
            )

    @property
    def original(self) -> nn.Module:
        """The module this one replaced (sharing its parameters)."""
        return self._original

    def _remember(self, module: nn.Module) -> None:
        # Not a submodule: its parameters are registered on self already, and registering the
        # module would change state_dict() keys and count its parameters twice.
        object.__setattr__(self, "_original", module)

    def extra_repr(self) -> str:
        return (
            f"threshold={self.threshold:g}, strategy={self.strategy!r}, "
            f"dense_above={self.dense_above:g}"
        )


class SparseLinear(_InferenceOnly):
    """A down projection ``y = a W2ᵀ + b`` that reads only the rows of W2ᵀ where ``a`` ≠ 0.

    Args:
        linear: the ``nn.Linear`` (or transformers ``Conv1D``) being replaced.
        threshold: |a| ≤ threshold counts as zero (0: exact zeros only, output equals dense).
        strategy, dense_above: see :mod:`deft.sparse.kernels`.
        name: the layer's name, shown in errors.

    Example:
        >>> linear = nn.Linear(6, 3).eval()
        >>> sparse = SparseLinear(linear)
        >>> a = torch.relu(torch.randn(4, 6))
        >>> with torch.no_grad():
        ...     torch.allclose(sparse(a), linear(a), atol=1e-6)
        True
    """

    def __init__(
        self,
        linear: nn.Module,
        *,
        threshold: float = 0.0,
        strategy: Strategy = "auto",
        dense_above: float = DEFAULT_DENSE_ABOVE,
        name: str = "SparseLinear",
    ) -> None:
        super().__init__()
        self._setup(name, threshold, strategy, dense_above)
        if not (type(linear) is nn.Linear or is_conv1d(linear)):
            raise TypeError(
                f"{name}: can only sparsify an nn.Linear or transformers Conv1D down projection, "
                f"got {type(linear).__name__}"
            )
        self._remember(linear)
        self.training = linear.training
        self.weight = linear.weight
        self.bias = linear.bias
        adapter = linear._modules.get(ADAPTER_NAME)
        if adapter is not None:  # a Pfeiffer adapter: same object, same state_dict keys
            self.add_module(ADAPTER_NAME, adapter)
        self.in_features, self.out_features = self.weight_t.shape

    @property
    def weight_t(self) -> torch.Tensor:
        """The [in_features, out_features] matrix, one contiguous row per input neuron."""
        return _transposed_layout(self.original)

    def forward(self, activation: torch.Tensor) -> torch.Tensor:
        self._check_inference(activation)
        output = sparse_down_projection(
            activation,
            self.weight_t,
            self.bias,
            threshold=self.threshold,
            strategy=self.strategy,
            dense_above=self.dense_above,
        )
        return _with_adapter(self, output)

    def restore(self) -> nn.Module:
        """The original module, with its weight laid out row-major again."""
        _restore_layout(self.original)
        return self.original

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            + super().extra_repr()
        )


class SparseGatedMLP(_InferenceOnly):
    """A gated MLP ``down(act(gate(x)) ⊙ up(x))`` computing up and down for active gates only.

    Args:
        mlp: the gated MLP container being replaced; its children are registered here under the
            same names (``gate_proj``, ``up_proj``, ``down_proj``, ``act_fn`` …).
        gate, up, down, act: the attribute names of the projections and the activation in ``mlp``.
            ``up=None`` means ``gate`` is a fused [2F, d] projection whose first half is the gate
            (Phi-3's ``gate_up_proj``), or its second half with ``gate_last=True`` (timm's
            ``GluMlp``, which computes ``x1 * act(x2)``).
        threshold: |act(gate)| ≤ threshold counts as zero (CATS); 0 keeps exact zeros only.
        strategy, dense_above: see :mod:`deft.sparse.kernels`.
        name: the layer's name, shown in errors.

    Example:
        >>> mlp = nn.Module().eval()
        >>> mlp.gate_proj, mlp.up_proj = nn.Linear(4, 8, bias=False), nn.Linear(4, 8, bias=False)
        >>> mlp.down_proj, mlp.act_fn = nn.Linear(8, 4, bias=False), nn.ReLU()
        >>> x = torch.randn(3, 4)
        >>> dense = mlp.down_proj(mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x))
        >>> sparse = SparseGatedMLP(
        ...     mlp, gate="gate_proj", up="up_proj", down="down_proj", act="act_fn"
        ... )
        >>> with torch.no_grad():
        ...     torch.allclose(sparse(x), dense, atol=1e-6)
        True
    """

    def __init__(
        self,
        mlp: nn.Module,
        *,
        gate: str,
        up: str | None,
        down: str,
        act: str,
        gate_last: bool = False,
        threshold: float = 0.0,
        strategy: Strategy = "auto",
        dense_above: float = DEFAULT_DENSE_ABOVE,
        name: str = "SparseGatedMLP",
    ) -> None:
        super().__init__()
        self._setup(name, threshold, strategy, dense_above)
        if gate_last and up is not None:
            raise ValueError(f"{name}: gate_last=True needs a fused projection (up=None)")
        self.gate_last = gate_last
        for child_name, child in mlp.named_children():
            self.add_module(child_name, child)
        for projection in (gate, up, down):
            module = None if projection is None else mlp._modules.get(projection)
            if projection is not None and type(module) is not nn.Linear:
                raise TypeError(
                    f"{name}: {projection} must be an nn.Linear to be sparsified, got "
                    f"{type(module).__name__}"
                )
        self.gate_name, self.up_name, self.down_name, self.act_name = gate, up, down, act
        _transposed_layout(mlp._modules[down])
        self._remember(mlp)
        self.training = mlp.training  # not train(): that would also set the children's modes

    def _act(self) -> Callable[[torch.Tensor], torch.Tensor]:
        act = self._modules.get(self.act_name)
        return act if act is not None else getattr(self.original, self.act_name)

    def _gate_and_up(self) -> tuple[torch.Tensor, ...]:
        gate = self._modules[self.gate_name]
        if self.up_name is not None:
            up = self._modules[self.up_name]
            return gate.weight, gate.bias, up.weight, up.bias
        half = gate.weight.shape[0] // 2  # fused [gate; up], or [up; gate] with gate_last
        first, second = slice(None, half), slice(half, None)
        gate_rows, up_rows = (second, first) if self.gate_last else (first, second)
        bias = gate.bias
        return (
            gate.weight[gate_rows],
            None if bias is None else bias[gate_rows],
            gate.weight[up_rows],
            None if bias is None else bias[up_rows],
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_inference(x)
        gate_weight, gate_bias, up_weight, up_bias = self._gate_and_up()
        down = self._modules[self.down_name]
        output = sparse_gated_mlp(
            x,
            gate_weight,
            up_weight,
            _transposed_layout(down),
            self._act(),
            gate_bias=gate_bias,
            up_bias=up_bias,
            down_bias=down.bias,
            threshold=self.threshold,
            strategy=self.strategy,
            dense_above=self.dense_above,
        )
        return _with_adapter(down, output)

    def restore(self) -> nn.Module:
        """The original MLP, with its down projection's weight laid out row-major again."""
        _restore_layout(self.original._modules[self.down_name])
        return self.original

"""The arithmetic of sparse inference: a down projection that reads only the active neurons.

For one token with MLP activation ``a`` ∈ R^F and down projection ``W2`` (``y = a W2 + b``, with
``W2`` stored as ``weight_t`` [F, d], one contiguous row per neuron)::

    y = b + Σ_{i: a_i ≠ 0} a_i · weight_t[i, :]

so only the rows of active neurons are read. Gated MLPs (``down(act(gate(x)) ⊙ up(x))``) compute
the gate first: only the rows of ``W_up`` whose gate is active are needed too.

Batches of N tokens, three strategies (``strategy=``), all computing the same sums:

- ``"gather"``: the *union* of active neurons over the N rows, ``a[:, idx] @ weight_t[idx]``.
  For one token this is the exact active set and the fastest path; for N tokens the union grows
  like 1 − (1 − density)^N when tokens activate different neurons, so it soon reaches the dense cost.
- ``"rows"``: each row sums only its own active rows of ``weight_t``, in one fused call
  (``embedding_bag`` with per-sample weights: a bag per token, the activations as weights). Work is
  N·density·F·d whatever the overlap between tokens; measured faster than ``"gather"`` for N > 1.
- ``"dense"``: the ordinary matmul, for comparison and for dense activations.

``"auto"`` takes ``"gather"`` for one token and ``"rows"`` for several, and falls back to
``"dense"`` when the fraction of active entries exceeds ``dense_above`` (there the dense matmul
is faster; ``benchmarks/deft/bench_sparse.py`` measures the crossover). Gated MLPs always use the
union for the up projection (a per-token up projection would gather N·k rows of ``W_up``, far
slower than one small matmul), then the same union for the down projection (``"rows"``: each
token sums its own active rows of that union).

Thresholding (CATS / TEAL): ``threshold=τ > 0`` treats |a| ≤ τ as zero. With τ = 0 only exact
zeros are skipped and the result equals the dense computation up to float summation order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

Strategy = Literal["auto", "gather", "rows", "dense"]
STRATEGIES: tuple[str, ...] = ("auto", "gather", "rows", "dense")
# Above this fraction of active entries "auto" uses the dense matmul. Measured on CPU (fp32,
# SmolLM2- and BERT-base-sized MLPs): sparse paths lose to dense somewhere between 30 % and 60 %
# active depending on the number of tokens; see the crossover in benchmarks/deft/bench_sparse.py.
DEFAULT_DENSE_ABOVE = 0.4


def check_strategy(strategy: str, dense_above: float) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if not isinstance(dense_above, (int, float)) or not 0.0 <= dense_above <= 1.0:
        raise ValueError(f"dense_above must be a fraction in [0, 1], got {dense_above!r}")


def threshold_activation(activation: torch.Tensor, threshold: float) -> torch.Tensor:
    """Zero the entries with |a| ≤ ``threshold``; τ = 0 returns ``activation`` itself.

    τ = 0 must not touch the tensor: ``|a| > 0`` is false for NaN, which the dense computation
    would propagate.

    Example:
        >>> threshold_activation(torch.tensor([-0.5, 0.1, 0.0, 2.0]), 0.1)
        tensor([-0.5000,  0.0000,  0.0000,  2.0000])
    """
    if threshold == 0:
        return activation
    return torch.where(activation.abs() > threshold, activation, activation.new_zeros(()))


def per_layer_thresholds(
    names: Sequence[str], thresholds: float | Mapping[str, float], argument: str
) -> dict[str, float]:
    """One τ per layer name: a number for all of them, or a mapping with exactly these keys.

    Example:
        >>> per_layer_thresholds(["a", "b"], 0.1, "threshold")
        {'a': 0.1, 'b': 0.1}
    """
    if isinstance(thresholds, Mapping):
        missing = [name for name in names if name not in thresholds]
        unknown = [name for name in thresholds if name not in names]
        if missing or unknown:
            raise ValueError(
                f"{argument} must map every MLP activation to a τ (as calibrate_threshold returns, "
                f"with the same targets and gated mode): missing {missing}, unknown {unknown}; "
                f"the layers are {list(names)}"
            )
        values = {name: thresholds[name] for name in names}
    else:
        values = dict.fromkeys(names, thresholds)
    for name, tau in values.items():
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau >= 0:
            raise ValueError(f"{argument} for {name} must be a number >= 0, got {tau!r}")
    return {name: float(tau) for name, tau in values.items()}


def _rows_offsets(row_of_entry: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Start of each row's entries in a row-major list of nonzeros (what embedding_bag reads)."""
    counts = torch.bincount(row_of_entry, minlength=num_rows)
    return torch.cumsum(counts, 0) - counts


def _dense(a: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return a @ weight_t if bias is None else torch.addmm(bias, a, weight_t)


def _gather(
    a: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None, active: torch.Tensor
) -> torch.Tensor:
    return _dense(a.index_select(1, active), weight_t.index_select(0, active), bias)


def _rows(a: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    rows, columns = a.nonzero(as_tuple=True)  # row-major order: the entries of a row are adjacent
    offsets = _rows_offsets(rows, a.shape[0])
    out = F.embedding_bag(
        columns, weight_t, offsets, mode="sum", per_sample_weights=a[rows, columns]
    )
    return out if bias is None else out + bias


def sparse_down_projection(
    activation: torch.Tensor,
    weight_t: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    threshold: float = 0.0,
    strategy: Strategy = "auto",
    dense_above: float = DEFAULT_DENSE_ABOVE,
) -> torch.Tensor:
    """``threshold(activation) @ weight_t + bias``, reading only the rows of active neurons.

    Args:
        activation: [..., F] (any leading dimensions; they are flattened into tokens).
        weight_t: [F, d], the down projection with one contiguous row per neuron
            (``linear.weight.t()`` stored contiguously).
        bias: [d] or None.
        threshold: |a| ≤ threshold counts as zero (0: exact zeros only).
        strategy, dense_above: see the module docstring.

    Example:
        >>> a = torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])
        >>> weight_t = torch.tensor([[1.0, 1.0], [10.0, 20.0], [5.0, 5.0]])
        >>> sparse_down_projection(a, weight_t, torch.tensor([0.5, 0.5]))
        tensor([[20.5000, 40.5000],
                [ 1.5000,  1.5000]])
    """
    check_strategy(strategy, dense_above)
    features = weight_t.shape[0]
    if activation.shape[-1] != features:
        raise ValueError(
            f"activation has {activation.shape[-1]} features but weight_t has {features} rows "
            f"(shapes {tuple(activation.shape)} and {tuple(weight_t.shape)})"
        )
    leading = activation.shape[:-1]
    a = threshold_activation(activation.reshape(-1, features), threshold).to(weight_t.dtype)
    out = _down_rows(a, weight_t, bias, strategy, dense_above)
    return out.reshape(*leading, weight_t.shape[1])


def _down_rows(
    a: torch.Tensor,
    weight_t: torch.Tensor,
    bias: torch.Tensor | None,
    strategy: str,
    dense_above: float,
) -> torch.Tensor:
    if strategy == "dense" or a.shape[0] == 0:
        return _dense(a, weight_t, bias)
    if strategy == "rows" or (strategy == "auto" and a.shape[0] > 1):
        nonzero = a != 0
        if strategy == "auto" and float(nonzero.float().mean()) > dense_above:
            return _dense(a, weight_t, bias)
        return _rows(a, weight_t, bias)
    active = a.ne(0).any(dim=0).nonzero().squeeze(1)
    if strategy == "auto" and active.numel() > dense_above * a.shape[1]:
        return _dense(a, weight_t, bias)
    return _gather(a, weight_t, bias, active)


def sparse_gated_mlp(
    x: torch.Tensor,
    gate_weight: torch.Tensor,
    up_weight: torch.Tensor,
    down_weight_t: torch.Tensor,
    act: Callable[[torch.Tensor], torch.Tensor],
    *,
    gate_bias: torch.Tensor | None = None,
    up_bias: torch.Tensor | None = None,
    down_bias: torch.Tensor | None = None,
    threshold: float = 0.0,
    strategy: Strategy = "auto",
    dense_above: float = DEFAULT_DENSE_ABOVE,
) -> torch.Tensor:
    """``down(threshold(act(gate(x))) ⊙ up(x))`` computing ``up`` and ``down`` for active neurons only.

    ``gate_weight`` and ``up_weight`` are [F, d_in] (``nn.Linear`` layout: one contiguous row per
    neuron), ``down_weight_t`` is [F, d_out]. The gate is computed densely (it decides which
    neurons are active), then the union of active neurons over the tokens selects the rows of
    ``W_up`` and ``down_weight_t`` that are read.

    Example:
        >>> x = torch.tensor([[1.0, -1.0]])
        >>> gate = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # relu(gate x) = [1, 0]: neuron 1 is off
        >>> up = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
        >>> down_t = torch.tensor([[1.0, 1.0, 1.0], [7.0, 7.0, 7.0]])
        >>> sparse_gated_mlp(x, gate, up, down_t, torch.relu)
        tensor([[2., 2., 2.]])
    """
    check_strategy(strategy, dense_above)
    features = gate_weight.shape[0]
    leading = x.shape[:-1]
    # act sees the gate in the caller's shape: hooks on it (DensityMonitor, deft.thresholding) too
    gate = threshold_activation(act(F.linear(x, gate_weight, gate_bias)), threshold)
    gate, x = gate.reshape(-1, features), x.reshape(-1, x.shape[-1])
    active = gate.ne(0).any(dim=0).nonzero().squeeze(1)
    if strategy == "dense" or (strategy == "auto" and active.numel() > dense_above * features):
        hidden = (gate * F.linear(x, up_weight, up_bias)).to(down_weight_t.dtype)
        out = _dense(hidden, down_weight_t, down_bias)
    else:
        up_rows = up_weight.index_select(0, active)
        up_bias_rows = None if up_bias is None else up_bias.index_select(0, active)
        hidden = gate.index_select(1, active) * F.linear(x, up_rows, up_bias_rows)
        hidden = hidden.to(down_weight_t.dtype)
        if strategy == "rows":
            out = _rows_of_subset(hidden, down_weight_t, down_bias, active)
        else:
            out = _dense(hidden, down_weight_t.index_select(0, active), down_bias)
    return out.reshape(*leading, down_weight_t.shape[1])


def _rows_of_subset(
    hidden: torch.Tensor,
    weight_t: torch.Tensor,
    bias: torch.Tensor | None,
    active: torch.Tensor,
) -> torch.Tensor:
    """The per-token down projection of a [N, k] hidden over the neurons ``active`` [k]."""
    rows, columns = hidden.nonzero(as_tuple=True)
    offsets = _rows_offsets(rows, hidden.shape[0])
    out = F.embedding_bag(
        active[columns], weight_t, offsets, mode="sum", per_sample_weights=hidden[rows, columns]
    )
    return out if bias is None else out + bias

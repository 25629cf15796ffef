"""Sparse inference for DEFT models: MLP down projections that skip inactive neurons (spec §7).

For one token the down projection is ``y = Σ_{i: a_i ≠ 0} a_i · W2[i, :]``, so a model whose MLP
activations are mostly exact zeros (what the DEFT density loss trains for, or what thresholding
makes) needs only the rows of W2 of its active neurons. :func:`sparsify` swaps every MLP's down
projection (for gated MLPs: the up projection too, computed after the gate) for a module that
reads only those rows; :func:`densify` puts the original modules back.

Inference-only: run the sparse model in ``eval()`` mode under ``torch.no_grad()`` /
``torch.inference_mode()``. Models wrapped by Hugging Face peft are looked through, but adapters
on MLP projections must be merged first (``model.merge_and_unload()``).

Example:
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaModel
    >>> config = LlamaConfig(
    ...     hidden_size=32,
    ...     intermediate_size=64,
    ...     num_hidden_layers=2,
    ...     num_attention_heads=2,
    ...     num_key_value_heads=2,
    ...     vocab_size=100,
    ...     hidden_act="relu",
    ... )
    >>> model = LlamaModel(config).eval()
    >>> ids = torch.tensor([[1, 2, 3, 4]])
    >>> with torch.no_grad():
    ...     dense = model(ids).last_hidden_state
    ...     model = sparsify(model)
    ...     sparse = model(ids).last_hidden_state
    >>> torch.allclose(sparse, dense, atol=1e-5), type(model.layers[0].mlp).__name__
    (True, 'SparseGatedMLP')
    >>> type(densify(model).layers[0].mlp).__name__
    'LlamaMLP'
"""

from __future__ import annotations

from deft.sparse.convert import RULES, SparseRule, densify, sparse_modules, sparsify
from deft.sparse.kernels import (
    DEFAULT_DENSE_ABOVE,
    STRATEGIES,
    sparse_down_projection,
    sparse_gated_mlp,
    threshold_activation,
)
from deft.sparse.modules import SparseGatedMLP, SparseLinear

__all__ = [
    "DEFAULT_DENSE_ABOVE",
    "RULES",
    "STRATEGIES",
    "SparseGatedMLP",
    "SparseLinear",
    "SparseRule",
    "densify",
    "sparse_down_projection",
    "sparse_gated_mlp",
    "sparse_modules",
    "sparsify",
    "threshold_activation",
]

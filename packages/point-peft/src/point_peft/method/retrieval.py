"""Parameter-free attention over the memory bank: the context tokens of the point-prior prompt.

For a query feature ``q`` and the bank ``M`` (dim × size, unit columns)::

    q̂ = q / ‖q‖,   s = q̂ᵀ M,   (v, I) = top-K(s),   α = softmax(v),   r = Σ_k α_k M[:, I_k]

and the context is the K + 2 tokens ``[q ; r ; M[:, I_1] ; … ; M[:, I_K]]``. Everything is batched
(one matrix product, one ``topk``, one gather): the reference looped over the samples in Python
and went through ``.tolist()`` for the gather.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class Retrieval(NamedTuple):
    """Result of :func:`retrieve` for a batch of queries."""

    similarities: (
        torch.Tensor
    )  # (batch, K) cosine similarities of the retrieved entries, descending
    indices: torch.Tensor  # (batch, K) their columns in the bank
    weights: torch.Tensor  # (batch, K) softmax of the similarities
    entries: torch.Tensor  # (batch, K, dim) the retrieved bank columns
    aggregated: torch.Tensor  # (batch, dim) Σ_k weights_k · entries_k
    context: torch.Tensor  # (batch, K + 2, dim) [query ; aggregated ; entries]


def retrieve(query: torch.Tensor, bank: torch.Tensor, top_k: int) -> Retrieval:
    """Retrieve the ``top_k`` bank entries most similar to each query and build the context tokens.

    Args:
        query: (batch, dim) query features (not normalised: the context carries them as they are).
        bank: (dim, size) memory-bank features with unit columns.
        top_k: entries per query, ``1 <= top_k <= size``.

    Example:
        >>> bank = torch.tensor([[1.0, 0.0, 0.6], [0.0, 1.0, 0.8]])
        >>> result = retrieve(torch.tensor([[2.0, 0.0]]), bank, top_k=2)
        >>> result.indices, result.similarities
        (tensor([[0, 2]]), tensor([[1.0000, 0.6000]]))
        >>> result.context.shape
        torch.Size([1, 4, 2])
    """
    if query.dim() != 2:
        raise ValueError(f"query must have shape (batch, dim), got {tuple(query.shape)}")
    if bank.dim() != 2 or bank.shape[0] != query.shape[1]:
        raise ValueError(
            f"bank must have shape (dim, size) with dim={query.shape[1]} (the query's feature "
            f"size), got {tuple(bank.shape)}"
        )
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= bank.shape[1]:
        raise ValueError(f"top_k must be an integer in [1, {bank.shape[1]}], got {top_k!r}")
    bank = bank.to(query.dtype)
    similarities = F.normalize(query, dim=1) @ bank  # (batch, size)
    values, indices = similarities.topk(top_k, dim=1)  # sorted, largest first
    weights = values.softmax(dim=1)  # temperature 1, as the reference
    entries = bank.t()[indices]  # (batch, K, dim): one gather for the whole batch
    aggregated = torch.bmm(weights.unsqueeze(1), entries).squeeze(1)
    context = torch.cat([query.unsqueeze(1), aggregated.unsqueeze(1), entries], dim=1)
    return Retrieval(values, indices, weights, entries, aggregated, context)

"""Pairwise squared distances and k-nearest-neighbour search in plain PyTorch (CPU and GPU)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from point_peft.ops._checks import check_count, check_points, check_same_batch, working_dtype
from point_peft.ops.indexing import index_points

# Elements of one (batch, chunk, num_ref) block of candidate distances. On CPU a block that stays
# near the caches was fastest (measured: 32 x 32 x 2048 beat both 32 x 4 and 32 x 128); on an
# accelerator, bigger blocks mean fewer kernel launches.
_CPU_BLOCK_ELEMENTS = 2**21
_ACCELERATOR_BLOCK_ELEMENTS = 2**26


class Neighbors(NamedTuple):
    """Result of :func:`knn`: both (batch, num_query, k), nearest first."""

    distances: torch.Tensor  # squared Euclidean distances
    indices: torch.Tensor  # int64 indices into the reference points


def squared_distances(query: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Exact squared Euclidean distances (batch, M, N) between (batch, M, 3) and (batch, N, 3).

    Computed from coordinate differences (so a point's distance to itself is exactly 0), one
    coordinate at a time to keep the peak memory at two (batch, M, N) tensors. Differentiable.
    Unchecked: callers validate.

    Example:
        >>> squared_distances(
        ...     torch.tensor([[[0.0, 0, 0]]]), torch.tensor([[[1.0, 2, 2], [0, 0, 0]]])
        ... )
        tensor([[[9., 0.]]])
    """
    total = None
    for axis in range(3):
        term = (query[..., axis, None] - ref[..., None, :, axis]).square()
        total = term if total is None else total + term
    return total


def knn(
    query: torch.Tensor, ref: torch.Tensor, k: int, *, chunk_size: int | None = None
) -> Neighbors:
    """The ``k`` nearest reference points of every query point, sorted nearest first.

    Candidates are ranked per chunk of queries with ``topk``. On CPU the ranking score is one batched
    matrix product, ``|r|² - 2 q·r``, after moving both clouds to the reference centroid (which
    limits float cancellation); elsewhere, or when float32 matmuls may use bf16/TF32 (see
    ``torch.set_float32_matmul_precision``), it is the exact squared distance. Autocast is switched
    off for the search. The distances of the ``k`` winners are then recomputed exactly from
    coordinate differences and the winners re-sorted by them: the returned distances are exact
    squared distances, sorted ascending. With the matrix product, a neighbour whose distance differs
    from the k-th by less than its rounding (about 1e-7 of the squared cloud radius in float32) may
    be swapped with the k-th; among exactly equal distances, which index is returned is unspecified.

    Args:
        query: (batch, M, 3) finite coordinates.
        ref: (batch, N, 3) finite coordinates on the same device, same batch size.
        k: neighbours per query point, ``1 <= k <= N``.
        chunk_size: query points per block; the (batch, chunk_size, N) candidate block bounds the
            memory. ``None`` picks it from the sizes and the device (about 8 MiB of float32 per block
            on CPU, 256 MiB on an accelerator).

    Returns:
        :class:`Neighbors` ``(distances, indices)``: squared distances (differentiable with respect
        to both clouds) in the promoted input dtype but at least float32, because squared distances
        overflow float16 beyond 255 units; and int64 indices into ``ref``.

    Example:
        >>> ref = torch.tensor([[[0.0, 0, 0], [3, 0, 0], [1, 0, 0]]])
        >>> knn(torch.tensor([[[0.9, 0, 0]]]), ref, k=2)
        Neighbors(distances=tensor([[[0.0100, 0.8100]]]), indices=tensor([[[2, 0]]]))
    """
    check_points("query", query)
    check_points("ref", ref)
    check_same_batch("query", query, "ref", ref)
    k = check_count("k", k, at_most=ref.shape[1], what="points per cloud in ref")
    if chunk_size is not None:
        chunk_size = check_count("chunk_size", chunk_size)
    dtype = working_dtype(query, ref)
    query, ref = query.to(dtype), ref.to(dtype)
    indices = _nearest_indices(query, ref, k, chunk_size or _auto_chunk_size(ref))
    distances = _distances_to_own(query, index_points(ref, indices))
    distances, order = distances.sort(dim=-1, stable=True)
    return Neighbors(distances, indices.gather(-1, order))


def _distances_to_own(query: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    # (batch, M, 3) points and their own (batch, M, k, 3) neighbours -> (batch, M, k)
    return (neighbours - query.unsqueeze(-2)).square().sum(dim=-1)


def _auto_chunk_size(ref: torch.Tensor) -> int:
    budget = _CPU_BLOCK_ELEMENTS if ref.device.type == "cpu" else _ACCELERATOR_BLOCK_ELEMENTS
    return max(1, budget // max(1, ref.shape[0] * ref.shape[1]))


@torch.no_grad()
def _nearest_indices(
    query: torch.Tensor, ref: torch.Tensor, k: int, chunk_size: int
) -> torch.Tensor:
    if _matmul_is_full_precision(ref):
        center = ref.mean(dim=1, keepdim=True)
        query, ref = query - center, ref - center
        score = _matmul_scores
    else:
        score = squared_distances
    blocks = []
    # Under autocast the product would run in bf16/fp16 and scramble the ranking.
    with torch.autocast(ref.device.type, enabled=False):
        for begin in range(0, query.shape[1], chunk_size):
            scores = score(query[:, begin : begin + chunk_size], ref)
            blocks.append(scores.topk(k, dim=-1, largest=False, sorted=False).indices)
    if not blocks:  # no query points
        return torch.empty(query.shape[0], 0, k, dtype=torch.long, device=query.device)
    return torch.cat(blocks, dim=1)


def _matmul_scores(query: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    # |q - r|² - |q|²: |q|² is the same for every candidate of a query, so it cannot change the
    # ranking and is left out.
    norms = ref.square().sum(dim=-1).unsqueeze(1)
    return torch.baddbmm(norms, query, ref.transpose(1, 2), alpha=-2)


def _matmul_is_full_precision(ref: torch.Tensor) -> bool:
    """Whether to rank candidates by matrix product: on CPU, unless fp32 matmuls may use bf16/TF32.

    On CPU the product is about twice as fast as coordinate differences. On accelerators the
    differences cost next to nothing and are immune to TF32, which is often switched on there.
    """
    if ref.device.type != "cpu":
        return False
    if ref.dtype == torch.float64:
        return True
    try:  # the per-backend API (torch >= 2.9); the legacy getter raises once both were used
        return torch.backends.mkldnn.matmul.fp32_precision in ("none", "ieee")
    except AttributeError:
        return torch.get_float32_matmul_precision() == "highest"

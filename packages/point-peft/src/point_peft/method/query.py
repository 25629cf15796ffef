"""The frozen encoder pass behind the memory bank and the queries, and the per-sample query cache.

One feature per cloud: group the points (no masking), embed the patches, run the blocks with the
positions added before each, apply the final LayerNorm and max-pool over the patch tokens. No cls
token takes part: the pre-trained Point-MAE encoder that produced the reference's memory bank has
none. The memory bank is this feature over the training split; a query is the same feature of the
(augmented) training or test cloud, computed under ``no_grad`` (the reference ran this second
encoder with autograd on, for nothing).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from point_peft.models import PointTransformerEncoder
from point_peft.ops import group


def pooled_token_features(
    encoder: PointTransformerEncoder, points: torch.Tensor, num_groups: int, group_size: int
) -> torch.Tensor:
    """Max over the final-LayerNorm patch tokens of ``encoder`` on ``points``: (batch, embed_dim).

    Runs in whatever mode ``encoder`` is in; callers use :func:`evaluation_mode` and ``no_grad``.

    Example:
        >>> from point_peft.models import PointMAE, PointTransformerConfig
        >>> model = PointMAE(PointTransformerConfig.small(num_classes=4)).eval()
        >>> points = torch.rand(2, 256, 3, generator=torch.Generator().manual_seed(0))
        >>> pooled_token_features(model, points, num_groups=16, group_size=8).shape
        torch.Size([2, 96])
    """
    centers, neighborhoods, _ = group(
        points, num_groups, group_size, start=encoder.config.fps_start
    )
    tokens = encoder.embed_patches(neighborhoods)
    tokens = encoder.blocks(tokens, encoder.pos_embed(centers))
    return encoder.norm(tokens).amax(dim=1)


@contextlib.contextmanager
def evaluation_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule of ``module`` in eval mode, and restore each one's own mode afterwards.

    (``module.train(previous)`` would not do: Point-PEFT keeps frozen BatchNorms in eval mode inside
    a model in train mode.)

    Example:
        >>> net = nn.Sequential(nn.Dropout(0.5), nn.BatchNorm1d(2))
        >>> _ = net[1].eval()
        >>> with evaluation_mode(net):
        ...     net[0].training
        False
        >>> net[0].training, net[1].training
        (True, False)
    """
    modes = [(submodule, submodule.training) for submodule in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for submodule, training in modes:
            submodule.training = training


class _PooledFeatures(nn.Module):
    """``pooled_token_features`` as a module, so that ``torch.func.functional_call`` can run it with
    the backbone's pre-trained values in place of the ones fine-tuning changes."""

    def __init__(self, encoder: PointTransformerEncoder, num_groups: int, group_size: int):
        super().__init__()
        self.encoder = encoder
        self.num_groups = num_groups
        self.group_size = group_size

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return pooled_token_features(self.encoder, points, self.num_groups, self.group_size)


class FrozenQueryEncoder(nn.Module):
    """The pre-trained encoder as it was when Point-PEFT was applied: the query feature extractor.

    It shares the backbone's frozen weights. Fine-tuning changes some backbone tensors that the
    query pass uses (the BitFit biases, the final LayerNorm, the patch encoder's BatchNorm
    statistics when they move), and the queries must stay in the feature space of the memory bank,
    so the values those tensors had at wrapping time are kept here (``original_values``, a few tens
    of thousands of numbers, not saved: ``peft_core.load`` wraps a freshly loaded pre-trained
    backbone, which has them) and substituted by ``torch.func.functional_call``.

    Example:
        >>> from point_peft.models import PointMAE, PointTransformerConfig
        >>> model = PointMAE(PointTransformerConfig.small(num_classes=4))
        >>> queries = FrozenQueryEncoder(model, ["norm.bias"], num_groups=16, group_size=8)
        >>> points = torch.rand(2, 256, 3, generator=torch.Generator().manual_seed(0))
        >>> before = queries(points)
        >>> with torch.no_grad():
        ...     _ = model.norm.bias.add_(1.0)  # fine-tuning moves the final LayerNorm
        >>> torch.equal(queries(points), before)
        True
    """

    def __init__(
        self, backbone: PointTransformerEncoder, names: list[str], num_groups: int, group_size: int
    ) -> None:
        super().__init__()
        # Not a registered submodule: the backbone belongs to the Point-PEFT model, and registering
        # it twice would list its tensors twice in state_dict().
        self.__dict__["_runner"] = _PooledFeatures(backbone, num_groups, group_size)
        tensors = dict(backbone.named_parameters())
        tensors.update(backbone.named_buffers())
        unknown = sorted(set(names) - set(tensors))
        if unknown:
            raise KeyError(f"FrozenQueryEncoder: the backbone has no tensor named {unknown}")
        self.names = list(names)
        for index, name in enumerate(self.names):
            self.register_buffer(
                f"original_{index}", tensors[name].detach().clone(), persistent=False
            )

    @property
    def original_values(self) -> dict[str, torch.Tensor]:
        """Backbone tensor name → its value at wrapping time."""
        return {name: getattr(self, f"original_{index}") for index, name in enumerate(self.names)}

    @torch.no_grad()
    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Query features (batch, embed_dim) of ``points`` (batch, N, 3), without autograd."""
        runner = self._runner
        values = {f"encoder.{name}": value for name, value in self.original_values.items()}
        with evaluation_mode(runner.encoder):
            return torch.func.functional_call(runner, values, (points,))

    def extra_repr(self) -> str:
        runner = self._runner
        return (
            f"num_groups={runner.num_groups}, group_size={runner.group_size}, "
            f"original_values={len(self.names)}"
        )


class QueryFeatureCache:
    """Query features of training samples, by sample index, filled as the samples are first seen.

    Storage grows by doubling; lookups and stores are single indexing ops on the batch.

    Example:
        >>> cache = QueryFeatureCache()
        >>> features = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
        >>> cache.fetch(torch.tensor([5, 7]), lambda rows: features[rows])
        tensor([[1., 2.],
                [3., 4.]])
        >>> cache.fetch(torch.tensor([7, 5]), lambda rows: 1 / 0)  # both cached: nothing computed
        tensor([[3., 4.],
                [1., 2.]])
        >>> len(cache)
        2
    """

    def __init__(self) -> None:
        self.features: torch.Tensor | None = None
        self.filled: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.filled is None else int(self.filled.sum())

    def clear(self) -> None:
        self.features = self.filled = None

    def fetch(self, indices: torch.Tensor, compute: Any) -> torch.Tensor:
        """Cached features of ``indices`` (batch,); ``compute(rows)`` gives those of the batch rows
        ``rows`` (a bool mask over the batch) that are not cached yet, and they are stored."""
        if indices.dim() != 1 or indices.dtype not in (torch.int32, torch.int64):
            raise ValueError(
                f"sample_indices must be a 1-D integer tensor, got shape {tuple(indices.shape)} "
                f"and dtype {indices.dtype}"
            )
        if indices.numel() and int(indices.min()) < 0:
            raise ValueError("sample_indices must be >= 0")
        if self.filled is None:
            missing = torch.ones_like(indices, dtype=torch.bool)
        else:
            indices = indices.to(self.filled.device)
            inside = indices < self.filled.shape[0]
            missing = ~inside
            missing[inside] = ~self.filled[indices[inside]]
        if bool(missing.any()):
            computed = compute(missing)
            self._store(indices[missing], computed)
        return self.features[indices]

    def _store(self, indices: torch.Tensor, features: torch.Tensor) -> None:
        needed = int(indices.max()) + 1
        if self.features is None:
            self.features = features.new_zeros(max(needed, 1), features.shape[-1])
            self.filled = torch.zeros(
                self.features.shape[0], dtype=torch.bool, device=features.device
            )
        elif needed > self.features.shape[0]:
            size = max(needed, 2 * self.features.shape[0])
            grown = self.features.new_zeros(size, self.features.shape[1])
            grown[: self.features.shape[0]] = self.features
            filled = torch.zeros(size, dtype=torch.bool, device=self.filled.device)
            filled[: self.filled.shape[0]] = self.filled
            self.features, self.filled = grown, filled
        self.features[indices] = features.to(self.features.dtype)
        self.filled[indices] = True


class WithSampleIndices(Dataset):
    """Adds ``"sample_indices"`` (the item's index) to every item of a dataset of dicts, so that a
    batch tells the model which training samples it holds (for ``cache_query_features``).

    Example:
        >>> data = WithSampleIndices([{"points": torch.zeros(4, 3), "labels": 1}])
        >>> sorted(data[0])
        ['labels', 'points', 'sample_indices']
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        if not isinstance(item, dict):
            raise TypeError(
                f"WithSampleIndices needs items that are dicts, got {type(item).__name__}"
            )
        return {**item, "sample_indices": int(index) % len(self.dataset)}

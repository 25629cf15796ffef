"""Point-PEFT (Tang et al., AAAI 2024): point-prior prompt with a memory bank, geometry-aware adapter.

Where the math lives:

- :mod:`~point_peft.method.config` — :class:`PointPeftConfig`, every setting and its default.
- :mod:`~point_peft.method.memory_bank` — :class:`MemoryBank` and :func:`build_memory_bank`.
- :mod:`~point_peft.method.query` — the frozen encoder pass behind the bank and the queries.
- :mod:`~point_peft.method.retrieval` — parameter-free attention over the bank (the context).
- :mod:`~point_peft.method.prompt` — the prompts of one layer.
- :mod:`~point_peft.method.geometry_adapter` — grouping, local attention, propagation.
- :mod:`~point_peft.method.ffn_adapter` — the adapter on each frozen FFN branch.
- :mod:`~point_peft.method.layer` — one layer's order of operations.
- :mod:`~point_peft.method.model` — :func:`get_point_peft_model` and :class:`PointPeftModel`.

Example:
    >>> import torch, peft_core
    >>> from point_peft.method import PointPeftConfig, build_memory_bank, get_point_peft_model
    >>> from point_peft.models import PointMAE, PointTransformerConfig
    >>> backbone = PointMAE(PointTransformerConfig.small(num_classes=4))
    >>> train_clouds = torch.rand(8, 256, 3, generator=torch.Generator().manual_seed(0))
    >>> bank = build_memory_bank(
    ...     backbone, [train_clouds], num_groups=16, group_size=8, progress=False
    ... )
    >>> config = PointPeftConfig(
    ...     prompt_layers=2, ga_anchors=16, ga_neighbors=8, query_num_groups=16, query_group_size=8
    ... )
    >>> model = get_point_peft_model(backbone, config, memory_bank=bank)
    >>> output = model(train_clouds[:4], labels=torch.tensor([0, 1, 2, 3]))
    >>> output.logits.shape, output.loss.shape
    (torch.Size([4, 4]), torch.Size([]))
"""

from __future__ import annotations

from point_peft.method.config import PointPeftConfig
from point_peft.method.ffn_adapter import FfnAdapter
from point_peft.method.geometry_adapter import (
    GeometryAwareAdapter,
    Grouping,
    LocalAttention,
    SharedGroupAttention,
    plan_groups,
)
from point_peft.method.layer import PointPeftLayer
from point_peft.method.memory_bank import MemoryBank, build_memory_bank
from point_peft.method.model import (
    BACKBONE_TRAINABLE,
    PointPeftModel,
    PointPeftOutput,
    get_point_peft_model,
)
from point_peft.method.prompt import PointPriorPrompt
from point_peft.method.query import (
    FrozenQueryEncoder,
    QueryFeatureCache,
    WithSampleIndices,
    evaluation_mode,
    pooled_token_features,
)
from point_peft.method.retrieval import Retrieval, retrieve

__all__ = [
    "BACKBONE_TRAINABLE",
    "FfnAdapter",
    "FrozenQueryEncoder",
    "GeometryAwareAdapter",
    "Grouping",
    "LocalAttention",
    "MemoryBank",
    "PointPeftConfig",
    "PointPeftLayer",
    "PointPeftModel",
    "PointPeftOutput",
    "PointPriorPrompt",
    "QueryFeatureCache",
    "Retrieval",
    "SharedGroupAttention",
    "WithSampleIndices",
    "build_memory_bank",
    "evaluation_mode",
    "get_point_peft_model",
    "plan_groups",
    "pooled_token_features",
    "retrieve",
]

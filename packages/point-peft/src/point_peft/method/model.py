"""``get_point_peft_model``: wrap a pre-trained Point-MAE / Point-BERT classifier with Point-PEFT.

The backbone is kept whole, as a submodule (``model.backbone``): its parameters keep their official
names, nothing in it is replaced, and :class:`PointPeftModel` runs its pieces (grouping, patch
embedding, blocks, final norm, head) itself with the new modules in between.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import peft_core
from point_peft.method.config import PointPeftConfig
from point_peft.method.geometry_adapter import Grouping, SharedGroupAttention, plan_groups
from point_peft.method.layer import PointPeftLayer
from point_peft.method.memory_bank import MemoryBank
from point_peft.method.query import FrozenQueryEncoder, QueryFeatureCache
from point_peft.method.retrieval import retrieve
from point_peft.models import PointTransformerClassifier
from point_peft.models.encoder import pool_cls_and_max, trunc_normal_

# Backbone parameters that train (§4 of the spec): cls token and position, final LayerNorm, head,
# and the BitFit biases of every frozen block.
BACKBONE_TRAINABLE = (
    "backbone.cls_token",
    "backbone.cls_pos",
    "backbone.norm.*",
    "backbone.cls_head_finetune.*",
    "backbone.blocks.blocks.*.attn.proj.bias",
    "backbone.blocks.blocks.*.mlp.fc1.bias",
    "backbone.blocks.blocks.*.mlp.fc2.bias",
    "backbone.blocks.blocks.*.norm1.bias",
    "backbone.blocks.blocks.*.norm2.bias",
)
# Tensors that take no weight decay besides biases and 1-D parameters: the learned tokens.
_TOKENS = ("backbone.cls_token", "backbone.cls_pos", "prompt_coordinates", "*.prompt.embeddings")


class PointPeftOutput(dict):
    """``{"loss": …, "logits": …}`` with attribute access (``loss`` only when labels were given).

    A dict, so that the peft-core ``Trainer`` (``outputs["loss"]``), Hugging Face's ``Trainer``
    and plain code (``outputs.logits``) all read it.
    """

    @property
    def logits(self) -> torch.Tensor:
        return self["logits"]

    @property
    def loss(self) -> torch.Tensor | None:
        return self.get("loss")


class PointPeftModel(nn.Module):
    """A Point-MAE / Point-BERT classifier fine-tuned with Point-PEFT. Build it with
    :func:`get_point_peft_model`.

    Submodules: ``backbone`` (the classifier, frozen but for §4's tensors), ``memory_bank``,
    ``query_encoder`` (the frozen pre-trained pass that computes the queries), ``local_attention``
    (the GA-Adapter's shared LayerNorm and local attention), ``layers`` (one
    :class:`~point_peft.method.layer.PointPeftLayer` per block) and the parameter
    ``prompt_coordinates`` (num_prompts × 3).
    """

    def __init__(
        self,
        backbone: PointTransformerClassifier,
        config: PointPeftConfig,
        memory_bank: MemoryBank | None,
    ) -> None:
        super().__init__()
        backbone_config = backbone.config
        dim, depth, tokens = (
            backbone_config.embed_dim,
            backbone_config.depth,
            backbone_config.num_groups,
        )
        _check_sizes(config, depth, tokens)
        self.point_peft_config = config
        self.backbone = backbone
        reference = next(backbone.parameters())
        self.memory_bank = memory_bank
        uses_prompts = config.uses_memory_bank
        if uses_prompts and config.learnable_prompt_coordinates:
            coordinates = torch.zeros(
                config.num_prompts, 3, device=reference.device, dtype=reference.dtype
            )
            self.prompt_coordinates = nn.Parameter(trunc_normal_(coordinates, std=0.02))
        else:
            self.register_parameter("prompt_coordinates", None)
        self.local_attention = SharedGroupAttention(
            dim, config.ga_heads, config.ga_head_dim, eps=backbone_config.layer_norm_eps
        )
        self.layers = nn.ModuleList(
            PointPeftLayer(dim, config, prompted=index < config.prompt_layers)
            for index in range(depth)
        )
        self.local_attention.to(device=reference.device, dtype=reference.dtype)
        self.layers.to(device=reference.device, dtype=reference.dtype)
        trainable = ["layers.*", "local_attention.*", *BACKBONE_TRAINABLE]
        if self.prompt_coordinates is not None:
            trainable.append("prompt_coordinates")
        peft_core.freeze(self, trainable=trainable)
        self.query_encoder = None
        if uses_prompts:
            # Everything of the backbone that fine-tuning may change and the query pass reads.
            names = [
                name
                for name, parameter in backbone.named_parameters()
                if parameter.requires_grad and not name.startswith(("cls_", "cls_head_finetune."))
            ]
            names += [f"encoder.{name}" for name, _ in backbone.encoder.named_buffers()]
            self.query_encoder = FrozenQueryEncoder(
                backbone, names, config.query_num_groups, config.query_group_size
            )
        self.query_cache = QueryFeatureCache()
        self.train(backbone.training)

    # -- modes --------------------------------------------------------------------------------
    def frozen_batchnorms(self) -> Iterator[_BatchNorm]:
        """The backbone's BatchNorms without a trainable parameter (the patch encoder's)."""
        return frozen_batchnorms(self.backbone)

    def train(self, mode: bool = True) -> PointPeftModel:
        super().train(mode)
        if self.point_peft_config.freeze_batchnorm_stats:
            for module in self.frozen_batchnorms():
                module.eval()
        return self

    # -- forward ------------------------------------------------------------------------------
    def query_features(
        self, points: torch.Tensor, sample_indices: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The frozen query features (batch, dim) of ``points``; from the cache for training samples
        already seen when ``cache_query_features`` is on and ``sample_indices`` are given."""
        if self.query_encoder is None:
            raise RuntimeError("this model has no prompted layer (prompt_layers=0): no queries")
        use_cache = (
            self.point_peft_config.cache_query_features
            and self.training
            and sample_indices is not None
        )
        if not use_cache:
            return self.query_encoder(points)
        sample_indices = torch.as_tensor(sample_indices, device=points.device)
        return self.query_cache.fetch(sample_indices, lambda rows: self.query_encoder(points[rows]))

    def context_tokens(
        self,
        points: torch.Tensor,
        sample_indices: torch.Tensor | None = None,
        query_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The (batch, num_prompts, dim) memory-bank context [q ; r ; top-K entries] of ``points``."""
        if query_features is None:
            query_features = self.query_features(points, sample_indices)
        bank = self.memory_bank.features
        return retrieve(query_features, bank, self.point_peft_config.top_k).context

    def groupings(self, centers: torch.Tensor) -> dict[bool, Grouping]:
        """The GA-Adapter groups of this batch, keyed by whether they include the prompt tokens
        (prompted layers with ``learnable_prompt_coordinates``); each is planned once."""
        config = self.point_peft_config
        start = self.backbone.config.fps_start
        result = {}
        for with_prompts in {self._groups_prompts(layer) for layer in self.layers}:
            prompt_xyz = self.prompt_coordinates if with_prompts else None
            result[with_prompts] = plan_groups(
                centers, config.ga_anchors, config.ga_neighbors, prompt_xyz=prompt_xyz, start=start
            )
        return result

    def _groups_prompts(self, layer: PointPeftLayer) -> bool:
        return layer.prompted and self.prompt_coordinates is not None

    def forward(
        self,
        points: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        sample_indices: torch.Tensor | None = None,
        query_features: torch.Tensor | None = None,
    ) -> PointPeftOutput:
        """Class logits of ``points`` (batch, N, 3), and the loss when ``labels`` are given.

        Args:
            points: the (augmented) clouds; the query is computed from these same points.
            labels: (batch,) class indices; the loss is the backbone's (label smoothing included).
            sample_indices: (batch,) indices of the samples in the training set, for
                ``cache_query_features`` (see :class:`~point_peft.method.query.WithSampleIndices`).
            query_features: (batch, dim) precomputed query features, skipping the query pass.
        """
        backbone = self.backbone
        tokens, pos, centers, _ = backbone.embed(points)
        x, pos = backbone.prepend_cls(tokens, pos)
        context = None
        if self.query_encoder is not None:
            context = self.context_tokens(points, sample_indices, query_features)
        groupings = self.groupings(centers)
        for block, layer in zip(backbone.blocks.blocks, self.layers, strict=True):
            grouping = groupings[self._groups_prompts(layer)]
            x = layer(block, x + pos, context, grouping, self.local_attention)
        logits = backbone.cls_head_finetune(pool_cls_and_max(backbone.norm(x)))
        output = PointPeftOutput()
        if labels is not None:
            output["loss"] = backbone.loss(logits, labels)
        output["logits"] = logits
        return output

    # -- utilities ----------------------------------------------------------------------------
    def print_trainable_parameters(self) -> None:
        """``trainable params: … || all params: … || trainable%: …`` (Hugging Face peft's line)."""
        peft_core.print_trainable_parameters(self)

    def no_weight_decay(self) -> set[str]:
        """Trainable parameters AdamW should not decay (timm's convention): biases, 1-D tensors
        (norms) and the learned tokens (cls token and position, prompts, prompt coordinates)."""
        return no_weight_decay_names(self, _TOKENS)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """``peft_core.save_trainable`` with this model's config: trained tensors, BatchNorm
        statistics and the memory bank; ``peft_core.load(backbone, directory)`` rebuilds it."""
        return peft_core.save_trainable(self, directory, self.point_peft_config)


def frozen_batchnorms(module: nn.Module) -> Iterator[_BatchNorm]:
    """The BatchNorms inside ``module`` that have no trainable parameter."""
    for submodule in module.modules():
        if isinstance(submodule, _BatchNorm) and not any(
            parameter.requires_grad for parameter in submodule.parameters()
        ):
            yield submodule


def no_weight_decay_names(model: nn.Module, token_patterns: Iterable[str]) -> set[str]:
    """Trainable parameters of ``model`` that AdamW should not decay (timm's convention): biases,
    1-D tensors (norms) and the learned tokens matching ``token_patterns`` (globs)."""
    patterns = tuple(token_patterns)
    names = set()
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if (
            parameter.ndim <= 1
            or name.endswith(".bias")
            or any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
        ):
            names.add(name)
    return names


def _check_sizes(config: PointPeftConfig, depth: int, tokens: int) -> None:
    if config.prompt_layers > depth:
        raise ValueError(
            f"PointPeftConfig.prompt_layers={config.prompt_layers} exceeds the backbone's "
            f"depth={depth}"
        )
    for name in ("ga_anchors", "ga_neighbors"):
        value = getattr(config, name)
        if value > tokens:
            raise ValueError(
                f"PointPeftConfig.{name}={value} exceeds the backbone's {tokens} tokens per cloud "
                "(num_groups): the GA-Adapter groups the token centres"
            )


@peft_core.register_method("point_peft", PointPeftConfig)
def get_point_peft_model(
    backbone: PointTransformerClassifier,
    config: PointPeftConfig | None = None,
    *,
    memory_bank: MemoryBank | None = None,
) -> PointPeftModel:
    """Wrap a pre-trained ``backbone`` with Point-PEFT; only the method's tensors stay trainable.

    Args:
        backbone: a :class:`~point_peft.models.PointMAE` or :class:`~point_peft.models.PointBERT`
            classifier with its pre-trained weights (its head is new).
        config: the method's settings (default :class:`PointPeftConfig`). When a memory bank is
            given and ``config.memory_bank_size`` is unset, it is set to the bank's size here, so
            that ``save_trainable(model, directory, config)`` records it.
        memory_bank: from :func:`~point_peft.method.memory_bank.build_memory_bank` with this
            backbone. Required when there are prompted layers, except when rebuilding a saved model
            (``peft_core.load``), whose config records the bank's size: an all-zero bank is then
            allocated for the saved values to be loaded into.

    Example:
        >>> import torch
        >>> from point_peft.method import PointPeftConfig, build_memory_bank
        >>> from point_peft.models import PointMAE, PointTransformerConfig
        >>> _ = torch.manual_seed(0)
        >>> backbone = PointMAE(PointTransformerConfig.small(num_classes=4))
        >>> clouds = torch.rand(8, 256, 3, generator=torch.Generator().manual_seed(0))
        >>> bank = build_memory_bank(
        ...     backbone, [clouds], num_groups=16, group_size=8, progress=False
        ... )
        >>> config = PointPeftConfig(
        ...     prompt_layers=2,
        ...     ga_anchors=16,
        ...     ga_neighbors=8,
        ...     query_num_groups=16,
        ...     query_group_size=8,
        ... )
        >>> model = get_point_peft_model(backbone, config, memory_bank=bank)
        >>> model.print_trainable_parameters()
        trainable params: 59,154 || all params: 540,242 || trainable%: 10.9495
        >>> model.eval()(clouds[:2]).logits.shape
        torch.Size([2, 4])
    """
    config = config if config is not None else PointPeftConfig()
    if isinstance(backbone, PointPeftModel):
        raise ValueError("this model is already a Point-PEFT model (pass its .backbone instead)")
    if not isinstance(backbone, PointTransformerClassifier):
        raise TypeError(
            "get_point_peft_model needs a PointMAE or PointBERT classifier, got "
            f"{type(backbone).__name__}"
        )
    if not isinstance(config, PointPeftConfig):
        raise TypeError(f"config must be a PointPeftConfig, got {type(config).__name__}")
    if config.uses_memory_bank:
        memory_bank = _resolve_memory_bank(backbone, config, memory_bank)
    elif memory_bank is not None:
        raise ValueError(
            "prompt_layers=0 uses no memory bank; pass memory_bank=None (or prompt_layers > 0)"
        )
    return PointPeftModel(backbone, config, memory_bank)


def _resolve_memory_bank(
    backbone: PointTransformerClassifier, config: PointPeftConfig, bank: MemoryBank | None
) -> MemoryBank:
    reference = next(backbone.parameters())
    if bank is None:
        if config.memory_bank_size is None:
            raise ValueError(
                "Point-PEFT's prompts need a memory bank: pass memory_bank="
                "build_memory_bank(backbone, train_loader) (or prompt_layers=0 for none)"
            )
        return MemoryBank.placeholder(
            backbone.config.embed_dim, config.memory_bank_size,
            num_groups=config.query_num_groups, group_size=config.query_group_size,
            device=reference.device,
        )  # fmt: skip
    if not isinstance(bank, MemoryBank):
        raise TypeError(f"memory_bank must be a MemoryBank, got {type(bank).__name__}")
    bank.check_compatible(backbone)
    grouping = (bank.num_groups, bank.group_size)
    if grouping != (config.query_num_groups, config.query_group_size):
        raise ValueError(
            f"the memory bank was built with {bank.num_groups} x {bank.group_size} grouping but "
            f"PointPeftConfig.query_num_groups x query_group_size is {config.query_num_groups} x "
            f"{config.query_group_size}: queries must be computed as the bank was"
        )
    if config.memory_bank_size is None:
        config.memory_bank_size = bank.size
    elif config.memory_bank_size != bank.size:
        raise ValueError(
            f"PointPeftConfig.memory_bank_size={config.memory_bank_size} but the memory bank has "
            f"{bank.size} entries (use a fresh config for another bank)"
        )
    if config.top_k > bank.size:
        raise ValueError(
            f"PointPeftConfig.top_k={config.top_k} exceeds the bank's {bank.size} entries"
        )
    return bank.to(device=reference.device)

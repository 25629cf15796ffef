"""The official Point-MAE / Point-BERT checkpoint layouts, written out as data for the tests.

Every entry is ``(name, shape)`` exactly as in the released files (``ckpt["base_model"]``); a
``{i}`` in a name stands for each block index. The tests build checkpoints from these lists with
random values and load them, so the loaders are checked against the real names and shapes
without the (non-downloadable) weights. Parameter counts, excluding BatchNorm buffers, are those
of the released files.
"""

from __future__ import annotations

import torch

BLOCK = [
    ("norm1.weight", [384]),
    ("norm1.bias", [384]),
    ("attn.qkv.weight", [1152, 384]),
    ("attn.proj.weight", [384, 384]),
    ("attn.proj.bias", [384]),
    ("norm2.weight", [384]),
    ("norm2.bias", [384]),
    ("mlp.fc1.weight", [1536, 384]),
    ("mlp.fc1.bias", [1536]),
    ("mlp.fc2.weight", [384, 1536]),
    ("mlp.fc2.bias", [384]),
]


def patch_encoder(out_dim: int) -> list[tuple[str, list[int]]]:
    return [
        ("first_conv.0.weight", [128, 3, 1]),
        ("first_conv.0.bias", [128]),
        ("first_conv.1.weight", [128]),
        ("first_conv.1.bias", [128]),
        ("first_conv.1.running_mean", [128]),
        ("first_conv.1.running_var", [128]),
        ("first_conv.1.num_batches_tracked", []),
        ("first_conv.3.weight", [256, 128, 1]),
        ("first_conv.3.bias", [256]),
        ("second_conv.0.weight", [512, 512, 1]),
        ("second_conv.0.bias", [512]),
        ("second_conv.1.weight", [512]),
        ("second_conv.1.bias", [512]),
        ("second_conv.1.running_mean", [512]),
        ("second_conv.1.running_var", [512]),
        ("second_conv.1.num_batches_tracked", []),
        ("second_conv.3.weight", [out_dim, 512, 1]),
        ("second_conv.3.bias", [out_dim]),
    ]


POS_EMBED = [
    ("0.weight", [128, 3]),
    ("0.bias", [128]),
    ("2.weight", [384, 128]),
    ("2.bias", [384]),
]
NORM = [("weight", [384]), ("bias", [384])]


def _prefixed(prefix: str, entries):
    return [(prefix + name, shape) for name, shape in entries]


def _blocks(prefix: str, depth: int):
    return [(f"{prefix}{i}.{name}", shape) for i in range(depth) for name, shape in BLOCK]


def point_mae_pretrain() -> list[tuple[str, list[int]]]:
    """Point-MAE ``pretrain.pth``: 209 entries, 29,006,432 parameters."""
    return [
        ("mask_token", [1, 1, 384]),
        *_prefixed("MAE_encoder.encoder.", patch_encoder(384)),
        *_prefixed("MAE_encoder.pos_embed.", POS_EMBED),
        *_blocks("MAE_encoder.blocks.blocks.", 12),
        *_prefixed("MAE_encoder.norm.", NORM),
        *_prefixed("decoder_pos_embed.", POS_EMBED),
        *_blocks("MAE_decoder.blocks.", 4),
        *_prefixed("MAE_decoder.norm.", NORM),
        ("increase_dim.0.weight", [96, 384, 1]),
        ("increase_dim.0.bias", [96]),
    ]


def point_mae_finetuned(num_classes: int = 15) -> list[tuple[str, list[int]]]:
    """Point-MAE fine-tuned ``PointTransformer``: 174 entries, 22,093,327 parameters for 15 classes."""
    head = [
        ("0.weight", [256, 768]),
        ("0.bias", [256]),
        ("1.weight", [256]),
        ("1.bias", [256]),
        ("1.running_mean", [256]),
        ("1.running_var", [256]),
        ("1.num_batches_tracked", []),
        ("4.weight", [256, 256]),
        ("4.bias", [256]),
        ("5.weight", [256]),
        ("5.bias", [256]),
        ("5.running_mean", [256]),
        ("5.running_var", [256]),
        ("5.num_batches_tracked", []),
        ("8.weight", [num_classes, 256]),
        ("8.bias", [num_classes]),
    ]
    return [
        ("cls_token", [1, 1, 384]),
        ("cls_pos", [1, 1, 384]),
        *_prefixed("encoder.", patch_encoder(384)),
        *_prefixed("pos_embed.", POS_EMBED),
        *_blocks("blocks.blocks.", 12),
        *_prefixed("norm.", NORM),
        *_prefixed("cls_head_finetune.", head),
    ]


def point_bert_pretrain_transformer_q() -> list[tuple[str, list[int]]]:
    """The ``transformer_q.*`` part of Point-BERT's ``Point-BERT.pth``: 167 entries, 25,472,896 parameters."""
    return _prefixed(
        "transformer_q.",
        [
            ("cls_token", [1, 1, 384]),
            ("mask_token", [1, 1, 384]),
            ("cls_pos", [1, 1, 384]),
            *_prefixed("encoder.", patch_encoder(256)),
            ("reduce_dim.weight", [384, 256]),
            ("reduce_dim.bias", [384]),
            *_prefixed("pos_embed.", POS_EMBED),
            *_blocks("blocks.blocks.", 12),
            *_prefixed("norm.", NORM),
            ("lm_head.weight", [8192, 384]),
            ("lm_head.bias", [8192]),
            ("cls_head.0.weight", [512, 384]),
            ("cls_head.0.bias", [512]),
            ("cls_head.2.weight", [512, 512]),
            ("cls_head.2.bias", [512]),
        ],
    )


def point_bert_finetuned(num_classes: int = 40) -> list[tuple[str, list[int]]]:
    """Point-BERT fine-tuned ``PointTransformer``: 164 entries, 22,065,960 parameters for 40 classes."""
    return [
        ("cls_token", [1, 1, 384]),
        ("cls_pos", [1, 1, 384]),
        *_prefixed("encoder.", patch_encoder(256)),
        ("reduce_dim.weight", [384, 256]),
        ("reduce_dim.bias", [384]),
        *_prefixed("pos_embed.", POS_EMBED),
        *_blocks("blocks.blocks.", 12),
        *_prefixed("norm.", NORM),
        ("cls_head_finetune.0.weight", [256, 768]),
        ("cls_head_finetune.0.bias", [256]),
        ("cls_head_finetune.3.weight", [num_classes, 256]),
        ("cls_head_finetune.3.bias", [num_classes]),
    ]


def is_batchnorm_buffer(name: str) -> bool:
    return name.endswith(("running_mean", "running_var", "num_batches_tracked"))


def parameter_count(layout) -> int:
    """Elements of every entry that is not a BatchNorm buffer (how the reference counts)."""
    total = 0
    for name, shape in layout:
        if not is_batchnorm_buffer(name):
            total += torch.Size(shape).numel()
    return total


def random_state(layout, seed: int = 0) -> dict[str, torch.Tensor]:
    """Distinct float32 values per tensor (so a tensor in the wrong slot shows), int64 counters.

    Not random numbers but a ramp from ``offset`` to ``offset + 1`` with an offset per tensor and
    ``seed`` (one cheap op: drawing 29 M Gaussian values takes a second on the CI machines). All
    values are positive, as BatchNorm variances must be.
    """
    state = {}
    for index, (name, shape) in enumerate(layout):
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(1000 * seed + index)
            continue
        offset = 0.5 + index + 1000 * seed
        count = torch.Size(shape).numel()
        state[name] = torch.linspace(offset, offset + 1, count).reshape(shape)
    return state

"""What trains in each baseline: glob patterns over :class:`~point_peft.baselines.BaselineModel`'s
parameter names (the backbone's official names under ``backbone.``).

==========  ==========================================================================================
baseline    trainable
==========  ==========================================================================================
full        everything
linear      the classification head ``cls_head_finetune`` only (its BatchNorms included). The cls
            token and position, the final LayerNorm and the whole encoder stay frozen: the usual
            linear probe of the point-cloud PEFT papers (Point-MAE: 0.27 M trained of 22.1 M).
adapter     the adapters, and what Point-PEFT trains of the backbone apart from its BitFit biases:
            cls token and position, final LayerNorm, head.
vpt-deep    the prompts, cls token and position, final LayerNorm, head (as ``adapter``).
bitfit      every bias of the backbone (patch encoder convolutions and BatchNorms, positional MLP,
            every block's LayerNorms, attention projection and MLP, the final LayerNorm) and the
            whole head. LayerNorm / BatchNorm gains, the cls token and position stay frozen: only
            biases, as BitFit (Ben Zaken et al., 2022) trains with a new task head.
==========  ==========================================================================================
"""

from __future__ import annotations

from point_peft.baselines.config import check_method

HEAD = ("backbone.cls_head_finetune.*",)
# What every added-module baseline trains of the backbone besides its new modules (Point-PEFT's
# trainable backbone tensors without the BitFit biases).
HEAD_NORM_AND_CLS = (
    "backbone.cls_token",
    "backbone.cls_pos",
    "backbone.norm.*",
    *HEAD,
)

TRAINABLE: dict[str, tuple[str, ...]] = {
    "full": ("*",),
    "linear": HEAD,
    "adapter": ("adapters.*", *HEAD_NORM_AND_CLS),
    "vpt-deep": ("prompts.*", *HEAD_NORM_AND_CLS),
    "bitfit": ("backbone.*.bias", *HEAD),
}

# Learned tokens: no weight decay (with biases and 1-D tensors), timm's convention.
TOKENS = ("backbone.cls_token", "backbone.cls_pos", "prompts.embeddings")


def trainable_patterns(method: str) -> tuple[str, ...]:
    """The glob patterns of the parameters ``method`` trains.

    Example:
        >>> trainable_patterns("vpt-deep")
        ('prompts.*', 'backbone.cls_token', 'backbone.cls_pos', 'backbone.norm.*', 'backbone.cls_head_finetune.*')
    """
    return TRAINABLE[check_method(method)]

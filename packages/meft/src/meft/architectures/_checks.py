"""Settings a reversible stack cannot honour, refused when the model is converted.

MEFT's first layer runs the whole coupled stack and every other layer passes its input through, so
the host model's loop must call every layer, with the same arguments.
"""

from __future__ import annotations

from torch import nn


def refuse_layerdrop(model: nn.Module) -> None:
    """LayerDrop skips random layers in training: skipping the first would skip the whole stack.

    Reads ``layerdrop`` from the modules that run the loop (the value actually used; it is copied
    from the config when the model is built, so changing the config afterwards has no effect).
    """
    for name, module in model.named_modules():
        probability = getattr(module, "layerdrop", 0.0)
        if isinstance(probability, int | float) and probability > 0:
            raise ValueError(
                f"MEFT cannot make {type(model).__name__} reversible with LayerDrop "
                f"({name or type(model).__name__}.layerdrop={probability}): its first layer runs the "
                "whole reversible stack, so dropping that layer would drop every layer. Set "
                f"`{name}.layerdrop = 0.0` (config: layerdrop / encoder_layerdrop / decoder_layerdrop) "
                "before get_meft_model."
            )


def refuse_mixed_layer_types(model: nn.Module) -> None:
    """Models mixing full and sliding-window attention pass each layer its own mask, while MEFT
    gives every layer the arguments of the first."""
    layer_types = getattr(getattr(model, "config", None), "layer_types", None) or []
    if len(set(layer_types)) > 1:
        raise ValueError(
            f"MEFT cannot make {type(model).__name__} reversible: its layers mix attention types "
            f"{sorted(set(layer_types))} (e.g. sliding-window and full attention), each with its own "
            "mask, and MEFT's reversible stack gives every layer the first layer's arguments."
        )

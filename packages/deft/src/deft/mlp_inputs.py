"""The MLP input projections: the layers whose output the penalised activation is computed from.

DEFT penalises ``A = f(X W1)``. With LoRA on the attention's query and value only (the paper's
setup), ``X W1`` moves only through the attention output, the residual add and a LayerNorm, so the
density loss has little to push on. Adapting ``W1`` itself (and training its bias, a per-neuron
shift of the pre-activation) gives it a direct lever; ``benchmarks/deft/bench_lora_targets.py``
measures what that does. :func:`mlp_input_projections` names those layers for every layout of the
discovery table, so they can be handed to peft as LoRA targets::

    targets = ["query", "value", *deft.mlp_input_projections(model)]
    model = peft.get_peft_model(model, LoraConfig(target_modules=targets, bias="lora_only"))

For gated MLPs the projection is the gate's (the activation is computed from it alone); Phi-3's
fused ``gate_up_proj`` and timm ``GluMlp``'s fused ``fc1`` are adapted whole.
"""

from __future__ import annotations

from torch import nn

from deft.discovery import find_targets, unwrap

# The projection whose output goes into the activation, relative to the MLP container.
MLP_INPUT_PROJECTIONS: dict[str, str] = {
    "T5 gated (Flan-T5, mT5)": "wi_0",
    "T5": "wi",
    "Llama-family gated": "gate_proj",
    "Phi-3 fused gate_up": "gate_up_proj",
    "timm SwiGLU": "fc1_g",
    "timm GluMlp (fused fc1)": "fc1",
    "OPT / ViT / CLIP (fc1, fc2)": "fc1",
    "timm Mlp (fc1, fc2)": "fc1",
    "BERT / RoBERTa / ELECTRA": "dense",
    "GPT-2": "c_fc",
    "GPT-NeoX / Falcon": "dense_h_to_4h",
    "GPT-J": "fc_in",
    "DistilBERT": "lin1",
}


def mlp_input_projections(model: nn.Module) -> list[str]:
    """The input projection of every MLP :func:`deft.find_targets` finds, in order.

    Names are relative to the unwrapped model (no DDP / peft prefixes), the form peft's
    ``target_modules`` takes.

    Example:
        >>> mlp = nn.Sequential()
        >>> mlp.fc1, mlp.act, mlp.fc2 = nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4)
        >>> mlp_input_projections(nn.ModuleDict({"block": mlp}))
        ['block.fc1']
    """
    inner, _ = unwrap(model)
    names = []
    for target in find_targets(model):
        if target.family not in MLP_INPUT_PROJECTIONS:
            raise ValueError(
                f"{target.module_name}: no MLP input projection is known for the {target.family} "
                "layout; add it to deft.mlp_inputs.MLP_INPUT_PROJECTIONS"
            )
        relative = MLP_INPUT_PROJECTIONS[target.family]
        name = f"{target.container}.{relative}" if target.container else relative
        inner.get_submodule(name)  # fails loudly if the table is wrong for this model
        names.append(name)
    return names


__all__ = ["MLP_INPUT_PROJECTIONS", "mlp_input_projections"]

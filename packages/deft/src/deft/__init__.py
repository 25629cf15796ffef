"""DEFT: Density-Efficient Fine-Tuning (Runwal, Pedapati & Chen, 2024) — a density loss for any PEFT method.

Distribution name ``deft-peft``; not Hugging Face peft's unrelated DEFT tuner (Decompositional
Efficient Fine-Tuning) nor the PyPI project ``deft``. The method lands with the DEFT issue.
"""

__version__ = "0.1.0.dev0"

"""MEFT: reversible memory-efficient fine-tuning (Liao, Tan & Monz, NeurIPS 2023).

Not the unrelated "MEFT: Memory-Efficient Fine-Tuning through Sparse Adapter" (Hao et al., ACL 2024).
The method itself lands with the MEFT issue; this release reserves the package and its layout.
"""

__version__ = "0.1.0.dev0"

"""Point-PEFT: parameter-efficient fine-tuning of pre-trained 3D point-cloud transformers (Tang et al., AAAI 2024).

Available now: :mod:`point_peft.ops` (farthest point sampling, kNN, grouping, inverse-distance
interpolation in pure PyTorch). The backbones and the method itself follow.
"""

__version__ = "0.1.0.dev0"

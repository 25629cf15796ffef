"""Point-PEFT: parameter-efficient fine-tuning of pre-trained 3D point-cloud transformers (Tang et al., AAAI 2024).

The backbones, ops and the method land with the point-cloud issues; this release reserves the
package and its layout.
"""

__version__ = "0.1.0.dev0"

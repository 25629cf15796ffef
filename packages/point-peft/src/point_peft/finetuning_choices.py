"""The names ``point-peft train`` offers for its method and augmentation.

Apart from :mod:`point_peft.finetuning_methods`, which builds them and imports torch: the command
builds its parser, and answers ``--help`` or a usage error, in a fraction of a second.
"""

from __future__ import annotations

METHODS: tuple[str, ...] = ("point-peft", "full", "linear", "adapter", "vpt-deep", "bitfit")
"""``--method`` choices: Point-PEFT and the baselines of :mod:`point_peft.baselines`."""
BASELINES: tuple[str, ...] = METHODS[1:]
AUGMENTATIONS: tuple[str, ...] = ("scale-rotate", "scale-translate", "none")
"""``scale-rotate``: Point-PEFT's "-aug" protocol (per-axis scale U(0.9, 1.1), any turn about y);
``scale-translate``: Point-MAE's (per-axis scale U(2/3, 3/2), shift U(-0.2, 0.2)); ``none``."""

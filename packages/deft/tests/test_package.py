"""The package reports its installed version, depends on peft-core only, and imports torch only
when something needs it (so its command answers --help and usage errors at once)."""

from __future__ import annotations

import deft
from peft_core.testing.packaging import MethodPackageTests


class TestPackage(MethodPackageTests):
    package = deft
    distribution = "deft-peft"
    usage_error = (
        "train",
        "--density-weight",
        "-1",
    )  # argparse refuses it, before anything is loaded

"""The package reports its installed version, depends on peft-core only, and imports torch only
when something needs it (so its command answers --help and usage errors at once)."""

from __future__ import annotations

import meft
from peft_core.testing.packaging import MethodPackageTests


class TestPackage(MethodPackageTests):
    package = meft
    distribution = "meft"
    usage_error = ("train", "--epochs", "0")  # argparse refuses it, before anything is loaded

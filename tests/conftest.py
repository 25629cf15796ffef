import sys
from pathlib import Path

# Let cross-package tests reuse the method packages' tiny model builders.
PACKAGES = Path(__file__).parents[1] / "packages"
sys.path.insert(0, str(PACKAGES / "meft" / "tests"))
sys.path.insert(0, str(PACKAGES / "point-peft" / "tests"))

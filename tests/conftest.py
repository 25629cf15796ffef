import sys
from pathlib import Path

# Let cross-package tests reuse the method packages' tiny model builders.
sys.path.insert(0, str(Path(__file__).parents[1] / "packages" / "meft" / "tests"))

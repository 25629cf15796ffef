import sys
from pathlib import Path

# tiny_models.py sits beside the tests; make it importable under --import-mode=importlib.
sys.path.insert(0, str(Path(__file__).parent))

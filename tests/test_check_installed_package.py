"""tools/check_installed_package.py (the build session's check of each wheel in a clean venv):
passes on an installed package, and names each fault it is for."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKER = ROOT / "tools" / "check_installed_package.py"


def _check(*arguments: str, path: Path | None = None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    if path is not None:
        env["PYTHONPATH"] = str(path)
    return subprocess.run(
        [sys.executable, str(CHECKER), *arguments], capture_output=True, text=True, env=env
    )


def _installed_package(root: Path, init: str, version: str = "1.0") -> Path:
    """A package ``lazypkg`` with the metadata of an installed distribution of that name."""
    (root / "lazypkg").mkdir(parents=True)
    (root / "lazypkg" / "__init__.py").write_text(textwrap.dedent(init))
    info = root / f"lazypkg-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: lazypkg\nVersion: {version}\n")
    return root


def test_an_installed_package_passes():
    result = _check("peft_core", "peft-core")
    assert result.returncode == 0, result.stderr
    assert "public names resolve" in result.stdout


def test_a_name_that_does_not_resolve_and_a_wrong_version_are_named(tmp_path):
    root = _installed_package(
        tmp_path,
        """
        __version__ = "0.9"
        __all__ = ["fine", "broken"]
        fine = 1

        def __getattr__(name):
            if name == "broken":
                import a_module_left_out_of_the_wheel  # noqa: F401
            raise AttributeError(name)
        """,
    )
    result = _check("lazypkg", "lazypkg", path=root)
    assert result.returncode == 1
    assert "lazypkg.__version__ is 0.9, metadata says 1.0" in result.stderr
    assert "lazypkg.broken does not resolve: ModuleNotFoundError" in result.stderr
    assert "a_module_left_out_of_the_wheel" in result.stderr
    assert "fine" not in result.stderr


def test_usage_without_both_names():
    result = _check("peft_core")
    assert result.returncode == 2
    assert "IMPORT_NAME DISTRIBUTION_NAME" in result.stderr

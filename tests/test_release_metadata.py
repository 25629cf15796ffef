"""tools/check_release_metadata.py: passes on this repository, and catches each fault it is for."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_checker():
    name = "check_release_metadata"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


checker = _load_checker()


# --------------------------------------------------------------------------------------------------
# The real repository


def test_real_repository_passes():
    assert checker.check_repo(ROOT) == []


def test_main_on_real_repository(capsys):
    assert checker.main([str(ROOT)]) == 0
    assert "ok" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# A tiny fake repository: valid as written, then broken one way at a time

MIN_TXT = """\
# floors
torch==2.4.0
accelerate==0.34.0
safetensors==0.4.3
numpy==1.26.4
tqdm==4.64.0
transformers==4.44.0
peft==0.13.0
datasets==2.20.0
bitsandbytes==0.46.1
timm==1.0.3
h5py==3.8.0
matplotlib==3.7.0
"""

CORE_DEPS = (
    '["torch>=2.4", "accelerate>=0.34", "safetensors>=0.4.3", "numpy>=1.26.4", "tqdm>=4.64"]'
)
CORE_EXTRAS = '{ text = ["transformers>=4.44"], test = ["pytest>=8", "transformers>=4.44.0"] }'
METHOD_DEPS = '["peft-core>=0.1,<0.2", "torch>=2.4"]'


def _write_package(
    root: Path,
    directory: str,
    name: str,
    module: str,
    version: str,
    dependencies: str,
    extras: str = '{ test = ["pytest>=8"] }',
) -> None:
    base = root / "packages" / directory
    (base / "src" / module).mkdir(parents=True)
    (base / "tests").mkdir()
    (base / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [project]
            name = "{name}"
            dynamic = ["version"]
            dependencies = {dependencies}
            optional-dependencies = {extras}

            [tool.hatch.version]
            path = "src/{module}/__init__.py"
            """
        )
    )
    (base / "README.md").write_text(f"# {name}\n")
    (base / "CHANGELOG.md").write_text(
        f"# Changelog\n\n## [Unreleased]\n\n## [{version}] - 2026-11-24\n"
    )
    (base / "src" / module / "__init__.py").write_text(
        f'"""{name}."""\n\n__version__ = "{version}"\n'
    )


@pytest.fixture
def fake_repo(tmp_path: Path) -> Path:
    (tmp_path / "constraints").mkdir()
    (tmp_path / "constraints" / "min.txt").write_text(MIN_TXT)
    _write_package(tmp_path, "peft-core", "peft-core", "peft_core", "0.1.0", CORE_DEPS, CORE_EXTRAS)
    _write_package(tmp_path, "meft", "meft", "meft", "0.1.0.dev0", METHOD_DEPS)
    _write_package(tmp_path, "deft", "deft-peft", "deft", "0.1.0.dev0", METHOD_DEPS)
    return tmp_path


def test_fake_repository_passes(fake_repo: Path):
    assert checker.check_repo(fake_repo) == []


def _replace(path: str, old: str, new: str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        file = root / path
        text = file.read_text()
        assert old in text, (old, text)
        file.write_text(text.replace(old, new))

    return mutate


def _remove(path: str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        target = root / path
        if target.is_dir():
            target.rmdir()
        else:
            target.unlink()

    return mutate


FAULTS = {
    "missing pyproject": (
        _remove("packages/meft/pyproject.toml"),
        "packages/meft: missing pyproject.toml",
    ),
    "missing readme": (_remove("packages/meft/README.md"), "packages/meft: missing README.md"),
    "missing changelog": (
        _remove("packages/deft/CHANGELOG.md"),
        "packages/deft: missing CHANGELOG.md",
    ),
    "missing tests dir": (
        _remove("packages/peft-core/tests"),
        "packages/peft-core: missing tests/",
    ),
    "no __version__": (
        _replace("packages/meft/src/meft/__init__.py", "__version__ =", "VERSION ="),
        "no module-level __version__",
    ),
    "invalid version": (
        _replace("packages/meft/src/meft/__init__.py", '"0.1.0.dev0"', '"0.1-beta-x"'),
        "is not a valid PEP 440 version",
    ),
    "changelog lacks version": (
        _replace("packages/peft-core/CHANGELOG.md", "## [0.1.0]", "## [0.0.9]"),
        "CHANGELOG.md: no heading for the current version 0.1.0",
    ),
    "changelog names only a longer version": (
        _replace("packages/peft-core/CHANGELOG.md", "## [0.1.0]", "## [0.1.0.dev0]"),
        "CHANGELOG.md: no heading for the current version 0.1.0",
    ),
    "version only outside a heading": (
        _replace("packages/meft/CHANGELOG.md", "## [0.1.0.dev0]", "Released 0.1.0.dev0"),
        "no heading for the current version 0.1.0.dev0",
    ),
    "core range without upper bound": (
        _replace("packages/meft/pyproject.toml", "peft-core>=0.1,<0.2", "peft-core>=0.1"),
        "'peft-core>=0.1' is not a compatible range",
    ),
    "core range without lower bound": (
        _replace("packages/meft/pyproject.toml", "peft-core>=0.1,<0.2", "peft-core<0.2"),
        "'peft-core<0.2' is not a compatible range",
    ),
    "core unpinned": (
        _replace("packages/deft/pyproject.toml", "peft-core>=0.1,<0.2", "peft-core"),
        "'peft-core' is not a compatible range",
    ),
    "core range excludes workspace core": (
        _replace("packages/meft/pyproject.toml", "peft-core>=0.1,<0.2", "peft-core>=0.2,<0.3"),
        "excludes the workspace's peft-core 0.1.0",
    ),
    "no core dependency": (
        _replace("packages/meft/pyproject.toml", '"peft-core>=0.1,<0.2", ', ""),
        "packages/meft: dependencies do not include peft-core",
    ),
    "sibling dependency": (
        _replace(
            "packages/meft/pyproject.toml", '"torch>=2.4"]', '"torch>=2.4", "deft-peft>=0.1"]'
        ),
        "packages/meft: dependencies names the method package 'deft-peft>=0.1'",
    ),
    "sibling in optional deps, unnormalized name": (
        _replace("packages/deft/pyproject.toml", '"pytest>=8"]', '"pytest>=8", "MEFT"]'),
        "packages/deft: optional-dependencies.test names the method package 'MEFT'",
    ),
    "floor below min pin": (
        _replace("packages/meft/pyproject.toml", '"torch>=2.4"', '"torch>=2.3"'),
        "floor 'torch>=2.3' does not equal constraints/min.txt pin 'torch==2.4.0'",
    ),
    "floor above min pin": (
        _replace("packages/peft-core/pyproject.toml", "numpy>=1.26.4", "numpy>=1.26"),
        "floor 'numpy>=1.26' does not equal constraints/min.txt pin 'numpy==1.26.4'",
    ),
    "floor in optional deps": (
        _replace(
            "packages/peft-core/pyproject.toml",
            'text = ["transformers>=4.44"]',
            'text = ["transformers>=4.40"]',
        ),
        "optional-dependencies.text: floor 'transformers>=4.40' does not equal",
    ),
    "tracked dependency without floor": (
        _replace("packages/peft-core/pyproject.toml", '"tqdm>=4.64"', '"tqdm"'),
        "'tqdm' declares no floor",
    ),
    "min.txt lacks a pin": (
        _replace("constraints/min.txt", "safetensors==0.4.3\n", ""),
        "constraints/min.txt: no 'safetensors==<floor>' pin",
    ),
    "min.txt missing": (_remove("constraints/min.txt"), "constraints/min.txt: missing"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_is_detected(fake_repo: Path, fault: str):
    mutate, expected = FAULTS[fault]
    mutate(fake_repo)
    problems = checker.check_repo(fake_repo)
    assert any(expected in problem for problem in problems), problems


def test_all_faults_at_once_are_all_listed(fake_repo: Path, capsys):
    chosen = [  # faults that touch different lines, so all of them apply together
        "missing readme",
        "missing changelog",
        "missing tests dir",
        "invalid version",
        "changelog lacks version",
        "core range without upper bound",
        "sibling in optional deps, unnormalized name",
        "floor in optional deps",
        "tracked dependency without floor",
        "min.txt lacks a pin",
        "floor below min pin",
    ]
    for fault in chosen:
        FAULTS[fault][0](fake_repo)
    problems = checker.check_repo(fake_repo)
    for fault in chosen:
        assert any(FAULTS[fault][1] in problem for problem in problems), (fault, problems)
    assert checker.main([str(fake_repo)]) == 1
    err = capsys.readouterr().err
    assert f"{len(problems)} problem(s)" in err
    assert all(problem in err for problem in problems)


# --------------------------------------------------------------------------------------------------
# Version helpers


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("0.1.0", True),
        ("0.1.0.dev0", True),
        ("1!2.0rc1.post2.dev3+local.1", True),
        ("0.1.x", False),
        ("", False),
    ],
)
def test_is_valid_version(text: str, valid: bool):
    assert checker.is_valid_version(text) is valid


def test_version_ordering():
    ordered = [
        "1.0.dev0",
        "1.0a1.dev0",
        "1.0a1",
        "1.0b2",
        "1.0rc1",
        "1.0",
        "1.0.post1.dev0",
        "1.0.post1",
        "1.1",
    ]
    keys = [checker.version_key(v) for v in ordered]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert checker.version_key("2.4") == checker.version_key("2.4.0")
    with pytest.raises(ValueError, match="invalid PEP 440"):
        checker.version_key("not a version")


@pytest.mark.parametrize(
    ("version", "spec", "expected"),
    [
        ("0.1.0", "peft-core>=0.1,<0.2", True),
        ("0.1.5.post1", "peft-core>=0.1,<0.2", True),
        ("0.2.0", "peft-core>=0.1,<0.2", False),
        ("0.2.0.dev0", "peft-core>=0.1,<0.2", False),  # <V excludes pre-releases of V
        ("0.0.9", "peft-core>=0.1,<0.2", False),
        ("0.1.3", "peft-core~=0.1.2", True),
        ("0.2.0", "peft-core~=0.1.2", False),
        ("0.1.7", "peft-core==0.1.*", True),
        ("0.1.7", "peft-core!=0.1.*", False),
    ],
)
def test_satisfies(version: str, spec: str, expected: bool):
    assert checker.satisfies(version, checker.parse_requirement(spec)) is expected


def test_parse_requirement():
    req = checker.parse_requirement("Peft_Core[text] >=0.1, <0.2 ; python_version >= '3.10'")
    assert req.name == "peft-core"
    assert req.specifiers == ((">=", "0.1"), ("<", "0.2"))
    assert req.lower_bounds() == ["0.1"]
    assert req.upper_bounds() == ["0.2"]


def _raise_meft_transformers_floor(root: Path, override: str | None) -> None:
    pyproject = root / "packages" / "meft" / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('["pytest>=8"]', '["pytest>=8", "transformers>=5.0"]')
    )
    if override is not None:
        (root / "constraints" / "min-meft.txt").write_text(override)


def test_a_package_override_may_raise_one_floor(fake_repo: Path):
    _raise_meft_transformers_floor(fake_repo, "transformers==5.0.0\n")
    assert checker.check_repo(fake_repo) == []


def test_a_raised_floor_without_its_override_is_caught(fake_repo: Path):
    _raise_meft_transformers_floor(fake_repo, None)
    problems = checker.check_repo(fake_repo)
    assert any("packages/meft" in p and "transformers>=5.0" in p for p in problems), problems


def test_an_override_binds_only_its_own_package(fake_repo: Path):
    (fake_repo / "constraints" / "min-meft.txt").write_text("transformers==5.0.0\n")
    # peft-core still declares 4.44, which min.txt pins: the meft override must not leak into it.
    assert checker.check_repo(fake_repo) == []


def _track_unreleased_core(root: Path) -> None:
    """meft follows a peft-core still in development: floor on its .dev0, as during development."""
    _replace("packages/meft/pyproject.toml", "peft-core>=0.1,<0.2", "peft-core>=0.1.0.dev0,<0.2")(
        root
    )


def test_a_development_version_may_track_a_core_prerelease(fake_repo: Path):
    _track_unreleased_core(fake_repo)  # meft is itself 0.1.0.dev0
    assert checker.check_repo(fake_repo) == []


def test_a_final_release_with_a_prerelease_floor_is_caught(fake_repo: Path):
    _track_unreleased_core(fake_repo)
    _replace("packages/meft/src/meft/__init__.py", '"0.1.0.dev0"', '"0.1.0"')(fake_repo)
    _replace("packages/meft/CHANGELOG.md", "## [0.1.0.dev0]", "## [0.1.0]")(fake_repo)
    problems = checker.check_repo(fake_repo)
    assert problems == [
        "packages/meft: dependencies: 'peft-core>=0.1.0.dev0,<0.2' has a pre-release floor, but "
        "packages/meft is at the final version 0.1.0; require the final release "
        "(e.g. 'peft-core>=0.1.0') before releasing"
    ]

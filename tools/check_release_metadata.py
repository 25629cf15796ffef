"""Release metadata checks for every package under packages/ (run by `nox -s lint`).

Checks, per package directory:

* pyproject.toml, README.md, CHANGELOG.md and tests/ exist;
* ``src/<import>/__init__.py`` defines ``__version__`` as a valid PEP 440 version;
* CHANGELOG.md has a heading naming that version;
* method packages depend on peft-core through a compatible range (a lower bound and a ``<`` upper
  bound) that admits the workspace's peft-core, and no package depends on a method package;
* a package whose own version is a final release declares no pre-release floor (such as
  ``peft-core>=0.2.0.dev0``): pip and uv would then hand its users peft-core pre-releases;
* every floor (``>=`` or ``~=``) declared for a tracked dependency (torch, accelerate, safetensors,
  numpy, tqdm, transformers, peft, datasets, bitsandbytes, timm, h5py, matplotlib), in dependencies or optional dependencies, equals its pin in
  constraints/min.txt, or in constraints/min-<package directory>.txt where that file raises it,
  so the min_deps session tests exactly the floors the packages claim.

Prints every problem found and exits 1 if there is any. Standard library only (Python 3.11+).

    python tools/check_release_metadata.py [REPO_ROOT]
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import tomllib  # standard library since 3.11 (ruff targets 3.10, so sorts it apart)

CORE_DISTRIBUTION = "peft-core"
# Dependencies whose declared floors must equal constraints/min.txt.
TRACKED_FLOORS = (
    "torch", "accelerate", "safetensors", "numpy", "tqdm", "transformers", "peft", "datasets",
    "bitsandbytes", "timm", "h5py", "matplotlib",
)  # fmt: skip
REQUIRED_FILES = ("pyproject.toml", "README.md", "CHANGELOG.md")

# PEP 440, Appendix B (the canonical regular expression), anchored.
_VERSION_PATTERN = r"""
    v?
    (?:
        (?:(?P<epoch>[0-9]+)!)?
        (?P<release>[0-9]+(?:\.[0-9]+)*)
        (?P<pre>
            [-_\.]?
            (?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)
            [-_\.]?
            (?P<pre_n>[0-9]+)?
        )?
        (?P<post>
            (?:-(?P<post_n1>[0-9]+))
            |
            (?:
                [-_\.]?
                (?P<post_l>post|rev|r)
                [-_\.]?
                (?P<post_n2>[0-9]+)?
            )
        )?
        (?P<dev>
            [-_\.]?
            (?P<dev_l>dev)
            [-_\.]?
            (?P<dev_n>[0-9]+)?
        )?
    )
    (?:\+(?P<local>[a-z0-9]+(?:[-_\.][a-z0-9]+)*))?
"""
_VERSION_RE = re.compile(r"^\s*" + _VERSION_PATTERN + r"\s*$", re.VERBOSE | re.IGNORECASE)
_PRE_ORDER = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}

# PEP 508, enough of it for dependency strings: name, optional extras, specifiers, optional marker.
_REQUIREMENT_RE = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*"
    r"(?:\[[^\]]*\])?\s*"
    r"\(?(?P<specs>[^;@()]*)\)?\s*"
    r"(?:;.*)?$"
)
_SPECIFIER_RE = re.compile(r"^\s*(?P<op>~=|===|==|!=|<=|>=|<|>)\s*(?P<version>[^\s,]+)\s*$")


# --------------------------------------------------------------------------------------------------
# Versions and requirements


def is_valid_version(text: str) -> bool:
    """True if ``text`` is a valid PEP 440 version (public or local)."""
    return _VERSION_RE.match(text) is not None


def version_key(text: str) -> tuple:
    """A sort/equality key following PEP 440 ordering (``2.4 == 2.4.0``, ``1.0.dev0 < 1.0a1 < 1.0``).

    Raises ValueError for an invalid version. Local labels are ignored.
    """
    match = _VERSION_RE.match(text)
    if match is None:
        raise ValueError(f"invalid PEP 440 version: {text!r}")
    release = [int(part) for part in match["release"].split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    inf = float("inf")
    pre = (_PRE_ORDER[match["pre_l"].lower()], int(match["pre_n"] or 0)) if match["pre_l"] else None
    post_n = match["post_n1"] or match["post_n2"]
    post = int(post_n or 0) if match["post"] else None
    dev = int(match["dev_n"] or 0) if match["dev"] else None
    # Ordering within one release: X.devN < X.aN.devM < X.aN < X.aN.postM < X < X.postN.devM < X.postN
    if pre is None and post is None and dev is not None:
        pre_key: tuple = (-inf, 0)  # X.devN sorts before every pre-release of X
    elif pre is None:
        pre_key = (inf, 0)
    else:
        pre_key = pre
    post_key = -inf if post is None else post
    dev_key = inf if dev is None else dev
    return (int(match["epoch"] or 0), tuple(release), pre_key, post_key, dev_key)


def is_prerelease(text: str) -> bool:
    match = _VERSION_RE.match(text)
    return match is not None and bool(match["pre"] or match["dev"])


def _base_release(text: str) -> tuple:
    epoch, release, *_ = version_key(text)
    return epoch, release


def _release(text: str) -> list[int]:
    match = _VERSION_RE.match(text)
    if match is None:
        raise ValueError(f"invalid PEP 440 version: {text!r}")
    return [int(part) for part in match["release"].split(".")]


def normalize_name(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Requirement:
    name: str  # normalized
    specifiers: tuple[tuple[str, str], ...]  # (operator, version)
    text: str

    def lower_bounds(self) -> list[str]:
        return [version for op, version in self.specifiers if op in (">=", "~=")]

    def upper_bounds(self) -> list[str]:
        return [version for op, version in self.specifiers if op == "<"]


def parse_requirement(text: str) -> Requirement:
    """Parse a PEP 508 dependency string (URL requirements are rejected with ValueError)."""
    match = _REQUIREMENT_RE.match(text)
    if match is None:
        raise ValueError(f"cannot parse requirement {text!r}")
    specs: list[tuple[str, str]] = []
    for part in filter(None, (p.strip() for p in match["specs"].split(","))):
        spec = _SPECIFIER_RE.match(part)
        if spec is None:
            raise ValueError(f"cannot parse version specifier {part!r} in {text!r}")
        specs.append((spec["op"], spec["version"]))
    return Requirement(normalize_name(match["name"]), tuple(specs), text.strip())


def satisfies(version: str, requirement: Requirement) -> bool:
    """Whether ``version`` satisfies the ordered/equality specifiers of ``requirement``.

    Enough of PEP 440 for bounds checks: ``<V`` excludes pre-releases of V unless V is one, and
    ``==``/``!=`` with a trailing ``.*`` compare by prefix.
    """
    key = version_key(version)
    for op, bound in requirement.specifiers:
        if op in ("==", "!=") and bound.endswith(".*"):
            prefix = _release(bound[:-2])
            release = _release(version)
            matched = (release + [0] * len(prefix))[: len(prefix)] == prefix
            ok = matched if op == "==" else not matched
        elif op == "===":
            ok = version == bound
        else:
            bound_key = version_key(bound)
            if op == "==":
                ok = key == bound_key
            elif op == "!=":
                ok = key != bound_key
            elif op == ">=":
                ok = key >= bound_key
            elif op == "<=":
                ok = key <= bound_key
            elif op == ">":
                ok = key > bound_key
            elif op == "<":
                ok = key < bound_key and not (
                    is_prerelease(version)
                    and not is_prerelease(bound)
                    and _base_release(version) == _base_release(bound)
                )
            else:  # ~=
                release = _release(bound)
                if len(release) < 2:
                    raise ValueError(f"'~={bound}' needs at least two release segments")
                upper = ".".join(str(p) for p in [*release[:-2], release[-2] + 1])
                ok = key >= version_key(bound) and key < version_key(upper)
        if not ok:
            return False
    return True


# --------------------------------------------------------------------------------------------------
# Reading the repository


@dataclass
class Package:
    directory: Path
    distribution: str | None = None  # normalized name from pyproject.toml
    import_name: str | None = None
    version: str | None = None
    requirements: dict[str, list[Requirement]] = field(default_factory=dict)  # where -> reqs

    @property
    def label(self) -> str:
        return f"packages/{self.directory.name}"


def read_version(init_file: Path) -> str | None:
    """The string literal assigned to ``__version__`` at module level, or None."""
    tree = ast.parse(init_file.read_text(encoding="utf-8"), filename=str(init_file))
    for node in tree.body:
        targets = []
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        for target in targets:
            if isinstance(target, ast.Name) and target.id == "__version__":
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    return value.value
                return None
    return None


def read_min_pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a constraints file, by normalized name."""
    pins: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;]+)", line)
        if match:
            pins[normalize_name(match[1])] = match[2]
    return pins


def _find_import_name(directory: Path, pyproject: dict) -> str | None:
    version_path = pyproject.get("tool", {}).get("hatch", {}).get("version", {}).get("path")
    if isinstance(version_path, str):
        parts = Path(version_path).parts
        if len(parts) == 3 and parts[0] == "src" and parts[2] == "__init__.py":
            return parts[1]
    candidates = sorted(p.parent.name for p in (directory / "src").glob("*/__init__.py"))
    return candidates[0] if len(candidates) == 1 else None


def load_package(directory: Path, problems: list[str]) -> Package:
    """Read one package directory, appending what is missing or unreadable to ``problems``."""
    package = Package(directory)
    for name in REQUIRED_FILES:
        if not (directory / name).is_file():
            problems.append(f"{package.label}: missing {name}")
    if not (directory / "tests").is_dir():
        problems.append(f"{package.label}: missing tests/ directory")

    pyproject: dict = {}
    if (directory / "pyproject.toml").is_file():
        try:
            pyproject = tomllib.loads((directory / "pyproject.toml").read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as error:
            problems.append(f"{package.label}: pyproject.toml is not valid TOML: {error}")
    project = pyproject.get("project", {})
    if pyproject and "name" not in project:
        problems.append(f"{package.label}: pyproject.toml has no [project] name")
    if "name" in project:
        package.distribution = normalize_name(project["name"])

    groups = {"dependencies": project.get("dependencies", [])}
    for extra, reqs in project.get("optional-dependencies", {}).items():
        groups[f"optional-dependencies.{extra}"] = reqs
    for where, reqs in groups.items():
        parsed = package.requirements.setdefault(where, [])
        for text in reqs:
            try:
                parsed.append(parse_requirement(text))
            except ValueError as error:
                problems.append(f"{package.label}: {where}: {error}")

    package.import_name = _find_import_name(directory, pyproject)
    if package.import_name is None:
        problems.append(
            f"{package.label}: cannot tell the import package (expected [tool.hatch.version] "
            "path = 'src/<import>/__init__.py' or exactly one src/<import>/__init__.py)"
        )
        return package
    init_file = directory / "src" / package.import_name / "__init__.py"
    init_label = f"{package.label}/src/{package.import_name}/__init__.py"
    if not init_file.is_file():
        problems.append(f"{package.label}: missing {init_label}")
        return package
    try:
        package.version = read_version(init_file)
    except SyntaxError as error:
        problems.append(f"{init_label}: cannot parse: {error}")
        return package
    if package.version is None:
        problems.append(f"{init_label}: no module-level __version__ = '<string literal>'")
    elif not is_valid_version(package.version):
        problems.append(
            f"{init_label}: __version__ {package.version!r} is not a valid PEP 440 version"
        )
        package.version = None
    return package


def discover_packages(root: Path) -> list[Path]:
    packages_dir = root / "packages"
    return sorted(p for p in packages_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


# --------------------------------------------------------------------------------------------------
# Checks


def check_changelog(package: Package) -> list[str]:
    """CHANGELOG.md must have a markdown heading that names the package's current version."""
    changelog = package.directory / "CHANGELOG.md"
    if package.version is None or not changelog.is_file():
        return []
    # The version as a whole token: "0.1.0" must not match a "0.1.0.dev0" or "10.1.0" heading.
    token = re.compile(r"(?<![\w.])" + re.escape(package.version) + r"(?![\w]|\.\w)")
    for line in changelog.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#") and token.search(line):
            return []
    return [
        f"{package.label}/CHANGELOG.md: no heading for the current version {package.version} "
        f"(add e.g. '## [{package.version}] - YYYY-MM-DD')"
    ]


def check_dependencies(packages: list[Package]) -> list[str]:
    """peft-core ranges of method packages, and no dependencies on method packages."""
    problems: list[str] = []
    core = next((p for p in packages if p.distribution == CORE_DISTRIBUTION), None)
    if core is None:
        problems.append(f"no package under packages/ is named {CORE_DISTRIBUTION!r}")
    method_names = {p.distribution for p in packages if p.distribution and p is not core}
    for package in packages:
        if package.distribution is None:
            continue
        for where, reqs in package.requirements.items():
            for req in reqs:
                if req.name in method_names:
                    problems.append(
                        f"{package.label}: {where} names the method package {req.text!r}; "
                        "packages must depend only on peft-core, never on each other"
                    )
        if package is core:
            continue
        core_reqs = [
            r for r in package.requirements.get("dependencies", []) if r.name == CORE_DISTRIBUTION
        ]
        if not core_reqs:
            problems.append(f"{package.label}: dependencies do not include {CORE_DISTRIBUTION}")
            continue
        for req in core_reqs:
            if not req.lower_bounds() or not req.upper_bounds():
                problems.append(
                    f"{package.label}: {req.text!r} is not a compatible range; "
                    f"declare both bounds, e.g. '{CORE_DISTRIBUTION}>=0.1,<0.2'"
                )
                continue
            try:
                admits_core = core is None or core.version is None or satisfies(core.version, req)
            except ValueError as error:
                problems.append(f"{package.label}: {req.text!r}: {error}")
                continue
            if not admits_core:
                problems.append(
                    f"{package.label}: {req.text!r} excludes the workspace's "
                    f"{CORE_DISTRIBUTION} {core.version}"
                )
    return problems


def check_prerelease_floors(package: Package) -> list[str]:
    """A final release must not declare a pre-release floor on anything.

    ``peft-core>=0.2.0.dev0`` is how a method package tracks an unreleased peft-core during
    development; shipped in a final release it makes installers accept (and prefer, when newest)
    peft-core pre-releases for every user. Raise the floor to the final version when releasing.
    """
    if package.version is None or is_prerelease(package.version):
        return []
    problems: list[str] = []
    for where, reqs in package.requirements.items():
        for req in reqs:
            floors = [floor for floor in req.lower_bounds() if is_prerelease(floor)]
            if floors:
                problems.append(
                    f"{package.label}: {where}: {req.text!r} has a pre-release floor, but "
                    f"{package.label} is at the final version {package.version}; require the "
                    f"final release (e.g. '{req.name}>={_base_version(floors[0])}') before releasing"
                )
    return problems


def _base_version(text: str) -> str:
    match = _VERSION_RE.match(text)
    return match["release"] if match else text


def check_floors(packages: list[Package], min_pins: dict[str, str], min_file: str) -> list[str]:
    """Each declared floor of a tracked dependency must equal its pin in constraints/min.txt."""
    problems: list[str] = []
    for name in TRACKED_FLOORS:
        if name not in min_pins:
            problems.append(f"{min_file}: no '{name}==<floor>' pin")
    for package in packages:
        for where, reqs in package.requirements.items():
            for req in reqs:
                if req.name not in TRACKED_FLOORS:
                    continue
                floors = req.lower_bounds()
                if not floors:
                    problems.append(
                        f"{package.label}: {where}: {req.text!r} declares no floor; "
                        f"write '{req.name}>={min_pins.get(req.name, 'X')}' to match {min_file}"
                    )
                    continue
                pin = min_pins.get(req.name)
                if pin is None:
                    continue  # reported once above
                for floor in floors:
                    try:
                        equal = version_key(floor) == version_key(pin)
                    except ValueError as error:
                        problems.append(f"{package.label}: {where}: {req.text!r}: {error}")
                        continue
                    if not equal:
                        problems.append(
                            f"{package.label}: {where}: floor {req.text!r} does not equal "
                            f"{min_file} pin '{req.name}=={pin}'; the min_deps session would not "
                            "test the declared floor (change one of them)"
                        )
    return problems


def check_repo(root: Path) -> list[str]:
    """Every problem found in the repository at ``root`` (empty when all is well)."""
    root = Path(root)
    problems: list[str] = []
    if not (root / "packages").is_dir():
        return [f"{root}: no packages/ directory"]
    packages = [load_package(directory, problems) for directory in discover_packages(root)]
    if not packages:
        problems.append("packages/: no package directories")
    for package in packages:
        problems += check_changelog(package)
        problems += check_prerelease_floors(package)
    problems += check_dependencies(packages)
    min_file = root / "constraints" / "min.txt"
    if not min_file.is_file():
        problems.append("constraints/min.txt: missing")
        return problems
    shared_pins = read_min_pins(min_file)
    for package in packages:
        # constraints/min-<package>.txt raises floors for one package (the min_deps session
        # merges it over min.txt for that package alone).
        override = root / "constraints" / f"min-{package.directory.name}.txt"
        pins = {**shared_pins, **(read_min_pins(override) if override.is_file() else {})}
        label = f"constraints/{override.name}" if override.is_file() else "constraints/min.txt"
        problems += check_floors([package], pins, label)
    return list(dict.fromkeys(problems))  # a missing shared pin is reported once, not per package


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path(__file__).resolve().parent.parent
    problems = check_repo(root)
    if problems:
        print(f"release metadata: {len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print("release metadata: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())

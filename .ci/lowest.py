#!/usr/bin/env python3
"""CI job: each package at the lowest versions it declares, imported and smoke-tested.

For each package, a fresh virtual environment (outside the repository) gets the package
from its local path with uv's ``--resolution lowest-direct``: every dependency the
package (and ajwt-core, installed beside an adapter) declares is installed at its lower
bound, the dependencies of those at their newest. Then the package's modules are
imported and its smoke tests run against that environment (the test tools pinned to
their ``uv.lock`` versions). A lower bound that is too low fails here.

    python3 .ci/lowest.py [PACKAGE...]     # default: all four

Exit status 1 if any package fails. uv's cache makes repeated runs fast (about four
minutes for all four on this machine, most of it the tests).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dev import _uv  # noqa: E402 - dev.py finds or bootstraps uv

CORE_EXTRAS = "packages/ajwt-core[idp,rs,redis,postgres,cli]"
# package -> (what to install, modules to import, smoke tests). The tests use the demo's
# embedded stack and reference scenarios (ajwt-demo), a test dependency installed too, with
# what it depends on (ajwt-langchain: --no-sources sees no workspace).
DEMO = ["packages/ajwt-langchain", "packages/ajwt-demo"]
JOBS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "ajwt-core": (
        [CORE_EXTRAS, *DEMO],
        ["ajwt_core", "ajwt_core.idp.app", "ajwt_core.rs.fastapi", "ajwt_core.cli"],
        ["tests/core", "tests/rs", "tests/idp", "tests/cli", "tests/e2e"],
    ),
    "ajwt-langchain": (
        ["packages/ajwt-core[idp]", *DEMO],
        ["ajwt_langchain"],
        ["packages/ajwt-langchain/tests"],
    ),
    "ajwt-autogen": (
        ["packages/ajwt-core[idp]", "packages/ajwt-autogen", *DEMO],
        ["ajwt_autogen"],
        ["packages/ajwt-autogen/tests"],
    ),
    "ajwt-crewai": (
        ["packages/ajwt-core[idp]", "packages/ajwt-crewai", *DEMO],
        ["ajwt_crewai"],
        ["packages/ajwt-crewai/tests"],
    ),
}
# The dev group's test libraries the smoke tests import (sybil: the root conftest.py),
# at their locked versions; not the packages' own dependencies, which stay at their floors.
TEST_TOOLS = (
    "pytest",
    "pytest-asyncio",
    "pytest-timeout",
    "hypothesis",
    "sybil",
    "jsonschema",
    "opentelemetry-sdk",
    "authlib",
    "joserfc",
    "flask",
    "werkzeug",
    "django",
)
# Per package: test libraries only its tests import.
JOB_TEST_TOOLS: dict[str, tuple[str, ...]] = {
    "ajwt-autogen": ("mcp",),  # the AutoGen tests check that an McpWorkbench is refused
}


def locked_versions(names: tuple[str, ...]) -> list[str]:
    with (ROOT / "uv.lock").open("rb") as handle:
        lock = tomllib.load(handle)
    versions: dict[str, list[tuple[tuple[int, ...], str]]] = {}
    for package in lock["package"]:
        if "version" in package:
            number = tuple(int(part) for part in re.findall(r"\d+", package["version"])[:3])
            versions.setdefault(package["name"], []).append((number, package["version"]))
    # A name locked twice is split by Python version (django 6 needs 3.12): the older
    # one is the one for the oldest Python we support, which this job runs on.
    return [f"{name}=={min(versions[name])[1]}" for name in names]


def declared_names(package: str) -> set[str]:
    with (ROOT / "packages" / package / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0] for r in requirements}


def step(argv: list[str], **kw: object) -> bool:
    result = subprocess.run(argv, **kw)  # type: ignore[call-overload]
    return bool(result.returncode == 0)


def check(package: str, uv: str, scratch: Path) -> bool:
    install, modules, tests = JOBS[package]
    venv = scratch / package
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    quiet = {"cwd": scratch, "env": env}
    lowest = ["--resolution", "lowest-direct", "--no-sources", *(str(ROOT / p) for p in install)]
    # One resolution: test tools installed afterwards would upgrade the floors under test.
    tools = locked_versions(TEST_TOOLS + JOB_TEST_TOOLS.get(package, ()))
    commands = [
        [uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
        [uv, "pip", "install", "--quiet", "--python", python, *lowest, *tools],
    ]
    if not all(step(command, **quiet) for command in commands):
        print(f"lowest: {package}: the install failed", flush=True)
        return False
    frozen = subprocess.run(
        [uv, "pip", "freeze", "--python", python], capture_output=True, text=True, **quiet
    ).stdout.splitlines()
    names = {n.lower().replace("_", "-") for n in declared_names(package)}
    shown = [line for line in frozen if line.split("==")[0].lower() in names]
    print(f"lowest: {package}: {' '.join(shown)}", flush=True)
    imports = "; ".join(f"import {m}" for m in modules)
    if not step([python, "-c", imports], **quiet):
        print(f"lowest: {package}: the import failed", flush=True)
        return False
    return step([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=ROOT, env=env)


def main(argv: list[str]) -> int:
    packages = argv or list(JOBS)
    uv = _uv()
    results: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="ajwt-lowest-") as scratch:
        for package in packages:
            started = time.monotonic()
            results[package] = check(package, uv, Path(scratch))
            verdict = "passed" if results[package] else "FAILED"
            print(f"lowest: {package} {verdict} in {time.monotonic() - started:.0f} s", flush=True)
    passed = sum(results.values())
    print(f"lowest: {passed} passed, {len(results) - passed} failed", flush=True)
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

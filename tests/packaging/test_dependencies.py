"""Every package declares what it imports, and every extra installs what it claims.

A third-party module imported anywhere in a package's source (also inside a function
or under ``TYPE_CHECKING``) must come from a distribution the package declares, as a
dependency or in an extra; ``ajwt_core._extras.EXTRAS`` (the modules behind each
one-line "install it with" message) must match the extras of ``ajwt-core``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from functools import cache
from pathlib import Path

import pytest

from ajwt_core._extras import EXTRAS
from tests.packaging.project import PACKAGES, ROOT, normalize, pyproject, requirement_name

# Distributions whose import name is not their name with "-" as "_".
MODULE_OF = {"opentelemetry-api": "opentelemetry"}
FIRST_PARTY = {"ajwt_core", "ajwt_langchain", "ajwt_autogen", "ajwt_crewai", "ajwt_demo"}
# Distributions that a declared one pins to an exact version: pydantic requires
# pydantic-core==<its build>, so declaring pydantic fixes pydantic-core too.
PINNED_BY = {"pydantic-core": "pydantic"}


def imported_modules(source: Path) -> set[str]:
    """The absolute module names imported by the ``.py`` files under ``source``."""
    found: set[str] = set()
    for path in source.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
    return found


@cache
def distributions_of(top: str) -> tuple[str, ...]:
    return tuple(importlib.metadata.packages_distributions().get(top, ()))


@cache
def files_of(distribution: str) -> tuple[str, ...]:
    return tuple(f.as_posix() for f in importlib.metadata.distribution(distribution).files or ())


def owner_of(module: str) -> str | None:
    """The distribution whose files hold ``module``.

    A namespace package shared by several distributions is told apart by their file
    lists (``langgraph.prebuilt`` is in ``langgraph-prebuilt``, ``langgraph.graph`` in
    ``langgraph``), without importing anything.
    """
    candidates = distributions_of(module.partition(".")[0])
    if len(candidates) == 1:
        return normalize(candidates[0])
    parts = module.split(".")
    for depth in range(len(parts), 0, -1):
        prefix = "/".join(parts[:depth])
        for name in candidates:
            if any(f.startswith((prefix + "/", prefix + ".")) for f in files_of(name)):
                return normalize(name)
    return None


def declared(package: str) -> set[str]:
    project = pyproject(package)["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    return {requirement_name(r) for r in requirements} | {normalize(package)}


@pytest.mark.parametrize("package", PACKAGES)
def test_every_imported_distribution_is_declared(package: str) -> None:
    source = ROOT / "packages" / package / "src"
    missing: dict[str, str] = {}
    for module in sorted(imported_modules(source)):
        top = module.partition(".")[0]
        if top in sys.stdlib_module_names or top == "__future__":
            continue
        owner = normalize(top) if top in FIRST_PARTY else owner_of(module)
        assert owner is not None, f"{package} imports {module}, which is not installed"
        if owner not in declared(package) and PINNED_BY.get(owner) not in declared(package):
            missing[module] = owner
    assert not missing, f"{package} imports modules of undeclared distributions: {missing}"


def test_the_one_line_messages_name_each_extras_own_modules() -> None:
    extras = pyproject("ajwt-core")["project"]["optional-dependencies"]
    assert set(EXTRAS) == set(extras)
    for extra, requirements in extras.items():
        modules: set[str] = set()
        for requirement in requirements:
            name = requirement_name(requirement)
            if name == "ajwt-core":  # a self-reference: ajwt-core[idp,cli]
                inner = requirement.partition("[")[2].partition("]")[0].split(",")
                modules.update(m for e in inner for m in EXTRAS[e.strip()])
            else:
                modules.add(MODULE_OF.get(name, name.replace("-", "_")))
        assert set(EXTRAS[extra]) == modules, extra


def test_adapters_accept_only_this_minor_release_of_the_core() -> None:
    version = pyproject("ajwt-core")["project"]["version"]
    major, minor, _ = (int(part) for part in version.split("."))
    bound = f">={version},<{major}.{minor + 1}"
    for package in PACKAGES[1:]:
        core = [
            d for d in pyproject(package)["project"]["dependencies"] if d.startswith("ajwt-core")
        ]
        assert len(core) == 1 and core[0].endswith(bound), package

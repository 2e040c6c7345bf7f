"""What the packaging tests read from the repository: packages, their metadata, uv."""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ajwt-core", "ajwt-langchain", "ajwt-autogen", "ajwt-crewai", "ajwt-demo")


def pyproject(package: str) -> dict[str, Any]:
    with (ROOT / "packages" / package / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def normalize(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """``"sqlalchemy[asyncio]>=2.0.36"`` → ``"sqlalchemy"``."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return normalize(match.group(0))


def uv() -> str:
    """The uv that dev.py uses (on PATH, else the one it bootstrapped)."""
    found = shutil.which("uv") or str(ROOT / ".bootstrap" / "bin" / "uv")
    if not Path(found).exists():
        message = "uv is not installed: run python3 dev.py sync"
        if os.environ.get("CI") or os.environ.get("AJWT_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found

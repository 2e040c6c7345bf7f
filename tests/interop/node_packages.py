"""Node packages for the interoperability tests, installed at test time.

``npm ci`` installs a folder's committed ``package.json`` + ``package-lock.json`` into a
cache directory keyed by their content (``$AJWT_NODE_CACHE``, else
``~/.cache/ajwt/interop-node``), once; later runs reuse it. Without node, npm or the
registry the tests skip with the reason; under ``AJWT_REQUIRE_SERVICES=1`` (CI) they
fail, as the service tests do (``tests/services.py``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

MIN_NODE_MAJOR = 20


def unavailable(message: str) -> None:
    if os.environ.get("AJWT_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (AJWT_REQUIRE_SERVICES=1: required in CI)")
    pytest.skip(message)


def run(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - node/npm found on PATH, fixed arguments
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def node_and_npm(purpose: str) -> tuple[str, str]:
    """The paths of ``node`` (at least ``MIN_NODE_MAJOR``) and ``npm``, or skip/fail."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable(f"node and npm are needed for {purpose}")
    assert node is not None and npm is not None
    version = run([node, "--version"], Path.cwd(), timeout=30).stdout.strip()
    if int(version.lstrip("v").split(".")[0] or 0) < MIN_NODE_MAJOR:
        unavailable(f"node {version} is older than {MIN_NODE_MAJOR}")
    return node, npm


def _cache_root() -> Path:
    configured = os.environ.get("AJWT_NODE_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ajwt" / "interop-node"


def install(npm: str, folder: Path, package: str) -> Path:
    """``npm ci`` of ``folder``'s lock file into ``<cache>/<lock digest>`` once (``package``
    is the dependency whose presence says it is done); the installed folder."""
    manifest = [folder / "package.json", folder / "package-lock.json"]
    key = hashlib.sha256(b"".join(path.read_bytes() for path in manifest)).hexdigest()[:16]
    target = _cache_root() / key
    if (target / "node_modules" / package / "package.json").is_file():
        return target
    staging = target.with_name(f"{key}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for path in manifest:
        shutil.copy2(path, staging / path.name)
    try:
        result = run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            staging,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        shutil.rmtree(staging, ignore_errors=True)
        unavailable("npm ci did not finish in 300 s (is the npm registry reachable?)")
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        unavailable(f"npm ci failed (is the npm registry reachable?): {result.stderr[-500:]}")
    try:
        staging.rename(target)
    except OSError:  # another run installed it meanwhile
        shutil.rmtree(staging, ignore_errors=True)
    return target

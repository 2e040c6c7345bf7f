"""Every vector recomputed from the spec text in JavaScript, with panva's ``jose`` and
the ``canonicalize`` JCS package (``tests/interop/node/check_vectors.mjs``).

The packages are installed at test time with ``npm ci`` from the committed
``package.json`` + ``package-lock.json`` into a cache directory keyed by their content
(``$AJWT_NODE_CACHE``, else ``~/.cache/ajwt/interop-node``). Without node, npm or the
registry the tests skip with the reason; under ``AJWT_REQUIRE_SERVICES=1`` (CI) they fail,
as the service tests do (``tests/services.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
VECTORS = HERE.parent / "vectors"
MIN_NODE_MAJOR = 20


def unavailable(message: str) -> None:
    if os.environ.get("AJWT_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (AJWT_REQUIRE_SERVICES=1: required in CI)")
    pytest.skip(message)


def _run(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - node/npm found on PATH, fixed arguments
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def _cache_root() -> Path:
    configured = os.environ.get("AJWT_NODE_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ajwt" / "interop-node"


def _install(npm: str) -> Path:
    """``npm ci`` into ``<cache>/<lock digest>`` once; later runs reuse it."""
    manifest = [NODE_DIR / "package.json", NODE_DIR / "package-lock.json"]
    key = hashlib.sha256(b"".join(path.read_bytes() for path in manifest)).hexdigest()[:16]
    target = _cache_root() / key
    if (target / "node_modules" / "jose" / "package.json").is_file():
        return target
    staging = target.with_name(f"{key}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for path in manifest:
        shutil.copy2(path, staging / path.name)
    try:
        result = _run(
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


@pytest.fixture(scope="module")
def checker() -> Iterator[tuple[str, Path]]:
    """``(node, script)``: the checker copied next to its installed packages."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable("node and npm are needed for the jose interoperability check")
    assert node is not None and npm is not None
    version = _run([node, "--version"], HERE, timeout=30).stdout.strip()
    if int(version.lstrip("v").split(".")[0] or 0) < MIN_NODE_MAJOR:
        unavailable(f"node {version} is older than {MIN_NODE_MAJOR}")
    target = _install(npm)
    # ES modules resolve "jose" from the script's own folder: the script lives there.
    script = target / f"check_vectors.{os.getpid()}.mjs"
    shutil.copy2(NODE_DIR / "check_vectors.mjs", script)
    yield node, script
    script.unlink(missing_ok=True)


def run_checker(checker: tuple[str, Path], vectors: Path) -> subprocess.CompletedProcess[str]:
    node, script = checker
    return _run([node, str(script), str(vectors)], script.parent, timeout=120)


def test_vectors_agree_with_jose_and_canonicalize(checker: tuple[str, Path]) -> None:
    result = run_checker(checker, VECTORS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ", 0 disagree" in result.stdout.splitlines()[-1]


def test_the_node_checker_notices_a_wrong_vector(checker: tuple[str, Path], tmp_path: Path) -> None:
    for path in VECTORS.glob("*.json"):
        shutil.copy2(path, tmp_path / path.name)
    tokens = json.loads((tmp_path / "tokens.json").read_text())
    tokens["cases"][0]["expect"] = "bad_signature"
    (tmp_path / "tokens.json").write_text(json.dumps(tokens))
    ledger = json.loads((tmp_path / "ledger.json").read_text())
    ledger["head"] = "sha256:" + "0" * 64
    (tmp_path / "ledger.json").write_text(json.dumps(ledger))

    result = run_checker(checker, tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "DISAGREES token valid:" in result.stdout
    assert "DISAGREES ledger chain:" in result.stdout

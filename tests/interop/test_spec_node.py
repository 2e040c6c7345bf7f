"""Every vector recomputed from the spec text in JavaScript, with panva's ``jose`` and
the ``canonicalize`` JCS package (``tests/interop/node/check_vectors.mjs``).

The packages are installed at test time with ``npm ci`` from the committed
``package.json`` + ``package-lock.json`` into a cache directory keyed by their content
(``$AJWT_NODE_CACHE``, else ``~/.cache/ajwt/interop-node``). Without node, npm or the
registry the tests skip with the reason; under ``AJWT_REQUIRE_SERVICES=1`` (CI) they fail,
as the service tests do (``tests/services.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.node_packages import install, node_and_npm
from tests.interop.node_packages import run as _run

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
VECTORS = HERE.parent / "vectors"


@pytest.fixture(scope="module")
def checker() -> Iterator[tuple[str, Path]]:
    """``(node, script)``: the checker copied next to its installed packages."""
    node, npm = node_and_npm("the jose interoperability check")
    target = install(npm, NODE_DIR, "jose")
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

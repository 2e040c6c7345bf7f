"""Every vector recomputed from the spec text by a second Python implementation
(``tests/interop/spec.py``: joserfc, rfc8785, hashlib), not by ``ajwt_core``."""

from __future__ import annotations

import ast
import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.interop.check_python import CHECKS, load

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_vectors_agree_with_the_independent_implementation(name: str) -> None:
    file, check = CHECKS[name]
    assert check(load(file)) > 0


def test_the_independent_implementation_runs_without_ajwt_core() -> None:
    # sys.modules[name] = None makes every "import ajwt_core" raise ImportError.
    code = (
        "import sys, runpy; sys.modules['ajwt_core'] = None; "
        "runpy.run_module('tests.interop.check_python', run_name='__main__')"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-W", "error::DeprecationWarning", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all vectors agree with the spec" in result.stdout


def mutated(file: str, edit: Any) -> dict[str, Any]:
    vectors = copy.deepcopy(load(file))
    edit(vectors)
    return vectors


def set_in(path: list[Any], value: Any) -> Any:
    def edit(vectors: dict[str, Any]) -> None:
        target = vectors
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return edit


@pytest.mark.parametrize(
    ("name", "edit"),
    [
        ("checksums", set_in(["cases", 4, "checksum"], "sha256:" + "0" * 64)),
        ("prompt_normalisation", set_in(["prompt_normalisation", 1, "normalised"], "a\rb\nc")),
        ("prompt_normalisation", set_in(["prompt_whitespace", 0], "U+FEFF")),
        ("input_digest", set_in(["input_digest", "input_digest"], "sha256:" + "1" * 64)),
        ("tool_source", set_in(["tool_source", "cases", 0, "dump"], "Module()")),
        ("keys", set_in(["derived", 0, "private_scalar_hex"], "1" * 64)),
        ("keys", set_in(["p256_reduction", 2, "private_scalar_hex"], "0" * 64)),
        ("tokens", set_in(["cases", 0, "expect"], "bad_signature")),
        ("tokens", set_in(["cases", 5, "expect"], "valid")),
        ("proofs", set_in(["cases", 1, "request", "url"], "https://api.example/other?draft=1")),
        ("delegation", set_in(["cases", 1, "expect"], "valid")),
        ("delegation", set_in(["cases", 0, "assertion_hash"], "sha256:" + "2" * 64)),
        ("ledger", set_in(["genesis"], "sha256:")),
        ("ledger", set_in(["tampered", 0, "first_bad_seq"], None)),
        ("workflow", set_in(["cases", 0, "workflow_hash"], "sha256:" + "3" * 64)),
    ],
)
def test_the_independent_implementation_notices_a_wrong_vector(name: str, edit: Any) -> None:
    # A checker that agreed with anything would prove nothing.
    file, check = CHECKS[name]
    with pytest.raises(AssertionError):
        check(mutated(file, edit))


def test_the_independent_implementation_does_not_import_ajwt_core() -> None:
    for path in Path(__file__).parent.glob("*.py"):
        if path.name.startswith("test_"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            assert not any(m.split(".")[0] == "ajwt_core" for m in modules), path.name

#!/usr/bin/env python3
"""Bootstrap and run A-JWT: the README's two quick-start commands.

    python3 dev.py demo [ARGS...]   # the main job: `ajwt demo`
    python3 dev.py test [ARGS...]   # every test (pytest), with the locked dependencies
    python3 dev.py lint             # ruff check, ruff format --check, mypy --strict
    python3 dev.py sync             # only create/refresh .venv from uv.lock

Needs only Python 3.11+ and git. If `uv` is not on PATH it is installed with pip into
`.bootstrap/`, then `uv sync --frozen` builds `.venv/` from the committed `uv.lock`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
BOOTSTRAP = ROOT / ".bootstrap"
UV_VERSION = "0.13.9"
BIN = "Scripts" if os.name == "nt" else "bin"


def _uv() -> str:
    found = shutil.which("uv")
    if found:
        return found
    uv = BOOTSTRAP / BIN / "uv"
    if not uv.exists():
        print(f"dev.py: installing uv {UV_VERSION} into {BOOTSTRAP}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=True).create(BOOTSTRAP)
        subprocess.run(
            [str(BOOTSTRAP / BIN / "python"), "-m", "pip", "install", "-q", f"uv=={UV_VERSION}"],
            check=True,
        )
    return str(uv)


def _sync() -> None:
    subprocess.run([_uv(), "sync", "--frozen", "--all-packages", "--quiet"], cwd=ROOT, check=True)


def _run(*argv: str) -> int:
    return subprocess.run([str(ROOT / ".venv" / BIN / argv[0]), *argv[1:]], cwd=ROOT).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "lint", "sync"}:
        print(__doc__, file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    _sync()
    if command == "demo":
        return _run("ajwt", "demo", *rest)
    if command == "test":
        return _run("pytest", *rest)
    if command == "lint":
        sources = sorted(str(path) for path in ROOT.glob("packages/*/src"))
        codes = [
            _run("ruff", "check", "."),
            _run("ruff", "format", "--check", "."),
            _run("mypy", "--strict", *sources),
        ]
        return max(codes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

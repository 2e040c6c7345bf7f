"""Docs are code: every ```python and ```sh block of the README files and of ``docs/`` runs
as a test, as written (Sybil).

- The ``python`` blocks of one page run in order in one namespace, like one program: a
  page that needs an IdP starts one itself (and stops it at its end), as a reader would.
- ``sh`` blocks run with bash from the repository root, the project's ``.venv/bin`` first
  on ``PATH``, and must exit 0.
- Anything that is not meant to run is fenced as ``text`` (a ``pip install``, output).
- ``<!-- skip: next -->`` before a block is allowed only where CI runs that very command
  itself (the README's two quick-start commands: ``.ci/run`` runs them).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sybil import Example, Sybil
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser

ROOT = Path(__file__).resolve().parent
SHELL_TIMEOUT = 900


def _run_shell(example: Example) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # CrewAI writes under $HOME and phones home unless told not to (FRAMEWORKS.md).
    env.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
    env.setdefault("CREWAI_TRACING_ENABLED", "false")
    env.setdefault("OTEL_SDK_DISABLED", "true")
    result = subprocess.run(  # noqa: S603 - the documentation's own commands
        ["bash", "-euo", "pipefail", "-c", str(example.parsed)],  # noqa: S607
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SHELL_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"the shell block at {example.path}:{example.line} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
        )


def _setup(namespace: dict[str, object]) -> None:
    # A page's blocks are one program, run as a script is.
    namespace["__name__"] = "__main__"


pytest_collect_file = Sybil(
    setup=_setup,
    parsers=[
        PythonCodeBlockParser(),
        CodeBlockParser(language="sh", evaluator=_run_shell),
        SkipParser(),
    ],
    patterns=["README.md", "*.md"],
    excludes=["CHANGELOG.md"],
).pytest()

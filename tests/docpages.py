"""Run a documentation page the way a reader follows it: files written, commands typed in
terminals, servers left running in other terminals.

A page steers this with HTML comments (invisible on GitHub), each on the last line
before a fenced block:

- ``<!-- file: api.py -->``: the block (any language) is written to ``api.py`` instead of
  being run, as a reader saves it in an editor.
- ``<!-- background: 8000 -->``: the ``sh`` block is a server a reader leaves running in a
  terminal of its own. It starts in the background; the next block runs once every
  condition holds: a number is a TCP port on 127.0.0.1 that must answer (and must be
  free before the start: a busy port fails at once, naming it), anything else a file
  (relative to the page's directory) that must exist. It is stopped when the page ends.
- ``<!-- output -->``: the block (``text``) is what the ``sh`` block before it prints:
  its output, stripped, must be the block's text, stripped.
- ``<!-- install -->``: the ``sh`` block is the page's ``pip install`` line. It is not run
  in the repository (the project's ``.venv`` has every package already; each named
  distribution and extra must be installed there); the wheel test
  (``tests/packaging/test_wheels.py``) runs it, from the built wheels, in a fresh virtual
  environment.

A page that uses ``file:`` or ``background:`` runs in a scratch directory of its own:
its files are written there and its ``sh`` blocks run there (other pages' ``sh`` blocks
run from the repository root). ``sh`` blocks run with ``bash -euo pipefail``, the
interpreter's ``bin`` directory first on ``PATH``. The root ``conftest.py`` (Sybil) and
the wheel test share this module.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

SHELL_TIMEOUT: Final = 900
#: How long a background command may take before its conditions hold.
START_TIMEOUT: Final = 90.0
#: Environment every shell block gets: CrewAI writes under $HOME and phones home unless
#: told not to (FRAMEWORKS.md).
QUIET_ENV: Final = {
    "CREWAI_DISABLE_TELEMETRY": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "OTEL_SDK_DISABLED": "true",
}
_DIRECTIVE = re.compile(r"<!--\s*(file|background|install|output)\s*(?::\s*(.*?))?\s*-->\s*\Z")
_FENCE = re.compile(r"^```(\S+)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)


@dataclass(frozen=True)
class Directive:
    name: str
    argument: str


@dataclass(frozen=True)
class Block:
    """A fenced block of a page, with the directive on the line before it."""

    language: str
    source: str
    line: int
    directive: Directive | None


def directive_before(text: str, start: int) -> Directive | None:
    """The directive comment on the last non-blank line before ``start``, if any."""
    before = text[:start].rstrip()
    last_line = before[before.rfind("\n") + 1 :]
    match = _DIRECTIVE.search(last_line)
    if match is None:
        return None
    return Directive(match.group(1), (match.group(2) or "").strip())


def blocks(text: str) -> list[Block]:
    """Every fenced block of a Markdown page, in order."""
    return [
        Block(
            language=m.group(1),
            source=m.group(2),
            line=text.count("\n", 0, m.start()) + 1,
            directive=directive_before(text, m.start()),
        )
        for m in _FENCE.finditer(text)
    ]


def needs_scratch_directory(text: str) -> bool:
    return any(b.directive and b.directive.name in ("file", "background") for b in blocks(text))


def install_arguments(source: str) -> list[str]:
    """The requirements of a ``pip install`` line (``pip install 'a[x]' b`` → ``a[x]``, ``b``)."""
    words = shlex.split(source, comments=True)
    if words[:2] != ["pip", "install"] or len(words) < 3:
        raise AssertionError(f"an install block is one 'pip install …' line, not {source!r}")
    return words[2:]


def check_installed(source: str) -> None:
    """Each requirement of the line is installed here, with the extras it names."""
    for requirement in install_arguments(source):
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[([^\]]*)\])?.*", requirement)
        assert match, f"cannot read the requirement {requirement!r}"
        name, extras = match.group(1), match.group(2)
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise AssertionError(f"the page installs {name!r}, which does not exist here") from None
        provided = set(distribution.metadata.get_all("Provides-Extra") or [])
        for extra in (extras or "").split(","):
            if extra.strip():
                assert extra.strip() in provided, f"{name} has no extra {extra.strip()!r}"


def _port_answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class _Background:
    process: subprocess.Popen[bytes]
    log: Path
    line: int

    def tail(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- background block at line {self.line} (log {self.log}) ---\n{text[-3000:]}"


@dataclass
class Page:
    """One reading of a page: where it runs, with which interpreter, and what it left
    running."""

    path: Path
    directory: Path
    bin_dir: Path
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    _background: list[_Background] = field(default_factory=list)
    _last_output: str | None = None
    _temporary: tempfile.TemporaryDirectory[str] | None = None

    @classmethod
    def open(cls, path: Path, bin_dir: Path, *, root: Path, **options: object) -> Page:
        """``root`` for a page without directives; a scratch directory for one with."""
        if not needs_scratch_directory(path.read_text()):
            return cls(path, root, bin_dir, **options)  # type: ignore[arg-type]
        temporary = tempfile.TemporaryDirectory(prefix=f"page-{path.stem}-")
        page = cls(path, Path(temporary.name), bin_dir, **options)  # type: ignore[arg-type]
        page._temporary = temporary
        return page

    def env(self) -> dict[str, str]:
        env = dict(self.environ)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        for name, value in QUIET_ENV.items():
            env.setdefault(name, value)
        return env

    def run(self, block: Block) -> None:
        """Do what a reader does with ``block`` (see the module's docstring)."""
        directive = block.directive
        if directive and directive.name == "file":
            self.write_file(directive.argument, block.source, block.line)
        elif directive and directive.name == "output":
            self.check_output(block.source, block.line)
        elif block.language != "sh":
            return
        elif directive and directive.name == "install":
            check_installed(block.source)
        elif directive and directive.name == "background":
            self.start_background(block.source, directive.argument, block.line)
        else:
            self._last_output = self.run_shell(block.source, block.line)

    def write_file(self, name: str, source: str, line: int) -> None:
        target = (self.directory / name).resolve()
        if not name or not target.is_relative_to(self.directory.resolve()):
            raise AssertionError(f"{self.path}:{line}: 'file:' needs a relative path, not {name!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source)

    def check_output(self, expected: str, line: int) -> None:
        if self._last_output is None:
            raise AssertionError(f"{self.path}:{line}: 'output' follows no shell block")
        if self._last_output.strip() != expected.strip():
            raise AssertionError(
                f"{self.path}:{line}: the page shows\n{expected.strip()}\n"
                f"--- but the shell block before it printed ---\n{self._last_output.strip()}"
            )
        self._last_output = None

    def run_shell(self, source: str, line: int) -> str:
        result = subprocess.run(  # noqa: S603 - the documentation's own commands
            ["bash", "-euo", "pipefail", "-c", source],  # noqa: S607
            cwd=self.directory,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=SHELL_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"the shell block at {self.path}:{line} exited {result.returncode}\n"
                f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n"
                f"{result.stderr[-4000:]}\n{self._background_logs()}"
            )
        return result.stdout

    def start_background(self, source: str, conditions: str, line: int) -> None:
        where = f"{self.path}:{line}"
        ports = [int(c) for c in conditions.split() if c.isdigit()]
        files = [self.directory / c for c in conditions.split() if not c.isdigit()]
        if not ports and not files:
            raise AssertionError(f"{where}: 'background:' names no port or file to wait for")
        for port in ports:
            if _port_answers(port):
                raise AssertionError(
                    f"{where}: port {port} on 127.0.0.1 is already in use; the page starts "
                    "its own server there: stop whatever listens on it and run again"
                )
        log = self.directory / f".background-{line}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(  # noqa: S603 - the documentation's own command
                ["bash", "-euo", "pipefail", "-c", source],  # noqa: S607
                cwd=self.directory,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as a whole
            )
        started = _Background(process, log, line)
        self._background.append(started)
        deadline = time.monotonic() + START_TIMEOUT
        while not (all(map(_port_answers, ports)) and all(f.exists() for f in files)):
            if process.poll() is not None:
                raise AssertionError(
                    f"{where}: the background command exited {process.returncode} "
                    f"before it was ready\n{started.tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{where}: not ready after {START_TIMEOUT:.0f} s (waiting for "
                    f"{conditions})\n{started.tail()}"
                )
            time.sleep(0.1)

    def _background_logs(self) -> str:
        return "\n".join(b.tail() for b in self._background)

    def close(self) -> None:
        """Stop what the page left running (SIGTERM, then SIGKILL), and remove its
        scratch directory."""
        for started in reversed(self._background):
            _stop(started.process)
        self._background.clear()
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None

    def __enter__(self) -> Page:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def follow(self) -> None:
        """Follow the whole page, block by block, in an environment where its install
        line already ran (the caller's job: ``install`` blocks are skipped)."""
        for block in blocks(self.path.read_text()):
            if block.language == "python" and block.directive is None:
                raise AssertionError(
                    f"{self.path}:{block.line}: a python block outside a file; a page "
                    "followed this way has files and shell blocks only"
                )
            if not (block.directive and block.directive.name == "install"):
                self.run(block)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue

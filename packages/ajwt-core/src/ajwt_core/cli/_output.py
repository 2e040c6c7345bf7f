"""What every command shares: the error line, safe text for untrusted values, consoles.

Results go to stdout (plain lines for what scripts read, Rich for what people read);
every failure is one line on stderr, ``error: <description> (<reason>)``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

#: Largest file or stdin document a command reads (manifests, JWKS, ledger exports).
MAX_INPUT_BYTES = 16 * 1024 * 1024
#: The reason printed for local I/O failures (files, stdin), which have no A-JWT reason.
IO_ERROR = "io_error"


class CliError(Exception):
    """A failure the CLI reports as one line and exit status 1.

    ``reason`` is an :class:`ajwt_core.errors.Reason` value where one fits, else
    :data:`IO_ERROR`.
    """

    def __init__(self, description: str, reason: str) -> None:
        super().__init__(description)
        self.description = description
        self.reason = reason


def fail(description: str, reason: str) -> NoReturn:
    raise CliError(description, reason)


def printable(value: object) -> str:
    """``value`` as text with every control or invisible character escaped.

    Tokens, ledgers and IdP error messages are untrusted: an escape sequence in a claim
    must not reach the terminal, and a newline must not split an error line.

    >>> printable("agent\\x1b[2Jx\\n")
    'agent\\\\x1b[2Jx\\\\n'
    """
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def print_error(description: str, reason: str) -> None:
    typer.echo(f"error: {printable(description)} ({printable(reason)})", err=True)


def print_warning(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


def console() -> Console:
    """A Rich console on stdout, built per command so ``COLUMNS`` and redirection apply.

    Markup and emoji codes are off: every renderable is built from :class:`rich.text.Text`,
    so text from a token can never be read as styling.
    """
    from rich.console import Console

    return Console(highlight=False, markup=False, emoji=False)


def print_fields(out: Console, title: str, rows: list[tuple[str, str | Text]]) -> None:
    """A titled list of ``name  value`` lines, aligned.

    Values are never wrapped or folded by Rich (the terminal wraps long lines), so a
    hash or a token id is copied whole.
    """
    from rich.text import Text

    out.print(Text(title, style="bold underline"))
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        out.print(Text.assemble(" ", (name.ljust(width), "bold"), "  ", value), soft_wrap=True)


def read_text(source: str, what: str) -> str:
    """The UTF-8 text of file ``source`` (``-`` for stdin), or a :class:`CliError`."""
    if source == "-":
        data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
        name = "standard input"
    else:
        name = repr(source)
        try:
            with Path(source).open("rb") as handle:
                data = handle.read(MAX_INPUT_BYTES + 1)
        except OSError as exc:
            fail(f"cannot read {what} {name}: {exc.strerror or type(exc).__name__}", IO_ERROR)
    if len(data) > MAX_INPUT_BYTES:
        fail(f"the {what} {name} is larger than {MAX_INPUT_BYTES} bytes", IO_ERROR)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        fail(f"the {what} {name} is not UTF-8 text", IO_ERROR)


def parse_json(text: str, what: str, reason: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"the {what} is not valid JSON: {exc.msg} at line {exc.lineno}", reason)
    except RecursionError:
        fail(f"the {what} is nested too deeply", reason)


def dump_json(document: Any) -> None:
    """Machine-readable output: one JSON document on stdout, ASCII-only."""
    try:
        text = json.dumps(document, indent=2, allow_nan=False)
    except ValueError:
        fail("the output holds a number JSON cannot carry (NaN or infinity)", "malformed_request")
    typer.echo(text)

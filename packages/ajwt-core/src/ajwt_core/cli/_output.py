"""What every command shares: the error line, safe text for untrusted values, consoles.

Results go to stdout (plain lines for what scripts read, Rich for what people read);
every failure is one line on stderr, ``error: <description> (<reason>)``.
"""

from __future__ import annotations

import json
import os
import re
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


def usage_error(description: str, option: str) -> NoReturn:
    """A wrong option value: Click's usage error (exit status 2, the option named), with
    no protocol reason code, since nothing was asked of any server."""
    raise typer.BadParameter(description, param_hint=f"'{option}'")


def writable_folder(path: Path, option: str) -> None:
    """Create folder ``path`` if needed and check it can be written, before any work.

    >>> import tempfile
    >>> writable_folder(Path(tempfile.mkdtemp()) / "report", "--out")
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        usage_error(f"{str(path)!r} exists and is not a folder", option)
    except OSError as exc:
        usage_error(f"cannot create {str(path)!r}: {exc.strerror or type(exc).__name__}", option)
    if not os.access(path, os.W_OK | os.X_OK):
        usage_error(f"cannot write in {str(path)!r}: permission denied", option)


def writable_file(path: Path, option: str) -> None:
    """Check that file ``path`` can be written (its folder exists and is writable, it is
    not a folder), before any work; the file itself is not created."""
    folder = path.parent
    if path.is_dir():
        usage_error(f"{str(path)!r} is a folder; give a file name", option)
    if not folder.is_dir():
        usage_error(f"the folder {str(folder)!r} does not exist", option)
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        usage_error(f"cannot write {str(path)!r}: permission denied", option)


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


def fold(text: Text, width: int) -> list[Text]:
    """``text`` as lines of at most ``width`` cells, broken only between words.

    A word longer than a line (a hash, a key id) is never cut: it gets a line of its own
    and overflows it, so it is still copied whole; a reason code is never split.

    >>> from rich.text import Text
    >>> [line.plain for line in fold(Text("refused (delegation_not_along_workflow) now"), 12)]
    ['refused', '(delegation_not_along_workflow)', 'now']
    """
    from rich.cells import cell_len

    plain = text.plain
    lines: list[Text] = []
    start = end = 0
    for word in re.finditer(r"\S+", plain):
        if end > start and cell_len(plain[start : word.end()]) > width:
            lines.append(text[start:end])
            start = word.start()
        elif end == start:
            start = word.start()
        end = word.end()
    if end > start:
        lines.append(text[start:end])
    return lines or [text[0:0]]


def print_wrapped(out: Console, text: Text, indent: int = 0) -> None:
    """``text`` folded between words to the console's width (see :func:`fold`)."""
    from rich.text import Text

    for line in fold(text, out.width - indent):
        out.print(Text.assemble(" " * indent, line), soft_wrap=True)


def print_fields(out: Console, title: str, rows: list[tuple[str, str | Text]]) -> None:
    """A titled list of ``name  value`` lines, aligned, that reads at the console's
    width (80 columns when it is not a terminal).

    A long value is folded between words under its column; a value with a word too long
    for that column (a hash) starts on the next line, indented, so that it is not cut:
    a hash or a token id is copied whole.
    """
    from rich.cells import cell_len
    from rich.text import Text

    out.print(Text(title, style="bold underline"))
    width = max((len(name) for name, _ in rows), default=0)
    column = 1 + width + 2
    for name, raw in rows:
        value = raw if isinstance(raw, Text) else Text(raw)
        label = Text.assemble(" ", (name.ljust(width), "bold"), "  ")
        lines = fold(value, out.width - column)
        if all(cell_len(line.plain) <= out.width - column for line in lines):
            out.print(label + lines[0], soft_wrap=True)
            for line in lines[1:]:
                out.print(Text.assemble(" " * column, line), soft_wrap=True)
            continue
        out.print(Text.assemble(" ", (name, "bold")), soft_wrap=True)
        print_wrapped(out, value, indent=4)


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

"""What the operator commands share: the IdP's URL, the administrator credential, the
``--json`` switch and the pages of a list.

Each command talks to a running IdP (``--idp URL``, default ``$AJWT_IDP_URL`` or
``http://127.0.0.1:8000``) with the administrator token from ``$AJWT_ADMIN_TOKEN`` or a
file (``--admin-token-file``, ``$AJWT_ADMIN_TOKEN_FILE``): never a command-line value,
which other users could read in the process list.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ajwt_core.cli._output import IO_ERROR, dump_json, fail, printable

if TYPE_CHECKING:
    from ajwt_core.idp.admin import AdminClient

DEFAULT_IDP_URL = "http://127.0.0.1:8000"
ADMIN_TOKEN_ENV = "AJWT_ADMIN_TOKEN"
ADMIN_TOKEN_FILE_ENV = "AJWT_ADMIN_TOKEN_FILE"
SERVICE_UNAVAILABLE = "service_unavailable"

IdpOption = Annotated[
    str,
    typer.Option(
        "--idp",
        metavar="URL",
        envvar="AJWT_IDP_URL",
        help="The IdP's base URL.",
    ),
]
AdminTokenFileOption = Annotated[
    Path | None,
    typer.Option(
        "--admin-token-file",
        envvar=ADMIN_TOKEN_FILE_ENV,
        help=f"A file holding the administrator token [default: ${ADMIN_TOKEN_ENV}].",
        dir_okay=False,
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
LimitOption = Annotated[
    int, typer.Option("--limit", help="At most this many items (a page).", min=1, max=1000)
]
AfterOption = Annotated[
    str | None,
    typer.Option("--after", metavar="CURSOR", help="The page after this cursor (a list's 'next')."),
]


def admin_token(token_file: Path | None) -> str:
    """The administrator token: ``--admin-token-file`` or ``$AJWT_ADMIN_TOKEN``."""
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            fail(
                f"cannot read the administrator token file {str(token_file)!r}: "
                f"{exc.strerror or type(exc).__name__}",
                IO_ERROR,
            )
        if token:
            return token
        fail(f"the administrator token file {str(token_file)!r} is empty", IO_ERROR)
    token = os.environ.get(ADMIN_TOKEN_ENV, "").strip()
    if not token:
        fail(
            f"give the administrator token in ${ADMIN_TOKEN_ENV} or --admin-token-file "
            "(ajwt idp serve writes a generated one beside its key file, as "
            "<key file>.admin-token; ajwt dev prints its file)",
            "missing_parameter",
        )
    return token


@contextlib.contextmanager
def admin_client(idp: str, token_file: Path | None) -> Iterator[AdminClient]:
    """An :class:`~ajwt_core.idp.admin.AdminClient`; an unreachable IdP is one error line."""
    import httpx

    from ajwt_core.idp.admin import AdminClient

    token = admin_token(token_file)
    with AdminClient(idp, token, timeout=30.0) as client:
        try:
            yield client
        except httpx.HTTPError as exc:
            fail(
                f"cannot reach the IdP at {printable(idp)}: {str(exc) or type(exc).__name__}",
                SERVICE_UNAVAILABLE,
            )


def emit(result: Any, as_json: bool, lines: list[str]) -> None:
    """The result as JSON (``--json``), else the human lines (untrusted text escaped)."""
    if as_json:
        dump_json(result)
        return
    for line in lines:
        typer.echo(line)


def page_footer(page: dict[str, Any]) -> list[str]:
    """The hint that a list goes on, naming the cursor of its next page."""
    cursor = page.get("next")
    return [f"(more: --after {printable(cursor)})"] if cursor else []


def columns(rows: list[list[str]]) -> list[str]:
    """Rows of cells as aligned text lines (each cell escaped)."""
    if not rows:
        return []
    cells = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]

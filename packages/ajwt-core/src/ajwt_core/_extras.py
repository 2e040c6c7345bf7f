"""The package's extras, and the one-line error when code needs one that is missing.

The core (tokens, proofs, checksums, the shim, the resource-server ``Verifier`` and its
ASGI middleware) needs no extra. The rest imports optional packages:

- ``idp`` (FastAPI, uvicorn with httptools, SQLAlchemy, Alembic): ``ajwt_core.idp``,
  ``ajwt idp serve``;
- ``rs`` (FastAPI): ``ajwt_core.rs.fastapi``, the FastAPI dependency;
- ``redis``: the Redis replay and revocation stores; ``postgres`` (asyncpg): the IdP on
  PostgreSQL;
- ``cli`` (Typer, Rich): the ``ajwt`` command;

Code that imports an optional module does it inside :func:`needs_extra`, which turns
"No module named 'fastapi'" into a :class:`MissingExtraError` whose message is one line
naming the command that fixes it:

>>> try:
...     with needs_extra("rs", "the FastAPI integration"):
...         raise ModuleNotFoundError("No module named 'fastapi'", name="fastapi")
... except MissingExtraError as exc:
...     print(exc)  # doctest: +ELLIPSIS
the FastAPI integration needs the 'rs' extra (...); install it with: pip install 'ajwt-core[rs]'
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterable, Iterator

_IDP = (
    "fastapi",
    "starlette",
    "uvicorn",
    "httptools",
    "sqlalchemy",
    "alembic",
    "prometheus_client",
    "pydantic_settings",
)
_CLI = ("typer", "rich")

#: extra -> the top-level modules it installs that this package imports.
EXTRAS: dict[str, tuple[str, ...]] = {
    "idp": _IDP,
    "rs": ("fastapi",),
    "redis": ("redis",),
    "postgres": ("asyncpg",),
    "cli": _CLI,
    # Optional at run time: without it, ajwt_core.telemetry does nothing.
    "otel": ("opentelemetry",),
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message is one line naming the
    ``pip install`` that installs it. An :class:`ImportError`, so code that already
    handles a failed import handles this one too."""

    def __init__(self, extra: str, module: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the {extra!r} extra (module {module!r} is not installed); "
            f"install it with: {install_command(extra)}",
            name=module,
        )
        self.extra = extra
        self.module = module


def install_command(extra: str) -> str:
    """The command that installs ``extra``.

    >>> install_command("idp")
    "pip install 'ajwt-core[idp]'"
    """
    return f"pip install 'ajwt-core[{extra}]'"


def require_extra(extra: str, feature: str, modules: Iterable[str] | None = None) -> None:
    """Raise :class:`MissingExtraError` unless every module of ``extra`` (or only
    ``modules`` of it) can be imported, checked without importing them: for code that
    imports them only later.

    >>> require_extra("idp", "the A-JWT IdP")
    """
    for module in EXTRAS[extra] if modules is None else modules:
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(extra, module, feature)


@contextlib.contextmanager
def needs_extra(extra: str, feature: str) -> Iterator[None]:
    """Turn a missing module of ``extra`` imported in the block into a
    :class:`MissingExtraError`; any other import error passes through unchanged."""
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        if top not in EXTRAS[extra]:
            raise
        # No chained traceback: the one line says everything.
        raise MissingExtraError(extra, top, feature) from None

"""The ``ajwt`` command (extra ``cli``: Typer + Rich).

One module per command group: :mod:`ajwt_core.cli.idp` (serve, rotate-key),
:mod:`ajwt_core.cli.dev`, :mod:`ajwt_core.cli.checksum`, :mod:`ajwt_core.cli.inspect`,
:mod:`ajwt_core.cli.audit`, :mod:`ajwt_core.cli.workflow`, and the operator commands that
talk to a running IdP (:mod:`ajwt_core.cli.client`, :mod:`ajwt_core.cli.agents`,
:mod:`ajwt_core.cli.user`, :mod:`ajwt_core.cli.runs`); ``ajwt demo`` comes from the
``ajwt-demo`` package (an entry point in ``ajwt_core.cli_commands``) when it is
installed. Each imports
what it needs inside its command, so ``ajwt --help`` loads neither FastAPI,
SQLAlchemy, uvicorn nor httpx.

Exit status: 0 on success; 1 for a refusal or failure, reported as one line on stderr
(``error: <description> (<reason>)``), never a traceback; 2 for a usage error.

Each command module imports its heavy parts inside the command (``ajwt demo`` loads the
servers and the agent framework only when it runs).

>>> from typer.testing import CliRunner
>>> CliRunner().invoke(app, ["checksum", "/no/such/manifest.json"]).exit_code
1
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from ajwt_core._extras import MissingExtraError, needs_extra

# Without the extra, importing this module raises MissingExtraError (an ImportError);
# the console script (ajwt_core.__main__) prints it as one line.
with needs_extra("cli", "the ajwt command"):
    import typer
    from typer.core import TyperGroup

from ajwt_core import __version__
from ajwt_core.cli import (
    agents,
    audit,
    checksum,
    client,
    dev,
    idp,
    inspect,
    runs,
    user,
    workflow,
)
from ajwt_core.cli._output import IO_ERROR, CliError, print_error
from ajwt_core.errors import AJWTError

__all__ = ["app", "main"]


class _OneLineErrors(TyperGroup):
    """Turns every expected failure of any subcommand into one line and exit status 1."""

    # ``ctx`` is Click's context (vendored by recent Typer versions, imported from Click
    # by older ones): typed Any so that this override fits both.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except AJWTError as exc:
            print_error(exc.description, exc.reason.value)
        except CliError as exc:
            print_error(exc.description, exc.reason)
        except MissingExtraError as exc:
            print_error(str(exc), "missing_extra")
        except OSError as exc:
            where = f" {exc.filename!r}" if exc.filename else ""
            print_error(f"{exc.strerror or type(exc).__name__}{where}", IO_ERROR)
        raise typer.Exit(1)


app = typer.Typer(
    name="ajwt",
    cls=_OneLineErrors,
    help="A-JWT: per-agent identity, intent and delegation tokens for LLM agents.",
    no_args_is_help=True,
    add_completion=False,
    # Click's plain help: it reflows docstrings, and loads in half the time of Rich's.
    rich_markup_mode=None,
    # A traceback (let alone one with local variables) could show a secret.
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"ajwt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """A-JWT: per-agent identity, intent and delegation tokens for LLM agents."""


#: Commands other packages add to ``ajwt`` (``name = "module:function"`` entry points).
COMMANDS_GROUP = "ajwt_core.cli_commands"


def _register_demo(cli: typer.Typer) -> None:
    """``ajwt demo`` from the ``ajwt-demo`` package (its entry point in
    ``ajwt_core.cli_commands``), or one line saying how to get it."""
    from importlib.metadata import entry_points

    command: Any = None
    for entry in entry_points(group=COMMANDS_GROUP):
        if entry.name == "demo":
            with contextlib.suppress(ImportError):  # installed but broken: as if absent
                command = entry.load()
    if command is None:

        @cli.command(
            "demo",
            context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
            help="The A-JWT demo (needs the ajwt-demo package).",
        )
        def missing_demo() -> None:
            raise CliError(
                "ajwt demo is in the ajwt-demo package; install it with: pip install ajwt-demo",
                "missing_extra",
            )

        return
    cli.command("demo")(command)


app.add_typer(idp.app, name="idp")
app.add_typer(audit.app, name="audit")
app.add_typer(workflow.app, name="workflow")
app.add_typer(client.app, name="client")
app.add_typer(agents.app, name="agents")
app.add_typer(user.app, name="user")
app.add_typer(runs.app, name="runs")
app.command("dev")(dev.dev)
app.command("checksum")(checksum.checksum)
app.command("inspect")(inspect.inspect)
_register_demo(app)


def main() -> None:
    """The ``ajwt`` console script."""
    app(prog_name="ajwt")

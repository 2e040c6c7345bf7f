"""``ajwt dev``: a local IdP for development, with a client, a local user and their
credentials, in the foreground until interrupted."""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path
from typing import Annotated, TextIO

import typer

from ajwt_core.cli._output import IO_ERROR, fail, printable


def dev(
    directory: Annotated[
        Path,
        typer.Option(
            "--dir",
            help="Where the IdP keeps its state and the credentials (mode 0600); what a "
            "previous start left there is replaced.",
            file_okay=False,
        ),
    ] = Path(".ajwt-dev"),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="Port to listen on (0: any free port).", min=0, max=65535)
    ] = 8000,
    workflow: Annotated[
        list[Path] | None,
        typer.Option(
            "--workflow",
            help="A workflow document (YAML or JSON) to register (repeatable).",
            dir_okay=False,
        ),
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="A scope to grant the client besides those its workflows use (repeatable).",
        ),
    ] = None,
    agent_policy: Annotated[
        str, typer.Option("--agent-policy", help="open, pinned or approval.")
    ] = "open",
    audience: Annotated[
        str | None,
        typer.Option(help="The API the agents call (AJWT_AUDIENCE, the shim's default)."),
    ] = None,
    user: Annotated[str, typer.Option(help="The local user whose token is written.")] = (
        "user:dev"
    ),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the variables as one JSON object.")
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", help="Do not print a line per token issued or refused while it runs."
        ),
    ] = False,
    once: Annotated[
        bool,
        typer.Option("--once", hidden=True, help="Start, print, stop (for tests)."),
    ] = False,
) -> None:
    """Run a local development IdP on 127.0.0.1 until interrupted.

    It starts from an empty database, registers the --workflow documents, creates the
    client 'dev-app' (granted every scope they use) and a token of a local user, writes
    the client secret, the admin token and the user token to files (mode 0600) in --dir,
    and prints the variables that Shim.from_env() and the ajwt commands read, naming
    those files (the secrets themselves are never printed). Load them in another shell
    with: . .ajwt-dev/env

    While it runs, it prints a line per token issued, step completed and request refused
    (with the reason) to standard error, unless --quiet.
    """
    from ajwt_core.errors import AJWTError
    from ajwt_core.idp.dev import export_lines, start_dev_idp

    if agent_policy not in ("open", "pinned", "approval"):
        fail(
            f"--agent-policy must be open, pinned or approval, not {agent_policy!r}",
            "malformed_request",
        )
    try:
        idp = start_dev_idp(
            directory,
            host=host,
            port=port,
            workflows=list(workflow or []),
            scopes=list(scope or []),
            agent_policy=agent_policy,
            audience=audience,
            user=user,
        )
    except AJWTError as exc:
        fail(exc.description, exc.reason)
    except (RuntimeError, OSError) as exc:
        fail(f"the development IdP did not start on {host}:{port}: {exc}", IO_ERROR)
    audit = logging.getLogger("ajwt_core.idp.audit")
    handler, level = None, audit.level
    try:
        env = idp.environ(files=True)
        if as_json:
            typer.echo(json.dumps(env, indent=2))
        else:
            typer.echo(export_lines(env), nl=False)
        workflows = ", ".join(f"{w['workflow_id']} v{w['version']}" for w in idp.workflows)
        typer.echo(
            f"A-JWT development IdP at {idp.url}: client {idp.client_id} "
            f"(scopes {' '.join(idp.client['scopes']) or 'none'}; agent policy "
            f"{agent_policy}), user {printable(user)}, workflows {workflows or 'none'}.\n"
            f"The credentials are in {idp.directory} (mode 0600); in another shell: "
            f". {idp.env_file}\nState is not kept across restarts. Ctrl-C stops it.",
            err=True,
        )
        if not quiet:
            handler = _print_audit_lines()
        if not once:
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        idp.close()
        if handler is not None:
            # Bound to this command's standard error, which an embedding caller (a test
            # runner, CliRunner) may close once the command returns.
            audit.removeHandler(handler)
            audit.setLevel(level)


def _print_audit_lines(stream: TextIO | None = None) -> logging.Handler:
    """The IdP's audit lines (``ajwt_core.idp.audit``: the fields are in the message) on
    standard error, so the terminal shows what the agents were given and refused."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    audit = logging.getLogger("ajwt_core.idp.audit")
    audit.addHandler(handler)
    audit.setLevel(logging.INFO)
    return handler

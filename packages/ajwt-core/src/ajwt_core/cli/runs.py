"""``ajwt runs``: list, inspect and revoke runs."""

from __future__ import annotations

from typing import Annotated

import typer

from ajwt_core.cli._admin import (
    DEFAULT_IDP_URL,
    AdminTokenFileOption,
    AfterOption,
    IdpOption,
    JsonOption,
    LimitOption,
    admin_client,
    columns,
    emit,
    page_footer,
)
from ajwt_core.cli._output import printable

app = typer.Typer(
    help="List, inspect and revoke runs.", no_args_is_help=True, rich_markup_mode=None
)


@app.command("list")
def list_runs(
    client_id: Annotated[str | None, typer.Option("--client", help="Only this client's.")] = None,
    workflow_id: Annotated[
        str | None, typer.Option("--workflow", help="Only this workflow's.")
    ] = None,
    state: Annotated[
        str | None, typer.Option(help="Only runs in this state: open, closed, revoked.")
    ] = None,
    limit: LimitOption = 100,
    after: AfterOption = None,
    idp: IdpOption = DEFAULT_IDP_URL,
    admin_token_file: AdminTokenFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """List runs, newest first."""
    with admin_client(idp, admin_token_file) as admin:
        page = admin.runs(
            client_id=client_id, workflow_id=workflow_id, state=state, limit=limit, after=after
        )
    rows = [["RUN", "CLIENT", "WORKFLOW", "STATE", "USER", "ENTRIES"]] + [
        [
            r["run_id"],
            r["client_id"],
            f"{r['workflow_id']} v{r['workflow_version']}",
            r["state"],
            r["subject"],
            str(r["ledger_length"]),
        ]
        for r in page["items"]
    ]
    emit(page, as_json, columns(rows) + page_footer(page))


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    idp: IdpOption = DEFAULT_IDP_URL,
    admin_token_file: AdminTokenFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a run: its user, workflow, state, completed and due steps, ledger head."""
    with admin_client(idp, admin_token_file) as admin:
        run = admin.run(run_id)
    rows = [
        [k, " ".join(v) if isinstance(v, list) else str(v)]
        for k, v in run.items()
        if k != "intent" or v
    ]
    emit(run, as_json, columns(rows))


@app.command("revoke")
def revoke(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    idp: IdpOption = DEFAULT_IDP_URL,
    admin_token_file: AdminTokenFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a run: no more tokens, and resource servers refuse the ones it has."""
    with admin_client(idp, admin_token_file) as admin:
        result = admin.revoke("run", run_id)
    said = "revoked" if result.get("revoked") else "no such run (nothing revoked)"
    emit(result, as_json, [f"run {printable(run_id)}: {said}"])

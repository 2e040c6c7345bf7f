"""``ajwt runs``: list, inspect, approve and revoke runs, and read their ledgers."""

from __future__ import annotations

import time
from typing import Annotated, Any

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
    help="List, inspect, approve and revoke runs; read their ledgers.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

#: The ledger data shown in their own columns; the rest goes to DETAIL.
_COLUMNS = ("agent", "step", "tool")


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
    rows = [[k, _shown(k, v)] for k, v in run.items() if k != "intent" or v]
    emit(run, as_json, columns(rows))


def _utc(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _shown(key: str, value: object) -> str:
    """A field of a run as text: lists space-separated, times (``*_at``) in UTC."""
    if isinstance(value, list):
        return " ".join(printable(v) for v in value)
    if key.endswith("_at") and isinstance(value, int) and not isinstance(value, bool):
        return _utc(value)
    return printable(value) if isinstance(value, str) else str(value)


def _detail(data: dict[str, Any]) -> str:
    return " ".join(
        f"{key}={printable(value)}"
        for key, value in data.items()
        if key not in _COLUMNS and value not in (None, "", [], {})
    )


@app.command("ledger")
def ledger(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    idp: IdpOption = DEFAULT_IDP_URL,
    admin_token_file: AdminTokenFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a run's ledger, entry by entry, and whether its hash chain verifies."""
    with admin_client(idp, admin_token_file) as admin:
        exported = admin.ledger(run_id)
        report = admin.verify_ledger(run_id)
    entries: list[dict[str, Any]] = exported.get("entries", [])
    rows = [["SEQ", "AT (UTC)", "ENTRY", "AGENT", "STEP", "TOOL", "DETAIL"]] + [
        [
            str(e["seq"]),
            _utc(e["at"]).removesuffix(" UTC"),
            printable(e["kind"]),
            *(printable(e["data"].get(key) or "") for key in _COLUMNS),
            _detail(e["data"]),
        ]
        for e in entries
    ]
    verdict = (
        f"chain verified: {report['entries']} entries"
        if report.get("ok")
        else f"chain BROKEN at entry {report.get('first_bad_seq')}: {printable(report)}"
    )
    emit({**exported, "verified": report}, as_json, [*columns(rows), verdict])
    if not report.get("ok"):
        raise typer.Exit(1)


@app.command("approve")
def approve(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    step: Annotated[str, typer.Argument(help="The step to approve (its workflow says approval).")],
    approved_by: Annotated[str, typer.Option("--by", help="Who approves: recorded in the ledger.")],
    idp: IdpOption = DEFAULT_IDP_URL,
    admin_token_file: AdminTokenFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a step that needs approval, for the run's current visit: its agent may then
    get tokens for it."""
    with admin_client(idp, admin_token_file) as admin:
        result = admin.approve(run_id, step, approved_by)
    emit(result, as_json, [f"run {printable(run_id)}: step {printable(step)} approved"])


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

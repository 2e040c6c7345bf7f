"""``ajwt audit verify``: recompute a run ledger's hash chain (DESIGN §8).

Offline from a ledger export (``ledger.export_json``), or from a live IdP by run id.
From an IdP, the CLI does not take the IdP's word for it: it fetches the entries too,
recomputes the chain itself, and requires both to agree.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer

from ajwt_core.cli._output import (
    console,
    dump_json,
    fail,
    print_error,
    print_fields,
    printable,
    read_text,
)

if TYPE_CHECKING:
    import httpx

    from ajwt_core.ledger import LedgerReport

app = typer.Typer(help="Audit run ledgers.", no_args_is_help=True, rich_markup_mode=None)

MAX_RESPONSE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Audit:
    """What ``verify`` reports: the recomputed chain and, from an IdP, its own verdict."""

    source: str
    run_id: str | None
    report: LedgerReport
    idp_report: LedgerReport | None = None

    def as_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {"source": self.source, "run_id": self.run_id}
        result |= self.report.model_dump()
        if self.idp_report is not None:
            result["idp_report"] = self.idp_report.model_dump()
        return result


# ---------------------------------------------------------------------------- offline


def _verify_file(path: str) -> Audit:
    from ajwt_core.ledger import verify_json

    text = read_text(path, "ledger export")
    try:
        document = json.loads(text)
        run_id = document.get("run_id") if isinstance(document, dict) else None
    except (ValueError, RecursionError):
        run_id = None  # verify_json reports what is wrong with the document
    return Audit(
        source=f"file {path}",
        run_id=run_id if isinstance(run_id, str) else None,
        report=verify_json(text),
    )


# ----------------------------------------------------------------------------- online


def _auth_header(admin_token: str | None, client_id: str | None, secret: str | None) -> str:
    if client_id is not None:
        if not secret:
            raise typer.BadParameter(
                "--client-id needs --client-secret", param_hint="'--client-id'"
            )
        # RFC 6749 §2.3.1: each part is form-urlencoded before the Basic encoding.
        pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
        return "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    if admin_token:
        return f"Bearer {admin_token}"
    raise typer.BadParameter(
        "give --admin-token (or AJWT_ADMIN_TOKEN) or --client-id and --client-secret",
        param_hint="'--admin-token'",
    )


def _get(http: httpx.Client, path: str) -> httpx.Response:
    """GET from the IdP; an OAuth error body becomes its typed error."""
    import httpx

    from ajwt_core.errors import Reason, error_from_oauth

    try:
        response = http.get(path)
    except httpx.HTTPError as exc:
        fail(
            f"cannot reach the IdP at {http.base_url}: {str(exc) or type(exc).__name__}",
            Reason.SERVICE_UNAVAILABLE,
        )
    if len(response.content) > MAX_RESPONSE_BYTES:
        fail(f"the IdP's answer to {path} is too large", Reason.MALFORMED_REQUEST)
    if not response.is_success:
        try:
            body = response.json()
        except ValueError:
            body = None
        raise error_from_oauth(body, response.status_code)
    return response


def _verify_run(run_id: str, idp: str, authorization: str) -> Audit:
    import httpx
    from pydantic import ValidationError

    from ajwt_core.errors import Reason
    from ajwt_core.ledger import LedgerReport, load_json, verify_chain

    base = f"/runs/{quote(run_id, safe='')}/ledger"
    with httpx.Client(
        base_url=idp.rstrip("/"), headers={"Authorization": authorization}, timeout=30.0
    ) as http:
        # The verdict first, then the entries: a run still in progress only grows, so
        # the entries fetched second extend the chain the verdict was about.
        verdict = _get(http, base + "/verify")
        export = _get(http, base)
    try:
        idp_report = LedgerReport.model_validate_json(verdict.content)
    except ValidationError:
        fail("the IdP's ledger report is not in the expected form", Reason.MALFORMED_REQUEST)
    # load_json refuses a document that is not an export (LedgerError, one line).
    entries = load_json(export.content)
    local = verify_chain(entries, run_id=run_id)
    report = local
    if local.ok and not idp_report.ok:
        report = idp_report
    elif local.ok:
        prefix = verify_chain(entries[: idp_report.entries], run_id=run_id)
        if len(entries) < idp_report.entries or prefix.head != idp_report.head:
            report = local.model_copy(
                update={
                    "ok": False,
                    "problem": "the IdP's report and the entries it served disagree "
                    f"(it reports {idp_report.entries} entries with head {idp_report.head})",
                }
            )
    return Audit(source=f"IdP {idp}", run_id=run_id, report=report, idp_report=idp_report)


# ----------------------------------------------------------------------------- output


def _render(audit: Audit) -> None:
    from rich.text import Text

    report = audit.report
    rows: list[tuple[str, str | Text]] = [
        ("source", printable(audit.source)),
        ("run", printable(audit.run_id or "unknown")),
        ("entries", str(report.entries)),
        # When the chain breaks, the head of the part that verifies.
        ("head" if report.ok else "verified head", report.head),
    ]
    if audit.idp_report is not None:
        idp = audit.idp_report
        verdict = "ok" if idp.ok else f"broken: {printable(idp.problem)}"
        rows.append(("IdP verdict", f"{verdict} ({idp.entries} entries)"))
    if report.ok:
        rows.append(("status", Text("ok: the hash chain verifies", style="bold green")))
    else:
        where = "" if report.first_bad_seq is None else f"at entry {report.first_bad_seq}: "
        rows.append(
            ("status", Text(f"BROKEN {where}{printable(report.problem)}", style="bold red"))
        )
    print_fields(console(), "Run ledger", rows)


@app.command("verify")
def verify(
    target: Annotated[
        str,
        typer.Argument(
            metavar="RUN_ID|FILE.json",
            help="A ledger export file (verified offline), or a run id (with --idp).",
        ),
    ],
    idp: Annotated[
        str | None, typer.Option(metavar="URL", help="The IdP's base URL, for a run id.")
    ] = None,
    admin_token: Annotated[
        str | None,
        typer.Option(
            envvar="AJWT_ADMIN_TOKEN",
            help="The IdP's administrator token (prefer the environment variable).",
            show_default=False,
        ),
    ] = None,
    client_id: Annotated[
        str | None, typer.Option(help="Authenticate as this client (the run's owner).")
    ] = None,
    client_secret: Annotated[
        str | None,
        typer.Option(
            envvar="AJWT_CLIENT_SECRET",
            help="The client's secret (prefer the environment variable).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Recompute a run ledger's hash chain; exit 0 if it verifies, 1 if not.

    TARGET is read as a file when such a file exists (a ledger export, as written by
    ledger.export_json), otherwise as a run id whose ledger is fetched from --idp and
    recomputed here; the IdP's own verdict must agree.
    """
    from ajwt_core.errors import Reason

    if Path(target).is_file():
        if idp is not None:
            raise typer.BadParameter(
                f"{target!r} is a file, verified offline: --idp is for a run id",
                param_hint="'--idp'",
            )
        audit = _verify_file(target)
    else:
        if idp is None:
            raise typer.BadParameter(
                f"no file {target!r} exists; to verify run {target!r}, give --idp",
                param_hint="'--idp'",
            )
        if not idp.startswith(("https://", "http://")):
            raise typer.BadParameter("the IdP URL must start with https:// or http://")
        audit = _verify_run(target, idp, _auth_header(admin_token, client_id, client_secret))
    if as_json:
        dump_json(audit.as_json())
    else:
        _render(audit)
    if not audit.report.ok:
        print_error(f"the run ledger does not verify: {audit.report.problem}", Reason.LEDGER_BROKEN)
        raise typer.Exit(1)

"""``ajwt audit verify``: recompute a run ledger's hash chain (DESIGN §8).

Offline from a ledger export (``ledger.export_json``), or from a live IdP by run id.
From an IdP, the CLI does not take the IdP's word for it: it fetches the entries too,
recomputes the chain itself, and requires both to agree.

A chain that verifies may still have lost entries from its end, or have been rewritten
and re-hashed whole. Anchors held outside the ledger catch that: ``--expected-head`` (the
hash it must end at), ``--checkpoint`` (an IdP-signed checkpoint the client kept) and
``--token`` (an intent token, whose ``step_sequence_hash`` pins its own entry), the last
two verified with the IdP's keys (``--jwks``).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn
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

    from ajwt_core.keys import KeyResolver
    from ajwt_core.ledger import Anchor, LedgerReport

app = typer.Typer(help="Audit run ledgers.", no_args_is_help=True, rich_markup_mode=None)

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: The reason printed for a file that is not a ledger export at all (nothing to verify,
#: so not "broken"): a CLI condition, like ``io_error``, not a protocol reason.
NOT_A_LEDGER = "not_a_ledger"


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


# ---------------------------------------------------------------------------- anchors


@dataclass(frozen=True)
class Anchors:
    """What ``--expected-head``, ``--checkpoint`` and ``--token`` say about the ledger.

    Checkpoints and tokens are verified lazily, once the run id is known (a checkpoint
    of another run is refused as ``wrong_run``).
    """

    expected_head: str | None = None
    checkpoints: tuple[str, ...] = ()
    tokens: tuple[str, ...] = ()
    jwks: str | None = None
    issuer: str | None = None

    def resolve(self, run_id: str | None) -> list[Anchor]:
        if not self.checkpoints and not self.tokens:
            return []
        keys = _load_jwks(self.jwks)
        assert self.issuer is not None  # checked with the options
        anchors = [
            _checkpoint_anchor(value, keys, self.issuer, run_id) for value in self.checkpoints
        ]
        anchors += [_token_anchor(value, keys, self.issuer, run_id) for value in self.tokens]
        return anchors


def _jws_argument(value: str, what: str) -> str:
    """A compact JWS given inline, or the path of a file (``-``: stdin) holding one."""
    try:
        is_file = value == "-" or Path(value).is_file()
    except OSError:  # too long for a file name: a token
        is_file = False
    return (read_text(value, what) if is_file else value).strip()


def _load_jwks(source: str | None) -> KeyResolver:
    from ajwt_core.cli.inspect import _load_jwks as load  # one JWKS loader for the CLI

    assert source is not None  # checked with the options
    return load(source)


def _checkpoint_anchor(value: str, keys: KeyResolver, issuer: str, run_id: str | None) -> Anchor:
    from ajwt_core.ledger import Anchor
    from ajwt_core.tokens import decode_checkpoint

    claims = decode_checkpoint(
        _jws_argument(value, "checkpoint"), keys, issuer=issuer, run_id=run_id
    )
    try:
        signed = datetime.fromtimestamp(claims.iat, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):  # a time no calendar holds
        signed = str(claims.iat)
    return Anchor(source=f"checkpoint of {signed}", seq=claims.seq, entry_hash=claims.head)


def _token_anchor(value: str, keys: KeyResolver, issuer: str, run_id: str | None) -> Anchor:
    """The entry an intent token pins: its ``step_sequence_hash``, the hash of the
    ``token_minted`` entry that records it (``jti``).

    The token has long expired by audit time, so it is verified as it stood when it was
    issued (at its own ``iat``): signature, ``typ``, issuer, claims, lifetime cap.
    """
    import jwt

    from ajwt_core.errors import InvalidToken, Reason
    from ajwt_core.ledger import Anchor
    from ajwt_core.tokens import decode_intent_token

    token = _jws_argument(value, "token")
    try:
        issued_at = jwt.decode(token, options={"verify_signature": False}).get("iat")
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError, RecursionError):
        issued_at = None
    if isinstance(issued_at, bool) or not isinstance(issued_at, int):
        raise InvalidToken(Reason.MALFORMED_TOKEN, "the --token is not an intent token with 'iat'")
    claims = decode_intent_token(token, keys, issuer=issuer, audience=None, now=issued_at)
    if run_id is not None and claims.intent.run_id != run_id:
        raise InvalidToken(
            Reason.WRONG_RUN,
            f"the token is for run {claims.intent.run_id!r}, not {run_id!r}",
        )
    return Anchor(
        source=f"token {claims.jti}",
        entry_hash=claims.intent.step_sequence_hash,
        jti=claims.jti,
    )


# ---------------------------------------------------------------------------- offline


def _verify_file(path: str, anchors: Anchors) -> Audit:
    from ajwt_core.ledger import verify_json

    text = read_text(path, "ledger export")
    if not text.strip():
        _not_a_ledger(path, "it is empty")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        _not_a_ledger(path, "it is not JSON")
    if not isinstance(document, dict):
        _not_a_ledger(path, "it is not a JSON object")
    missing = [key for key in ("run_id", "entries") if key not in document]
    if missing:
        _not_a_ledger(path, f"it has no {' and no '.join(repr(k) for k in missing)}")
    # From here on it is an export: whatever is wrong with it is a broken ledger.
    run_id = document["run_id"] if isinstance(document["run_id"], str) else None
    return Audit(
        source=f"file {path}",
        run_id=run_id,
        report=verify_json(
            text, expected_head=anchors.expected_head, anchors=anchors.resolve(run_id)
        ),
    )


def _not_a_ledger(path: str, why: str) -> NoReturn:
    fail(
        f"{path!r} is not a ledger export ({why}); an export is the JSON object "
        '{"run_id": ..., "entries": [...]} that GET /runs/RUN_ID/ledger returns',
        NOT_A_LEDGER,
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


def _verify_run(run_id: str, idp: str, authorization: str, anchors: Anchors) -> Audit:
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
    local = verify_chain(
        entries,
        run_id=run_id,
        expected_head=anchors.expected_head,
        anchors=anchors.resolve(run_id),
    )
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
    if report.anchors:
        rows.append(("anchored by", printable("; ".join(report.anchors))))
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
    expected_head: Annotated[
        str | None,
        typer.Option(
            metavar="sha256:HEX",
            help="The hash the ledger must end at (e.g. the ledger_head of a finished run).",
        ),
    ] = None,
    checkpoint: Annotated[
        list[str] | None,
        typer.Option(
            metavar="JWS|FILE",
            help="An IdP-signed ledger checkpoint (as the shim keeps it): the ledger must "
            "pass through the entry it pins. Repeatable; needs --jwks or --idp.",
        ),
    ] = None,
    token: Annotated[
        list[str] | None,
        typer.Option(
            metavar="JWS|FILE",
            help="An intent token of the run: the ledger must hold the entry its "
            "step_sequence_hash pins, recording its minting. Repeatable; needs --jwks or --idp.",
        ),
    ] = None,
    jwks: Annotated[
        str | None,
        typer.Option(
            metavar="URL|FILE",
            help="The IdP's JWKS, to verify --checkpoint and --token "
            "(default with --idp: its /.well-known/jwks.json).",
        ),
    ] = None,
    issuer: Annotated[
        str | None,
        typer.Option(
            metavar="URL", help="The IdP's issuer, for --checkpoint and --token (default: --idp)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Recompute a run ledger's hash chain; exit 0 if it verifies, 1 if not.

    TARGET is read as a file when such a file exists (a ledger export, as written by
    ledger.export_json), otherwise as a run id whose ledger is fetched from --idp and
    recomputed here; the IdP's own verdict (which checks the head it stored) must agree.
    Give --checkpoint, --token or --expected-head to detect entries cut from the end or
    a ledger rewritten whole.
    """
    from ajwt_core.errors import Reason

    anchors = _anchors(idp, expected_head, checkpoint or [], token or [], jwks, issuer)
    if Path(target).is_file():
        if idp is not None:
            raise typer.BadParameter(
                f"{target!r} is a file, verified offline: --idp is for a run id",
                param_hint="'--idp'",
            )
        audit = _verify_file(target, anchors)
    else:
        if idp is None:
            raise typer.BadParameter(
                f"no file {target!r} exists; to verify run {target!r}, give --idp",
                param_hint="'--idp'",
            )
        if not idp.startswith(("https://", "http://")):
            raise typer.BadParameter("the IdP URL must start with https:// or http://")
        audit = _verify_run(
            target, idp, _auth_header(admin_token, client_id, client_secret), anchors
        )
    if as_json:
        dump_json(audit.as_json())
    else:
        _render(audit)
    if not audit.report.ok:
        print_error(f"the run ledger does not verify: {audit.report.problem}", Reason.LEDGER_BROKEN)
        raise typer.Exit(1)


def _anchors(
    idp: str | None,
    expected_head: str | None,
    checkpoints: list[str],
    tokens: list[str],
    jwks: str | None,
    issuer: str | None,
) -> Anchors:
    if expected_head is not None and not re.fullmatch(r"sha256:[0-9a-f]{64}", expected_head):
        raise typer.BadParameter(
            "the head is 'sha256:' and 64 lowercase hex digits", param_hint="'--expected-head'"
        )
    base = idp.rstrip("/") if idp else None
    if checkpoints or tokens:
        jwks = jwks or (f"{base}/.well-known/jwks.json" if base else None)
        issuer = issuer or base
        if jwks is None:
            raise typer.BadParameter(
                "--checkpoint and --token are verified with the IdP's keys: give --jwks",
                param_hint="'--jwks'",
            )
        if issuer is None:
            raise typer.BadParameter(
                "--checkpoint and --token name their issuer: give --issuer",
                param_hint="'--issuer'",
            )
    return Anchors(
        expected_head=expected_head,
        checkpoints=tuple(checkpoints),
        tokens=tuple(tokens),
        jwks=jwks,
        issuer=issuer.rstrip("/") if issuer else None,
    )

"""``ajwt agents``: the versions of a client's agents, and which may register.

A client's agent policy (``ajwt client create --agent-policy``) decides what a checksum
never seen before does: under ``pinned``, only checksums registered here register (e.g.
from CI: ``ajwt agents manifest app:graph --out agents.json`` then ``ajwt agents
register CLIENT agents.json``); under ``approval``, a new one waits for ``ajwt agents
approve``. Every checksum has a version (1 for an agent's first, then 2...), which
tokens carry as ``agent.version`` and a resource server may pin.
"""

from __future__ import annotations

from pathlib import Path
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
from ajwt_core.cli._output import IO_ERROR, dump_json, fail, parse_json, printable, read_text

app = typer.Typer(
    help="List, register (pin), approve and revoke the checksums of a client's agents.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

ClientArgument = Annotated[str, typer.Argument(metavar="CLIENT", help="The client id.")]
AgentArgument = Annotated[str, typer.Argument(metavar="AGENT", help="The agent id.")]
ChecksumArgument = Annotated[
    str, typer.Argument(metavar="CHECKSUM", help="The agent's checksum (sha256:...).")
]
AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        metavar="MODULE:OBJECT",
        help="Take the manifests from the app itself, through its framework's adapter "
        "('module:factory()' calls a factory).",
    ),
]


def _manifests_of_app(reference: str) -> list[dict[str, Any]]:
    from ajwt_core.adapters import agent_manifests, load_object

    return [m.model_dump(mode="json") for m in agent_manifests(load_object(reference))]


def _manifests_in(document: Any, source: str) -> list[dict[str, Any]]:
    """A manifest, a list of them, or ``{"manifests": [...]}`` (what ``manifest`` writes)."""
    if isinstance(document, dict) and isinstance(document.get("manifests"), list):
        document = document["manifests"]
    if isinstance(document, dict):
        document = [document]
    if not isinstance(document, list) or not all(isinstance(m, dict) for m in document):
        fail(f"{source} holds no agent manifests", "invalid_manifest")
    return list(document)


@app.command("manifest")
def manifest(
    app_reference: Annotated[
        str,
        typer.Argument(
            metavar="MODULE:OBJECT",
            help="The app: a compiled LangGraph graph, an AutoGen team, a CrewAI crew "
            "or a (crew, {role: agent id}) pair... ('module:factory()' calls a factory).",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write to this file instead of standard output.", dir_okay=False
        ),
    ] = None,
) -> None:
    """Write the manifests of an app's agents (JSON), as its framework's adapter extracts
    them from the live objects: what 'ajwt agents register' pins, e.g. from CI."""
    from ajwt_core.checksum import compute_checksum

    manifests = _manifests_of_app(app_reference)
    document = {"manifests": manifests}
    if out is None:
        dump_json(document)
    else:
        import json

        try:
            out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {str(out)!r}: {exc.strerror or type(exc).__name__}", IO_ERROR)
    for item in manifests:
        typer.echo(f"{printable(item['agent_id'])} {compute_checksum(item)}", err=True)
    if out is not None:
        typer.echo(f"wrote {len(manifests)} manifests to {out}", err=True)


@app.command("register")
def register(
    client_id: ClientArgument,
    files: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[FILE]...",
            help="Manifest files (JSON: a manifest, a list, or what 'ajwt agents manifest' "
            "writes); - for standard input.",
            show_default=False,
        ),
    ] = None,
    app_reference: AppOption = None,
    decided_by: Annotated[
        str, typer.Option("--by", help="Who registers them (recorded).")
    ] = "administrator",
    idp: IdpOption = DEFAULT_IDP_URL,
    admin_token_file: AdminTokenFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register (pin) agent manifests for a client: their checksums may register, each
    with its version. A pending checksum is approved, a revoked one allowed again."""
    manifests: list[dict[str, Any]] = []
    for source in files or []:
        text = read_text(source, "manifest file")
        manifests += _manifests_in(parse_json(text, "manifest file", "invalid_manifest"), source)
    if app_reference:
        manifests += _manifests_of_app(app_reference)
    if not manifests:
        fail("give manifest files or --app MODULE:OBJECT", "missing_parameter")
    with admin_client(idp, admin_token_file) as admin:
        pinned = admin.pin_agents(client_id, manifests, decided_by=decided_by)
    lines = [
        f"{printable(a['agent_id'])} v{a['version']} {a['checksum']} {a['status']}" for a in pinned
    ]
    emit({"items": pinned}, as_json, lines)


@app.command("list")
def list_agents(
    client_id: Annotated[
        str,
        typer.Argument(
            metavar="CLIENT",
            envvar="AJWT_CLIENT_ID",
            show_envvar=True,
            help="The client id (the app's, which ajwt dev and .ajwt-dev/env set).",
        ),
    ],
    agent_id: Annotated[str | None, typer.Option("--agent", help="Only this agent.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Only checksums in this state: allowed, pending, revoked.")
    ] = None,
    limit: LimitOption = 100,
    after: AfterOption = None,
    idp: IdpOption = DEFAULT_IDP_URL,
    admin_token_file: AdminTokenFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """List every checksum of a client's agents: version, state, who decided, and how
    many live registrations (running shims) use it."""
    with admin_client(idp, admin_token_file) as admin:
        page = admin.agents(client_id, agent_id=agent_id, status=status, limit=limit, after=after)
    rows = [["AGENT", "VERSION", "STATUS", "LIVE", "SOURCE", "CHECKSUM"]] + [
        [
            a["agent_id"],
            str(a["version"]),
            a["status"],
            str(a.get("live_registrations", 0)),
            a["source"],
            a["checksum"],
        ]
        for a in page["items"]
    ]
    emit(page, as_json, columns(rows) + page_footer(page))


@app.command("approve")
def approve(
    client_id: ClientArgument,
    agent_id: AgentArgument,
    checksum: ChecksumArgument,
    decided_by: Annotated[
        str, typer.Option("--by", help="Who approves (recorded).")
    ] = "administrator",
    idp: IdpOption = DEFAULT_IDP_URL,
    admin_token_file: AdminTokenFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a checksum waiting under the 'approval' policy: the shim's next
    registration of it succeeds."""
    with admin_client(idp, admin_token_file) as admin:
        result = admin.approve_agent(client_id, agent_id, checksum, decided_by=decided_by)
    emit(result, as_json, [f"{printable(agent_id)} v{result['version']} {checksum} allowed"])


@app.command("revoke")
def revoke(
    client_id: ClientArgument,
    agent_id: AgentArgument,
    checksum: ChecksumArgument,
    decided_by: Annotated[
        str, typer.Option("--by", help="Who revokes (recorded).")
    ] = "administrator",
    idp: IdpOption = DEFAULT_IDP_URL,
    admin_token_file: AdminTokenFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a checksum: it no longer registers, and its live registrations are revoked
    (no more mints; resource servers refuse their tokens)."""
    with admin_client(idp, admin_token_file) as admin:
        result = admin.revoke_agent(client_id, agent_id, checksum, decided_by=decided_by)
    revoked = len(result.get("revoked_registrations", []))
    emit(
        result,
        as_json,
        [f"{printable(agent_id)} v{result['version']} {checksum} revoked ({revoked} live)"],
    )

"""``ajwt client``: register, list, inspect and revoke the IdP's OAuth clients, and set
their agents' registration policy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ajwt_core.cli._admin import DEFAULT_IDP_URL as DEFAULT_IDP
from ajwt_core.cli._admin import (
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
from ajwt_core.cli._output import IO_ERROR, fail, parse_json, printable, read_text

app = typer.Typer(
    help="Register, list and revoke OAuth clients (the apps that host agents).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

PolicyOption = Annotated[
    str,
    typer.Option(
        "--agent-policy",
        help="Which agent checksums may register: 'open' (any), 'pinned' (only those "
        "registered with 'ajwt agents register') or 'approval' (a new one waits for "
        "'ajwt agents approve').",
    ),
]


def _check_policy(policy: str) -> None:
    if policy not in ("open", "pinned", "approval"):
        fail(
            f"--agent-policy must be open, pinned or approval, not {policy!r}", "malformed_request"
        )


@app.command("create")
def create(
    client_id: Annotated[
        str | None,
        typer.Argument(help="The client id [default: generated].", show_default=False),
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="A scope the client may be granted (repeatable)."),
    ] = None,
    agent_policy: PolicyOption = "open",
    jwks: Annotated[
        Path | None,
        typer.Option(
            "--jwks",
            help="Authenticate with private_key_jwt: the client's public JWKS (a file).",
            dir_okay=False,
        ),
    ] = None,
    resource: Annotated[
        list[str] | None,
        typer.Option(
            "--resource",
            help="A resource server this client stands for (repeatable): it may "
            "introspect the tokens whose audience is that URL (RFC 7662).",
        ),
    ] = None,
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            help="Write the variables Shim.from_env() reads (AJWT_IDP_URL, AJWT_CLIENT_ID, "
            "AJWT_CLIENT_SECRET) to this file, mode 0600, instead of printing the secret.",
            dir_okay=False,
        ),
    ] = None,
    idp: IdpOption = DEFAULT_IDP,
    admin_token_file: AdminTokenFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register an OAuth client; its secret is shown once (or written to --env-file)."""
    _check_policy(agent_policy)
    keys: dict[str, Any] | None = None
    if jwks is not None:
        keys = parse_json(read_text(str(jwks), "JWKS"), "JWKS", "invalid_key")
    with admin_client(idp, admin_token_file) as admin:
        created = admin.register_client(
            client_id,
            scopes=list(scope or []),
            auth_method="private_key_jwt" if keys else "client_secret_basic",
            jwks=keys,
            resources=list(resource or []),
            agent_policy=agent_policy,
        )
    if env_file is not None:
        from ajwt_core.idp.dev import export_lines
        from ajwt_core.idp.keystore import write_private_text

        env = {"AJWT_IDP_URL": idp.rstrip("/"), "AJWT_CLIENT_ID": created["client_id"]}
        secret = created.pop("client_secret", None)
        if secret:
            env["AJWT_CLIENT_SECRET"] = secret
        try:
            write_private_text(env_file, export_lines(env))
        except OSError as exc:
            fail(f"cannot write {str(env_file)!r}: {exc.strerror or type(exc).__name__}", IO_ERROR)
        created["env_file"] = str(env_file)
    lines = [
        f"client {printable(created['client_id'])} ({created['auth_method']}, agent policy "
        f"{created.get('agent_policy', agent_policy)}), scopes: "
        + (" ".join(printable(s) for s in created["scopes"]) or "(none)")
    ]
    if created.get("client_secret"):
        lines.append(f"client secret (shown once): {created['client_secret']}")
    if env_file is not None:
        lines.append(f"wrote {env_file} (mode 0600): source it, then Shim.from_env()")
    emit(created, as_json, lines)


@app.command("list")
def list_clients(
    limit: LimitOption = 100,
    after: AfterOption = None,
    idp: IdpOption = DEFAULT_IDP,
    admin_token_file: AdminTokenFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the IdP's clients, by id."""
    with admin_client(idp, admin_token_file) as admin:
        page = admin.clients(limit=limit, after=after)
    rows = [["CLIENT", "AUTH", "AGENT POLICY", "STATE", "SCOPES"]] + [
        [
            c["client_id"],
            c["auth_method"],
            c["agent_policy"],
            "revoked" if c["revoked_at"] else "active",
            " ".join(c["scopes"]),
        ]
        for c in page["items"]
    ]
    emit(page, as_json, columns(rows) + page_footer(page))


@app.command("show")
def show(
    client_id: Annotated[str, typer.Argument(help="The client id.")],
    idp: IdpOption = DEFAULT_IDP,
    admin_token_file: AdminTokenFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one client."""
    with admin_client(idp, admin_token_file) as admin:
        client = admin.client(client_id)
    emit(client, as_json, columns([[k, str(v)] for k, v in client.items()]))


@app.command("set-policy")
def set_policy(
    client_id: Annotated[str, typer.Argument(help="The client id.")],
    agent_policy: Annotated[str, typer.Argument(metavar="open|pinned|approval")],
    idp: IdpOption = DEFAULT_IDP,
    admin_token_file: AdminTokenFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change which agent checksums a client's shims may register. The checksums already
    allowed stay allowed: 'pinned' freezes the versions an 'open' client has."""
    _check_policy(agent_policy)
    with admin_client(idp, admin_token_file) as admin:
        result = admin.set_agent_policy(client_id, agent_policy)
    emit(result, as_json, [f"client {printable(client_id)}: agent policy {agent_policy}"])


@app.command("revoke")
def revoke(
    client_id: Annotated[str, typer.Argument(help="The client id.")],
    idp: IdpOption = DEFAULT_IDP,
    admin_token_file: AdminTokenFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a client: no more mints, and resource servers refuse its tokens."""
    with admin_client(idp, admin_token_file) as admin:
        result = admin.revoke("client", client_id)
    said = "revoked" if result.get("revoked") else "no such client (nothing revoked)"
    emit(result, as_json, [f"client {printable(client_id)}: {said}"])

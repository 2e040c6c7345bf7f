"""``ajwt user token``: a local user's access token, the subject a run starts from."""

from __future__ import annotations

from typing import Annotated

import typer

from ajwt_core.cli._admin import (
    DEFAULT_IDP_URL,
    AdminTokenFileOption,
    IdpOption,
    JsonOption,
    admin_client,
    emit,
)

app = typer.Typer(
    help="Local users of the IdP (development and tests; production takes user tokens "
    "from an upstream issuer).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("token")
def token(
    subject: Annotated[str, typer.Argument(help="The user, e.g. user:alice.")],
    lifetime: Annotated[
        int, typer.Option(help="Seconds the token is valid.", min=60, max=24 * 3600)
    ] = 3600,
    idp: IdpOption = DEFAULT_IDP_URL,
    admin_token_file: AdminTokenFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print a local user's access token (only the token, for $(...) in a shell)."""
    with admin_client(idp, admin_token_file) as admin:
        issued = admin.user_token(subject, lifetime)
    emit(
        {"access_token": issued, "token_type": "Bearer", "expires_in": lifetime},
        as_json,
        [issued],
    )

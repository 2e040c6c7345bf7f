"""``ajwt idp serve``, ``rotate-key`` and ``retire-key``: run the IdP, manage its keys.

FastAPI, SQLAlchemy and uvicorn are imported inside the commands (extra ``idp``), so
``ajwt --help`` does not load them.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ajwt_core.cli._output import IO_ERROR, fail, print_warning, printable, usage_error
from ajwt_core.errors import Reason

if TYPE_CHECKING:
    from ajwt_core.idp.settings import IdPSettings

app = typer.Typer(
    help="Run the A-JWT IdP and manage its signing keys.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

# The defaults of ajwt_core.idp.settings and ajwt_core.tokens, spelled out here because importing
# those modules loads FastAPI and pydantic (tests check they stay equal).
DEFAULT_DB_URL = "sqlite+aiosqlite:///ajwt-idp.db"
DEFAULT_KEY_FILE = Path("ajwt-idp-keys.json")
MAX_TOKEN_LIFETIME = 300
ADMIN_TOKEN_ENV = "AJWT_ADMIN_TOKEN"
#: ajwt_core.idp.keystore.DEFAULT_ACTIVATE_AFTER: the resource servers' JWKS refresh
#: period (JWKSCache max_age, 300 s) plus the longest token lifetime (300 s).
DEFAULT_ACTIVATE_AFTER = 600

KeyFileOption = Annotated[
    Path,
    typer.Option(
        "--key-file",
        help="The IdP's private signing-key file (JSON, mode 0600).",
        dir_okay=False,
    ),
]


def default_issuer(host: str, port: int) -> str:
    """``http://<host>:<port>``, with an IPv6 address in brackets.

    >>> default_issuer("::1", 8000)
    'http://[::1]:8000'
    """
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = False
    return f"http://[{host}]:{port}" if is_v6 else f"http://{host}:{port}"


def _require_idp_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import sqlalchemy  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        fail(
            f"the IdP needs the 'idp' extra (missing module {exc.name!r}); "
            "install it with: pip install 'ajwt-core[idp]'",
            IO_ERROR,
        )


def _check_key_file_mode(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return  # created 0600 on first start
    if mode & 0o077:
        print_warning(
            f"the signing-key file {str(path)!r} is readable by other users "
            f"(mode {mode:04o}); restrict it with: chmod 600 {path}"
        )


def _check_db_url(url: str) -> str:
    """The database URL with any password hidden, for the start-up line.

    A SQLite file in a missing directory is refused here: uvicorn would report it only
    as a failed start-up, with a traceback.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        # Never echo the URL itself: it may hold a password.
        usage_error("not a SQLAlchemy database URL", "--db")
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
        directory = Path(database).parent
        if not directory.is_dir():
            fail(f"the directory of the SQLite database does not exist: {directory}", IO_ERROR)
    return parsed.render_as_string(hide_password=True)


@app.command("serve")
def serve(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="AJWT_IDP_CONFIG",
            help="A config file (TOML, YAML or JSON) of IdP settings, by field name; the "
            "environment (AJWT_IDP_<SETTING>) and these flags override it. Every setting "
            "is listed in docs/operate.md.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [default: 127.0.0.1].")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port to listen on [default: 8000].", min=1, max=65535),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            help="SQLAlchemy database URL: SQLite by default, PostgreSQL as "
            "postgresql+asyncpg://user@host/db (extra 'postgres') "
            f"[default: {DEFAULT_DB_URL}].",
            show_default=False,
        ),
    ] = None,
    issuer: Annotated[
        str | None,
        typer.Option(
            help="The IdP's public base URL, the 'iss' of every token "
            "[default: http://HOST:PORT]. Set it when the IdP is reached through a proxy.",
            show_default=False,
        ),
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help="The IdP's private signing-key file (JSON, mode 0600) "
            f"[default: {DEFAULT_KEY_FILE}].",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    admin_token: Annotated[
        str | None,
        typer.Option(
            envvar=ADMIN_TOKEN_ENV,
            help="Bearer token for the /admin endpoints: at least 32 random characters. "
            "Prefer the environment variable (or admin_token_file in the config): a "
            "command-line value is visible to other users in the process list. Without "
            "one, a token is generated for this run and written (mode 0600) beside the "
            "key file, as <key file>.admin-token.",
            show_default=False,
        ),
    ] = None,
    token_lifetime: Annotated[
        int | None,
        typer.Option(
            help="Intent-token lifetime in seconds (at most 300, DESIGN §5.1) [default: 300].",
            min=1,
            max=MAX_TOKEN_LIFETIME,
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes [default: 1]. More than one needs PostgreSQL (--db) for "
            "shared state and --redis for the shared proof-replay cache.",
            min=1,
            max=64,
            show_default=False,
        ),
    ] = None,
    redis: Annotated[
        str | None,
        typer.Option(
            help="Redis URL for the proof-replay cache shared by the workers and for "
            "publishing revocations to resource servers.",
            show_default=False,
        ),
    ] = None,
    upstream_issuer: Annotated[
        str | None,
        typer.Option(
            envvar="AJWT_IDP_UPSTREAM_ISSUER",
            help="The user's upstream OpenID provider: runs start from its tokens. Its "
            "keys are found by discovery (<issuer>/.well-known/openid-configuration) "
            "when first needed; the IdP starts while it is down.",
            show_default=False,
        ),
    ] = None,
    upstream_audience: Annotated[
        str | None,
        typer.Option(
            envvar="AJWT_IDP_UPSTREAM_AUDIENCE",
            help="The 'aud' of the upstream provider's access tokens "
            "[default: this IdP's --issuer].",
            show_default=False,
        ),
    ] = None,
    upstream_client_id: Annotated[
        str | None,
        typer.Option(
            envvar="AJWT_IDP_UPSTREAM_CLIENT_ID",
            help="The upstream client whose ID tokens may start runs (their 'aud'); "
            "without it, ID tokens are refused.",
            show_default=False,
        ),
    ] = None,
    upstream_jwks_url: Annotated[
        str | None,
        typer.Option(
            envvar="AJWT_IDP_UPSTREAM_JWKS_URL",
            help="The upstream provider's JWKS URL, instead of discovery.",
            show_default=False,
        ),
    ] = None,
    upstream_subject_prefix: Annotated[
        str | None,
        typer.Option(
            help="Put before an upstream user's 'sub' in runs and tokens [default: "
            "'<upstream issuer>#']; '' keeps it bare (needs --no-local-users).",
            show_default=False,
        ),
    ] = None,
    local_users: Annotated[
        bool | None,
        typer.Option(
            "--local-users/--no-local-users",
            envvar="AJWT_IDP_LOCAL_USERS",
            help="Issue and accept local user tokens (/admin/users/token) "
            "[default: only without --upstream-issuer].",
            show_default=False,
        ),
    ] = None,
    dev: Annotated[
        bool,
        typer.Option(
            "--dev",
            help="Run a local development IdP instead (as 'ajwt dev'): a fresh database, "
            "a client, a local user and their credentials in a 0600 file.",
        ),
    ] = False,
) -> None:
    """Serve the IdP over HTTP with uvicorn until interrupted.

    Settings come from --config, then the environment, then these flags (each wins over
    the one before). The signing-key file is created (mode 0600) on first start, and
    the database schema is created if missing.
    """
    _require_idp_extra()
    if dev:
        from ajwt_core.cli.dev import dev as run_dev

        run_dev(host=host or "127.0.0.1", port=port or 8000)
        return
    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError

    from ajwt_core.errors import AJWTError
    from ajwt_core.idp import create_app
    from ajwt_core.idp.keystore import load_signing_keys
    from ajwt_core.server_limits import uvicorn_options

    settings = _settings(
        config,
        host=host,
        port=port,
        db_url=db,
        issuer=issuer,
        key_file=key_file,
        admin_token=admin_token,
        token_lifetime=token_lifetime,
        workers=workers,
        redis_url=redis,
        local_users=local_users,
        upstream_issuer=upstream_issuer,
        upstream_audience=upstream_audience,
        upstream_client_id=upstream_client_id,
        upstream_jwks_url=upstream_jwks_url,
        upstream_subject_prefix=upstream_subject_prefix,
    )
    shown_db = _check_db_url(settings.db_url)
    _check_workers(settings.workers, settings.db_url, settings.redis_url)
    if issuer is None and settings.host in ("0.0.0.0", "::"):  # noqa: S104 (a comparison)
        print_warning(
            f"the issuer is {settings.issuer}, which clients cannot reach; "
            "pass --issuer with the IdP's public URL"
        )
    assert settings.key_file is not None
    settings.admin_token = _admin_token(settings.admin_token, settings.key_file)

    _check_key_file_mode(settings.key_file)
    # Creates the file (0600) on first start; read here for the start-up line only.
    # The app is given the file, not these keys, so that it owns how it loads them.
    keys = load_signing_keys(settings.key_file)
    try:
        application = create_app(settings)
    except AJWTError as exc:  # settings that cannot work together
        fail(exc.description, exc.reason)
    except ImportError as exc:
        fail(
            f"the database driver for --db is not installed (missing module {exc.name!r}); "
            "PostgreSQL needs: pip install 'ajwt-core[postgres]'",
            IO_ERROR,
        )
    except SQLAlchemyError as exc:
        # Engine-creation messages name the dialect or driver, not the URL's password.
        usage_error(f"cannot be used: {str(exc).splitlines()[0]}", "--db")
    typer.echo(
        f"A-JWT IdP: issuer {settings.issuer}, database {shown_db}, "
        f"signing keys {settings.key_file} ({len(keys.keys)} published, "
        f"active kid {keys.active.kid})"
        + (f", users from {settings.upstream_issuer}" if settings.upstream_issuer else "")
        + (", local users" if settings.accepts_local_users else ""),
        err=True,
    )
    # Read deadlines, a 64 KiB request-head bound and a connection cap
    # (ajwt_core.server_limits); the app answers smaller oversized heads itself (431).
    options = uvicorn_options()
    if settings.workers == 1:
        uvicorn.run(application, host=settings.host, port=settings.port, **options)
        return
    # Several processes: each builds the app from the environment (ajwt_core.idp.asgi).
    settings.key_file = settings.key_file.resolve()
    exported = settings.to_environ()
    saved = {name: os.environ.get(name) for name in exported}
    os.environ.update(exported)  # the workers are started with this environment
    try:
        uvicorn.run(
            "ajwt_core.idp.asgi:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            **options,
        )
    finally:  # the calling process's environment as it was (e.g. when embedded in tests)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _settings(config: Path | None, **flags: object) -> IdPSettings:
    """The IdP's settings: defaults < config file < environment < flags; the issuer
    defaults to http://HOST:PORT."""
    from ajwt_core.errors import AJWTError
    from ajwt_core.idp.settings import IdPSettings

    try:
        values: dict[str, object] = {"key_file": DEFAULT_KEY_FILE}
        values.update(IdPSettings.configured(config))
        values.update({k: v for k, v in flags.items() if v is not None})
        if values.get("issuer"):
            return IdPSettings.checked(**values)
        # Validated first with a placeholder, so that HOST and PORT are typed.
        settings = IdPSettings.checked(**(values | {"issuer": "http://placeholder"}))
        settings.issuer = default_issuer(settings.host, settings.port)
        return settings
    except AJWTError as exc:
        fail(exc.description, exc.reason)


def _check_workers(workers: int, db: str, redis: str | None) -> None:
    """Several workers share state only through PostgreSQL and Redis: refuse otherwise."""
    if workers == 1:
        return
    if db.startswith("sqlite"):
        usage_error(
            "several workers need PostgreSQL (--db postgresql+asyncpg://…): SQLite has "
            "a single writer and this IdP serialises it within one process",
            "--workers",
        )
    if not redis:
        usage_error(
            "several workers need --redis: each worker would otherwise keep its own "
            "proof-replay cache, and one captured /token request would be minted once "
            "per worker",
            "--workers",
        )


def _admin_token(given: str | None, key_file: Path) -> str:
    """The given admin token if it is strong; without one, a generated token written
    (0600) beside the key file. The token itself is never printed."""
    from ajwt_core.idp.admin_token import (
        admin_token_file,
        generate_admin_token,
        weakness,
        write_admin_token,
    )

    if given:
        why = weakness(given)
        if why is not None:
            fail(
                f"the administrator token ({ADMIN_TOKEN_ENV} or --admin-token) is too weak: "
                f"{why}. Generate one with: "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
                Reason.WEAK_ADMIN_TOKEN,
            )
        return given
    token = generate_admin_token()
    path = admin_token_file(key_file)
    try:
        write_admin_token(path, token)
    except OSError as exc:
        fail(f"cannot write the generated administrator token to {path}: {exc}", IO_ERROR)
    print_warning(
        f"no --admin-token or {ADMIN_TOKEN_ENV} given; generated an administrator token "
        f"for this run and wrote it to {path} (mode 0600)"
    )
    return token


@app.command("rotate-key")
def rotate_key(
    key_file: KeyFileOption = DEFAULT_KEY_FILE,
    activate_after: Annotated[
        int,
        typer.Option(
            help="Publish the new key now but sign with it only after this many seconds, "
            "so every resource server has fetched it before its first token. The default "
            "is the resource servers' JWKS refresh period (300 s) plus the longest token "
            "lifetime (300 s); use at least your resource servers' refresh period.",
            min=0,
        ),
    ] = DEFAULT_ACTIVATE_AFTER,
) -> None:
    """Add a new signing key to the key file and print its kid.

    The older keys stay published in the JWKS, so tokens they signed keep verifying
    until they expire. Running IdP workers reload the key file within a second and sign
    with the new key from its activation time. Run this on the IdP host, against the
    file the IdP serves.
    """
    from ajwt_core.idp.keystore import rotate_key_file
    from ajwt_core.keys import SigningKeySet

    _require_key_file(key_file)
    kid = rotate_key_file(key_file, activate_after=activate_after)
    published = len(SigningKeySet.from_json(key_file.read_text()).keys)
    typer.echo(kid)
    typer.echo(
        f"added signing key {kid} to {key_file} ({published} keys published); "
        f"running IdP workers reload the file within a second and sign with it in "
        f"{activate_after} s (or after their restart)",
        err=True,
    )


@app.command("retire-key")
def retire_key(
    kid: Annotated[str, typer.Argument(help="The kid of the key to retire.")],
    key_file: KeyFileOption = DEFAULT_KEY_FILE,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="If KID is the active signing key, add a new key that signs at once "
            "(without it, retiring the active key is refused).",
        ),
    ] = False,
) -> None:
    """Retire a signing key at once, e.g. a compromised one.

    The key leaves the JWKS and the IdP refuses the tokens it signed within a second;
    resource servers refuse them after their next JWKS refresh (at most 300 s with the
    default JWKSCache, at once after a restart). Prints the kid of the replacement key
    when one was added.
    """
    from ajwt_core.errors import AJWTError
    from ajwt_core.idp.keystore import load_signing_keys, retire_key_file

    _require_key_file(key_file)
    if not replace and load_signing_keys(key_file).active.kid == kid:
        fail(
            f"{kid} is the active signing key; retire it with --replace, which adds a "
            "key that signs at once",
            Reason.INVALID_KEY,
        )
    try:
        replacement = retire_key_file(key_file, kid, replace=replace)
    except AJWTError as exc:
        fail(exc.description, exc.reason)
    if replacement is not None:
        typer.echo(replacement)
    typer.echo(
        f"retired signing key {printable(kid)} from {key_file}"
        + (f"; key {replacement} signs from now on" if replacement else "")
        + "; running IdP workers stop accepting its tokens within a second, resource "
        "servers after their next JWKS refresh",
        err=True,
    )


def _require_key_file(key_file: Path) -> None:
    if not key_file.is_file():
        fail(
            f"there is no signing-key file at {str(key_file)!r}; "
            "'ajwt idp serve' creates it on first start",
            IO_ERROR,
        )
    _check_key_file_mode(key_file)

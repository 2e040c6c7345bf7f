"""A local IdP for development in one call: a fresh database, a client, a local user, and
their credentials in private files, served on 127.0.0.1 in this process.

``ajwt dev`` runs one in the foreground and prints the variables ``Shim.from_env()``
reads; from Python (a notebook, a test, a docs page):

>>> from ajwt_core.idp.dev import start_dev_idp
>>> with start_dev_idp(scopes=["repo:read"]) as idp:
...     shim = idp.shim()
...     sorted(idp.client["scopes"]), idp.environ()["AJWT_CLIENT_ID"]
(['repo:read'], 'dev-app')

Nothing it creates is meant to outlive development: every start begins with an empty
database and new credentials.
"""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ajwt_core.idp.admin import AdminClient
from ajwt_core.idp.admin_token import generate_admin_token
from ajwt_core.idp.keystore import write_private_text
from ajwt_core.server import BackgroundServer
from ajwt_core.workflow import Workflow

if TYPE_CHECKING:
    from ajwt_core.shim import Shim

DEV_CLIENT_ID: Final = "dev-app"
DEV_USER: Final = "user:dev"
#: The file of ``export`` lines in the state directory (mode 0600).
ENV_FILE_NAME: Final = "env"
_STATE_FILES: Final = ("idp.db", "idp.db-wal", "idp.db-shm", "idp-keys.json")


@dataclass
class DevIdP:
    """A running development IdP and what it created (see :func:`start_dev_idp`)."""

    url: str
    directory: Path
    admin: AdminClient
    client: dict[str, Any]
    user: str
    audience: str | None
    workflows: list[dict[str, Any]]
    _server: BackgroundServer = field(repr=False)
    _temporary: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def client_id(self) -> str:
        return str(self.client["client_id"])

    @property
    def env_file(self) -> Path:
        """The ``export`` lines (mode 0600): ``. <it>`` in a shell sets them."""
        return self.directory / ENV_FILE_NAME

    def secret_file(self, name: str) -> Path:
        return self.directory / name

    def user_token(self, subject: str | None = None, lifetime: int = 24 * 3600) -> str:
        """A local user's access token (the subject token a run starts from)."""
        return self.admin.user_token(subject or self.user, lifetime)

    def environ(self, *, files: bool = False) -> dict[str, str]:
        """The variables a shim (``Shim.from_env``), the ``ajwt`` commands and an app
        read. ``files``: the secrets as ``…_FILE`` paths instead of their values."""
        env = {
            "AJWT_IDP_URL": self.url,
            "AJWT_CLIENT_ID": self.client_id,
        }
        for name, file_name in (
            ("AJWT_CLIENT_SECRET", "client-secret"),
            ("AJWT_ADMIN_TOKEN", "admin-token"),
            ("AJWT_USER_TOKEN", "user-token"),
        ):
            path = self.secret_file(file_name)
            if files:
                env[name + "_FILE"] = str(path)
            else:
                env[name] = path.read_text(encoding="utf-8").strip()
        if self.audience:
            env["AJWT_AUDIENCE"] = self.audience
        return env

    def shim(self, **options: Any) -> Shim:
        """A shim for the dev client (``Shim.from_env`` over :meth:`environ`)."""
        from ajwt_core.shim import Shim

        return Shim.from_env(self.environ(), **options)

    def close(self) -> None:
        self.admin.close()
        self._server.close()
        if self._temporary is not None:
            self._temporary.cleanup()

    def __enter__(self) -> DevIdP:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def start_dev_idp(
    directory: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    workflows: Iterable[Workflow | Mapping[str, Any] | str | Path] = (),
    scopes: Iterable[str] = (),
    agent_policy: str = "open",
    audience: str | None = None,
    user: str = DEV_USER,
    client_id: str = DEV_CLIENT_ID,
) -> DevIdP:
    """Start a development IdP on ``host:port`` (0: any free port) in a thread.

    ``directory`` keeps its state and credentials (a temporary directory, removed on
    close, without one); what a previous start left there is replaced. ``workflows``
    (objects, mappings or YAML/JSON files) are registered; the client is granted
    ``scopes`` plus every scope they use, with ``agent_policy`` for its agents. The
    client secret, the admin token and a 24-hour token of ``user`` are written to
    ``client-secret``, ``admin-token`` and ``user-token`` there (mode 0600), and the
    variables naming them to ``env``.
    """
    from ajwt_core.idp import IdPSettings, create_app

    temporary = None
    if directory is None:
        temporary = tempfile.TemporaryDirectory(prefix="ajwt-dev-")
        directory = temporary.name
    state = Path(directory).resolve()
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o700)
    for name in _STATE_FILES:
        (state / name).unlink(missing_ok=True)
    loaded = [_workflow(w) for w in workflows]
    granted = sorted(set(scopes).union(*(_scopes_of(w) for w in loaded)))

    admin_token = generate_admin_token()
    server = BackgroundServer(host, port)
    try:
        settings = IdPSettings(
            issuer=server.url,
            db_url=f"sqlite+aiosqlite:///{state / 'idp.db'}",
            key_file=state / "idp-keys.json",
            admin_token=admin_token,
        )
        server.start(create_app(settings))
        admin = AdminClient(server.url, admin_token)
        registered = [admin.register_workflow(w.canonical()) for w in loaded]
        client = admin.register_client(client_id, scopes=granted, agent_policy=agent_policy)
        write_private_text(state / "client-secret", str(client.pop("client_secret")) + "\n")
        write_private_text(state / "admin-token", admin_token + "\n")
        write_private_text(state / "user-token", admin.user_token(user, 24 * 3600) + "\n")
    except BaseException:
        server.close()
        if temporary is not None:
            temporary.cleanup()
        raise
    dev = DevIdP(
        url=server.url,
        directory=state,
        admin=admin,
        client=client,
        user=user,
        audience=audience,
        workflows=registered,
        _server=server,
        _temporary=temporary,
    )
    write_private_text(dev.env_file, export_lines(dev.environ(files=True)))
    return dev


def export_lines(env: Mapping[str, str]) -> str:
    """``export NAME=value`` lines a POSIX shell can source.

    >>> print(export_lines({"AJWT_IDP_URL": "http://127.0.0.1:8000"}), end="")
    export AJWT_IDP_URL=http://127.0.0.1:8000
    """
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


def _workflow(source: Workflow | Mapping[str, Any] | str | Path) -> Workflow:
    if isinstance(source, Workflow):
        return source
    if isinstance(source, Mapping):
        return Workflow.from_mapping(dict(source))
    from ajwt_core.workflow.source import format_of, load_document

    path = Path(source)
    return load_document(path.read_text(encoding="utf-8"), format_of(path.name)).workflow()


def _scopes_of(workflow: Workflow) -> set[str]:
    found: set[str] = set()
    for step in workflow.steps.values():
        found.update(step.scopes)
        for consultation in step.consult.values():
            found.update(consultation.scopes)
    return found


__all__ = ["DevIdP", "export_lines", "start_dev_idp"]

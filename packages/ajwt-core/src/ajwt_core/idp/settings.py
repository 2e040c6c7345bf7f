"""IdP configuration: one typed model (pydantic-settings), read from Python, a config
file and the environment.

From Python, ``IdPSettings(issuer=..., ...)`` is exactly what it is given plus the
defaults: the environment is not read, so a test or an embedding app gets no surprise.
An operator's IdP (``ajwt idp serve``, ``ajwt_core.idp.asgi:app_from_env``) is built by
:meth:`IdPSettings.load`, which merges, lowest first:

1. the defaults;
2. a config file (TOML, YAML or JSON by its suffix; ``AJWT_IDP_CONFIG`` names it),
   whose keys are the field names;
3. the environment: ``AJWT_IDP_<FIELD>`` for every field (``AJWT_IDP_DB_URL``; lists
   and objects as JSON; booleans as ``1``/``0``/``true``/``false``), plus the older
   ``AJWT_IDP_DB`` and ``AJWT_ADMIN_TOKEN``;
4. what the caller passes (the CLI's flags).

>>> settings = IdPSettings(issuer="https://idp.example/")
>>> settings.issuer, settings.token_endpoint, settings.token_lifetime
('https://idp.example', 'https://idp.example/token', 300)
>>> IdPSettings(issuer="https://idp.example", token_lifetime=900).token_lifetime  # capped
300

``docs/operate.md`` lists every setting with its variable and flag.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Final

from pydantic import AliasChoices, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from ajwt_core.errors import InvalidRequest, Reason
from ajwt_core.idp.throttle import FailureThrottle
from ajwt_core.keys import SigningKeySet
from ajwt_core.tokens import MAX_CLIENT_ASSERTION_LIFETIME, MAX_INTENT_LIFETIME

DEFAULT_DB_URL: Final = "sqlite+aiosqlite:///ajwt-idp.db"
ENV_PREFIX: Final = "AJWT_IDP_"
#: The variable naming the config file :meth:`IdPSettings.load` reads.
CONFIG_ENV: Final = "AJWT_IDP_CONFIG"
#: Fields that hold live objects: given from Python only, never from a file or the
#: environment.
PYTHON_ONLY: Final = frozenset({"signing_keys", "admin_throttle", "extra"})


class IdPSettings(BaseSettings):
    """Everything an IdP instance needs; the CLI and tests build one of these.

    ``issuer`` is the public base URL (``iss`` of every token). The signing keys come
    from ``signing_keys`` or are loaded from / generated into ``key_file`` (mode 0600).
    The user's subject token is accepted from this IdP's own local user tokens
    (``local_users``) and/or from an upstream OpenID provider (``upstream_*``): its
    RFC 9068 access tokens for ``upstream_audience`` and its ID tokens for
    ``upstream_client_id``, verified with its JWKS (``upstream_jwks``, else fetched from
    ``upstream_jwks_url``, else found by discovery at the issuer). Local users are on by
    default without an upstream and off by default with one.
    """

    model_config: ClassVar[SettingsConfigDict] = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        env_ignore_empty=True,
        extra="forbid",
        arbitrary_types_allowed=True,
        populate_by_name=True,
        validate_default=True,
    )

    #: The IdP's public base URL, the ``iss`` of every token.
    issuer: str
    #: SQLAlchemy URL: SQLite (one process) or ``postgresql+asyncpg://…`` (extra ``postgres``).
    db_url: str = Field(
        DEFAULT_DB_URL, validation_alias=AliasChoices("AJWT_IDP_DB_URL", "AJWT_IDP_DB")
    )
    #: The Bearer credential of the ``/admin`` endpoints (≥ 32 random characters).
    admin_token: str | None = Field(
        None,
        repr=False,
        validation_alias=AliasChoices("AJWT_ADMIN_TOKEN", "AJWT_IDP_ADMIN_TOKEN"),
    )
    #: A file holding the admin token (read when ``admin_token`` is not given).
    admin_token_file: Path | None = None
    #: The signing-key file (JSON, mode 0600), created on first start.
    key_file: Path | None = None
    #: Signing keys given from Python (tests, embedding); else ``key_file``, else fresh.
    signing_keys: SigningKeySet | None = Field(None, repr=False)
    #: Intent-token lifetime in seconds (at most 300, DESIGN §5.1).
    token_lifetime: int = Field(MAX_INTENT_LIFETIME, ge=1)
    #: Default lifetime of an agent registration in seconds.
    registration_lifetime: int = Field(24 * 3600, ge=60, le=30 * 24 * 3600)
    #: Whether the IdP issues and accepts its own local user tokens; ``None``: on unless
    #: an upstream issuer is configured.
    local_users: bool | None = None
    #: An upstream OpenID provider whose tokens root runs (its ``iss``).
    upstream_issuer: str | None = None
    #: The ``aud`` of the upstream's access tokens (default: this IdP's issuer).
    upstream_audience: str | None = None
    #: The upstream issuer's JWKS, inline.
    upstream_jwks: dict[str, Any] | None = None
    #: Where to fetch the upstream issuer's JWKS on start.
    upstream_jwks_url: str | None = None
    #: The upstream client whose ID tokens root runs (their ``aud``); none: no ID tokens.
    upstream_client_id: str | None = None
    #: Put before an upstream user's ``sub`` (default ``<upstream issuer>#``); ``""`` keeps
    #: it bare, which needs ``local_users`` off (DESIGN §12).
    upstream_subject_prefix: str | None = None
    #: Least seconds between two fetches of the upstream JWKS for an unknown ``kid``.
    upstream_min_refresh: float = Field(30.0, gt=0)
    #: Shim checksums (hex) published as accepted besides this package's own.
    accepted_shim_checksums: list[str] = Field(default_factory=list)
    #: Redis for many workers: the proof replay cache, and revocations published to
    #: resource servers (``ajwt:revoked:<kind>:<id>``).
    redis_url: str | None = None
    #: The prefix of every Redis key; resource servers reading them use the same one.
    redis_prefix: str = "ajwt:"
    #: Seconds between checks that Redis still holds the published revocations (and
    #: publications of those committed while it was unreachable).
    revocation_sync_interval: float = Field(1.0, gt=0)
    #: The largest request body accepted (413 beyond).
    max_body_bytes: int = Field(1 << 20, ge=1024)
    #: Failed admin authentication per client address (default: 10 a minute, then 429).
    admin_throttle: FailureThrottle | None = Field(None, repr=False)
    #: Longest ``private_key_jwt`` assertion accepted (``exp - iat``, seconds). Its
    #: ``jti`` is remembered until it expires; authlib's default lifetime is 3600 s.
    client_assertion_max_lifetime: int = Field(MAX_CLIENT_ASSERTION_LIFETIME, ge=60)
    #: Where ``ajwt idp serve`` listens, and how many worker processes it runs.
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    extra: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Python construction takes only what it is given: ``load`` adds the file and
        # the environment explicitly.
        return (init_settings,)

    @model_validator(mode="after")
    def _normalise(self) -> IdPSettings:
        self.issuer = self.issuer.rstrip("/")
        self.token_lifetime = min(self.token_lifetime, MAX_INTENT_LIFETIME)
        if self.admin_token is None and self.admin_token_file is not None:
            self.admin_token = self.admin_token_file.read_text(encoding="utf-8").strip() or None
        return self

    @property
    def accepts_local_users(self) -> bool:
        """Whether local user tokens are issued and accepted (``local_users`` resolved)."""
        return self.local_users if self.local_users is not None else not self.upstream_issuer

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    # ----------------------------------------------------------------- loading

    @classmethod
    def configured(
        cls, config_file: str | Path | None = None, *, environ: bool = True
    ) -> dict[str, Any]:
        """The values a config file and the environment set (not the defaults).

        ``config_file`` defaults to ``$AJWT_IDP_CONFIG``; the environment wins over it.
        """
        import os

        values: dict[str, Any] = {}
        path = config_file or (os.environ.get(CONFIG_ENV) if environ else None)
        if path:
            values.update(_file_values(cls, Path(path)))
        if environ:
            found = EnvSettingsSource(cls)()
            values.update({k: v for k, v in found.items() if k not in PYTHON_ONLY})
            # Empty variables are ignored, but for this one "set and empty" has a meaning
            # of its own: upstream subjects kept bare (DESIGN §12).
            if os.environ.get(ENV_PREFIX + "UPSTREAM_SUBJECT_PREFIX") == "":
                values["upstream_subject_prefix"] = ""
        return values

    @classmethod
    def load(
        cls,
        config_file: str | Path | None = None,
        *,
        defaults: dict[str, Any] | None = None,
        environ: bool = True,
        **overrides: Any,
    ) -> IdPSettings:
        """Settings from, lowest first: ``defaults``, the config file, the environment,
        then ``overrides`` whose value is not None (the CLI's flags).

        A value that does not validate is ``invalid_request`` naming the setting.
        """
        values = dict(defaults or {})
        values.update(cls.configured(config_file, environ=environ))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.checked(**values)

    @classmethod
    def checked(cls, **values: Any) -> IdPSettings:
        """``IdPSettings(**values)``, with a validation failure as one typed error."""
        try:
            return cls(**values)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "settings"
            if first["type"] == "extra_forbidden":
                message = f"{where!r} is not an IdP setting"
            elif first["type"] == "missing":
                message = f"the IdP setting {where!r} is required ({ENV_PREFIX}{where.upper()})"
            else:
                variable = f"{ENV_PREFIX}{where.upper()}"
                message = f"the IdP setting {where!r} ({variable}) is invalid: {first['msg']}"
            raise InvalidRequest(Reason.MALFORMED_REQUEST, message) from None
        except OSError as exc:
            raise InvalidRequest(
                Reason.MALFORMED_REQUEST,
                f"cannot read admin_token_file: {exc.strerror or type(exc).__name__}",
            ) from None

    def to_environ(self) -> dict[str, str]:
        """These settings as ``AJWT_IDP_*`` variables (what :meth:`load` reads back):
        how ``ajwt idp serve --workers N`` hands them to its worker processes."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            if name in PYTHON_ONLY or name == "admin_token_file":
                continue
            value = getattr(self, name)
            if value is None:
                continue
            if name == "admin_token":
                env["AJWT_ADMIN_TOKEN"] = value
                continue
            key = ENV_PREFIX + name.upper()
            if isinstance(value, bool):
                env[key] = "1" if value else "0"
            elif isinstance(value, dict | list):
                env[key] = json.dumps(value)
            else:
                env[key] = str(value)
        return env


def _file_values(cls: type[IdPSettings], path: Path) -> dict[str, Any]:
    """The settings in a config file, by suffix; unknown keys are refused by the model."""
    if not path.is_file():
        raise InvalidRequest(Reason.MALFORMED_REQUEST, f"there is no config file {str(path)!r}")
    suffix = path.suffix.lower()
    source: PydanticBaseSettingsSource
    try:
        if suffix == ".toml":
            source = TomlConfigSettingsSource(cls, toml_file=path)
        elif suffix in (".yaml", ".yml"):
            source = YamlConfigSettingsSource(cls, yaml_file=path)
        elif suffix == ".json":
            source = JsonConfigSettingsSource(cls, json_file=path)
        else:
            raise InvalidRequest(
                Reason.MALFORMED_REQUEST,
                f"the config file {str(path)!r} must be .toml, .yaml, .yml or .json",
            )
        values = source()
    except InvalidRequest:
        raise
    except Exception as exc:  # noqa: BLE001 - a parser's error: one line naming the file
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST,
            f"the config file {str(path)!r} cannot be read: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}",
        ) from None
    python_only = sorted(PYTHON_ONLY & set(values))
    if python_only:
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST,
            f"{', '.join(python_only)} can only be given from Python (use key_file for keys)",
        )
    return dict(values)


__all__ = ["CONFIG_ENV", "DEFAULT_DB_URL", "ENV_PREFIX", "IdPSettings"]

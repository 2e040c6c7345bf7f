"""The user's upstream OpenID provider: its signing keys, and whose ``sub`` is whose.

The keys are fetched when a token first needs them, never at start: the IdP starts while
the provider is down, and a run start that needs the provider is answered ``503
temporarily_unavailable`` until the provider answers. The JWKS is found by OpenID Connect
Discovery 1.0 (§4: ``<issuer>/.well-known/openid-configuration``, whose ``issuer`` must be
exactly the configured one, §4.3) unless its URL is configured. It is fetched again when
a token names a key not known yet (the provider rotated its keys), at most once per
``min_refresh`` seconds, and once per ``retry_interval`` while the provider does not
answer, so tokens with made-up ``kid`` values cannot make the IdP hammer the provider.

>>> import asyncio
>>> from ajwt_core.keys import SigningKeySet
>>> published = SigningKeySet.generate()
>>> provider = UpstreamProvider("https://login.example", jwks=published.jwks())
>>> provider.discovery_url
'https://login.example/.well-known/openid-configuration'
>>> published.active.kid in asyncio.run(provider.keys()).kids()
True
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx

from ajwt_core._http import AsyncClients
from ajwt_core.errors import InvalidRequest, Reason, ServerError
from ajwt_core.idp.outages import RETRY_AFTER_SECONDS, Outages
from ajwt_core.idp.settings import IdPSettings
from ajwt_core.keys import UPSTREAM_ALGORITHMS, KeyResolver

DISCOVERY_PATH: Final = "/.well-known/openid-configuration"
#: The name the outage log lines use.
PROVIDER: Final = "upstream identity provider"
#: A discovery document or JWKS larger than this is refused, not parsed.
MAX_DOCUMENT_BYTES: Final = 256 * 1024
#: Keys this old are fetched again before use, so a key the provider withdrew stops
#: verifying within this time even if no token ever names an unknown key.
DEFAULT_MAX_AGE: Final = 3600.0


class UpstreamUnusable(Exception):
    """The provider answered, but not with something the IdP can use."""


class UpstreamProvider:
    """The upstream provider's verification keys, fetched lazily and refreshed on demand.

    ``jwks`` fixes the keys (nothing is fetched); else they come from ``jwks_url``, else
    from the ``jwks_uri`` of the issuer's discovery document.
    """

    def __init__(
        self,
        issuer: str,
        *,
        jwks: Mapping[str, Any] | None = None,
        jwks_url: str | None = None,
        min_refresh: float = 30.0,
        max_age: float = DEFAULT_MAX_AGE,
        retry_interval: float = RETRY_AFTER_SECONDS,
        outages: Outages | None = None,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self._static = jwks is not None
        self._keys = KeyResolver.from_jwks(jwks, UPSTREAM_ALGORITHMS) if jwks else KeyResolver()
        self._jwks_url = jwks_url
        self._min_refresh = min_refresh
        self._max_age = max_age
        self._retry_interval = retry_interval
        self._outages = outages or Outages()
        # No redirects followed: the keys come from the URL configured or discovered.
        self._clients = AsyncClients(lambda: client or httpx.AsyncClient(timeout=5.0))
        self._clock = clock
        self._fetched_at: float | None = None
        self._last_attempt: float | None = None
        self._last_failed = False
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(
        cls, settings: IdPSettings, outages: Outages | None = None
    ) -> UpstreamProvider | None:
        """The provider ``settings`` configure, if any."""
        if not settings.upstream_issuer:
            return None
        return cls(
            settings.upstream_issuer,
            jwks=settings.upstream_jwks,
            jwks_url=settings.upstream_jwks_url,
            min_refresh=settings.upstream_min_refresh,
            outages=outages,
        )

    @property
    def discovery_url(self) -> str:
        """OIDC Discovery §4: the issuer (without a trailing ``/``) + the well-known path."""
        return self.issuer.rstrip("/") + DISCOVERY_PATH

    async def keys(self) -> KeyResolver:
        """The keys known now (none before the first fetch), fetched again first once they
        are ``max_age`` old; if that fails, the known keys are kept."""
        fetched = self._fetched_at
        if not self._static and fetched is not None and self._clock() - fetched >= self._max_age:
            with contextlib.suppress(ServerError):
                await self.refresh()
        return self._keys

    async def refresh(self) -> KeyResolver:
        """Fetch the keys again because a token names a key not known (or none is yet).

        Rate-limited: within ``min_refresh`` of the last fetch the known keys are
        returned as they are (the token's key is then unknown: ``unknown_kid``). Raises
        ``ServerError`` (503) while the provider cannot be reached or answers nonsense.
        """
        if self._static:
            return self._keys
        async with self._lock:
            now = self._clock()
            if self._last_attempt is not None:
                wait = self._retry_interval if self._last_failed else self._min_refresh
                if now - self._last_attempt < wait:
                    if self._last_failed:
                        raise self._unavailable()
                    return self._keys
            self._last_attempt = now
            try:
                keys = await self._fetch()
            except (httpx.HTTPError, ValueError, UpstreamUnusable) as exc:
                self._last_failed = True
                self._outages.down(PROVIDER, exc)
                raise self._unavailable() from None
            self._last_failed = False
            self._outages.up(PROVIDER)
            self._keys = keys
            self._fetched_at = self._clock()
            return keys

    def _unavailable(self) -> ServerError:
        return ServerError(
            Reason.SERVICE_UNAVAILABLE,
            f"the upstream identity provider {self.issuer} cannot be reached; try again shortly",
        )

    async def _fetch(self) -> KeyResolver:
        client = self._clients.get()
        url = self._jwks_url or await self._discover(client)
        keys = KeyResolver.from_jwks(await _get_json(client, url), UPSTREAM_ALGORITHMS)
        if not len(keys):
            raise UpstreamUnusable(f"the JWKS at {url} holds no usable signing key")
        return keys

    async def _discover(self, client: httpx.AsyncClient) -> str:
        document = await _get_json(client, self.discovery_url)
        if document.get("issuer") != self.issuer:
            # §4.3: else another issuer's keys would verify tokens claiming this one.
            raise UpstreamUnusable(
                f"the discovery document names issuer {str(document.get('issuer'))[:200]!r}, "
                f"not {self.issuer!r}"
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise UpstreamUnusable("the discovery document has no http(s) 'jwks_uri'")
        return jwks_uri


async def _get_json(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    response = await client.get(url, headers={"Accept": "application/json"})
    response.raise_for_status()
    if len(response.content) > MAX_DOCUMENT_BYTES:
        raise UpstreamUnusable(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
    document = response.json()
    if not isinstance(document, dict):
        raise UpstreamUnusable(f"{url} did not answer a JSON object")
    return document


# ------------------------------------------------------------------ whose sub is whose


def subject_prefix(settings: IdPSettings) -> str:
    """What precedes an upstream user's ``sub`` in the run and its tokens: by default the
    issuer and ``#`` (as Kubernetes names OIDC users), so that no upstream user has the
    ``sub`` of a local one, nor of a user of another issuer.

    >>> subject_prefix(IdPSettings(issuer="http://idp", upstream_issuer="https://op"))
    'https://op#'
    """
    if settings.upstream_subject_prefix is not None:
        return settings.upstream_subject_prefix
    return f"{settings.upstream_issuer}#"


def check_upstream_settings(settings: IdPSettings) -> None:
    """Refuse an upstream configuration that cannot work, or that makes a ``sub`` mean two
    users (bare upstream subjects while local users are accepted).

    >>> check_upstream_settings(IdPSettings(issuer="http://idp", upstream_client_id="app"))
    Traceback (most recent call last):
    ajwt_core.errors.InvalidRequest: upstream_client_id is set without an upstream issuer
    """
    if not settings.upstream_issuer:
        given = [
            name
            for name in (
                "upstream_audience",
                "upstream_jwks",
                "upstream_jwks_url",
                "upstream_client_id",
                "upstream_subject_prefix",
            )
            if getattr(settings, name) is not None
        ]
        if given:
            raise InvalidRequest(
                Reason.MALFORMED_REQUEST,
                f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} set without an "
                "upstream issuer",
            )
        return
    if not settings.upstream_issuer.startswith(("https://", "http://")):
        raise InvalidRequest(Reason.MALFORMED_REQUEST, "the upstream issuer must be an http(s) URL")
    if subject_prefix(settings) == "" and settings.accepts_local_users:
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST,
            "an empty upstream subject prefix needs local users off: a local user and an "
            "upstream user could otherwise have the same 'sub'",
        )

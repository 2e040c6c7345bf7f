"""The URL a request was sent to, which a proof's ``htu`` must name (RFC 9449 §4.3).

A resource server knows its public origins; the client's ``Host`` header only selects
one of them. A ``Host`` that is not a plain ``host[:port]`` (RFC 3986 §3.2: no
``/?#@``, no whitespace) or not the authority of an allowed origin is refused before
anything else, so a forged ``Host`` can neither move the real path into a query nor
make the server stand in for another origin. The path is the one the client sent
(``scope["raw_path"]``), not the decoded ``scope["path"]``: ``htu`` is compared in
RFC 3986 normal form, where ``%2F`` is not ``/``. ``Forwarded`` / ``X-Forwarded-Host``
/ ``X-Forwarded-Proto`` are read only from a peer in ``trusted_proxies``, and what they
name must still be an allowed origin.

>>> origins = AllowedOrigins("https://api.example")
>>> scope = {"type": "http", "scheme": "http", "path": "/files/READ ME",
...          "raw_path": b"/files/READ%20ME", "headers": [(b"host", b"API.example")]}
>>> origins.request_url(scope)
'https://api.example/files/READ%20ME'
>>> origins.request_url(scope | {"headers": [(b"host", b"api.example/other?")]})
Traceback (most recent call last):
ajwt_core.errors.InvalidRequest: the Host header is not a plain host[:port]
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from ajwt_core.errors import InvalidRequest, Reason
from ajwt_core.uri import DEFAULT_PORTS, has_dot_segments, normalise_http_url, parse_authority

Scope = MutableMapping[str, Any]

# What ``quote`` must leave alone in a path besides letters, digits and ``_.-~``.
_PATH_SAFE = "/!$&'()*+,;=:@"
_HEADERS = frozenset({b"host", b"forwarded", b"x-forwarded-host", b"x-forwarded-proto"})


@dataclass(frozen=True, slots=True)
class Origin:
    """``scheme://host[:port]`` with the port always known (default ports filled in)."""

    scheme: str
    host: str
    port: int
    url: str  # normalised, without a trailing "/"

    @classmethod
    def parse(cls, url: str) -> Origin:
        """An origin from ``scheme://host[:port]`` (a trailing ``/`` is allowed).

        >>> Origin.parse("HTTPS://API.example:443/")
        Origin(scheme='https', host='api.example', port=443, url='https://api.example')
        """
        normal = normalise_http_url(url)
        scheme, _, rest = normal.partition("://")
        authority, _, path = rest.partition("/")
        if path or "?" in url or "#" in url:
            raise ValueError(f"{url!r} is not an origin (scheme://host[:port], no path)")
        host, port = parse_authority(authority)
        port = DEFAULT_PORTS[scheme] if port is None else port
        return cls(scheme, host, port, normal.removesuffix("/"))


class AllowedOrigins:
    """This server's public origin(s), and the trusted proxies allowed to name one.

    ``trusted_proxies`` holds IP addresses or networks (``"10.0.0.0/8"``) of the peers
    whose ``Forwarded`` (preferred) or ``X-Forwarded-Host`` / ``X-Forwarded-Proto``
    headers are read; the last value of each is the one the nearest proxy set.
    """

    def __init__(
        self, origins: str | Sequence[str], *, trusted_proxies: Collection[str] = ()
    ) -> None:
        listed = [origins] if isinstance(origins, str) else list(origins)
        if not listed:
            raise ValueError("base_url: at least one public origin is required")
        try:
            self.origins = tuple(Origin.parse(origin) for origin in listed)
        except ValueError as exc:
            raise ValueError(f"base_url: {exc}") from None
        try:
            self._proxies = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)
        except ValueError as exc:
            raise ValueError(f"trusted_proxies: {exc}") from None

    @classmethod
    def of(
        cls,
        audience: str,
        base_url: str | Sequence[str] | None,
        trusted_proxies: Collection[str] = (),
    ) -> AllowedOrigins:
        """``base_url``, or else the verifier's ``audience`` when it is an http(s) origin."""
        if base_url is None:
            try:
                Origin.parse(audience)
            except ValueError:
                raise ValueError(
                    f"base_url is required: the verifier's audience {audience!r} is not an "
                    "http(s) origin, so it cannot tell which Host this server answers to"
                ) from None
            base_url = audience
        return cls(base_url, trusted_proxies=trusted_proxies)

    # ------------------------------------------------------------------ request

    def request_url(self, scope: Scope) -> str:
        """The normalised URL the client sent ``scope`` to (for ``htu``), or a refusal."""
        return _normal_url(self.origin_of(scope).url, _request_path(scope))

    def origin_of(self, scope: Scope) -> Origin:
        """The allowed origin the request names (``Host``, or a trusted proxy's header)."""
        found: dict[bytes, list[str]] = {}
        for name, value in scope.get("headers", ()):
            lowered = name.lower()
            if lowered in _HEADERS:
                found.setdefault(lowered, []).append(value.decode("latin-1"))
        forwarded_host = proto = None
        if self._proxies and self._trusted(scope.get("client")):
            forwarded_host, proto = _forwarded(found)
        if forwarded_host is not None:
            authority = forwarded_host
        else:
            hosts = found.get(b"host", [])
            if len(hosts) != 1:
                raise InvalidRequest(
                    Reason.HOST_NOT_ALLOWED, "the request needs exactly one Host header"
                )
            authority = hosts[0].strip(" \t")
        try:
            host, port = parse_authority(authority)
        except ValueError:
            raise InvalidRequest(
                Reason.HOST_NOT_ALLOWED, "the Host header is not a plain host[:port]"
            ) from None
        if proto is not None and proto not in DEFAULT_PORTS:
            raise InvalidRequest(
                Reason.HOST_NOT_ALLOWED, "the forwarded protocol is not http or https"
            )
        matches = [
            o
            for o in self.origins
            if o.host == host
            and (proto is None or o.scheme == proto)
            and o.port == (DEFAULT_PORTS[proto or o.scheme] if port is None else port)
        ]
        if not matches:
            raise InvalidRequest(
                Reason.HOST_NOT_ALLOWED, "this server does not answer to that Host"
            )
        # http and https on one host: the connection's scheme decides (TLS may end at a
        # proxy, so with a single match its scheme wins over the connection's).
        return next((o for o in matches if o.scheme == scope.get("scheme")), matches[0])

    def _trusted(self, client: object) -> bool:
        if not isinstance(client, Sequence) or not client or not isinstance(client[0], str):
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        return any(address in network for network in self._proxies)


def _request_path(scope: Scope) -> str:
    """The path as the client sent it: ``raw_path`` (query cut off: some servers keep
    it), under ``root_path`` unless the server already put it there; without
    ``raw_path``, the decoded path re-encoded (``%2F`` then reads as ``/``)."""
    root = str(scope.get("root_path", ""))
    raw = scope.get("raw_path")
    if isinstance(raw, bytes):
        try:
            path = raw.decode("ascii").partition("?")[0].partition("#")[0]
        except UnicodeDecodeError:
            raise InvalidRequest(
                Reason.MALFORMED_REQUEST, "the request path is not a valid URI path"
            ) from None
        encoded_root = quote(root, safe=_PATH_SAFE) if root else ""
        if not path.startswith(encoded_root):
            path = encoded_root + path
    else:
        path = quote(root + str(scope.get("path", "")), safe=_PATH_SAFE)
    return path


@lru_cache(maxsize=4096)  # clients call the same few URLs over and over
def _normal_url(origin: str, path: str) -> str:
    if not path.startswith("/"):
        raise InvalidRequest(Reason.MALFORMED_REQUEST, "the request path must start with '/'")
    # Clients remove dot segments before sending (RFC 3986 §5.2.4); the app would see
    # them literally while ``htu`` compares without them.
    if has_dot_segments(path):
        raise InvalidRequest(Reason.MALFORMED_REQUEST, "the request path has dot segments")
    try:
        return normalise_http_url(origin + path)
    except ValueError:
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST, "the request path is not a valid URI path"
        ) from None


def _forwarded(found: dict[bytes, list[str]]) -> tuple[str | None, str | None]:
    """Host and protocol from ``Forwarded`` (RFC 7239), else ``X-Forwarded-*``: the
    last element, which the nearest (trusted) proxy appended."""
    if b"forwarded" in found:
        element = ",".join(found[b"forwarded"]).rsplit(",", 1)[-1]
        pairs: dict[str, str] = {}
        for pair in element.split(";"):
            name, _, value = pair.partition("=")
            pairs[name.strip().lower()] = value.strip().strip('"')
        return pairs.get("host"), _lower(pairs.get("proto"))
    return _last(found.get(b"x-forwarded-host")), _lower(_last(found.get(b"x-forwarded-proto")))


def _last(values: Iterable[str] | None) -> str | None:
    if not values:
        return None
    return ",".join(values).rsplit(",", 1)[-1].strip(" \t")


def _lower(value: str | None) -> str | None:
    return value.lower() if value is not None else None

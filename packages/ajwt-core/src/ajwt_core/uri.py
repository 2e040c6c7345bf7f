"""RFC 3986 for the URLs A-JWT compares: the syntax of an ``http(s)`` URL and of an
authority, and the normal form of §6.2.2 (syntax-based) plus §6.2.3 (default port,
empty path).

A DPoP proof's ``htu`` and the URL a request was sent to are compared in this normal
form (RFC 9449 §4.3). Nothing here repairs a URL: a character that may not appear in
a URI (a space, a non-ASCII letter, a bare ``%``) is refused, never percent-encoded on
the way, so ``/READ ME`` cannot pass for ``/READ%20ME``. ``%2F`` stays ``%2F``: it is
data, not a path separator.

>>> normalise_http_url("HTTPS://Api.Example:443/a/./b/../c%7e%2f?q=1#f")
'https://api.example/a/c~%2F'
>>> normalise_http_url("https://api.example/READ ME")
Traceback (most recent call last):
ValueError: the path is not a valid URI path
>>> parse_authority("API.example:8443")
('api.example', 8443)
"""

from __future__ import annotations

import re
from typing import Final

DEFAULT_PORTS: Final = {"http": 80, "https": 443}

# §3 / Appendix B: scheme "://" authority path ["?" query] ["#" fragment].
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^?#]*)(?:\?([^#]*))?(?:#(.*))?", re.S)
# §3.3 path-abempty (pchar and "/"); §3.4 / §3.5 query and fragment also allow "?".
_PATH = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
_QUERY = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*")
# §3.2.2 reg-name without percent-encoding (no HTTP host needs it), and an IPv6 literal.
_REG_NAME = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=]+")
_IP_LITERAL = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_PORT = re.compile(r"[0-9]{0,5}")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def parse_authority(authority: str) -> tuple[str, int | None]:
    """``host[:port]`` (§3.2, without userinfo) → lower-cased host and port (``None`` when
    absent or empty). Raises :class:`ValueError` for anything else (``/?#@``, spaces…).

    >>> parse_authority("[::1]:8080")
    ('[::1]', 8080)
    >>> parse_authority("api.example/x?")
    Traceback (most recent call last):
    ValueError: not a host[:port] authority
    """
    if authority.startswith("["):
        end = authority.find("]") + 1
        host, rest = authority[:end], authority[end:]
        valid_host = end > 0 and _IP_LITERAL.fullmatch(host) is not None
        if rest and not rest.startswith(":"):
            valid_host = False
        port = rest[1:] if rest else ""
    else:
        host, _, port = authority.partition(":")
        valid_host = _REG_NAME.fullmatch(host) is not None
    if not valid_host or not _PORT.fullmatch(port) or (port and int(port) > 65535):
        raise ValueError("not a host[:port] authority")
    return host.lower(), int(port) if port else None


def normalise_percent_encoding(path: str) -> str:
    """§6.2.2.1–2: upper-case hex digits, decode percent-encoded unreserved characters.

    >>> normalise_percent_encoding("/%7euser/%2f%41")
    '/~user/%2FA'
    """

    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group()[1:], 16))
        return char if char in _UNRESERVED else match.group().upper()

    return _PERCENT.sub(one, path) if "%" in path else path


def remove_dot_segments(path: str) -> str:
    """§5.2.4, the algorithm as written.

    >>> remove_dot_segments("/a/b/c/./../../g")
    '/a/g'
    """
    if "." not in path:
        return path
    output: list[str] = []
    while path:
        if path.startswith("../"):
            path = path[3:]
        elif path.startswith("./") or path.startswith("/./"):
            path = path[2:]
        elif path == "/.":
            path = "/"
        elif path.startswith("/../") or path == "/..":
            path = "/" + path[4:]
            if output:
                output.pop()
        elif path in (".", ".."):
            path = ""
        else:
            end = path.find("/", 1)
            end = len(path) if end < 0 else end
            output.append(path[:end])
            path = path[end:]
    return "".join(output)


def has_dot_segments(path: str) -> bool:
    """Whether a path has a ``.`` or ``..`` segment (also percent-encoded).

    >>> has_dot_segments("/a/%2E%2e/b"), has_dot_segments("/a/.b")
    (True, False)
    """
    return any(s in (".", "..") for s in normalise_percent_encoding(path).split("/"))


def normalise_http_url(url: str) -> str:
    """An absolute ``http(s)`` URL in normal form, without query and fragment.

    Scheme and host lower-cased, default port and empty port dropped, percent-encoding
    normalised, dot segments removed, empty path as ``/``. Raises :class:`ValueError`
    for a URL that is not an absolute ``http(s)`` URI (userinfo included).

    >>> normalise_http_url("http://127.0.0.1:80")
    'http://127.0.0.1/'
    """
    parts = _URL.fullmatch(url)
    if parts is None:
        raise ValueError("not an absolute URI with an authority")
    scheme, authority, path, query, fragment = parts.groups()
    scheme = scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError("the scheme is not http or https")
    host, port = parse_authority(authority)
    if not _PATH.fullmatch(path):
        raise ValueError("the path is not a valid URI path")
    for part in (query, fragment):
        if part is not None and not _QUERY.fullmatch(part):
            raise ValueError("the query or fragment is not valid")
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return f"{scheme}://{netloc}{remove_dot_segments(normalise_percent_encoding(path)) or '/'}"

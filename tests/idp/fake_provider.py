"""A scripted upstream OpenID provider behind ``httpx.MockTransport``: discovery, JWKS,
ID and access tokens, key rotation, outages; it counts the requests it answers.

The real provider (panva's ``oidc-provider``) is driven by
``tests/interop/test_upstream_oidc.py``; this one lets the IdP's checks be tested
without node, and lets a test say exactly what the provider answers.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from ajwt_core.idp.upstream import UpstreamProvider

OP = "http://op.test"
CLIENT_ID = "app"


class FakeProvider:
    def __init__(self, issuer: str = OP) -> None:
        self.issuer = issuer
        self.keys: list[tuple[str, rsa.RSAPrivateKey]] = [(self.new_kid(), _rsa())]
        self.down = False
        self.discovery: dict[str, Any] = {"issuer": issuer, "jwks_uri": issuer + "/jwks"}
        self.jwks_override: Any = None
        self.requests: list[str] = []

    @staticmethod
    def new_kid() -> str:
        return "k-" + secrets.token_hex(4)

    # ------------------------------------------------------------------ HTTP

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.url.path)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(200, json=self.discovery)
        if request.url.path == "/jwks":
            return httpx.Response(200, json=self.jwks_override or self.jwks())
        return httpx.Response(404)

    def jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
                | {"kid": kid, "alg": "RS256", "use": "sig"}
                for kid, key in self.keys
            ]
        }

    def fetches(self) -> int:
        return self.requests.count("/jwks")

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    def upstream(self, **options: Any) -> UpstreamProvider:
        """The IdP's view of this provider, as ``create_app`` builds it."""
        return UpstreamProvider(self.issuer, client=self.client(), **options)

    # ---------------------------------------------------------------- keys

    def rotate(self) -> str:
        """A new signing key, first in the JWKS (the old one stays published)."""
        kid = self.new_kid()
        self.keys.insert(0, (kid, _rsa()))
        return kid

    # -------------------------------------------------------------- tokens

    def id_token(
        self, sub: str = "alice", *, kid: str | None = None, typ: str | None = None, **claims: Any
    ) -> str:
        """An ID token as OIDC providers send it: no ``typ`` (oidc-provider 9) or ``JWT``
        (oidc-provider 8)."""
        now = int(time.time())
        body = {"iss": self.issuer, "sub": sub, "aud": CLIENT_ID, "iat": now, "exp": now + 600}
        return self._sign(body | claims, {"typ": typ}, kid)

    def access_token(
        self, audience: str, sub: str = "alice", *, kid: str | None = None, **claims: Any
    ) -> str:
        """An RFC 9068 access token for ``audience``."""
        now = int(time.time())
        body = {
            "iss": self.issuer,
            "sub": sub,
            "aud": audience,
            "client_id": CLIENT_ID,
            "scope": "runs:start",
            "jti": secrets.token_urlsafe(8),
            "iat": now,
            "exp": now + 600,
        }
        return self._sign(body | claims, {"typ": "at+jwt"}, kid)

    def _sign(self, claims: dict[str, Any], header: dict[str, Any], kid: str | None) -> str:
        chosen = kid or self.keys[0][0]
        key = dict(self.keys)[chosen] if chosen in dict(self.keys) else _rsa()
        return jwt.encode(claims, key, algorithm="RS256", headers=header | {"kid": chosen})


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)

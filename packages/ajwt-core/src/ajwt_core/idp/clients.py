"""OAuth clients of the IdP: registration and authentication (RFC 6749 §2.3, RFC 7523)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import cast

import jwt
from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy.exc import IntegrityError

from ajwt_core.errors import (
    InvalidClient,
    InvalidClientAssertion,
    InvalidClientAssertionHeader,
    InvalidRequest,
    Reason,
)
from ajwt_core.idp.base import IdPBase
from ajwt_core.idp.db import (
    ClientRow,
    UsedAssertionRow,
    detached,
    execute_core,
)
from ajwt_core.idp.models import (
    ClientCreated,
    ClientRegistration,
    is_identifier,
)
from ajwt_core.keys import KeyResolver
from ajwt_core.tokens import (
    CLIENT_ASSERTION_ALGORITHMS,
    DEFAULT_LEEWAY,
    decode_client_assertion,
    format_scope,
)


def _hash_secret(secret: str) -> str:
    # Client secrets are 256-bit random values issued here, so a fast hash is enough
    # (there is nothing to brute-force); compared in constant time.
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ClientCredential:
    """What the HTTP layer extracted: Basic credentials or an RFC 7523 assertion, and
    the URL of the endpoint it was presented to (an assertion's ``aud`` may name it).
    ``in_header``: the assertion came in the ``Authorization`` header (the JSON
    endpoints' ``Client-Assertion`` scheme), not in the form body."""

    client_id: str | None
    secret: str | None = None
    assertion: str | None = None
    endpoint: str | None = None
    in_header: bool = False

    @classmethod
    def from_basic(cls, header_value: str, endpoint: str | None = None) -> ClientCredential:
        from urllib.parse import unquote

        try:
            decoded = base64.b64decode(header_value, validate=True).decode()
            client_id, _, secret = decoded.partition(":")
        except (ValueError, UnicodeDecodeError):
            raise InvalidClient(
                Reason.CLIENT_AUTHENTICATION_FAILED, "malformed Basic credentials"
            ) from None
        # RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
        return cls(client_id=unquote(client_id), secret=unquote(secret), endpoint=endpoint)


_CLIENT = select(cast(Table, ClientRow.__table__)).where(
    ClientRow.client_id == bindparam("client_id")
)


_PURGE_ASSERTIONS = delete(cast(Table, UsedAssertionRow.__table__)).where(
    UsedAssertionRow.expires_at < bindparam("cutoff")
)


class Clients(IdPBase):
    """OAuth clients: registration (admin) and authentication (``client_secret_basic``,
    ``private_key_jwt``)."""

    async def register_client(self, body: ClientRegistration) -> ClientCreated:
        client_id = body.client_id or "client-" + secrets.token_hex(8)
        secret: str | None = None
        if body.auth_method == "private_key_jwt":
            if (
                not body.jwks
                or not KeyResolver.from_jwks(body.jwks, CLIENT_ASSERTION_ALGORITHMS).kids()
            ):
                raise InvalidRequest(
                    Reason.INVALID_KEY, "private_key_jwt needs a JWKS with a usable key and kid"
                )
        else:
            secret = secrets.token_urlsafe(32)
        for scope in body.scopes:
            if not scope or " " in scope:
                raise InvalidRequest(Reason.MALFORMED_REQUEST, "scopes must be non-empty tokens")
        row = ClientRow(
            client_id=client_id,
            secret_hash=_hash_secret(secret) if secret else None,
            jwks=body.jwks if body.auth_method == "private_key_jwt" else None,
            scopes=format_scope(body.scopes),
            shim_checksums=list(body.shim_checksums),
            allow_runtime_registration=body.policy() != "pinned",
            agent_policy=body.policy(),
            created_at=self.now(),
            resources=sorted(set(body.resources)) or None,
        )
        try:
            async with self.db.transaction() as session:
                session.add(row)
        except IntegrityError:
            raise InvalidRequest(
                Reason.MALFORMED_REQUEST, f"client {client_id!r} already exists"
            ) from None
        return ClientCreated(
            client_id=client_id,
            client_secret=secret,
            scopes=sorted(body.scopes),
            auth_method=body.auth_method,
            resources=sorted(set(body.resources)),
            agent_policy=body.policy(),
        )

    async def authenticate(self, credential: ClientCredential | None) -> ClientRow:
        """Client authentication: ``client_secret_basic`` or ``private_key_jwt``.

        A refused assertion is :class:`InvalidClientAssertion` (400, no challenge) from
        a form body, :class:`InvalidClientAssertionHeader` from the header; anything
        else refused is :class:`InvalidClient` (401, a ``Basic`` challenge)."""
        try:
            return await self._authenticate(credential)
        except InvalidClient as exc:
            if credential is None or credential.assertion is None:
                raise
            kind = InvalidClientAssertionHeader if credential.in_header else InvalidClientAssertion
            raise kind(exc.reason, exc.description) from None

    async def _authenticate(self, credential: ClientCredential | None) -> ClientRow:
        failed = InvalidClient(Reason.CLIENT_AUTHENTICATION_FAILED, "client authentication failed")
        if credential is None:
            raise InvalidClient(
                Reason.CLIENT_AUTHENTICATION_FAILED, "client authentication is required"
            )
        client_id = credential.client_id
        if credential.assertion is not None and client_id is None:
            try:
                unverified = jwt.decode(credential.assertion, options={"verify_signature": False})
            except (jwt.PyJWTError, ValueError, RecursionError):
                raise failed from None
            issuer = unverified.get("iss") if isinstance(unverified, dict) else None
            client_id = issuer if isinstance(issuer, str) else None
        # Checked before the lookup: a client id is an identifier, and a NUL byte or an
        # unencodable character must not reach the database.
        if not client_id or not is_identifier(client_id):
            raise failed
        row = await self.db.fetch_one(_CLIENT, {"client_id": client_id})
        if row is None:
            raise failed
        client = detached(ClientRow, row)
        if credential.secret is not None:
            expected = client.secret_hash or ""
            if not hmac.compare_digest(_hash_secret(credential.secret), expected):
                raise failed
        elif credential.assertion is not None and client.jwks:
            await self._check_client_assertion(client, credential.assertion, credential.endpoint)
        else:
            raise failed
        if client.revoked_at is not None:
            raise InvalidClient(Reason.CLIENT_REVOKED, "the client has been revoked")
        return client

    async def _check_client_assertion(
        self, client: ClientRow, assertion: str, endpoint: str | None
    ) -> None:
        """RFC 7523 §3: signed by a registered key, ``aud`` the issuer, the token
        endpoint or the endpoint it is presented to, at most
        ``client_assertion_max_lifetime`` long, its ``jti`` never seen (remembered until
        it expires)."""
        resolver = KeyResolver.from_jwks(client.jwks or {}, CLIENT_ASSERTION_ALGORITHMS)
        try:
            kid = jwt.get_unverified_header(assertion).get("kid")
        except (jwt.PyJWTError, ValueError, RecursionError):
            kid = None
        if kid is None and len(resolver) == 1:
            kid = next(iter(resolver.kids()))  # one registered key: no kid needed
        key = resolver.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidClient(Reason.UNKNOWN_KID, "the client assertion key is not registered")
        audiences = {self.settings.issuer, self.settings.token_endpoint}
        if endpoint is not None:
            audiences.add(endpoint)
        claims = decode_client_assertion(
            assertion,
            key,
            client_id=client.client_id,
            audience=audiences,
            max_lifetime=self.settings.client_assertion_max_lifetime,
            now=self.clock(),
        )
        try:
            async with self.db.transaction() as session:
                session.add(
                    UsedAssertionRow(
                        jti=claims.jti, client_id=client.client_id, expires_at=claims.exp
                    )
                )
        except IntegrityError:
            raise InvalidClient(
                Reason.REPLAYED, "the client assertion has been used before"
            ) from None

    async def purge_used_assertions(self) -> int:
        """Forget client-assertion ``jti`` values that can no longer be replayed.

        An assertion is accepted until ``exp`` plus the clock leeway, so its ``jti`` is
        kept that long and deleted after; run periodically (not per request) by the app.
        Returns how many were deleted.
        """
        cutoff = self.now() - DEFAULT_LEEWAY - 1
        async with self.db.transaction() as session:
            result = await execute_core(session, _PURGE_ASSERTIONS, {"cutoff": cutoff})
        return int(result.rowcount or 0)

"""Reading the opaque names of privacy-mode intent tokens at a resource server.

A workflow registered with ``opaque_names: true`` gets tokens whose workflow, step, tool
and agent names are references (:mod:`ajwt_core.opaque`). A :class:`Verifier` given a
``names`` resolver reveals them before the route policy runs, so ``steps=``,
``tools=``, ``agents=`` and ``workflows=`` rules keep working and the handler sees
names; without one, such rules refuse those tokens (a reference matches no name).

- :class:`NameMap`: a local map ``{reference: name}``, e.g. from the IdP's
  ``GET /workflows/{id}/{version}`` answer (``opaque_names``), fetched once;
- :class:`IntrospectionNames`: asks the IdP's RFC 7662 introspection endpoint once per
  token (the verifier caches the result with the token), as a registered client.

>>> import asyncio
>>> from ajwt_core.opaque import hide_names, opaque_ref
>>> from ajwt_core.tokens import (AgentClaim, Confirmation, IntentClaim, IntentTokenClaims,
...     build_act_chain)
>>> claims = IntentTokenClaims(iss="https://idp.example", aud="https://api.example",
...     sub="user:alice", client_id="app", scope="", iat=0, nbf=0, exp=300, jti="j",
...     cnf=Confirmation(jkt="k"), act=build_act_chain(["planner"]),
...     agent=AgentClaim(id="planner", checksum="sha256:00", registration_id="r", version=1),
...     intent=IntentClaim(id="i", initiated_by="user:alice", workflow_id="w",
...         workflow_version=1, workflow_hash="sha256:11", run_id="run", step="plan",
...         tool="read_file", step_sequence_hash="sha256:22"))
>>> hidden = hide_names(claims, lambda kind, name: opaque_ref(b"s" * 32, "w", kind, name))
>>> hidden.intent.step == "plan"
False
>>> names = NameMap({opaque_ref(b"s" * 32, "w", k, n): n for k, n in
...     [("workflow", "w"), ("step", "plan"), ("tool", "read_file"), ("agent", "planner")]})
>>> asyncio.run(names.reveal("token", hidden)) == claims
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import httpx
from pydantic import ValidationError

from ajwt_core._http import AsyncClients
from ajwt_core.errors import InvalidToken, Reason, ServerError
from ajwt_core.opaque import reveal_names
from ajwt_core.tokens import IntentTokenClaims


class NameResolver(Protocol):
    """Turns the opaque names of a verified intent token into names."""

    async def reveal(self, token: str, claims: IntentTokenClaims) -> IntentTokenClaims:
        """``claims`` (verified, from ``token``) with its names revealed, or a refusal."""
        ...


class NameMap:
    """A local ``{reference: name}`` map; a reference it lacks is refused
    (``unknown_opaque_name``)."""

    def __init__(self, names: Mapping[str, str]) -> None:
        self._names = dict(names)

    @classmethod
    def from_workflows(cls, documents: Iterable[Mapping[str, Any]]) -> NameMap:
        """The map of the IdP's ``GET /workflows/{id}/{version}`` answers (their
        ``opaque_names`` members), for the workflows this server serves."""
        names: dict[str, str] = {}
        for document in documents:
            found = document.get("opaque_names")
            if not isinstance(found, Mapping):
                raise ValueError("the workflow document has no 'opaque_names' map")
            names.update({str(ref): str(name) for ref, name in found.items()})
        return cls(names)

    async def reveal(self, token: str, claims: IntentTokenClaims) -> IntentTokenClaims:
        return reveal_names(claims, self._names)


class IntrospectionNames:
    """Reveals names by RFC 7662 introspection at the IdP (``introspection_endpoint`` of
    its metadata), authenticated as the client ``auth`` names (an ``httpx.Auth``, or
    ``(client_id, client_secret)`` for ``client_secret_basic``). The IdP answers only a
    client registered with this server among its ``resources``.

    The IdP unreachable or refusing this server's credentials is 503 (fail closed); a
    token the IdP calls inactive (revoked since) is ``invalid_token`` /
    ``token_inactive``.
    """

    def __init__(
        self,
        introspection_endpoint: str,
        *,
        auth: httpx.Auth | tuple[str, str],
        client: httpx.AsyncClient | None = None,
        timeout: float = 5.0,
    ) -> None:
        self._endpoint = introspection_endpoint
        self._auth = auth
        self._clients = AsyncClients(lambda: client or httpx.AsyncClient(timeout=timeout))

    async def aclose(self) -> None:
        """Close the HTTP client this loop introspects with."""
        await self._clients.aclose()

    async def reveal(self, token: str, claims: IntentTokenClaims) -> IntentTokenClaims:
        if not claims.intent.opaque_names:
            return claims
        answer = await self._introspect(token)
        if answer.get("active") is not True:
            raise InvalidToken(Reason.TOKEN_INACTIVE, "the IdP says the token is not active")
        try:
            named = IntentTokenClaims.model_validate(answer)
        except ValidationError:
            raise ServerError(
                Reason.SERVICE_UNAVAILABLE, "the IdP's introspection answer is not an intent token"
            ) from None
        if named.jti != claims.jti or len(named.chain) != len(claims.chain):
            raise ServerError(
                Reason.SERVICE_UNAVAILABLE, "the IdP's introspection answer is for another token"
            )
        # Each reference of the token, paired with the name the IdP put in its place.
        pairs = [
            (claims.intent.workflow_id, named.intent.workflow_id),
            (claims.intent.step, named.intent.step),
            (claims.agent.id, named.agent.id),
            *zip(claims.chain, named.chain, strict=True),
        ]
        if claims.intent.tool is not None and named.intent.tool is not None:
            pairs.append((claims.intent.tool, named.intent.tool))
        if claims.intent.consulted_by is not None and named.intent.consulted_by is not None:
            pairs.append((claims.intent.consulted_by, named.intent.consulted_by))
        return reveal_names(claims, dict(pairs))

    async def _introspect(self, token: str) -> dict[str, Any]:
        try:
            response = await self._clients.get().post(
                self._endpoint,
                data={"token": token, "token_type_hint": "access_token"},
                auth=self._auth,
            )
        except httpx.HTTPError:
            raise ServerError(
                Reason.SERVICE_UNAVAILABLE, "the IdP's introspection endpoint is unreachable"
            ) from None
        if not response.is_success:
            raise ServerError(
                Reason.SERVICE_UNAVAILABLE,
                f"the IdP's introspection endpoint answered {response.status_code}",
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ServerError(
                Reason.SERVICE_UNAVAILABLE, "the IdP's introspection answer is not JSON"
            )
        return body

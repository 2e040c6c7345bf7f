"""The shim's ``httpx.Auth``: token + fresh DPoP proof on every agent request.

One flow (:meth:`AgentAuth.auth_flow`) for sync and async clients: attach
``Authorization: DPoP <intent token>``, ``DPoP: <proof>`` (with ``ath`` and ``bh``) and
``X-Shim-Checksum``; on a ``use_dpop_nonce`` challenge, sign a new proof with the
server's nonce and retry once. Only obtaining the token differs (it may need the IdP),
so the sync and async entry points fetch it and then run the same flow.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING

import httpx

from ajwt_core.shim.context import origin_of

if TYPE_CHECKING:
    from ajwt_core.shim.client import Binding, Shim

_BINDING = "ajwt.binding"


class AgentAuth(httpx.Auth):
    """Attach the acting agent's intent token and a proof to each request."""

    requires_request_body = True

    def __init__(self, shim: Shim) -> None:
        self._shim = shim
        self._nonces: dict[str, str] = {}

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        request.extensions = {**request.extensions, _BINDING: self._shim.bind(request)}
        yield from super().sync_auth_flow(request)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.extensions = {**request.extensions, _BINDING: await self._shim.abind(request)}
        flow = super().async_auth_flow(request)
        outgoing = await flow.__anext__()
        while True:
            response = yield outgoing
            try:
                outgoing = await flow.asend(response)
            except StopAsyncIteration:
                return

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        binding: Binding = request.extensions[_BINDING]
        url = str(request.url)
        origin = origin_of(url)
        self._sign(request, url, binding, self._nonces.get(origin))
        response = yield request
        nonce = response.headers.get("DPoP-Nonce")
        if nonce:
            self._nonces[origin] = nonce
        challenged = 'error="use_dpop_nonce"' in response.headers.get("WWW-Authenticate", "")
        if response.status_code in (400, 401) and nonce and challenged:
            self._sign(request, url, binding, nonce)
            response = yield request
        challenge = response.headers.get("WWW-Authenticate", "")
        self._shim._tell_answer(binding.context, response.status_code, challenge)

    def _sign(self, request: httpx.Request, url: str, binding: Binding, nonce: str | None) -> None:
        # One header at a time: Headers.update builds a Headers of its own (twice the cost).
        headers = request.headers
        for name, value in binding.headers(request.method, url, request.content, nonce).items():
            headers[name] = value

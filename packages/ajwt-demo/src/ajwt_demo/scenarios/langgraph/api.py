"""HTTP access to the reference resource server, for the tools (sync and async).

Plain tool code: ``httpx`` with the shim's ``httpx.Auth``, which attaches the acting
agent's intent token and a fresh DPoP proof to every request. An async client is kept
per event loop (an ``httpx.AsyncClient`` cannot move between loops).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import httpx


class PatcherApi:
    """The code host and advisory API of DESIGN §11 at ``base_url``."""

    def __init__(self, base_url: str, auth: httpx.Auth, *, timeout: float = 10.0) -> None:
        self.base_url = base_url
        self._auth = auth
        self._timeout = timeout
        self._client = httpx.Client(base_url=base_url, auth=auth, timeout=timeout)
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def _aclient(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            client = httpx.AsyncClient(
                base_url=self.base_url, auth=self._auth, timeout=self._timeout
            )
            self._async[loop] = client
        return client

    @staticmethod
    def _body(response: httpx.Response) -> dict[str, Any]:
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return self._body(self._client.get(path, params=params))

    async def aget(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return self._body(await self._aclient().get(path, params=params))

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._body(self._client.post(path, json=body))

    async def apost(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._body(await self._aclient().post(path, json=body))

    def close(self) -> None:
        self._client.close()

    async def aclose(self) -> None:
        client = self._async.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

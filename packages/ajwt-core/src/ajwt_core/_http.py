"""One ``httpx.AsyncClient`` per event loop (private).

Building a client costs tens of milliseconds (it loads the CA bundle), and a client cannot
move between event loops; so the shim, the JWKS cache and the revocation checker each keep
one per running loop.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

import httpx


class AsyncClients:
    def __init__(self, make: Callable[[], httpx.AsyncClient]) -> None:
        self._make = make
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._make()
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

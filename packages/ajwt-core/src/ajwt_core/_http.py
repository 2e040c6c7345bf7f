"""One ``httpx.AsyncClient`` per event loop, and one TLS context per process (private).

Building a client costs tens of milliseconds (it loads the CA bundle), and a client cannot
move between event loops; so the shim, the JWKS cache and the revocation checker each keep
one per running loop. A client built with :func:`shared_ssl_context` costs about a
millisecond: the CA bundle is loaded once per process, not once per client.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import weakref
from collections.abc import Callable

import httpx


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """The TLS context httpx would build for a client (default CA bundle, ``SSL_CERT_FILE``
    / ``SSL_CERT_DIR`` honoured), built once. An ``SSLContext`` may be shared by clients
    and threads; nothing here changes it after it is built."""
    return httpx.create_ssl_context()


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

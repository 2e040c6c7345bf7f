"""Run an ASGI app (the IdP, a resource server) with uvicorn on 127.0.0.1.

:class:`BackgroundServer` serves in a thread of this process: the embedded demo and the
tests use it. The listening socket is bound before the app is built, so the app can be
told its own URL (the IdP's issuer) with no port race. It serves with the same
protections as ``ajwt idp serve`` (:mod:`ajwt_core.server_limits`): read deadlines, a
bounded request head and a connection cap.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ajwt_core.server_limits import ServerLimits


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class BackgroundServer:
    """uvicorn in a daemon thread; ``url`` is known before the app is created.

    >>> server = BackgroundServer()
    >>> server.url.startswith("http://127.0.0.1:")
    True
    >>> server.close()
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, limits: ServerLimits | None = None
    ) -> None:
        self.socket = bind_socket(host, port)
        self.limits = limits
        bound_host, bound_port = self.socket.getsockname()[:2]
        self.url = f"http://{bound_host}:{bound_port}"
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self, app: Any, *, timeout: float = 20.0, log_level: str = "warning") -> None:
        from ajwt_core._extras import needs_extra

        with needs_extra("idp", "BackgroundServer (uvicorn)"):
            import uvicorn

        from ajwt_core.server_limits import uvicorn_options

        config = uvicorn.Config(
            app,
            log_level=log_level,
            lifespan="on",
            access_log=False,
            **uvicorn_options(self.limits),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server at {self.url} did not start")
            time.sleep(0.01)

    def close(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.socket.close()


@contextlib.contextmanager
def serving(build: Callable[[str], Any], *, port: int = 0) -> Iterator[str]:
    """Serve ``build(url)`` on 127.0.0.1 for the duration of the block; yields the URL."""
    server = BackgroundServer(port=port)
    try:
        server.start(build(server.url))
        yield server.url
    finally:
        server.close()

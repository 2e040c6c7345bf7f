"""Real server processes for the scale-out tests: uvicorn with several workers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """``uvicorn --factory <factory> --workers N`` in its own process group."""

    def __init__(self, factory: str, env: dict[str, str], *, workers: int, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self._command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            factory,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        self._env = os.environ | env
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, ready_path: str, timeout: float = 60.0) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self._command, env=self._env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self._command} exited with {self._process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + ready_path, timeout=1).status_code < 500:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.url} did not become ready")

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown handlers run (a crash)."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def running(
    factory: str,
    env: Callable[[str], dict[str, str]],
    *,
    workers: int,
    ready_path: str,
    port: int | None = None,
) -> Iterator[ServerProcess]:
    """Start the server; ``env(url)`` gives its environment (it may need its own URL)."""
    port = port or free_port()
    server = ServerProcess(factory, env(f"http://127.0.0.1:{port}"), workers=workers, port=port)
    server.start(ready_path)
    try:
        yield server
    finally:
        server.stop()

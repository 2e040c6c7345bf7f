"""Redis for the tests: a server of the test's own that it may kill, restart empty and
pause, and key prefixes of their own on the shared server (never FLUSHDB there).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.scale.procs import free_port
from tests.services import REDIS, REDIS_URL, require


class OwnRedis:
    """``redis-server --save "" --appendonly no`` on a free port of 127.0.0.1: restarting
    it loses everything, as a Redis without persistence does."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            require("redis-server", ("127.0.0.1", 1))  # skips locally, fails in CI
        self._binary = str(binary)
        self._directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - the Redis server binary, our arguments
            [
                self._binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._directory),
            ],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(200):
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        """SIGKILL: whatever it held is gone."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)  # a paused server dies too
            self._process.kill()
            self._process.wait()
            self._process = None

    def restart_empty(self) -> None:
        self.kill()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections are accepted but never answered (a partition)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=2)


@contextlib.contextmanager
def own_redis(directory: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(directory)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@contextlib.contextmanager
def shared_redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis (db 15); its keys are
    deleted afterwards."""
    require("Redis", REDIS)
    import redis

    prefix = f"ajwt-test-{secrets.token_hex(6)}:"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def seed_replay_epoch(client: Any, prefix: str = "ajwt:") -> None:
    """Mark a replay cache as remembering every proof (``replay:since`` = 0), as one that
    has run for longer than proofs live; a fresh one refuses proofs of its first seconds."""
    client.set(f"{prefix}replay:since", 0, nx=True)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        time.sleep(interval)

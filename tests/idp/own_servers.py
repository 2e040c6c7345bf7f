"""PostgreSQL and Redis servers of a test's own, on free ports, that the test may stop and
start again (never the shared ones). A missing binary skips locally and fails in CI."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _require_binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not on PATH"
    if os.environ.get("AJWT_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (AJWT_REQUIRE_SERVICES=1: required in CI)")
    pytest.skip(message)


def _wait_for_port(port: int, up: bool, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                reachable = True
        except OSError:
            reachable = False
        if reachable == up:
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not go {'up' if up else 'down'}")


class OwnPostgres:
    """``initdb`` + ``pg_ctl`` in a temporary directory (as user ``postgres`` when run as
    root, which PostgreSQL refuses to run as)."""

    def __init__(self) -> None:
        self._initdb = _require_binary("initdb")
        self._pg_ctl = _require_binary("pg_ctl")
        self.port = free_port()
        self._root = Path(tempfile.mkdtemp(prefix="ajwt-pg-"))
        self._data = self._root / "data"
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self._root, user="postgres")
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
        self._run(
            self._initdb, "-D", str(self._data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--no-sync", "-N",
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(  # noqa: S603 - fixed arguments
            [*self._as_postgres, *args], check=True, capture_output=True, timeout=60
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self._root} "
            "-c fsync=off -c synchronous_commit=off"
        )
        log = str(self._root / "server.log")
        self._run(self._pg_ctl, "-D", str(self._data), "-o", options, "-l", log, "-w", "start")
        _wait_for_port(self.port, up=True)

    def stop(self) -> None:
        self._run(self._pg_ctl, "-D", str(self._data), "-m", "fast", "-w", "stop")
        _wait_for_port(self.port, up=False)

    def close(self) -> None:
        with suppress(subprocess.SubprocessError, RuntimeError):
            self.stop()
        shutil.rmtree(self._root, ignore_errors=True)


@contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    server = OwnPostgres()
    server.start()
    try:
        yield server
    finally:
        server.close()


class OwnRedis:
    """``redis-server`` without persistence on a free port."""

    def __init__(self) -> None:
        self._binary = _require_binary("redis-server")
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - fixed arguments
            [self._binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_for_port(self.port, up=True)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None
        _wait_for_port(self.port, up=False)


@contextmanager
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()

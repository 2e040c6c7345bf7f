"""Issue 12 §5: the server closes slow and idle connections, bounds the request head,
caps open connections by displacing waiting ones, and still serves legitimate requests.

Short deadlines here; ``tests/scale/test_slow_clients.py`` runs the real defaults under
a few hundred slow connections.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ajwt_core.server import BackgroundServer
from ajwt_core.server_limits import (
    DEFAULT_MAX_CONNECTIONS,
    RESERVED_DESCRIPTORS,
    ServerLimits,
    default_max_connections,
)

LIMITS = ServerLimits(head_timeout=0.5, body_timeout=0.5, max_head_bytes=4096, max_connections=8)


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body, answers with its length."""
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": message["type"] + ".complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = json.dumps({"received": size}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def server() -> Iterator[BackgroundServer]:
    running = BackgroundServer(limits=LIMITS)
    running.start(echo_app)
    yield running
    running.close()


def connect(server: BackgroundServer) -> socket.socket:
    host, port = server.socket.getsockname()[:2]
    sock = socket.create_connection((host, port), timeout=5)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def status_and_body(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def test_a_prompt_request_is_served(server: BackgroundServer) -> None:
    response = httpx.post(server.url + "/", content=b"x" * 10_000)
    assert response.json() == {"received": 10_000}


def test_an_idle_connection_is_closed_without_an_answer(server: BackgroundServer) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        assert read_all(sock) == b""
        assert 0.4 < time.monotonic() - started < 3


def test_a_head_sent_byte_by_byte_is_cut_off_with_408(server: BackgroundServer) -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    with connect(server) as sock:
        started = time.monotonic()
        try:
            for byte in head:  # one byte every 20 ms: each byte is "progress"
                sock.sendall(bytes([byte]))
                time.sleep(0.02)
        except OSError:
            pass  # closed while we were still sending
        raw = read_all(sock)
    assert time.monotonic() - started < 3
    status, body = status_and_body(raw)
    assert status == 408
    assert body["error"] == "invalid_request" and body["ajwt_reason"] == "request_timeout"


def test_a_body_sent_slowly_is_cut_off_with_408(server: BackgroundServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        started = time.monotonic()
        try:
            for _ in range(100):
                sock.sendall(b"x")
                time.sleep(0.02)
        except OSError:
            pass
        raw = read_all(sock)
    assert time.monotonic() - started < 3
    status, body = status_and_body(raw)
    assert status == 408 and body["ajwt_reason"] == "request_timeout"


def test_a_head_over_the_bound_is_refused_with_431(server: BackgroundServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000)
        raw = read_all(sock)
    status, body = status_and_body(raw)
    assert status == 431
    assert body["ajwt_reason"] == "request_too_large"


def test_a_head_just_under_the_bound_with_a_body_in_the_same_packet_is_served(
    server: BackgroundServer,
) -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\nX-Pad: "
    head += b"a" * (4000 - len(head)) + b"\r\n\r\n"
    with connect(server) as sock:
        sock.sendall(head + b"b" * 20_000)  # head and body in one write
        raw = b""
        # The answer may come in several writes (a chunked body after its head).
        deadline = time.monotonic() + 5
        while b"\r\n0\r\n\r\n" not in raw and b'"received"' not in raw.split(b"\r\n\r\n", 1)[-1]:
            assert time.monotonic() < deadline, raw
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
    assert b" 200 " in raw.split(b"\r\n", 1)[0]
    assert b'{"received": 20000}' in raw


def test_keep_alive_requests_each_get_a_fresh_head_deadline(server: BackgroundServer) -> None:
    with httpx.Client(base_url=server.url) as http:
        for _ in range(3):
            assert http.get("/").status_code == 200
            time.sleep(0.3)  # under the 0.5 s head deadline each time


def test_connections_over_the_cap_displace_idle_ones(server: BackgroundServer) -> None:
    idle = [connect(server) for _ in range(8)]
    time.sleep(0.1)
    # The cap is 8: the legitimate request displaces the oldest idle connection.
    assert httpx.get(server.url + "/", timeout=2).json() == {"received": 0}
    assert read_all(idle[0]) == b""  # closed by the server, with no answer
    for sock in idle:
        sock.close()


def test_when_every_connection_is_busy_a_new_one_gets_503(server: BackgroundServer) -> None:
    # Eight requests whose bodies are still coming: being served, never displaced.
    busy = [connect(server) for _ in range(8)]
    for sock in busy:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
    time.sleep(0.1)
    with connect(server) as extra:
        status, body = status_and_body(read_all(extra))
    assert status == 503
    assert body["error"] == "temporarily_unavailable"
    for sock in busy:
        sock.close()


def test_the_default_cap_stays_below_the_descriptor_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda _kind: (256, 4096))
    assert default_max_connections() == 256 - RESERVED_DESCRIPTORS
    monkeypatch.setattr(resource, "getrlimit", lambda _kind: (1 << 20, 1 << 20))
    assert default_max_connections() == DEFAULT_MAX_CONNECTIONS

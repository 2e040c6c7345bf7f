"""The shim's send drivers: an IdP that cannot be reached is an ``AJWTError``
(``idp_unreachable``), never a raw ``httpx`` exception; only a request that never left
is sent again, a bounded number of times."""

from __future__ import annotations

import socket

import httpx
import pytest

from ajwt_core.errors import AJWTError, InvalidGrant, Reason, ServerError
from ajwt_core.shim import Shim

IDP = "http://127.0.0.1:9"
REFUSAL = {"error": "invalid_grant", "error_description": "no", "ajwt_reason": "run_not_found"}


class Script:
    """A transport that fails the first requests as told, then answers a refusal."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.sent = 0

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        if self.failures:
            raise self.failures.pop(0)
        return httpx.Response(400, json=REFUSAL)

    def shim(self) -> Shim:
        shim = Shim(
            IDP,
            "app",
            client_secret="s",
            transport=httpx.MockTransport(self.answer),
            async_transport=httpx.MockTransport(self.answer),
        )
        shim.connect_backoff = (0.0, 0.0)
        return shim


def _start(shim: Shim) -> None:
    shim.start_run("user-token", "wf", version=1)


async def _astart(shim: Shim) -> None:
    await shim.astart_run("user-token", "wf", version=1)


def test_a_connection_refused_three_times_is_idp_unreachable() -> None:
    script = Script(*(httpx.ConnectError("refused") for _ in range(3)))
    with pytest.raises(ServerError) as refused:
        _start(script.shim())
    assert refused.value.reason == Reason.IDP_UNREACHABLE
    assert refused.value.status_code == 503
    assert "3 tries" in refused.value.description
    assert "retrying later is safe" in refused.value.description
    assert script.sent == 3


def test_a_connection_that_fails_twice_is_retried_and_the_answer_stands() -> None:
    script = Script(httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"))
    with pytest.raises(InvalidGrant) as refused:
        _start(script.shim())
    # The third try reached the IdP: its refusal is what the caller sees.
    assert refused.value.reason == Reason.RUN_NOT_FOUND
    assert script.sent == 3


def test_an_http_answer_is_never_retried() -> None:
    script = Script()
    with pytest.raises(InvalidGrant):
        _start(script.shim())
    assert script.sent == 1


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("closed"), httpx.WriteError("reset")],
)
def test_a_request_that_may_have_arrived_is_not_retried(failure: Exception) -> None:
    # A mint the IdP may have recorded (its proof's jti used) must not be sent twice.
    script = Script(failure)
    with pytest.raises(ServerError) as refused:
        _start(script.shim())
    assert refused.value.reason == Reason.IDP_UNREACHABLE
    assert "may have been processed" in refused.value.description
    assert script.sent == 1


async def test_the_async_driver_retries_and_maps_the_same_way() -> None:
    script = Script(*(httpx.ConnectError("refused") for _ in range(3)))
    with pytest.raises(ServerError) as refused:
        await _astart(script.shim())
    assert refused.value.reason == Reason.IDP_UNREACHABLE
    assert script.sent == 3
    timeout = Script(httpx.ReadTimeout("slow"))
    with pytest.raises(ServerError):
        await _astart(timeout.shim())
    assert timeout.sent == 1


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_real_closed_port_raises_an_ajwt_error_not_httpx() -> None:
    shim = Shim(f"http://127.0.0.1:{_closed_port()}", "app", client_secret="s")
    shim.connect_backoff = (0.0, 0.0)
    with pytest.raises(AJWTError) as refused:
        _start(shim)
    assert refused.value.reason == Reason.IDP_UNREACHABLE
    assert not isinstance(refused.value, httpx.HTTPError)
    assert refused.value.__cause__ is None  # no httpx traceback chained in

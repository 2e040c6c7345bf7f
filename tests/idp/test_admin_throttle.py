"""Issue 12 §6: failed administrator authentication is throttled per client address
(429 ``slow_down`` with ``Retry-After``), in bounded memory; the right credential from
an address that is not blocked is still served."""

from __future__ import annotations

import secrets

import httpx
import pytest

from ajwt_core.errors import Reason, SlowDown, error_from_oauth
from ajwt_core.idp import IdPSettings, create_app
from ajwt_core.idp.throttle import FailureThrottle, client_key

ADMIN_TOKEN = secrets.token_urlsafe(32)
BODY = {"subject": "user:alice", "lifetime": 60}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(clock: Clock) -> object:
    settings = IdPSettings(
        issuer="http://idp.test",
        db_url="sqlite+aiosqlite:///:memory:",
        admin_token=ADMIN_TOKEN,
        admin_throttle=FailureThrottle(max_failures=5, window=60, clock=clock),
    )
    return create_app(settings)


async def async_admin_call(app: object, token: str, client: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(client, 40000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://idp.test") as http:
        return await http.post(
            "/admin/users/token", json=BODY, headers={"Authorization": f"Bearer {token}"}
        )


async def test_guessing_the_admin_token_is_blocked_after_five_failures(app: object) -> None:
    for i in range(5):
        response = await async_admin_call(app, f"guess-{i}", "198.51.100.7")
        assert response.status_code == 401
        assert response.json()["ajwt_reason"] == "client_authentication_failed"
    blocked = await async_admin_call(app, "guess-5", "198.51.100.7")
    assert blocked.status_code == 429
    assert blocked.json() == {
        "error": "slow_down",
        "error_description": "too many failed authentication attempts; retry in 60 s",
        "ajwt_reason": "too_many_failed_attempts",
    }
    assert blocked.headers["Retry-After"] == "60"
    assert blocked.headers["Cache-Control"] == "no-store"
    assert isinstance(error_from_oauth(blocked.json(), 429), SlowDown)  # AdminClient's view
    # Blocked means blocked: the right token does not tell a guesser it was right.
    right = await async_admin_call(app, ADMIN_TOKEN, "198.51.100.7")
    assert right.status_code == 429


async def test_another_address_is_not_blocked(app: object) -> None:
    for i in range(6):
        await async_admin_call(app, f"guess-{i}", "198.51.100.7")
    served = await async_admin_call(app, ADMIN_TOKEN, "203.0.113.9")
    assert served.status_code == 200
    assert served.json()["token_type"] == "Bearer"


async def test_the_block_ends_with_its_window(app: object, clock: Clock) -> None:
    for i in range(5):
        await async_admin_call(app, f"guess-{i}", "198.51.100.7")
    assert (await async_admin_call(app, ADMIN_TOKEN, "198.51.100.7")).status_code == 429
    clock.now += 61
    assert (await async_admin_call(app, ADMIN_TOKEN, "198.51.100.7")).status_code == 200


async def test_a_mistyped_token_then_the_right_one_is_served_and_forgiven(app: object) -> None:
    for i in range(4):
        await async_admin_call(app, f"typo-{i}", "198.51.100.7")
    assert (await async_admin_call(app, ADMIN_TOKEN, "198.51.100.7")).status_code == 200
    # The success cleared the count: four more mistakes do not block.
    for i in range(4):
        await async_admin_call(app, f"typo-{i}", "198.51.100.7")
    assert (await async_admin_call(app, ADMIN_TOKEN, "198.51.100.7")).status_code == 200


async def test_one_ipv6_host_cannot_escape_by_changing_its_interface_id(app: object) -> None:
    for i in range(5):
        await async_admin_call(app, f"guess-{i}", f"2001:db8:1:2::{i + 1:x}")
    blocked = await async_admin_call(app, "guess", "2001:db8:1:2:ffff::1")
    assert blocked.status_code == 429
    served = await async_admin_call(app, ADMIN_TOKEN, "2001:db8:1:3::1")  # another /64
    assert served.status_code == 200


def test_the_failure_table_is_bounded() -> None:
    throttle = FailureThrottle(max_failures=1, window=60, max_clients=100)
    for i in range(10_000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle._failures) == 100
    with pytest.raises(SlowDown) as blocked:
        throttle.check("10.0.39.15")  # the most recent are kept
    assert blocked.value.reason == Reason.TOO_MANY_FAILED_ATTEMPTS
    throttle.check("10.0.0.1")  # the oldest were forgotten


def test_client_key_groups_ipv6_by_64_and_unmaps_ipv4() -> None:
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff") == "2001:db8::/64"
    assert client_key("::ffff:192.0.2.1") == client_key("192.0.2.1") == "192.0.2.1"
    assert client_key("testclient") == "testclient"

"""Real PostgreSQL / Redis for the tests that need them: skip locally, fail in CI.

``.ci/run`` sets ``AJWT_REQUIRE_SERVICES=1``: a missing server is then a failure, not a
skip, so CI cannot pass by skipping the scale-out tests.
"""

from __future__ import annotations

import os
import socket

import pytest

POSTGRES = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
POSTGRES_URL = os.environ.get(
    "AJWT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("AJWT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _reachable(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=1):
            return True
    except OSError:
        return False


def require(name: str, address: tuple[str, int]) -> None:
    if _reachable(address):
        return
    message = f"{name} is not reachable on {address[0]}:{address[1]}"
    if os.environ.get("AJWT_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (AJWT_REQUIRE_SERVICES=1: required in CI)")
    pytest.skip(f"{message}; start it to run this test")


def require_heavy() -> None:
    if os.environ.get("AJWT_HEAVY") != "1":
        pytest.skip("heavy load/crash test: set AJWT_HEAVY=1 to run it (CI does)")

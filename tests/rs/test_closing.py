"""A resource server leaves no connection to the IdP open when it stops: the verifier
closes what it holds (JWKS client, revocation feed, replay store, name resolver), and
the ASGI middleware and FastAPI ``install`` close it at lifespan shutdown. A newcomer's
service, stopped cleanly, warned of two unclosed transports (the JWKS and feed clients).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ajwt_core.keys import SigningKeySet
from ajwt_core.rs import AJWTMiddleware, JWKSCache, RevocationFeed, StaticSource, Verifier
from ajwt_core.rs.fastapi import install
from tests.support import AUDIENCE, ISSUER


class _Closable:
    def __init__(self) -> None:
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


class _FailingToClose(_Closable):
    async def aclose(self) -> None:
        raise RuntimeError("the connection was gone already")


def _jwks_transport(keys: SigningKeySet) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(200, json=keys.jwks()))


def test_aclose_closes_the_jwks_client_the_feed_and_the_stores(idp_keys: SigningKeySet) -> None:
    async def main() -> None:
        client = httpx.AsyncClient(transport=_jwks_transport(idp_keys))
        jwks = JWKSCache(ISSUER + "/.well-known/jwks.json", client=client)
        feed = RevocationFeed(StaticSource([]))
        replay, names = _Closable(), _Closable()
        verifier = Verifier(
            issuer=ISSUER,
            audience=AUDIENCE,
            keys=jwks,
            revocation=feed,
            replay=replay,  # type: ignore[arg-type]
            names=names,  # type: ignore[arg-type]
        )
        await jwks.ensure_fresh()  # the client is open now
        await verifier.aclose()
        assert client.is_closed
        assert (replay.closed, names.closed) == (1, 1)

    asyncio.run(main())


def test_a_part_that_fails_to_close_does_not_keep_the_others_open(
    idp_keys: SigningKeySet, caplog: pytest.LogCaptureFixture
) -> None:
    names = _Closable()
    verifier = Verifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=idp_keys.verification_keys(),
        replay=_FailingToClose(),  # type: ignore[arg-type]
        names=names,  # type: ignore[arg-type]
    )
    asyncio.run(verifier.aclose())
    assert names.closed == 1
    assert "could not close _FailingToClose cleanly" in caplog.text


async def _lifespan(app: Any) -> list[str]:
    """Start and stop ``app`` as an ASGI server does; the messages it sent."""
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    return sent


@pytest.mark.parametrize("wiring", ["AJWTMiddleware", "install"])
def test_the_verifier_is_closed_when_the_server_stops_the_app(
    idp_keys: SigningKeySet, wiring: str
) -> None:
    closed: list[str] = []

    class Recording(Verifier):
        async def aclose(self) -> None:
            closed.append("verifier")

    verifier = Recording(issuer=ISSUER, audience=AUDIENCE, keys=idp_keys.verification_keys())
    app = FastAPI()
    served: Any = app
    if wiring == "install":
        install(app, verifier)
    else:
        served = AJWTMiddleware(app, verifier=verifier, routes=[])
    sent = asyncio.run(_lifespan(served))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert closed == ["verifier"]

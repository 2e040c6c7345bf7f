"""The resource server's audit lines: each acceptance and refusal with its fields in the
message (``basicConfig`` prints only that) and in ``extra``; never a token or a proof;
and an ``ajwt.verify`` span with the same fields."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from ajwt_core.dpop import create_proof
from ajwt_core.errors import InvalidDPoPProof, Reason
from ajwt_core.keys import PopKey
from ajwt_core.rs import AJWTMiddleware, RoutePolicy, Verifier
from tests.otel import by_name
from tests.rs.asgi import call
from tests.rs.conftest import Caller
from tests.support import AUDIENCE, NOW

URL = AUDIENCE + "/repos/acme/storefront/files/x?api_key=do-not-log"
AUDIT = "ajwt_core.rs.audit"


async def _verify(verifier: Verifier, headers: dict[str, str]) -> Any:
    return await verifier.verify(
        method="GET", url=URL, headers=headers.items(), body=b"", policy=RoutePolicy()
    )


def _one_line(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    (record,) = [r for r in caplog.records if r.name == AUDIT]
    return record


async def test_an_acceptance_has_its_fields_in_the_message(
    verifier: Verifier, caller: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, AUDIT)
    await _verify(verifier, caller.headers("GET", URL))
    record = _one_line(caplog)
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        "ajwt request accepted: agent=planner step=plan tool=read_file run_id=run-1 "
        "chain=supervisor,planner method=GET "
        "url=https://api.example/repos/acme/storefront/files/x"
    )
    fields = record.ajwt  # type: ignore[attr-defined]
    assert fields["agent"] == "planner" and fields["jti"] == "jti-1"


async def test_a_refusal_names_its_reason_and_the_agent_of_the_signed_token(
    verifier: Verifier, caller: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, AUDIT)
    thief = PopKey.generate()  # a stolen token presented with the thief's own key
    proof = create_proof(thief, "GET", URL, token=caller.token, body=b"", now=NOW)
    with pytest.raises(InvalidDPoPProof) as refused:
        await _verify(verifier, {"authorization": f"DPoP {caller.token}", "dpop": proof})
    assert refused.value.reason == Reason.KEY_NOT_BOUND
    record = _one_line(caplog)
    assert record.levelno == logging.WARNING
    text = record.getMessage()
    assert text.startswith(
        "ajwt request refused: reason=jkt_mismatch error=invalid_dpop_proof agent=planner "
        "step=plan tool=read_file run_id=run-1"
    )
    assert caller.token not in text and proof not in text
    assert "do-not-log" not in text  # the query string stays out
    assert record.ajwt["reason"] == "jkt_mismatch"  # type: ignore[attr-defined]


async def test_a_refusal_is_logged_with_the_audit_logger_at_warning(
    verifier: Verifier, caller: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    # Found by a probe: the verifier's refusals were logged only when INFO was enabled;
    # at WARNING (deploy.md: "Refusals are WARNING") they vanished.
    caplog.set_level(logging.WARNING, AUDIT)
    thief = PopKey.generate()
    proof = create_proof(thief, "GET", URL, token=caller.token, body=b"", now=NOW)
    with pytest.raises(InvalidDPoPProof):
        await _verify(verifier, {"authorization": f"DPoP {caller.token}", "dpop": proof})
    record = _one_line(caplog)
    assert record.levelno == logging.WARNING and "reason=jkt_mismatch" in record.getMessage()


async def test_a_refusal_before_the_token_is_trusted_names_no_agent(
    verifier: Verifier, caller: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, AUDIT)
    forged = caller.token[:-4] + ("AAAA" if not caller.token.endswith("AAAA") else "BBBB")
    headers = {"authorization": f"DPoP {forged}", "dpop": caller.headers("GET", URL)["dpop"]}
    with pytest.raises(Exception, match="signature"):
        await _verify(verifier, headers)
    text = _one_line(caplog).getMessage()
    assert text.startswith("ajwt request refused: reason=bad_signature error=invalid_token ")
    assert "agent=" not in text and forged not in text


async def test_the_middleware_logs_a_refusal_before_verification(
    verifier: Verifier, caller: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, AUDIT)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not reached")

    middleware = AJWTMiddleware(app, verifier=verifier)
    reply = await call(middleware, host="evil.example\nforged")
    assert reply.reason == "host_not_allowed"
    text = _one_line(caplog).getMessage()
    assert text == "ajwt request refused: reason=host_not_allowed error=invalid_request " + (
        "method=GET url=/repos"
    )


async def test_verification_is_a_span_with_the_request_fields(
    verifier: Verifier, caller: Caller, spans: InMemorySpanExporter
) -> None:
    await _verify(verifier, caller.headers("GET", URL))
    with pytest.raises(InvalidDPoPProof):
        await _verify(verifier, caller.headers("GET", AUDIENCE + "/elsewhere"))
    accepted, refused = by_name(spans, "ajwt.verify")
    assert accepted.status.status_code == StatusCode.UNSET
    assert dict(accepted.attributes or {}) == {
        "ajwt.agent": "planner",
        "ajwt.run_id": "run-1",
        "ajwt.step": "plan",
        "ajwt.tool": "read_file",
    }
    assert refused.attributes is not None
    assert refused.attributes["ajwt.reason"] == "url_mismatch"
    assert refused.status.status_code == StatusCode.ERROR

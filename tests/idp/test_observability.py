"""What the IdP tells its operator: /healthz, /readyz, /metrics, audit lines with their
fields in the message (refused mints included), and spans that join the caller's trace."""

from __future__ import annotations

import doctest
import logging
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client.parser import text_string_to_metric_families

import ajwt_core.idp.metrics
import ajwt_core.idp.observer
from ajwt_core.idp import IdPSettings, create_app
from tests.idp.support import ISSUER, IdPHarness, assert_refused
from tests.otel import by_name
from tests.services import REDIS, REDIS_URL, require

AUDIT = "ajwt_core.idp.audit"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN = "b7ad6b7169203331"


def _metrics(harness: IdPHarness) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = harness.request("GET", "/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    values = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def _value(values: dict[Any, float], name: str, **labels: str) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_liveness_calls_no_backend_and_readiness_checks_the_database(
    harness: IdPHarness,
) -> None:
    assert harness.request("GET", "/healthz").json() == {"status": "ok"}
    ready = harness.request("GET", "/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok"}}


async def test_readiness_names_each_failing_backend_and_liveness_stays_up() -> None:
    settings = IdPSettings(
        issuer=ISSUER,
        db_url=f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/none",
        redis_url=f"redis://127.0.0.1:{_closed_port()}/15",
        admin_token="admin-" + secrets.token_hex(16),
    )
    app = create_app(settings)  # no lifespan: the schema cannot be created anyway
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        assert (await http.get("/healthz")).status_code == 200
        ready = await http.get("/readyz")
    assert ready.status_code == 503
    assert ready.headers["retry-after"]
    body = ready.json()
    assert body["failing"] == ["database", "redis"]
    assert body["checks"] == {"database": "unavailable", "redis": "unavailable"}
    assert body["error"] == "temporarily_unavailable"
    assert body["ajwt_reason"] == "service_unavailable"
    assert "127.0.0.1" not in ready.text  # no connection URL in the answer


async def test_readiness_pings_redis_when_configured() -> None:
    require("Redis", REDIS)
    settings = IdPSettings(
        issuer=ISSUER,
        db_url="sqlite+aiosqlite:///:memory:",
        redis_url=REDIS_URL,
        redis_prefix=f"ajwt-test-{secrets.token_hex(6)}:",
        admin_token="admin-" + secrets.token_hex(16),
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        ready = await http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_metrics_count_mints_and_refusals_by_reason(harness: IdPHarness) -> None:
    before = _metrics(harness)
    client = harness.new_client()
    agent = harness.register_agent(client, "supervisor")
    run_id = harness.start_run(client)
    minted = harness.token_request(client, agent, harness.mint_form(agent, run_id))
    assert minted.status_code == 200, minted.text
    forged = harness.mint_form(agent, run_id) | {"agent_checksum": "sha256:" + "0" * 64}
    assert_refused(harness.token_request(client, agent, forged), 400, "checksum_mismatch")
    too_big = harness.request(
        "POST", "/token", headers={"content-length": str(10**9)}, content=b"x"
    )
    assert too_big.status_code == 413
    after = _metrics(harness)

    def grew(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert grew("ajwt_idp_tokens_issued_total", grant="mint") == 1
    assert grew("ajwt_idp_refusals_total", operation="mint", reason="checksum_mismatch") == 1
    assert grew("ajwt_idp_refusals_total", operation="token", reason="request_too_large") == 1
    histogram = "ajwt_idp_request_duration_seconds_count"
    assert grew(histogram, operation="mint", outcome="ok") == 1
    assert grew(histogram, operation="mint", outcome="refused") == 1
    assert grew(histogram, operation="start_run", outcome="ok") == 1


def test_a_refused_mint_is_logged_with_its_fields_and_no_secret(
    harness: IdPHarness, caplog: pytest.LogCaptureFixture
) -> None:
    client = harness.new_client()
    agent = harness.register_agent(client, "supervisor")
    run_id = harness.start_run(client)
    caplog.set_level(logging.INFO, AUDIT)
    minted = harness.token_request(client, agent, harness.mint_form(agent, run_id))
    forged = harness.mint_form(agent, run_id) | {"tool": "delete_repo"}
    refused = harness.token_request(client, agent, forged)
    assert_refused(refused, 400, "tool_not_allowed")
    issued, refusal = (r for r in caplog.records if r.name == AUDIT)
    assert issued.levelno == logging.INFO
    assert issued.getMessage() == (
        f"ajwt mint issued: agent=supervisor run_id={run_id} tool=list_repos"
    )
    assert refusal.levelno == logging.WARNING
    assert refusal.getMessage() == (
        "ajwt mint refused: reason=tool_not_allowed error=unauthorized_client status=400 "
        f"agent=supervisor run_id={run_id} tool=delete_repo"
    )
    assert refusal.ajwt["reason"] == "tool_not_allowed"  # type: ignore[attr-defined]
    for record in (issued, refusal):
        text = record.getMessage() + repr(record.__dict__.get("ajwt"))
        assert client.secret not in text
        assert minted.json()["access_token"] not in text
        assert agent.checksum not in text


def test_the_audit_line_takes_the_form_the_token_endpoint_parsed(
    harness: IdPHarness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The form is parsed once, by the endpoint; the observer parses it itself only when
    # the endpoint refused the request before parsing it (here: a repeated parameter).
    parsed: list[bytes] = []
    parse = ajwt_core.idp.observer._parsed

    def counting(body: bytes) -> dict[str, str]:
        parsed.append(body)
        return parse(body)

    monkeypatch.setattr(ajwt_core.idp.observer, "_parsed", counting)
    client = harness.new_client()
    agent = harness.register_agent(client, "supervisor")
    run_id = harness.start_run(client)
    caplog.set_level(logging.INFO, AUDIT)
    minted = harness.token_request(client, agent, harness.mint_form(agent, run_id))
    assert minted.status_code == 200, minted.text
    assert parsed == []
    form = harness.mint_form(agent, run_id)
    body = urlencode(form).encode() + b"&tool=delete_repo"
    repeated = harness.request(
        "POST",
        "/token",
        headers={**client.basic, "Content-Type": "application/x-www-form-urlencoded"},
        content=body,
    )
    assert_refused(repeated, 400, "malformed_request")
    assert parsed == [body]
    issued, refusal = (r.getMessage() for r in caplog.records if r.name == AUDIT)
    assert issued == f"ajwt mint issued: agent=supervisor run_id={run_id} tool=list_repos"
    assert refusal == (
        "ajwt mint refused: reason=malformed_request error=invalid_request status=400 "
        f"agent=supervisor run_id={run_id}"  # the repeated tool is not one value to show
    )


def test_at_warning_level_refusals_are_logged_and_issued_tokens_are_not(
    harness: IdPHarness, caplog: pytest.LogCaptureFixture
) -> None:
    client = harness.new_client()
    agent = harness.register_agent(client, "supervisor")
    run_id = harness.start_run(client)
    caplog.set_level(logging.WARNING, AUDIT)
    harness.token_request(client, agent, harness.mint_form(agent, run_id))
    forged = harness.mint_form(agent, run_id) | {"tool": "delete_repo"}
    assert_refused(harness.token_request(client, agent, forged), 400, "tool_not_allowed")
    (line,) = [r.getMessage() for r in caplog.records if r.name == AUDIT]
    assert line.startswith("ajwt mint refused: reason=tool_not_allowed")


def test_an_unauthenticated_registration_is_logged_but_a_scanners_404_is_not(
    harness: IdPHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, AUDIT)
    assert harness.request("POST", "/agents", json={}).status_code in (400, 401)
    assert harness.request("GET", "/wp-admin/setup.php").status_code == 404
    (line,) = [r.getMessage() for r in caplog.records if r.name == AUDIT]
    assert line.startswith("ajwt register_agent refused: reason=")


def test_the_idp_span_joins_the_callers_trace(
    harness: IdPHarness, spans: InMemorySpanExporter
) -> None:
    client = harness.new_client()
    agent = harness.register_agent(client, "supervisor")
    run_id = harness.start_run(client)
    form = harness.mint_form(agent, run_id) | {"tool": "delete_repo"}
    body = httpx.QueryParams(form).__str__().encode()
    headers = {
        **client.basic,
        "DPoP": harness.proof(agent.key, "/token", body=body),
        "Content-Type": "application/x-www-form-urlencoded",
        "traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01",
    }
    assert harness.request("POST", "/token", headers=headers, content=body).status_code == 400
    (mint,) = by_name(spans, "ajwt.idp.mint")
    # In the caller's trace: under its span, or under the server span made from it
    # (recent FastAPI versions open one themselves).
    assert format(mint.context.trace_id, "032x") == TRACE_ID
    parents = {s.context.span_id: s.parent for s in spans.get_finished_spans()}
    parent = mint.parent
    while parent is not None and not parent.is_remote:
        parent = parents[parent.span_id]
    assert parent is not None and format(parent.span_id, "016x") == PARENT_SPAN
    assert mint.attributes is not None
    assert mint.attributes["ajwt.agent"] == "supervisor"
    assert mint.attributes["ajwt.run_id"] == run_id
    assert mint.attributes["ajwt.reason"] == "tool_not_allowed"
    assert mint.status.status_code == StatusCode.ERROR


def test_several_workers_sum_their_metrics_in_multiprocess_mode(tmp_path: Path) -> None:
    # Each "worker" is a process of its own (the mode is chosen when prometheus_client is
    # imported); the last one's /metrics answers for all of them.
    worker = (
        "from ajwt_core.idp.metrics import IdPMetrics\n"
        "m = IdPMetrics()\n"
        "m.observe('mint', 200, None, 0.01)\n"
        "m.observe('mint', 400, 'replayed', 0.01)\n"
        "print(m.render()[0].decode())\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    answers = [
        subprocess.run(  # noqa: S603 - our own interpreter, fixed code
            [sys.executable, "-c", worker], env=env, capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    ]
    assert 'ajwt_idp_tokens_issued_total{grant="mint"} 1.0' in answers[0]
    assert 'ajwt_idp_tokens_issued_total{grant="mint"} 2.0' in answers[1]
    assert 'ajwt_idp_refusals_total{operation="mint",reason="replayed"} 2.0' in answers[1]


def test_module_doctests_pass() -> None:
    for module in (ajwt_core.idp.metrics, ajwt_core.idp.observer):
        assert doctest.testmod(module).failed == 0, module.__name__

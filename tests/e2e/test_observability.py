"""Spans end to end over real HTTP: a framework's span holds the tool call, the tool call
holds its mint, and the IdP's span joins the same trace; hand-offs and completions have
theirs; an IdP that goes away is a tool refusal with ``idp_unreachable``."""

from __future__ import annotations

import socket

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from ajwt_core.errors import AJWTError, Reason, ServerError
from ajwt_demo.stack import Stack
from tests.otel import by_name


def test_a_tool_call_nests_its_mint_under_the_frameworks_span(
    stack: Stack, spans: InMemorySpanExporter
) -> None:
    shim = stack.shim(default_audience=stack.rs_url)
    run = stack.start_run(shim)
    with trace.get_tracer("framework").start_as_current_span("framework.tool"):
        context = shim.prepare(shim.context("supervisor", tool="list_repos", run=run))
        with (
            httpx.Client(base_url=stack.rs_url, auth=shim.auth()) as http,
            shim.acting("supervisor", tool="list_repos", run=run),
        ):
            assert http.get("/repos").status_code == 200
        shim.tool_finished(context)
    shim.complete("supervisor", run=run)
    shim.handoff("supervisor", "planner", "plan", run=run)
    (framework,) = by_name(spans, "framework.tool")
    (tool_call,) = by_name(spans, "ajwt.tool_call")
    mints = by_name(spans, "ajwt.mint")
    assert tool_call.parent is not None and tool_call.parent.span_id == framework.context.span_id
    assert dict(tool_call.attributes or {}) == {
        "ajwt.agent": "supervisor",
        "ajwt.run_id": run.run_id,
        "ajwt.tool": "list_repos",
        "ajwt.step": "triage",
    }
    first = mints[0]
    assert first.parent is not None and first.parent.span_id == tool_call.context.span_id
    # The IdP's span is in the same trace, under the shim's mint.
    served = [
        s for s in by_name(spans, "ajwt.idp.mint") if s.context.trace_id == first.context.trace_id
    ]
    assert served
    (verify,) = by_name(spans, "ajwt.verify")
    assert verify.attributes is not None and verify.attributes["ajwt.tool"] == "list_repos"
    (complete,) = by_name(spans, "ajwt.complete")
    assert complete.attributes is not None and complete.attributes["ajwt.step"] == "triage"
    (exchange,) = by_name(spans, "ajwt.exchange")
    assert exchange.attributes is not None
    assert (exchange.attributes["ajwt.agent"], exchange.attributes["ajwt.step"]) == (
        "planner",
        "plan",
    )


def test_a_paused_tool_call_ends_its_span_unfailed_and_marked(
    stack: Stack, spans: InMemorySpanExporter
) -> None:
    shim = stack.shim(default_audience=stack.rs_url)
    run = stack.start_run(shim)
    kinds: list[str] = []
    shim.subscribe(lambda event: kinds.append(event.kind))
    context = shim.prepare(shim.context("supervisor", tool="list_repos", run=run))
    shim.tool_paused(context)  # a person is asked; the call runs again on resume
    (tool_call,) = by_name(spans, "ajwt.tool_call")
    assert tool_call.end_time is not None
    assert tool_call.status.status_code != StatusCode.ERROR
    assert (tool_call.attributes or {})["ajwt.paused"] is True
    assert kinds[-1] == "tool_paused"


def test_a_refused_tool_call_ends_its_span_with_the_reason(
    stack: Stack, spans: InMemorySpanExporter
) -> None:
    shim = stack.shim(default_audience=stack.rs_url)
    run = stack.start_run(shim)
    shim.local_checks = False  # so the IdP refuses, not the shim
    with pytest.raises(AJWTError) as refused:
        shim.prepare(shim.context("planner", step="plan", tool="read_file", run=run))
    reason = refused.value.reason
    (tool_call,) = by_name(spans, "ajwt.tool_call")
    (mint,) = by_name(spans, "ajwt.mint")
    assert tool_call.status.status_code == StatusCode.ERROR
    assert tool_call.attributes is not None and tool_call.attributes["ajwt.reason"] == reason
    assert mint.attributes is not None and mint.attributes["ajwt.reason"] == reason


def test_an_idp_gone_away_is_a_tool_refusal_not_an_httpx_error(stack: Stack) -> None:
    shim = stack.shim(default_audience=stack.rs_url)
    run = stack.start_run(shim)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    shim.idp_url = f"http://127.0.0.1:{closed}"  # the IdP is gone
    shim.connect_backoff = (0.0, 0.0)
    events: list[tuple[str, object]] = []
    shim.subscribe(lambda e: events.append((e.kind, e.detail.get("reason"))))
    with pytest.raises(ServerError) as refused:
        shim.prepare(shim.context("supervisor", tool="list_repos", run=run))
    assert refused.value.reason == Reason.IDP_UNREACHABLE
    assert events == [("tool_refused", "idp_unreachable")]

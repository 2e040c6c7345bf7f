"""``ajwt_core.telemetry``: spans nest under the caller's, refusals carry their reason,
and nothing is recorded or costs more than a check without a tracer provider."""

from __future__ import annotations

import doctest

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import ajwt_core.logfields
import ajwt_core.telemetry
from ajwt_core import telemetry
from ajwt_core.errors import InvalidGrant, Reason
from tests.otel import by_name


def test_a_span_is_a_child_of_the_callers_current_span(spans: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("framework")
    with (
        tracer.start_as_current_span("langgraph.node"),
        telemetry.span(telemetry.MINT, agent="planner", step="plan", tool="read_file", run="run-1"),
    ):
        pass
    (node,) = by_name(spans, "langgraph.node")
    (mint,) = by_name(spans, telemetry.MINT)
    assert mint.parent is not None and mint.parent.span_id == node.context.span_id
    assert dict(mint.attributes or {}) == {
        "ajwt.agent": "planner",
        "ajwt.step": "plan",
        "ajwt.tool": "read_file",
        "ajwt.run_id": "run-1",
    }
    assert mint.status.status_code == StatusCode.UNSET


def test_a_refusal_marks_the_span_with_its_reason(spans: InMemorySpanExporter) -> None:
    with pytest.raises(InvalidGrant), telemetry.span(telemetry.MINT, agent="planner"):
        raise InvalidGrant(Reason.CHECKSUM_MISMATCH, "the agent changed")
    (mint,) = by_name(spans, telemetry.MINT)
    assert mint.attributes is not None
    assert mint.attributes["ajwt.reason"] == "checksum_mismatch"
    assert mint.attributes["ajwt.error"] == "invalid_grant"
    assert mint.status.status_code == StatusCode.ERROR
    assert mint.status.description == "checksum_mismatch: the agent changed"


def test_another_exception_keeps_its_message_out_of_the_span(
    spans: InMemorySpanExporter,
) -> None:
    with pytest.raises(ValueError, match="secret"), telemetry.span(telemetry.MINT):
        raise ValueError("secret=hunter2")
    (mint,) = by_name(spans, telemetry.MINT)
    assert mint.status.description == "ValueError"
    assert not mint.events  # no exception event with the message


def test_a_started_span_is_made_current_only_where_used(spans: InMemorySpanExporter) -> None:
    outer = telemetry.start(telemetry.TOOL_CALL, agent="planner")
    with telemetry.use(outer), telemetry.span(telemetry.MINT):
        pass
    with telemetry.span(telemetry.COMPLETE):
        pass  # not under the tool call: it is no longer current
    telemetry.finish(outer, "the tool failed")
    (tool,) = by_name(spans, telemetry.TOOL_CALL)
    (mint,) = by_name(spans, telemetry.MINT)
    (complete,) = by_name(spans, telemetry.COMPLETE)
    assert mint.parent is not None and mint.parent.span_id == tool.context.span_id
    assert complete.parent is None
    assert tool.status.status_code == StatusCode.ERROR
    assert tool.status.description == "failed"


def test_trace_context_goes_out_in_traceparent_and_comes_back(
    spans: InMemorySpanExporter,
) -> None:
    headers: dict[str, str] = {}
    with telemetry.span(telemetry.MINT) as mint:
        telemetry.inject(headers)
        # Inside a current span the server's own span is the parent: nothing extracted.
        assert telemetry.extract(headers) is None
    assert headers["traceparent"].split("-")[2] == format(
        mint.get_span_context().span_id,  # type: ignore[attr-defined]
        "016x",
    )
    with telemetry.span("ajwt.idp.mint", parent=telemetry.extract(headers)):
        pass
    (served,) = by_name(spans, "ajwt.idp.mint")
    assert served.parent is not None
    assert served.parent.span_id == mint.get_span_context().span_id  # type: ignore[attr-defined]


def test_without_a_listener_nothing_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "enabled", lambda: False)
    with telemetry.span(telemetry.MINT, agent="planner") as span:
        span.set_attribute("ajwt.run_id", "r")
    assert span is telemetry.NO_SPAN
    assert not span.is_recording()
    headers: dict[str, str] = {}
    telemetry.inject(headers)
    assert headers == {}


def test_module_doctests_pass() -> None:
    for module in (ajwt_core.telemetry, ajwt_core.logfields):
        assert doctest.testmod(module).failed == 0, module.__name__

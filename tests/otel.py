"""One OpenTelemetry SDK tracer provider for the test session, whose spans reach an
in-memory exporter only while a test listens (the ``spans`` fixture of conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from unittest import mock

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class _Listening(SpanProcessor):
    def __init__(self) -> None:
        self.exporter: InMemorySpanExporter | None = None

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self.exporter is not None:
            self.exporter.export([span])


_LISTENING = _Listening()
_INSTALLED: list[TracerProvider] = []


def _install() -> None:
    if _INSTALLED:
        return
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # else a framework has set one already
        # The CrewAI reference app opts out of telemetry with OTEL_SDK_DISABLED for the
        # whole process; the SDK reads it once, when the provider is built.
        with mock.patch.dict(os.environ):
            os.environ.pop("OTEL_SDK_DISABLED", None)
            provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(_LISTENING)
    _INSTALLED.append(provider)


def listen() -> Iterator[InMemorySpanExporter]:
    """The spans ended while the generator is suspended."""
    _install()
    exporter = InMemorySpanExporter()
    _LISTENING.exporter = exporter
    yield exporter
    _LISTENING.exporter = None


def by_name(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]

"""OpenTelemetry spans for what A-JWT does: mints, exchanges, completions, RS checks and
tool calls (extra ``otel``: ``opentelemetry-api`` only; the application picks the SDK and
the exporter).

Each span is a child of the caller's current span, so it nests under the agent
framework's own trace (a LangGraph node, a CrewAI task…). The attributes are the
protocol's, never a token, a proof or a secret:

========================  =====================================================
``ajwt.agent``            the acting agent's id
``ajwt.step``             the workflow step
``ajwt.tool``             the tool (absent for a step token)
``ajwt.run_id``           the run
``ajwt.reason``           on a refusal: the :class:`~ajwt_core.errors.Reason`
``ajwt.error``            on a refusal: the OAuth error code
========================  =====================================================

Without ``opentelemetry-api``, or with no tracer provider installed, every function here
is a no-op that costs one ``isinstance`` check.

>>> with span("ajwt.mint", agent="planner", step="plan", tool="read_file") as current:
...     current.set_attribute("ajwt.run_id", "run-1")
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, Final, Protocol

from ajwt_core.errors import AJWTError

try:
    # Imported by their full names: the top-level ``opentelemetry`` package is shared
    # by the API, the SDK and the exporters; these modules are the API's.
    import opentelemetry.propagate as propagate
    import opentelemetry.trace as trace
    from opentelemetry.trace import Status, StatusCode
except ImportError:  # pragma: no cover - the extra is installed in the workspace
    trace = None  # type: ignore[assignment]

TRACER_NAME: Final = "ajwt_core"

AGENT: Final = "ajwt.agent"
STEP: Final = "ajwt.step"
TOOL: Final = "ajwt.tool"
RUN: Final = "ajwt.run_id"
REASON: Final = "ajwt.reason"
ERROR: Final = "ajwt.error"

#: Span names, one per operation.
MINT: Final = "ajwt.mint"
EXCHANGE: Final = "ajwt.exchange"
COMPLETE: Final = "ajwt.complete"
VERIFY: Final = "ajwt.verify"
TOOL_CALL: Final = "ajwt.tool_call"


class SpanLike(Protocol):
    """What A-JWT calls on a span: an OpenTelemetry ``Span`` or the no-op stand-in."""

    def set_attribute(self, key: str, value: Any) -> None: ...

    def is_recording(self) -> bool: ...

    def end(self, end_time: int | None = None) -> None: ...

    def update_name(self, name: str) -> None: ...


class _NoSpan:
    """The span of a process without a tracer: accepts everything, records nothing."""

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def is_recording(self) -> bool:
        return False

    def end(self, end_time: int | None = None) -> None:
        pass

    def update_name(self, name: str) -> None:
        pass


NO_SPAN: Final = _NoSpan()


_PROVIDER_SEEN = False
# ``get_tracer_provider()`` looks up an environment variable on every call while no
# provider is set (about 0.8 µs, on every request of a resource server without tracing).
# The API keeps the provider it was given in ``_TRACER_PROVIDER``; while that is None
# and no provider is named in the environment, there is none. Should a later API
# rename it, every call asks ``get_tracer_provider()`` again, as before.
_ENVIRONMENT_PROVIDER: Final = "OTEL_PYTHON_TRACER_PROVIDER"
_UNKNOWN: Final = object()


def enabled() -> bool:
    """Whether spans are recorded: the API is installed and a tracer provider is set.

    Once a provider was seen the answer stays yes without asking again (OpenTelemetry
    sets the global provider once; a span of a provider reset since records nothing)."""
    global _PROVIDER_SEEN
    if _PROVIDER_SEEN:
        return True
    if trace is None:
        return False
    if getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None and not _provider_in_environment():
        return False
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return False
    _PROVIDER_SEEN = True
    return True


@functools.cache
def _provider_in_environment() -> bool:
    # Read once: OpenTelemetry's environment configures a process when it starts.
    return _ENVIRONMENT_PROVIDER in os.environ


def _attributes(
    agent: str | None, step: str | None, tool: str | None, run: str | None, extra: Mapping[str, Any]
) -> dict[str, Any]:
    named = {AGENT: agent, STEP: step, TOOL: tool, RUN: run, **extra}
    return {key: value for key, value in named.items() if value is not None}


def start(
    name: str,
    *,
    agent: str | None = None,
    step: str | None = None,
    tool: str | None = None,
    run: str | None = None,
    parent: Any = None,
    **extra: Any,
) -> SpanLike:
    """A started span (a child of the current one, or of ``parent``, a context from
    :func:`extract`), not made current: end it with :func:`finish`."""
    if not enabled():
        return NO_SPAN
    tracer = trace.get_tracer(TRACER_NAME)
    return tracer.start_span(
        name,
        context=parent,
        attributes=_attributes(agent, step, tool, run, extra),
        record_exception=False,
        set_status_on_exception=False,
    )


def refused(target: SpanLike, exc: BaseException | str) -> None:
    """Mark ``target`` failed: the reason and error code of an A-JWT refusal, else the
    exception's type (its message, like a tool's error text, may quote data, so it is
    left out)."""
    if not target.is_recording() or trace is None:
        return
    if isinstance(exc, AJWTError):
        target.set_attribute(REASON, exc.reason.value)
        target.set_attribute(ERROR, exc.error)
        description = f"{exc.reason.value}: {exc.description}"
    else:
        description = type(exc).__name__ if isinstance(exc, BaseException) else "failed"
    failed(target, description)


def failed(target: SpanLike, description: str) -> None:
    """Set ``target``'s status to error, with ``description``."""
    if target.is_recording() and trace is not None:
        target.set_status(Status(StatusCode.ERROR, description))  # type: ignore[attr-defined]


def finish(target: SpanLike, exc: BaseException | str | None = None) -> None:
    """End a span from :func:`start`, failed if ``exc`` is given."""
    if exc is not None:
        refused(target, exc)
    target.end()


@contextlib.contextmanager
def use(target: SpanLike) -> Iterator[SpanLike]:
    """Make a started span current for a block, without ending it."""
    if isinstance(target, _NoSpan) or trace is None:
        yield target
        return
    with trace.use_span(
        target,  # type: ignore[arg-type]
        end_on_exit=False,
        record_exception=False,
        set_status_on_exception=False,
    ):
        yield target


@contextlib.contextmanager
def span(
    name: str,
    *,
    agent: str | None = None,
    step: str | None = None,
    tool: str | None = None,
    run: str | None = None,
    parent: Any = None,
    **extra: Any,
) -> Iterator[SpanLike]:
    """A span, current for the block; an exception leaving the block marks it failed
    (with the A-JWT reason) and goes on."""
    target = start(name, agent=agent, step=step, tool=tool, run=run, parent=parent, **extra)
    if target is NO_SPAN:
        yield target
        return
    try:
        with use(target):
            yield target
    except BaseException as exc:
        if not isinstance(exc, GeneratorExit):
            refused(target, exc)
        raise
    finally:
        target.end()


def inject(headers: MutableMapping[str, str]) -> None:
    """Put the current trace context in outgoing ``headers`` (W3C ``traceparent``), so
    the IdP's span joins the caller's trace."""
    if enabled():
        propagate.inject(headers)


def extract(headers: Mapping[str, str]) -> Any:
    """The trace context an incoming request carries, when no span is current here (an
    instrumented server has already made its own span current: that one is the parent)."""
    if not enabled() or trace.get_current_span().get_span_context().is_valid:
        return None
    return propagate.extract(headers)


__all__ = [
    "COMPLETE",
    "EXCHANGE",
    "MINT",
    "TOOL_CALL",
    "VERIFY",
    "SpanLike",
    "enabled",
    "extract",
    "failed",
    "finish",
    "inject",
    "refused",
    "span",
    "start",
    "use",
]

"""What the IdP tells its operator about each request (pure ASGI, the outermost layer).

For every answer, whoever produced it (a route, the size limits, the error boundary's
503): the Prometheus metrics of :mod:`ajwt_core.idp.metrics`; an audit line on
``ajwt_core.idp.audit`` with the fields in the message (refusals at WARNING, issued
tokens and completions at INFO; never a token, an assertion, a proof or a secret); and
for mints, exchanges and completions an OpenTelemetry span (``ajwt.idp.mint``…), a
child of the caller's span when the request carries a ``traceparent``.

The operation and its fields are read from the request itself (the path, and the
``/token`` form as it streams past, bounded), and the refusal's reason from the OAuth
error body of the answer, so no route needs to report anything.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Final
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ajwt_core import telemetry
from ajwt_core.idp.grants import AGENT_CHECKSUM_GRANT, TOKEN_EXCHANGE_GRANT
from ajwt_core.idp.metrics import IdPMetrics
from ajwt_core.logfields import message

audit = logging.getLogger("ajwt_core.idp.audit")

#: The most of a ``/token`` body read for its fields, and of an error answer for its
#: reason (both are far smaller; the size limits refuse larger bodies anyway).
_MAX_FORM_BYTES: Final = 64 * 1024
_MAX_ERROR_BYTES: Final = 8 * 1024
#: The form fields that may be logged: identifiers, never credentials or tokens.
_FORM_FIELDS: Final = (
    ("agent_id", "agent"),
    ("run_id", "run_id"),
    ("step", "step"),
    ("tool", "tool"),
    ("client_id", "client_id"),
)
#: Where the token endpoint leaves the loggable fields of the form it parsed
#: (:func:`loggable`), so that the audit line need not parse the body again.
FORM_SCOPE_KEY: Final = "ajwt.loggable_form"
_GRANTS: Final = {
    AGENT_CHECKSUM_GRANT: "mint",
    TOKEN_EXCHANGE_GRANT: "exchange",
}
_LOGGABLE: Final = ("grant_type", *(name for name, _ in _FORM_FIELDS))
_COMPLETE: Final = re.compile(r"^/runs/([^/]+)/steps/([^/]+)/complete$")
#: The operations whose acceptance is logged, and that get a span.
_AUDITED: Final = frozenset({"mint", "exchange", "token", "complete"})
#: Answers not worth a refusal line: a scanner's 404 on a path the IdP does not serve.
_QUIET: Final = frozenset({"other", "unknown", "health", "discovery"})


def operation_of(method: str, path: str) -> str:
    """The operation label of a request, from its method and path.

    >>> operation_of("POST", "/runs/run-1/steps/plan/complete")
    'complete'
    >>> operation_of("GET", "/no/such/thing")
    'other'
    """
    if path == "/token":
        return "token"
    if _COMPLETE.match(path):
        return "complete"
    first, _, rest = path.lstrip("/").partition("/")
    if first == "agents":
        return "rotate_key" if rest.endswith("/rotate") else "register_agent"
    if first == "runs":
        if not rest:
            return "start_run"
        return "status" if rest.endswith("/status") else "ledger"
    simple = {
        "revoke": "revoke",
        "admin": "admin",
        "workflows": "workflow",
        ".well-known": "discovery",
        "healthz": "health",
        "readyz": "health",
        "metrics": "health",
    }
    return simple.get(first, "other")


class Observer:
    """Metrics, audit lines and spans for every request of the IdP application."""

    def __init__(self, app: ASGIApp, metrics: IdPMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        operation = operation_of(scope["method"], path)
        fields: dict[str, Any] = {}
        if operation == "complete" and (found := _COMPLETE.match(path)):
            fields = {"run_id": found[1], "step": found[2]}
        form = bytearray() if operation == "token" else None
        status = 500
        error = bytearray()

        async def observed_receive() -> Message:
            message_ = await receive()
            if form is not None and message_["type"] == "http.request":
                room = _MAX_FORM_BYTES - len(form)
                if room > 0:
                    form.extend(message_.get("body", b"")[:room])
            return message_

        async def observed_send(message_: Message) -> None:
            nonlocal status
            if message_["type"] == "http.response.start":
                status = message_["status"]
            elif status >= 400 and len(error) < _MAX_ERROR_BYTES:
                error.extend(message_.get("body", b"")[: _MAX_ERROR_BYTES - len(error)])
            await send(message_)

        span: telemetry.SpanLike = telemetry.NO_SPAN
        if operation in _AUDITED and telemetry.enabled():
            span = telemetry.start(
                f"ajwt.idp.{operation}", parent=telemetry.extract(_headers(scope))
            )
        try:
            with telemetry.use(span):
                await self.app(scope, observed_receive, observed_send)
        finally:
            if form is not None:
                parsed = scope.get(FORM_SCOPE_KEY)
                operation, fields = _token_fields(
                    parsed if isinstance(parsed, dict) else _parsed(bytes(form))
                )
            reason, code = _reason_of(bytes(error)) if status >= 400 else (None, None)
            self.metrics.observe(operation, status, reason, time.perf_counter() - started)
            _close_span(span, operation, fields, reason, code, status)
            # Refusals are WARNING: an operator at the usual WARNING level still sees them.
            if audit.isEnabledFor(logging.WARNING if status >= 400 else logging.INFO):
                _log(operation, status, reason, code, fields)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


def loggable(form: dict[str, str]) -> dict[str, str]:
    """The fields of a token request that its audit line may show: the grant type and
    identifiers, never credentials or tokens.

    >>> loggable({"grant_type": "g", "agent_id": "planner", "client_secret": "s3cret"})
    {'grant_type': 'g', 'agent_id': 'planner'}
    """
    return {name: form[name] for name in _LOGGABLE if name in form}


def _parsed(body: bytes) -> dict[str, str]:
    """The single-valued fields of a form the application did not parse (it refused the
    request first); nothing if it cannot be parsed."""
    try:
        parsed = parse_qs(body.decode("utf-8"), max_num_fields=64)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[0] for name, values in parsed.items() if len(values) == 1}


def _token_fields(form: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """The grant (``mint``, ``exchange``, else ``token``) and the loggable fields."""
    operation = _GRANTS.get(form.get("grant_type", ""), "token")
    return operation, {key: form.get(name) for name, key in _FORM_FIELDS}


def _reason_of(body: bytes) -> tuple[str | None, str | None]:
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(answer, dict):
        return None, None
    reason, code = answer.get("ajwt_reason"), answer.get("error")
    return (
        reason if isinstance(reason, str) else None,
        code if isinstance(code, str) else None,
    )


def _close_span(
    span: telemetry.SpanLike,
    operation: str,
    fields: dict[str, Any],
    reason: str | None,
    code: str | None,
    status: int,
) -> None:
    if not span.is_recording():
        span.end()
        return
    span.update_name(f"ajwt.idp.{operation}")
    for key, attribute in (
        ("agent", telemetry.AGENT),
        ("step", telemetry.STEP),
        ("tool", telemetry.TOOL),
        ("run_id", telemetry.RUN),
    ):
        if fields.get(key) is not None:
            span.set_attribute(attribute, fields[key])
    span.set_attribute("http.response.status_code", status)
    if status >= 400:
        if reason is not None:
            span.set_attribute(telemetry.REASON, reason)
        if code is not None:
            span.set_attribute(telemetry.ERROR, code)
        telemetry.failed(span, reason or f"HTTP {status}")
    span.end()


def _log(
    operation: str, status: int, reason: str | None, code: str | None, fields: dict[str, Any]
) -> None:
    if status < 400:
        if operation in _AUDITED:
            done = "completed" if operation == "complete" else "issued"
            audit.info(message(f"ajwt {operation} {done}", fields), extra={"ajwt": fields})
        return
    if operation in _QUIET:
        return
    described = {"reason": reason, "error": code, "status": status, **fields}
    outcome = "refused" if status < 500 else "failed"
    audit.warning(
        message(f"ajwt {operation} {outcome}", described),
        extra={"ajwt": {"operation": operation, **described}},
    )


__all__ = ["Observer", "operation_of"]

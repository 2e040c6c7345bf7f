"""The IdP's Prometheus metrics, served at ``/metrics`` (``prometheus-client``).

Three families, their labels bounded (an operation is one of :data:`OPERATIONS`, a
reason one of :class:`~ajwt_core.errors.Reason` or ``other``):

``ajwt_idp_tokens_issued_total{grant}``
    tokens issued: ``grant`` is ``mint`` (agent_checksum) or ``exchange``.
``ajwt_idp_refusals_total{operation, reason}``
    requests answered with an error (4xx and 5xx), by the A-JWT reason of the answer.
``ajwt_idp_request_duration_seconds{operation, outcome}``
    latency histogram; ``outcome`` is ``ok``, ``refused`` (4xx) or ``error`` (5xx).

Each application has its own registry, so several IdPs in one process do not collide.
With several workers (``ajwt idp serve --workers N``), set ``PROMETHEUS_MULTIPROC_DIR``
to an empty directory writable by every worker, before they start: each worker then
writes its values there and any worker's ``/metrics`` answers the sum of all of them
(prometheus-client's multiprocess mode). Without it, each worker answers for itself.

>>> metrics = IdPMetrics()
>>> metrics.observe("mint", 200, None, 0.004)
>>> metrics.observe("mint", 400, "checksum_mismatch", 0.002)
>>> body, content_type = metrics.render()
>>> 'ajwt_idp_refusals_total{operation="mint",reason="checksum_mismatch"} 1.0' in body.decode()
True
"""

from __future__ import annotations

import os
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from ajwt_core.errors import Reason

#: The operation label's values (``other``: any other route, ``unknown``: no route).
OPERATIONS: Final = frozenset(
    {
        "mint",
        "exchange",
        "token",
        "complete",
        "register_agent",
        "rotate_key",
        "start_run",
        "revoke",
        "ledger",
        "status",
        "workflow",
        "admin",
        "discovery",
        "health",
        "other",
        "unknown",
    }
)
#: Latency buckets (seconds): a mint takes milliseconds; a slow database, seconds.
BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_REASONS: Final = frozenset(reason.value for reason in Reason)
_ISSUED: Final = {"mint", "exchange"}


class IdPMetrics:
    """The IdP's counters and histogram, and their text exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.issued = Counter(
            "ajwt_idp_tokens_issued",
            "Tokens issued, by grant (mint: agent_checksum, exchange: token exchange).",
            ["grant"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "ajwt_idp_refusals",
            "Requests answered with an error, by operation and A-JWT reason.",
            ["operation", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ajwt_idp_request_duration_seconds",
            "Time to answer a request, by operation and outcome (ok, refused, error).",
            ["operation", "outcome"],
            buckets=BUCKETS,
            registry=self.registry,
        )

    def observe(self, operation: str, status: int, reason: str | None, seconds: float) -> None:
        """Count one answered request."""
        if operation not in OPERATIONS:
            operation = "other"
        if status < 400:
            outcome = "ok"
            if operation in _ISSUED:
                self.issued.labels(operation).inc()
        else:
            outcome = "refused" if status < 500 else "error"
            known = reason if reason in _REASONS else "other"
            self.refusals.labels(operation, known).inc()
        self.latency.labels(operation, outcome).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type: this process's metrics, or every
        worker's in multiprocess mode."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


__all__ = ["BUCKETS", "OPERATIONS", "IdPMetrics"]

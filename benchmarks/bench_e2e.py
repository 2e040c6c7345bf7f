"""End to end: what a user feels, an agent run secured with A-JWT against the same run
with plain OAuth, side by side.

    .venv/bin/python -m benchmarks.bench_e2e [--quick] [--runs N]
        [--frameworks langgraph,autogen,crewai] [--modes in-process,processes] [--json FILE]

For each framework (LangGraph, AutoGen, CrewAI), its reference app
(``ajwt_demo.scenario``: four agents with a scripted model, no LLM latency, making
real tool calls) runs alternately

- **A-JWT**: ``Shim.start_run`` (timed, also shown on its own), then
  ``scenario.run_secured``: the adapter's hooks, registration, mints, hand-offs,
  completions, and every tool call with an intent token and a DPoP proof, verified by
  the reference resource server (``AJWTMiddleware``);
- **plain OAuth**: ``scenario.run_baseline``: the same agents, tools and API calls with
  one client-credentials Bearer token for the whole app (``ajwt_demo.baseline``),
  verified by pyjwt middleware on the same API.

The user's access token is fetched once (a login, not part of a run), as is the plain
app's Bearer token (cached across runs until shortly before it expires); each side has
one long-lived client (shim or ``httpx.Auth``), as a deployed app would.

Two deployments:

- ``in-process``: ``start_stack`` and ``start_baseline``, every server in a thread of
  this process (what the tests and ``ajwt demo`` use; the servers share the GIL with
  the agents);
- ``processes``: the IdP (``ajwt_core.idp.asgi:app_from_env``, SQLite), the A-JWT
  resource server (``ajwt_demo.asgi:api_from_env``), the plain token server and
  the plain Bearer API (``benchmarks.baseline_asgi``) each in its own uvicorn process,
  as deployed. The goals of issue 17 are set on this deployment.

Runs alternate A-JWT / plain in ABBA order after a warm-up of each, so drift in machine
load hits both alike. Reported per framework and deployment: median run time and its
spread (p25–p75), the ratio of the medians with the range of the per-pair ratios, the
API calls per run and the A-JWT overhead per API call ((A-JWT − plain) ÷ calls), and
what the shim did per run (mints, hand-offs, completions, from its events, and its
round trips to the IdP). Each run is
checked: every API call accepted, both sides making the same number of calls.

Where the A-JWT side's time goes on the IdP: for each framework and deployment, the
IdP's own request durations by operation (``mint``, ``exchange``, ``complete``,
``start_run``…, from the ``ajwt_idp_request_duration_seconds`` histogram its
``/metrics`` serves: handling time inside the IdP, without the network hop) over the
timed runs, as requests and milliseconds per run. The resource server's revocation-feed
polls show up there too (``other``). And, with the servers in their own processes, the
split of the extra wall time: the client process's extra CPU time per run
(``time.process_time``, every thread: the adapter, the shim, the extra HTTP requests),
the IdP's handling, and the rest (the resource server's extra work, network hops,
waiting for a CPU on a shared machine). The parts add up only roughly: a run's calls are
mostly sequential, but a thread pool's tool calls may overlap one another's waits.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import json
import os
import re
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ajwt_core.errors import AJWTError
from ajwt_core.idp.admin import AdminClient
from ajwt_core.keys import SigningKey
from ajwt_core.rs.revocation_feed import DEFAULT_INTERVAL
from ajwt_core.shim import Shim, ShimEvent
from ajwt_core.workflow import reference_workflow
from ajwt_demo.baseline import ClientCredentialsAuth
from ajwt_demo.run import start_baseline
from ajwt_demo.scenario import FRAMEWORKS, Scenario, load_scenario
from ajwt_demo.stack import REFERENCE_SCOPES, start_stack
from benchmarks._timing import machine, machine_line
from tests.scale.idp_process import IdPProcess
from tests.scale.procs import ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
MODES = ("in-process", "processes")
#: Issue 17's goals, A-JWT run ÷ plain run, in separate processes.
TARGETS = {"langgraph": 1.25, "autogen": 1.25, "crewai": 1.1}
USER = "user:alice"
DEFAULT = {"runs": 12, "warmup": 2}
QUICK = {"runs": 2, "warmup": 1}


# ------------------------------------------------------------------ counting


class Tally:
    """Requests sent through an ``httpx.Auth`` and responses refused (status ≥ 400),
    and the wall time spent waiting for them where the caller timed it; tools run in
    worker threads, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.refused = 0
        self.waited = 0.0

    def record(self, response: httpx.Response, waited: float = 0.0) -> None:
        with self._lock:
            self.requests += 1
            self.refused += response.status_code >= 400
            self.waited += waited

    def take(self) -> tuple[int, int]:
        """The counts since the last ``take``, and reset them."""
        with self._lock:
            counts = self.requests, self.refused
            self.requests = self.refused = 0
        return counts

    def take_waited(self) -> float:
        """The seconds waited since the last ``take_waited``, and reset them."""
        with self._lock:
            waited, self.waited = self.waited, 0.0
        return waited


class CountingAuth(httpx.Auth):
    """Wraps another ``httpx.Auth`` (the shim's, or the Bearer one) and counts what it
    sends; the same thin layer on both sides of the comparison."""

    def __init__(self, inner: httpx.Auth, tally: Tally) -> None:
        self._inner = inner
        self._tally = tally

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        flow = self._inner.sync_auth_flow(request)
        outgoing = next(flow)
        while True:
            response = yield outgoing
            self._tally.record(response)
            try:
                outgoing = flow.send(response)
            except StopIteration:
                return

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        flow = self._inner.async_auth_flow(request)
        outgoing = await flow.__anext__()
        while True:
            response = yield outgoing
            self._tally.record(response)
            try:
                outgoing = await flow.asend(response)
            except StopAsyncIteration:
                return


class CountingShim(Shim):
    """A :class:`Shim` whose ``auth()`` counts the API requests it signs, and which
    counts its own events (mints, hand-offs, completions) by kind, and its requests to
    the IdP (``idp``: round trips, ``start_run`` included)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.tally = Tally()
        self.idp = Tally()
        self._events: collections.Counter[str] = collections.Counter()
        self._events_lock = threading.Lock()
        self.subscribe(self._count)

    def _roundtrip_sync(self, client: httpx.Client, request: httpx.Request) -> httpx.Response:
        start = time.perf_counter()
        response = super()._roundtrip_sync(client, request)
        self.idp.record(response, time.perf_counter() - start)
        return response

    async def _roundtrip_async(
        self, client: httpx.AsyncClient, request: httpx.Request
    ) -> httpx.Response:
        start = time.perf_counter()
        response = await super()._roundtrip_async(client, request)
        self.idp.record(response, time.perf_counter() - start)
        return response

    def _count(self, event: ShimEvent) -> None:
        with self._events_lock:
            self._events[event.kind] += 1

    def take_events(self) -> dict[str, int]:
        with self._events_lock:
            events = dict(self._events)
            self._events.clear()
        return events

    def auth(self) -> httpx.Auth:
        return CountingAuth(super().auth(), self.tally)


# ------------------------------------------------------------------- results


@dataclass
class Spread:
    """A distribution of run times, in milliseconds."""

    median: float
    p25: float
    p75: float
    low: float
    high: float

    @classmethod
    def of(cls, seconds: list[float]) -> Spread:
        ms = sorted(s * 1e3 for s in seconds)
        if len(ms) >= 2:
            p25, _, p75 = statistics.quantiles(ms, n=4, method="inclusive")
        else:
            p25 = p75 = ms[0]
        return cls(statistics.median(ms), p25, p75, ms[0], ms[-1])


@dataclass
class Sample:
    """One run: wall time, ``start_run`` time (A-JWT only) and what it did."""

    seconds: float
    start_run: float = 0.0
    requests: int = 0
    refused: int = 0
    events: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    #: Round trips to the IdP (A-JWT only).
    idp_requests: int = 0
    #: CPU time of this (the client's) process during the run, every thread.
    cpu: float = 0.0
    #: Wall time the client spent in its round trips to the IdP (A-JWT only): sending
    #: each request, the IdP's handling and the answer, as the shim's code saw them.
    idp_wait: float = 0.0


@dataclass
class E2ERow:
    """A-JWT against plain OAuth for one framework in one deployment."""

    framework: str
    mode: str
    runs: int = 0
    plain: Spread | None = None
    secured: Spread | None = None
    start_run_ms: float = 0.0
    ratio: float | None = None
    pair_ratio_low: float | None = None
    pair_ratio_high: float | None = None
    api_calls: int = 0
    overhead_per_call_ms: float | None = None
    mints: float = 0.0
    handoffs: float = 0.0
    completions: float = 0.0
    #: The shim's round trips to the IdP per run (median), ``start_run`` included.
    idp_requests: float = 0.0
    #: The client's wall time in those round trips per run (median, ms).
    idp_wait_ms: float = 0.0
    #: The ratio with the IdP round trips taken out of each A-JWT run: what it would be
    #: if the IdP answered in no time (median of the runs less their waits ÷ the plain
    #: median). A bound no speed-up of the IdP can beat.
    ratio_without_idp: float | None = None
    #: The client process's CPU time per run (median, ms), each side: with the servers
    #: in other processes, the client's own work (the framework's, and A-JWT's).
    secured_cpu_ms: float = 0.0
    plain_cpu_ms: float = 0.0
    #: The IdP's handling time per A-JWT run by operation: ``{operation: [requests per
    #: run, milliseconds per run]}`` (from its ``/metrics``, over the timed runs).
    idp_operations: dict[str, list[float]] = field(default_factory=dict)
    target: float | None = None
    problems: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def meets_target(self) -> bool | None:
        if self.target is None or self.ratio is None:
            return None
        return self.ratio <= self.target and not self.problems


@dataclass
class Report:
    machine: dict[str, Any]
    counts: dict[str, int]
    rows: list[E2ERow] = field(default_factory=list)


# --------------------------------------------------------------- deployments


@dataclass
class Deployment:
    """Where one side-by-side comparison runs: the A-JWT IdP and resource server, and the
    plain token server and API, with a registered client on each."""

    mode: str
    idp_url: str
    rs_url: str
    plain_api_url: str
    admin: AdminClient
    client: dict[str, Any]
    plain_auth: ClientCredentialsAuth

    def shim(self) -> CountingShim:
        return CountingShim(
            self.idp_url, self.client["client_id"], client_secret=self.client["client_secret"]
        )


@contextlib.contextmanager
def in_process() -> Iterator[Deployment]:
    """Every server in a thread of this process (``start_stack``, ``start_baseline``)."""
    with tempfile.TemporaryDirectory(prefix="ajwt-e2e-") as tmp:
        # The API follows the IdP's revocation feed at the deployed default interval,
        # as ajwt_demo.asgi does (the tests' 0.1 s polls would take the IdP's time,
        # and the GIL, from the run: about 15 ms per LangGraph run).
        stack = start_stack(
            Path(tmp) / "idp.db", revocation_feed=True, feed_interval=DEFAULT_INTERVAL
        )
        try:
            baseline = start_baseline()
            try:
                yield Deployment(
                    "in-process",
                    stack.idp_url,
                    stack.rs_url,
                    baseline.api_url,
                    stack.admin,
                    stack.new_client(REFERENCE_SCOPES),
                    baseline.auth,
                )
            finally:
                baseline.close()
        finally:
            stack.close()


@contextlib.contextmanager
def processes() -> Iterator[Deployment]:
    """The IdP, the A-JWT API, the plain token server and the plain API, each a uvicorn
    process with one worker (SQLite for the IdP; the resource server as
    ``ajwt_demo.asgi`` configures it without Redis: following the IdP's revocation
    feed)."""
    with tempfile.TemporaryDirectory(prefix="ajwt-e2e-") as tmp:
        idp = IdPProcess(f"sqlite+aiosqlite:///{tmp}/idp.db", Path(tmp) / "keys.json", workers=1)
        rs_port, token_port, api_port = free_port(), free_port(), free_port()
        rs_env = {"AJWT_RS_ISSUER": idp.url, "AJWT_RS_AUDIENCE": f"http://127.0.0.1:{rs_port}"}
        key_file = Path(tmp) / "baseline-key.pem"
        key_file.write_bytes(SigningKey.generate().to_pem())
        plain = {
            "AJWT_BASELINE_ISSUER": f"http://127.0.0.1:{token_port}",
            "AJWT_BASELINE_KEY_FILE": str(key_file),
            "AJWT_BASELINE_CLIENT_ID": "patcher-app",
            "AJWT_BASELINE_CLIENT_SECRET": secrets.token_urlsafe(32),
            "AJWT_BASELINE_SCOPES": " ".join(REFERENCE_SCOPES),
            "AJWT_BASELINE_AUDIENCE": f"http://127.0.0.1:{api_port}",
            # The factories in benchmarks/ are imported from the repository root.
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        rs = ServerProcess("ajwt_demo.asgi:api_from_env", rs_env, workers=1, port=rs_port)
        token_server = ServerProcess(
            "benchmarks.baseline_asgi:token_server_from_env", plain, workers=1, port=token_port
        )
        plain_api = ServerProcess(
            "benchmarks.baseline_asgi:bearer_api_from_env", plain, workers=1, port=api_port
        )
        try:
            # Started together: each spends seconds importing its app.
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                started = [
                    pool.submit(idp.start),
                    pool.submit(rs.start, "/health"),
                    pool.submit(token_server.start, "/token"),
                    pool.submit(plain_api.start, "/health"),
                ]
            for future in started:
                future.result()  # the first failure, if any
            admin = idp.admin()
            try:
                admin.register_workflow(reference_workflow().canonical())
                client = admin.register_client(scopes=REFERENCE_SCOPES)
                plain_auth = ClientCredentialsAuth(
                    token_server.url + "/token",
                    plain["AJWT_BASELINE_CLIENT_ID"],
                    plain["AJWT_BASELINE_CLIENT_SECRET"],
                    resource=plain_api.url,
                )
                yield Deployment(
                    "processes", idp.url, rs.url, plain_api.url, admin, client, plain_auth
                )
            finally:
                admin.close()
        finally:
            for server in (plain_api, token_server, rs):
                server.stop()
            idp.stop()


DEPLOYMENTS: dict[str, Callable[[], contextlib.AbstractContextManager[Deployment]]] = {
    "in-process": in_process,
    "processes": processes,
}


# ------------------------------------------------------------ the IdP's time

_DURATION = re.compile(
    r'^ajwt_idp_request_duration_seconds_(sum|count)\{(?:[^}]*,)?operation="([^"]+)"[^}]*\} (\S+)$'
)


def idp_durations(idp_url: str) -> dict[str, tuple[float, float]]:
    """The IdP's cumulative request durations by operation: ``{operation: (requests,
    seconds)}``, all outcomes summed (read from its Prometheus ``/metrics``)."""
    return parse_durations(httpx.get(idp_url + "/metrics", timeout=10).text)


def parse_durations(text: str) -> dict[str, tuple[float, float]]:
    """:func:`idp_durations` from the text of a ``/metrics`` answer."""
    totals: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for line in text.splitlines():
        found = _DURATION.match(line)
        if found:
            kind, operation, value = found.groups()
            totals[operation][kind == "sum"] += float(value)
    return {operation: (count, seconds) for operation, (count, seconds) in totals.items()}


def per_run(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], runs: int
) -> dict[str, list[float]]:
    """What the IdP handled between two snapshots, per run: ``{operation: [requests,
    milliseconds]}``, operations it did not see left out."""
    spent = {}
    for operation, (count, seconds) in after.items():
        count0, seconds0 = before.get(operation, (0.0, 0.0))
        if count > count0:
            spent[operation] = [(count - count0) / runs, (seconds - seconds0) * 1e3 / runs]
    return dict(sorted(spent.items(), key=lambda item: -item[1][1]))


# ------------------------------------------------------------------ the runs


def _secured_run(
    scenario: Scenario, deployment: Deployment, shim: CountingShim, user_token: str
) -> Sample:
    start, cpu = time.perf_counter(), time.process_time()
    started, error = start, None
    try:
        run = shim.start_run(user_token, "vuln-patch", intent="patch the CVEs")
        started = time.perf_counter()
        answer = scenario.run_secured(shim, run, deployment.rs_url)
    except Exception as exc:  # noqa: BLE001 - reported in the row, never hidden
        answer, error = "", repr(exc)[:300]
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    requests, refused = shim.tally.take()
    idp_requests, _ = shim.idp.take()
    events = shim.take_events()
    return Sample(
        seconds,
        started - start,
        requests,
        refused,
        events,
        _failure(answer, error),
        idp_requests,
        cpu,
        shim.idp.take_waited(),
    )


def _plain_run(
    scenario: Scenario, deployment: Deployment, auth: CountingAuth, tally: Tally
) -> Sample:
    start, cpu, error = time.perf_counter(), time.process_time(), None
    try:
        answer = scenario.run_baseline(deployment.plain_api_url, auth)
    except Exception as exc:  # noqa: BLE001 - reported in the row, never hidden
        answer, error = "", repr(exc)[:300]
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    requests, refused = tally.take()
    return Sample(
        seconds, requests=requests, refused=refused, error=_failure(answer, error), cpu=cpu
    )


def _failure(answer: str, error: str | None) -> str | None:
    # A run that produced no answer did not do its work.
    return error if error is not None else (None if answer else "the run gave no answer")


def compare_runs(
    scenario: Scenario, deployment: Deployment, *, runs: int, warmup: int
) -> tuple[list[Sample], list[Sample], dict[str, list[float]]]:
    """``warmup`` + ``runs`` runs of each side, alternating in ABBA order; the samples
    of the timed runs (A-JWT, plain), and the IdP's time per timed run by operation."""
    shim = deployment.shim()
    user_token = deployment.admin.user_token(USER)
    tally = Tally()
    auth = CountingAuth(deployment.plain_auth, tally)
    secured: list[Sample] = []
    plain: list[Sample] = []

    def secured_once() -> None:
        secured.append(_secured_run(scenario, deployment, shim, user_token))

    def plain_once() -> None:
        plain.append(_plain_run(scenario, deployment, auth, tally))

    order = (secured_once, plain_once)
    before: dict[str, tuple[float, float]] = {}
    try:
        for index in range(warmup + runs):
            if index == warmup:
                before = idp_durations(deployment.idp_url)
            for one in order if index % 2 == 0 else order[::-1]:
                one()
        spent = per_run(before, idp_durations(deployment.idp_url), runs)
    finally:
        shim.close()
    return secured[warmup:], plain[warmup:], spent


def summarise(framework: str, mode: str, secured: list[Sample], plain: list[Sample]) -> E2ERow:
    """The row for one framework and deployment, with every problem the runs showed."""
    row = E2ERow(framework, mode, runs=len(secured))
    row.secured = Spread.of([s.seconds for s in secured])
    row.plain = Spread.of([s.seconds for s in plain])
    row.start_run_ms = statistics.median(s.start_run for s in secured) * 1e3
    row.ratio = row.secured.median / row.plain.median
    pairs = [s.seconds / p.seconds for s, p in zip(secured, plain, strict=True)]
    row.pair_ratio_low, row.pair_ratio_high = min(pairs), max(pairs)
    row.api_calls = int(statistics.median(p.requests for p in plain))
    if row.api_calls:
        row.overhead_per_call_ms = (row.secured.median - row.plain.median) / row.api_calls
    for kind, attribute in (
        ("token_minted", "mints"),
        ("handoff", "handoffs"),
        ("step_completed", "completions"),
    ):
        setattr(row, attribute, statistics.median(s.events.get(kind, 0) for s in secured))
    row.idp_requests = statistics.median(s.idp_requests for s in secured)
    row.idp_wait_ms = statistics.median(s.idp_wait for s in secured) * 1e3
    row.ratio_without_idp = (
        statistics.median(s.seconds - s.idp_wait for s in secured) * 1e3 / row.plain.median
    )
    row.secured_cpu_ms = statistics.median(s.cpu for s in secured) * 1e3
    row.plain_cpu_ms = statistics.median(p.cpu for p in plain) * 1e3
    for side, samples in (("A-JWT", secured), ("plain", plain)):
        refused = sum(s.refused for s in samples)
        if refused:
            row.problems.append(f"{refused} {side} API call(s) refused")
        failed = [s.error for s in samples if s.error]
        if failed:
            row.problems.append(f"{len(failed)} {side} run(s) failed: {failed[0]}")
    counts = {s.requests for s in secured} | {p.requests for p in plain}
    if len(counts) > 1:
        row.problems.append(f"the runs made different numbers of API calls: {sorted(counts)}")
    if mode == "processes":
        row.target = TARGETS.get(framework)
    return row


def run_framework(framework: str, deployment: Deployment, *, runs: int, warmup: int) -> E2ERow:
    try:
        scenario = load_scenario(framework)
    except AJWTError as exc:  # the adapter package is not installed
        return E2ERow(framework, deployment.mode, skipped=exc.description)
    secured, plain, spent = compare_runs(scenario, deployment, runs=runs, warmup=warmup)
    row = summarise(framework, deployment.mode, secured, plain)
    row.idp_operations = spent
    return row


def run(frameworks: list[str], modes: list[str], *, runs: int, warmup: int) -> list[E2ERow]:
    """Every framework in every deployment (one deployment started per mode)."""
    rows = []
    for mode in modes:
        with DEPLOYMENTS[mode]() as deployment:
            for framework in frameworks:
                rows.append(run_framework(framework, deployment, runs=runs, warmup=warmup))
    return rows


# ------------------------------------------------------------------ rendering


def render(report: Report) -> str:
    c = report.counts
    parts = [
        machine_line(report.machine),
        f"Each row: {c['runs']} timed runs of each side after {c['warmup']} warm-up, "
        "alternating (ABBA). Times in ms: median (p25–p75). A-JWT includes start_run."
        + (
            " Every HTTP client of the apps on one TLS context (--one-tls-context)."
            if c.get("one_tls_context")
            else ""
        ),
    ]
    for mode in MODES:
        rows = [r for r in report.rows if r.mode == mode]
        if not rows:
            continue
        lines = [
            f"### End to end, {mode}",
            "",
            "| framework | plain run | A-JWT run | of which start_run | ratio (pairs) "
            "| API calls | overhead per API call | mints / hand-offs / completions "
            "| IdP requests | target | met |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|",
        ]
        for r in rows:
            if r.skipped or r.plain is None or r.secured is None:
                lines.append(f"| {r.framework} | skipped: {r.skipped} | | | | | | | | | |")
                continue
            overhead = "" if r.overhead_per_call_ms is None else f"{r.overhead_per_call_ms:.1f} ms"
            target = f"≤ {r.target:.2f}×" if r.target is not None else ""
            met = {True: "yes", False: "**no**", None: ""}[r.meets_target]
            lines.append(
                f"| {r.framework} | {_spread(r.plain)} | {_spread(r.secured)} "
                f"| {r.start_run_ms:.1f} | {r.ratio:.2f}× ({r.pair_ratio_low:.2f}–"
                f"{r.pair_ratio_high:.2f}) | {r.api_calls} | {overhead} "
                f"| {r.mints:g} / {r.handoffs:g} / {r.completions:g} | {r.idp_requests:g} "
                f"| {target} | {met} |"
            )
        lines += _idp_lines(rows)
        lines += _split_lines(rows)
        problems = [f"- {r.framework}: {p}" for r in rows for p in r.problems]
        if problems:
            lines += ["", "Problems (a row with a problem does not meet its target):", *problems]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def _split_lines(rows: list[E2ERow]) -> list[str]:
    """Where the A-JWT run's extra time goes, with the servers in other processes: the
    client's extra CPU, the IdP's handling, and the rest (the resource server's extra
    work, the network hops, scheduling on a shared machine)."""
    shown = [r for r in rows if r.mode == "processes" and r.secured and r.plain]
    if not shown:
        return []
    lines = [
        "",
        "Where the A-JWT run's extra time goes (ms per run: wall-time difference = the "
        "client process's extra CPU + the IdP's handling + the rest):",
        "",
        "| framework | extra wall time | client CPU, A-JWT / plain | extra client CPU "
        "| IdP handling | rest | client waiting on the IdP | ratio less those waits |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in shown:
        assert r.secured is not None and r.plain is not None
        extra = r.secured.median - r.plain.median
        cpu = r.secured_cpu_ms - r.plain_cpu_ms
        idp = sum(ms for _, ms in r.idp_operations.values())
        lines.append(
            f"| {r.framework} | {extra:.1f} | {r.secured_cpu_ms:.1f} / {r.plain_cpu_ms:.1f} "
            f"| {cpu:.1f} | {idp:.1f} | {extra - cpu - idp:.1f} | {r.idp_wait_ms:.1f} "
            f"| {r.ratio_without_idp:.2f}× |"
        )
    return lines


def _idp_lines(rows: list[E2ERow]) -> list[str]:
    """Where the A-JWT run's IdP time goes: requests × mean = ms per run, by operation."""
    shown = [r for r in rows if r.idp_operations]
    if not shown:
        return []
    lines = [
        "",
        "IdP handling time per A-JWT run, by operation (its /metrics; requests × mean "
        "= total, ms):",
        "",
        "| framework | IdP total | by operation |",
        "|---|---:|---|",
    ]
    for r in shown:
        total = sum(ms for _, ms in r.idp_operations.values())
        parts = ", ".join(
            f"{op} {n:.3g} × {ms / n:.1f} = {ms:.1f}" for op, (n, ms) in r.idp_operations.items()
        )
        lines.append(f"| {r.framework} | {total:.1f} | {parts} |")
    return lines


def _spread(s: Spread) -> str:
    return f"{s.median:.1f} ({s.p25:.1f}–{s.p75:.1f})"


def report_json(report: Report) -> str:
    rows = [asdict(r) | {"meets_target": r.meets_target} for r in report.rows]
    document = {"machine": report.machine, "counts": report.counts, "rows": rows}
    return json.dumps(document, indent=2, sort_keys=True)


@contextlib.contextmanager
def one_tls_context() -> Iterator[None]:
    """Every ``httpx`` client of this process built on one TLS context (the first one
    built for the same arguments) instead of loading the CA bundle for each (about
    20 ms). The reference apps' tools build a client per run (LangGraph one, AutoGen
    two) or per tool call (CrewAI), on both sides alike: this shows the ratios without
    that shared cost in the denominator."""
    import httpx._transports.default as transports

    made: dict[tuple[Any, ...], Any] = {}
    original = getattr(transports, "create_ssl_context")  # noqa: B009 - not re-exported

    def cached(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
        key = (id(verify) if not isinstance(verify, bool | str) else verify, cert, trust_env)
        if key not in made:
            made[key] = original(verify=verify, cert=cert, trust_env=trust_env)
        return made[key]

    setattr(transports, "create_ssl_context", cached)  # noqa: B010 - not re-exported
    try:
        yield
    finally:
        setattr(transports, "create_ssl_context", original)  # noqa: B010


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 runs each, for a smoke run")
    parser.add_argument("--runs", type=int, help="timed runs of each side per row")
    parser.add_argument(
        "--frameworks",
        default=",".join(FRAMEWORKS),
        help="comma-separated, of: " + ", ".join(FRAMEWORKS),
    )
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated, of: " + ", ".join(MODES)
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--one-tls-context",
        action="store_true",
        help="build every HTTP client of the apps on one TLS context (see one_tls_context)",
    )
    args = parser.parse_args(argv)
    frameworks = [f for f in args.frameworks.split(",") if f]
    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(frameworks) - set(FRAMEWORKS)) + sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
    counts = dict(QUICK if args.quick else DEFAULT)
    if args.runs:
        counts["runs"] = args.runs
    counts["one_tls_context"] = int(args.one_tls_context)
    report = Report(machine=machine(), counts=counts)
    started = time.perf_counter()
    with one_tls_context() if args.one_tls_context else contextlib.nullcontext():
        report.rows = run(frameworks, modes, runs=counts["runs"], warmup=counts["warmup"])
    report.machine["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    report.machine["seconds"] = round(time.perf_counter() - started, 1)
    print(render(report))
    if args.json:
        args.json.write_text(report_json(report))
    return 1 if any(r.problems for r in report.rows) else 0


if __name__ == "__main__":
    sys.exit(main())

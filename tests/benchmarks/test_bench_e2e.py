"""Smoke test of ``benchmarks.bench_e2e``: each framework's secured and plain runs, in
process and in separate server processes, with tiny counts. Timings are never asserted
(they are only meaningful as ratios on a quiet machine, see docs/performance.md); what
is asserted is that both sides did the same work and every API call was accepted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from types import SimpleNamespace

import httpx
import pytest

from benchmarks import bench_e2e
from benchmarks.bench_e2e import CountingAuth, E2ERow, Sample, Tally


class _Bearer(httpx.Auth):
    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        request.headers["Authorization"] = "Bearer t"
        yield request


def _transport(request: httpx.Request) -> httpx.Response:
    assert request.headers["Authorization"] == "Bearer t"
    return httpx.Response(403 if request.url.path == "/refused" else 200)


def test_counting_auth_counts_sync_and_async_requests_and_refusals() -> None:
    tally = Tally()
    auth = CountingAuth(_Bearer(), tally)
    with httpx.Client(transport=httpx.MockTransport(_transport), auth=auth) as client:
        client.get("http://api.example/ok")
        client.get("http://api.example/refused")

    async def twice() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(_transport), auth=auth) as c:
            await c.get("http://api.example/ok")
            await c.get("http://api.example/ok")

    asyncio.run(twice())
    assert tally.take() == (4, 1)
    assert tally.take() == (0, 0)


def _samples(seconds: float, requests: int, refused: int = 0) -> list[Sample]:
    events = {"token_minted": 1, "handoff": 3, "step_completed": 4}
    return [Sample(seconds, 0.005, requests, refused, events, None, 6) for _ in range(3)]


def test_summarise_computes_the_ratio_and_the_overhead_per_call() -> None:
    row = bench_e2e.summarise("langgraph", "processes", _samples(0.2, 10), _samples(0.1, 10))
    assert row.ratio == pytest.approx(2.0)
    assert row.overhead_per_call_ms == pytest.approx(10.0)
    assert (row.api_calls, row.mints, row.handoffs, row.completions) == (10, 1, 3, 4)
    assert row.idp_requests == 6
    assert row.start_run_ms == pytest.approx(5.0)
    assert row.target == 1.25
    assert row.meets_target is False
    assert row.problems == []


def test_the_ratio_less_the_idp_waits_bounds_what_a_faster_idp_could_reach() -> None:
    # Each A-JWT run of 200 ms spent 50 ms waiting for the IdP; the plain run took 100.
    secured = [replace(sample, idp_wait=0.05) for sample in _samples(0.2, 10)]
    row = bench_e2e.summarise("autogen", "processes", secured, _samples(0.1, 10))
    assert row.ratio == pytest.approx(2.0)
    assert row.idp_wait_ms == pytest.approx(50.0)
    assert row.ratio_without_idp == pytest.approx(1.5)


def test_the_tally_keeps_the_time_waited_until_taken() -> None:
    tally = Tally()
    tally.record(httpx.Response(200), 0.25)
    tally.record(httpx.Response(400), 0.5)
    assert tally.take() == (2, 1)
    assert tally.take_waited() == pytest.approx(0.75)
    assert tally.take_waited() == 0.0


def test_summarise_flags_refused_calls_and_unequal_work() -> None:
    row = bench_e2e.summarise("crewai", "processes", _samples(0.1, 8, 1), _samples(0.2, 10))
    assert len(row.problems) == 2
    assert "refused" in row.problems[0]
    assert "different numbers of API calls" in row.problems[1]
    # A faster run that did less work never meets its target.
    assert row.ratio == pytest.approx(0.5)
    assert row.meets_target is False


class _Failing:
    name = "failing"

    def run_secured(self, shim: object, run: object, rs_url: str) -> str:
        raise RuntimeError("boom")

    def run_baseline(self, rs_url: str, auth: httpx.Auth) -> str:
        raise RuntimeError("boom")


def test_a_failing_run_is_reported_not_raised() -> None:
    tally = Tally()
    deployment = SimpleNamespace(plain_api_url="http://127.0.0.1:9")
    sample = bench_e2e._plain_run(
        _Failing(),  # type: ignore[arg-type]
        deployment,  # type: ignore[arg-type]
        CountingAuth(_Bearer(), tally),
        tally,
    )
    assert sample.error is not None
    assert "boom" in sample.error
    ok = _samples(0.1, 10)
    row = bench_e2e.summarise("langgraph", "processes", ok, [*ok[:2], sample])
    assert any("plain run(s) failed: RuntimeError('boom')" in p for p in row.problems)
    assert row.meets_target is False


METRICS = """\
# TYPE ajwt_idp_request_duration_seconds histogram
ajwt_idp_request_duration_seconds_bucket{le="0.005",operation="mint",outcome="ok"} 3.0
ajwt_idp_request_duration_seconds_count{operation="mint",outcome="ok"} 4.0
ajwt_idp_request_duration_seconds_sum{operation="mint",outcome="ok"} 0.02
ajwt_idp_request_duration_seconds_count{operation="mint",outcome="refused"} 1.0
ajwt_idp_request_duration_seconds_sum{operation="mint",outcome="refused"} 0.004
ajwt_idp_request_duration_seconds_count{operation="complete",outcome="ok"} 2.0
ajwt_idp_request_duration_seconds_sum{operation="complete",outcome="ok"} 0.006
ajwt_idp_tokens_issued_total{grant="mint"} 4.0
"""


def test_the_idp_time_per_run_is_read_from_its_metrics() -> None:
    before = bench_e2e.parse_durations(METRICS)
    assert before["mint"] == pytest.approx((5.0, 0.024))
    assert before["complete"] == pytest.approx((2.0, 0.006))
    after = {**before, "mint": (9.0, 0.044), "start_run": (2.0, 0.01)}
    spent = bench_e2e.per_run(before, after, runs=2)
    # Most time first; an operation the runs did not use is left out.
    assert list(spent) == ["mint", "start_run"]
    assert spent["mint"] == pytest.approx([2.0, 10.0])
    assert spent["start_run"] == pytest.approx([1.0, 5.0])


def test_in_process_rows_carry_no_target() -> None:
    row = bench_e2e.summarise("crewai", "in-process", _samples(0.1, 10), _samples(0.1, 10))
    assert row.target is None
    assert row.meets_target is None


def _check(row: E2ERow) -> None:
    assert row.skipped is None, row.skipped
    assert row.problems == []
    assert row.runs == 1
    assert row.api_calls >= 10  # the reference workflow's tool calls
    assert row.mints + row.handoffs >= 4  # a token for each of the four agents
    assert row.idp_requests >= 2  # start_run and a mint at least
    assert row.plain is not None
    assert row.secured is not None
    assert row.overhead_per_call_ms is not None
    # The IdP's side of the A-JWT run: start_run and a token request at least.
    assert row.idp_operations["start_run"][0] == 1
    assert {"mint", "exchange"} & set(row.idp_operations)
    assert all(n > 0 and ms > 0 for n, ms in row.idp_operations.values())


@pytest.fixture(scope="module")
def in_process() -> Iterator[bench_e2e.Deployment]:
    with bench_e2e.in_process() as deployment:
        yield deployment


@pytest.mark.parametrize("framework", ["langgraph", "autogen", "crewai"])
def test_each_framework_runs_secured_and_plain_in_process(
    in_process: bench_e2e.Deployment, framework: str
) -> None:
    _check(bench_e2e.run_framework(framework, in_process, runs=1, warmup=0))


def test_separate_processes_run_and_render() -> None:
    rows = bench_e2e.run(["langgraph"], ["processes"], runs=1, warmup=0)
    assert [(row.framework, row.mode) for row in rows] == [("langgraph", "processes")]
    _check(rows[0])
    machine = {"cpus": 2, "cpu_model": "x", "python": "3", "load_average": [0]}
    report = bench_e2e.Report(machine, {"runs": 1, "warmup": 0}, rows)
    text = bench_e2e.render(report)
    assert "### End to end, processes" in text
    assert "| langgraph |" in text
    assert "IdP handling time per A-JWT run" in text
    assert "start_run 1 × " in text
    # The split of the extra time: client CPU on both sides, the IdP's share, the rest.
    assert "Where the A-JWT run's extra time goes" in text
    assert "ratio less those waits" in text
    assert rows[0].idp_wait_ms > 0
    assert rows[0].ratio_without_idp is not None
    assert rows[0].ratio_without_idp < rows[0].ratio  # type: ignore[operator]
    assert rows[0].secured_cpu_ms > 0 and rows[0].plain_cpu_ms > 0
    document = json.loads(bench_e2e.report_json(report))
    assert document["rows"][0]["target"] == 1.25
    assert isinstance(document["rows"][0]["meets_target"], bool)


def test_main_refuses_an_unknown_framework() -> None:
    with pytest.raises(SystemExit):
        bench_e2e.main(["--frameworks", "smolagents"])


def test_one_tls_context_builds_each_clients_context_once() -> None:
    with bench_e2e.one_tls_context():
        first, second = httpx.Client(), httpx.Client()
        contexts = {
            id(client._transport._pool._ssl_context)  # type: ignore[attr-defined]
            for client in (first, second)
        }
        first.close()
        second.close()
    assert len(contexts) == 1
    after = httpx.Client()
    assert id(after._transport._pool._ssl_context) not in contexts  # type: ignore[attr-defined]
    after.close()

"""Smoke test of ``benchmarks.bench_compare``: every cheap part runs with tiny counts and
returns well-formed results. Timings are never asserted (they are only meaningful as
ratios on a quiet machine, see docs/performance.md)."""

from __future__ import annotations

import json
import os
import types
from collections.abc import Generator

import pytest

from ajwt_core.keys import SigningKeySet
from benchmarks import bench_compare
from benchmarks._timing import Measurement


@pytest.fixture(scope="module")
def report() -> bench_compare.Report:
    result = bench_compare.Report(machine=bench_compare.machine())
    result.verification = bench_compare.run_verification(number=5, repeat=2)
    result.delegation = bench_compare.run_delegation(number=5, repeat=2)
    result.scaling = bench_compare.run_scaling(number=3, repeat=2, depths=(1, 2, 4))
    result.client = bench_compare.run_client(number=3, repeat=2, mints=3)
    result.throughput = [
        bench_compare.Throughput("2 workers, PostgreSQL", 2, "PostgreSQL", skipped="not here")
    ]
    return result


def _well_formed(row: Measurement) -> None:
    assert row.per_call_us > 0
    if row.peer is not None:
        assert row.ratio is not None
        assert row.ratio > 0


def test_verification_compares_ajwt_with_stock_and_fair_peers(
    report: bench_compare.Report,
) -> None:
    rows = report.verification
    assert rows[0].name.startswith("raw ES256 verify")
    for row in rows:
        _well_formed(row)
    peers = {(row.name, row.peer): row for row in rows}
    # Today's rows against stock pyjwt stay, for continuity.
    assert (bench_compare.COLD, bench_compare.BEARER) in peers
    assert (bench_compare.WARM, bench_compare.BEARER) in peers
    assert (bench_compare.FIRST, bench_compare.BEARER) in peers
    # Each peer is reported stock and fair.
    assert (bench_compare.PEER, bench_compare.BEARER) in peers
    assert (bench_compare.FAIR_PEER, bench_compare.FAIR_BEARER) in peers
    targeted = {(row.name, row.peer, row.target) for row in rows if row.target is not None}
    assert targeted == {
        (bench_compare.COLD, bench_compare.FAIR_PEER, 1.05),
        (bench_compare.WARM, bench_compare.FAIR_BEARER, 1.1),
        (bench_compare.FIRST, bench_compare.FIRST_PEER, 1.25),
    }
    # The same timing appears beside each of its peers.
    cold = [row.per_call_us for row in rows if row.name == bench_compare.COLD]
    assert len(cold) == 2
    assert cold[0] == cold[1]


def test_first_contact_requests_each_come_from_a_new_agent() -> None:
    keys = SigningKeySet.generate()
    requests = bench_compare.first_contact_requests(keys, bench_compare.LIST_REPOS, 3)
    assert len({r.authorization for r in requests}) == 3
    assert len({r.proof.partition(".")[0] for r in requests}) == 3  # the jwk is in the header
    assert len({r.url for r in requests}) == 3
    verify = bench_compare.verify_each(
        bench_compare.ajwt_verifier(keys, cached=False), requests, bench_compare.LIST_REPOS
    )
    for _ in requests:
        verify()  # each is a valid A-JWT request


def test_delegation_sets_the_biscuit_target_on_warm_and_cold(
    report: bench_compare.Report,
) -> None:
    assert report.delegation is not None
    targeted = [row for row in report.delegation.rows if row.target is not None]
    assert [row.name for row in targeted] == [
        "A-JWT 3-hop Verifier.verify, cold (token + proof)",
        "A-JWT 3-hop Verifier.verify, warm (token cached)",
    ]
    assert all(row.peer == "Biscuit, 4 blocks: parse + authorize" for row in targeted)
    assert all(isinstance(row.meets_target, bool) for row in targeted)
    for row in report.delegation.rows:
        _well_formed(row)
    assert set(report.delegation.sizes) == {
        "ajwt_token",
        "ajwt_proof",
        "ajwt_token_eddsa",
        "biscuit",
        "macaroon",
    }


def test_scaling_reports_each_depth_with_its_token_size(report: bench_compare.Report) -> None:
    assert [row.depth for row in report.scaling] == [1, 2, 4]
    assert [row.agents for row in report.scaling] == [2, 3, 5]
    sizes = [row.token_bytes for row in report.scaling]
    assert sizes == sorted(sizes)
    assert all(row.cold_us > 0 and row.warm_us > 0 for row in report.scaling)


def test_client_measures_the_auth_flow_and_cold_mints(report: bench_compare.Report) -> None:
    assert report.client is not None
    flow = report.client.rows[1]
    assert flow.target == 1.5
    assert flow.peer == "raw ES256 sign (cryptography)"
    for row in report.client.rows:
        _well_formed(row)
    cc, ajwt = report.client.mints
    assert ajwt.count == cc.count == 3
    assert ajwt.target_p50_ms == bench_compare.MINT_TARGET_P50_MS
    assert ajwt.p99_ms >= ajwt.p50_ms > 0


def test_report_renders_markdown_and_json(report: bench_compare.Report) -> None:
    text = bench_compare.render_report(report)
    for heading in ("### 1.", "### 2.", "### 3a.", "### 3b.", "### 4.", "### 5.", "### Targets"):
        assert heading in text
    assert "skipped: not here" in text
    document = json.loads(bench_compare.report_json(report))
    assert set(document) >= {"machine", "verification", "delegation", "client", "scaling"}
    assert len(document["targets"]) == 7
    assert all(isinstance(t["met"], bool) for t in document["targets"])


@types.coroutine
def _yield_to_the_loop() -> Generator[None, None, None]:
    yield


def test_run_now_refuses_a_coroutine_that_suspends() -> None:
    async def suspending() -> None:
        await _yield_to_the_loop()

    with pytest.raises(RuntimeError, match="suspended"):
        bench_compare.run_now(suspending())


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_group_cpu_seconds_counts_this_process_group() -> None:
    seconds = bench_compare.group_cpu_seconds(os.getpgrp())
    assert seconds is not None
    assert seconds > 0

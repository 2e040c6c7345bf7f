"""Smoke test of ``benchmarks.bench_core``: tiny counts, well-formed rows; timings are
never asserted (see docs/performance.md)."""

from __future__ import annotations

from benchmarks import bench_core


def test_bench_core_reports_each_row_beside_its_stock_and_fair_peer() -> None:
    rows = bench_core.run(number=3, repeat=2)
    assert all(row.per_call_us > 0 for row in rows)
    pairs = [(row.name, row.peer, row.target) for row in rows if row.peer is not None]
    assert (bench_core.DECODE, bench_core.BEARER, None) in pairs
    assert (bench_core.DECODE, bench_core.FAIR_BEARER, 1.2) in pairs
    assert (bench_core.PROOF, bench_core.RAW, 1.3) in pairs
    assert (bench_core.PROOF, bench_core.FAIR_PROOF_JWS, None) in pairs
    assert all(row.ratio is not None and row.ratio > 0 for row in rows if row.peer)


def test_bench_core_main_runs_quick() -> None:
    assert bench_core.main(["--quick", "--number", "2", "--repeat", "2"]) == 0

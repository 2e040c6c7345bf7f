"""Timing helpers shared by the benchmark scripts: median-of-repeats, ratio tables."""

from __future__ import annotations

import json
import statistics
import timeit
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass


@dataclass
class Measurement:
    name: str
    per_call_us: float
    peer: str | None = None
    ratio: float | None = None
    target: float | None = None

    @property
    def meets_target(self) -> bool | None:
        if self.ratio is None or self.target is None:
            return None
        return self.ratio <= self.target


def measure(name: str, fn: Callable[[], object], *, number: int, repeat: int = 7) -> Measurement:
    """Median per-call time over ``repeat`` runs of ``number`` calls (after a warm-up)."""
    fn()
    runs = timeit.repeat(fn, number=number, repeat=repeat)
    return Measurement(name, statistics.median(runs) / number * 1e6)


def measure_side_by_side(
    fns: Mapping[str, Callable[[], object]], *, number: int, repeat: int = 7
) -> list[Measurement]:
    """Like :func:`measure` for several functions, timed in alternating rounds (each
    round runs every function ``number`` times), so drift in machine load hits them all
    alike; each gets the median per-call time of its ``repeat`` rounds."""
    timers = {name: timeit.Timer(fn) for name, fn in fns.items()}
    for fn in fns.values():
        fn()
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, timer in timers.items():
            runs[name].append(timer.timeit(number))
    return [Measurement(name, statistics.median(r) / number * 1e6) for name, r in runs.items()]


def compare(m: Measurement, peer: Measurement, target: float | None = None) -> Measurement:
    m.peer, m.ratio, m.target = peer.name, m.per_call_us / peer.per_call_us, target
    return m


def render(title: str, rows: list[Measurement]) -> str:
    lines = [
        f"### {title}",
        "",
        "| measurement | µs/call | peer | ratio | target | met |",
        "|---|---:|---|---:|---:|:-:|",
    ]
    for r in rows:
        ratio = f"{r.ratio:.2f}×" if r.ratio is not None else ""
        target = f"≤ {r.target:.2f}×" if r.target is not None else ""
        met = {True: "yes", False: "**no**", None: ""}[r.meets_target]
        lines.append(
            f"| {r.name} | {r.per_call_us:.1f} | {r.peer or ''} | {ratio} | {target} | {met} |"
        )
    return "\n".join(lines)


def as_dicts(rows: list[Measurement]) -> list[dict[str, object]]:
    """The rows as plain dicts (with ``meets_target``), for JSON documents of many tables."""
    return [asdict(r) | {"meets_target": r.meets_target} for r in rows]


def to_json(rows: list[Measurement]) -> str:
    return json.dumps(as_dicts(rows), indent=2, sort_keys=True)

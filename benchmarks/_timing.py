"""Timing helpers shared by the benchmark scripts: median-of-repeats, ratio tables, and
the machine a run was measured on."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import timeit
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


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


def machine() -> dict[str, Any]:
    """CPU count and model, Python, platform and the load average now."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def machine_line(m: dict[str, Any]) -> str:
    """One sentence for the top of a report."""
    line = (
        f"Machine: {m['cpus']} CPUs, {m['cpu_model']}, Python {m['python']}, load average "
        f"{' '.join(map(str, m['load_average']))} at the start"
    )
    if "load_average_after" in m:
        line += f", {' '.join(map(str, m['load_average_after']))} at the end"
    return line + "."

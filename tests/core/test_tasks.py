"""Stopping background tasks for sure (``ajwt_core._tasks``): a task that swallows a
cancellation, as redis-py's commands can on Python 3.11 (CPython gh-86296), is still
stopped, and whoever stops it does not wait forever."""

from __future__ import annotations

import asyncio
import doctest

import pytest

import ajwt_core._tasks
from ajwt_core._tasks import stop


def test_module_doctests_pass() -> None:
    assert doctest.testmod(ajwt_core._tasks).failed == 0


async def stubborn(swallow: int, seen: list[int]) -> None:
    """Runs on through its first ``swallow`` cancellations."""
    while True:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            seen.append(1)
            if len(seen) > swallow:
                raise


async def test_a_task_that_swallows_cancellations_is_cancelled_until_it_stops() -> None:
    seen: list[int] = []
    task = asyncio.create_task(stubborn(2, seen))
    await asyncio.sleep(0)
    await asyncio.wait_for(stop(task, recancel_after=0.05), 5)
    assert task.cancelled() and len(seen) == 3


async def test_a_well_behaved_task_is_cancelled_once() -> None:
    seen: list[int] = []
    tasks = [asyncio.create_task(stubborn(0, seen)) for _ in range(3)]
    await asyncio.sleep(0)
    await stop(*tasks)
    assert all(t.cancelled() for t in tasks) and len(seen) == 3


async def test_what_a_task_raised_is_retrieved_not_raised() -> None:
    async def broken() -> None:
        raise KeyError("kind")

    task = asyncio.create_task(broken())
    await asyncio.sleep(0)
    await stop(task)  # no "exception was never retrieved" either
    with pytest.raises(KeyError):
        task.result()

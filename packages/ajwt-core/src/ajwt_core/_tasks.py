"""Stopping background tasks for sure.

One ``task.cancel()`` is not always enough on Python 3.11: its ``asyncio.wait_for``
returns the awaited result, and drops the cancellation, when the cancellation lands just as
that result arrives (CPython gh-86296, fixed in 3.12). redis-py sends every command
through ``wait_for`` when its client has a socket timeout, as ours do, so a task following
Redis can shrug off a cancel and run on, and whoever awaits it waits forever.
:func:`stop` cancels again until the task has stopped.

>>> import asyncio
>>> async def forever() -> None:
...     while True:
...         await asyncio.sleep(1)
>>> async def main() -> bool:
...     task = asyncio.create_task(forever())
...     await asyncio.sleep(0)
...     await stop(task)
...     return task.cancelled()
>>> asyncio.run(main())
True
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

#: How long to wait for a cancelled task before cancelling it again.
RECANCEL_AFTER: Final = 0.5


async def stop(*tasks: asyncio.Task[Any], recancel_after: float = RECANCEL_AFTER) -> None:
    """Cancel ``tasks`` and return once every one of them has finished.

    A task that swallows a cancellation is cancelled again every ``recancel_after``
    seconds. What a task raised on its way out (other than its cancellation) is
    retrieved, so asyncio does not log it as never retrieved; it is not raised here.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=recancel_after)
    for task in tasks:
        if not task.cancelled():
            task.exception()

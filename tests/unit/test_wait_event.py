"""worker.scheduler.wait_event: a loop around it stops when cancelled, even when the cancel
arrives in the same step as the event (Python 3.11's wait_for loses that cancellation, which hung
the daemon's shutdown about once in fifteen starts)."""

from __future__ import annotations

import asyncio

from worker.scheduler import wait_event


async def test_cancel_arriving_with_the_event_stops_the_loop() -> None:
    event = asyncio.Event()

    async def loop() -> None:
        while True:
            await wait_event(event, 10)
            event.clear()
            await asyncio.sleep(0.01)

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.01)
    event.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1)
    assert task in done and task.cancelled()


async def test_returns_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 5) is True

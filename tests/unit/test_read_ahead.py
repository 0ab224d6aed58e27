"""worker.read_ahead.ReadAhead: what a run's page loop relies on (worker.sync.write_pages)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from worker.read_ahead import ReadAhead


class Source:
    """Items 0, 1, 2, … handed out when the test lets them through (`allow`), counting what
    was fetched; `fail_at`: the fetch of that item raises."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count, self.fail_at = count, fail_at
        self.allowed = asyncio.Semaphore(0)
        self.fetched = 0
        self.closed = False
        self.cancelled_at: int | None = None

    def allow(self, n: int = 1) -> None:
        for _ in range(n):
            self.allowed.release()

    async def items(self) -> AsyncIterator[int]:
        try:
            for n in range(self.count):
                try:
                    await self.allowed.acquire()
                except asyncio.CancelledError:
                    self.cancelled_at = n
                    raise
                if n == self.fail_at:
                    raise ValueError(f"item {n} is junk")
                self.fetched += 1
                yield n
        finally:
            self.closed = True


async def settle() -> None:
    for _ in range(20):  # (every task runs as far as it can)
        await asyncio.sleep(0)


async def test_each_step_hands_out_every_item_fetched_meanwhile_in_order() -> None:
    source = Source(10)
    ahead = ReadAhead(source.items(), depth=4)
    try:
        source.allow()
        assert await ahead.__anext__() == [0]
        source.allow(3)  # while the consumer works on [0], three more arrive
        await settle()
        assert await ahead.__anext__() == [1, 2, 3]
        source.allow(6)
        await settle()
        assert await ahead.__anext__() == [4, 5, 6, 7]  # depth: no more waits
        assert source.fetched == 8  # the ninth is not fetched while four wait
        await settle()
        assert await ahead.__anext__() == [8, 9]
        with pytest.raises(StopAsyncIteration):
            await ahead.__anext__()
    finally:
        await ahead.aclose()
    assert source.closed


async def test_a_fetch_error_comes_after_the_items_fetched_before_it() -> None:
    source = Source(10, fail_at=3)
    ahead = ReadAhead(source.items(), depth=8)
    try:
        source.allow(5)
        await settle()
        assert await ahead.__anext__() == [0, 1, 2]
        with pytest.raises(ValueError, match="item 3 is junk"):
            await ahead.__anext__()
    finally:
        await ahead.aclose()
    assert source.closed


async def test_closing_cancels_the_fetch_in_flight_and_drops_what_waits() -> None:
    source = Source(10)
    ahead = ReadAhead(source.items(), depth=8)
    source.allow()
    assert await ahead.__anext__() == [0]
    source.allow(2)
    await settle()  # 1 and 2 wait, 3 is being fetched (never allowed)
    await ahead.aclose()
    assert source.cancelled_at == 3 and source.closed
    assert source.fetched == 3

"""Read ahead: a connector's next pages are fetched while the current ones commit, so a run's
wall time approaches max(fetch, write) instead of their sum; the pages fetched meanwhile are
handed out together (committed in one transaction: its fixed costs paid once for all of them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")


class ReadAhead(Generic[T]):
    """`source`'s items, fetched ahead while the consumer works on those it took (commits
    them): each step hands out every item fetched by then, in order (at least one: it waits for
    the first), and fetching goes on meanwhile until `depth` items wait. So at most `depth`
    items wait, besides the one being fetched and those the consumer holds. A fetch's error is
    raised once the consumer has taken every item fetched before it (so those are committed
    first), as without reading ahead.

    `aclose()` (always call it, in a finally) cancels a fetch in flight, waits for it, then closes
    `source`: a consumer that stops (a failed commit, a stop, a cancelled run) leaves nothing
    running and nothing half-read; what was fetched ahead is dropped, never committed."""

    def __init__(self, source: AsyncIterator[T], depth: int) -> None:
        self._source = source
        self._depth = depth
        self._fetched: list[T] = []
        self._end: Exception | None = None  # StopAsyncIteration, or the error of a fetch
        self._arrived = asyncio.Event()  # an item or the end
        self._taken = asyncio.Event()  # the consumer took what waited
        self._fetching: asyncio.Future[None] | None = None

    def __aiter__(self) -> ReadAhead[T]:
        return self

    async def _fetch(self) -> None:
        while True:
            while len(self._fetched) >= self._depth:
                self._taken.clear()
                await self._taken.wait()
            try:
                item = await anext(self._source)
            except Exception as exc:  # (StopAsyncIteration is one)
                self._end = exc
                self._arrived.set()
                return
            self._fetched.append(item)
            self._arrived.set()

    async def __anext__(self) -> list[T]:
        if self._fetching is None:
            self._fetching = asyncio.ensure_future(self._fetch())
        while not self._fetched:
            if self._end is not None:
                raise self._end
            self._arrived.clear()
            await self._arrived.wait()
        taken, self._fetched = self._fetched, []
        self._taken.set()
        return taken

    async def aclose(self) -> None:
        fetching, self._fetching = self._fetching, None
        self._fetched = []
        if fetching is not None:
            fetching.cancel()
            await asyncio.wait([fetching])
            if not fetching.cancelled():
                fetching.exception()  # (retrieved: a fetch's errors are kept in _end, not here)
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None:
            await aclose()

"""Read one page ahead: the next page of a connector is fetched while the current one commits,
so a run's wall time approaches max(fetch, write) instead of their sum."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")

_END = object()  # (StopAsyncIteration cannot travel through a task's result)


class ReadAhead(Generic[T]):
    """`source`'s items, with the next one's fetch started as each is handed out: while the
    consumer works on item n (commits a page), item n+1 is fetched. Never more than one fetch
    ahead, so at most two items are held. A fetch's error is raised when the consumer asks for
    that item, as without reading ahead (so the items before it are committed first).

    `aclose()` (always call it, in a finally) cancels a fetch in flight, waits for it, then closes
    `source`: a consumer that stops (a failed commit, a stop, a cancelled run) leaves nothing
    running and nothing half-read; what was fetched ahead is dropped, never committed."""

    def __init__(self, source: AsyncIterator[T]) -> None:
        self._source = source
        self._ahead: asyncio.Future[object] | None = None

    def __aiter__(self) -> ReadAhead[T]:
        return self

    async def _fetch(self) -> object:
        try:
            return await anext(self._source)
        except StopAsyncIteration:
            return _END

    async def __anext__(self) -> T:
        if self._ahead is None:
            self._ahead = asyncio.ensure_future(self._fetch())
        item = await self._ahead  # (cancelled with its awaiter: aclose then reaps it)
        if item is _END:
            self._ahead = None
            raise StopAsyncIteration
        self._ahead = asyncio.ensure_future(self._fetch())  # the next, while this one is used
        return item  # type: ignore[return-value]

    async def aclose(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.cancel()
            await asyncio.wait([ahead])
            if not ahead.cancelled():
                ahead.exception()  # (retrieved: an error of a page nobody asked for is dropped)
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None:
            await aclose()

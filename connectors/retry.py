"""Retries of transient failures, shared by every connector (tenacity underneath).

Only `RetriableError` is retried. A server's `Retry-After` (carried on the error) is honoured;
otherwise jittered exponential backoff. A retry that would sleep past the run's deadline, or longer
than the context's cap, is not attempted: the error goes up and the next run resumes from the
committed cursor.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from connectors.base import ConnectorContext, RetriableError

T = TypeVar("T")


def backoff_seconds(attempt: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Full-jitter exponential backoff for attempt 1, 2, 3…"""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def retry_delay(exc: BaseException | None, attempt: int, ctx: ConnectorContext) -> float | None:
    """How long to wait before attempt `attempt + 1`, or None when we must give up."""
    if not isinstance(exc, RetriableError) or attempt >= ctx.max_retries:
        return None
    delay = exc.retry_after if exc.retry_after is not None else backoff_seconds(attempt)
    delay = max(0.0, delay)
    if delay > ctx.sleep_cap:
        return None
    if ctx.deadline is not None and time.monotonic() + delay > ctx.deadline:
        return None
    return delay


async def with_retries(ctx: ConnectorContext, what: str, call: Callable[[], Awaitable[T]]) -> T:
    """Run `call` until it succeeds, retrying RetriableError within the context's limits."""
    # tenacity asks `wait` first, then `stop` (so a stop rule can see the coming sleep):
    # decide once in `wait`, and let `stop` read that decision.
    planned: dict[int, float | None] = {}

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        planned[state.attempt_number] = retry_delay(exc, state.attempt_number, ctx)
        return planned[state.attempt_number] or 0.0

    def stop(state: RetryCallState) -> bool:
        return planned.get(state.attempt_number) is None

    def before_sleep(state: RetryCallState) -> None:
        ctx.on_wait(what, planned.get(state.attempt_number) or 0.0)

    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(RetriableError),
        stop=stop,
        wait=wait,
        before_sleep=before_sleep,
        reraise=True,
    ):
        with attempt:
            result = await call()
    return result


async def in_thread_with_retries(ctx: ConnectorContext, what: str, call: Callable[[], T]) -> T:
    """Run a blocking SDK call in a worker thread (never on the event loop), with retries."""

    async def attempt() -> T:
        return await asyncio.to_thread(call)

    return await with_retries(ctx, what, attempt)

"""connectors.retry: Retry-After honoured, bounded by attempts, cap and deadline."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from connectors.base import ConnectorContext, FatalError, RetriableError
from connectors.retry import with_retries


def context(**kw: object) -> tuple[ConnectorContext, list[tuple[str, float]]]:
    waits: list[tuple[str, float]] = []
    ctx = ConnectorContext(
        integration_id="t",
        token=SecretStr("x"),
        cache_dir=Path("/tmp"),
        on_wait=lambda what, s: waits.append((what, s)),
        **kw,
    )  # type: ignore[arg-type]
    return ctx, waits


def flaky(failures: list[BaseException]):  # type: ignore[no-untyped-def]
    calls = {"n": 0}

    async def call() -> str:
        calls["n"] += 1
        if failures:
            raise failures.pop(0)
        return "ok"

    return call, calls


async def test_retry_after_is_slept_and_reported() -> None:
    ctx, waits = context()
    call, calls = flaky([RetriableError("429", retry_after=0.3)])
    started = time.monotonic()
    assert await with_retries(ctx, "search", call) == "ok"
    assert time.monotonic() - started >= 0.29
    assert calls["n"] == 2 and waits == [("search", 0.3)]


async def test_gives_up_after_max_retries() -> None:
    ctx, _ = context(max_retries=3)
    call, calls = flaky([RetriableError("503", retry_after=0) for _ in range(10)])
    with pytest.raises(RetriableError):
        await with_retries(ctx, "x", call)
    assert calls["n"] == 3


async def test_fatal_errors_are_not_retried() -> None:
    ctx, waits = context()
    call, calls = flaky([FatalError("401")])
    with pytest.raises(FatalError):
        await with_retries(ctx, "x", call)
    assert calls["n"] == 1 and waits == []


async def test_never_sleeps_past_the_deadline_or_the_cap() -> None:
    ctx, waits = context(deadline=time.monotonic() + 1)
    call, calls = flaky([RetriableError("429", retry_after=30)])
    started = time.monotonic()
    with pytest.raises(RetriableError):
        await with_retries(ctx, "x", call)
    assert time.monotonic() - started < 0.5 and calls["n"] == 1 and waits == []

    ctx, _ = context(sleep_cap=2)
    call, calls = flaky([RetriableError("429", retry_after=10)])
    with pytest.raises(RetriableError):
        await with_retries(ctx, "x", call)
    assert calls["n"] == 1

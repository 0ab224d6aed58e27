"""Upkeep of `activity_logs` (partitioned by month, schema 0015): partitions made ahead, and
the retention an operator asked for. Both run as the schema's owner through the two functions
0015 installs, so a worker role without DDL rights can call them.

The daemon runs `upkeep` at start and once a day, `c9-sync migrate` after migrating. A failure is
logged, never fatal: the default partition takes any row whose month has no partition yet.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg

from worker import db
from worker.logs import get_logger
from worker.settings import Settings
from worker.store import activity as store

log = get_logger(__name__)

#: the rows about runs rather than items: all retention deletes unless items are asked for too
RUN_EVENTS = ("sync_started", "sync_completed", "sync_failed", "sync_interrupted")
EVERY_S = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Upkeep:
    made: list[str]  # partitions created
    deleted: int = 0  # rows deleted by retention
    dropped: int = 0  # monthly partitions dropped whole by retention


async def make_partitions(conn: asyncpg.Connection | asyncpg.Pool, months_ahead: int) -> list[str]:
    """The partitions of this month and the next `months_ahead` that did not exist yet."""
    return await store.make_partitions(conn, months_ahead)


async def trim(
    conn: asyncpg.Connection | asyncpg.Pool, run_months: int | None, item_months: int | None
) -> tuple[int, int]:
    """Retention: (rows deleted, partitions dropped). None months: nothing of that kind goes."""
    if run_months is None and item_months is None:
        return 0, 0
    return await store.trim(conn, run_months, RUN_EVENTS, item_months)


async def upkeep(conn: asyncpg.Connection | asyncpg.Pool, settings: Settings) -> Upkeep:
    made = await make_partitions(conn, settings.activity_partitions_ahead)
    deleted, dropped = await trim(
        conn, settings.activity_retention_months, settings.activity_item_retention_months
    )
    done = Upkeep(made, deleted, dropped)
    if made or deleted or dropped:
        log.info("activity_upkeep", made=made, deleted=deleted, dropped=dropped)
    return done


async def keep_up(pool: asyncpg.Pool, settings: Settings) -> None:
    """The daemon's side task: `upkeep` now and every day, until cancelled. A failure is logged
    and tried again the next day (rows land in the default partition meanwhile): it never ends
    the task, whose end would stop the daemon."""
    while True:
        try:
            await upkeep(pool, settings)
        except db.FAILURES as exc:
            log.error("activity_upkeep_failed", error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(EVERY_S)

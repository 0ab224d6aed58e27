"""activity_logs' partitions and retention (schema 0015): the two functions the migration
installs, called as they are (they run as the schema's owner)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg


async def make_partitions(conn: asyncpg.Connection | asyncpg.Pool, months_ahead: int) -> list[str]:
    """The partitions of this month and the next `months_ahead` that did not exist yet."""
    rows = await conn.fetch("SELECT activity_logs_make_partitions($1) AS made", months_ahead)
    return [r["made"] for r in rows]


async def trim(
    conn: asyncpg.Connection | asyncpg.Pool,
    run_months: int | None,
    run_events: Sequence[str],
    item_months: int | None,
) -> tuple[int, int]:
    """(rows deleted, monthly partitions dropped) by the retention of `run_events` rows older
    than `run_months` and of the others older than `item_months` (None: kept)."""
    rows = await conn.fetch(
        "SELECT what, n FROM activity_logs_trim($1, $2, $3)",
        run_months,
        list(run_events),
        item_months,
    )
    done = {r["what"]: r["n"] for r in rows}
    return done["deleted"], done["dropped"]

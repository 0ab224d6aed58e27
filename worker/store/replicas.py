"""The live replicas, as PostgreSQL sees them: each daemon's LISTEN connection carries its name
in `application_name`, and runs a statement every few seconds (worker.scheduler). A replica is
live while that connection exists and has been active lately; a process that exits or is killed
leaves at once (its connection closes), a host that vanishes without closing its connections
within `stale_after` seconds.

`pg_stat_activity` shows another role's sessions without their times: replicas that connect as
different roles (without `pg_read_all_stats`) do not see each other, and each ticks everything,
as before replicas shared ticks."""

from __future__ import annotations

import asyncpg

#: What precedes a replica's name in its LISTEN connection's `application_name`.
PREFIX = "c9-sync replica "


async def announce(conn: asyncpg.Connection, name: str) -> None:
    """Mark `conn` (the replica's LISTEN connection) as the replica `name`'s."""
    await conn.execute("SELECT set_config('application_name', $1, false)", PREFIX + name)


async def live(conn: asyncpg.Connection | asyncpg.Pool, stale_after: float) -> frozenset[str]:
    """The names of the replicas of this database whose connection was active within
    `stale_after` seconds."""
    rows = await conn.fetch(
        "SELECT DISTINCT substr(application_name, length($1) + 1) AS name"
        " FROM pg_stat_activity"
        " WHERE datname = current_database() AND starts_with(application_name, $1)"
        "   AND state_change > now() - make_interval(secs => $2)",
        PREFIX,
        stale_after,
        timeout=stale_after,
    )
    return frozenset(r["name"] for r in rows)

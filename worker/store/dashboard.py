"""What the demo prints: a team's rows as a dashboard reads them (tables and `v_*` views)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import TypeAlias

import asyncpg

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def status_counts(conn: Conn, team_id: uuid.UUID) -> list[asyncpg.Record]:
    """(source, status, n) of the team's work items."""
    return await conn.fetch(
        "SELECT source, status, count(*) AS n FROM work_items WHERE team_id = $1"
        " GROUP BY source, status",
        team_id,
    )


async def work_queue(conn: Conn, team_id: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    """The head of `v_team_work_queue` with each item's human key."""
    return await conn.fetch(
        "SELECT q.source, w.external_key, q.title, q.status, q.priority FROM v_team_work_queue q"
        " JOIN work_items w ON w.id = q.id WHERE q.team_id = $1 LIMIT $2",
        team_id,
        limit,
    )


async def recent_metrics(
    conn: Conn, team_id: uuid.UUID, today: date, days: int
) -> list[asyncpg.Record]:
    """The team's `metrics` rows of the last `days` days up to `today`, oldest first."""
    return await conn.fetch(
        "SELECT metric_date, stories_completed, commits_count, avg_completion_time_hours"
        " FROM metrics WHERE team_id = $1 AND metric_date > $2::date - $3::int"
        " ORDER BY metric_date",
        team_id,
        today,
        days,
    )


async def activity_counts(conn: Conn, team_id: uuid.UUID) -> list[asyncpg.Record]:
    """(event_type, n) of the team's `activity_logs`."""
    return await conn.fetch(
        "SELECT event_type, count(*) AS n FROM activity_logs WHERE team_id = $1"
        " GROUP BY event_type ORDER BY event_type",
        team_id,
    )

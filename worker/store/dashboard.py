"""What the demo prints: a team's rows as a dashboard reads them (tables and `v_*` views)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
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


async def last_runs(conn: Conn, team_id: uuid.UUID) -> list[asyncpg.Record]:
    """(integration_id, created_at, event_type, metadata) of the newest run row in
    `activity_logs` (completed, failed or interrupted) of each of the team's integrations."""
    return await conn.fetch(
        "SELECT i.id AS integration_id, a.created_at, a.event_type, a.metadata"
        " FROM integrations i CROSS JOIN LATERAL ("
        "   SELECT created_at, event_type, metadata FROM activity_logs a"
        "   WHERE a.team_id = i.team_id"
        "     AND a.event_type IN ('sync_completed', 'sync_failed', 'sync_interrupted')"
        "     AND a.metadata->>'integration_id' = i.id::text"
        "   ORDER BY a.created_at DESC LIMIT 1) a"
        " WHERE i.team_id = $1",
        team_id,
    )


async def recent_activity(conn: Conn, team_id: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    """The team's newest `v_recent_activity` rows (id, created_at, event_type, message, and the
    item's source and external_key when the row is about one), newest first."""
    return await conn.fetch(
        "SELECT id, created_at, event_type, message, source, external_key"
        " FROM v_recent_activity WHERE team_id = $1"
        " ORDER BY created_at DESC, id DESC LIMIT $2",
        team_id,
        limit,
    )


async def items_changed_since(
    conn: Conn, team_id: uuid.UUID, since: datetime
) -> list[asyncpg.Record]:
    """(source, external_key, source_updated_at, updated_at) of the team's work items whose
    upstream change time (`source_updated_at`) is at `since` or later."""
    return await conn.fetch(
        "SELECT source, external_key, source_updated_at, updated_at FROM work_items"
        " WHERE team_id = $1 AND source_updated_at >= $2",
        team_id,
        since,
    )

"""The daily metrics rollup's SQL: recompute a team's days, the days instants fall on, each
team's extent, and today in the metrics time zone. The rules are in `worker.metrics`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime

import asyncpg

from worker.store import notify

# Day windows are widened by this margin and then filtered on the exact local date: where a
# time zone falls back at midnight (America/Havana), "00:00" names two instants and the bounds
# alone would put the first hour of the day into the day before.
RECOMPUTE = """
WITH days AS (
    SELECT DISTINCT d AS day FROM unnest($2::date[]) AS d WHERE d IS NOT NULL
),
counted AS (
    SELECT days.day, w.stories, w.avg_hours, a.commits, a.conflicts
    FROM days
    CROSS JOIN LATERAL (
        SELECT count(*)::int AS stories,
               round(avg(extract(epoch FROM wi.completed_at - wi.started_at))
                         FILTER (WHERE wi.started_at <= wi.completed_at) / 3600, 2) AS avg_hours
        FROM work_items wi
        WHERE wi.team_id = $1
          AND wi.completed_at IS NOT NULL AND wi.removed_upstream_at IS NULL
          AND wi.completed_at >= (days.day::timestamp AT TIME ZONE $3) - interval '3 hours'
          AND wi.completed_at < ((days.day + 1)::timestamp AT TIME ZONE $3) + interval '3 hours'
          AND (wi.completed_at AT TIME ZONE $3)::date = days.day
    ) w
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE al.event_type = 'commit_created')::int AS commits,
               count(*) FILTER (WHERE al.event_type = 'conflict_detected')::int AS conflicts
        FROM activity_logs al
        WHERE al.team_id = $1
          AND al.event_type IN ('commit_created', 'conflict_detected')
          AND al.created_at >= (days.day::timestamp AT TIME ZONE $3) - interval '3 hours'
          AND al.created_at < ((days.day + 1)::timestamp AT TIME ZONE $3) + interval '3 hours'
          AND (al.created_at AT TIME ZONE $3)::date = days.day
    ) a
),
upserted AS (
    INSERT INTO metrics AS m (team_id, metric_date, stories_completed, commits_count,
                              conflicts_count, avg_completion_time_hours)
    SELECT $1, day, stories, commits, conflicts, avg_hours
    FROM counted
    WHERE $4 OR stories > 0 OR commits > 0 OR conflicts > 0
    ON CONFLICT (team_id, metric_date) DO UPDATE SET
        stories_completed = EXCLUDED.stories_completed,
        commits_count = EXCLUDED.commits_count,
        conflicts_count = EXCLUDED.conflicts_count,
        avg_completion_time_hours = EXCLUDED.avg_completion_time_hours
    WHERE (m.stories_completed, m.commits_count, m.conflicts_count, m.avg_completion_time_hours)
          IS DISTINCT FROM (EXCLUDED.stories_completed, EXCLUDED.commits_count,
                            EXCLUDED.conflicts_count, EXCLUDED.avg_completion_time_hours)
    RETURNING 1
),
deleted AS (
    DELETE FROM metrics m
    USING counted c
    WHERE NOT $4 AND m.team_id = $1 AND m.metric_date = c.day
      AND c.stories = 0 AND c.commits = 0 AND c.conflicts = 0
    RETURNING 1
)
SELECT (SELECT count(*) FROM upserted)::int AS written,
       (SELECT count(*) FROM deleted)::int AS deleted
"""

# The local dates of the given instants, plus today and yesterday.
_TOUCHED_DAYS = """
SELECT array_agg(DISTINCT d ORDER BY d) FROM (
    SELECT (unnest($1::timestamptz[]) AT TIME ZONE $2)::date AS d
    UNION ALL SELECT (now() AT TIME ZONE $2)::date
    UNION ALL SELECT (now() AT TIME ZONE $2)::date - 1
) x
"""

# Per team: the first and last day with anything to count or an existing row, and today.
_TEAM_EXTENT = """
SELECT t.id, t.name,
       (now() AT TIME ZONE $2)::date AS today,
       LEAST(
           (SELECT (min(completed_at) AT TIME ZONE $2)::date FROM work_items
             WHERE team_id = t.id AND completed_at IS NOT NULL AND removed_upstream_at IS NULL),
           (SELECT (min(created_at) AT TIME ZONE $2)::date FROM activity_logs
             WHERE team_id = t.id AND event_type IN ('commit_created', 'conflict_detected')),
           (SELECT min(metric_date) FROM metrics WHERE team_id = t.id)
       ) AS first_day,
       GREATEST(
           (SELECT (max(completed_at) AT TIME ZONE $2)::date FROM work_items
             WHERE team_id = t.id AND completed_at IS NOT NULL AND removed_upstream_at IS NULL),
           (SELECT (max(created_at) AT TIME ZONE $2)::date FROM activity_logs
             WHERE team_id = t.id AND event_type IN ('commit_created', 'conflict_detected')),
           (SELECT max(metric_date) FROM metrics WHERE team_id = t.id)
       ) AS last_day
FROM teams t
WHERE $1::text IS NULL OR t.name = $1
ORDER BY t.name
"""

_LOCK_TEAM = "SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text))"


async def recompute_days(
    conn: asyncpg.Connection,
    team_id: uuid.UUID,
    days: Sequence[date],
    tz: str,
    fill_zeros: bool,
) -> tuple[int, int]:
    """Recompute the team's rows for exactly these days, in one statement under the team's lock
    (inside a caller's transaction the lock is held until that transaction ends). Returns
    (rows written, rows deleted)."""
    async with conn.transaction():
        await conn.execute(_LOCK_TEAM, notify.METRICS_LOCK_NAMESPACE, team_id)
        row = await conn.fetchrow(RECOMPUTE, team_id, list(days), tz, fill_zeros)
    assert row is not None
    return row["written"], row["deleted"]


async def touched_days(conn: asyncpg.Connection, stamps: Sequence[datetime], tz: str) -> list[date]:
    days: list[date] | None = await conn.fetchval(_TOUCHED_DAYS, list(stamps), tz)
    return list(days or [])


async def team_extents(conn: asyncpg.Connection, team: str | None, tz: str) -> list[asyncpg.Record]:
    """Per team (or the one named): id, name, today, first_day, last_day."""
    return await conn.fetch(_TEAM_EXTENT, team, tz)


async def team_exists(conn: asyncpg.Connection, name: str) -> bool:
    known: bool = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM teams WHERE name = $1)", name)
    return known


async def local_today(conn: asyncpg.Connection, tz: str) -> date:
    """Today in `tz` by the database's clock. ValueError when PostgreSQL does not know the zone
    (its time-zone database can differ from Python's): a daemon can call this at start."""
    try:
        today: date = await conn.fetchval("SELECT (now() AT TIME ZONE $1)::date", tz)
    except asyncpg.InvalidParameterValueError:
        raise ValueError(
            f"C9_SYNC_METRICS_TZ: PostgreSQL does not know the time zone {tz!r}"
        ) from None
    return today

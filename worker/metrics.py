"""Daily metrics per team: one `metrics` row per (team, day), recomputed from the source rows.

A day is a calendar date in one time zone (`C9_SYNC_METRICS_TZ`, default UTC). For a team and day:

- `stories_completed`: work items of the team whose `completed_at` falls on that day, not counting
  items removed upstream (`removed_upstream_at` set): a deleted ticket is not a delivered story.
- `commits_count` / `conflicts_count`: `activity_logs` rows of the team with `event_type`
  `commit_created` / `conflict_detected` (written by the agents) created that day.
- `avg_completion_time_hours`: mean of `completed_at - started_at` over that day's completions
  whose start is known and not after the completion; NULL when there is none.

A row exists only for a day with something to count; a recomputed day left with nothing (its
only completion moved away) has its row deleted, unless zeros were asked for (`--fill-zeros`).
Recomputing is idempotent: the same inputs give the same row, and an unchanged row is not
rewritten (its `id` and `created_at` are kept either way).

Recomputes of one team are serialized by a transaction-level advisory lock, and each computes
after taking it: the last recompute to run sees every change committed before it, so two runs
finishing at once cannot leave an older count behind.
"""

from __future__ import annotations

import argparse
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from worker.settings import Settings

# Second key of the two-key advisory lock: one lock per team ("mt").
_LOCK_NAMESPACE = 0x6D74

# Day windows are widened by this margin and then filtered on the exact local date: where a
# time zone falls back at midnight (America/Havana), "00:00" names two instants and the bounds
# alone would put the first hour of the day into the day before.
_RECOMPUTE = """
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

# Days recomputed per statement (per transaction) in a range rollup: bounds memory and lock time.
_CHUNK_DAYS = 366
# A range longer than this on the command line is a typo (year 0202 for 2025).
MAX_RANGE_DAYS = 36_600


@dataclass(frozen=True, slots=True)
class Recomputed:
    written: int = 0  # rows inserted or changed
    deleted: int = 0  # stale rows removed (days left with nothing to count)
    days: int = 0  # (team, day) pairs recomputed
    teams: int = 0

    def __add__(self, other: Recomputed) -> Recomputed:
        return Recomputed(
            self.written + other.written,
            self.deleted + other.deleted,
            self.days + other.days,
            self.teams + other.teams,
        )


async def recompute_days(
    conn: asyncpg.Connection,
    team_id: uuid.UUID,
    days: Sequence[date],
    tz: str,
    *,
    fill_zeros: bool = False,
) -> Recomputed:
    """Recompute the team's rows for exactly these days (in `tz`), in one statement under the
    team's lock. Inside a caller's transaction the lock is held until that transaction ends."""
    unique = sorted(set(days))
    if not unique:
        return Recomputed()
    async with conn.transaction():
        await conn.execute(_LOCK_TEAM, _LOCK_NAMESPACE, team_id)
        row = await conn.fetchrow(_RECOMPUTE, team_id, unique, tz, fill_zeros)
    assert row is not None
    return Recomputed(row["written"], row["deleted"], len(unique), 1)


async def touched_days(
    conn: asyncpg.Connection, timestamps: Iterable[datetime], tz: str
) -> list[date]:
    """The dates (in `tz`) the instants fall on, plus today and yesterday."""
    stamps = [t for t in timestamps if t is not None]
    days: list[date] | None = await conn.fetchval(_TOUCHED_DAYS, stamps, tz)
    return list(days or [])


async def recompute_touched(
    conn: asyncpg.Connection, team_id: uuid.UUID, timestamps: Iterable[datetime], tz: str
) -> int:
    """Recompute the team's metrics rows for the days (in `tz`) these timestamps fall on, and for
    today and yesterday (agents log commits and conflicts at any time; this keeps those counts
    current, and settles yesterday's after midnight). Returns the number of rows written
    (inserted, changed or deleted). Called by the sync run after its last page."""
    days = await touched_days(conn, timestamps, tz)
    result = await recompute_days(conn, team_id, days, tz)
    return result.written + result.deleted


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


@dataclass(frozen=True, slots=True)
class TeamRange:
    team_id: uuid.UUID
    name: str
    first: date
    last: date


async def plan_rollup(
    conn: asyncpg.Connection,
    tz: str,
    *,
    team: str | None = None,
    since: date | None = None,
    until: date | None = None,
) -> list[TeamRange]:
    """The range to recompute per team. Defaults: from the team's first day with anything to count
    (or an existing row) to the later of today and its last such day."""
    plans = []
    for r in await conn.fetch(_TEAM_EXTENT, team, tz):
        today: date = r["today"]
        first = since or r["first_day"] or today
        last = until or max(d for d in (today, r["last_day"], since) if d is not None)
        if first <= last:
            plans.append(TeamRange(r["id"], r["name"], first, last))
    return plans


async def rollup(
    conn: asyncpg.Connection,
    tz: str,
    *,
    team: str | None = None,
    since: date | None = None,
    until: date | None = None,
    fill_zeros: bool = False,
) -> Recomputed:
    """Recompute every day of a range for one team or all: a chunk of days per statement, one
    transaction per chunk (a long backfill never holds a team's lock for long)."""
    total = Recomputed()
    for plan in await plan_rollup(conn, tz, team=team, since=since, until=until):
        team_total = Recomputed()
        start = plan.first
        while start <= plan.last:
            end = min(plan.last, start + timedelta(days=_CHUNK_DAYS - 1))
            days = [start + timedelta(days=k) for k in range((end - start).days + 1)]
            team_total += await recompute_days(conn, plan.team_id, days, tz, fill_zeros=fill_zeros)
            start = end + timedelta(days=1)
        total += Recomputed(team_total.written, team_total.deleted, team_total.days, 1)
    return total


# ---------------------------------------------------------------------------------------------
# c9-sync metrics rollup
# ---------------------------------------------------------------------------------------------
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_day(value: str, option: str, today: date) -> date:
    """A day on the command line: YYYY-MM-DD, `today` or `yesterday` (in the metrics zone)."""
    word = value.strip().lower()
    if word == "today":
        return today
    if word == "yesterday":
        return today - timedelta(days=1)
    if _ISO_DATE.match(word):
        try:
            return date.fromisoformat(word)
        except ValueError:
            pass
    raise _usage(f"{option}: not a date: {value!r} (use YYYY-MM-DD, today or yesterday)")


def _usage(message: str) -> Exception:
    from worker.cli import UsageError  # lazily: cli imports this module

    return UsageError(message)


async def cmd_rollup(args: argparse.Namespace, settings: Settings, url: str) -> int:
    from worker import daemon, db, views

    tz = settings.metrics_tz
    await daemon.ensure_schema(url, settings, ("core",))
    conn = await db.connect(url)
    try:
        try:
            today = await local_today(conn, tz)
        except ValueError as exc:
            raise _usage(str(exc)) from None
        since = parse_day(args.since, "--since", today) if args.since else None
        until = parse_day(args.until, "--until", today) if args.until else None
        if since and until and since > until:
            raise _usage(f"--since {since} is after --until {until}")
        if since and (max(until or today, today) - since).days + 1 > MAX_RANGE_DAYS:
            raise _usage(f"--since {since}: range longer than {MAX_RANGE_DAYS} days (a typo?)")
        if args.team is not None:
            known = await conn.fetchval("SELECT count(*) FROM teams WHERE name = $1", args.team)
            if not known:
                raise _usage(f"no team named {args.team!r}")
        done = await rollup(
            conn, tz, team=args.team, since=since, until=until, fill_zeros=args.fill_zeros
        )
    finally:
        await conn.close()
    span = f"{since or 'first day'}..{until or 'last day'}"
    views.say(
        f"metrics rollup ({span}, {tz}): {done.teams} team(s), {done.days} day(s) recomputed,"
        f" {done.written} row(s) written, {done.deleted} deleted"
    )
    return 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `c9-sync metrics …` to the `c9-sync` parser."""
    metrics = sub.add_parser("metrics", help="daily team metrics (the `metrics` table)")
    msub = metrics.add_subparsers(dest="metrics_command", metavar="SUBCOMMAND", required=True)
    p = msub.add_parser(
        "rollup",
        help="recompute daily metrics for a range of days (backfill, time-zone change, repair)",
        description="Recompute the `metrics` rows of a range of days, in C9_SYNC_METRICS_TZ."
        " Default range per team: its first day with a completion, a commit, a conflict or an"
        " existing row, through today. Idempotent.",
    )
    p.add_argument("--since", metavar="DATE", help="first day (YYYY-MM-DD, today, yesterday)")
    p.add_argument(
        "--until",
        metavar="DATE",
        help="last day, included (default: today, or a team's last day with data if later)",
    )
    p.add_argument("--team", metavar="NAME", help="only this team (default: every team)")
    p.add_argument(
        "--fill-zeros",
        action="store_true",
        help="write a row of zeros for days with no activity (default: such days get no row)",
    )
    p.set_defaults(func=cmd_rollup)

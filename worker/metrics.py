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

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from worker.store import metrics as store
from worker.store.metrics import local_today

__all__ = ["QUIET_REFRESH", "QuietRefresh", "Recomputed", "TeamRange", "local_today",
           "plan_rollup", "quarter_hour", "recompute_days", "recompute_touched", "rollup",
           "touched_days"]  # fmt: skip

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
    written, deleted = await store.recompute_days(conn, team_id, unique, tz, fill_zeros)
    return Recomputed(written, deleted, len(unique), 1)


def quarter_hour(at: datetime) -> datetime:
    """The UTC quarter hour `at` falls in. Every time zone's offset since the 1970s is a whole
    number of quarter hours, so the instants of one UTC quarter hour fall on one local date in
    any zone: a run keeps the quarter hours it touched (a set bounded by time) instead of every
    completion time (a 1,000,000-item import held them all)."""
    at = at.astimezone(UTC)
    return at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)


async def touched_days(
    conn: asyncpg.Connection, timestamps: Iterable[datetime], tz: str
) -> list[date]:
    """The dates (in `tz`) the instants fall on, plus today and yesterday."""
    return await store.touched_days(conn, [t for t in timestamps if t is not None], tz)


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


class QuietRefresh:
    """When a run that changed nothing still recomputes its team's today and yesterday (for the
    agents' commits and conflicts, and yesterday's settling after midnight): when this process
    has not done so for the team within `every` seconds. Every run did it before: two
    statements of each no-op run, at 10,000 integrations most of the metrics work."""

    def __init__(self) -> None:
        self._last: dict[uuid.UUID, float] = {}  # team -> monotonic time of its last recompute

    def due(self, team_id: uuid.UUID, every: float) -> bool:
        last = self._last.get(team_id)
        return last is None or time.monotonic() - last >= every

    def done(self, team_id: uuid.UUID) -> None:
        self._last[team_id] = time.monotonic()


QUIET_REFRESH = QuietRefresh()  # per process: each replica refreshes its own runs' teams


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
    for r in await store.team_extents(conn, team, tz):
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

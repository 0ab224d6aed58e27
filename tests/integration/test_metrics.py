"""Daily metrics and the dashboard views, on a real PostgreSQL.

Fixed dates in 2025 keep the numbers exact; `recompute_touched` also recomputes today and
yesterday, which hold nothing here unless a test puts something there.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from connectors.base import Status
from tests.fake_connector import T0, Upstream, fake_connector_class
from tests.helpers import make_agent, make_integration, make_team, make_work_item, succeeded_run
from worker import db, metrics, sync
from worker.settings import Settings
from worker.store import metrics as metrics_store

Row = tuple[str, date, int, int, int, Decimal | None]


def at(text: str) -> datetime:
    """An aware instant from 'YYYY-MM-DD HH:MM' (UTC)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def completed(
    conn: asyncpg.Connection,
    team: uuid.UUID,
    ext: str,
    done: str,
    *,
    hours: float | None = None,
    **columns: Any,
) -> uuid.UUID:
    """A completed item; started `hours` before completion (None: start unknown)."""
    end = at(done)
    start = end - timedelta(hours=hours) if hours is not None else None
    return await make_work_item(
        conn, team, ext, "completed", started_at=start, completed_at=end, **columns
    )


async def log(conn: asyncpg.Connection, team: uuid.UUID, event: str, when: datetime) -> None:
    await conn.execute(
        "INSERT INTO activity_logs (team_id, event_type, message, created_at)"
        " VALUES ($1, $2, 'x', $3)",
        team,
        event,
        when,
    )


async def table(conn: asyncpg.Connection | asyncpg.Pool) -> list[Row]:
    rows = await conn.fetch(
        "SELECT t.name, m.metric_date, m.stories_completed, m.commits_count, m.conflicts_count,"
        "       m.avg_completion_time_hours"
        " FROM metrics m JOIN teams t ON t.id = m.team_id ORDER BY t.name, m.metric_date"
    )
    return [tuple(r.values()) for r in rows]  # type: ignore[misc]


def d(text: str) -> date:
    return date.fromisoformat(text)


# ---------------------------------------------------------------------------------------------
# What a day counts
# ---------------------------------------------------------------------------------------------
async def test_completions_commits_and_conflicts_per_day_in_two_teams(
    conn: asyncpg.Connection,
) -> None:
    a = await make_team(conn, "Alpha")
    b = await make_team(conn, "Beta")
    await completed(conn, a, "A1", "2025-03-01 09:00", hours=2)
    await completed(conn, a, "A2", "2025-03-01 17:00", hours=4)
    await completed(conn, a, "A3", "2025-03-02 10:00")  # start unknown: not in the mean
    await completed(conn, a, "A4", "2025-03-04 12:00", hours=10.5)
    await completed(conn, a, "A5", "2025-03-04 13:00")
    await completed(conn, b, "B1", "2025-03-01 23:59", hours=1)
    # Not completions: open, in progress, cancelled; and an item with no team.
    await make_work_item(conn, a, "A6", "in_progress", started_at=at("2025-03-01 08:00"))
    await make_work_item(conn, a, "A7", "queued")
    await make_work_item(conn, a, "A8", "cancelled")
    await completed(conn, None, "N1", "2025-03-01 12:00", hours=1)
    for _ in range(2):
        await log(conn, a, "commit_created", at("2025-03-02 08:00"))
    await log(conn, a, "conflict_detected", at("2025-03-03 11:00"))
    await log(conn, b, "commit_created", at("2025-03-01 00:00"))
    # The sync's own rows are not commits.
    await log(conn, b, "work_item_updated", at("2025-03-01 10:00"))
    await log(conn, b, "sync_completed", at("2025-03-01 10:00"))

    done = await metrics.rollup(conn, "UTC", since=d("2025-03-01"), until=d("2025-03-05"))

    assert await table(conn) == [
        ("Alpha", d("2025-03-01"), 2, 0, 0, Decimal("3.00")),
        ("Alpha", d("2025-03-02"), 1, 2, 0, None),
        ("Alpha", d("2025-03-03"), 0, 0, 1, None),
        ("Alpha", d("2025-03-04"), 2, 0, 0, Decimal("10.50")),
        ("Beta", d("2025-03-01"), 1, 1, 0, Decimal("1.00")),
    ]
    assert done == metrics.Recomputed(written=5, deleted=0, days=10, teams=2)


async def test_recompute_is_idempotent_and_keeps_the_row(conn: asyncpg.Connection) -> None:
    team = await make_team(conn, "Alpha")
    await completed(conn, team, "A1", "2025-04-02 10:00", hours=3)
    await completed(conn, team, "A2", "2025-04-02 11:00", hours=1)
    stamps = [at("2025-04-02 10:00"), at("2025-04-02 11:00")]

    assert await metrics.recompute_touched(conn, team, stamps, "UTC") == 1
    first = await conn.fetchrow("SELECT * FROM metrics")
    assert await metrics.recompute_touched(conn, team, stamps, "UTC") == 0
    assert (await metrics.rollup(conn, "UTC")).written == 0
    assert await conn.fetch("SELECT * FROM metrics") == [first]

    # A change is written into the same row: id and created_at are kept.
    await conn.execute("UPDATE work_items SET started_at = completed_at - interval '5 hours'")
    assert await metrics.recompute_touched(conn, team, stamps[:1], "UTC") == 1
    second = await conn.fetchrow("SELECT * FROM metrics")
    assert (second["id"], second["created_at"]) == (first["id"], first["created_at"])
    assert (second["stories_completed"], second["avg_completion_time_hours"]) == (
        2,
        Decimal("5.00"),
    )


async def test_team_with_no_completions_gets_no_rows_unless_zeros_are_asked(
    conn: asyncpg.Connection,
) -> None:
    busy = await make_team(conn, "Busy")
    await make_team(conn, "Idle")
    await completed(conn, busy, "B1", "2025-06-02 12:00", hours=2)

    await metrics.rollup(conn, "UTC", since=d("2025-06-01"), until=d("2025-06-03"))
    assert [(r[0], r[1]) for r in await table(conn)] == [("Busy", d("2025-06-02"))]

    filled = await metrics.rollup(
        conn, "UTC", since=d("2025-06-01"), until=d("2025-06-03"), fill_zeros=True
    )
    assert filled.written == 5  # 3 days of Idle, 2 empty days of Busy
    assert await table(conn) == [
        ("Busy", d("2025-06-01"), 0, 0, 0, None),
        ("Busy", d("2025-06-02"), 1, 0, 0, Decimal("2.00")),
        ("Busy", d("2025-06-03"), 0, 0, 0, None),
        ("Idle", d("2025-06-01"), 0, 0, 0, None),
        ("Idle", d("2025-06-02"), 0, 0, 0, None),
        ("Idle", d("2025-06-03"), 0, 0, 0, None),
    ]

    # Without --fill-zeros a range recompute removes the zero rows again, inside the range only.
    await metrics.rollup(conn, "UTC", team="Idle", since=d("2025-06-02"), until=d("2025-06-03"))
    assert [(r[0], r[1]) for r in await table(conn) if r[0] == "Idle"] == [
        ("Idle", d("2025-06-01"))
    ]


async def test_default_range_runs_from_first_data_day_per_team(conn: asyncpg.Connection) -> None:
    old = await make_team(conn, "Old")
    new = await make_team(conn, "New")
    await completed(conn, old, "O1", "2025-01-10 12:00")
    await log(conn, new, "commit_created", at("2025-02-20 12:00"))
    plans = {p.name: p for p in await metrics.plan_rollup(conn, "UTC")}
    today = await conn.fetchval("SELECT (now() AT TIME ZONE 'UTC')::date")
    assert (plans["Old"].first, plans["Old"].last) == (d("2025-01-10"), today)
    assert (plans["New"].first, plans["New"].last) == (d("2025-02-20"), today)
    done = await metrics.rollup(conn, "UTC", fill_zeros=True)
    assert done.days == (today - d("2025-01-10")).days + 1 + (today - d("2025-02-20")).days + 1
    assert await conn.fetchval("SELECT min(metric_date) FROM metrics WHERE team_id = $1", new) == (
        d("2025-02-20")
    )


async def test_removed_upstream_items_are_not_completed_stories(conn: asyncpg.Connection) -> None:
    team = await make_team(conn, "Alpha")
    await completed(conn, team, "A1", "2025-05-05 10:00", hours=1)
    gone = await completed(conn, team, "A2", "2025-05-05 11:00", hours=9)
    stamps = [at("2025-05-05 10:00")]
    await metrics.recompute_touched(conn, team, stamps, "UTC")
    assert await table(conn) == [("Alpha", d("2025-05-05"), 2, 0, 0, Decimal("5.00"))]

    await conn.execute("UPDATE work_items SET removed_upstream_at = now() WHERE id = $1", gone)
    await metrics.recompute_touched(conn, team, stamps, "UTC")
    assert await table(conn) == [("Alpha", d("2025-05-05"), 1, 0, 0, Decimal("1.00"))]


async def test_mean_ignores_unknown_and_negative_durations(conn: asyncpg.Connection) -> None:
    team = await make_team(conn, "Alpha")
    await completed(conn, team, "A1", "2025-05-06 10:00", hours=-2)  # started after completion
    await completed(conn, team, "A2", "2025-05-06 11:00")
    await metrics.recompute_touched(conn, team, [at("2025-05-06 10:00")], "UTC")
    assert await table(conn) == [("Alpha", d("2025-05-06"), 2, 0, 0, None)]
    await completed(conn, team, "A3", "2025-05-06 12:00", hours=1 / 3)  # 20 minutes
    await metrics.recompute_touched(conn, team, [at("2025-05-06 12:00")], "UTC")
    assert await table(conn) == [("Alpha", d("2025-05-06"), 3, 0, 0, Decimal("0.33"))]


# ---------------------------------------------------------------------------------------------
# Time zones
# ---------------------------------------------------------------------------------------------
async def test_time_zone_moves_a_2330_completion_to_the_next_day(conn: asyncpg.Connection) -> None:
    team = await make_team(conn, "Alpha")
    await completed(conn, team, "A1", "2025-03-10 23:30", hours=1)
    await log(conn, team, "commit_created", at("2025-03-10 23:30"))
    stamps = [at("2025-03-10 23:30")]

    await metrics.recompute_touched(conn, team, stamps, "UTC")
    assert await table(conn) == [("Alpha", d("2025-03-10"), 1, 1, 0, Decimal("1.00"))]

    # Berlin is UTC+1 in March: 23:30Z is 00:30 on the 11th. A rollup after the change of zone
    # also removes the row the old zone left on the 10th.
    done = await metrics.rollup(conn, "Europe/Berlin")
    assert await table(conn) == [("Alpha", d("2025-03-11"), 1, 1, 0, Decimal("1.00"))]
    assert (done.written, done.deleted) == (1, 1)


async def test_day_bounds_follow_daylight_saving_time(conn: asyncpg.Connection) -> None:
    team = await make_team(conn, "Alpha")
    # New York, 2025-03-09 has 23 hours: local 00:00 EST = 05:00Z, next midnight EDT = 04:00Z.
    await completed(conn, team, "N1", "2025-03-09 05:00")  # 00:00 on the 9th
    await completed(conn, team, "N2", "2025-03-10 03:59")  # 23:59 on the 9th
    await completed(conn, team, "N3", "2025-03-10 04:00")  # 00:00 on the 10th
    await completed(conn, team, "N4", "2025-03-09 04:59")  # 23:59 on the 8th
    await metrics.rollup(conn, "America/New_York", since=d("2025-03-08"), until=d("2025-03-10"))
    assert [(r[1], r[2]) for r in await table(conn)] == [
        (d("2025-03-08"), 1),
        (d("2025-03-09"), 2),
        (d("2025-03-10"), 1),
    ]


async def test_a_midnight_that_happens_twice_counts_in_its_own_day(
    conn: asyncpg.Connection,
) -> None:
    team = await make_team(conn, "Alpha")
    # Havana falls back at 01:00 CDT to 00:00 CST on 2025-11-02: 04:30Z is 00:30 local (CDT) on
    # the 2nd, before the second "00:00" that PostgreSQL takes as the day's start (05:00Z).
    await completed(conn, team, "H1", "2025-11-02 04:30")
    await completed(conn, team, "H2", "2025-11-02 03:59")  # 23:59 CDT on the 1st
    await metrics.recompute_touched(
        conn, team, [at("2025-11-02 04:30"), at("2025-11-02 03:59")], "America/Havana"
    )
    assert [(r[1], r[2]) for r in await table(conn)] == [
        (d("2025-11-01"), 1),
        (d("2025-11-02"), 1),
    ]


# ---------------------------------------------------------------------------------------------
# Freshness: today, yesterday, and concurrent recomputes
# ---------------------------------------------------------------------------------------------
async def test_recompute_touched_also_refreshes_today_and_yesterday(
    conn: asyncpg.Connection,
) -> None:
    team = await make_team(conn, "Alpha")
    other = await make_team(conn, "Beta")
    now = await conn.fetchval("SELECT now()")
    today = await conn.fetchval("SELECT (now() AT TIME ZONE 'UTC')::date")
    await log(conn, team, "commit_created", now)
    await log(conn, team, "conflict_detected", now - timedelta(days=1))
    await log(conn, other, "commit_created", now)
    await completed(conn, team, "A1", "2025-02-01 10:00")

    # The run touched only 2025-02-01; the agents' rows of today and yesterday come along.
    assert await metrics.recompute_touched(conn, team, [at("2025-02-01 10:00")], "UTC") == 3
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in await table(conn)] == [
        ("Alpha", d("2025-02-01"), 1, 0, 0),
        ("Alpha", today - timedelta(days=1), 0, 0, 1),
        ("Alpha", today, 0, 1, 0),
    ]
    assert await metrics.recompute_touched(conn, team, [], "UTC") == 0


async def test_concurrent_recomputes_of_a_team_leave_the_latest_count(db_url: str) -> None:
    first = await db.connect(db_url)
    second = await db.connect(db_url)
    try:
        team = await make_team(first, "Alpha")
        day = [d("2025-07-01")]
        tx = first.transaction()
        await tx.start()
        # A run commits its last page and recomputes in one transaction, still open here.
        await completed(first, team, "A1", "2025-07-01 12:00", hours=2)
        assert (await metrics.recompute_days(first, team, day, "UTC")).written == 1
        # Another run of the same team recomputes the day meanwhile: it waits for the lock, and
        # computes only after the first commits (so it sees A1 and does not write zero over it).
        other = asyncio.create_task(metrics.recompute_days(second, team, day, "UTC"))
        await asyncio.sleep(0.3)
        assert not other.done()
        await tx.commit()
        late = await asyncio.wait_for(other, 10)
        assert (late.written, late.deleted) == (0, 0)
        assert await table(first) == [("Alpha", d("2025-07-01"), 1, 0, 0, Decimal("2.00"))]
    finally:
        await first.close()
        await second.close()


async def test_day_queries_use_the_rollup_indexes(conn: asyncpg.Connection) -> None:
    team = await make_team(conn, "Alpha")
    await conn.execute(
        "INSERT INTO work_items (team_id, external_id, source, title, status, completed_at)"
        " SELECT $1, 'X' || g, 'manual', 't', 'completed', $2::timestamptz + g * interval '1 hour'"
        " FROM generate_series(1, 500) g",
        team,
        at("2025-01-01 00:00"),
    )
    other = await make_team(conn, "Beta")
    # Mostly the sync's own rows and other teams' rows, as in production.
    await conn.execute(
        "INSERT INTO activity_logs (team_id, event_type, message, created_at)"
        " SELECT CASE WHEN g % 4 = 0 THEN $1::uuid ELSE $2::uuid END,"
        "        CASE WHEN g % 40 = 0 THEN 'commit_created' WHEN g % 40 = 4 THEN 'conflict_detected'"
        "             ELSE 'work_item_updated' END,"
        "        'x', $3::timestamptz + g * interval '1 minute'"
        " FROM generate_series(1, 20000) g",
        team,
        other,
        at("2025-01-01 00:00"),
    )
    await conn.execute("ANALYZE work_items; ANALYZE activity_logs")
    async with conn.transaction():
        # Make any plan that cannot use an index look prohibitive: what remains shows that the
        # partial indexes' predicates are implied by the queries.
        await conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                "EXPLAIN " + metrics_store.RECOMPUTE, team, [d("2025-01-07")], "Europe/Paris", False
            )
        )
    assert "idx_work_items_team_completed" in plan, plan
    # activity_logs is partitioned by month (0015): the partition holding these rows is read
    # through its part of idx_activity_logs_team_metric_events (the empty ones through any).
    [holder] = await conn.fetch(
        "SELECT DISTINCT tableoid::regclass::text AS part FROM activity_logs"
    )
    used = await conn.fetchval(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " JOIN pg_index x ON x.indexrelid = c.oid"
        " WHERE i.inhparent = 'idx_activity_logs_team_metric_events'::regclass"
        "   AND x.indrelid = $1::regclass",
        holder["part"],
    )
    assert used is not None and f"using {used} on {holder['part']}" in plan, plan
    assert "Seq Scan" not in plan, plan


# ---------------------------------------------------------------------------------------------
# Through the sync run (the fake tracker): reopen, move back, removal
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", sweep_every_runs=0, metrics_tz="UTC")


async def sync_once(
    pool: asyncpg.Pool, integration: uuid.UUID, settings: Settings, upstream: Upstream
) -> sync.RunResult:
    return await succeeded_run(pool, integration, settings, fake_connector_class(upstream))


@pytest.fixture
async def synced(pool: asyncpg.Pool) -> tuple[uuid.UUID, uuid.UUID]:
    team = await make_team(pool, "Alpha")
    integration = await make_integration(pool, team, "github", {"token": "t"}, interval=60)
    return team, integration


async def test_sync_item_reopened_and_completed_again(pool, synced, settings) -> None:
    _, integration = synced
    upstream = Upstream()
    ids = upstream.add(2)
    start = at("2025-05-01 09:00")
    upstream.change(ids[1], T0, status=Status.COMPLETED, started_at=start, completed_at=T0)
    first = at("2025-05-02 12:00")
    upstream.change(
        ids[0], T0 + timedelta(hours=1), status=Status.COMPLETED, started_at=start,
        completed_at=first,
    )  # fmt: skip
    await sync_once(pool, integration, settings, upstream)
    assert await table(pool) == [
        ("Alpha", d("2025-05-01"), 1, 0, 0, None),  # started after it was completed: no mean
        ("Alpha", d("2025-05-02"), 1, 0, 0, Decimal("27.00")),
    ]

    # Reopened: no longer a completion; the day it had is left with nothing and loses its row.
    upstream.change(ids[0], T0 + timedelta(hours=2), status=Status.IN_PROGRESS, completed_at=None)
    await sync_once(pool, integration, settings, upstream)
    assert [(r[1], r[2]) for r in await table(pool)] == [(d("2025-05-01"), 1)]

    # Completed again two days later: counted on that day only.
    again = at("2025-05-04 15:30")
    upstream.change(ids[0], T0 + timedelta(hours=3), status=Status.COMPLETED, completed_at=again)
    await sync_once(pool, integration, settings, upstream)
    assert await table(pool) == [
        ("Alpha", d("2025-05-01"), 1, 0, 0, None),
        ("Alpha", d("2025-05-04"), 1, 0, 0, Decimal("78.50")),
    ]


async def test_sync_completion_moved_backwards_recomputes_both_days(pool, synced, settings) -> None:
    _, integration = synced
    upstream = Upstream()
    ids = upstream.add(2)
    for n, ext in enumerate(ids):
        upstream.change(
            ext, T0 + timedelta(minutes=n), status=Status.COMPLETED,
            started_at=at("2025-05-01 10:00"), completed_at=at("2025-05-10 10:00"),
        )  # fmt: skip
    await sync_once(pool, integration, settings, upstream)
    assert await table(pool) == [("Alpha", d("2025-05-10"), 2, 0, 0, Decimal("216.00"))]

    # Someone corrects one resolution date in the tracker: a week earlier.
    upstream.change(ids[0], T0 + timedelta(hours=1), completed_at=at("2025-05-03 10:00"))
    result = await sync_once(pool, integration, settings, upstream)
    assert sorted(result.touched) == [at("2025-05-03 10:00"), at("2025-05-10 10:00")]
    assert await table(pool) == [
        ("Alpha", d("2025-05-03"), 1, 0, 0, Decimal("48.00")),
        ("Alpha", d("2025-05-10"), 1, 0, 0, Decimal("216.00")),
    ]

    # Moved again, off the 10th: that day keeps no stale row.
    upstream.change(ids[1], T0 + timedelta(hours=2), completed_at=at("2025-05-03 22:00"))
    await sync_once(pool, integration, settings, upstream)
    assert await table(pool) == [("Alpha", d("2025-05-03"), 2, 0, 0, Decimal("54.00"))]


async def test_sync_item_deleted_upstream_leaves_the_count(pool, synced, settings) -> None:
    _, integration = synced
    upstream = Upstream()
    ids = upstream.add(2)
    for ext in ids:
        upstream.change(ext, T0, status=Status.COMPLETED, completed_at=at("2025-05-20 10:00"))
    await sync_once(pool, integration, settings, upstream)
    assert [(r[1], r[2]) for r in await table(pool)] == [(d("2025-05-20"), 2)]
    upstream.change(ids[0], T0 + timedelta(hours=1), removed=True)
    await sync_once(pool, integration, settings, upstream)
    assert [(r[1], r[2]) for r in await table(pool)] == [(d("2025-05-20"), 1)]


# ---------------------------------------------------------------------------------------------
# Dashboard views
# ---------------------------------------------------------------------------------------------
async def test_status_counts_by_team_source_and_status(conn: asyncpg.Connection) -> None:
    a = await make_team(conn, "Alpha")
    b = await make_team(conn, "Beta")
    for n in range(3):
        await make_work_item(conn, a, f"J{n}", "queued", source="jira")
    await make_work_item(
        conn, a, "J9", "queued", source="jira", removed_upstream_at=at("2025-01-01 00:00")
    )
    await make_work_item(
        conn, a, "G1", "completed", source="github", completed_at=at("2025-01-02 00:00")
    )
    await make_work_item(conn, b, "L1", "in_progress", source="linear")
    await make_work_item(conn, None, "M1", "queued")  # no team: not on a team's dashboard
    rows = await conn.fetch(
        "SELECT team_name, source, status, items, removed_upstream FROM v_team_status_counts"
        " ORDER BY team_name, source, status"
    )
    assert [tuple(r.values()) for r in rows] == [
        ("Alpha", "github", "completed", 1, 0),
        ("Alpha", "jira", "queued", 3, 1),
        ("Beta", "linear", "in_progress", 1, 0),
    ]


async def test_seed_views_leave_out_items_removed_upstream(conn: asyncpg.Connection) -> None:
    team = await make_team(conn, "Alpha")
    await make_work_item(conn, team, "Q1", "queued", external_key="ABC-1")
    await make_work_item(conn, team, "Q2", "queued", removed_upstream_at=at("2025-01-01 00:00"))
    await make_work_item(
        conn, team, "P1", "in_progress", removed_upstream_at=at("2025-01-01 00:00")
    )
    queue = await conn.fetch("SELECT external_id, external_key FROM v_team_work_queue")
    assert [tuple(r.values()) for r in queue] == [("Q1", "ABC-1")]
    row = await conn.fetchrow("SELECT * FROM v_active_teams WHERE name = 'Alpha'")
    assert (row["queued_work_items"], row["in_progress_work_items"]) == (1, 0)


async def test_integration_health_states_and_no_config(conn: asyncpg.Connection) -> None:
    team = await make_team(conn, "Alpha")
    secret = "tok-PLANTED-health-31f"
    ok = await make_integration(conn, team, "github", {"token": secret}, interval=60)
    failing = await make_integration(conn, team, "jira", {"token": secret}, interval=60)
    stale = await make_integration(conn, team, "linear", {"token": secret}, interval=60)
    paused = await make_integration(conn, team, "azure_devops", {"token": secret}, active=False)
    pending = await make_integration(conn, await make_team(conn, "Beta"), "jira", {"token": secret})
    await conn.execute(
        "INSERT INTO integration_sync_state (integration_id, last_success_at, last_error_at,"
        "       last_error_class, last_error, consecutive_failures, next_attempt_at)"
        " VALUES ($1, now() - interval '30 seconds', NULL, NULL, NULL, 0, NULL),"
        "        ($2, now() - interval '10 minutes', now(), 'RetriableError', 'upstream 503', 3,"
        "         now() + interval '4 minutes'),"
        "        ($3, now() - interval '121 seconds', NULL, NULL, NULL, 0, NULL)",
        ok,
        failing,
        stale,
    )
    await make_work_item(conn, team, "G1", source="github", integration_id=ok)
    await make_work_item(conn, team, "G2", source="github", integration_id=ok)
    await make_work_item(
        conn,
        team,
        "G3",
        source="github",
        integration_id=ok,
        removed_upstream_at=at("2025-01-01 00:00"),
    )
    rows = {r["integration_id"]: r for r in await conn.fetch("SELECT * FROM v_integration_health")}
    assert {k: rows[k]["health"] for k in rows} == {
        ok: "ok",
        failing: "failing",
        stale: "stale",
        paused: "paused",
        pending: "pending",
    }
    assert (rows[ok]["items"], rows[ok]["removed_upstream"], rows[ok]["is_stale"]) == (2, 1, False)
    assert rows[stale]["is_stale"] is True
    assert rows[paused]["is_stale"] is False and rows[pending]["is_stale"] is False
    f = rows[failing]
    assert (f["consecutive_failures"], f["last_error_class"], f["last_error"]) == (
        3,
        "RetriableError",
        "upstream 503",
    )
    assert f["next_attempt_at"] is not None and f["team_name"] == "Alpha"
    assert (rows[pending]["consecutive_failures"], rows[pending]["items"]) == (0, 0)
    # No view shows integrations.config (it may hold tokens).
    views = [
        r[0] for r in await conn.fetch("SELECT viewname FROM pg_views WHERE schemaname = 'public'")
    ]
    assert {"v_integration_health", "v_recent_activity", "v_team_status_counts"} <= set(views)
    for view in views:
        dump = await conn.fetchval(f"SELECT coalesce(json_agg(v)::text, '') FROM {view} v")
        assert secret not in dump, view
        assert '"config"' not in dump, view


async def test_recent_activity_newest_first_with_item_labels(conn: asyncpg.Connection) -> None:
    team = await make_team(conn, "Alpha")
    agent = await make_agent(conn, team, "dev-1")
    item = await make_work_item(
        conn, team, "10001", source="jira", external_key="ABC-1", title="Fix it"
    )
    await conn.execute(
        "INSERT INTO activity_logs (team_id, agent_id, work_item_id, event_type, message, created_at)"
        " VALUES ($1, NULL, $3, 'work_item_created', 'created', '2025-01-01 10:00Z'),"
        "        ($1, $2, $3, 'commit_created', 'commit', '2025-01-01 12:00Z'),"
        "        ($1, NULL, NULL, 'sync_completed', 'done', '2025-01-01 11:00Z')",
        team,
        agent,
        item,
    )
    rows = await conn.fetch(
        "SELECT event_type, team_name, agent_name, source, external_key, title, item_status"
        " FROM v_recent_activity WHERE team_id = $1 LIMIT 10",
        team,
    )
    assert [tuple(r.values()) for r in rows] == [
        ("commit_created", "Alpha", "dev-1", "jira", "ABC-1", "Fix it", "queued"),
        ("sync_completed", "Alpha", None, None, None, None, None),
        ("work_item_created", "Alpha", None, "jira", "ABC-1", "Fix it", "queued"),
    ]
    timeline = await conn.fetch(
        "SELECT event_type FROM v_recent_activity WHERE work_item_id = $1", item
    )
    assert [r[0] for r in timeline] == ["commit_created", "work_item_created"]


async def test_team_metrics_view_and_metrics_checks(conn: asyncpg.Connection) -> None:
    team = await make_team(conn, "Alpha")
    await completed(conn, team, "A1", "2025-08-01 10:00", hours=1)
    await metrics.recompute_touched(conn, team, [at("2025-08-01 10:00")], "UTC")
    rows = await conn.fetch("SELECT team_name, metric_date, stories_completed FROM v_team_metrics")
    assert [tuple(r.values()) for r in rows] == [("Alpha", d("2025-08-01"), 1)]
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("UPDATE metrics SET commits_count = -1")
    with pytest.raises(asyncpg.NotNullViolationError):
        await conn.execute("UPDATE metrics SET stories_completed = NULL")


async def test_a_zone_postgresql_does_not_know_is_a_clear_error(conn: asyncpg.Connection) -> None:
    with pytest.raises(ValueError, match="does not know the time zone 'Mars/Olympus'"):
        await metrics.local_today(conn, "Mars/Olympus")
    assert await metrics.local_today(conn, "UTC") == await conn.fetchval(
        "SELECT (now() AT TIME ZONE 'UTC')::date"
    )


async def test_a_quarter_hour_falls_on_one_date_in_every_zone(conn: asyncpg.Connection) -> None:
    """A run keeps the UTC quarter hours of the completion times it touched, not the times: the
    same days in every zone PostgreSQL knows, the odd offsets included (+05:45, -03:30,
    +12:45), by PostgreSQL's own time-zone database."""
    zones = await conn.fetchval(
        "SELECT array_agg(name) FROM pg_timezone_names WHERE name NOT LIKE 'posix/%'"
    )
    assert {"Asia/Kathmandu", "America/St_Johns", "Pacific/Chatham"} <= set(zones)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    stamps = [start + timedelta(minutes=7 * k + k % 13) for k in range(3 * 24 * 60 // 7)]
    quarters = [metrics.quarter_hour(t) for t in stamps]
    assert len(set(quarters)) < len(stamps) and all(q.minute % 15 == 0 for q in quarters)
    differ = await conn.fetchval(
        "SELECT array_agg(DISTINCT z) FROM unnest($3::text[]) z,"
        " unnest($1::timestamptz[], $2::timestamptz[]) AS u(t, q)"
        " WHERE (t AT TIME ZONE z)::date <> (q AT TIME ZONE z)::date",
        stamps,
        quarters,
        zones,
    )
    assert differ is None, differ

"""Benchmark: daily metrics rollup on 50 teams x 1M work items spread over one year.

    python tests/bench/bench_metrics.py [--teams 50] [--items 1000000] [--keep]

Uses DATABASE_URL when set (a database `c9_bench_metrics` is created on that server and dropped
after), else an embedded PostgreSQL under /tmp. Data is generated inside the server
(`INSERT … SELECT generate_series`), so the client's memory stays small. Prints wall times of a
full-year rollup of every team (first run, then an idempotent re-run), a one-day recompute as a
sync run does it, and `EXPLAIN (ANALYZE, BUFFERS)` of the per-day queries.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from worker import db, metrics, migrate
from worker.store import metrics as metrics_store

DB_NAME = "c9_bench_metrics"
YEAR_START = date(2025, 1, 1)
TZ = "Europe/Berlin"


def url_for(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


async def build(url: str, teams: int, items: int) -> None:
    conn = await db.connect(url)
    try:
        await migrate.apply(conn, ("core",))
        await conn.execute(
            "INSERT INTO teams (name, product, repo_path)"
            " SELECT 'team-' || lpad(g::text, 3, '0'), 'bench', '/repo'"
            " FROM generate_series(1, $1) g",
            teams,
        )
        # Items: team round-robin (g % teams); created over the year; per team 70% completed
        # 1-200 h after start, the rest in progress or queued; 1 in 47 completed ones removed
        # upstream (not counted).
        t0 = time.perf_counter()
        await conn.execute(
            """
            WITH t AS (SELECT array_agg(id ORDER BY name) AS ids FROM teams)
            INSERT INTO work_items (team_id, external_id, source, title, status, started_at,
                                    completed_at, removed_upstream_at)
            SELECT t.ids[1 + g % cardinality(t.ids)], 'B-' || g, 'jira', 'bench item ' || g,
                   CASE WHEN k % 10 < 7 THEN 'completed'
                        WHEN k % 10 < 9 THEN 'in_progress' ELSE 'queued' END,
                   CASE WHEN k % 10 < 9 THEN s END,
                   CASE WHEN k % 10 < 7 THEN s + make_interval(hours => 1 + g % 200) END,
                   CASE WHEN k % 47 = 0 AND k % 10 < 7 THEN s + interval '300 hours' END
            FROM t, generate_series(1, $1) g,
                 LATERAL (SELECT g / cardinality(t.ids),
                                 $2::timestamptz
                                 + make_interval(secs => (g::float8 * 31536000 / $1))) AS x(k, s)
            """,
            items,
            datetime(YEAR_START.year, 1, 1, tzinfo=UTC),
        )
        # Activity: the sync's own rows (one per item), plus agents' commits (40% of items)
        # and conflicts (4%), at times spread over the year.
        await conn.execute(
            """
            INSERT INTO activity_logs (team_id, work_item_id, event_type, message, created_at)
            SELECT team_id, id,
                   CASE WHEN n % 25 = 0 THEN 'conflict_detected'
                        WHEN n % 25 < 11 THEN 'commit_created'
                        ELSE 'work_item_updated' END,
                   'bench', COALESCE(completed_at, started_at, created_at) - interval '1 hour'
            FROM (SELECT w.*, abs(hashtext(w.external_id)) AS n FROM work_items w) w
            """
        )
        await conn.execute("INSERT INTO activity_logs (team_id, event_type, message, created_at)"
                           " SELECT team_id, 'work_item_created', 'bench', created_at"
                           " FROM work_items")  # fmt: skip
        await conn.execute("VACUUM ANALYZE work_items")
        await conn.execute("VACUUM ANALYZE activity_logs")
        await conn.execute("VACUUM ANALYZE teams")
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM work_items) AS items,"
            " (SELECT count(*) FROM work_items WHERE completed_at IS NOT NULL) AS completed,"
            " (SELECT count(*) FROM activity_logs) AS activity,"
            " (SELECT count(*) FROM activity_logs"
            "   WHERE event_type IN ('commit_created', 'conflict_detected')) AS agent_events"
        )
        print(
            f"data: {teams} teams, {counts['items']:,} work items ({counts['completed']:,}"
            f" completed), {counts['activity']:,} activity rows ({counts['agent_events']:,}"
            f" commits/conflicts); built in {time.perf_counter() - t0:.1f}s"
        )
    finally:
        await conn.close()


async def explain(conn: asyncpg.Connection, title: str, sql: str, *args: object) -> None:
    print(f"\n--- EXPLAIN (ANALYZE, BUFFERS): {title}")
    tr = conn.transaction()
    await tr.start()
    try:
        rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args)
    finally:
        await tr.rollback()  # the statement writes: leave the data as it was
    for r in rows:
        print(r[0])


async def bench(url: str) -> None:
    conn = await db.connect(url)
    try:
        t = time.perf_counter()
        first = await metrics.rollup(conn, TZ)
        print(
            f"\nfull rollup, every team, first run: {time.perf_counter() - t:.2f}s"
            f" ({first.teams} teams, {first.days:,} team-days, {first.written:,} rows written)"
        )
        t = time.perf_counter()
        again = await metrics.rollup(conn, TZ)
        print(
            f"full rollup again (idempotent):     {time.perf_counter() - t:.2f}s"
            f" ({again.written} rows written, {again.deleted} deleted)"
        )
        t = time.perf_counter()
        year = await metrics.rollup(
            conn, TZ, since=date(2025, 1, 1), until=date(2025, 12, 31), fill_zeros=True
        )
        print(
            f"2025 rollup, --fill-zeros:          {time.perf_counter() - t:.2f}s"
            f" ({year.days:,} team-days, {year.written:,} rows written)"
        )

        team_id = await conn.fetchval("SELECT id FROM teams ORDER BY name LIMIT 1")
        day = date(2025, 6, 15)
        stamp = datetime(2025, 6, 15, 12, tzinfo=UTC)
        n = 200
        t = time.perf_counter()
        for _ in range(n):
            await metrics.recompute_touched(conn, team_id, [stamp], TZ)
        per = (time.perf_counter() - t) / n * 1000
        print(f"recompute_touched, one day (+ today, yesterday): {per:.2f} ms per call")
        stamps = [datetime(2025, m, d, 9, tzinfo=UTC) for m in range(1, 13) for d in (3, 17)]
        t = time.perf_counter()
        await metrics.recompute_touched(conn, team_id, stamps, TZ)
        print(
            f"recompute_touched, 24 days spread over the year: "
            f"{(time.perf_counter() - t) * 1000:.2f} ms"
        )

        await explain(
            conn,
            "one team, one day (what a sync run does)",
            metrics_store.RECOMPUTE,
            team_id,
            [day],
            TZ,
            False,
        )
        year_days = [date.fromordinal(YEAR_START.toordinal() + k) for k in range(365)]
        await explain(
            conn,
            "one team, a year (one chunk of a rollup)",
            metrics_store.RECOMPUTE,
            team_id,
            year_days,
            TZ,
            False,
        )
        await explain(conn, "rollup planning (team extents)", metrics._TEAM_EXTENT, None, TZ)
    finally:
        await conn.close()


async def run(server_url: str, teams: int, items: int, keep: bool) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        await admin.close()
    url = url_for(server_url, DB_NAME)
    try:
        probe = await asyncpg.connect(url)
        version = await probe.fetchval("SHOW server_version")
        await probe.close()
        print(f"PostgreSQL {version}; metrics time zone {TZ}")
        await build(url, teams, items)
        await bench(url)
    finally:
        if not keep:
            admin = await asyncpg.connect(server_url)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
            finally:
                await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teams", type=int, default=50)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    with ExitStack() as stack:
        server_url = os.environ.get("DATABASE_URL")
        if not server_url:
            # Directly under /tmp: the embedded server may run as the `pgserver` user, who must be
            # able to reach its data directory.
            home = Path(tempfile.mkdtemp(prefix="c9-bench-metrics-"))
            stack.callback(shutil.rmtree, home, ignore_errors=True)
            server_url = stack.enter_context(db.embedded_postgres(home / "pgdata"))
        asyncio.run(run(server_url, args.teams, args.items, args.keep))


if __name__ == "__main__":
    main()

"""End-to-end sync benchmark: the GitHub sandbox → the real connector (PyGithub) → the store →
PostgreSQL (embedded, or DATABASE_URL). Prints wall time, rows per second, requests, activity rows
and peak memory for a full sync, an unchanged re-sync, and an incremental sync after 1% edits.

    python tests/bench/bench_sync.py [--items 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectors.sandbox.github import GitHubSandbox
from worker import db, migrate, sync
from worker.settings import Settings

T0 = datetime(2025, 1, 1, tzinfo=UTC)


async def bench(url: str, items: int, home: Path) -> None:
    conn = await db.connect(url)
    await migrate.apply(conn)
    await conn.close()
    pool = await db.create_pool(url, max_size=4)
    settings = Settings(home=home, sweep_every_runs=0)
    with GitHubSandbox(token="bench") as gh:
        for n in range(items):
            gh.add_issue(
                "acme/big",
                f"Issue {n}",
                updated_at=T0 + timedelta(seconds=n),
                body="Some description " * 20,
                labels=["bug"] if n % 3 else [],
            )
        team = await pool.fetchval(
            "INSERT INTO teams (name, product, repo_path) VALUES ($1, 'p', '/r') RETURNING id",
            f"bench-{uuid.uuid4().hex[:6]}",
        )
        config = {
            "token": "bench",
            "base_url": gh.url,
            "repos": ["acme/big"],
            "per_page": 100,
            "seconds_between_requests": 0,
        }
        integration = await pool.fetchval(
            "INSERT INTO integrations (team_id, type, config) VALUES ($1, 'github', $2)"
            " RETURNING id",
            team,
            config,
        )

        async def timed(label: str, full: bool = False) -> None:
            gh.clear_requests()
            activity_before = await pool.fetchval("SELECT count(*) FROM activity_logs")
            started = time.perf_counter()
            result = await sync.run_integration(
                pool,
                integration,
                settings,
                environ={},
                options=sync.RunOptions(force=True, full=full),
            )
            wall = time.perf_counter() - started
            activity = await pool.fetchval("SELECT count(*) FROM activity_logs") - activity_before
            seen = result.created + result.updated + result.unchanged
            print(
                f"{label:<28} {result.outcome:<9} items={seen:>6} created={result.created:>6}"
                f" updated={result.updated:>5} unchanged={result.unchanged:>6}"
                f" pages={result.pages:>4} requests={len(gh.requests):>4}"
                f" activity_rows={activity:>6} wall={wall:6.2f}s"
                f" rate={seen / wall:8.0f} items/s"
            )

        await timed("full (first) sync", full=True)
        await timed("full re-sync, nothing new", full=True)
        await timed("incremental, nothing new")
        for issue in gh.issues["acme/big"][::100]:
            gh.update(issue.id, at=T0 + timedelta(days=30), title=issue.title + " (edited)")
        await timed("incremental after 1% edits")
    rows = await pool.fetchval("SELECT count(*) FROM work_items")
    size = await pool.fetchval("SELECT pg_size_pretty(pg_total_relation_size('work_items'))")
    await pool.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"work_items rows={rows} size={size}; peak RSS of this process {peak_mb:.0f} MiB"
        " (sandbox included)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=10_000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="c9-bench-sync-"))
    try:
        if os.environ.get("DATABASE_URL"):
            asyncio.run(bench(os.environ["DATABASE_URL"], args.items, home))
        else:
            with db.embedded_postgres(home / "pgdata") as url:
                asyncio.run(bench(url, args.items, home))
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark: GitHub issue history backfilled from the repository's issue events, through real
sync runs (the GitHub sandbox → PyGithub → the store → PostgreSQL, embedded or DATABASE_URL).

Seeds N issues, each moved queued → in progress → review → done → reopened → done (5 events),
then runs syncs with the history budget (requests a run) until a run reads no history. Prints,
per run, the history requests, rows stored and seconds; then the totals, the started/completed
times derived from history and an incremental run after 1% of the issues change.

    python tests/bench/bench_github_history.py [--items 10000] [--budget 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
H = timedelta(hours=1)
REPO = "acme/big"


def seed(gh: GitHubSandbox, items: int) -> None:
    """N issues, each with its flow; issue n starts n minutes after T0."""
    for n in range(items):
        at = T0 + n * timedelta(minutes=1)
        issue = gh.add_issue(REPO, f"Issue {n}", created_at=at, updated_at=at, actor="mira")
        gh.update(issue.id, at=at + 2 * H, assignees=["ada"], actor="lead")
        gh.update(issue.id, at=at + 10 * H, labels=["in review"], actor="ada")
        gh.update(issue.id, at=at + 20 * H, state="closed", actor="ada")
        gh.update(issue.id, at=at + 30 * H, state="open", actor="lead")
        gh.update(issue.id, at=at + 40 * H, state="closed", actor="ada")


async def bench(url: str, items: int, budget: int, home: Path) -> None:
    conn = await db.connect(url)
    await migrate.apply(conn)
    await conn.close()
    pool = await db.create_pool(url, max_size=4)
    settings = Settings(home=home, sweep_every_runs=0, history_budget=budget)
    with GitHubSandbox(token="bench") as gh:
        started = time.perf_counter()
        seed(gh, items)
        events = len(gh.events[REPO])
        print(f"seeded {items} issues, {events} events in {time.perf_counter() - started:.1f}s")
        team = await pool.fetchval(
            "INSERT INTO teams (name, product, repo_path) VALUES ($1, 'p', '/r') RETURNING id",
            f"bench-{uuid.uuid4().hex[:6]}",
        )
        config = {
            "token": "bench",
            "base_url": gh.url,
            "repos": [REPO],
            "per_page": 100,
            "seconds_between_requests": 0,
            "status_map": {"in review": "pr_ready"},
        }
        integration = await pool.fetchval(
            "INSERT INTO integrations (team_id, type, config) VALUES ($1, 'github', $2)"
            " RETURNING id",
            team,
            config,
        )

        async def one(label: str) -> sync.RunResult:
            gh.clear_requests()
            began = time.perf_counter()
            result = await sync.run_integration(
                pool, integration, settings, environ={}, options=sync.RunOptions(force=True)
            )
            wall = time.perf_counter() - began
            print(
                f"{label:<24} {result.outcome:<9} items_written={result.created + result.updated:>6}"
                f" history_requests={result.history_requests:>3}"
                f" history_rows={result.history_rows:>6}"
                f" event_requests={len(gh.requests_to('/issues/events')):>3}"
                f" all_requests={len(gh.requests):>4} wall={wall:6.2f}s"
            )
            assert result.outcome == "succeeded", result.reason
            return result

        total = time.perf_counter()
        runs = requests = rows = 0
        while True:
            result = await one(f"run {runs + 1}")
            runs += 1
            requests += result.history_requests
            rows += result.history_rows
            if result.history_requests == 0 or runs > 10 * events // 100 + 5:
                break
        seconds = time.perf_counter() - total
        stored = await pool.fetchval("SELECT count(*) FROM work_item_history")
        basis = await pool.fetchval(
            "SELECT count(*) FROM work_items WHERE time_basis = 'history'"
            " AND completed_at - started_at = interval '38 hours'"
        )
        print(
            f"backfill: runs={runs} history_requests={requests} rows={rows} stored={stored}"
            f" items_with_history_times={basis}/{items} seconds={seconds:.1f}"
        )
        for issue in gh.issues[REPO][::100]:
            gh.update(issue.id, at=T0 + 90 * 24 * H, state="open", actor="lead")
        await one("incremental, 1% reopened")
        await one("nothing changed")
    await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--budget", type=int, default=50)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="c9-bench-gh-history-"))
    try:
        if os.environ.get("DATABASE_URL"):
            asyncio.run(bench(os.environ["DATABASE_URL"], args.items, args.budget, home))
        else:
            with db.embedded_postgres(home / "pgdata") as url:
                asyncio.run(bench(url, args.items, args.budget, home))
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()

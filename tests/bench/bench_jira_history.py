"""History benchmark: Jira changelogs backfilled through real sync runs (the Jira sandbox over
loopback HTTP, the real python-jira, PostgreSQL embedded or DATABASE_URL).

Seeds N issues, each with a changelog (assigned, moved to In Progress, to Done); every `--long`th
issue also goes through review, a reopen and Done again, so its changelog is longer than the
search carries (`--cap`) and is read by id within the history budget (`--budget` requests a
run). Runs the sync until no history is pending, with one run cut mid-way by a fault (its pages
stay; the next run resumes), then one more run that must spend nothing. Prints, per run and in
total: history requests, all requests, history rows, wall time.

    python tests/bench/bench_jira_history.py [--n 10000] [--budget 200] [--cap 4] [--dc]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from connectors.sandbox.jira import JiraDataCenterSandbox, JiraSandbox
from worker import db, migrate, sync
from worker.settings import Settings

T0 = datetime(2025, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)
TOKEN = "bench-token"
SHORT = [(2, "In Progress"), (20, "Done")]
LONG = [(2, "In Progress"), (10, "In Review"), (20, "Done"), (30, "In Progress"), (40, "Done")]


def seed(jira: JiraSandbox, n: int, long_every: int) -> int:
    """N issues with their changelogs; how many are longer than the search carries."""
    longs = 0
    for i in range(n):
        start = T0 + i * timedelta(minutes=1)
        issue = jira.add_issue("ABC", f"Issue {i}", created=start, updated=start)
        jira.update_issue(issue.id, at=start + H, by="Ada Lovelace", assignee="Ada Lovelace")
        flow = LONG if i % long_every == 0 else SHORT
        longs += flow is LONG
        for hours, status in flow:
            jira.update_issue(issue.id, at=start + hours * H, by="Grace Hopper", status=status)
    return longs


async def bench(url: str, args: argparse.Namespace, home: Path) -> None:
    conn = await db.connect(url)
    await migrate.apply(conn)
    await conn.close()
    pool = await db.create_pool(url, max_size=4)
    settings = Settings(home=home, sweep_every_runs=0, run_deadline_seconds=3600)
    jira: JiraSandbox = JiraDataCenterSandbox(token=TOKEN) if args.dc else JiraSandbox(token=TOKEN)
    with jira:
        jira.changelog_cap = args.cap
        started = time.perf_counter()
        longs = seed(jira, args.n, args.long)
        print(
            f"{'DC' if args.dc else 'Cloud'}: N={args.n} issues, {longs} with a changelog longer"
            f" than the search's {args.cap} (seeded in {time.perf_counter() - started:.1f}s);"
            f" budget {args.budget} history requests a run"
        )
        team = await pool.fetchval(
            "INSERT INTO teams (name, product, repo_path) VALUES ($1, 'p', '/r') RETURNING id",
            f"bench-{uuid.uuid4().hex[:6]}",
        )
        config = {"url": jira.url, "token": TOKEN, "projects": ["ABC"], "page_size": 100}
        if not args.dc:
            config["email"] = jira.email
        config["history_budget"] = args.budget
        integration = await pool.fetchval(
            "INSERT INTO integrations (team_id, type, config) VALUES ($1, 'jira', $2) RETURNING id",
            team,
            config,
        )
        totals: Counter[str] = Counter()
        total_started = time.perf_counter()
        for run in range(1, 10_000):
            if run == 3:  # cut this run mid-way: one pending issue's reads keep failing
                pending = await pool.fetch(
                    "SELECT external_id FROM work_items WHERE history_pending"
                    " ORDER BY source_updated_at LIMIT 1 OFFSET 5"
                )
                if pending:
                    issue_id = pending[0]["external_id"].rsplit("/", 1)[1]
                    jira.fail_next("5xx", count=50, retry_after=0, path_contains=f"/{issue_id}")
            jira.clear_requests()
            rows_before = await pool.fetchval("SELECT count(*) FROM work_item_history")
            started = time.perf_counter()
            result = await sync.run_integration(
                pool, integration, settings, environ={}, options=sync.RunOptions(force=True)
            )
            wall = time.perf_counter() - started
            jira.clear_faults()
            rows = await pool.fetchval("SELECT count(*) FROM work_item_history") - rows_before
            left = await pool.fetchval("SELECT count(*) FROM work_items WHERE history_pending")
            searches = len(jira.requests_to("/search"))
            totals.update(
                runs=1,
                requests=len(jira.requests),
                history_requests=result.history_requests,
                rows=rows,
                failed=result.outcome == "failed",
            )
            print(
                f"run {run:>3} {result.outcome:<9} items={result.created + result.updated:>6}"
                f" searches={searches:>4} history_requests={result.history_requests:>4}"
                f" requests={len(jira.requests):>5} history_rows={rows:>6} pending={left:>6}"
                f" wall={wall:6.2f}s"
            )
            if result.outcome == "succeeded" and result.history_requests == 0 and not left:
                break
        seconds = time.perf_counter() - total_started
    stored = await pool.fetchval("SELECT count(*) FROM work_item_history")
    timed = await pool.fetchval("SELECT count(*) FROM work_items WHERE time_basis = 'history'")
    await pool.close()
    print(
        f"total: runs={totals['runs']} (failed {totals['failed']}) requests={totals['requests']}"
        f" history_requests={totals['history_requests']} history_rows={stored}"
        f" items_with_history_times={timed} seconds={seconds:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--cap", type=int, default=4, help="histories in a search answer")
    parser.add_argument("--long", type=int, default=10, help="every n-th issue has a long log")
    parser.add_argument("--dc", action="store_true", help="Jira Data Center instead of Cloud")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="c9-bench-jira-history-"))
    try:
        if os.environ.get("DATABASE_URL"):
            asyncio.run(bench(os.environ["DATABASE_URL"], args, home))
        else:
            with db.embedded_postgres(home / "pgdata") as url:
                asyncio.run(bench(url, args, home))
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark: Linear issue history backfilled within the history budget, over several runs.

The Linear sandbox (loopback HTTP) holds N issues, each moved Todo -> In Progress -> In Review ->
Done by a user (every tenth reopened and done again, every fiftieth with 30 more priority edits,
so its history takes a follow-up request). Real sync runs (`worker.sync.run_integration`, the
real connector, PostgreSQL embedded or DATABASE_URL) read the items, then the history of the
pending issues within `history_budget` requests a run, until none is left; one run is cut by a
refused request part-way (as a crash would cut it) and the next resumes. Prints per run the
history requests, rows and seconds, then the totals and a no-op run.

    python tests/bench/bench_linear_history.py [--n 10000] [--budget 50]
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

from connectors.linear import HISTORY_ENTRIES, HISTORY_ISSUES
from connectors.sandbox import graphql
from connectors.sandbox.base import Fault, Request, Response
from connectors.sandbox.linear import LinearSandbox
from worker import db, migrate, sync
from worker.settings import Settings

T0 = datetime(2025, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)
TOKEN = "lin_api_bench"


def seed(sandbox: LinearSandbox, n: int) -> int:
    """N issues with their histories; returns the IssueHistory entries recorded."""
    people = [sandbox.add_user(f"Dev {k}") for k in range(5)]
    for i in range(n):
        start = T0 + timedelta(minutes=7 * i)
        who = people[i % len(people)]
        issue = sandbox.add_issue("ENG", title=f"Bench issue {i}", created_at=start,
                                  updated_at=start, assignee=who, actor=who)  # fmt: skip
        moves = [(2, "In Progress"), (10, "In Review"), (20, "Done")]
        if i % 10 == 0:
            moves += [(30, "In Progress"), (40, "Done")]
        for hours, state in moves:
            sandbox.update_issue(issue["id"], at=start + hours * H, state=state, actor=who)
        if i % 50 == 0:
            for k in range(30):
                sandbox.update_issue(issue["id"], at=start + (41 + k) * H, priority=1 + k % 4)
    return sum(len(sandbox.history_of(i)) for i in sandbox.issue_ids())


def by_operation(requests: list[Request]) -> Counter[str]:
    return Counter(graphql.operation_name(r.json()["query"]) or "?" for r in requests)


async def bench(url: str, n: int, budget: int, home: Path) -> None:
    conn = await db.connect(url)
    await migrate.apply(conn)
    await conn.close()
    pool = await db.create_pool(url, max_size=4)
    settings = Settings(home=home, sweep_every_runs=0, history_budget=budget)
    # Linear's hourly complexity budget (250,000 points) would spread this over hours: the
    # sandbox's is lifted, and the points spent are printed (and converted to Linear hours).
    with LinearSandbox(token=TOKEN, complexity_limit=10**10) as linear:
        started = time.perf_counter()
        entries = seed(linear, n)
        print(
            f"Linear history, N={n} issues, {entries} IssueHistory entries, budget={budget}"
            f" requests a run ({HISTORY_ISSUES} issues x {HISTORY_ENTRIES} entries a request);"
            f" seeded in {time.perf_counter() - started:.1f}s"
        )
        team = await pool.fetchval(
            "INSERT INTO teams (name, product, repo_path) VALUES ($1, 'p', '/r') RETURNING id",
            f"bench-{uuid.uuid4().hex[:6]}",
        )
        config = {"token": TOKEN, "api_url": f"{linear.url}/graphql", "team_keys": ["ENG"],
                  "page_size": 250}  # fmt: skip
        integration = await pool.fetchval(
            "INSERT INTO integrations (team_id, type, config) VALUES ($1, 'linear', $2)"
            " RETURNING id",
            team,
            config,
        )
        totals: Counter[str] = Counter()
        points: Counter[str] = Counter()
        wall_total = 0.0

        async def one(label: str) -> sync.RunResult:
            nonlocal wall_total
            linear.clear_requests()
            begun = time.perf_counter()
            result = await sync.run_integration(
                pool, integration, settings, environ={}, options=sync.RunOptions(force=True)
            )
            wall = time.perf_counter() - begun
            wall_total += wall
            ops = by_operation(linear.requests)
            totals.update(ops)
            pending = await pool.fetchval(
                "SELECT count(*) FROM work_items WHERE history_pending AND integration_id = $1",
                integration,
            )
            print(
                f"  {label:<10} {result.outcome:<9} created={result.created:>6}"
                f" updated={result.updated:>6}"
                f" history_requests={result.history_requests:>3}"
                f" rows={result.history_rows:>6} pending_after={pending:>6}"
                f" requests={len(linear.requests):>4} wall={wall:6.2f}s"
                f" ({', '.join(f'{k} {v}' for k, v in sorted(ops.items()))})"
            )
            return result

        runs = 0
        cut_now = False
        seen: list[int] = []

        def hook(request: Request, response: Response) -> None:
            name = graphql.operation_name(request.json()["query"]) or "?"
            points[name] += int(response.headers.get("X-Complexity", "0"))
            # in the cut run, its second history request is refused: the run fails part-way
            if cut_now and name == "SyncIssueHistory":
                seen.append(1)
                if len(seen) == 1:
                    linear.inject(Fault("400_json", 1))

        linear.response_hook = hook
        while True:
            runs += 1
            if runs == 3 and not seen:
                cut_now = True
                result = await one(f"run {runs} cut")
                cut_now = False
                assert result.outcome == "failed", result.reason
                continue
            result = await one(f"run {runs}")
            assert result.outcome == "succeeded", result.reason
            if result.history_requests == 0:
                break
            if runs > 10 * (n // (budget * HISTORY_ISSUES) + 2):
                raise SystemExit("history does not converge")
        rows = await pool.fetchval("SELECT count(*) FROM work_item_history")
        derived = await pool.fetchval(
            "SELECT count(*) FROM work_items WHERE time_basis = 'history'"
            " AND completed_at - started_at IN (interval '18 hours', interval '38 hours')"
        )
        history_requests = sum(v for k, v in totals.items() if k.startswith("SyncIssueHistory"))
        print(
            f"  total: runs={runs} history_requests={history_requests}"
            f" ({', '.join(f'{k} {v}' for k, v in sorted(totals.items()))})"
            f" work_item_history rows={rows} items with history times={derived}/{n}"
            f" wall={wall_total:.1f}s"
        )
        spent = sum(v for k, v in points.items() if k.startswith("SyncIssueHistory"))
        print(
            f"  complexity: history {spent:,} points ({spent / n:.0f} an issue), items"
            f" {points['SyncIssueChanges']:,}; at Linear's 250,000 points an hour with a quarter"
            f" kept for items: {spent / 187_500:.1f} h of history"
        )
    await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--budget", type=int, default=50)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="c9-bench-linear-history-"))
    try:
        if os.environ.get("DATABASE_URL"):
            asyncio.run(bench(os.environ["DATABASE_URL"], args.n, args.budget, home))
        else:
            with db.embedded_postgres(home / "pgdata") as url:
                asyncio.run(bench(url, args.n, args.budget, home))
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark: Azure DevOps history backfill through the sync run. The sandbox (real SDK, HTTP)
holds N work items, each New -> Active -> Closed (3 revisions); `worker.sync.run_integration`
syncs them into PostgreSQL (embedded, or DATABASE_URL) and reads the project's reporting
revisions feed within the history budget, run after run until no history is left to read, with
one run cut mid-way by a fault. Prints per run: outcome, history requests, history rows, wall
time; then the totals and a no-op run.

    python tests/bench/bench_azure_devops_history.py [--items 10000] [--budget 50]
        [--page 200]
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

from connectors.sandbox.azure_devops import AzureDevOpsSandbox
from connectors.sandbox.base import Request
from worker import db, migrate, sync
from worker.settings import Settings
from worker.store import history as history_store

TOKEN = "bench-pat"
T0 = datetime(2025, 4, 1, tzinfo=UTC)


async def bench(url: str, items: int, budget: int, page: int, home: Path) -> None:
    conn = await db.connect(url)
    await migrate.apply(conn)
    await conn.close()
    pool = await db.create_pool(url, max_size=4)
    settings = Settings(home=home, sweep_every_runs=0, metrics_tz="UTC")
    with AzureDevOpsSandbox(token=TOKEN) as ado:
        assert isinstance(ado, AzureDevOpsSandbox)
        ado.reporting_page_cap = page
        step = timedelta(days=30) / items
        ids = ado.add_items_fast((f"Item {k}", T0 + step * k) for k in range(items))
        for k, item_id in enumerate(ids):  # interleaved: each item's revisions far apart
            ado.update_item(item_id, changed=T0 + timedelta(days=30) + step * k, state="Active")
        for k, item_id in enumerate(ids):
            ado.update_item(item_id, changed=T0 + timedelta(days=60) + step * k, state="Closed")
        revisions = len(ado.revision_log)
        team = await pool.fetchval(
            "INSERT INTO teams (name, product, repo_path) VALUES ($1, 'p', '/r') RETURNING id",
            f"bench-{uuid.uuid4().hex[:6]}",
        )
        config = {
            "organization_url": ado.organization_url,
            "project": ado.project,
            "token": TOKEN,
            "history_page_size": page,
            "history_budget": budget,
        }
        integration = await pool.fetchval(
            "INSERT INTO integrations (team_id, type, config) VALUES ($1, 'azure_devops', $2)"
            " RETURNING id",
            team,
            config,
        )
        print(f"{items} items, {revisions} revisions, batches of {page}, budget {budget}/run")
        cut = {"run": 2, "armed": False}  # the third run fails mid-way (a 5xx past retries)

        def fault(request: Request) -> None:
            if cut["armed"] and "/reporting/" in request.path:
                cut["armed"] = False
                ado.fail_next("5xx", count=10, path_contains="/reporting/")

        ado.between_requests = fault
        runs = total_requests = 0
        started_all = time.perf_counter()
        while True:
            if runs == cut["run"]:
                cut["armed"] = True
            before = len(ado.requests_to("/reporting/"))
            started = time.perf_counter()
            result = await sync.run_integration(
                pool, integration, settings, environ={}, options=sync.RunOptions(force=True)
            )
            wall = time.perf_counter() - started
            runs += 1
            total_requests += result.history_requests
            print(
                f"run {runs:>3} {result.outcome:<9} created={result.created:>6}"
                f" history_requests={result.history_requests:>4}"
                f" (reporting {len(ado.requests_to('/reporting/')) - before:>4})"
                f" history_rows={result.history_rows:>6} wall={wall:6.2f}s"
            )
            if result.outcome != "succeeded":
                ado.clear_faults()
                continue
            async with pool.acquire() as conn:
                left = await history_store.backlog(conn, integration, ["My Project/*/*"])
            if left == 0:
                break
        total = time.perf_counter() - started_all
        rows = await pool.fetchval("SELECT count(*) FROM work_item_history")
        derived = await pool.fetchval(
            "SELECT count(*) FROM work_items WHERE time_basis = 'history'"
            " AND started_at IS NOT NULL AND completed_at IS NOT NULL"
        )
        print(
            f"backfill: {runs} runs, {total_requests} history requests (counted by the runs that"
            f" committed), {rows} history rows, {derived} items with times from history,"
            f" {total:.1f} s in all"
        )
        before = len(ado.requests)
        started = time.perf_counter()
        result = await sync.run_integration(
            pool, integration, settings, environ={}, options=sync.RunOptions(force=True)
        )
        print(
            f"no-op run: {result.outcome}, history_requests={result.history_requests},"
            f" requests={len(ado.requests) - before}, wall={time.perf_counter() - started:.2f}s"
        )
    await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--budget", type=int, default=50)
    parser.add_argument("--page", type=int, default=200)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="c9-bench-ado-history-"))
    try:
        if os.environ.get("DATABASE_URL"):
            asyncio.run(bench(os.environ["DATABASE_URL"], args.items, args.budget, args.page, home))
        else:
            with db.embedded_postgres(home / "pgdata") as url:
                asyncio.run(bench(url, args.items, args.budget, args.page, home))
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()

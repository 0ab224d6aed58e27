"""The cost of one run of an unchanged integration, as the daemon runs it (due-check included):
worker CPU, PostgreSQL CPU, statements and round trips per run. The GitHub sandbox runs in a child
process, so the worker's CPU (this process) does not include the tracker's.

    python tests/bench/bench_noop_run.py [--runs 300] [--items 100] [--history-budget 50]

Prints one JSON object. Outside CI: figures, not assertions (the machine may be shared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import asyncpg

from worker import db, migrate, sync
from worker.settings import Settings

T0 = datetime(2025, 1, 1, tzinfo=UTC)
TICK = os.sysconf("SC_CLK_TCK")


def serve_github(items: int, latency: float, pipe: Connection) -> None:
    """The child: a GitHub sandbox with `items` issues, each answer `latency` late, until the
    parent says stop."""
    from connectors.sandbox.github import GitHubSandbox

    # Apart by more than the 5-minute overlap (a no-op run re-reads only the last one), and all
    # in the past: an issue stamped in the future is read again by every run (a tracker clock
    # ahead), which is what 100,000 issues an hour apart from T0 were.
    step = min(timedelta(hours=1), (datetime.now(UTC) - timedelta(days=1) - T0) / max(items, 1))
    assert step > timedelta(minutes=5), "too many items to fit between T0 and now"
    with GitHubSandbox(token="bench") as gh:
        for n in range(items):
            gh.add_issue("acme/web", f"Issue {n}", updated_at=T0 + step * n)
        gh.response_delay = latency
        gh.clear_requests()
        pipe.send(gh.url)
        while pipe.recv() == "count":  # the requests so far, until "stop"
            pipe.send(len(gh.requests))
        pipe.send(len(gh.requests))


def server_cpu_s(pids: list[int]) -> float:
    """utime + stime of the PostgreSQL processes (the postmaster's children included)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def postgres_pids(postmaster: int) -> list[int]:
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == postmaster:
            pids.append(int(entry.name))
    return pids


class Counter:
    """Statements and their client-side time, from asyncpg's query logger, on every pooled
    connection: each statement is one round trip (asyncpg sends none it does not log)."""

    def __init__(self) -> None:
        self.statements = 0
        self.elapsed = 0.0
        self.texts: dict[str, list[float]] = {}  # statement -> [count, client-side seconds]

    def __call__(self, record: Any) -> None:
        self.statements += 1
        self.elapsed += record.elapsed
        key = " ".join(record.query.split())[:90]
        seen = self.texts.setdefault(key, [0, 0.0])
        seen[0] += 1
        seen[1] += record.elapsed


async def bench(
    url: str,
    runs: int,
    items: int,
    home: Path,
    github_url: str,
    history_budget: int,
    requests: Callable[[], int],
) -> dict[str, Any]:
    conn = await db.connect(url)
    await migrate.apply(conn)
    postmaster = await conn.fetchval("SELECT pid FROM pg_stat_activity WHERE backend_type ="
                                     " 'postmaster'") or 0  # fmt: skip
    if not postmaster:
        data_dir = await conn.fetchval("SHOW data_directory")
        postmaster = int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
    await conn.close()
    counter = Counter()

    async def init(c: asyncpg.Connection) -> None:
        await db._init_connection(c)
        c.add_query_logger(counter)

    pool = await asyncpg.create_pool(url, min_size=2, max_size=4, init=init)
    assert pool is not None
    settings = Settings(home=home, sweep_every_runs=0, history_budget=history_budget)
    team = await pool.fetchval(
        "INSERT INTO teams (name, product, repo_path) VALUES ($1, 'p', '/r') RETURNING id",
        f"bench-{uuid.uuid4().hex[:6]}",
    )
    config = {
        "token": "bench",
        "base_url": github_url,
        "repos": ["acme/web"],
        "seconds_between_requests": 0,
    }
    integration = await pool.fetchval(
        "INSERT INTO integrations (team_id, type, config, sync_interval) VALUES ($1, 'github',"
        " $2, 60) RETURNING id",
        team,
        config,
    )
    first = await sync.run_integration(pool, integration, settings, environ={})
    assert first.outcome == "succeeded", first.summary()

    # the bench's own statements, on a connection of its own (not counted, not the pool's)
    own = await db.connect(url)

    async def one_run() -> sync.RunResult:
        # As the scheduler's tick for a due integration: the last start is an interval ago.
        await own.execute(
            "UPDATE integration_sync_state SET last_started_at = now() - interval '61 s',"
            " last_success_at = now() - interval '61 s' WHERE integration_id = $1",
            integration,
        )
        return await sync.run_integration(pool, integration, settings, environ={})

    for _ in range(20):  # warm up: imports, prepared statements, the pool
        await one_run()
    pg_pids = postgres_pids(postmaster)
    rows0 = await own.fetchval("SELECT count(*) FROM activity_logs")
    counter.statements, counter.elapsed, counter.texts = 0, 0.0, {}
    requests0 = requests()
    cpu0, pg0, wall0 = time.process_time(), server_cpu_s(pg_pids), time.perf_counter()
    outcomes: dict[str, int] = {}
    for _ in range(runs):
        result = await one_run()
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
    wall = time.perf_counter() - wall0
    cpu, pg = time.process_time() - cpu0, server_cpu_s(pg_pids) - pg0
    requests_made = requests() - requests0
    rows = await own.fetchval("SELECT count(*) FROM activity_logs") - rows0
    await own.close()
    await pool.close()
    return {
        "name": "noop_run",
        "runs": runs,
        "items": items,
        "outcomes": outcomes,
        "wall_ms_per_run": round(wall / runs * 1000, 2),
        "worker_cpu_ms_per_run": round(cpu / runs * 1000, 2),
        "pg_cpu_ms_per_run": round(pg / runs * 1000, 2),
        "activity_rows_per_run": round(rows / runs, 3),
        "requests_per_run": round(requests_made / runs, 2),  # (the measured runs' own)
        "statements_per_run": round(counter.statements / runs, 2),
        "statement_ms_per_run": round(counter.elapsed / runs * 1000, 2),
        # per run: how many, and their client-side milliseconds
        "statements": {
            k: [round(n / runs, 2), round(t / runs * 1000, 3)]
            for k, (n, t) in sorted(counter.texts.items())
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    parser.add_argument("--quiet", action="store_true", help="no per-statement breakdown")
    parser.add_argument(
        "--history-budget",
        type=int,
        default=50,
        help="C9_SYNC_HISTORY_BUDGET (0 for large --items: else every run reads history,"
        " 50 requests at a time, until the whole backlog is read)",
    )
    args = parser.parse_args()
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("fork").Process(
        target=serve_github, args=(args.items, args.latency, theirs), daemon=True
    )
    child.start()
    github_url = ours.recv()

    def requests() -> int:  # (the sandbox's requests so far)
        ours.send("count")
        count: int = ours.recv()
        return count

    home = Path(tempfile.mkdtemp(prefix="c9-bench-noop-"))
    try:
        external = os.environ.get("DATABASE_URL")
        if external:
            out = asyncio.run(
                bench(
                    external, args.runs, args.items, home, github_url, args.history_budget, requests
                )
            )
        else:
            with db.embedded_postgres(home / "pgdata") as url:
                out = asyncio.run(
                    bench(
                        url, args.runs, args.items, home, github_url, args.history_budget, requests
                    )
                )
        ours.send("stop")
        ours.recv()
    finally:
        child.join(5)
        shutil.rmtree(home, ignore_errors=True)
    if args.quiet:
        out.pop("statements")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

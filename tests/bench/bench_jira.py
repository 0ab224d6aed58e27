"""Benchmark: the Jira connector against the Jira sandbox (real python-jira, loopback HTTP).

Seeds N issues across two projects, runs a full `changes({})`, touches 1% of the issues, then runs
an incremental `changes(since)` from the checkpoint minus the overlap, and an `all_ids()` sweep.
Prints items, pages, requests to the sandbox by endpoint and wall time for each; then the same for
N=10000 when the first full sync suggests it takes under a minute.

    python tests/bench/bench_jira.py [--n 1000] [--page-size 100] [--zone Australia/Sydney]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pydantic import SecretStr

from connectors.base import ConnectorContext, Page
from connectors.jira import JiraConfig, JiraConnector
from connectors.sandbox.jira import JiraSandbox

PROJECTS = ["PAY", "WEB"]
T0 = datetime(2025, 1, 1, tzinfo=UTC)
TOKEN = "bench-token"
STATUSES = ["To Do", "In Progress", "In Review", "Blocked", "Done"]


def report(label: str, pages: int, items: int, sandbox: JiraSandbox, seconds: float) -> None:
    by_endpoint = Counter(f"{r.method} {r.path}" for r in sandbox.requests)
    print(
        f"  {label:<12} items={items:<6} pages={pages:<4} requests={len(sandbox.requests):<4} "
        f"wall={seconds:6.2f}s  " + ", ".join(f"{k}: {v}" for k, v in sorted(by_endpoint.items()))
    )


def seed(sandbox: JiraSandbox, n: int) -> list[str]:
    keys = []
    for i in range(n):
        issue = sandbox.add_issue(
            PROJECTS[i % 2],
            f"Issue {i}: something to fix",
            updated=T0 + timedelta(minutes=i),
            status=STATUSES[i % len(STATUSES)],
            priority=["Highest", "High", "Medium", "Low"][i % 4],
            story_points=[1, 2, 3, 5, 8, None][i % 6],
            description=f"Steps to reproduce {i}.\n\nExpected: it works.",
        )
        keys.append(issue.key)
    return keys


async def run(n: int, page_size: int, zone: str) -> float:
    sandbox = JiraSandbox(token=TOKEN, time_zone=zone)
    sandbox.start()
    try:
        started = time.monotonic()
        keys = seed(sandbox, n)
        print(
            f"N={n} across {len(PROJECTS)} projects (seeded in {time.monotonic() - started:.2f}s)"
        )
        config = JiraConfig(
            url=sandbox.url,
            email=sandbox.email,
            projects=PROJECTS,
            page_size=page_size,
            story_points_field="Story point estimate",
        )
        with tempfile.TemporaryDirectory() as tmp:
            ctx = ConnectorContext("bench", SecretStr(TOKEN), Path(tmp))
            connector = JiraConnector(config, ctx)
            try:
                started = time.monotonic()
                full: list[Page] = [page async for page in connector.changes({})]
                full_seconds = time.monotonic() - started
                items = sum(len(p.items) for p in full)
                report("full", len(full), items, sandbox, full_seconds)

                checkpoint = full[-1].checkpoint
                later = checkpoint[""] + timedelta(hours=1)
                for key in keys[::99][: max(1, n // 100)]:  # 1%, odd step: both projects
                    sandbox.update_issue(key, at=later, summary="touched")
                since = {s: t - connector.overlap for s, t in checkpoint.items()}
                sandbox.clear_requests()
                started = time.monotonic()
                again = [page async for page in connector.changes(since)]
                items = sum(len(p.items) for p in again)
                report("incremental", len(again), items, sandbox, time.monotonic() - started)

                sandbox.clear_requests()
                started = time.monotonic()
                batches = [batch async for batch in connector.all_ids()]
                ids = sum(len(b) for b in batches)
                report("all_ids", len(batches), ids, sandbox, time.monotonic() - started)
            finally:
                await connector.aclose()
        return full_seconds
    finally:
        sandbox.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--zone", default="Australia/Sydney", help="the user's profile time zone")
    parser.add_argument("--no-big", action="store_true", help="skip the N=10000 run")
    args = parser.parse_args()
    print(f"page_size={args.page_size}, user time zone {args.zone}, rest api 3 (ADF)")
    full_seconds = asyncio.run(run(args.n, args.page_size, args.zone))
    if not args.no_big and args.n < 10000 and full_seconds * 10000 / args.n < 60:
        asyncio.run(run(10000, args.page_size, args.zone))


if __name__ == "__main__":
    main()

"""Benchmark: the Linear connector against the Linear sandbox (httpx, loopback HTTP).

Seeds N issues across two teams, runs a full `changes({})`, touches 1% of the issues, then runs an
incremental `changes(since)` from the checkpoints minus the overlap, then the `all_ids()` sweep.
Prints items, pages, requests by GraphQL operation (one POST endpoint) and wall time for each.

    python tests/bench/bench_linear.py [--n 10000] [--page-size 100]
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
from connectors.linear import LinearConfig, LinearConnector
from connectors.sandbox import graphql
from connectors.sandbox.linear import LinearSandbox

TEAMS = [("ENG", "Engineering"), ("OPS", "Platform Ops")]
T0 = datetime(2025, 1, 1, tzinfo=UTC)
TOKEN = "lin_api_bench"
STATES = ["Backlog", "Todo", "In Progress", "In Review", "Done", "Canceled"]


def by_operation(sandbox: LinearSandbox) -> Counter[str]:
    """Requests grouped as `POST /graphql <operation name>`."""
    counts: Counter[str] = Counter()
    for request in sandbox.requests:
        name = graphql.operation_name(request.json()["query"]) or "anonymous"
        counts[f"{request.method} {request.path} {name}"] += 1
    return counts


def report(label: str, items: int, pages: int, sandbox: LinearSandbox, seconds: float) -> None:
    ops = by_operation(sandbox)
    print(
        f"  {label:<12} items={items:<6} pages={pages:<4} requests={len(sandbox.requests):<4} "
        f"wall={seconds:6.2f}s  " + ", ".join(f"{k}: {v}" for k, v in sorted(ops.items()))
    )


async def run(n: int, page_size: int) -> None:
    with LinearSandbox(token=TOKEN, teams=TEAMS) as sandbox:
        started = time.monotonic()
        ids = [
            sandbox.add_issue(
                TEAMS[i % 2][0],
                title=f"Bench issue {i}",
                updated_at=T0 + timedelta(seconds=37 * i),
                state=STATES[i % len(STATES)],
                priority=i % 5,
                estimate=(i % 8) or None,
                labels=("Blocked",) if i % 50 == 0 else (),
                description="Some *markdown* body " * 5,
            )["id"]
            for i in range(n)
        ]
        print(f"Linear, N={n}, page_size={page_size}, teams={[k for k, _ in TEAMS]}")
        print(f"  seeded in {time.monotonic() - started:.2f}s")
        config = LinearConfig(
            team_keys=[k for k, _ in TEAMS],
            api_url=f"{sandbox.url}/graphql",
            page_size=page_size,
        )
        with tempfile.TemporaryDirectory() as tmp:
            ctx = ConnectorContext(
                integration_id="bench", token=SecretStr(TOKEN), cache_dir=Path(tmp)
            )
            connector = LinearConnector(config, ctx)
            try:
                # Full sync
                sandbox.clear_requests()
                started = time.monotonic()
                pages: list[Page] = [p async for p in connector.changes({})]
                full = time.monotonic() - started
                count = sum(len(p.items) for p in pages)
                report("full", count, len(pages), sandbox, full)
                assert count == n, (count, n)
                checkpoint = {s: t for p in pages for s, t in p.checkpoint.items()}

                # Touch 1%, then an incremental sync from the checkpoints minus the overlap.
                later = max(checkpoint.values()) + timedelta(hours=1)
                touched = ids[:: max(1, n // max(1, n // 100))][: max(1, n // 100)]
                for k, issue_id in enumerate(touched):
                    sandbox.update_issue(issue_id, at=later + timedelta(seconds=k), title="touched")
                sandbox.clear_requests()
                since = {s: t - connector.overlap for s, t in checkpoint.items()}
                started = time.monotonic()
                pages = [p async for p in connector.changes(since)]
                incremental = time.monotonic() - started
                got = [i for p in pages for i in p.items]
                report("incremental", len(got), len(pages), sandbox, incremental)
                assert {i.external_id for i in got} >= set(touched)

                # Deletion sweep
                sandbox.clear_requests()
                started = time.monotonic()
                batches = [b async for b in connector.all_ids()]
                sweep = time.monotonic() - started
                report("all_ids", sum(map(len, batches)), len(batches), sandbox, sweep)
            finally:
                await connector.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(run(args.n, args.page_size))


if __name__ == "__main__":
    main()

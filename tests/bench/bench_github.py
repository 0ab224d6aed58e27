"""Benchmark: the GitHub connector against the GitHub sandbox (real PyGithub, loopback HTTP).

Seeds N issues across two repositories, runs a full `changes({})`, touches 1% of the issues, then
runs an incremental `changes(since)` from the checkpoints minus the overlap. Prints items, pages,
requests to the sandbox by endpoint and wall time for each; then the same for N=10000 when the
first full sync suggests it takes under a minute.

    python tests/bench/bench_github.py [--n 1000] [--throttle 0.1] [--no-big]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pydantic import SecretStr

from connectors.base import ConnectorContext, Page
from connectors.github import GitHubConfig, GitHubConnector
from connectors.sandbox.github import GitHubSandbox

REPOS = ["bench/web", "bench/api"]
T0 = datetime(2025, 1, 1, tzinfo=UTC)
TOKEN = "bench-token"


def endpoint(path: str) -> str:
    """`/repos/o/r/issues/12` -> `/repos/{o}/{r}/issues/{n}`: group requests by endpoint."""
    path = re.sub(r"^/repos/[^/]+/[^/]+", "/repos/{o}/{r}", path)
    return re.sub(r"/\d+$", "/{n}", path)


def report(label: str, pages: list[Page], sandbox: GitHubSandbox, seconds: float) -> None:
    items = sum(len(p.items) for p in pages)
    by_endpoint = Counter(endpoint(r.path) for r in sandbox.requests)
    print(
        f"  {label:<12} items={items:<6} pages={len(pages):<4} "
        f"requests={len(sandbox.requests):<4} wall={seconds:6.2f}s  "
        + ", ".join(f"{k}: {v}" for k, v in sorted(by_endpoint.items()))
    )


async def run(n: int, throttle: float) -> float:
    sandbox = GitHubSandbox(token=TOKEN)
    sandbox.start()
    try:
        seed_start = time.monotonic()
        ids = []
        for i in range(n):
            issue = sandbox.add_issue(
                REPOS[i % 2],
                f"Issue {i}: something to fix",
                updated_at=T0 + timedelta(minutes=i),
                labels=["bug", "P2"] if i % 3 == 0 else ["enhancement"],
                state="closed" if i % 4 == 0 else "open",
                assignees=["mira"] if i % 5 == 0 else [],
            )
            ids.append(issue.id)
        print(f"N={n} across {len(REPOS)} repos (seeded in {time.monotonic() - seed_start:.2f}s)")
        config = GitHubConfig(
            token=SecretStr(TOKEN),
            repos=REPOS,
            base_url=sandbox.url,
            seconds_between_requests=throttle,
        )
        with tempfile.TemporaryDirectory() as tmp:
            ctx = ConnectorContext("bench", SecretStr(TOKEN), Path(tmp))
            connector = GitHubConnector(config, ctx)
            try:
                started = time.monotonic()
                full = [page async for page in connector.changes({})]
                full_seconds = time.monotonic() - started
                report("full", full, sandbox, full_seconds)

                checkpoint = {s: t for p in full for s, t in p.checkpoint.items()}
                later = max(checkpoint.values()) + timedelta(hours=1)
                for issue_id in ids[::99][: n // 100]:  # 1%, odd step: both repositories
                    sandbox.update(issue_id, at=later, title="touched")
                since = {s: t - connector.overlap for s, t in checkpoint.items()}
                sandbox.clear_requests()
                started = time.monotonic()
                again = [page async for page in connector.changes(since)]
                report("incremental", again, sandbox, time.monotonic() - started)
            finally:
                await connector.aclose()
        return full_seconds
    finally:
        sandbox.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--throttle", type=float, default=0.1, help="seconds_between_requests")
    parser.add_argument("--no-big", action="store_true", help="skip the N=10000 run")
    args = parser.parse_args()
    print(f"seconds_between_requests={args.throttle}, per_page=100")
    full_seconds = asyncio.run(run(args.n, args.throttle))
    if not args.no_big and args.n < 10000 and full_seconds * 10000 / args.n < 60:
        asyncio.run(run(10000, args.throttle))


if __name__ == "__main__":
    main()

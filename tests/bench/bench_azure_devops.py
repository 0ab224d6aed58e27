"""Benchmark: the Azure DevOps connector's WIQL windows against its sandbox, through the real SDK.

    python -m tests.bench --scenario azure_devops-wiql-cap [--items 45000]
    python -m tests.bench.bench_azure_devops [--items 45000] [--ignore-top]

The WIQL cap case: N items all changed in ONE day, 750 sharing each ChangedDate. With
--ignore-top the sandbox also refuses any query matching more than 20,000 items even with $top
(VS402337), so the connector has to bisect its windows. Prints items, pages, requests by endpoint
and wall time. (The full and incremental imports are the suite's `azure_devops` scenario.)
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr

from connectors.azure_devops import AzureDevOpsConfig, AzureDevOpsConnector
from connectors.base import ConnectorContext
from connectors.sandbox.azure_devops import AzureDevOpsSandbox

TOKEN = "bench-pat"
START = datetime(2025, 4, 1, tzinfo=UTC)


def endpoint(method: str, path: str) -> str:
    tail = path.rstrip("/").rsplit("/", 1)[-1]
    return f"{method} {'workitemtypes/*/states' if tail == 'states' else tail}"


def connector(sandbox: AzureDevOpsSandbox, cache: Path) -> AzureDevOpsConnector:
    config = AzureDevOpsConfig(
        organization_url=sandbox.organization_url, project=sandbox.project, token=TOKEN
    )
    ctx = ConnectorContext(integration_id="bench", token=SecretStr(TOKEN), cache_dir=cache)
    return AzureDevOpsConnector(config, ctx)


async def run(
    label: str,
    sandbox: AzureDevOpsSandbox,
    conn: AzureDevOpsConnector,
    since: dict[str, datetime],
) -> dict[str, datetime]:
    """One changes() run; prints its figures and returns the last checkpoint."""
    sandbox.clear_requests()
    items = pages = 0
    seen: set[str] = set()
    checkpoint: dict[str, datetime] = {}
    started = time.perf_counter()
    async for page in conn.changes(since):
        pages += 1
        items += len(page.items)
        seen.update(i.external_id for i in page.items)
        checkpoint = dict(page.checkpoint) or checkpoint
    wall = time.perf_counter() - started
    by_endpoint = Counter(endpoint(r.method, r.path) for r in sandbox.requests)
    print(f"\n== {label}")
    print(f"items {items} (unique {len(seen)}), pages {pages}, wall {wall:.2f} s")
    print(
        f"requests {sum(by_endpoint.values())}: "
        + ", ".join(f"{name} {count}" for name, count in sorted(by_endpoint.items()))
    )
    if sandbox.wiql_refusals:
        print(f"WIQL refused with VS402337: {sandbox.wiql_refusals}")
    return checkpoint


async def one_day(n: int, ignore_top: bool, cache: Path) -> None:
    with AzureDevOpsSandbox(token=TOKEN) as sandbox:
        assert isinstance(sandbox, AzureDevOpsSandbox)
        sandbox.cap_ignores_top = ignore_top
        stamps = [START + timedelta(minutes=23 * k, milliseconds=417) for k in range(n // 750 + 1)]
        sandbox.add_items_fast((f"Item {k}", stamps[k % len(stamps)]) for k in range(n))
        conn = connector(sandbox, cache)
        mode = ", server ignores $top for the cap" if ignore_top else ""
        await run(f"full sync, {n} items changed in one day{mode}", sandbox, conn, {})
        await conn.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=45_000, help="items changed in one day")
    parser.add_argument("--ignore-top", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        asyncio.run(one_day(args.items, args.ignore_top, Path(cache)))


if __name__ == "__main__":
    main()

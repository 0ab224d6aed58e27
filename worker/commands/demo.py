"""`c9-sync demo`: the whole product on one machine, in one command.

Migrates the database (embedded unless DATABASE_URL is set), inserts the seed's Demo Team and its
agents, starts the four sandbox trackers with realistic issues, points one `integrations` row per
tracker at them, runs one sync with a progress display, and prints what a dashboard would show.
Run it again: the second run finds everything already in place and changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

from asyncpg import Pool
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from connectors.sandbox.azure_devops import AzureDevOpsSandbox
from connectors.sandbox.base import SandboxServer
from connectors.sandbox.github import GitHubSandbox
from connectors.sandbox.jira import JiraSandbox
from connectors.sandbox.linear import LinearSandbox
from worker import daemon, db, metrics, sync, views
from worker.commands.common import Subparsers, add_with_sets, migration_sets
from worker.settings import Settings
from worker.store import dashboard
from worker.store import integrations as store

TEAM = "Demo Team"
STATUSES = ("queued", "in_progress", "pr_ready", "blocked", "completed", "cancelled")
# Fixed ports keep each sandbox's site (part of an item's identity) the same from one demo run to
# the next; a busy port falls back to a free one.
SANDBOXES: dict[str, tuple[type[SandboxServer], int]] = {
    "github": (GitHubSandbox, 47811),
    "jira": (JiraSandbox, 47812),
    "azure_devops": (AzureDevOpsSandbox, 47813),
    "linear": (LinearSandbox, 47814),
}


@contextlib.contextmanager
def sandboxes() -> Iterator[dict[str, dict[str, Any]]]:
    """Start and seed every sandbox; yield type -> integrations.config."""
    with contextlib.ExitStack() as stack:
        configs = {}
        for source, (cls, port) in SANDBOXES.items():
            server = cls()
            server.start(port)
            stack.callback(server.stop)
            server.seed_demo()
            configs[source] = server.demo_config()
        yield configs


async def seed(pool: Pool, configs: dict[str, dict[str, Any]]) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """The seed's example rows (Demo Team and its two agents) and one integration per sandbox,
    pointed at this run's sandboxes (idempotent: a second demo re-points the same rows)."""
    async with pool.acquire() as conn, conn.transaction():
        team_id = await store.insert_team(
            conn, TEAM, product="Demo Product", repo_path="/repos/demo", status="active",
            reactivate=True,
        )  # fmt: skip
        await store.seed_demo_agents(conn, team_id)
        ids = []
        for source, config in configs.items():
            written = await store.insert_integration(
                conn,
                integration_id=uuid.uuid4(),
                team_id=team_id,
                type_=source,
                name=f"Demo {source} sandbox",
                config=config,
                active=True,
                interval=300,
                replace=True,
            )
            assert written is not None  # replace=True always returns the row's id
            ids.append(written)
    return team_id, ids


async def sync_with_progress(
    pool: Pool, ids: list[uuid.UUID], settings: Settings
) -> list[sync.RunResult]:
    names = {i.id: i.type for i in await store.list_integrations(pool) if i.id in ids}
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=views.console,
        transient=False,
    ) as progress:
        tasks = {i: progress.add_task(f"{names[i]:<13} starting", total=None) for i in ids}

        async def one(integration_id: uuid.UUID) -> sync.RunResult:
            task = tasks[integration_id]

            def on_page(r: sync.RunResult) -> None:
                progress.update(
                    task,
                    description=(
                        f"{names[integration_id]:<13} page {r.pages}: {r.created} created,"
                        f" {r.updated} updated, {r.unchanged} unchanged"
                    ),
                )

            result = await sync.run_integration(
                pool,
                integration_id,
                settings,
                environ=dict(os.environ),
                options=sync.RunOptions(force=True, on_page=on_page),
            )
            progress.update(
                task,
                total=1,
                completed=1,
                description=f"{names[integration_id]:<13} {result.outcome}: "
                f"{result.created} created, {result.updated} updated, "
                f"{result.unchanged} unchanged",
            )
            return result

        return list(await asyncio.gather(*(one(i) for i in ids)))


async def print_summary(pool: Pool, team_id: uuid.UUID, tz: str) -> None:
    counts: dict[str, dict[str, int]] = {}
    for r in await dashboard.status_counts(pool, team_id):
        counts.setdefault(r["source"], {})[r["status"]] = r["n"]
    rows = [
        [source, *(by.get(s, 0) for s in STATUSES), sum(by.values())]
        for source, by in sorted(counts.items())
    ]
    rows.append(
        [
            "all",
            *(sum(by.get(s, 0) for by in counts.values()) for s in STATUSES),
            sum(sum(by.values()) for by in counts.values()),
        ]
    )
    views.print_table(
        f"{TEAM}: work items by source and status", ("source", *STATUSES, "total"), rows
    )

    queue = await dashboard.work_queue(pool, team_id, 10)
    views.print_table(
        "work queue (v_team_work_queue, top 10)",
        ("source", "key", "title", "status", "priority"),
        [
            (q["source"], q["external_key"], q["title"][:60], q["status"], q["priority"])
            for q in queue
        ],
    )

    async with pool.acquire() as conn:
        today = await metrics.local_today(conn, tz)
    days = await dashboard.recent_metrics(pool, team_id, today, 7)
    if days:
        views.print_table(
            f"metrics, last 7 days ({tz})",
            ("day", "stories completed", "commits", "avg completion (h)"),
            [
                (
                    d["metric_date"],
                    d["stories_completed"],
                    d["commits_count"],
                    d["avg_completion_time_hours"],
                )
                for d in days
            ],
        )
    activity = await dashboard.activity_counts(pool, team_id)
    views.print_table(
        "activity_logs", ("event type", "rows"), [(a["event_type"], a["n"]) for a in activity]
    )


async def run(settings: Settings, url: str, sets: tuple[str, ...]) -> int:
    """The whole demo; exit 1 when a sync failed."""
    await daemon.ensure_schema(url, settings, sets)
    pool = await db.create_pool(url, max_size=8)
    # The sandboxes listen on new ports each time: the Azure DevOps SDK's on-disk cache of API
    # locations (kept 12 h) must not serve a previous demo's routes on a reused port.
    ado_cache = tempfile.TemporaryDirectory(prefix="c9-demo-ado-")
    os.environ["AZURE_DEVOPS_CACHE_DIR"] = ado_cache.name
    try:
        with sandboxes() as configs:
            team_id, ids = await seed(pool, configs)
            results = await sync_with_progress(pool, ids, settings)
            # The sandboxes stop with the demo: pause their rows so a later `c9-sync run` does
            # not keep failing against trackers that are gone.
            await store.set_active(pool, ids, False)
        for result in results:
            views.say(result.summary())
        await print_summary(pool, team_id, settings.metrics_tz)
    finally:
        await pool.close()
        ado_cache.cleanup()
    failed = [r for r in results if r.outcome == "failed"]
    views.say(
        "demo complete"
        + (f" with {len(failed)} failed sync(s)" if failed else "")
        + ". Its integrations are paused now that the sandboxes have stopped; add your "
        "own rows to `integrations` and start `c9-sync run`."
    )
    return 1 if failed else 0


async def cmd_demo(args: argparse.Namespace, settings: Settings, url: str) -> int:
    if "C9_SYNC_LOG_LEVEL" not in os.environ:
        logging.getLogger().setLevel(logging.WARNING)  # the demo's own output tells the story
    return await run(settings, url, migration_sets(args, settings))


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "demo",
        help="sync four sandbox trackers into the database and show the "
        "result (no accounts needed)",
    )
    add_with_sets(p)
    p.set_defaults(func=cmd_demo)

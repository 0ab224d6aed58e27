"""`c9-sync demo`: the whole product on one machine, in one command.

Migrates the database (embedded unless DATABASE_URL is set), inserts the seed's Demo Team and its
agents, starts the four sandbox trackers with realistic issues, points one `integrations` row per
tracker at them, runs one sync with a progress display, and prints what a dashboard would show.
Run it again: the second run finds everything already in place and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from connectors.sandbox.azure_devops import AzureDevOpsSandbox
from connectors.sandbox.base import SandboxServer
from connectors.sandbox.github import GitHubSandbox
from connectors.sandbox.jira import JiraSandbox
from connectors.sandbox.linear import LinearSandbox
from worker import daemon, db, metrics, sync, views
from worker.settings import Settings

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
            server.seed_demo()  # type: ignore[attr-defined]
            configs[source] = server.demo_config()  # type: ignore[attr-defined]
        yield configs


async def seed_team(conn: asyncpg.Connection) -> uuid.UUID:
    """The seed's example rows: Demo Team and its two agents (idempotent)."""
    team_id: uuid.UUID = await conn.fetchval(
        "INSERT INTO teams (name, product, repo_path, status)"
        " VALUES ($1, 'Demo Product', '/repos/demo', 'active')"
        " ON CONFLICT (name) DO UPDATE SET status = 'active' RETURNING id",
        TEAM,
    )
    await conn.execute(
        "INSERT INTO agents (team_id, name, role, goal, status) VALUES"
        " ($1, 'backend_agent', 'Backend Developer', 'Build robust APIs and backend services',"
        "  'idle'),"
        " ($1, 'frontend_agent', 'Frontend Developer', 'Create responsive user interfaces',"
        "  'idle')"
        " ON CONFLICT (team_id, name) DO NOTHING",
        team_id,
    )
    return team_id


async def point_integrations(
    conn: asyncpg.Connection, team_id: uuid.UUID, configs: dict[str, dict[str, Any]]
) -> list[uuid.UUID]:
    ids = []
    for source, config in configs.items():
        ids.append(
            await conn.fetchval(
                "INSERT INTO integrations (team_id, type, name, config, sync_interval)"
                " VALUES ($1, $2, $3, $4, 300)"
                " ON CONFLICT (team_id, type) DO UPDATE"
                " SET config = EXCLUDED.config, is_active = true RETURNING id",
                team_id,
                source,
                f"Demo {source} sandbox",
                config,
            )
        )
    return ids


async def sync_with_progress(
    pool: asyncpg.Pool, ids: list[uuid.UUID], settings: Settings
) -> list[sync.RunResult]:
    names = {
        r["id"]: r["type"]
        for r in await pool.fetch("SELECT id, type FROM integrations WHERE id = ANY($1)", ids)
    }
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


async def print_summary(pool: asyncpg.Pool, team_id: uuid.UUID, tz: str) -> None:
    counts: dict[str, dict[str, int]] = {}
    for r in await pool.fetch(
        "SELECT source, status, count(*) AS n FROM work_items WHERE team_id = $1"
        " GROUP BY source, status",
        team_id,
    ):
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

    queue = await pool.fetch(
        "SELECT q.source, w.external_key, q.title, q.status, q.priority FROM v_team_work_queue q"
        " JOIN work_items w ON w.id = q.id WHERE q.team_id = $1 LIMIT 10",
        team_id,
    )
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
    days = await pool.fetch(
        "SELECT metric_date, stories_completed, commits_count, avg_completion_time_hours"
        " FROM metrics WHERE team_id = $1 AND metric_date > $2::date - 7 ORDER BY metric_date",
        team_id,
        today,
    )
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
    activity = await pool.fetch(
        "SELECT event_type, count(*) AS n FROM activity_logs WHERE team_id = $1"
        " GROUP BY event_type ORDER BY event_type",
        team_id,
    )
    views.print_table(
        "activity_logs", ("event type", "rows"), [(a["event_type"], a["n"]) for a in activity]
    )


async def run(settings: Settings, url: str, sets: tuple[str, ...]) -> int:
    await daemon.ensure_schema(url, settings, sets)
    pool = await db.create_pool(url, max_size=8)
    try:
        async with pool.acquire() as conn:
            team_id = await seed_team(conn)
        with sandboxes() as configs:
            async with pool.acquire() as conn:
                ids = await point_integrations(conn, team_id, configs)
            results = await sync_with_progress(pool, ids, settings)
            # The sandboxes stop with the demo: pause their rows so a later `c9-sync run` does
            # not keep failing against trackers that are gone.
            await pool.execute("UPDATE integrations SET is_active = false WHERE id = ANY($1)", ids)
        for result in results:
            views.say(result.summary())
        await print_summary(pool, team_id, settings.metrics_tz)
    finally:
        await pool.close()
    failed = [r for r in results if r.outcome == "failed"]
    views.say(
        "demo complete"
        + (f" with {len(failed)} failed sync(s)" if failed else "")
        + ". Its integrations are paused now that the sandboxes have stopped; add your "
        "own rows to `integrations` and start `c9-sync run`."
    )
    return 1 if failed else 0

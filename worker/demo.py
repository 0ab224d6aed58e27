"""`c9-sync demo`: the whole product on one machine, in one command.

Migrates the database (embedded unless DATABASE_URL is set), inserts the seed's Demo Team and its
agents, starts the four sandbox trackers with realistic issues and points one `integrations` row
per tracker at them. Then, by default, runs the daemon (the same `Worker` as `c9-sync run`) with a
short sync interval while the sandboxes act out a working team, and shows it live until Ctrl-C or
`--for SECONDS`. `--once` instead runs one sync with a progress display and prints what a
dashboard would show. Run it again: the database keeps its rows and the sandboxes seed the same
items, so the second run picks up where the first left and duplicates nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from asyncpg import Pool
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from connectors.sandbox.azure_devops import AzureDevOpsSandbox
from connectors.sandbox.base import SandboxServer
from connectors.sandbox.github import GitHubSandbox
from connectors.sandbox.jira import JiraSandbox
from connectors.sandbox.linear import LinearSandbox
from worker import daemon, db, live, metrics, redact, startup, sync, threads, views
from worker.scheduler import wait_event
from worker.settings import Settings
from worker.store import dashboard
from worker.store import integrations as store

TEAM = "Demo Team"
ONCE_INTERVAL = 300  # --once: the rows' interval (they are paused after the run anyway)
ACT_EVERY_S = (2.0, 5.0)  # the team makes one change every this many seconds (drawn)
# Fixed ports (C9_SYNC_DEMO_PORT and the next three) keep each sandbox's site (part of an item's
# identity) the same from one demo run to the next; a busy port falls back to a free one. The
# default is below the ephemeral ranges (Linux 32768-60999, macOS and Windows 49152-65535), so
# that no outgoing connection on the machine holds one.
SANDBOXES: dict[str, type[SandboxServer]] = {
    "github": GitHubSandbox,
    "jira": JiraSandbox,
    "azure_devops": AzureDevOpsSandbox,
    "linear": LinearSandbox,
}


@contextlib.contextmanager
def sandboxes(first_port: int) -> Iterator[dict[str, SandboxServer]]:
    """Start and seed every sandbox; yield type -> the running sandbox."""
    with contextlib.ExitStack() as stack:
        servers = {}
        for port, (source, cls) in enumerate(SANDBOXES.items(), first_port):
            server = cls()
            server.start(port)
            stack.callback(server.stop)
            if server.port != port:
                views.say(
                    f"port {port} is busy: the {source} sandbox listens on {server.port}, and "
                    "items whose identity holds the tracker's address are new to the database"
                )
            server.seed_demo()
            servers[source] = server
        yield servers


async def seed(
    pool: Pool, configs: Mapping[str, dict[str, Any]], interval: int = ONCE_INTERVAL
) -> tuple[uuid.UUID, list[uuid.UUID]]:
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
                interval=interval,
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
    views.print_table(
        f"{TEAM}: work items by source and status",
        ("source", *live.STATUSES, "total"),
        live.count_rows(counts),
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


async def run_once(settings: Settings, url: str, sets: tuple[str, ...]) -> int:
    """The one-shot demo; exit 1 when a sync failed."""
    await startup.ensure_schema(url, settings, sets)
    pool = await db.create_pool(url, max_size=8)
    ado_cache = _ado_cache()
    try:
        with sandboxes(settings.demo_port) as servers:
            configs = {source: s.demo_config() for source, s in servers.items()}
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


def _ado_cache() -> tempfile.TemporaryDirectory[str]:
    """The Azure DevOps SDK keeps an on-disk cache of API locations (12 h): a previous demo's
    sandbox on another port must not be served from it. Set before any connector starts."""
    cache = tempfile.TemporaryDirectory(prefix="c9-demo-ado-")
    os.environ["AZURE_DEVOPS_CACHE_DIR"] = cache.name
    return cache


async def act(
    servers: Mapping[str, SandboxServer],
    rng: random.Random,
    log: live.TeamLog,
    stop: asyncio.Event,
) -> None:
    """The demo team at work: every few seconds one change in one of the trackers, made
    through the sandbox's own methods (so its API then serves exactly that change)."""
    sources = sorted(servers)
    while not await wait_event(stop, rng.uniform(*ACT_EVERY_S)):
        source = rng.choice(sources)
        now = datetime.now(UTC)
        # in a thread: the sandbox's lock may be held by a request it is serving
        change = await asyncio.to_thread(servers[source].demo_step, rng, now)
        log.add(live.TeamChange(now, source, change.key, change.text))


async def run_live(
    settings: Settings,
    url: str,
    sets: tuple[str, ...],
    *,
    seconds: float | None,
    interval: int,
    seed_: int,
) -> int:
    """The daemon at work on the sandboxes, shown live until Ctrl-C or `seconds`; exit 1 when
    a part of it died."""
    started = time.monotonic()
    ado_cache = _ado_cache()
    # The sandboxes send signed webhooks as their trackers do: each change asks for a run at
    # once (polling every `interval` stays the truth), through the daemon's own listener.
    settings = settings.model_copy(update={"webhook_port": settings.webhook_port or _free_port()})
    hook_secret = secrets.token_urlsafe(24)
    worker = daemon.Worker(settings, url, os.environ)
    # From here on Ctrl-C (or SIGTERM) stops the demo in order, whatever it is doing.
    startup.install_stop_signals(worker.stop)
    loop = asyncio.get_running_loop()
    loop.set_default_executor(threads.ThreadPerCall())
    if seconds is not None:
        loop.call_later(seconds, worker.stop.set)

    def headline() -> str:
        left = (
            f"stops in {max(0, seconds - (time.monotonic() - started)):.0f}s or on Ctrl-C"
            if seconds is not None
            else "Ctrl-C stops it"
        )
        return (
            f"claude-nine-sync demo: the daemon syncs the {len(SANDBOXES)} sandbox trackers every "
            f"{interval}s, and at once on each one's webhook, into {where(settings, url)}, while"
            f" the team works in them; {left}"
        )

    log = live.TeamLog()
    try:
        await startup.ensure_schema(url, settings, sets)
        pool = await db.create_pool(url, max_size=4)
    except BaseException:
        ado_cache.cleanup()
        raise
    try:
        with sandboxes(settings.demo_port) as servers:
            configs = {
                source: {**s.demo_config(), "webhook_secret": hook_secret}
                for source, s in servers.items()
            }
            team_id, ids = await seed(pool, configs, interval)
            for server, integration_id in zip(servers.values(), ids, strict=True):
                server.hooks.subscribe(
                    f"http://127.0.0.1:{settings.webhook_port}/hooks/{integration_id}", hook_secret
                )
            try:
                team = act(servers, random.Random(seed_), log, worker.stop)
                view = live.show(pool, team_id, ids, log, worker.stop, headline)
                exit_code = await run_worker(
                    worker, sets, team, view, lambda: live.read(pool, team_id, ids, log), log
                )
                hooks_taken = len([
                    sent for server in servers.values() for sent in server.hooks.sent
                    if sent.status is not None and sent.status < 300
                ])  # fmt: skip
            finally:
                # The sandboxes stop with the demo: pause their rows so a later `c9-sync run`
                # does not keep failing against trackers that are gone.
                await store.set_active(pool, ids, False)
        await live.read(pool, team_id, ids, log)  # the last arrivals, after the final runs
    finally:
        await pool.close()
        ado_cache.cleanup()
    made, arrived = len(log.changes), len(log.arrived)
    views.say(
        f"demo stopped after {time.monotonic() - started:.0f}s: the team made {made} change(s)"
        f" in its trackers, {arrived} of them already in work_items ({hooks_taken} webhook"
        " deliveries taken by the daemon). Its integrations are paused"
        " now that the sandboxes have stopped; `c9-sync demo` again picks up where this run left."
    )
    print_where(settings, url)
    return exit_code


def _free_port() -> int:
    """A port free on the loopback address now, for the demo's webhook listener."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def run_worker(
    worker: daemon.Worker,
    sets: tuple[str, ...],
    team: Coroutine[Any, Any, None],
    view: Coroutine[Any, Any, live.PlainLog | None],
    read: Callable[[], Awaitable[live.Snapshot]],
    log: live.TeamLog,
) -> int:
    """The daemon as `c9-sync run` runs it (start, watch, graceful shutdown) with the team and
    the view beside it; either of them failing stops the demo (exit 1)."""
    tasks: list[asyncio.Task[Any]] = []
    exit_code = 0
    try:
        if await worker.start(sets):
            tasks = [asyncio.create_task(team), asyncio.create_task(view)]
            for task in tasks:
                task.add_done_callback(lambda _: worker.stop.set())
            exit_code = await worker.watch()
    finally:
        worker.stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await worker.shutdown()  # lets running syncs commit their page
        for coro in (team, view):
            coro.close()  # never started when the worker did not start: no warning
    plain = results[1] if len(results) > 1 else None
    if isinstance(plain, live.PlainLog):  # what landed while the daemon stopped
        for line in plain.lines(await read(), log):
            views.say(line)
    for failure in (r for r in results if isinstance(r, BaseException)):
        views.say(f"demo: {type(failure).__name__}: {failure}")
        exit_code = 1
    return exit_code


def where(settings: Settings, url: str) -> str:
    """The database in a few words, without its password."""
    if settings.database_url is not None:
        return f"DATABASE_URL {redact.dsn_for_display(url)}"
    return f"the embedded PostgreSQL in {settings.pgdata}"


#: What to ask the database after the demo (views made for dashboards).
QUERIES = (
    "SELECT type, health, items, last_success_at FROM v_integration_health",
    "SELECT source, status, items FROM v_team_status_counts ORDER BY source, status",
    "SELECT created_at, event_type, message FROM v_recent_activity LIMIT 20",
    "SELECT source, title, status, priority FROM v_team_work_queue LIMIT 10",
)


def print_where(settings: Settings, url: str) -> None:
    shown = redact.dsn_for_display(url)
    views.say(f"database: {where(settings, url)}")
    if settings.database_url is None:
        views.say(
            "  (it runs while a c9-sync process uses it: start `.venv/bin/c9-sync run` in "
            "another terminal to query it)"
        )
    views.say("try:")
    for query in QUERIES:
        views.say(f'  psql "{shown}" -c "{query}"')


async def main(
    args: argparse.Namespace, settings: Settings, url: str, sets: tuple[str, ...]
) -> int:
    """`c9-sync demo` (worker.commands.demo parses its arguments), the migration `sets` its
    database gets."""
    if "C9_SYNC_LOG_LEVEL" not in os.environ:
        # The demo's own output tells the story. On a terminal the live view shows the runs'
        # warnings (their activity rows): log lines would only tear its frame.
        live_view = not args.once and views.console.is_terminal
        logging.getLogger().setLevel(logging.ERROR if live_view else logging.WARNING)
    if args.once:
        return await run_once(settings, url, sets)
    return await run_live(
        settings, url, sets, seconds=args.seconds, interval=args.interval, seed_=args.seed
    )

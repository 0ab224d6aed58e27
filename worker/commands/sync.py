"""`c9-sync sync`: one pass over the active integrations (burst mode), then exit."""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid

import asyncpg

from worker import db, progress, remap, startup, sync, views
from worker.commands.common import Subparsers, add_with_sets, migration_sets
from worker.commands.integrations import resolve
from worker.errors import EXIT_FAILED, EXIT_OK, UsageError
from worker.settings import Settings
from worker.store import integrations as store


async def cmd_sync(args: argparse.Namespace, settings: Settings, url: str) -> int:
    await startup.ensure_schema(url, settings, migration_sets(args, settings))
    pool = await db.create_pool(url, max_size=settings.max_concurrency + 2)
    try:
        chosen = await store.list_integrations(
            pool, integration_id=await _integration_id(pool, args.integration), team_name=args.team
        )
        if not chosen:
            if args.integration or args.team:
                raise UsageError("no active integration matches --integration/--team")
            views.say("no active integrations: insert a row into `integrations` first")
            return EXIT_OK
        stop = asyncio.Event()
        startup.install_stop_signals(stop)
        limit = asyncio.Semaphore(settings.max_concurrency)
        environ = dict(os.environ)
        labels = {i.id: i.label for i in chosen}
        with progress.shown(views.console, labels) as on_page_for:

            async def one(integration: store.Integration) -> sync.RunResult:
                options = sync.RunOptions(
                    force=args.force, full=args.full, stop=stop,
                    on_page=on_page_for(integration.id),
                )  # fmt: skip
                async with limit:
                    result = await sync.run_integration(
                        pool, integration.id, settings, environ=environ, options=options
                    )
                    await remap.after_run(pool, result, settings)  # an edited status_map
                    return result

            results = await asyncio.gather(*(one(i) for i in chosen))
    finally:
        await pool.close()
    for integration, result in zip(chosen, results, strict=True):
        views.say(summary(integration, result))
    return EXIT_FAILED if any(r.outcome == "failed" for r in results) else EXIT_OK


async def _integration_id(pool: asyncpg.Pool, ref: str | None) -> uuid.UUID | None:
    """`--integration` as an id, TEAM/TYPE/NAME or TEAM/TYPE (resolved as the admin commands do)."""
    if ref is None:
        return None
    try:
        return uuid.UUID(ref)  # an unknown id is "no active integration matches", below
    except ValueError:
        async with pool.acquire() as conn:
            return (await resolve(conn, ref)).id


def summary(integration: store.Integration, result: sync.RunResult) -> str:
    """The run's one-line summary, led by TEAM/TYPE/NAME when the team has several integrations
    of that type (the run's own summary says TEAM/TYPE, which would not tell them apart)."""
    text = result.summary()
    short = f"{integration.team_name}/{integration.type}"
    if integration.siblings > 1 and text.startswith(short + ":"):
        return integration.label + text.removeprefix(short)
    return text


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "sync", help="one pass over active integrations, then exit (1 if any failed)"
    )
    p.add_argument(
        "--integration",
        metavar="ID|TEAM/TYPE[/NAME]",
        help="only this integration",
    )
    p.add_argument("--team", metavar="NAME", help="only this team's integrations")
    p.add_argument(
        "--full",
        action="store_true",
        help="ignore cursors: re-read everything and mark items deleted upstream",
    )
    p.add_argument("--force", action="store_true", help="run even if synced within its interval")
    add_with_sets(p)
    p.set_defaults(func=cmd_sync)

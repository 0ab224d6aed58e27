"""`c9-sync remap`: map the stored rows of integrations again with their current config (after
an admin edits `status_map`), without calling any tracker (worker/remap.py)."""

from __future__ import annotations

import argparse

from worker import db, remap, startup, views
from worker.commands.common import Subparsers, add_with_sets, migration_sets
from worker.commands.integrations import resolve
from worker.errors import EXIT_FAILED, EXIT_OK
from worker.settings import Settings
from worker.store import integrations as store


async def cmd_remap(args: argparse.Namespace, settings: Settings, url: str) -> int:
    await startup.ensure_schema(url, settings, migration_sets(args, settings))
    pool = await db.create_pool(url, max_size=2)
    try:
        if args.integration is not None:
            async with pool.acquire() as conn:
                chosen = [await resolve(conn, args.integration)]  # UsageError when unknown
        else:
            chosen = await store.list_integrations(pool)
        if not chosen:
            views.say("no active integrations: nothing to remap")
            return EXIT_OK
        results = []
        for integration in chosen:  # one at a time: each holds its integration's lock
            result = await remap.remap_integration(pool, integration.id, settings, wait=args.wait)
            result.label = integration.label
            views.say(result.summary())
            results.append(result)
    finally:
        await pool.close()
    return EXIT_FAILED if any(r.outcome != "remapped" for r in results) else EXIT_OK


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "remap",
        help="map stored items again with the current config (after a status_map edit),"
        " without calling the trackers",
        description="Re-derive status (through the current status_map), priority, story points"
        " and the times derived from history of every stored item, from its external_data and"
        " history, without calling the tracker. Idempotent; logged as activity; recomputes the"
        " metrics days it touches. Waits for (or refuses beside) a sync of the same"
        " integration. Exit 1 when an integration was refused or busy.",
    )
    p.add_argument(
        "--integration",
        metavar="ID|TEAM/TYPE[/NAME]",
        help="only this integration (default: every active integration)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for a running sync of an integration to finish (default 30)",
    )
    add_with_sets(p)
    p.set_defaults(func=cmd_remap)

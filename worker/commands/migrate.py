"""`c9-sync migrate`: apply pending schema migrations, or list them (`--status`)."""

from __future__ import annotations

import argparse

from worker import activity_upkeep, db, migrate, views
from worker.commands.common import Subparsers, add_with_sets, migration_sets
from worker.errors import EXIT_OK
from worker.settings import Settings


async def cmd_migrate(args: argparse.Namespace, settings: Settings, url: str) -> int:
    sets = migration_sets(args, settings)
    conn = await db.connect(url)
    try:
        if args.status:
            views.print_migration_status(await migrate.status(conn, sets))
            return EXIT_OK
        applied = await migrate.apply(conn, sets)
        # activity_logs partitions ahead (the daemon also makes them daily) and retention
        await activity_upkeep.upkeep(conn, settings)
    finally:
        await conn.close()
    views.say(f"{len(applied)} migration(s) applied" if applied else "schema is up to date")
    return EXIT_OK


def register(sub: Subparsers) -> None:
    p = sub.add_parser("migrate", help="apply pending schema migrations (safe to run concurrently)")
    p.add_argument("--status", action="store_true", help="list applied and pending migrations")
    add_with_sets(p)
    p.set_defaults(func=cmd_migrate)

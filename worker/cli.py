"""The `c9-sync` command: parse arguments and settings, pick the database, dispatch."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from pydantic import ValidationError

from worker import admin, health, logs, metrics, redact
from worker.db import DatabaseUnavailable, database_url
from worker.migrate import SETS, MigrationError
from worker.settings import Settings

Command = Callable[[argparse.Namespace, Settings, str], Coroutine[Any, Any, int]]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


class UsageError(Exception):
    """Bad input on the command line: one clear line, exit 2."""


def _migration_sets(args: argparse.Namespace, settings: Settings) -> tuple[str, ...]:
    """The sets chosen by C9_SYNC_WITH plus any `--with` on the command line."""
    return tuple(dict.fromkeys((*settings.migration_sets, *(args.with_sets or []))))


async def cmd_migrate(args: argparse.Namespace, settings: Settings, url: str) -> int:
    from worker import db, migrate, views

    sets = _migration_sets(args, settings)
    conn = await db.connect(url)
    try:
        if args.status:
            views.print_migration_status(await migrate.status(conn, sets))
            return EXIT_OK
        applied = await migrate.apply(conn, sets)
    finally:
        await conn.close()
    views.say(f"{len(applied)} migration(s) applied" if applied else "schema is up to date")
    return EXIT_OK


async def cmd_sync(args: argparse.Namespace, settings: Settings, url: str) -> int:
    from worker import daemon, db, store, sync, views

    await daemon.ensure_schema(url, settings, _migration_sets(args, settings))
    pool = await db.create_pool(url, max_size=settings.max_concurrency + 2)
    try:
        chosen = await store.list_integrations(
            pool, integration_id=args.integration, team_name=args.team
        )
        if not chosen:
            if args.integration or args.team:
                raise UsageError("no active integration matches --integration/--team")
            views.say("no active integrations: insert a row into `integrations` first")
            return EXIT_OK
        stop = asyncio.Event()
        daemon.install_stop_signals(stop)
        limit = asyncio.Semaphore(settings.max_concurrency)
        options = sync.RunOptions(force=args.force, full=args.full, stop=stop)
        environ = dict(os.environ)

        async def one(integration: store.Integration) -> sync.RunResult:
            async with limit:
                return await sync.run_integration(
                    pool, integration.id, settings, environ=environ, options=options
                )

        results = await asyncio.gather(*(one(i) for i in chosen))
    finally:
        await pool.close()
    for result in results:
        views.say(result.summary())
    return EXIT_FAILED if any(r.outcome == "failed" for r in results) else EXIT_OK


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integration id (a UUID): {value!r}") from None


async def cmd_demo(args: argparse.Namespace, settings: Settings, url: str) -> int:
    from worker import demo

    if "C9_SYNC_LOG_LEVEL" not in os.environ:
        logging.getLogger().setLevel(logging.WARNING)  # the demo's own output tells the story
    return await demo.run(settings, url, _migration_sets(args, settings))


async def cmd_run(args: argparse.Namespace, settings: Settings, url: str) -> int:
    from worker import daemon

    return await daemon.run(settings, url, sets=_migration_sets(args, settings))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="c9-sync",
        description="Keep PostgreSQL in step with Azure DevOps, Jira, GitHub and Linear.",
        epilog="Database: DATABASE_URL, or an embedded PostgreSQL in $C9_SYNC_HOME when unset.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    optional_sets = ", ".join(s for s in SETS if s != "core")

    def with_sets(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--with",
            dest="with_sets",
            action="append",
            choices=sorted(SETS),
            metavar="SET",
            help=f"also install an optional migration set ({optional_sets})",
        )

    p = sub.add_parser("migrate", help="apply pending schema migrations (safe to run concurrently)")
    p.add_argument("--status", action="store_true", help="list applied and pending migrations")
    with_sets(p)
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser(
        "sync", help="one pass over active integrations, then exit (1 if any failed)"
    )
    p.add_argument("--integration", type=_uuid, metavar="ID", help="only this integration")
    p.add_argument("--team", metavar="NAME", help="only this team's integrations")
    p.add_argument(
        "--full",
        action="store_true",
        help="ignore cursors: re-read everything and mark items deleted upstream",
    )
    p.add_argument("--force", action="store_true", help="run even if synced within its interval")
    with_sets(p)
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser(
        "demo",
        help="sync four sandbox trackers into the database and show the "
        "result (no accounts needed)",
    )
    with_sets(p)
    p.set_defaults(func=cmd_demo)

    admin.register(sub)
    health.register(sub)
    metrics.register(sub)

    p = sub.add_parser("run", help="run the daemon: sync every active integration on its interval")
    with_sets(p)
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        # Aliased settings report their variable's own name; the rest carry the prefix.
        name = field if field.isupper() else f"C9_SYNC_{field.upper()}"
        print(f"c9-sync: invalid setting {name}: {first['msg']}", file=sys.stderr)
        return EXIT_USAGE
    logs.configure(settings.log_level, settings.log_format)
    command: Command = args.func
    try:
        with database_url(settings) as url:
            return asyncio.run(command(args, settings, url))
    except KeyboardInterrupt:
        return EXIT_OK
    except DatabaseUnavailable as exc:
        print(f"c9-sync: database unavailable: {redact.scrub(str(exc))}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except (MigrationError, UsageError) as exc:
        print(f"c9-sync: {redact.scrub(str(exc))}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())

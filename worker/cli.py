"""The `c9-sync` command: build the parser from the command modules, parse the settings, pick the
database, dispatch, and turn errors into exit codes."""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys

from pydantic import ValidationError

from worker import logs, redact
from worker.commands import demo, integrations, metrics, migrate, oauth, remap, run, status, sync
from worker.commands.common import Command
from worker.db import database_url
from worker.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    DatabaseUnavailable,
    MigrationError,
    UsageError,
)
from worker.settings import Settings

# In the order `--help` lists them.
COMMAND_GROUPS = (migrate, sync, remap, demo, integrations, oauth, status, metrics, run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="c9-sync",
        description="Keep PostgreSQL in step with Azure DevOps, Jira, GitHub and Linear.",
        epilog="Database: DATABASE_URL, or an embedded PostgreSQL in $C9_SYNC_HOME when unset.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    finally:
        # The process ends next: no object needs collecting. The interpreter's last collection
        # walks every object the SDKs created (about 0.3 s of CPU, seconds on a loaded host),
        # which counted against the exit a SIGTERM's grace period promises.
        gc.freeze()


def _main(argv: list[str] | None) -> int:
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

"""`c9-sync run`: the daemon."""

from __future__ import annotations

import argparse

from worker.commands.common import Subparsers, add_with_sets, migration_sets
from worker.settings import Settings


async def cmd_run(args: argparse.Namespace, settings: Settings, url: str) -> int:
    from worker import daemon  # (its scheduler and listener: only this command loads them)

    return await daemon.run(settings, url, sets=migration_sets(args, settings))


def register(sub: Subparsers) -> None:
    p = sub.add_parser("run", help="run the daemon: sync every active integration on its interval")
    add_with_sets(p)
    p.set_defaults(func=cmd_run)

"""`c9-sync demo`: its arguments. The demo itself is worker.demo, imported only when it runs:
its sandboxes and their servers are a third of the import time of every other command (each
`c9-sync sync` a cron or a scheduler starts)."""

from __future__ import annotations

import argparse

from worker.commands.common import Subparsers, add_with_sets, migration_sets, positive
from worker.settings import Settings

LIVE_INTERVAL = 10  # live: short, so that each change the team makes lands within seconds
SEED = 18  # the team's rng: the same story every run


async def cmd_demo(args: argparse.Namespace, settings: Settings, url: str) -> int:
    from worker import demo

    return await demo.main(args, settings, url, migration_sets(args, settings))


def sync_interval(value: str) -> int:
    """argparse type: whole seconds, at least 5 (as `integrations.sync_interval` requires)."""
    try:
        seconds = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if seconds < 5:
        raise argparse.ArgumentTypeError(f"must be at least 5, got {value}")
    return seconds


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "demo",
        help="four sandbox trackers, a team working in them and the daemon syncing them into the "
        "database, shown live until Ctrl-C (no accounts needed)",
    )
    add_with_sets(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--once",
        action="store_true",
        help="sync the sandboxes once, print what a dashboard shows and exit",
    )
    mode.add_argument(
        "--for",
        dest="seconds",
        type=positive,
        metavar="SECONDS",
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    p.add_argument(
        "--interval",
        type=sync_interval,
        default=LIVE_INTERVAL,
        metavar="SECONDS",
        help=f"the demo integrations' sync_interval (default {LIVE_INTERVAL}, at least 5)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=SEED,
        help="the team's random seed: the same seed, the same story (default %(default)s)",
    )
    p.set_defaults(func=cmd_demo)

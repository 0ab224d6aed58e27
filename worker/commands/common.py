"""What several commands share: argument types and the migration sets to install."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine
from typing import Any

from schema import SETS
from worker.settings import Settings

Command = Callable[[argparse.Namespace, Settings, str], Coroutine[Any, Any, int]]
Subparsers = argparse._SubParsersAction  # the type of `add_subparsers()`'s result

MIN_INTERVAL = 5  # integrations_sync_interval_check


def migration_sets(args: argparse.Namespace, settings: Settings) -> tuple[str, ...]:
    """The sets chosen by C9_SYNC_WITH plus any `--with` on the command line."""
    return tuple(
        dict.fromkeys((*settings.migration_sets, *(getattr(args, "with_sets", None) or [])))
    )


def add_with_sets(p: argparse.ArgumentParser) -> None:
    """`--with SET`: also install an optional migration set."""
    optional_sets = ", ".join(s for s in SETS if s != "core")
    p.add_argument(
        "--with",
        dest="with_sets",
        action="append",
        choices=sorted(SETS),
        metavar="SET",
        help=f"also install an optional migration set ({optional_sets})",
    )


def positive(value: str) -> float:
    """argparse type: a number greater than 0."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return number


def interval(value: str) -> int:
    """argparse type: a sync interval in whole seconds, at least MIN_INTERVAL."""
    try:
        seconds = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {value!r}") from None
    if seconds < MIN_INTERVAL:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_INTERVAL} seconds, got {seconds}")
    return seconds

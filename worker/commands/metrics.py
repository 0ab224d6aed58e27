"""`c9-sync metrics rollup`: recompute the daily metrics of a range of days."""

from __future__ import annotations

import argparse
import re
from datetime import date, timedelta

from worker import db, metrics, startup, views
from worker.commands.common import Subparsers
from worker.errors import EXIT_OK, UsageError
from worker.settings import Settings
from worker.store import metrics as metrics_store

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_day(value: str, option: str, today: date) -> date:
    """A day on the command line: YYYY-MM-DD, `today` or `yesterday` (in the metrics zone)."""
    word = value.strip().lower()
    if word == "today":
        return today
    if word == "yesterday":
        return today - timedelta(days=1)
    if _ISO_DATE.match(word):
        try:
            return date.fromisoformat(word)
        except ValueError:
            pass
    raise UsageError(f"{option}: not a date: {value!r} (use YYYY-MM-DD, today or yesterday)")


async def cmd_rollup(args: argparse.Namespace, settings: Settings, url: str) -> int:
    tz = settings.metrics_tz
    await startup.ensure_schema(url, settings, ("core",))
    conn = await db.connect(url)
    try:
        try:
            today = await metrics.local_today(conn, tz)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        since = parse_day(args.since, "--since", today) if args.since else None
        until = parse_day(args.until, "--until", today) if args.until else None
        if since and until and since > until:
            raise UsageError(f"--since {since} is after --until {until}")
        if since and (max(until or today, today) - since).days + 1 > metrics.MAX_RANGE_DAYS:
            raise UsageError(
                f"--since {since}: range longer than {metrics.MAX_RANGE_DAYS} days (a typo?)"
            )
        if args.team is not None:
            if not await metrics_store.team_exists(conn, args.team):
                raise UsageError(f"no team named {args.team!r}")
        done = await metrics.rollup(
            conn, tz, team=args.team, since=since, until=until, fill_zeros=args.fill_zeros
        )
    finally:
        await conn.close()
    span = f"{since or 'first day'}..{until or 'last day'}"
    views.say(
        f"metrics rollup ({span}, {tz}): {done.teams} team(s), {done.days} day(s) recomputed,"
        f" {done.written} row(s) written, {done.deleted} deleted"
    )
    return EXIT_OK


def register(sub: Subparsers) -> None:
    group = sub.add_parser("metrics", help="daily team metrics (the `metrics` table)")
    msub = group.add_subparsers(dest="metrics_command", metavar="SUBCOMMAND", required=True)
    p = msub.add_parser(
        "rollup",
        help="recompute daily metrics for a range of days (backfill, time-zone change, repair)",
        description="Recompute the `metrics` rows of a range of days, in C9_SYNC_METRICS_TZ."
        " Default range per team: its first day with a completion, a commit, a conflict or an"
        " existing row, through today. Idempotent.",
    )
    p.add_argument("--since", metavar="DATE", help="first day (YYYY-MM-DD, today, yesterday)")
    p.add_argument(
        "--until",
        metavar="DATE",
        help="last day, included (default: today, or a team's last day with data if later)",
    )
    p.add_argument("--team", metavar="NAME", help="only this team (default: every team)")
    p.add_argument(
        "--fill-zeros",
        action="store_true",
        help="write a row of zeros for days with no activity (default: such days get no row)",
    )
    p.set_defaults(func=cmd_rollup)

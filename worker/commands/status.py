"""`c9-sync status`: the health of every integration (exit 1 when one is failing or stalled)."""

from __future__ import annotations

import argparse
import uuid
from collections import Counter
from datetime import UTC, datetime

from worker import credentials, health, migrate, views
from worker.commands.common import Subparsers, positive
from worker.errors import EXIT_FAILED, EXIT_OK
from worker.settings import Settings
from worker.store import census as census_store
from worker.store import credentials as credential_store
from worker.store import history as history_store
from worker.store.census import ScopeCensus
from worker.store.credentials import StoredCredential
from worker.store.integrations import label

# integration_tls.verification -> the status cell
_TLS_CELL = {
    "system": "verified",
    "custom_ca": "verified (custom CA)",
    "unverified": "NOT VERIFIED",
}


async def cmd_status(args: argparse.Namespace, settings: Settings, url: str) -> int:
    conn = await migrate.connect_current(url)
    try:
        rows = await health.overview(
            conn,
            stalled_factor=args.stalled_factor,
            stalled_min_s=args.stalled_min_seconds,
            no_history_limit_s=settings.run_deadline_seconds,
        )
        censuses = await census_store.latest(conn)
        expiries = await credential_store.latest(conn)
        tls = await credential_store.tls_modes(conn)
        backlogs = await history_store.backlogs(conn)
    finally:
        await conn.close()
    unhealthy = [r for r in rows if r.unhealthy]
    now = datetime.now(UTC)
    labels = health_labels(rows)
    if args.json:
        views.print_json(
            [
                {
                    **health.health_json(r),
                    "target": labels[r.id],  # what the admin commands take
                    "census": [census_json(c) for c in censuses.get(r.id, [])],
                    "credentials": [credential_json(c, now) for c in expiries.get(r.id, [])],
                    "tls": tls.get(r.id),
                    "history_backlog": backlogs.get(r.id),
                }
                for r in rows
            ]
        )
        return EXIT_FAILED if unhealthy else EXIT_OK
    if not rows:
        views.say("no integrations: add one with `c9-sync integrations add`")
        return EXIT_OK
    table_rows = []
    for r in rows:
        if r.running_for_s is not None:
            running = f"{health.span(r.running_for_s)}"
            if r.usual_duration_s:
                running += f" (usually {health.span(r.usual_duration_s)})"
            if r.progress:
                running += f": {health.progress_text(r.progress, now)}"
        else:
            running = ""
        error = ""
        if r.last_result.startswith("failed"):
            error = f"{r.last_error_class}: {(r.last_error or '')[:160]}"
        if r.next_run_at is None:
            next_run = ""
        elif r.next_run_at <= now:
            next_run = "due"
        else:
            next_run = health.ago(r.next_run_at, now)
        table_rows.append(
            (
                labels[r.id],
                r.state.upper() if r.unhealthy else r.state,
                health.ago(r.last_success_at, now) or "never",
                error,
                r.consecutive_failures,
                next_run,
                running,
                census_cell(censuses.get(r.id, [])),
                credential_cell(expiries.get(r.id, []), now),
                _TLS_CELL.get(tls.get(r.id) or "", ""),
                history_cell(backlogs.get(r.id)),
            )
        )
    views.print_table(
        "status",
        (
            "integration",
            "health",
            "last success",
            "last error",
            "failures",
            "next run",
            "running",
            "census",
            "credential",
            "tls",
            "history",
        ),
        table_rows,
    )
    active = sum(1 for r in rows if r.active)
    failing = sum(1 for r in unhealthy if r.state == "failing")
    stalled = sum(1 for r in unhealthy if r.state == "stalled")
    views.say(f"{active} active, {failing} failing, {stalled} stalled")
    return EXIT_FAILED if unhealthy else EXIT_OK


def health_labels(rows: list[health.Health]) -> dict[uuid.UUID, str]:
    """Each integration as the CLI names it: TEAM/TYPE, or TEAM/TYPE/NAME when its team has
    several of that type (`rows` must hold all of them, as `health.overview` returns)."""
    siblings = Counter((r.team, r.type) for r in rows)
    return {r.id: label(r.team, r.type, r.name, siblings[r.team, r.type]) for r in rows}


def history_cell(backlog: int | None) -> str:
    """ "read", "1,200 to read" (the budget works through it run by run); "" when not counted."""
    if backlog is None:
        return ""
    return "read" if backlog == 0 else f"{backlog:,} to read"


def census_cell(census: list[ScopeCensus]) -> str:
    """ "104/104", "82/104, 22 missing", "lost: acme/api"; "" before the first census."""
    if not census:
        return ""
    upstream = sum(c.upstream for c in census)
    missing = sum(c.missing for c in census)
    text = f"{upstream - missing}/{upstream}" + (f", {missing} missing" if missing else "")
    lost = [c.scope for c in census if c.lost]
    return text + (f"; lost: {', '.join(lost)}" if lost else "")


def census_json(c: ScopeCensus) -> dict[str, object]:
    return {
        "scope": c.scope,
        "upstream": c.upstream,
        "held": c.held,
        "removed": c.removed,
        "missing": c.missing,
        "lost": c.lost,
        "checked_at": health.iso(c.checked_at),
    }


def credential_cell(stored: list[StoredCredential], now: datetime) -> str:
    """The nearest expiry: "pat expires 2026-12-05 (6 d)", "pat EXPIRED 2026-11-20 (9 d ago)",
    "entra_token renewed by the worker"; "" when no run has learned one."""
    c = credentials.nearest(stored)
    if c is None:
        return ""
    if c.renewable:
        return f"{c.kind} renewed by the worker"
    day = c.expires_at.astimezone(UTC).date().isoformat()
    left = credentials.describe_left(c.expires_at, now)
    if c.expires_at <= now:
        return f"{c.kind} EXPIRED {day} ({left})"
    return f"{c.kind} expires {day} ({left})"


def credential_json(c: StoredCredential, now: datetime) -> dict[str, object]:
    return {
        "kind": c.kind,
        "expires_at": health.iso(c.expires_at),
        "renewable": c.renewable,
        "expired": c.expires_at <= now,
        "seconds_left": round((c.expires_at - now).total_seconds()),
        "observed_at": health.iso(c.observed_at),
    }


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "status", help="health of every integration: last result, next run, stalled runs"
    )
    p.add_argument(
        "--stalled-factor",
        type=positive,
        default=5.0,
        metavar="N",
        help="a run is stalled after N times its last duration (default 5)",
    )
    p.add_argument(
        "--stalled-min-seconds",
        type=positive,
        default=60.0,
        metavar="SECONDS",
        help="…and never before this many seconds (default 60)",
    )
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(func=cmd_status)

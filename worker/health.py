"""Integration health: what `c9-sync status` reports and `c9-sync integrations list` shows.

State per integration, from `integrations`, `integration_sync_state` and the advisory locks held
right now: ok, never synced, failing, running, stalled (running far longer than usual),
interrupted, disabled; and when it runs next.
"""

from __future__ import annotations

import argparse
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from worker import migrate, store, sync, views
from worker.settings import Settings

EXIT_OK, EXIT_FAILED = 0, 1

_OVERVIEW = """
SELECT i.id, t.name AS team, i.type, i.name, i.is_active, i.sync_interval,
       COALESCE(s.last_success_at, i.last_sync) AS last_success_at,
       s.last_started_at, s.last_error_at, s.last_error_class, s.last_error,
       COALESCE(s.consecutive_failures, 0) AS consecutive_failures,
       s.next_attempt_at, s.last_duration_s,
       EXISTS (SELECT 1 FROM pg_locks l
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                 AND l.classid = $1::int4::oid
                 AND l.objid = hashtext(i.id::text)::oid) AS running,
       now() AS now
FROM integrations i
JOIN teams t ON t.id = i.team_id
LEFT JOIN integration_sync_state s ON s.integration_id = i.id
WHERE ($2::uuid IS NULL OR i.id = $2)
ORDER BY t.name, i.type
"""


@dataclass(frozen=True, slots=True)
class Health:
    """One integration's health, as `list` and `status` show it."""

    id: uuid.UUID
    team: str
    type: str
    name: str | None
    active: bool
    interval_s: int
    state: str  # ok | never synced | failing | running | stalled | interrupted | disabled
    last_success_at: datetime | None
    last_started_at: datetime | None
    last_error_at: datetime | None
    last_error_class: str | None
    last_error: str | None
    consecutive_failures: int
    next_run_at: datetime | None  # None: disabled
    running_for_s: float | None  # set while a run holds the integration's lock
    usual_duration_s: float | None

    @property
    def last_result(self) -> str:
        if self.last_error_at and (
            self.last_success_at is None or self.last_error_at > self.last_success_at
        ):
            return f"failed: {self.last_error_class or 'error'}"
        return "ok" if self.last_success_at else "never"

    @property
    def unhealthy(self) -> bool:
        return self.active and self.state in ("failing", "stalled")


def health_of(
    row: asyncpg.Record, stalled_factor: float, stalled_min_s: float, no_history_limit_s: float
) -> Health:
    """Derive the state from one `_OVERVIEW` row. A run is stalled when it has held its lock for
    more than `stalled_factor` times the last run's duration (never before `stalled_min_s`), or,
    with no earlier run to compare with, for more than `no_history_limit_s` (the run deadline)."""
    now: datetime = row["now"]
    last_success, last_error = row["last_success_at"], row["last_error_at"]
    started, usual = row["last_started_at"], row["last_duration_s"]
    ended = max((t for t in (last_success, last_error) if t is not None), default=None)
    running_for = (now - started).total_seconds() if row["running"] and started else None
    if not row["is_active"]:
        state, next_run = "disabled", None
    else:
        next_run = sync.next_due(now, row["sync_interval"], last_success, row["next_attempt_at"])
        if running_for is not None:
            limit = stalled_factor * usual if usual else no_history_limit_s
            state = "stalled" if running_for > max(stalled_min_s, limit) else "running"
        elif row["consecutive_failures"] > 0:
            state = "failing"
        elif started is not None and (ended is None or started > ended):
            state = "interrupted"  # the last run stopped without a result (SIGTERM, deadline)
        elif last_success is None:
            state = "never synced"
        else:
            state = "ok"
    return Health(
        id=row["id"],
        team=row["team"],
        type=row["type"],
        name=row["name"],
        active=row["is_active"],
        interval_s=row["sync_interval"],
        state=state,
        last_success_at=last_success,
        last_started_at=started,
        last_error_at=last_error,
        last_error_class=row["last_error_class"],
        last_error=row["last_error"],
        consecutive_failures=row["consecutive_failures"],
        next_run_at=next_run,
        running_for_s=running_for,
        usual_duration_s=usual,
    )


async def overview(
    conn: asyncpg.Connection,
    *,
    integration_id: uuid.UUID | None = None,
    stalled_factor: float = 5.0,
    stalled_min_s: float = 60.0,
    no_history_limit_s: float = 1800.0,
) -> list[Health]:
    rows = await conn.fetch(_OVERVIEW, store.INTEGRATION_LOCK_NAMESPACE, integration_id)
    return [health_of(r, stalled_factor, stalled_min_s, no_history_limit_s) for r in rows]


def positive(value: str) -> float:
    """argparse type: a number greater than 0."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return number


def ago(at: datetime | None, now: datetime) -> str:
    """ "3m ago", "in 2.0h"; "" for no time."""
    if at is None:
        return ""
    seconds = (now - at).total_seconds()
    text = span(abs(seconds))
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def span(seconds: float) -> str:
    """A duration in the largest unit that keeps it readable."""
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f}m"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def iso(at: datetime | None) -> str | None:
    """UTC ISO-8601 to the second (JSON output)."""
    return at.astimezone(UTC).isoformat(timespec="seconds") if at else None


async def cmd_status(args: argparse.Namespace, settings: Settings, url: str) -> int:
    conn = await migrate.connect_current(url)
    try:
        rows = await overview(
            conn,
            stalled_factor=args.stalled_factor,
            stalled_min_s=args.stalled_min_seconds,
            no_history_limit_s=settings.run_deadline_seconds,
        )
    finally:
        await conn.close()
    unhealthy = [r for r in rows if r.unhealthy]
    if args.json:
        views.print_json([health_json(r) for r in rows])
        return EXIT_FAILED if unhealthy else EXIT_OK
    if not rows:
        views.say("no integrations: add one with `c9-sync integrations add`")
        return EXIT_OK
    now = datetime.now(UTC)
    table_rows = []
    for r in rows:
        if r.running_for_s is not None:
            running = f"{span(r.running_for_s)}"
            if r.usual_duration_s:
                running += f" (usually {span(r.usual_duration_s)})"
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
            next_run = ago(r.next_run_at, now)
        table_rows.append(
            (
                f"{r.team}/{r.type}",
                r.state.upper() if r.unhealthy else r.state,
                ago(r.last_success_at, now) or "never",
                error,
                r.consecutive_failures,
                next_run,
                running,
            )
        )
    views.print_table(
        "status",
        ("integration", "health", "last success", "last error", "failures", "next run", "running"),
        table_rows,
    )
    active = sum(1 for r in rows if r.active)
    failing = sum(1 for r in unhealthy if r.state == "failing")
    stalled = sum(1 for r in unhealthy if r.state == "stalled")
    views.say(f"{active} active, {failing} failing, {stalled} stalled")
    return EXIT_FAILED if unhealthy else EXIT_OK


def health_json(r: Health) -> dict[str, Any]:
    out = asdict(r)
    out["id"] = str(r.id)
    out["last_result"] = r.last_result
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = iso(value)
    return out


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `c9-sync status` to the `c9-sync` parser."""
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

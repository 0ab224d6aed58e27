"""Integration health: what `c9-sync status` reports and `c9-sync integrations list` shows.

State per integration, from `integrations`, `integration_sync_state` and the advisory locks held
right now: ok, never synced, failing, running, stalled (running far longer than usual),
interrupted, disabled; and when it runs next.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from worker import sync
from worker.store import integrations as store


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
    # while running: how far it has come (items, pages, scope, cursor_at, at), as it last said
    progress: dict[str, Any] | None = None

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
    """Derive the state from one `store.overview_rows` row. A run is stalled when it has held its
    lock for more than `stalled_factor` times the last run's duration (never before
    `stalled_min_s`), or, with no earlier run to compare with, for more than
    `no_history_limit_s` (the run deadline)."""
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
        progress=row["run_progress"] if running_for is not None else None,
    )


async def overview(
    conn: asyncpg.Connection,
    *,
    integration_id: uuid.UUID | None = None,
    stalled_factor: float = 5.0,
    stalled_min_s: float = 60.0,
    no_history_limit_s: float = 1800.0,
) -> list[Health]:
    rows = await store.overview_rows(conn, integration_id)
    return [health_of(r, stalled_factor, stalled_min_s, no_history_limit_s) for r in rows]


def progress_text(progress: dict[str, Any] | None, now: datetime) -> str:
    """ "12,400 items, page 124, acme/api 3.0d behind"; "" before the run's first page."""
    if not progress:
        return ""
    text = f"{progress['items']:,} items, page {progress['pages']}"
    if progress.get("cursor_at"):
        lag = behind(datetime.fromisoformat(progress["cursor_at"]), now)
        text += f", {progress['scope'] or 'cursor'} {lag} behind"
    return text


def behind(cursor_at: datetime, now: datetime) -> str:
    """How far a cursor is behind `now` ("3.0d"); a tracker clock ahead of ours is "0s"."""
    return span(max(0.0, (now - cursor_at).total_seconds()))


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


def health_json(r: Health) -> dict[str, Any]:
    out = asdict(r)
    out["id"] = str(r.id)
    out["last_result"] = r.last_result
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = iso(value)
    return out

"""The demo's live view of the daemon at work.

Everything it shows is read from the database, as a dashboard would read it: each integration's
health and next run (`health.overview`), its newest run row and the newest activity
(`activity_logs`), status counts and the head of the work queue. Next to it, what the demo team
just did in its trackers, and when that change reached `work_items`. On a terminal it is drawn
with `rich.live`; elsewhere (a pipe, a CI log) only what is new is printed, as plain lines.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from worker import db, health, views
from worker.scheduler import wait_event
from worker.store import dashboard

STATUSES = ("queued", "in_progress", "pr_ready", "blocked", "completed", "cancelled")
REFRESH_S = 1.0
WATCHED = 50  # the newest team changes looked for in work_items
# Trackers serve change times to the second (GitHub) or millisecond: an item held as of up to a
# second before a change made at microsecond precision holds that change.
PRECISION = timedelta(seconds=1)
RUN_ROWS = ("sync_started", "sync_completed")  # shown per integration, not as news
SHOWN = 8  # rows of the team's changes and of the newest activity on screen


@dataclass(frozen=True, slots=True)
class TeamChange:
    """One change the demo team made upstream: when, in which tracker, to which item (its
    `work_items.external_key`), in words."""

    at: datetime
    source: str
    key: str
    text: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the database says right now about the demo team."""

    now: datetime
    integrations: list[health.Health]
    runs: dict[uuid.UUID, asyncpg.Record]  # integration id -> its newest run row
    counts: dict[str, dict[str, int]]  # source -> status -> items
    queue: list[asyncpg.Record]
    activity: list[asyncpg.Record]  # newest first
    #: (source, external_key) -> (upstream change time, written at) of the items changed
    #: upstream since the oldest team change not yet seen in `work_items`
    items: dict[tuple[str, str], tuple[datetime, datetime]] = field(default_factory=dict)


@dataclass
class TeamLog:
    """The changes the demo team made, and when each was first seen in `work_items` (its row
    holding the item as of that upstream change or later)."""

    changes: list[TeamChange] = field(default_factory=list)
    arrived: dict[int, datetime] = field(default_factory=dict)  # change index -> written at

    def add(self, change: TeamChange) -> None:
        self.changes.append(change)

    def since(self) -> datetime | None:
        """Where to look for arrivals: the oldest of the newest changes not yet seen."""
        waiting = [c.at for n, c in enumerate(self.changes) if n not in self.arrived][-WATCHED:]
        return min(waiting) - PRECISION if waiting else None

    def observe(self, snap: Snapshot) -> None:
        """Record the changes `snap` shows arrived."""
        for n, c in enumerate(list(self.changes)):
            held = snap.items.get((c.source, c.key))
            if n not in self.arrived and held is not None and held[0] >= c.at - PRECISION:
                self.arrived[n] = max(held[1], c.at)


async def read(
    pool: asyncpg.Pool, team_id: uuid.UUID, ids: Sequence[uuid.UUID], team: TeamLog
) -> Snapshot:
    """What the database says now; the team's changes seen in it are recorded in `team`."""
    async with pool.acquire() as conn:
        rows = [r for r in await health.overview(conn) if r.id in ids]
        runs = {r["integration_id"]: r for r in await dashboard.last_runs(conn, team_id)}
        counts: dict[str, dict[str, int]] = {}
        for r in await dashboard.status_counts(conn, team_id):
            counts.setdefault(r["source"], {})[r["status"]] = r["n"]
        queue = await dashboard.work_queue(conn, team_id, 6)
        activity = await dashboard.recent_activity(conn, team_id, SHOWN + 20)
        since = team.since()
        items = {
            (r["source"], r["external_key"]): (r["source_updated_at"], r["updated_at"])
            for r in (await dashboard.items_changed_since(conn, team_id, since) if since else ())
        }
    snap = Snapshot(datetime.now(UTC), rows, runs, counts, queue, activity, items)
    team.observe(snap)
    return snap


def count_rows(counts: Mapping[str, Mapping[str, int]]) -> list[list[object]]:
    """Status counts as table rows: one per source, then "all"."""
    rows: list[list[object]] = [
        [source, *(by.get(s, 0) for s in STATUSES), sum(by.values())]
        for source, by in sorted(counts.items())
    ]
    rows.append(
        [
            "all",
            *(sum(by.get(s, 0) for by in counts.values()) for s in STATUSES),
            sum(sum(by.values()) for by in counts.values()),
        ]
    )
    return rows


def describe_run(run: asyncpg.Record | None) -> str:
    """A run row in a few words: "+2 new, 3 updated", "no changes", "failed"."""
    if run is None:
        return ""
    meta: dict[str, Any] = run["metadata"] or {}
    if run["event_type"] == "sync_failed":
        return "failed"
    if run["event_type"] == "sync_interrupted":
        return "interrupted"
    parts = [
        f"{word}{meta.get(key, 0)} {label}"
        for key, word, label in (("created", "+", "new"), ("updated", "", "updated"))
        if meta.get(key)
    ]
    if meta.get("removed"):
        parts.append(f"{meta['removed']} removed")
    return ", ".join(parts) or "no changes"


def run_cell(run: asyncpg.Record | None, now: datetime) -> str:
    """The newest run row of an integration and its age: "+2 new, 3 updated (4s ago)"."""
    return f"{describe_run(run)} ({health.ago(run['created_at'], now)})" if run else ""


def next_run(r: health.Health, now: datetime) -> str:
    if r.running_for_s is not None:
        return "running"
    if r.next_run_at is None:
        return "paused"
    return "due" if r.next_run_at <= now else health.ago(r.next_run_at, now)


def clock(at: datetime) -> str:
    """A time of day in the machine's zone, to the second."""
    return at.astimezone().strftime("%H:%M:%S")


def render(snap: Snapshot, team: TeamLog, headline: str) -> RenderableType:
    """One frame of the live view."""
    now = snap.now
    daemon = views.table(
        "the daemon, per integration (integration_sync_state, activity_logs)",
        ("integration", "health", "last run", "last run row", "next run", "items"),
        [
            (
                f"{r.team}/{r.type}",
                r.state,
                health.ago(r.last_started_at, now) or "never",
                run_cell(snap.runs.get(r.id), now),
                next_run(r, now),
                sum(snap.counts.get(r.type, {}).values()),
            )
            for r in snap.integrations
        ],
    )
    team_rows = []
    for n, c in list(enumerate(team.changes))[-SHOWN:][::-1]:
        at = team.arrived.get(n)
        seen = f"after {health.span((at - c.at).total_seconds())}" if at else "not yet"
        team_rows.append((clock(c.at), c.source, c.text, seen))
    changes = views.table(
        "the team, in its trackers", ("when", "tracker", "what", "in work_items"), team_rows
    )
    news = [a for a in snap.activity if a["event_type"] not in RUN_ROWS][:SHOWN]
    activity = views.table(
        "newest activity (v_recent_activity)",
        ("when", "event", "message"),
        [(clock(a["created_at"]), a["event_type"], a["message"][:90]) for a in news],
    )
    counts = views.table(
        "work items by status", ("source", *STATUSES, "total"), count_rows(snap.counts)
    )
    queue = views.table(
        "work queue (v_team_work_queue)",
        ("source", "key", "title", "status", "priority"),
        [(q["source"], q["external_key"], q["title"][:50], q["status"], q["priority"]) for q in
         snap.queue],
    )  # fmt: skip
    return Group(Text(headline, style="bold"), daemon, changes, activity, counts, queue)


@dataclass
class PlainLog:
    """Plain lines of what is new since the last call: the team's changes, their arrival in
    `work_items`, and each run that changed something (or failed)."""

    printed: int = 0
    reported: set[int] = field(default_factory=set)
    runs_seen: dict[uuid.UUID, datetime] = field(default_factory=dict)

    def lines(self, snap: Snapshot, team: TeamLog) -> list[str]:
        out = []
        changes = list(team.changes)
        for c in changes[self.printed :]:
            out.append(f"{clock(c.at)} team    {c.source:<13} {c.text}")
        self.printed = len(changes)
        for n in sorted(set(team.arrived) - self.reported):
            c, at = changes[n], team.arrived[n]
            self.reported.add(n)
            line = f"{c.key} in work_items {health.span((at - c.at).total_seconds())} later"
            out.append(f"{clock(at)} synced  {c.source:<13} {line}")
        for r in snap.integrations:
            run = snap.runs.get(r.id)
            if run is None or self.runs_seen.get(r.id) == run["created_at"]:
                continue
            self.runs_seen[r.id] = run["created_at"]
            what = describe_run(run)
            if what != "no changes":
                out.append(
                    f"{clock(run['created_at'])} daemon  {r.type:<13} run: {what};"
                    f" health {r.state}, next run {next_run(r, snap.now)}"
                )
        return out


async def show(
    pool: asyncpg.Pool,
    team_id: uuid.UUID,
    ids: Sequence[uuid.UUID],
    team: TeamLog,
    stop: asyncio.Event,
    headline: Callable[[], str],
) -> PlainLog | None:
    """Refresh the view every second until `stop`. On a terminal, a `rich.live` display (its
    last frame stays); elsewhere plain lines, and the `PlainLog` is returned for a last call."""
    if views.console.is_terminal:
        with Live(console=views.console, auto_refresh=False, transient=False) as live:
            while True:
                snap = await _read_quietly(pool, team_id, ids, team)
                if snap is not None:
                    live.update(render(snap, team, headline()), refresh=True)
                if await wait_event(stop, REFRESH_S):
                    return None
    log = PlainLog()
    views.say(headline())
    while True:
        snap = await _read_quietly(pool, team_id, ids, team)
        for line in log.lines(snap, team) if snap is not None else ():
            views.say(line)
        if await wait_event(stop, REFRESH_S):
            return log


async def _read_quietly(
    pool: asyncpg.Pool, team_id: uuid.UUID, ids: Sequence[uuid.UUID], team: TeamLog
) -> Snapshot | None:
    """A snapshot, or None when the database did not answer (the next refresh tries again)."""
    try:
        return await read(pool, team_id, ids, team)
    except db.FAILURES:
        return None

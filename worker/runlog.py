"""The activity rows of one run: its `sync_started` row written only with the first row the run
writes, and runs that change nothing counted in the sync state instead of logged.

A run that writes nothing else (no item, rejection, warning, scope or overlap row) and succeeds
is quiet: it writes no started/completed pair. The state counts such runs, and one
`sync_completed` row an hour at most stands for them (`quiet_runs` in its metadata). Any other
run writes its pair as before, its `sync_started` row dated at the run's start so the log still
reads in order, and its end row carries the quiet runs counted before it. Every run is thus in
exactly one place: its own pair, or the `quiet_runs` of a later run row (until one is written,
the state's count).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from worker.store import sync as store

#: a quiet run writes its row only when no run row of the integration is this recent
QUIET_ROW_EVERY_S = 3600.0


@dataclass(slots=True)
class RunLog:
    team_id: uuid.UUID
    opening: store.Activity  # the run's sync_started row, dated at the recorded start
    written: bool = False  # the opening went out with some rows (their transaction may yet fail)
    noisy: bool = False  # rows were written that did not take the opening with them

    @property
    def quiet(self) -> bool:
        """Nothing but the run's own pair would have been written so far."""
        return not (self.written or self.noisy)

    async def write(self, conn: asyncpg.Connection, activities: Sequence[store.Activity]) -> None:
        """The run's activity rows, with its opening row first when it is not written yet (in
        the same statement, so in the same transaction as the page that caused them)."""
        if not activities:
            return
        if not self.written:
            activities = [self.opening, *activities]
        await store.log_activities(conn, self.team_id, activities)
        self.written = True

    def wrote_apart(self, rows: int) -> None:
        """`rows` were written by a statement that could not carry the opening (the daily
        deduplicated warnings): the run is not quiet, its opening is written at its end."""
        if rows:
            self.noisy = True

    async def open_before_end(self, conn: asyncpg.Connection) -> None:
        """Before a noisy run's end row: its opening, unless a committed statement wrote it."""
        if not self.written:
            await store.log_activities(conn, self.team_id, [self.opening])
        else:  # (the page that carried it may have been rolled back by the run's failure)
            await store.log_opening_once(conn, self.team_id, self.opening)
        self.written = True


def opening(
    source: str, fields: dict[str, object], started_at: datetime, *, full: bool
) -> store.Activity:
    return store.Activity(
        "sync_started", f"{source} sync started", {**fields, "full": full}, at=started_at
    )

"""One run of one integration: lock, due-check, pages (each committed with its cursor), result.

Knows no tracker: it validates `integrations.config` with the connector's own model, resolves the
token, and drives `Connector.changes()`; every write goes through `worker.store`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from typing import Any, Literal

import asyncpg

from connectors import registry
from connectors.base import (
    Connector,
    ConnectorConfig,
    ConnectorError,
    FatalError,
    HistoryPage,
    HistorySource,
    HistoryTodo,
    Page,
    RetriableError,
    Status,
)
from worker import (
    connecting,
    credentials,
    db,
    metrics,
    redact,
    runlog,
    sanitize,
    sweep,
    telemetry,
    vault,
)
from worker.connecting import ConnectorLoader
from worker.logs import get_logger
from worker.read_ahead import ReadAhead
from worker.settings import Settings
from worker.store import history as history_store
from worker.store import notify, run_start
from worker.store import progress as progress_store
from worker.store import sync as store
from worker.store.integrations import Integration, get_integration

log = get_logger(__name__)

Outcome = Literal["succeeded", "failed", "skipped", "interrupted"]

DUE_AFTER = 0.95  # of the interval since the last start: `is_due`
# A scheduled tick is served already when a run started less than this part of the interval
# before the tick was due: the same tick on another replica (jitters differ by at most a tenth
# of the interval), or an admin's sync-now just before it. Measured from the tick, not from the
# run's start: a run that started late (waiting for a slot, a busy host) must not make the next
# tick, due on time, look served (`is_due`).
TICK_SERVED_WITHIN = 0.5
PROGRESS_EVERY_S = 5.0  # a run stores where it stands at most this often (`status`)
# ... and first once it has run this long: a shorter run has no progress worth a write (most
# runs: an unchanged integration's takes milliseconds)
PROGRESS_FIRST_S = 1.0


@dataclass(slots=True)
class RunResult:
    integration_id: uuid.UUID
    outcome: Outcome
    source: str = ""
    team: str = ""
    run_id: uuid.UUID | None = None
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    pages: int = 0
    duration_s: float = 0.0
    reason: str = ""  # why skipped/interrupted, or the error message (redacted)
    error_class: str = ""
    # the quarter hours (metrics.quarter_hour) of changed items' completion times: the days
    # whose metrics the run's end recomputes, in a set bounded by time, not by items
    touched: set[datetime] = field(default_factory=set)
    # items this run took from another active integration holding the same version, by its id
    contested: dict[uuid.UUID, list[str]] = field(default_factory=dict)
    lost: dict[str, str] = field(default_factory=dict)  # scopes the credential cannot read
    history_requests: int = 0  # spent on history after the items
    history_rows: int = 0  # history rows stored (or kept for items not synced yet)
    # the config's status_map is not the one the stored rows are mapped with: remap after it
    remap_due: bool = False
    # progress, after each committed page: the scope it advanced and how far its cursor is now
    scope: str = ""
    cursor_at: datetime | None = None

    @property
    def items(self) -> int:
        """Items read and written so far (created, updated or found unchanged)."""
        return self.created + self.updated + self.unchanged

    def summary(self) -> str:
        label = f"{self.team}/{self.source}" if self.team else str(self.integration_id)
        if self.outcome in ("skipped",):
            return f"{label}: skipped ({self.reason})"
        counts = (
            f"created={self.created} updated={self.updated} unchanged={self.unchanged}"
            f" removed={self.removed} pages={self.pages} in {self.duration_s:.1f}s"
        )
        if self.outcome == "failed":
            return f"{label}: FAILED {self.error_class}: {self.reason} ({counts})"
        if self.outcome == "interrupted":
            return f"{label}: interrupted ({self.reason}; {counts})"
        return f"{label}: ok {counts}"


@dataclass(frozen=True, slots=True)
class RunOptions:
    force: bool = False  # run even if not due (another replica synced it within the interval)
    full: bool = False  # ignore the cursor and sweep deletions
    stop: asyncio.Event | None = None  # set on SIGTERM: finish the current page, then stop
    on_page: Callable[[RunResult], None] | None = None  # progress display, after each commit
    requested_at: datetime | None = None  # an admin's `sync-now` (database clock)
    tick_due: datetime | None = None  # the scheduled tick this run serves (this host's clock)


# The database connection itself failed (not a statement).
_CONNECTION_ERRORS = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)
# What a pooled connection the server dropped raises on its next statement: one of those, or,
# when the server's termination notice is still being read, asyncpg's "another operation is in
# progress" (InternalClientError; the daemon counts it among db.FAILURES too).
_CONNECTION_GONE = (*_CONNECTION_ERRORS, asyncpg.exceptions._base.InternalClientError)


def _database_lost(conn: asyncpg.Connection, exc: BaseException | None = None) -> bool:
    """Whether the run's connection to the database is gone (so nothing more can be recorded).
    Asks without raising: once asyncpg has detached a dropped pooled connection, every call on
    it — `is_closed()` too — raises "released back to the pool", which would hide the real
    error."""
    if isinstance(exc, _CONNECTION_ERRORS):
        return True
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:
        return True


class RunInterrupted(Exception):
    pass


class IntegrationDeleted(Exception):
    """The integration's row was deleted while its run was writing."""


def advance(
    cursor: dict[str, datetime], checkpoint: Mapping[str, datetime], ceiling: datetime
) -> dict[str, datetime]:
    """The cursor after a committed page: per scope the later of the old mark and the page's
    checkpoint, never past the run's start (an item changing during the run is read again)."""
    out = dict(cursor)
    for scope, at in checkpoint.items():
        at = min(at.astimezone(UTC), ceiling)
        if scope not in out or at > out[scope]:
            out[scope] = at
    return out


def is_due(
    integration: Integration,
    state: store.SyncState,
    now: datetime,
    requested_at: datetime | None = None,
    tick: datetime | None = None,
) -> str | None:
    """None when a run is due, else why not. An admin's request (`sync-now`) makes it due unless
    some replica has started a run since the request; so does a config edited since the last
    run started. `tick`: when the scheduled tick this run serves was due (on `now`'s clock):
    served already when a run started within TICK_SERVED_WITHIN of the interval before it."""
    if requested_at is not None and (
        state.last_started_at is None or state.last_started_at < requested_at
    ):
        return None
    if state.config_digest is not None and state.config_digest != integration.config_digest:
        return None  # an admin edited the config since the last run: run with it now
    last = state.last_success_at or integration.last_sync
    if last is not None and state.last_started_at is not None and state.last_started_at <= last:
        # Measure from the start of that successful run: ticks are a fixed interval apart, so
        # measuring from its end would skip every other tick of a run that takes a while.
        last = state.last_started_at
    if last is not None and tick is not None:
        before = (tick - last).total_seconds()
        if before < integration.sync_interval * TICK_SERVED_WITHIN:
            return (
                f"served: a run started {before:.0f}s before this tick,"
                f" interval {integration.sync_interval}s"
            )
    elif last is not None:
        age = (now - last).total_seconds()
        # 5% slack: a run asked for outside the schedule (a re-run, `c9-sync sync`) a little
        # early still runs.
        if age < integration.sync_interval * DUE_AFTER:
            return f"synced {age:.0f}s ago, interval {integration.sync_interval}s"
    config_edited_after_failure = (
        state.last_error_at is not None and integration.updated_at > state.last_error_at
    )
    if state.next_attempt_at is not None and now < state.next_attempt_at:
        if not config_edited_after_failure:  # an admin's fix is tried at once
            wait = (state.next_attempt_at - now).total_seconds()
            return f"backing off after {state.consecutive_failures} failure(s), {wait:.0f}s left"
    return None


def next_due(
    now: datetime,
    interval: int,
    last_success_at: datetime | None,
    next_attempt_at: datetime | None,
) -> datetime:
    """When an integration's next run is due: last success + interval (now when never synced),
    and not before its backoff ends. The scheduler's first tick and `c9-sync status` use it."""
    due = now
    if last_success_at is not None:
        due = max(due, last_success_at + timedelta(seconds=interval))
    if next_attempt_at is not None:
        due = max(due, next_attempt_at)
    return due


def first_tick(
    worker_now: datetime,
    db_now: datetime,
    interval: int,
    last_success_at: datetime | None,
    next_attempt_at: datetime | None,
) -> datetime:
    """The scheduler's first tick for a job, on the worker's clock (APScheduler runs on it), for
    the due time `next_due` computes on the database's clock (every stored time is the
    database's): a skew between the two hosts' clocks neither stalls the job nor runs it early."""
    return worker_now + (next_due(db_now, interval, last_success_at, next_attempt_at) - db_now)


async def run_integration(
    pool: asyncpg.Pool,
    integration_id: uuid.UUID,
    settings: Settings,
    *,
    environ: Mapping[str, str],
    options: RunOptions = RunOptions(),
    loader: ConnectorLoader = registry.load,
) -> RunResult:
    """Run one sync of one integration. Never raises for a tracker's or a config's fault: the
    result (and `activity_logs`) says what happened. Database failures do propagate."""
    for attempt in (1, 2):
        async with pool.acquire() as conn:
            try:
                start = await run_start.lock_and_read(conn, integration_id)
            except _CONNECTION_GONE:
                # Pooled connections the server dropped while idle (PostgreSQL restarted, an
                # admin terminated them): nothing has happened yet. The pool replaces all of
                # them (a restart killed every one), and the run starts on a fresh one.
                if attempt == 2:
                    raise
                log.info("database_connections_replaced", integration_id=str(integration_id))
                await pool.expire_connections()
                continue
            return await _locked_run(
                conn, integration_id, settings, environ, options, loader, start, pool.acquire
            )
    raise AssertionError("unreachable")


async def _locked_run(
    conn: asyncpg.Connection,
    integration_id: uuid.UUID,
    settings: Settings,
    environ: Mapping[str, str],
    options: RunOptions,
    loader: ConnectorLoader,
    start: run_start.Start,
    grants_db: vault.Connect,
) -> RunResult:
    """The run, on a connection that holds the integration's lock (when `start.locked`)."""
    if not start.locked:
        skipped = RunResult(integration_id, "skipped", reason="running on another worker")
        telemetry.observe_run(skipped)
        return skipped
    try:
        run = await _start(conn, integration_id, start, settings, options)
        if isinstance(run, RunResult):
            telemetry.observe_run(run)
            return run  # not due, inactive or deleted
        await run.pull(environ, loader, grants_db=grants_db)
        return await run.finish()
    finally:
        if not _database_lost(conn):
            await notify.unlock_integration(conn, integration_id)


async def _start(
    conn: asyncpg.Connection,
    integration_id: uuid.UUID,
    start: run_start.Start,
    settings: Settings,
    options: RunOptions,
) -> _Run | RunResult:
    """Under the lock, with the row and its state read with it: decide whether a run is due,
    and if so record its start. A RunResult (skipped) when no run is due."""
    integration, state = start.integration, start.state
    if integration is None or not integration.is_active:
        return RunResult(integration_id, "skipped", reason="inactive or deleted")
    started_wall = datetime.now(UTC)
    if not (options.force or options.full):
        # The database's clock, as every time in the state: a skewed worker clock must not
        # stall runs (or run them early).
        tick = None
        if options.tick_due is not None:  # (on the database's clock: as late as on ours)
            tick = start.db_now - max(timedelta(0), started_wall - options.tick_due)
        why_not = is_due(integration, state, start.db_now, options.requested_at, tick)
        if why_not:
            return RunResult(
                integration_id, "skipped", integration.type, integration.team_name, reason=why_not
            )
    run_id = uuid.uuid4()
    run = _Run(
        conn=conn,
        integration=integration,
        state=state,
        settings=settings,
        options=options,
        result=RunResult(
            integration_id, "succeeded", integration.type, integration.team_name, run_id
        ),
        fields={
            "integration_id": str(integration_id),
            "source": integration.type,
            "run_id": str(run_id),
        },
        started_wall=started_wall,
    )
    started_at = await run_start.record_start(conn, start, run_id, integration.config_digest)
    if started_at is None:
        return RunResult(
            integration_id, "skipped", integration.type, integration.team_name,
            reason="started on another worker just now",
        )  # fmt: skip
    # The `sync_started` row goes out with the run's first row, dated at the start recorded
    # (the time the due-check measures from): a run that changes nothing writes none.
    run.log = runlog.RunLog(
        integration.team_id,
        runlog.opening(integration.type, run.fields, started_at, full=options.full),
    )
    # (with the start as recorded, on the database's clock: the one dashboards and the
    # due-check see)
    log.info("sync_started", **run.fields, full=options.full, started_at=started_at.isoformat())
    return run


@dataclass(slots=True)
class _Run:
    """One run that is due and has started: pull its pages, then finish it."""

    conn: asyncpg.Connection
    integration: Integration
    state: store.SyncState
    settings: Settings
    options: RunOptions
    result: RunResult
    fields: dict[str, Any]
    started_wall: datetime  # the run's start by this worker's clock: the cursor's ceiling
    log: runlog.RunLog = field(init=False)  # its activity rows (set once the start is recorded)
    started: float = field(default_factory=time.monotonic)
    swept: bool = False
    cursor: dict[str, datetime] = field(default_factory=dict)  # committed marks, in-scope only
    warnings: dict[tuple[str, str], None] = field(default_factory=dict)  # the connector's, once
    # the admin's status_map the connector maps with (history rows keep their defaults, 0014)
    status_map: Mapping[str, Status] = field(default_factory=dict)
    progress_saved: float = float("-inf")  # monotonic time the run last stored its progress

    @property
    def deadline(self) -> float:
        return self.started + self.settings.run_deadline_seconds

    async def pull(
        self,
        environ: Mapping[str, str],
        loader: ConnectorLoader,
        grants_db: vault.Connect | None = None,
    ) -> None:
        """Every page, each committed with its cursor, then the sweep when due. A tracker's,
        a config's or a connector's fault is recorded as the run's failure, never raised."""
        connector: Connector | None = None
        # What the connector learns of its credential's expiry, and the config's TLS mode:
        # recorded after the run whatever its outcome (a 401 after an expiry is when it matters).
        seen = credentials.Collector(self.fields)
        try:
            connector, config = connecting.open_connector(
                self.integration.id,
                self.integration.type,
                self.integration.config,
                self.settings,
                environ,
                deadline=self.deadline,
                loader=loader,
                on_credential=seen,
                grants_db=grants_db,  # its own connection: the run's is busy between pages
                on_warning=self._warn,
            )
            seen.saw(config)
            self.status_map = config.status_map
            await self._check_mapping(config)
            scopes = await connector.scopes()
            await self._narrow(scopes)
            await self._pages(connector, scopes, config.start_date)
            sweep_due = self.settings.sweep_every_runs and self.state.runs_since_sweep + 1 >= (
                self.settings.sweep_every_runs
            )
            self.swept = self.options.full or bool(sweep_due)
            if self.swept:
                swept = await sweep.sweep(
                    self.conn,
                    self.integration,
                    connector,
                    self.fields,
                    alarm=config.start_date is None,
                    write=self.log.write,
                )
                self.result.removed += len(swept.removed)
                self.result.touched.update(map(metrics.quarter_hour, swept.touched))
                self.result.lost.update(swept.lost)
            # History after the sweep: a rate-limited or failing history read (the run fails,
            # its Retry-After honoured) must not cost the item census its turn.
            await self._history(connector, config)
            if self.result.lost:
                # Every other scope is synced and committed; the run still fails: someone must
                # give the credential its access back, or take the scope out of the config.
                raise FatalError(
                    "cannot read "
                    + "; ".join(f"{s!r} ({why})" for s, why in sorted(self.result.lost.items()))
                    + ": the other scopes are synced; restore the credential's access or take"
                    " the scope out of the config"
                )
        except RunInterrupted as exc:
            self.result.outcome, self.result.reason = "interrupted", str(exc)
        except Exception as exc:
            if _database_lost(self.conn, exc):
                # The database itself is gone: nothing can be recorded; the caller logs it. A
                # tracker's error that arrived after the connection died says so too (else the
                # daemon would take it for a crash).
                if isinstance(exc, db.FAILURES):
                    raise
                raise ConnectionError(
                    f"the database connection was lost during the run ({type(exc).__name__}"
                    " raised after it)"
                ) from exc
            if isinstance(exc, asyncpg.ForeignKeyViolationError) and (
                await get_integration(self.conn, self.integration.id) is None
            ):
                # An admin deleted the row while it ran: its state went with it (cascade).
                exc = IntegrationDeleted(
                    "the integration was deleted during the run; the pages committed before"
                    " stay, nothing after them was written"
                )
            await _record_failure(
                self.conn, self.integration, self.result, exc, self.started, self.settings,
                self.fields, self.log,
            )  # fmt: skip
        finally:
            if connector is not None:
                if not _database_lost(self.conn):  # (what it learnt holds whatever the outcome)
                    await self._keep_mapping_context(connector)
                await connecting.close_quietly(connector)
        await credentials.record(
            self.conn,
            self.integration,
            seen,
            succeeded=self.result.outcome == "succeeded",
            write=self.log.write,
        )
        if self.warnings:
            self.log.wrote_apart(
                await store.log_warnings(
                    self.conn, self.integration.team_id, list(self.warnings), self.fields
                )
            )

    def _warn(self, code: str, message: str) -> None:
        message = redact.scrub(message)
        if (code, message) not in self.warnings:
            self.warnings[(code, message)] = None
            log.warning("sync_warning", **self.fields, code=code, warning=message)

    async def _narrow(self, scopes: list[str]) -> None:
        """What the config no longer covers: its rows are marked out of scope (an activity row
        each), its cursors dropped (a scope added back later is read in full)."""
        conn, integration = self.conn, self.integration
        cursor = store.cursor_from_json(self.state.cursor)
        self.cursor = kept = {scope: at for scope, at in cursor.items() if scope in scopes}
        if kept == cursor and not await store.scopes_left(conn, integration.id, scopes):
            return  # (nearly every run: a read instead of a transaction)
        async with conn.transaction():
            gone = await store.mark_out_of_scope(conn, integration.id, scopes)
            await self.log.write(
                conn,
                [
                    store.Activity(
                        "work_item_out_of_scope",
                        f"{_label(integration.type, r['external_key'], r['external_id'])} no"
                        f" longer in scope ({r['sync_scope'] or 'its scope'} left the config)",
                        {**self.fields, "external_id": r["external_id"], "scope": r["sync_scope"]},
                        r["id"],
                    )
                    for r in gone
                ],
            )
            if kept != cursor:
                await store.save_cursor(conn, integration.id, store.cursor_to_json(kept))
        if gone:
            log.info("items_out_of_scope", **self.fields, count=len(gone))

    async def _pages(
        self, connector: Connector, scopes: list[str], start_date: date | None
    ) -> None:
        cursor = {} if self.options.full else self.cursor
        since = {scope: at - connector.overlap for scope, at in cursor.items()}
        if start_date is not None:  # nothing older than the admin's start date, in any scope
            floor = datetime.combine(start_date, dt_time(), UTC)
            since = {scope: max(since.get(scope, floor), floor) for scope in scopes}

        async def between_pages() -> None:
            telemetry.observe_progress(self.result)
            await self._save_progress()
            if self.options.on_page is not None:
                self.options.on_page(self.result)
            self._halt_if_asked()

        # A scope never read to the end of its listing is being read for the first time: what
        # it stores is its backlog, logged by the transaction (docs/dashboards.md,
        # work_items_imported)
        configured, read_before = frozenset(scopes), frozenset(self.state.scopes_read)
        await write_pages(
            self.conn, self.integration, connector.changes(since), cursor, self.started_wall,
            self.result, self.fields, self.status_map, self.log, between_pages,
            first_reads=configured - read_before,
        )  # fmt: skip
        # Every scope the listing went through is read now, but those it lost; those that
        # left the config are forgotten (read in full again if they come back)
        read = (configured - frozenset(self.result.lost)) | (read_before & configured)
        if read != read_before:
            await store.save_scopes_read(self.conn, self.integration.id, read)

    async def _check_mapping(self, config: ConnectorConfig) -> None:
        """Whether the stored rows are mapped with this config's status_map (an admin edited it
        since: `remap_due`, the daemon remaps after the run); the first run to ask records it."""
        digest = status_map_digest(config.status_map)
        if self.state.rows_mapped_with is None:
            await store.save_rows_mapped_with(self.conn, self.integration.id, digest)
        elif self.state.rows_mapped_with != digest:
            self.result.remap_due = True

    async def _keep_mapping_context(self, connector: Connector) -> None:
        """What the connector learnt that mapping its stored rows offline needs (`c9-sync
        remap`), merged over what earlier runs learnt; written only when it adds something."""
        learnt = getattr(connector, "mapping_context", None)
        found = learnt() if callable(learnt) else None
        if not found:
            return
        kept = self.state.mapping_context or {}
        merged = merge_context(kept, found)
        if merged == kept:
            return
        try:
            await store.save_mapping_context(self.conn, self.integration.id, merged)
        except asyncpg.PostgresError as exc:  # kept for remap, never the reason a run fails
            log.warning("mapping_context_not_kept", **self.fields, error=type(exc).__name__)

    async def _save_progress(self) -> None:
        """Where the run stands, for `status` on other machines: after a page once the run has
        run PROGRESS_FIRST_S, then at most every PROGRESS_EVERY_S (a display, never the reason a
        run fails)."""
        now = time.monotonic()
        if now - self.started < PROGRESS_FIRST_S or now - self.progress_saved < PROGRESS_EVERY_S:
            return
        result = self.result
        assert result.run_id is not None  # a started run has one
        try:
            await progress_store.save(
                self.conn, self.integration.id, result.run_id, items=result.items,
                pages=result.pages, scope=result.scope, cursor_at=result.cursor_at,
            )  # fmt: skip
        except asyncpg.PostgresError as exc:
            if _database_lost(self.conn, exc):
                raise
            log.warning("progress_not_saved", **self.fields, error=type(exc).__name__)
        self.progress_saved = time.monotonic()

    def _halt_if_asked(self) -> None:
        """Between two committed pages: stop when the worker stops or the run's time is up."""
        if self.options.stop is not None and self.options.stop.is_set():
            raise RunInterrupted("worker stopping")
        if time.monotonic() > self.deadline:
            raise RunInterrupted(f"run deadline of {self.settings.run_deadline_seconds:.0f}s")

    async def _history(self, connector: Connector, config: ConnectorConfig) -> None:
        """History read apart from the items, within the run's budget: the feeds of scopes
        whose items changed after what their feed has read, then items whose history is
        pending. Each page commits with its progress; the rest waits for the next run."""
        budget = self.settings.history_budget
        if config.history_budget is not None:
            budget = config.history_budget
        if not isinstance(connector, HistorySource) or budget <= 0:
            # (history off: nothing read, and no backlog counted, which would read every row
            # of a scope whose feed never ran, at every run)
            return
        try:
            await self._read_history(connector, budget)
        finally:
            # what is left for the next runs, for `status` and /metrics (also after a fault)
            if not _database_lost(self.conn):
                await self._count_backlog(connector)

    async def _count_backlog(self, connector: HistorySource) -> None:
        try:
            left = await history_store.backlog(
                self.conn, self.integration.id, list(connector.feed_scopes()), save=True
            )
        except asyncpg.PostgresError as exc:  # a count, never the reason a run fails
            log.warning("history_backlog_not_counted", **self.fields, error=type(exc).__name__)
            return
        telemetry.HISTORY_BACKLOG.labels(str(self.integration.id)).set(left)

    async def _read_history(self, connector: HistorySource, budget: int) -> None:
        conn, integration = self.conn, self.integration
        feeds: dict[str, str | None] = {}
        feed_scopes = list(connector.feed_scopes())
        if feed_scopes:  # (a connector reading history only per item has none to look at)
            progress = await history_store.progress(conn, integration.id, feed_scopes)
            feeds = {
                scope: progress.cursor.get(scope)
                for scope in feed_scopes
                if scope in progress.newest
                and (
                    scope not in progress.through
                    or progress.newest[scope] > progress.through[scope]
                )
            }
        # a connector that reads several items' history a request says how many (`history_batch`)
        batch = max(1, int(getattr(connector, "history_batch", 1)))
        items = await history_store.pending(conn, integration.id, budget * batch)
        if not feeds and not items:
            return  # nothing changed: no request
        pages = connector.history(HistoryTodo(feeds, items, budget))
        try:
            async for page in pages:
                await _commit_history(
                    conn, integration, page, self.result, self.fields, self.status_map, self.log
                )
                if self.result.history_requests >= budget:
                    break
                self._halt_if_asked()
        finally:
            await _close(pages)

    async def finish(self) -> RunResult:
        """Metrics for the days touched, the run's end row and state, telemetry."""
        conn, integration, result = self.conn, self.integration, self.result
        result.duration_s = time.monotonic() - self.started
        refresh = result.touched or metrics.QUIET_REFRESH.due(
            integration.team_id, self.settings.metrics_refresh_seconds
        )
        if result.outcome in ("succeeded", "interrupted") and refresh:
            # The days this run's changes touched, plus today/yesterday (agents' events; a run
            # that changed nothing refreshes those only now and then: `QuietRefresh`).
            # Metrics are derived: a failure here is logged and repaired by the next run or a
            # rollup, and never turns a committed sync into a failed one.
            try:
                await metrics.recompute_touched(
                    conn, integration.team_id, result.touched, self.settings.metrics_tz
                )
                metrics.QUIET_REFRESH.done(integration.team_id)
            except asyncpg.PostgresError as exc:
                if _database_lost(conn, exc):
                    raise
                log.warning(
                    "metrics_recompute_failed", **self.fields, error=f"{type(exc).__name__}: {exc}"
                )
        if result.contested:
            await _warn_overlap(conn, integration, result, self.fields, self.log)
        if result.outcome == "succeeded":
            quiet = self.log.quiet
            async with conn.transaction():  # the count and the row that carries it, together
                counted = await store.mark_succeeded(
                    conn,
                    integration.id,
                    result.duration_s,
                    self.swept,
                    quiet_start=self.log.opening.at if quiet else None,
                    quiet_row_every_s=runlog.QUIET_ROW_EVERY_S,
                )
                await _log_end(
                    conn, integration, result, "sync_completed", self.fields, self.log, counted,
                    row=not quiet or counted.due,
                )  # fmt: skip
        elif result.outcome == "interrupted":
            async with conn.transaction():
                counted = await store.take_quiet_runs(conn, integration.id)
                await _log_end(
                    conn, integration, result, "sync_interrupted", self.fields, self.log, counted
                )
        telemetry.observe_run(result)
        return result


async def _close(pages: object) -> None:
    """A run that stops early closes the connector's generator (and its requests) now, not
    whenever the garbage collector gets to it."""
    aclose = getattr(pages, "aclose", None)
    if aclose is not None:
        await aclose()


# Pages fetched ahead while a transaction commits, at most (memory: these, those committing and
# the one being fetched). They are committed together: a transaction's fixed cost (its round
# trips, the commit) is paid once for all of them, which is what a database some way off the
# worker costs most (docs/operations.md, "Write path").
PAGES_AHEAD = 8


async def write_pages(
    conn: asyncpg.Connection,
    integration: Integration,
    pages: AsyncIterator[Page],
    cursor: dict[str, datetime],
    ceiling: datetime,
    result: RunResult,
    fields: dict[str, Any],
    status_map: Mapping[str, Status],
    log_to: runlog.RunLog,
    between: Callable[[], Awaitable[None]] | None = None,
    *,
    first_reads: Collection[str] = frozenset(),
) -> dict[str, datetime]:
    """Commit the pages in order (`_commit_page`), calling `between` after each commit, while
    the next ones are fetched and made safe to write (`store.ready_page`): read ahead, so that
    fetching and the worker's CPU share of a write overlap PostgreSQL's. Each transaction
    takes every page fetched by then (`PAGES_AHEAD` at most): one when fetching is the slower,
    more when writing is. The cursor advances only with committed pages; whatever ends the
    loop (a failed commit or fetch, `between` raising, a cancelled run) cancels the fetch in
    flight and closes `pages`. The cursor after the last committed page. `first_reads`: the
    scopes read for the first time (what they store is logged by the transaction:
    `item_activities`)."""
    # Set while PostgreSQL works on a transaction's statements (and between transactions):
    # only then are the next pages fetched and made safe to write, so that the worker's CPU
    # share of them runs beside a statement instead of holding up the reply to a BEGIN (one
    # thread: whatever runs there, the loop waits for).
    db_busy = asyncio.Event()
    db_busy.set()
    ahead = ReadAhead(_ready(pages, db_busy), PAGES_AHEAD)
    # A first import's pages are new rows: COPY'd (store.new_items), while they stay mostly new
    probe_new = not cursor
    try:
        async for fetched in ahead:
            db_busy.clear()  # (before the next page's fetch first runs: it starts at an await)
            page, ready = _joined(fetched)
            created = result.created
            cursor = await _commit_page(
                conn, integration, page, cursor, ceiling, result, fields, status_map, log_to,
                ready, db_busy.set, probe_new=probe_new, first_reads=first_reads,
            )  # fmt: skip
            result.pages += len(fetched)
            probe_new = probe_new and 2 * (result.created - created) >= len(page.items)
            db_busy.set()
            for scope in page.checkpoint:  # progress: where these pages left a scope's cursor
                result.scope, result.cursor_at = scope, cursor[scope]
            if between is not None:
                await between()
    finally:
        await ahead.aclose()
    return cursor


async def _ready(
    pages: AsyncIterator[Page], db_busy: asyncio.Event
) -> AsyncIterator[tuple[Page, store.ReadyPage]]:
    try:
        while True:
            await db_busy.wait()  # (the fetch too: a connector maps its page as it reads it)
            try:
                page = await anext(pages)
            except StopAsyncIteration:
                return
            yield page, store.ready_page(page.items)
    finally:
        await _close(pages)


def _joined(fetched: Sequence[tuple[Page, store.ReadyPage]]) -> tuple[Page, store.ReadyPage]:
    """Pages fetched one after another, as one page to commit: their items, rejects and lost
    scopes in order, each scope's latest checkpoint (as `advance` would keep it, page after
    page), their clean items one per id (`store.join_ready`)."""
    if len(fetched) == 1:
        return fetched[0]
    pages = [page for page, _ in fetched]
    checkpoint: dict[str, datetime] = {}
    lost: dict[str, str] = {}
    for page in pages:
        for scope, at in page.checkpoint.items():
            checkpoint[scope] = max(at, checkpoint.get(scope, at))
        for scope, why in page.lost.items():
            lost.setdefault(scope, why)
    joined = Page(
        [item for page in pages for item in page.items],
        checkpoint,
        [rejected for page in pages for rejected in page.rejected],
        lost,
    )
    return joined, store.join_ready([ready for _, ready in fetched])


async def _commit_page(
    conn: asyncpg.Connection,
    integration: Integration,
    page: Page,
    cursor: dict[str, datetime],
    ceiling: datetime,
    result: RunResult,
    fields: dict[str, Any],
    status_map: Mapping[str, Status],
    log_to: runlog.RunLog,
    ready: store.ReadyPage,
    sent: Callable[[], None] | None = None,
    *,
    probe_new: bool = False,
    first_reads: Collection[str] = frozenset(),
) -> dict[str, datetime]:
    """One page (or pages fetched one after another, `_joined`; `ready`: its items made safe to
    write, `store.ready_page`): rows, their activity and the advanced cursor, in one
    transaction. `sent`: called as the page's rows go to PostgreSQL (store.upsert_items).
    `probe_new`: its new items are COPY'd; when another writer inserted one of them meanwhile,
    the page is written again through the upsert. `first_reads`: the scopes read for the first
    time."""
    new_cursor = advance(cursor, page.checkpoint, ceiling)
    imported = (
        {i.external_id: i.scope for i in ready.items if i.scope in first_reads}
        if first_reads
        else {}
    )

    async def write(probe: bool) -> store.PageResult:
        async with conn.transaction():
            written = await store.upsert_items(
                conn,
                source=integration.type,
                team_id=integration.team_id,
                integration_id=integration.id,
                items=ready,
                status_map=status_map,
                sent=sent,
                probe_new=probe,
            )
            written.rejected[:0] = page.rejected  # the connector's, then the store's
            await log_to.write(conn, _lost_activities(integration, page, result, fields))
            await log_to.write(conn, item_activities(integration, written, fields, imported))
            if new_cursor != cursor:
                await store.save_cursor(conn, integration.id, store.cursor_to_json(new_cursor))
        return written

    try:
        written = await write(probe_new)
    except asyncpg.UniqueViolationError:
        if not probe_new:
            raise
        log.info("page_rewritten", **fields, reason="an item was inserted meanwhile")
        written = await write(False)
    result.lost.update({s: why for s, why in page.lost.items() if s not in result.lost})
    result.created += written.created
    result.updated += written.updated
    result.unchanged += written.unchanged
    for change in written.changes:
        result.removed += change.removed_now
        if change.contested_with is not None:
            keys = result.contested.setdefault(change.contested_with, [])
            keys.append(change.external_key or change.external_id)
    _touch(result, written.changes)
    if written.rejected:
        log.warning(
            "items_rejected",
            **fields,
            count=len(written.rejected),
            first=written.rejected[0].reason,
        )
    return new_cursor


async def _commit_history(
    conn: asyncpg.Connection,
    integration: Integration,
    page: HistoryPage,
    result: RunResult,
    fields: dict[str, Any],
    status_map: Mapping[str, Status],
    log_to: runlog.RunLog,
) -> None:
    """One history page: its rows, the times they change (with activity rows, as a page of
    items) and the items now read whole (one write of each row), and the feeds' progress, in
    one transaction."""
    pairs, problems = sanitize.clean_history_page(page.entries)
    async with conn.transaction():
        written, recorded = await store.record_history(
            conn, integration.type, integration.id, pairs, status_map, read=page.complete
        )
        await log_to.write(conn, item_activities(integration, written, fields))
        await history_store.save_progress(conn, integration.id, page.checkpoint, page.through)
    result.history_requests += page.requests
    result.history_rows += recorded.stored + recorded.waiting
    result.updated += written.updated
    _touch(result, written.changes)
    if problems:
        log.warning("history_entries_rejected", **fields, count=len(problems), first=problems[0])


def status_map_digest(status_map: Mapping[str, Status]) -> str:
    """A status_map (keys case-folded, as validated) as a short stable text."""
    text = json.dumps({k: str(v) for k, v in status_map.items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def merge_context(kept: Mapping[str, Any], learnt: Mapping[str, Any]) -> dict[str, Any]:
    """A connector's mapping context over the one kept: objects merged key by key (what one
    run learnt never erases what another learnt), any other value replaced."""
    out = dict(kept)
    for key, value in learnt.items():
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            out[key] = merge_context(old, value)
        else:
            out[key] = value
    return out


def _touch(result: RunResult, changes: Sequence[store.Change]) -> None:
    result.touched.update(touched_by(changes))


def touched_by(changes: Sequence[store.Change]) -> set[datetime]:
    """Any change to a completed item can move its day's numbers (count, mean duration): both
    its old and its new completion day are recomputed (at the run's end, after a remap); their
    quarter hours say which days."""
    return {
        metrics.quarter_hour(at)
        for change in changes
        for at in (change.old_completed_at, change.new_completed_at)
        if at is not None
    }


def _label(source: str, key: str | None, external_id: str) -> str:
    return f"{source} {key or external_id}"


def _lost_activities(
    integration: Integration, page: Page, result: RunResult, fields: dict[str, Any]
) -> list[store.Activity]:
    """A row for each scope the page says is lost that the run has not reported yet."""
    return [
        store.Activity(
            "visibility_lost",
            f"{integration.type} cannot read {scope!r} any more ({why});"
            " its items are kept, not marked deleted",
            {**fields, "scope": scope, "reason": why},
        )
        for scope, why in page.lost.items()
        if scope not in result.lost
    ]


def item_activities(
    integration: Integration,
    written: store.PageResult,
    fields: Mapping[str, Any],
    imported: Mapping[str, str] | None = None,
) -> list[store.Activity]:
    """The page's rows about its items. `imported`: external id -> scope of the items a scope's
    first read stores: those it creates (and finds not deleted upstream) are one
    `work_items_imported` row, not a `work_item_created` row each."""
    source = integration.type
    out = []
    backlog: dict[str, str] = {}  # external id -> status, of the items imported
    for c in written.changes:
        if c.created and not c.removed_now and imported and c.external_id in imported:
            backlog[c.external_id] = c.new_status
            continue
        base = {**fields, "external_id": c.external_id, "external_key": c.external_key}
        label = _label(source, c.external_key, c.external_id)
        if c.created:
            out.append(
                store.Activity(
                    "work_item_created",
                    # First seen already deleted upstream (a tracker that still serves its
                    # deleted items): one row tells both, in order, as the row stands.
                    f"{label} created, already deleted upstream: {c.title}"
                    if c.removed_now
                    else f"{label} created: {c.title}",
                    {
                        **base,
                        "status": c.new_status,
                        **({"removed": True} if c.removed_now else {}),
                    },
                    c.work_item_id,
                )
            )
        elif c.back_in_scope and not c.restored_now:
            out.append(
                store.Activity(
                    "work_item_back_in_scope",
                    f"{label} is in scope again",
                    {**base, "status": c.new_status, "fields": list(c.changed_fields)},
                    c.work_item_id,
                )
            )
            if c.removed_now:  # deleted upstream while out of scope: both are news
                out.append(_removed(label, base, c))
        elif c.restored_now:
            out.append(
                store.Activity(
                    "work_item_restored",
                    f"{label} is upstream again",
                    {**base, "status": c.new_status, "fields": list(c.changed_fields)},
                    c.work_item_id,
                )
            )
        elif c.removed_now:
            out.append(_removed(label, base, c))
        elif c.old_status != c.new_status:
            out.append(
                store.Activity(
                    "work_item_status_changed",
                    f"{label}: {c.old_status} → {c.new_status}",
                    {
                        **base,
                        "old_status": c.old_status,
                        "new_status": c.new_status,
                        "fields": list(c.changed_fields),
                    },
                    c.work_item_id,
                )
            )
        else:
            out.append(
                store.Activity(
                    "work_item_updated",
                    f"{label} updated: {', '.join(c.changed_fields)}",
                    {**base, "fields": list(c.changed_fields)},
                    c.work_item_id,
                )
            )
    for r in written.rejected:
        out.append(
            store.Activity(
                "work_item_rejected",
                f"{_label(source, r.external_key, r.external_id)} not stored: {r.reason}",
                {
                    **fields,
                    "external_id": r.external_id,
                    "external_key": r.external_key,
                    "reason": r.reason,
                },
            )
        )
    if backlog:
        out.insert(0, _imported(source, backlog, imported or {}, fields))
    return out


def _imported(
    source: str, backlog: Mapping[str, str], scope_of: Mapping[str, str], fields: Mapping[str, Any]
) -> store.Activity:
    """The row of the items a transaction of a first read created: how many, from which scopes,
    and each one's id and status (what one `work_item_created` row each would have said)."""
    scopes = sorted({scope_of[x] for x in backlog})
    n = len(backlog)
    where = f" {scopes[0]}" if len(scopes) == 1 and scopes[0] else ""
    also = f" from {len(scopes)} scopes" if len(scopes) > 1 else ""
    return store.Activity(
        "work_items_imported",
        f"{source}{where}: {n} item{'s' if n != 1 else ''} imported{also}",
        {**fields, "count": n, "scopes": scopes, "items": dict(backlog)},
    )


def _removed(label: str, base: Mapping[str, Any], c: store.Change) -> store.Activity:
    return store.Activity(
        "work_item_removed",
        f"{label} deleted upstream",
        {**base, "status": c.new_status},
        c.work_item_id,
    )


async def _warn_overlap(
    conn: asyncpg.Connection,
    integration: Integration,
    result: RunResult,
    fields: dict[str, Any],
    log_to: runlog.RunLog,
) -> None:
    """Two active integrations cover the same items (the same repository or project on two
    teams): each run takes them from the other. Say so once per run, with the other side."""
    others = sorted(result.contested, key=str)
    count = sum(len(keys) for keys in result.contested.values())
    examples = [key for other in others for key in result.contested[other]][:5]
    await log_to.write(
        conn,
        [
            store.Activity(
                "scope_overlap",
                f"{integration.type}: {count} item(s) are also synced by another active"
                f" integration ({', '.join(map(str, others))}); each run takes them back."
                " Narrow one of the two scopes.",
                {**fields, "count": count, "other_integrations": others, "examples": examples},
            )
        ],
    )
    log.warning("scope_overlap", **fields, count=count, other_integrations=others)


async def _record_failure(
    conn: asyncpg.Connection,
    integration: Integration,
    result: RunResult,
    exc: BaseException,
    started: float,
    settings: Settings,
    fields: dict[str, Any],
    log_to: runlog.RunLog,
) -> None:
    result.outcome = "failed"
    result.error_class = type(exc).__name__
    message = redact.scrub(str(exc) or repr(exc))[:2000]
    result.reason = message
    result.duration_s = time.monotonic() - started
    # A Retry-After longer than a run may wait is honoured by the next run's start.
    retry_after = exc.retry_after if isinstance(exc, RetriableError) else None
    if isinstance(exc, IntegrationDeleted):
        failures = 0  # no state row is left to count in
    else:
        failures = await store.mark_failed(
            conn,
            integration.id,
            error_class=result.error_class,
            error=message,
            duration_s=result.duration_s,
            backoff_base_s=settings.backoff_base_seconds,
            backoff_max_s=settings.backoff_max_seconds,
            not_before_s=retry_after or 0.0,
        )
    fatal = isinstance(exc, FatalError)
    async with conn.transaction():
        counted = await store.take_quiet_runs(conn, integration.id)
        await _log_end(
            conn,
            integration,
            result,
            "sync_failed",
            {
                **fields,
                "error_class": result.error_class,
                "error": message,
                "fatal": fatal,
                "consecutive_failures": failures,
            },
            log_to,
            counted,
        )
    log_fn = log.error if fatal else log.warning
    log_fn(
        "sync_failed",
        **fields,
        error_class=result.error_class,
        error=message,
        consecutive_failures=failures,
    )
    if not isinstance(exc, ConnectorError | IntegrationDeleted):
        # Not one of ours: a bug in a connector or an SDK. Keep the traceback in the log.
        log.exception("sync_crashed", **fields)


async def _log_end(
    conn: asyncpg.Connection,
    integration: Integration,
    result: RunResult,
    event: str,
    fields: dict[str, Any],
    log_to: runlog.RunLog,
    counted: store.QuietRuns,
    *,
    row: bool = True,
) -> None:
    """The run's end: its log line always; its row when `row` (a quiet run's only when it is
    the hour's), after its opening row for any run that is not quiet. `counted`: the quiet runs
    the row stands for (a quiet row: itself and those before; any other: those before it)."""
    metadata = {
        **fields,
        "created": result.created,
        "updated": result.updated,
        "unchanged": result.unchanged,
        "removed": result.removed,
        "pages": result.pages,
        "duration_s": round(result.duration_s, 3),
    }
    if result.outcome == "interrupted":
        metadata["reason"] = result.reason
    message = {
        "sync_completed": f"{integration.type} sync completed: {result.created} created, "
        f"{result.updated} updated, {result.unchanged} unchanged",
        "sync_failed": f"{integration.type} sync failed: {result.error_class}: {result.reason}",
        "sync_interrupted": f"{integration.type} sync interrupted ({result.reason}); "
        "resumes from the committed cursor",
    }[event]
    if row:
        quiet = log_to.quiet and counted.due
        if quiet:  # the row of the hour's quiet runs (`quiet`: it has no sync_started)
            message = (
                f"{integration.type}: {counted.runs} sync run(s) changed nothing"
                f" since {counted.first_at:%Y-%m-%d %H:%M:%S %Z}"
            )
        else:
            await log_to.open_before_end(conn)
        extra = {"quiet": True} if quiet else {}
        await store.log_activities(
            conn,
            integration.team_id,
            [store.Activity(event, message, {**metadata, **extra, **counted.metadata()})],
        )
    if event != "sync_failed":
        log.info(event, **{k: v for k, v in metadata.items()})

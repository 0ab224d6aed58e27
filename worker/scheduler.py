"""One APScheduler job per active integration, kept in step with the `integrations` table.

Jobs are reconciled at start, on the table's NOTIFY (a dedicated LISTEN connection that
reconnects), and on a slow timer as a safety net: an admin's insert, pause, interval or config
change, or delete takes effect within seconds.

Replicas share the ticks (worker.shards): each schedules only the integrations it owns among
the live replicas, which it reads on its LISTEN connection every REPLICAS_EVERY_S (the read is
also that connection's liveness ping) and on a `replicas` notice (a replica joined or is
leaving). A replica that dies leaves its share to the others within seconds.

A job's tick only queues a run and returns: APScheduler never holds a running job, so it never
skips a tick or warns about one. Runs are tracked here (not by APScheduler, whose `shutdown()`
cancels running coroutine jobs) and wait for a slot: `C9_SYNC_MAX_CONCURRENCY` runs at once per
process (each holds a database connection, its lock lives on it), at most
`C9_SYNC_MAX_PER_TRACKER` of them against one tracker type. A tick of an integration whose run is
still queued or running is served by that run: counted in /metrics, summed up in one log line a
minute. On SIGTERM queued runs are dropped, running ones get the grace period.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from apscheduler.events import EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED, JobEvent, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from worker import db, shards, sync, telemetry
from worker.logs import get_logger
from worker.settings import Settings
from worker.store import integrations, notify, replicas
from worker.store import sync as store_sync

log = get_logger(__name__)

# (integration, an admin's sync-now time, the due time of the tick the run serves)
Runner = Callable[[uuid.UUID, datetime | None, datetime | None], Awaitable[object]]

# How often, at most, the ticks served by a run still going are summed up in the log.
MISSED_TICKS_LOG_EVERY_S = 60.0
# More new jobs than this in one reconcile are logged as one line, and those already due have
# their first tick spread over their interval (`spread`), unless they only missed their last
# tick (`_herd`).
MANY_JOBS = 20
# After the grace period, how long cancelled runs get to unwind (release their lock).
CANCEL_UNWIND_S = 0.5
# How often a replica reads which replicas are live, and how long a replica whose LISTEN
# connection ran nothing counts as live still (a host gone without closing its connections).
REPLICAS_EVERY_S = 2.0
REPLICA_STALE_AFTER_S = 10.0


@dataclass(frozen=True, slots=True)
class JobSpec:
    interval: int
    config_digest: str


@dataclass(frozen=True, slots=True)
class Queued:
    seq: int  # order of arrival, across trackers
    integration_id: uuid.UUID
    due: datetime | None  # the tick's due time (None: a re-run asked for during a run)


def spread(integration_id: uuid.UUID, interval: int, db_now: datetime) -> timedelta:
    """When many jobs are due at once (a start after an outage, 10,000 rows added by a script):
    how long from `db_now` until this one's first tick. Its place in the interval comes from its
    id, counted from the epoch on the database's clock, so every replica ticks it at the same
    instant (one of them runs it, the others meet the lock or the due-check, and which one wins
    varies: the replicas share the work), and the ticks stay spread, interval after interval,
    instead of a herd each time."""
    place = (integration_id.int % 100_000) / 100_000 * interval
    return timedelta(seconds=(place - db_now.timestamp()) % interval)


def _herd(row: integrations.ScheduleRow, db_now: datetime) -> bool:
    """Whether a due row is part of a herd to spread: never synced, or due for more than an
    interval (rows a script added, a start after an outage). One due for less than an interval
    only missed its last tick (the replica that ticked it just died): it runs now, or that
    interval is lost."""
    if row.last_success_at is None:
        return True
    overdue = db_now - (row.last_success_at + timedelta(seconds=row.sync_interval))
    return overdue > timedelta(seconds=row.sync_interval)


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait for `event` at most `seconds`; True when it is set. `asyncio.timeout`, not
    `wait_for`: on Python 3.11 `wait_for` can swallow a cancellation that arrives just as the
    event fires, and a loop around it would then never stop."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()


class Scheduler:
    def __init__(self, pool: asyncpg.Pool, url: str, settings: Settings, runner: Runner) -> None:
        self._pool = pool
        self._url = url
        self._settings = settings
        self._runner = runner
        self._aps = AsyncIOScheduler(timezone=UTC)
        self._aps.add_listener(self._on_job_event, EVENT_JOB_SUBMITTED | EVENT_JOB_MISSED)
        self._specs: dict[uuid.UUID, JobSpec] = {}  # the integrations this replica ticks
        self._active: dict[uuid.UUID, str] = {}  # every active integration, and its type
        self.replica = shards.name_for_this_process()
        self._replicas: frozenset[str] = frozenset()  # the live ones, when last read
        self._listening = False  # our LISTEN connection carries our name: others see us
        # Due runs waiting for a slot, per tracker type, oldest first (a sequence number orders
        # them across trackers). Plain queues, not tasks: dropping 10,000 at SIGTERM is free.
        self._waiting: dict[str, deque[Queued]] = {}
        self._queued: set[uuid.UUID] = set()
        self._seq = itertools.count()
        self._runs: dict[uuid.UUID, asyncio.Task[None]] = {}  # running here
        self._per_tracker: collections.Counter[str] = collections.Counter()  # running, by type
        self._due: dict[uuid.UUID, datetime] = {}  # a submitted tick's due time, until it runs
        self._reconcile_wanted = asyncio.Event()
        self._requested: dict[uuid.UUID, datetime] = {}  # sync-now requests not yet run
        self._again: set[uuid.UUID] = set()  # asked for while running: run once more at its end
        self._busy_ticks = 0  # ticks served by a run still going, since the last summary line
        self._busy_logged = -MISSED_TICKS_LOG_EVERY_S  # the first one is logged at once
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self.heartbeat = time.monotonic()  # last reconcile: the systemd watchdog checks it

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        self._aps.start()
        await self.reconcile()
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="integrations-listener"),
            asyncio.create_task(self._reconcile_loop(), name="reconciler"),
        ]

    @property
    def side_tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)

    def jobs(self) -> dict[uuid.UUID, float]:
        """The scheduled integrations and their intervals in seconds, as APScheduler holds them."""
        return {uuid.UUID(job.id): job.trigger.interval_length for job in self._aps.get_jobs()}

    @property
    def queued(self) -> int:
        """Runs waiting for a slot."""
        return len(self._queued)

    async def stop(self, grace: float) -> int:
        """Stop starting runs: drop the queued ones (they never start) and give running ones
        `grace` seconds; return how many running runs were cut off."""
        deadline = time.monotonic() + grace
        self._stopping = True
        self._aps.pause()
        for task in self._tasks:
            task.cancel()
        dropped = len(self._queued)
        self._waiting.clear()
        self._queued.clear()
        telemetry.QUEUED.dec(dropped)
        if dropped:
            log.info("queued_runs_dropped", count=dropped)
        if self._tasks:  # bounded: shutdown must never hang on a side task
            await asyncio.wait(self._tasks, timeout=min(5.0, grace))
        with contextlib.suppress(*db.FAILURES, TimeoutError):
            # our LISTEN connection is closed: the others take our share now
            await notify.replicas_changed(self._pool, within=1.0)
        running = set(self._runs.values())
        pending: set[asyncio.Task[None]] = set()
        if running:
            log.info("waiting_for_runs", running=len(running), grace_s=grace)
            wait = deadline - time.monotonic()
            _, pending = await asyncio.wait(running, timeout=wait) if wait > 0 else ((), running)
        for run in pending:
            run.cancel()
        if pending:  # bounded too: a run unwinding must not hold the exit
            await asyncio.wait(pending, timeout=CANCEL_UNWIND_S)
        self._aps.shutdown(wait=False)
        return len(pending)

    # -- jobs ---------------------------------------------------------------------------------
    async def reconcile(self) -> None:
        """Make the jobs match the active rows."""
        self.heartbeat = time.monotonic()
        rows = {r.id: r for r in await integrations.schedule_rows(self._pool)}
        self._active = {r.id: r.type for r in rows.values()}
        seen = self._replicas
        if self._listening:
            self._replicas = await replicas.live(self._pool, REPLICA_STALE_AFTER_S)
        mine = shards.owned(self.replica, self._replicas, rows)
        for gone in set(self._specs) - mine:
            self._aps.remove_job(str(gone))
            del self._specs[gone]
            if gone not in rows:
                log.info("job_removed", integration_id=str(gone))
        async with self._pool.acquire() as conn:
            db_now = await store_sync.database_now(conn)
        now = datetime.now(UTC)
        # Each new job is logged, unless there are many (a start with 10,000 rows): one line then.
        fresh = sum(1 for i in mine if i not in self._specs)
        each = log.info if fresh <= MANY_JOBS else log.debug
        for row in rows.values():
            if row.id not in mine:
                continue  # another replica ticks it
            spec = JobSpec(row.sync_interval, row.config_digest)
            old = self._specs.get(row.id)
            if old == spec:
                continue
            if old is None or old.interval != spec.interval:
                first = sync.first_tick(
                    now, db_now, row.sync_interval, row.last_success_at, row.next_attempt_at
                )
                if fresh > MANY_JOBS and first <= now and _herd(row, db_now):
                    first = now + spread(row.id, row.sync_interval, db_now)
                self._aps.add_job(
                    self._tick,
                    IntervalTrigger(seconds=spec.interval, jitter=self._jitter(spec.interval)),
                    args=[row.id],
                    id=str(row.id),
                    replace_existing=True,
                    max_instances=1,  # never reached: a tick returns at once
                    coalesce=True,
                    misfire_grace_time=max(1, spec.interval),
                    next_run_time=first,
                )
                each(
                    "job_scheduled",
                    integration_id=str(row.id),
                    interval_s=spec.interval,
                    first_run=first.isoformat(),
                )
            elif old.config_digest != spec.config_digest:
                # config changed: run now with it (an admin fixing a token wants to see it)
                self._run_soon(row.id)
                log.info("job_config_changed", integration_id=str(row.id))
            self._specs[row.id] = spec
        if fresh > MANY_JOBS:
            log.info("jobs_scheduled", count=fresh)
        if self._replicas != seen:
            log.info(
                "replicas_changed",
                replica=self.replica,
                replicas=len(self._replicas),
                ticked_here=len(self._specs),
                active=len(rows),
            )
        telemetry.SCHEDULED.set(len(self._specs))
        telemetry.REPLICAS.set(len(self._replicas))

    def _jitter(self, interval: int) -> int | None:
        jitter = int(min(self._settings.jitter_seconds, interval / 10))
        return jitter or None

    def _run_soon(self, integration_id: uuid.UUID) -> None:
        """Run the job now; while its run is queued here, that run serves it; while it runs,
        once more as soon as it ends (the admin's edit or request must not wait for the next
        interval tick)."""
        if integration_id in self._runs:
            self._again.add(integration_id)
        elif integration_id in self._queued:
            pass  # it reads the row and the request when it starts
        elif integration_id in self._specs:
            self._aps.modify_job(str(integration_id), next_run_time=datetime.now(UTC))

    def _on_job_event(self, event: JobEvent) -> None:
        """APScheduler's events, on the loop: a submitted tick's due time (for the start lag),
        a tick fired too late to count (the process was too busy)."""
        integration_id = uuid.UUID(event.job_id)
        if isinstance(event, JobSubmissionEvent):
            self._due[integration_id] = event.scheduled_run_times[-1]
        elif event.code == EVENT_JOB_MISSED:
            self._missed(integration_id, "late")

    def _missed(self, integration_id: uuid.UUID, reason: str) -> None:
        telemetry.MISSED_TICKS.labels(reason).inc()
        log.debug("tick_missed", integration_id=str(integration_id), reason=reason)
        self._busy_ticks += 1
        if time.monotonic() - self._busy_logged >= MISSED_TICKS_LOG_EVERY_S:
            log.warning(
                "ticks_missed",
                count=self._busy_ticks,
                queued=self.queued,
                running=len(self._runs),
                max_concurrency=self._settings.max_concurrency,
                hint="runs outlast their interval or wait for a slot: raise"
                " C9_SYNC_MAX_CONCURRENCY or add a replica",
            )
            self._busy_ticks, self._busy_logged = 0, time.monotonic()

    async def _tick(self, integration_id: uuid.UUID) -> None:
        """APScheduler's job: queue a run and return at once."""
        due = self._due.pop(integration_id, None)
        if self._stopping:
            return
        if integration_id in self._runs or integration_id in self._queued:
            self._missed(integration_id, "busy")  # that run serves this tick
            return
        self._queue(integration_id, due)

    def _queue(self, integration_id: uuid.UUID, due: datetime | None) -> None:
        source = self._active.get(integration_id, "")
        waiting = self._waiting.setdefault(source, deque())
        waiting.append(Queued(next(self._seq), integration_id, due))
        self._queued.add(integration_id)
        telemetry.QUEUED.inc()
        self._dispatch()

    def _dispatch(self) -> None:
        """Start queued runs while there are slots: the oldest first whose tracker has one."""
        while not self._stopping and len(self._runs) < self._settings.max_concurrency:
            heads = [
                (waiting[0].seq, source)
                for source, waiting in self._waiting.items()
                if waiting and self._per_tracker[source] < self._settings.max_per_tracker
            ]
            if not heads:
                return
            _, source = min(heads)
            queued = self._waiting[source].popleft()
            self._queued.discard(queued.integration_id)
            telemetry.QUEUED.dec()
            if queued.due is not None:
                lag = (datetime.now(UTC) - queued.due).total_seconds()
                telemetry.START_LAG.observe(max(0.0, lag))
            self._per_tracker[source] += 1
            self._runs[queued.integration_id] = asyncio.create_task(
                self._run(queued.integration_id, source, queued.due), name="run"
            )

    async def _run(self, integration_id: uuid.UUID, source: str, due: datetime | None) -> None:
        telemetry.RUNNING.inc()
        try:
            await self._runner(integration_id, self._requested.pop(integration_id, None), due)
        except asyncio.CancelledError:
            raise
        except Exception:  # one integration's failure never stops the scheduler
            log.exception("run_crashed", integration_id=str(integration_id))
        finally:
            telemetry.RUNNING.dec()
            self._per_tracker[source] -= 1
            del self._runs[integration_id]
            if integration_id in self._again and not self._stopping:
                self._again.discard(integration_id)
                self._queue(integration_id, None)
            else:
                self._dispatch()

    # -- change notifications -----------------------------------------------------------------
    def _on_notify(self, *args: object) -> None:
        payload = str(args[-1])
        try:
            notice = notify.parse(payload)
        except notify.MalformedNotice as exc:
            log.warning("notification_ignored", reason=str(exc))
            self._reconcile_wanted.set()  # something changed, or not: a reconcile is cheap
            return
        log.debug("integrations_changed", op=notice.op, id=str(notice.id))
        if notice.op == "sync_now" and notice.id is not None and notice.at is not None:
            self._request_run(notice.id, notice.at)
            return
        self._reconcile_wanted.set()

    def _request_run(self, integration_id: uuid.UUID, at: datetime) -> None:
        """An admin's `sync-now`: run the job at once; the run itself decides, under the lock,
        whether another replica already served the request."""
        if integration_id not in self._active:
            self._reconcile_wanted.set()  # perhaps a row this replica has not seen yet
            return
        self._requested[integration_id] = at
        if integration_id in self._specs:
            self._run_soon(integration_id)
        elif integration_id not in self._runs and integration_id not in self._queued:
            # Another replica ticks it, and serves the request too, unless it is leaving right
            # now: both try, and the run decides under the lock (an admin's request is rare).
            self._queue(integration_id, None)
        log.info("sync_now_requested", integration_id=str(integration_id))

    async def _reconcile_loop(self) -> None:
        while True:
            await wait_event(self._reconcile_wanted, self._settings.reconcile_seconds)
            self._reconcile_wanted.clear()
            await asyncio.sleep(0.2)  # let a burst of edits settle into one reconcile
            try:
                await self.reconcile()
            except db.FAILURES as exc:
                log.warning("reconcile_failed", error=f"{type(exc).__name__}: {exc}")

    async def _listen_forever(self) -> None:
        """LISTEN on a dedicated connection; reconnect with backoff when it drops."""
        delay = 1.0
        while True:
            try:
                conn = await db.connect(self._url)
            except db.DatabaseUnavailable as exc:
                log.warning("listener_connect_failed", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
                continue
            try:
                await self._listen_on(conn)
                delay = 1.0
            except db.FAILURES as exc:
                log.warning("listener_lost", error=f"{type(exc).__name__}: {exc}")
            finally:
                # unseen by the others now: tick everything until seen again (shards.owned)
                self._listening, self._replicas = False, frozenset()
                self._reconcile_wanted.set()
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)
            await asyncio.sleep(delay)

    async def _listen_on(self, conn: asyncpg.Connection) -> None:
        """Serve notifications until the connection drops."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        await conn.add_listener(notify.CHANNEL, self._on_notify)
        await replicas.announce(conn, self.replica)
        self._listening = True
        log.info("listening", channel=notify.CHANNEL, replica=self.replica)
        await notify.replicas_changed(conn)  # (the others share the ticks out again)
        self._reconcile_wanted.set()  # catch up on anything missed while disconnected
        while not lost.is_set():
            await wait_event(lost, REPLICAS_EVERY_S)
            if not lost.is_set():
                # a silent drop raises here; a replica gone or come, a reconcile shares out
                if await replicas.live(conn, REPLICA_STALE_AFTER_S) != self._replicas:
                    self._reconcile_wanted.set()
        raise ConnectionResetError("LISTEN connection closed")

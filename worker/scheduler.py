"""One APScheduler job per active integration, kept in step with the `integrations` table.

Jobs are reconciled at start, on the table's NOTIFY (a dedicated LISTEN connection that
reconnects), and on a slow timer as a safety net: an admin's insert, pause, interval or config
change, or delete takes effect within seconds. Runs are tracked here (not by APScheduler, whose
`shutdown()` cancels running coroutine jobs) so a SIGTERM can let them commit their page.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from worker import db, sync, telemetry
from worker.logs import get_logger
from worker.settings import Settings
from worker.store import integrations, notify
from worker.store import sync as store_sync

log = get_logger(__name__)

Runner = Callable[[uuid.UUID, datetime | None], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class JobSpec:
    interval: int
    config_digest: str


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
        self._specs: dict[uuid.UUID, JobSpec] = {}
        self._limit = asyncio.Semaphore(settings.max_concurrency)
        self._running: set[asyncio.Task[object]] = set()
        self._reconcile_wanted = asyncio.Event()
        self._requested: dict[uuid.UUID, datetime] = {}  # sync-now requests not yet run
        self._in_run: set[uuid.UUID] = set()  # integrations whose job is running here
        self._again: set[uuid.UUID] = set()  # asked for while running: run once more at its end
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

    async def stop(self, grace: float) -> int:
        """Stop starting runs; give running ones `grace` seconds; return how many were cut off."""
        self._stopping = True
        self._aps.pause()
        for task in self._tasks:
            task.cancel()
        if self._tasks:  # bounded: shutdown must never hang on a side task
            await asyncio.wait(self._tasks, timeout=5)
        running = set(self._running)
        pending: set[asyncio.Task[object]] = set()
        if running:
            log.info("waiting_for_runs", running=len(running), grace_s=grace)
            _, pending = await asyncio.wait(running, timeout=grace)
        for run in pending:
            run.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self._aps.shutdown(wait=False)
        return len(pending)

    # -- jobs ---------------------------------------------------------------------------------
    async def reconcile(self) -> None:
        """Make the jobs match the active rows."""
        self.heartbeat = time.monotonic()
        rows = {r.id: r for r in await integrations.schedule_rows(self._pool)}
        for gone in set(self._specs) - set(rows):
            self._aps.remove_job(str(gone))
            del self._specs[gone]
            log.info("job_removed", integration_id=str(gone))
        async with self._pool.acquire() as conn:
            db_now = await store_sync.database_now(conn)
        now = datetime.now(UTC)
        for row in rows.values():
            spec = JobSpec(row.sync_interval, row.config_digest)
            old = self._specs.get(row.id)
            if old == spec:
                continue
            if old is None or old.interval != spec.interval:
                first = sync.first_tick(
                    now, db_now, row.sync_interval, row.last_success_at, row.next_attempt_at
                )
                self._aps.add_job(
                    self._run_job,
                    IntervalTrigger(seconds=spec.interval, jitter=self._jitter(spec.interval)),
                    args=[row.id],
                    id=str(row.id),
                    replace_existing=True,
                    max_instances=1,
                    coalesce=True,
                    misfire_grace_time=max(1, spec.interval),
                    next_run_time=first,
                )
                log.info(
                    "job_scheduled",
                    integration_id=str(row.id),
                    interval_s=spec.interval,
                    first_run=first.isoformat(),
                )
            else:  # config changed: run now with it (an admin fixing a token wants to see it)
                self._run_soon(row.id)
                log.info("job_config_changed", integration_id=str(row.id))
            self._specs[row.id] = spec
        telemetry.SCHEDULED.set(len(self._specs))

    def _jitter(self, interval: int) -> int | None:
        jitter = int(min(self._settings.jitter_seconds, interval / 10))
        return jitter or None

    def _run_soon(self, integration_id: uuid.UUID) -> None:
        """Run the job now, or, while this process runs it, once more as soon as it ends:
        APScheduler would drop a second instance (max_instances=1), and with it the admin's
        edit or request until the next interval tick."""
        if integration_id in self._in_run:
            self._again.add(integration_id)
        elif integration_id in self._specs:
            self._aps.modify_job(str(integration_id), next_run_time=datetime.now(UTC))

    async def _run_job(self, integration_id: uuid.UUID) -> None:
        if self._stopping or integration_id in self._in_run:
            return  # a tick during a re-run started below: that run serves it
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        self._in_run.add(integration_id)
        try:
            async with self._limit:
                telemetry.RUNNING.inc()
                try:
                    await self._runner(integration_id, self._requested.pop(integration_id, None))
                finally:
                    telemetry.RUNNING.dec()
        except asyncio.CancelledError:
            raise
        except Exception:  # one integration's failure never stops the scheduler
            log.exception("run_crashed", integration_id=str(integration_id))
        finally:
            self._running.discard(task)
            self._in_run.discard(integration_id)
            if integration_id in self._again:
                # Started here, not through APScheduler: it still counts this run as running
                # until the coroutine has returned, and would skip the re-run.
                self._again.discard(integration_id)
                rerun = asyncio.create_task(self._run_job(integration_id), name="rerun")
                self._running.add(rerun)
                rerun.add_done_callback(self._running.discard)

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
        if integration_id not in self._specs:
            self._reconcile_wanted.set()  # perhaps a row this replica has not seen yet
            return
        self._requested[integration_id] = at
        self._run_soon(integration_id)
        log.info("sync_now_requested", integration_id=str(integration_id))

    async def _reconcile_loop(self) -> None:
        while True:
            await wait_event(self._reconcile_wanted, self._settings.reconcile_seconds)
            self._reconcile_wanted.clear()
            await asyncio.sleep(0.2)  # let a burst of edits settle into one reconcile
            try:
                await self.reconcile()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
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
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("listener_lost", error=f"{type(exc).__name__}: {exc}")
            finally:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)
            await asyncio.sleep(delay)

    async def _listen_on(self, conn: asyncpg.Connection) -> None:
        """Serve notifications until the connection drops."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        await conn.add_listener(notify.CHANNEL, self._on_notify)
        log.info("listening", channel=notify.CHANNEL)
        self._reconcile_wanted.set()  # catch up on anything missed while disconnected
        while not lost.is_set():
            await wait_event(lost, 15)
            if not lost.is_set():
                await notify.ping(conn, within=10)  # detect a silent drop
        raise ConnectionResetError("LISTEN connection closed")

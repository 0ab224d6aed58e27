"""`c9-sync run`: the long-running worker process."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Mapping
from datetime import datetime

import asyncpg

from worker import (
    activity_upkeep,
    credentials,
    db,
    http,
    remap,
    startup,
    sync,
    systemd,
    threads,
)
from worker.errors import DatabaseUnavailable
from worker.logs import get_logger
from worker.scheduler import Scheduler, wait_event
from worker.settings import Settings
from worker.store import integrations, notify
from worker.webhooks.listener import WebhookListener

log = get_logger(__name__)

POOL_CLOSE_S = 0.3  # at shutdown, after the runs: the pool's goodbyes to PostgreSQL


class Worker:
    """The daemon's parts: the pool, the health server, the scheduler and the systemd watchdog.
    `start` brings them up, `watch` waits for a stop signal or a dead side task, `shutdown` lets
    running syncs commit their page (bounded) and releases everything."""

    def __init__(self, settings: Settings, url: str, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.url = url
        self.environ = dict(environ)
        self.stop = asyncio.Event()
        self.notifier = systemd.Notifier.from_environ(self.environ)  # a no-op outside systemd
        self._pool: asyncpg.Pool | None = None
        self._server: asyncio.Server | None = None
        self._hooks: WebhookListener | None = None
        self._hooks_server: asyncio.Server | None = None
        self._scheduler: Scheduler | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._upkeep: asyncio.Task[None] | None = None
        self._credential_gauge: asyncio.Task[None] | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "Worker.start() first"
        return self._pool

    async def run_one(
        self,
        integration_id: uuid.UUID,
        requested_at: datetime | None = None,
        tick_due: datetime | None = None,
    ) -> sync.RunResult:
        """The scheduler's runner: one run (for an admin's request, or the scheduled tick due
        at `tick_due`), and a database failure logged, never raised."""
        options = sync.RunOptions(stop=self.stop, requested_at=requested_at, tick_due=tick_due)
        try:
            result = await sync.run_integration(
                self.pool, integration_id, self.settings, environ=self.environ, options=options
            )
            # the status_map edited since the rows were mapped: map them all again (offline)
            await remap.after_run(self.pool, result, self.settings)
            return result
        except db.FAILURES as exc:
            # The database is unreachable: nothing can be recorded there; the next tick
            # retries and the committed cursor keeps everything already synced.
            log.error(
                "run_failed_database",
                integration_id=str(integration_id),
                error=db.describe_failure(exc),
            )
            return sync.RunResult(integration_id, "failed", reason=str(exc))

    async def ready(self) -> str | None:
        """/readyz: None when the database answers, else why not."""
        if self._pool is None:
            return "database: not connected yet"
        try:
            await notify.ping(self.pool, within=3)
        except db.FAILURES as exc:
            return f"database: {type(exc).__name__}"
        return None

    async def start(self, sets: tuple[str, ...]) -> bool:
        """Bring everything up; False when stopped while still waiting for the database."""
        settings = self.settings
        if settings.http_port:  # first: /healthz answers and /readyz says what it waits for
            self._server = await http.serve(settings.http_host, settings.http_port, self.ready)
        if not await self._connect(sets):
            return False
        scheduler = self._scheduler = Scheduler(self.pool, self.url, settings, self.run_one)
        await scheduler.start()
        if settings.webhook_port:  # after the scheduler: a delivery's run request finds it up
            self._hooks = WebhookListener(self.pool, settings, self.environ)
            self._hooks_server = await http.serve_routes(
                settings.webhook_host,
                settings.webhook_port,
                self._hooks.route,
                max_body=settings.webhook_max_bytes,
                what="POST /hooks/<integration id>",
            )
        # activity_logs partitions ahead, and retention: now and daily
        self._upkeep = asyncio.create_task(
            activity_upkeep.keep_up(self.pool, settings), name="activity-upkeep"
        )
        # every integration's credential expiries on /metrics (runs refresh only their own)
        self._credential_gauge = asyncio.create_task(
            credentials.keep_gauge_current(self.pool, settings.reconcile_seconds),
            name="credential-gauge",
        )
        active = await integrations.count_active(self.pool)
        log.info(
            "worker_started",
            active_integrations=active,
            pid=os.getpid(),
            max_concurrency=settings.max_concurrency,
            max_per_tracker=settings.max_per_tracker,
        )
        self.notifier.ready(f"syncing {active} active integration(s)")
        # Pinged from the loop, and only while the scheduler still reconciles: a wedged loop or
        # a stuck scheduler gets the service restarted by systemd.
        stale_after = 3 * settings.reconcile_seconds
        self._watchdog = asyncio.create_task(
            self.notifier.watchdog_loop(
                alive=lambda: time.monotonic() - scheduler.heartbeat < stale_after
            ),
            name="systemd-watchdog",
        )
        return True

    async def _connect(self, sets: tuple[str, ...]) -> bool:
        """Migrate (or check) the schema and open the pool, waiting with capped backoff while
        the database cannot be reached: a worker started before its database (a host reboot, a
        failover) waits instead of exiting. False when stopped while waiting."""
        delay = 1.0
        while True:
            try:
                await startup.ensure_schema(self.url, self.settings, sets)
                self._pool = await db.create_pool(self.url, max_size=self.settings.pool_size)
                return True
            except DatabaseUnavailable as exc:
                log.warning("database_unavailable", error=str(exc), retry_in_s=delay)
                # Keep systemd's start timeout from killing a worker that is only waiting.
                self.notifier.notify(
                    "STATUS=waiting for the database",
                    f"EXTEND_TIMEOUT_USEC={int((delay + 30) * 1_000_000)}",
                )
            if await wait_event(self.stop, delay):
                return False
            delay = min(delay * 2, 30.0)

    async def watch(self) -> int:
        """Until a stop signal (0) or until a side task ends (1: they must never end)."""
        assert self._scheduler is not None and self._watchdog is not None
        stop_wait = asyncio.create_task(self.stop.wait())
        watched = {stop_wait, self._watchdog, *self._scheduler.side_tasks}
        if self._upkeep is not None:
            watched.add(self._upkeep)
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        exit_code = 0
        for task in done - {stop_wait}:
            exc = task.exception() if not task.cancelled() else None
            log.error("side_task_died", task=task.get_name(), error=repr(exc))
            exit_code = 1
        self.stop.set()
        stop_wait.cancel()
        return exit_code

    async def shutdown(self) -> None:
        """Let running syncs commit their page (bounded), then release everything. Safe after
        a `start` that failed half-way."""
        if self._hooks_server is not None:  # no new run requests while runs wind down
            self._hooks_server.close()
        try:
            if self._scheduler is not None:
                self.stop.set()
                self.notifier.stopping("letting running syncs commit their page")
                log.info("worker_stopping", grace_s=self.settings.grace_seconds)
                cut = await self._scheduler.stop(self.settings.grace_seconds)
                if cut:
                    log.warning("runs_cut_off", count=cut)
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
            if self._upkeep is not None:
                self._upkeep.cancel()
            if self._credential_gauge is not None:
                self._credential_gauge.cancel()
            self.notifier.close()
            if self._server is not None:
                self._server.close()
            if self._hooks is not None:
                self._hooks.close()
            if self._pool is not None:
                await self._close_pool()

    async def _close_pool(self) -> None:
        """Close the pool; a connection a cut-off run still holds is not waited for (the exit
        is due within the grace period plus a second)."""
        assert self._pool is not None
        try:
            await asyncio.wait_for(self._pool.close(), POOL_CLOSE_S)
        except db.FAILURES:
            self._pool.terminate()


async def run(
    settings: Settings,
    url: str,
    *,
    sets: tuple[str, ...] = ("core",),
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (exit 0) or until a side task dies (exit 1)."""
    worker = Worker(settings, url, os.environ if environ is None else environ)
    startup.install_stop_signals(worker.stop)
    asyncio.get_running_loop().set_default_executor(threads.ThreadPerCall())
    exit_code = 0
    try:
        if await worker.start(sets):
            exit_code = await worker.watch()
    finally:
        await worker.shutdown()
    log.info("worker_stopped", exit_code=exit_code)
    return exit_code

"""`c9-sync run`: the long-running worker process."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Mapping
from datetime import datetime

import asyncpg

from worker import db, http, metrics, migrate, sync, systemd
from worker.logs import get_logger
from worker.scheduler import Scheduler
from worker.settings import Settings

log = get_logger(__name__)


async def ensure_schema(url: str, settings: Settings, sets: tuple[str, ...]) -> None:
    """Migrate when allowed (`C9_SYNC_AUTO_MIGRATE`, default on), else refuse to start on a schema
    that is behind: a worker must never write to tables it does not know."""
    conn = await db.connect(url)
    try:
        # Python and PostgreSQL may know different zones: refuse now rather than after each run.
        try:
            await metrics.local_today(conn, settings.metrics_tz)
        except ValueError as exc:
            raise migrate.MigrationError(str(exc)) from None
        waiting = await migrate.pending(conn, sets)
        if waiting and not settings.auto_migrate:
            raise migrate.behind(waiting)
        if waiting:
            await migrate.apply(conn, sets)
    finally:
        await conn.close()


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def run(
    settings: Settings,
    url: str,
    *,
    sets: tuple[str, ...] = ("core",),
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (exit 0) or until a side task dies (exit 1)."""
    stop = asyncio.Event()
    install_stop_signals(stop)
    environ = dict(os.environ if environ is None else environ)
    await ensure_schema(url, settings, sets)
    pool = await db.create_pool(url, max_size=settings.max_concurrency + 2)
    server: asyncio.Server | None = None
    notifier = systemd.Notifier.from_environ(environ)  # a no-op outside systemd
    watchdog: asyncio.Task[None] | None = None
    exit_code = 0
    try:

        async def run_one(
            integration_id: uuid.UUID, requested_at: datetime | None = None
        ) -> sync.RunResult:
            options = sync.RunOptions(stop=stop, requested_at=requested_at)
            try:
                return await sync.run_integration(
                    pool, integration_id, settings, environ=environ, options=options
                )
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # The database is unreachable: nothing can be recorded there; the next tick
                # retries and the committed cursor keeps everything already synced.
                log.error(
                    "run_failed_database",
                    integration_id=str(integration_id),
                    error=f"{type(exc).__name__}: {exc}",
                )
                return sync.RunResult(integration_id, "failed", reason=str(exc))

        async def ready() -> str | None:
            try:
                await asyncio.wait_for(pool.fetchval("SELECT 1"), 3)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                return f"database: {type(exc).__name__}"
            return None

        if settings.http_port:
            server = await http.serve(settings.http_host, settings.http_port, ready)
        scheduler = Scheduler(pool, url, settings, run_one)
        await scheduler.start()
        active = await pool.fetchval("SELECT count(*) FROM integrations WHERE is_active")
        log.info(
            "worker_started",
            active_integrations=active,
            pid=os.getpid(),
            max_concurrency=settings.max_concurrency,
        )

        notifier.ready(f"syncing {active} active integration(s)")
        # Pinged from the loop, and only while the scheduler still reconciles: a wedged loop or
        # a stuck scheduler gets the service restarted by systemd.
        stale_after = 3 * settings.reconcile_seconds
        watchdog = asyncio.create_task(
            notifier.watchdog_loop(
                alive=lambda: time.monotonic() - scheduler.heartbeat < stale_after
            ),
            name="systemd-watchdog",
        )
        stop_wait = asyncio.create_task(stop.wait())
        watched = {stop_wait, watchdog, *scheduler.side_tasks}
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        for task in done - {stop_wait}:
            # A side task (listener, reconciler) must never end: if one did, stop loudly.
            exc = task.exception() if not task.cancelled() else None
            log.error("side_task_died", task=task.get_name(), error=repr(exc))
            exit_code = 1
        stop.set()
        stop_wait.cancel()
        notifier.stopping("letting running syncs commit their page")
        log.info("worker_stopping", grace_s=settings.grace_seconds)
        cut = await scheduler.stop(settings.grace_seconds)
        if cut:
            log.warning("runs_cut_off", count=cut)
    finally:
        if watchdog is not None:
            watchdog.cancel()
        notifier.close()
        if server is not None:
            server.close()
        await pool.close()
    log.info("worker_stopped", exit_code=exit_code)
    return exit_code

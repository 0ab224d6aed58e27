"""`c9-sync run`: the long-running worker process."""

from __future__ import annotations

import asyncio
import signal

from worker import db, migrate
from worker.logs import get_logger
from worker.settings import Settings

log = get_logger(__name__)


class SchemaNotReady(migrate.MigrationError):
    pass


async def ensure_schema(url: str, settings: Settings, sets: tuple[str, ...]) -> None:
    """Migrate when allowed (`C9_SYNC_AUTO_MIGRATE`, default on), else refuse to start on a schema
    that is behind: a worker must never write to tables it does not know."""
    conn = await db.connect(url)
    try:
        waiting = await migrate.pending(conn, sets)
        if waiting and not settings.auto_migrate:
            names = ", ".join(m.path for m in waiting)
            raise SchemaNotReady(f"schema is behind ({names}): run `c9-sync migrate` first")
        if waiting:
            await migrate.apply(conn, sets)
    finally:
        await conn.close()


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def run(settings: Settings, url: str, *, sets: tuple[str, ...] = ("core",)) -> int:
    stop = asyncio.Event()
    install_stop_signals(stop)
    await ensure_schema(url, settings, sets)
    pool = await db.create_pool(url, max_size=settings.max_concurrency + 2)
    try:
        active = await pool.fetchval("SELECT count(*) FROM integrations WHERE is_active")
        log.info("worker_started", active_integrations=active)
        await stop.wait()
        log.info("worker_stopping", reason="signal")
    finally:
        await pool.close()
    log.info("worker_stopped")
    return 0

"""What a command that touches the database does first (`ensure_schema`), and how a long one
learns it is asked to stop (`install_stop_signals`). Apart from the daemon (worker.daemon), so
that the one-shot commands do not load its scheduler to call them."""

from __future__ import annotations

import asyncio
import signal

from worker import db, metrics, migrate
from worker.errors import MigrationError
from worker.settings import Settings


async def ensure_schema(url: str, settings: Settings, sets: tuple[str, ...]) -> None:
    """Migrate when allowed (`C9_SYNC_AUTO_MIGRATE`, default on), else refuse to start on a schema
    that is behind: a worker must never write to tables it does not know."""
    conn = await db.connect(url)
    try:
        # Python and PostgreSQL may know different zones: refuse now rather than after each run.
        try:
            await metrics.local_today(conn, settings.metrics_tz)
        except ValueError as exc:
            raise MigrationError(str(exc)) from None
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

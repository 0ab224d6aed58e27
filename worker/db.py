"""Which PostgreSQL to use, and connections to it.

`DATABASE_URL` when set; otherwise an embedded PostgreSQL (pgserver) in `$C9_SYNC_HOME/pgdata`,
started on demand, stopped when the last process using it exits, and recovered when a previous
holder died without stopping it.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from worker import redact
from worker.errors import DatabaseUnavailable
from worker.logs import get_logger
from worker.sanitize import JsonText
from worker.settings import Settings

log = get_logger(__name__)

# What a statement raises when the database fails under it: a server error, a dropped or refused
# connection (asyncpg's interface errors, the OS's, a timeout), or asyncpg's "another operation is
# in progress" (InternalClientError), raised when a connection is used while the server's
# termination notice is still being read. Callers that must outlive the database catch these.
FAILURES: tuple[type[Exception], ...] = (
    OSError,  # TimeoutError included
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions._base.InternalClientError,
)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _forget_dead_holders(pgdata: Path) -> list[int]:
    """pgserver counts the processes using a server in `.handle_pids.json` and stops it when the
    last one exits. A holder killed with SIGKILL never removes itself, so the server would be kept
    running (and leaked) forever: drop pids that no longer exist. Returns the pids dropped."""
    path = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    alive = [p for p in pids if isinstance(p, int) and _pid_alive(p)]
    if alive != pids:
        path.write_text(json.dumps(alive))
    return [p for p in pids if p not in alive]


@contextmanager
def embedded_postgres(pgdata: Path) -> Iterator[str]:
    """Start (or join) the embedded server in `pgdata`; yield its URL; leave it when done."""
    # Imported here, not at the top: only the embedded mode needs it, and it is slow to import.
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; pgserver then uses /tmp, which is fine.
        warnings.simplefilter("ignore")
        import pgserver
        from pgserver.postgres_server import PostgresServer

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with PostgresServer._lock:
        dropped = _forget_dead_holders(pgdata)
    if dropped:
        log.warning("embedded_db_recovered", pgdata=str(pgdata), dead_holders=dropped)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        logfile = pgdata / "log"
        raise DatabaseUnavailable(
            f"could not start the embedded PostgreSQL in {pgdata} ({type(exc).__name__}: {exc}); "
            f"see {logfile}"
        ) from exc
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """The URL every command connects to, logged once without its password."""
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        redact.register(urlsplit(url).password)
        log.info("database", kind="external", url=redact.dsn_for_display(url))
        yield url
        return
    with embedded_postgres(settings.pgdata) as url:
        log.info("database", kind="embedded", pgdata=str(settings.pgdata))
        yield url


def _encode_jsonb(value: Any) -> bytes:
    # jsonb's binary form is a version byte and the text: binary, so that COPY (binary only in
    # asyncpg) can write jsonb columns (store.new_items)
    text = value if isinstance(value, JsonText) else json.dumps(value)
    return b"\x01" + text.encode()


def _decode_jsonb(data: bytes) -> Any:
    return json.loads(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec(
        "jsonb",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        schema="pg_catalog",
        format="binary",
    )


async def connect(url: str, **kwargs: Any) -> asyncpg.Connection:
    """One connection (migrations, LISTEN, advisory locks held for a run)."""
    try:
        conn = await asyncpg.connect(url, **kwargs)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise DatabaseUnavailable(_describe(url, exc)) from None
    await _init_connection(conn)
    return conn


@asynccontextmanager
async def connection(url: str) -> AsyncIterator[asyncpg.Connection]:
    """One connection for a short piece of work, closed after it (an admin command's OAuth
    refresh, while its own connection is elsewhere)."""
    conn = await connect(url)
    try:
        yield conn
    finally:
        await conn.close()


async def create_pool(url: str, *, max_size: int = 10) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(
            url, min_size=1, max_size=max_size, init=_init_connection, command_timeout=60
        )
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise DatabaseUnavailable(_describe(url, exc)) from None
    assert pool is not None
    return pool


def _describe(url: str, exc: BaseException) -> str:
    where = redact.dsn_for_display(url)
    return redact.scrub(f"cannot connect to {where}: {type(exc).__name__}: {exc}")


def describe_failure(exc: BaseException) -> str:
    """`Type: message` of what went wrong with the database. A connection that drops mid-run
    surfaces as asyncpg's "released back to the pool" (raised by the next call on the detached
    proxy): the error it was raised over says what happened, else it is said plainly."""
    seen: set[int] = set()
    while (
        isinstance(exc, asyncpg.InterfaceError)
        and "released back to the pool" in str(exc)
        and exc.__context__ is not None
        and id(exc) not in seen
    ):
        seen.add(id(exc))
        exc = exc.__context__
    if isinstance(exc, asyncpg.InterfaceError) and "released back to the pool" in str(exc):
        # The pool saw the connection die and detached it before the run's next call.
        return "connection lost: PostgreSQL closed the run's connection (restart, failover, kill)"
    return redact.scrub(f"{type(exc).__name__}: {exc}")

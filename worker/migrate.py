"""Forward-only SQL migrations from `schema/`, applied in order, once, checksummed.

Each file is applied in its own transaction under a session advisory lock (two `migrate` calls
at once are safe: the second waits, then finds nothing to do). An applied file whose checksum
changed is an error, never a silent re-run: fix forward with a new file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

import asyncpg

from schema import SETS
from worker import db
from worker.errors import MigrationError
from worker.logs import get_logger

log = get_logger(__name__)

DEFAULT_SETS = ("core",)
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x63397379_6E63  # "c9sync": one lock for every migrate, across replicas

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS public.schema_migrations (
    migration_set TEXT NOT NULL,
    version       INTEGER NOT NULL,
    name          TEXT NOT NULL,
    checksum      TEXT NOT NULL,
    applied_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (migration_set, version)
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    migration_set: str
    version: int
    name: str
    path: str  # for messages: schema/0001_core.sql
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    migration: Migration
    applied_at: datetime | None
    drifted: bool


def discover(migration_set: str) -> list[Migration]:
    if migration_set not in SETS:
        raise MigrationError(f"unknown migration set {migration_set!r} (known: {', '.join(SETS)})")
    folder = resources.files("schema")
    if SETS[migration_set] != ".":
        folder = folder / SETS[migration_set]
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            rel = (
                entry.name if SETS[migration_set] == "." else f"{SETS[migration_set]}/{entry.name}"
            )
            found.append(
                Migration(
                    migration_set, int(match[1]), match[2], f"schema/{rel}", entry.read_text()
                )
            )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two files share a version number in set {migration_set!r}")
    return found


def _permission_denied(what: str) -> MigrationError:
    return MigrationError(
        f"{what}: permission denied. Run `c9-sync migrate` as the schema's owner, and set "
        "C9_SYNC_AUTO_MIGRATE=false for workers that run with fewer rights "
        "(deploy/postgres/roles.sql)."
    )


async def _applied(conn: asyncpg.Connection) -> dict[tuple[str, int], asyncpg.Record]:
    rows = await conn.fetch("SELECT * FROM public.schema_migrations")
    return {(r["migration_set"], r["version"]): r for r in rows}


async def status(
    conn: asyncpg.Connection, sets: tuple[str, ...] = DEFAULT_SETS
) -> list[MigrationStatus]:
    exists = await conn.fetchval("SELECT to_regclass('public.schema_migrations') IS NOT NULL")
    applied = await _applied(conn) if exists else {}
    out = []
    for name in sets:
        for m in discover(name):
            row = applied.get((m.migration_set, m.version))
            out.append(
                MigrationStatus(
                    m,
                    row["applied_at"] if row else None,
                    bool(row and row["checksum"] != m.checksum),
                )
            )
    return out


async def pending(
    conn: asyncpg.Connection, sets: tuple[str, ...] = DEFAULT_SETS
) -> list[Migration]:
    return [s.migration for s in await status(conn, sets) if s.applied_at is None]


def behind(waiting: list[Migration]) -> MigrationError:
    names = ", ".join(m.path for m in waiting)
    return MigrationError(f"schema is behind ({names}): run `c9-sync migrate` first")


async def connect_current(url: str, sets: tuple[str, ...] = DEFAULT_SETS) -> asyncpg.Connection:
    """A connection to a database whose schema is up to date, else MigrationError."""
    conn = await db.connect(url)
    try:
        waiting = await pending(conn, sets)
        if waiting:
            raise behind(waiting)
    except BaseException:
        await conn.close()
        raise
    return conn


async def apply(conn: asyncpg.Connection, sets: tuple[str, ...] = DEFAULT_SETS) -> list[Migration]:
    """Apply every pending migration of `sets`; return what was applied."""
    done: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        try:
            await conn.execute(_CREATE_TABLE)
        except asyncpg.InsufficientPrivilegeError:
            raise _permission_denied("schema_migrations") from None
        applied = await _applied(conn)
        for name in sets:
            for m in discover(name):
                row = applied.get((m.migration_set, m.version))
                if row is not None:
                    if row["checksum"] != m.checksum:
                        raise MigrationError(
                            f"{m.path} was changed after it was applied "
                            f"(recorded checksum {row['checksum'][:12]}…, "
                            f"file {m.checksum[:12]}…). "
                            "Applied migrations are never edited: restore the file and put the "
                            "change in a new migration."
                        )
                    continue
                try:
                    async with conn.transaction():
                        await conn.execute(m.sql)
                        await conn.execute(
                            "INSERT INTO public.schema_migrations"
                            " (migration_set, version, name, checksum) VALUES ($1, $2, $3, $4)",
                            m.migration_set,
                            m.version,
                            m.name,
                            m.checksum,
                        )
                except asyncpg.InsufficientPrivilegeError:
                    raise _permission_denied(m.path) from None
                except asyncpg.PostgresError as exc:
                    # str(exc) already carries PostgreSQL's DETAIL and HINT lines.
                    raise MigrationError(f"{m.path} failed: {exc}") from None
                log.info("migration_applied", set=m.migration_set, version=m.version, name=m.name)
                done.append(m)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return done

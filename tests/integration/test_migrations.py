"""`c9-sync migrate`: order, idempotence, concurrency, checksum drift."""

from __future__ import annotations

import asyncio

import pytest

from worker import db, migrate


async def test_applies_on_an_empty_database(empty_db_url: str) -> None:
    conn = await db.connect(empty_db_url)
    try:
        applied = await migrate.apply(conn)
        versions = [m.version for m in migrate.discover("core")]
        assert [m.version for m in applied] == versions
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == versions
        assert all(len(r["checksum"]) == 64 for r in rows)
    finally:
        await conn.close()


async def test_second_run_is_a_no_op(empty_db_url: str) -> None:
    conn = await db.connect(empty_db_url)
    try:
        await migrate.apply(conn)
        before = await conn.fetch("SELECT * FROM schema_migrations ORDER BY version")
        assert await migrate.apply(conn) == []
        after = await conn.fetch("SELECT * FROM schema_migrations ORDER BY version")
        assert before == after
        assert await migrate.pending(conn) == []
    finally:
        await conn.close()


async def test_concurrent_migrations_apply_each_file_once(empty_db_url: str) -> None:
    conns = [await db.connect(empty_db_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate.apply(c) for c in conns))
        applied = sorted(len(r) for r in results)
        assert applied == [0, 0, 0, len(migrate.discover("core"))]
        count = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(migrate.discover("core"))
    finally:
        for c in conns:
            await c.close()


async def test_changed_applied_file_is_refused(empty_db_url: str) -> None:
    conn = await db.connect(empty_db_url)
    try:
        await migrate.apply(conn)
        await conn.execute(
            "UPDATE schema_migrations SET checksum = 'x' || checksum WHERE version = 2"
        )
        with pytest.raises(migrate.MigrationError, match=r"0002_sync_state\.sql was changed"):
            await migrate.apply(conn)
        statuses = await migrate.status(conn)
        assert [s.drifted for s in statuses if s.migration.version == 2] == [True]
    finally:
        await conn.close()


async def test_failed_migration_rolls_back_and_says_which(empty_db_url: str) -> None:
    conn = await db.connect(empty_db_url)
    try:
        # A table that 0001 wants to create already exists: 0001 fails as a whole.
        await conn.execute("CREATE TABLE teams (id int)")
        with pytest.raises(migrate.MigrationError, match=r"0001_claude_nine_core\.sql failed"):
            await migrate.apply(conn)
        assert await conn.fetchval("SELECT to_regclass('public.agents')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 0
    finally:
        await conn.close()


async def test_status_lists_pending_then_applied(empty_db_url: str) -> None:
    conn = await db.connect(empty_db_url)
    try:
        before = await migrate.status(conn)
        assert before and all(s.applied_at is None for s in before)
        await migrate.apply(conn)
        after = await migrate.status(conn)
        assert all(s.applied_at is not None and not s.drifted for s in after)
    finally:
        await conn.close()


async def test_lock_is_released_after_failure(empty_db_url: str) -> None:
    conn = await db.connect(empty_db_url)
    other = await db.connect(empty_db_url)
    try:
        await conn.execute("CREATE TABLE teams (id int)")
        with pytest.raises(migrate.MigrationError):
            await migrate.apply(conn)
        got = await other.fetchval("SELECT pg_try_advisory_lock($1)", migrate._LOCK_KEY)
        assert got is True
    finally:
        await conn.close()
        await other.close()


def test_migrations_ship_inside_the_package() -> None:
    names = [m.path for m in migrate.discover("core")]
    assert names[0] == "schema/0001_claude_nine_core.sql"
    assert names == sorted(names)

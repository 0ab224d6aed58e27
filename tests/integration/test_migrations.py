"""`c9-sync migrate`: order, idempotence, concurrency, checksum drift."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.helpers import make_team, make_work_item
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


# Upgrade from a database holding data ------------------------------------------------------------


async def apply_through(conn: asyncpg.Connection, last: int) -> None:
    """Apply the core migrations up to `last` as `c9-sync migrate` did when that was the newest
    (same SQL, same bookkeeping), so that the next `migrate.apply` upgrades from there."""
    await conn.execute(migrate._CREATE_TABLE)
    for m in migrate.discover("core"):
        if m.version <= last:
            await conn.execute(m.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (migration_set, version, name, checksum)"
                " VALUES ($1, $2, $3, $4)",
                m.migration_set,
                m.version,
                m.name,
                m.checksum,
            )


async def test_0008_names_existing_integrations_and_allows_several_per_type(
    empty_db_url: str,
) -> None:
    conn = await db.connect(empty_db_url)
    listener = await db.connect(empty_db_url)
    heard: list[str] = []
    try:
        await apply_through(conn, 7)
        alpha = await make_team(conn, "Alpha")
        beta = await make_team(conn, "Beta")
        insert = (
            "INSERT INTO integrations (team_id, type, name, config, updated_at)"
            " VALUES ($1, $2, $3, '{}', '2025-01-01T00:00:00Z') RETURNING id"
        )
        unnamed = await conn.fetchval(insert, alpha, "github", None)
        blank = await conn.fetchval(insert, alpha, "jira", "  ")
        named = await conn.fetchval(insert, beta, "github", "Web repos")
        # The old constraint: one integration per team and type.
        with pytest.raises(asyncpg.UniqueViolationError, match="integrations_team_type_unique"):
            await conn.execute(insert, alpha, "github", "another")
        item = await make_work_item(conn, alpha, "gh-1", source="github", integration_id=unnamed)
        before = {r["id"]: r["updated_at"] for r in await conn.fetch("SELECT * FROM integrations")}
        await listener.add_listener("c9_sync_integrations", lambda *a: heard.append(a[-1]))

        applied = await migrate.apply(conn)
        assert applied[0].path == "schema/0008_integration_names.sql"

        rows = {r["id"]: r for r in await conn.fetch("SELECT * FROM integrations")}
        assert {i: rows[i]["name"] for i in (unnamed, blank, named)} == {
            unnamed: "github",  # named after their type: unique, as one per type was allowed
            blank: "jira",
            named: "Web repos",  # kept
        }
        # Not an admin edit: no updated_at bump (it would clear a backoff), no NOTIFY.
        assert {i: r["updated_at"] for i, r in rows.items()} == before
        await listener.execute("SELECT 1")  # a round trip: queued notifications are delivered
        assert heard == []
        assert (
            await conn.fetchval("SELECT integration_id FROM work_items WHERE id = $1", item)
            == unnamed
        )

        # Several of one type per team, told apart by name.
        second = await conn.fetchval(insert, alpha, "github", "globex")
        assert second is not None
        with pytest.raises(
            asyncpg.UniqueViolationError, match="integrations_team_type_name_unique"
        ):
            await conn.execute(insert, alpha, "github", "globex")
        # A writer that knows nothing of names: its row is named after the type, so its second
        # unnamed row of a type is refused as before.
        third = await conn.fetchval(insert, beta, "jira", None)
        assert await conn.fetchval("SELECT name FROM integrations WHERE id = $1", third) == "jira"
        with pytest.raises(
            asyncpg.UniqueViolationError, match="integrations_team_type_name_unique"
        ):
            await conn.execute(insert, alpha, "github", None)
        await conn.execute("UPDATE integrations SET name = NULL WHERE id = $1", named)
        assert await conn.fetchval("SELECT name FROM integrations WHERE id = $1", named) == "github"
        nullable = await conn.fetchval(
            "SELECT is_nullable FROM information_schema.columns"
            " WHERE table_name = 'integrations' AND column_name = 'name'"
        )
        assert nullable == "NO"

        # The views: per integration, never two collapsed.
        await make_work_item(conn, alpha, "gh-2", source="github", integration_id=second)
        counts = {
            r["integration_name"]: r["items"]
            for r in await conn.fetch(
                "SELECT * FROM v_integration_status_counts WHERE team_id = $1", alpha
            )
        }
        assert counts == {"github": 1, "globex": 1}
        health = await conn.fetch(
            "SELECT name, items FROM v_integration_health WHERE team_id = $1 AND type = 'github'"
            " ORDER BY name",
            alpha,
        )
        assert [(h["name"], h["items"]) for h in health] == [("github", 1), ("globex", 1)]
        assert await migrate.apply(conn) == []
    finally:
        await listener.close()
        await conn.close()


async def test_0020_counts_every_scope_with_a_cursor_as_read(empty_db_url: str) -> None:
    conn = await db.connect(empty_db_url)
    try:
        await apply_through(conn, 19)
        team = await make_team(conn, "Alpha")
        insert = (
            "INSERT INTO integrations (team_id, type, name, config)"
            " VALUES ($1, 'github', $2, '{}') RETURNING id"
        )
        read, fresh = await conn.fetchval(insert, team, "a"), await conn.fetchval(insert, team, "b")
        await conn.execute(
            "INSERT INTO integration_sync_state (integration_id, cursor) VALUES"
            ' ($1, \'{"o/web": "2025-01-01T00:00:00+00:00", "o/api": "2025-02-01T00:00:00+00:00"}\'),'
            " ($2, '{}')",
            read,
            fresh,
        )
        applied = await migrate.apply(conn)
        assert applied[0].path == "schema/0020_scopes_read.sql"
        got = dict(
            await conn.fetch("SELECT integration_id, scopes_read FROM integration_sync_state")
        )
        assert got == {read: ["o/api", "o/web"], fresh: []}
    finally:
        await conn.close()

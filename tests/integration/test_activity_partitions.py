"""activity_logs partitioned by month (schema 0015): the migration keeps every row, id, index,
foreign key, privilege and view; partitions are made ahead (the default one catches the rest);
retention deletes run rows of old months, item events only when asked."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.helpers import make_team, make_work_item
from worker import activity_upkeep, db, migrate
from worker.settings import Settings

ROWS = """
INSERT INTO activity_logs (team_id, work_item_id, event_type, message, metadata, created_at)
SELECT $1, CASE WHEN g % 3 = 1 THEN $2::uuid END,
       (ARRAY['sync_started', 'work_item_created', 'sync_completed'])[g % 3 + 1],
       'm' || g, jsonb_build_object('g', g), now() - g * interval '5 days'
FROM generate_series(0, 99) g
"""


def first_of_month(months_back: int) -> datetime:
    now = datetime.now(UTC)
    index = now.year * 12 + now.month - 1 - months_back
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


async def partitions(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'activity_logs'::regclass"
    )
    return {r["relname"]: r["bound"] for r in rows}


async def test_0015_keeps_rows_ids_indexes_keys_grants_and_the_view(empty_db_url: str) -> None:
    conn = await db.connect(empty_db_url)
    reader = f"c9t_reader_{uuid.uuid4().hex[:10]}"
    try:
        await conn.execute(migrate._CREATE_TABLE)
        for m in migrate.discover("core"):
            if m.version < 15:  # the schema as it stood before, recorded as applied
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (migration_set, version, name, checksum)"
                    " VALUES ($1, $2, $3, $4)",
                    m.migration_set,
                    m.version,
                    m.name,
                    m.checksum,
                )
        await conn.execute(f"CREATE ROLE {reader} NOLOGIN")  # (roles are cluster-wide)
        await conn.execute(f"GRANT SELECT ON activity_logs TO {reader}")
        team = await make_team(conn, "Alpha")
        item = await make_work_item(conn, team, "A-1")
        await conn.execute(ROWS, team, item)
        before = await conn.fetch("SELECT * FROM activity_logs ORDER BY id")
        indexes_before = await conn.fetchval(
            "SELECT array_agg(indexname::text ORDER BY indexname) FROM pg_indexes"
            " WHERE tablename = 'activity_logs' AND indexname <> 'activity_logs_pkey'"
        )

        applied = await migrate.apply(conn)
        assert applied[0].version == 15  # (and the later ones, on top)

        assert await conn.fetch("SELECT * FROM activity_logs ORDER BY id") == before
        assert (
            await conn.fetchval("SELECT relkind FROM pg_class WHERE relname = 'activity_logs'")
            == b"p"
        )
        made = await partitions(conn)
        next_month = first_of_month(-1)
        assert made["activity_logs_before_0015"] == (
            f"FOR VALUES FROM (MINVALUE) TO ('{next_month:%Y-%m-%d} 00:00:00+00')"
        )
        assert made["activity_logs_default"] == "DEFAULT"
        assert {f"activity_logs_{first_of_month(-k):%Y_%m}" for k in (1, 2, 3)} <= set(made)
        # every old row is in the old table, now a partition: nothing was copied
        assert await conn.fetchval("SELECT count(*) FROM ONLY activity_logs_before_0015") == 100
        # the indexes, partitioned, with their names; the key now includes created_at
        assert (
            await conn.fetchval(
                "SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_index x"
                " JOIN pg_class c ON c.oid = x.indexrelid"
                " WHERE x.indrelid = 'activity_logs'::regclass AND c.relname <> 'activity_logs_pkey'"
            )
            == indexes_before
        )
        assert (
            await conn.fetchval(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = 'activity_logs'::regclass AND contype = 'p'"
            )
            == "PRIMARY KEY (id, created_at)"
        )
        assert not await conn.fetchval(
            "SELECT count(*) FROM pg_index x JOIN pg_inherits i ON i.inhrelid = x.indexrelid"
            " WHERE NOT x.indisvalid"
        )
        # the foreign keys still hold, and still cascade
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute(
                "INSERT INTO activity_logs (team_id, event_type, message) VALUES ($1, 'x', 'x')",
                uuid.uuid4(),
            )
        await conn.execute("DELETE FROM work_items WHERE id = $1", item)
        assert not await conn.fetchval(
            "SELECT count(*) FROM activity_logs WHERE work_item_id IS NOT NULL"
        )
        # the privileges the table had, and the view over it
        assert await conn.fetchval(
            "SELECT has_table_privilege($1, 'activity_logs', 'SELECT')", reader
        )
        assert await conn.fetchval("SELECT count(*) FROM v_recent_activity") == 100
        assert await conn.fetchval(
            "SELECT count(*) FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid"
            " WHERE r.ev_class = 'v_recent_activity'::regclass"
            "   AND d.refobjid = 'activity_logs'::regclass"
        )
        # a new row lands in its month's partition
        where = await conn.fetchval(
            "INSERT INTO activity_logs (team_id, event_type, message, created_at)"
            " VALUES ($1, 'x', 'later', $2) RETURNING tableoid::regclass::text",
            team,
            first_of_month(-2),
        )
        assert where == f"activity_logs_{first_of_month(-2):%Y_%m}"
    finally:
        await conn.execute(f"DROP OWNED BY {reader}; DROP ROLE {reader}")
        await conn.close()


async def test_partitions_are_made_ahead_once_and_take_the_default_partitions_rows(
    pool: asyncpg.Pool,
) -> None:
    team = await make_team(pool, "Alpha")
    far = first_of_month(-9)
    await pool.execute(
        "INSERT INTO activity_logs (team_id, event_type, message, created_at)"
        " VALUES ($1, 'x', 'far ahead', $2)",
        team,
        far,
    )
    assert await pool.fetchval("SELECT count(*) FROM activity_logs_default") == 1
    made = await activity_upkeep.make_partitions(pool, 10)
    assert f"activity_logs_{far:%Y_%m}" in made
    assert await activity_upkeep.make_partitions(pool, 10) == []  # once
    assert await pool.fetchval("SELECT count(*) FROM activity_logs_default") == 0
    assert (
        await pool.fetchval(
            "SELECT tableoid::regclass::text FROM activity_logs WHERE message = $1", "far ahead"
        )
        == f"activity_logs_{far:%Y_%m}"
    )
    # the daemon's upkeep (what `c9-sync migrate` runs too): nothing to do, retention off
    done = await activity_upkeep.upkeep(pool, Settings(activity_partitions_ahead=10))
    assert (done.made, done.deleted, done.dropped) == ([], 0, 0)


async def test_retention_deletes_old_run_rows_and_item_events_only_when_asked(
    pool: asyncpg.Pool,
) -> None:
    team = await make_team(pool, "Alpha")
    old, recent = first_of_month(4), first_of_month(1)
    await pool.execute(
        "INSERT INTO activity_logs (team_id, event_type, message, created_at)"
        " SELECT $1, e, 'm', t FROM unnest($2::text[]) e CROSS JOIN unnest($3::timestamptz[]) t",
        team,
        ["sync_started", "sync_completed", "sync_failed", "work_item_created", "commit_created"],
        [old, recent],
    )

    async def kinds() -> set[tuple[str, bool]]:
        rows = await pool.fetch("SELECT event_type, created_at FROM activity_logs")
        return {(r["event_type"], r["created_at"] == old) for r in rows}

    # off by default
    await activity_upkeep.upkeep(pool, Settings())
    assert len(await kinds()) == 10
    # run rows older than 3 months go; item and agent events stay
    done = await activity_upkeep.upkeep(pool, Settings(activity_retention_months=3))
    assert done.deleted == 3
    assert {kind for kind, is_old in await kinds() if is_old} == {
        "work_item_created",
        "commit_created",
    }
    # asked for: item events too
    done = await activity_upkeep.upkeep(
        pool, Settings(activity_retention_months=3, activity_item_retention_months=3)
    )
    assert done.deleted == 2
    assert not [kind for kind, is_old in await kinds() if is_old]
    assert len(await kinds()) == 5  # this month's, every kind


async def test_retention_drops_a_monthly_partition_past_both_limits(pool: asyncpg.Pool) -> None:
    """Years after 0015 the old months are monthly partitions: past both limits, one goes
    whole (no row-by-row delete)."""
    team = await make_team(pool, "Alpha")
    await pool.execute("ALTER TABLE activity_logs DETACH PARTITION activity_logs_before_0015")
    old = first_of_month(8)
    name = f"activity_logs_{old:%Y_%m}"
    await pool.execute(
        f"CREATE TABLE {name} PARTITION OF activity_logs"
        f" FOR VALUES FROM ('{old:%Y-%m-%d}') TO ('{first_of_month(7):%Y-%m-%d}')"
    )
    await pool.execute(
        "INSERT INTO activity_logs (team_id, event_type, message, created_at)"
        " VALUES ($1, 'work_item_created', 'm', $2), ($1, 'sync_started', 'm', $2)",
        team,
        old,
    )
    # run rows only: the partition keeps its item event
    done = await activity_upkeep.upkeep(pool, Settings(activity_retention_months=6))
    assert (done.deleted, done.dropped) == (1, 0)
    assert name in await partitions(pool)
    done = await activity_upkeep.upkeep(
        pool, Settings(activity_retention_months=6, activity_item_retention_months=6)
    )
    assert done.dropped == 1
    assert name not in await partitions(pool)
    assert not await pool.fetchval("SELECT count(*) FROM activity_logs")


async def test_the_worker_role_keeps_partitions_and_retention_without_ddl_rights(
    db_url: str, pool: asyncpg.Pool
) -> None:
    """roles.sql's worker (no DDL, no DELETE on activity_logs) runs the upkeep through the two
    functions, and still cannot drop or delete anything itself."""
    roles_sql = (Path(__file__).parents[2] / "deploy" / "postgres" / "roles.sql").read_text()
    login = f"c9t_upkeep_{uuid.uuid4().hex[:10]}"
    await pool.execute(roles_sql)
    await pool.execute(f"CREATE ROLE {login} LOGIN PASSWORD 'pw' IN ROLE c9_sync_worker")
    team = await make_team(pool, "Alpha")
    await pool.execute(
        "INSERT INTO activity_logs (team_id, event_type, message, created_at)"
        " VALUES ($1, 'sync_completed', 'old', $2), ($1, 'x', 'far', $3)",
        team,
        first_of_month(6),
        first_of_month(-8),
    )
    parts = urlsplit(db_url)
    worker_url = urlunsplit(parts._replace(netloc=f"{login}:pw@{parts.netloc.rpartition('@')[2]}"))
    worker = await asyncpg.connect(worker_url)
    try:
        done = await activity_upkeep.upkeep(
            worker, Settings(activity_partitions_ahead=8, activity_retention_months=3)
        )
        assert f"activity_logs_{first_of_month(-8):%Y_%m}" in done.made
        assert done.deleted == 1  # the old run row
        assert await pool.fetchval("SELECT count(*) FROM activity_logs_default") == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await worker.execute("DELETE FROM activity_logs")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await worker.execute(f"DROP TABLE activity_logs_{first_of_month(-8):%Y_%m}")
    finally:
        await worker.close()
        await pool.execute(f"DROP ROLE {login}")

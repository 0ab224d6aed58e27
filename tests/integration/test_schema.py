"""The core schema (seed 004, reviewed): tables, constraints, indexes, trigger, views, NOTIFY."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from tests.helpers import make_agent, make_integration, make_team, make_work_item

SEED_TABLES = {"teams", "agents", "work_items", "integrations", "activity_logs", "metrics"}
SEED_CONSTRAINTS = {
    "teams_status_check",
    "teams_name_unique",
    "agents_status_check",
    "agents_team_name_unique",
    "work_items_status_check",
    "work_items_source_check",
    "work_items_source_id_unique",
    "integrations_type_check",
    # The seed's integrations_team_type_unique, widened by 0008 to (team_id, type, name)
    "integrations_team_type_name_unique",
    "metrics_team_date_unique",
}
# Every index of the seed except idx_work_items_external_id, which duplicated the UNIQUE
# (source, external_id) index column for column (see 0001's header), and idx_work_items_source,
# its leading column alone (0016).
SEED_INDEXES = {
    "idx_teams_status",
    "idx_teams_product",
    "idx_agents_team_id",
    "idx_agents_status",
    "idx_agents_last_activity",
    "idx_work_items_team_id",
    "idx_work_items_status",
    "idx_work_items_priority",
    "idx_work_items_assigned_at",
    "idx_work_items_external_data",
    "idx_integrations_team_id",
    "idx_integrations_type",
    "idx_integrations_is_active",
    "idx_integrations_config",
    "idx_activity_logs_team_id",
    "idx_activity_logs_agent_id",
    "idx_activity_logs_work_item_id",
    "idx_activity_logs_event_type",
    "idx_activity_logs_created_at",
    "idx_metrics_team_id",
    "idx_metrics_date",
}
SEED_TRIGGERS = {
    "update_teams_updated_at",
    "update_agents_updated_at",
    "update_work_items_updated_at",
    "update_integrations_updated_at",
}


async def test_every_seed_table_constraint_index_and_trigger_exists(
    conn: asyncpg.Connection,
) -> None:
    tables = {
        r[0]
        for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    assert SEED_TABLES <= tables
    constraints = {
        r[0]
        for r in await conn.fetch(
            "SELECT conname FROM pg_constraint WHERE connamespace = 'public'::regnamespace"
        )
    }
    assert SEED_CONSTRAINTS <= constraints
    indexes = {
        r[0]
        for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
    }
    assert SEED_INDEXES <= indexes
    # The dropped duplicate is still served by the unique constraint's own index.
    unique_def = await conn.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'work_items_source_id_unique'"
    )
    assert "(source, external_id)" in unique_def
    triggers = {
        r[0] for r in await conn.fetch("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
    }
    assert SEED_TRIGGERS <= triggers
    views = {
        r[0] for r in await conn.fetch("SELECT viewname FROM pg_views WHERE schemaname = 'public'")
    }
    assert {"v_active_teams", "v_team_work_queue"} <= views
    assert await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql'") == 0


@pytest.mark.parametrize(
    ("table", "sql"),
    [
        (
            "teams",
            "INSERT INTO teams (name, product, repo_path, status) VALUES ('t', 'p', '/r', 'bogus')",
        ),
        (
            "work_items",
            "INSERT INTO work_items (external_id, source, title, status) VALUES ('1', 'jira', 't', 'done')",
        ),
        (
            "work_items",
            "INSERT INTO work_items (external_id, source, title) VALUES ('1', 'trello', 't')",
        ),
        (
            "integrations",
            "INSERT INTO integrations (team_id, type, config) SELECT id, 'trello', '{}' FROM teams",
        ),
        (
            "integrations",
            "INSERT INTO integrations (team_id, type, config, sync_interval) SELECT id, 'jira', '{}', 0 FROM teams",
        ),
    ],
)
async def test_check_constraints_reject_bad_values(
    conn: asyncpg.Connection, table: str, sql: str
) -> None:
    await make_team(conn, "checks")
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(sql)


async def test_agent_status_is_checked(conn: asyncpg.Connection) -> None:
    team = await make_team(conn)
    with pytest.raises(asyncpg.CheckViolationError):
        await make_agent(conn, team, "a", status="sleeping")


async def test_source_and_external_id_are_unique(conn: asyncpg.Connection) -> None:
    team = await make_team(conn)
    await make_work_item(conn, team, "42", source="jira")
    await make_work_item(conn, team, "42", source="github")  # another tracker: fine
    with pytest.raises(asyncpg.UniqueViolationError):
        await make_work_item(conn, team, "42", source="jira")


async def test_trigger_bumps_updated_at_only_on_a_real_change(conn: asyncpg.Connection) -> None:
    team = await make_team(conn)
    item = await make_work_item(conn, team, "1")
    first = await conn.fetchval("SELECT updated_at FROM work_items WHERE id = $1", item)
    async with conn.transaction():  # a later transaction: CURRENT_TIMESTAMP moves on
        await conn.execute("UPDATE work_items SET title = title WHERE id = $1", item)
    unchanged = await conn.fetchval("SELECT updated_at FROM work_items WHERE id = $1", item)
    assert unchanged == first
    await asyncio.sleep(0.01)
    await conn.execute("UPDATE work_items SET title = 'new' WHERE id = $1", item)
    bumped = await conn.fetchval("SELECT updated_at FROM work_items WHERE id = $1", item)
    assert bumped > first


async def test_views_count_correctly_with_several_agents_and_items(
    conn: asyncpg.Connection,
) -> None:
    team = await make_team(conn, "Alpha")
    await make_agent(conn, team, "backend", status="working")
    await make_agent(conn, team, "frontend", status="idle")
    await make_work_item(conn, team, "1", status="queued", priority=1)
    await make_work_item(conn, team, "2", status="in_progress", priority=3)
    await make_work_item(conn, team, "3", status="completed")
    other = await make_team(conn, "Beta", status="stopped")
    await make_work_item(conn, other, "4", status="queued")

    rows = await conn.fetch("SELECT * FROM v_active_teams")
    assert len(rows) == 1  # stopped teams are not listed
    row = rows[0]
    assert (row["name"], row["agent_count"], row["active_agents"]) == ("Alpha", 2, 1)
    assert (row["queued_work_items"], row["in_progress_work_items"]) == (1, 1)

    queue = await conn.fetch("SELECT * FROM v_team_work_queue")
    # Completed items leave the queue; the rest by priority, highest first.
    assert [(r["team_name"], r["external_id"]) for r in queue] == [
        ("Alpha", "2"),
        ("Alpha", "1"),
        ("Beta", "4"),
    ]
    assert {r["status"] for r in queue} <= {"queued", "in_progress", "pr_ready"}


async def test_team_without_agents_or_items_shows_zeros(conn: asyncpg.Connection) -> None:
    await make_team(conn, "Empty")
    row = await conn.fetchrow("SELECT * FROM v_active_teams WHERE name = 'Empty'")
    assert row is not None
    assert (row["agent_count"], row["active_agents"], row["queued_work_items"]) == (0, 0, 0)


async def test_integration_changes_are_notified_without_config(
    db_url: str, conn: asyncpg.Connection
) -> None:
    from worker import db

    listener = await db.connect(db_url)
    got: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("c9_sync_integrations", lambda *args: got.put_nowait(args[3]))
    try:
        team = await make_team(conn)
        integration = await make_integration(conn, team, "github", {"token": "tok-SECRET-123"})
        payload = json.loads(await asyncio.wait_for(got.get(), 5))
        assert payload == {"op": "insert", "id": str(integration)}
        await conn.execute("UPDATE integrations SET last_sync = now() WHERE id = $1", integration)
        await conn.execute("UPDATE integrations SET is_active = false WHERE id = $1", integration)
        payload = json.loads(await asyncio.wait_for(got.get(), 5))
        assert payload["op"] == "update"  # the last_sync-only update did not notify
        await conn.execute("DELETE FROM integrations WHERE id = $1", integration)
        payload = json.loads(await asyncio.wait_for(got.get(), 5))
        assert payload == {"op": "delete", "id": str(integration)}
        assert got.empty()
    finally:
        await listener.close()


async def test_the_gin_on_external_data_is_path_ops_and_serves_containment(
    conn: asyncpg.Connection,
) -> None:
    """0016: the raw payload's GIN indexes paths to values (jsonb_path_ops), and a containment
    lookup still goes through it."""
    definition = await conn.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_work_items_external_data'"
    )
    assert "jsonb_path_ops" in definition
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_work_items_source'"
        )
        == 0
    )
    await conn.execute("SET enable_seqscan = off")
    try:
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                'EXPLAIN SELECT id FROM work_items WHERE external_data @> \'{"state": "open"}\''
            )
        )
    finally:
        await conn.execute("RESET enable_seqscan")
    assert "idx_work_items_external_data" in plan

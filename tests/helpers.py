"""Small factories for rows the tests need, and one forced run of an integration."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from connectors import registry
from connectors.base import Connector
from worker import sync
from worker.settings import Settings


async def make_team(
    conn: asyncpg.Connection | asyncpg.Pool, name: str | None = None, status: str = "active"
) -> uuid.UUID:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "INSERT INTO teams (name, product, repo_path, status) VALUES ($1, 'Product', '/repo', $2)"
        " RETURNING id",
        name or f"team-{uuid.uuid4().hex[:8]}",
        status,
    )


async def make_agent(
    conn: asyncpg.Connection | asyncpg.Pool, team_id: uuid.UUID, name: str, status: str = "idle"
) -> uuid.UUID:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "INSERT INTO agents (team_id, name, role, status) VALUES ($1, $2, 'Developer', $3)"
        " RETURNING id",
        team_id,
        name,
        status,
    )


async def make_work_item(
    conn: asyncpg.Connection | asyncpg.Pool,
    team_id: uuid.UUID | None,
    external_id: str,
    status: str = "queued",
    source: str = "manual",
    **columns: Any,
) -> uuid.UUID:
    row = {
        "team_id": team_id,
        "external_id": external_id,
        "source": source,
        "status": status,
        "title": f"item {external_id}",
        **columns,
    }
    placeholders = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    return await conn.fetchval(  # type: ignore[no-any-return]
        f"INSERT INTO work_items ({', '.join(row)}) VALUES ({placeholders}) RETURNING id",
        *row.values(),
    )


async def make_integration(
    conn: asyncpg.Connection | asyncpg.Pool,
    team_id: uuid.UUID,
    type_: str,
    config: Any,
    *,
    interval: int = 300,
    active: bool = True,
    name: str | None = None,
) -> uuid.UUID:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "INSERT INTO integrations (team_id, type, name, config, is_active, sync_interval)"
        " VALUES ($1, $2, $3, $4::jsonb, $5, $6) RETURNING id",
        team_id,
        type_,
        name,
        config,
        active,
        interval,
    )


async def forced_run(
    pool: asyncpg.Pool,
    integration: uuid.UUID,
    settings: Settings,
    connector: type[Connector] | None = None,
) -> sync.RunResult:
    """One run of the integration through the worker, whatever its interval. `connector`: the
    class to run instead of the one the registry loads for the integration's type."""
    return await sync.run_integration(
        pool,
        integration,
        settings,
        environ={},
        options=sync.RunOptions(force=True),
        loader=registry.load if connector is None else lambda source: connector,
    )


async def succeeded_run(
    pool: asyncpg.Pool,
    integration: uuid.UUID,
    settings: Settings,
    connector: type[Connector] | None = None,
) -> sync.RunResult:
    """`forced_run`, which must succeed."""
    result = await forced_run(pool, integration, settings, connector)
    assert result.outcome == "succeeded", result.reason
    return result


# Every run ended, from the activity log and the sync state (worker/runlog.py): a run that
# changed nothing writes no row of its own, so count each end row that is not a quiet row, the
# quiet runs every end row stands for, and those the state still counts. `ENDED_AS` the end
# events counted; quiet runs all succeeded, so they count in any selection with sync_completed.
RUNS_ENDED = """
SELECT (SELECT count(*) FILTER (WHERE event_type = ANY($1::text[]) AND NOT metadata ? 'quiet')
               + COALESCE(sum((metadata->>'quiet_runs')::int), 0)
        FROM activity_logs
        WHERE event_type IN ('sync_completed', 'sync_failed', 'sync_interrupted'))
     + (SELECT COALESCE(sum(quiet_runs), 0) FROM integration_sync_state)
"""
ENDED_AS = ["sync_completed", "sync_failed", "sync_interrupted"]


async def runs_ended(
    conn: asyncpg.Connection | asyncpg.Pool, events: list[str] | None = None
) -> int:
    """Runs ended, every one (`events`: only those ending so; quiet runs are successes)."""
    n: int = await conn.fetchval(RUNS_ENDED, events or ENDED_AS)
    return n


async def creations(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, int]:
    """How many times the activity log says each external id was first stored: its own
    `work_item_created` row, or its place in a first read's `work_items_imported` row."""
    rows = await conn.fetch(
        "SELECT id, count(*) AS n FROM ("
        "  SELECT metadata->>'external_id' AS id FROM activity_logs"
        "  WHERE event_type = 'work_item_created'"
        "  UNION ALL"
        "  SELECT jsonb_object_keys(metadata->'items') FROM activity_logs"
        "  WHERE event_type = 'work_items_imported') c"
        " GROUP BY 1"
    )
    return {r["id"]: r["n"] for r in rows}


async def imported_items(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, str]:
    """external id -> status, over every first read's `work_items_imported` row: each row's
    `count` is its items', and no item is in two rows."""
    out: dict[str, str] = {}
    for row in await conn.fetch(
        "SELECT metadata FROM activity_logs WHERE event_type = 'work_items_imported'"
    ):
        items = row["metadata"]["items"]
        assert row["metadata"]["count"] == len(items)
        assert not set(items) & set(out), f"imported twice: {set(items) & set(out)}"
        out.update(items)
    return out

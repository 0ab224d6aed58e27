"""Small factories for rows the tests need."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg


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

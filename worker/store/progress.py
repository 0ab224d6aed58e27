"""The progress of a run in progress, as `c9-sync status` reads it (0018)."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg


async def save(
    conn: asyncpg.Connection,
    integration_id: uuid.UUID,
    run_id: uuid.UUID,
    *,
    items: int,
    pages: int,
    scope: str,
    cursor_at: datetime | None,
) -> None:
    progress = {
        "run_id": str(run_id),
        "items": items,
        "pages": pages,
        "scope": scope,
        "cursor_at": cursor_at.isoformat() if cursor_at else None,
    }
    await conn.execute(
        "UPDATE integration_sync_state"
        " SET run_progress = $2::jsonb || jsonb_build_object('at', now())"
        " WHERE integration_id = $1",
        integration_id,
        progress,  # (the pool's jsonb codec encodes it)
    )

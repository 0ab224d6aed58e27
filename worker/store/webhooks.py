"""What the webhook listener keeps: the delivery ids it served (schema/0017), and its
`webhook_rejected` activity rows. Never a payload, never a secret."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg

from worker import sanitize

#: How long a delivery id is remembered (a replay after that requests one run more, no harm).
KEEP_DELIVERIES = timedelta(days=1)

_REMEMBER = """
INSERT INTO webhook_deliveries (integration_id, delivery_id) VALUES ($1, $2)
ON CONFLICT (integration_id, delivery_id) DO NOTHING
RETURNING true
"""

_FORGET = "DELETE FROM webhook_deliveries WHERE received_at < now() - $1::interval"

# One row per integration and reason a minute across replicas: a flood of bad deliveries must not
# fill activity_logs (the listener also skips the statement for a minute after writing one).
_REJECTED = """
INSERT INTO activity_logs (team_id, event_type, message, metadata)
SELECT $1, 'webhook_rejected', $2, $3::jsonb
WHERE NOT EXISTS (
    SELECT 1 FROM activity_logs a
    WHERE a.team_id = $1 AND a.created_at > now() - interval '1 minute'
      AND a.event_type = 'webhook_rejected'
      AND a.metadata->>'integration_id' = $3::jsonb->>'integration_id'
      AND a.metadata->>'reason' = $3::jsonb->>'reason'
)
"""


async def remember_delivery(
    conn: asyncpg.Connection | asyncpg.Pool, integration_id: uuid.UUID, delivery_id: str
) -> bool:
    """True the first time this delivery id is seen for this integration (any replica)."""
    first: bool | None = await conn.fetchval(_REMEMBER, integration_id, delivery_id)
    return bool(first)


async def forget_old_deliveries(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    await conn.execute(_FORGET, KEEP_DELIVERIES)


async def log_rejection(
    conn: asyncpg.Connection | asyncpg.Pool,
    team_id: uuid.UUID,
    message: str,
    metadata: dict[str, Any],
) -> None:
    await conn.execute(
        _REJECTED,
        team_id,
        sanitize.clean_text(message),
        sanitize.clean_json(metadata),
    )

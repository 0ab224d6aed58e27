"""The SQL of `work_item_history`: store the changes a tracker recorded (idempotently, on its own
change ids) and derive each item's start and completion times from them (schema 0011)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

_RECORD = """
INSERT INTO work_item_history AS h (
    work_item_id, change_id, field, changed_at, from_value, to_value, from_status, to_status,
    actor_name, actor_id)
SELECT w.id, t.change_id, t.field, t.changed_at, t.from_value, t.to_value, t.from_status,
       t.to_status, t.actor_name, t.actor_id
FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::text[],
            $8::text[], $9::text[], $10::text[], $11::text[])
     AS t(external_id, change_id, field, changed_at, from_value, to_value, from_status,
          to_status, actor_name, actor_id)
JOIN work_items w ON w.source = $1 AND w.external_id = t.external_id
ON CONFLICT (work_item_id, change_id, field) DO NOTHING
RETURNING h.work_item_id
"""

# started_at: the first move into in_progress or later, when the history reaches back to the
# item's creation (else an earlier move may be missing: the time stays as it was).
# completed_at: the last move into completed, while the item is completed (a reopened item has
# none). Only rows whose times change are written.
_DERIVE = """
WITH h AS (
    SELECT work_item_id,
           bool_or(from_value IS NULL) AS from_creation,
           min(changed_at) FILTER (WHERE to_status IN ('in_progress', 'pr_ready', 'completed'))
               AS first_start,
           max(changed_at) FILTER (WHERE to_status = 'completed') AS last_completion
    FROM work_item_history
    WHERE field = 'status' AND work_item_id = ANY($1::uuid[])
    GROUP BY work_item_id
),
want AS (
    SELECT w.id,
           CASE WHEN h.from_creation AND h.first_start IS NOT NULL THEN h.first_start
                ELSE w.started_at END AS started_at,
           CASE WHEN w.status = 'completed' THEN COALESCE(h.last_completion, w.completed_at)
           END AS completed_at,
           CASE WHEN (h.from_creation AND h.first_start IS NOT NULL)
                     OR (w.status = 'completed' AND h.last_completion IS NOT NULL)
                THEN 'history' ELSE w.time_basis END AS time_basis
    FROM work_items w JOIN h ON h.work_item_id = w.id
)
UPDATE work_items w
SET started_at = want.started_at, completed_at = want.completed_at,
    time_basis = want.time_basis
FROM want JOIN work_items old ON old.id = want.id
WHERE w.id = want.id
  AND (w.started_at, w.completed_at, w.time_basis)
      IS DISTINCT FROM (want.started_at, want.completed_at, want.time_basis)
RETURNING w.id, old.started_at AS old_started_at, w.started_at AS new_started_at,
          old.completed_at AS old_completed_at, w.completed_at AS new_completed_at
"""


async def record(
    conn: asyncpg.Connection, source: str, columns: dict[str, list[Any]]
) -> set[uuid.UUID]:
    """Store history entries (arrays from `sanitize.history_columns`) of items that exist; a
    change already stored is skipped. The ids of items that gained a row."""
    if not columns["change_id"]:
        return set()
    rows = await conn.fetch(_RECORD, source, *columns.values())
    return {r["work_item_id"] for r in rows}


async def derive_times(conn: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    """Re-derive `started_at`/`completed_at` of these items from their stored history; the rows
    whose times changed, with the times before and after."""
    if not ids:
        return []
    return await conn.fetch(_DERIVE, list(ids))

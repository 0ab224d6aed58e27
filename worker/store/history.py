"""The SQL of the trackers' history (schema 0011): store the changes a tracker recorded
(idempotently, on its own change ids; changes of an item not synced yet wait in
`history_orphans`), derive start and completion times from them, and keep the history phase's
progress (feed tokens, how far each feed has read, items whose history is pending)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

_ENTRIES = """
    SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
                         $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
                         $12::text[], $13::text[])
        AS t(external_id, change_id, field, changed_at, from_value, to_value, from_status,
             to_status, actor_name, actor_id, from_default, to_default)
"""

_RECORD = f"""
WITH entries AS ({_ENTRIES}),
stored AS (
    INSERT INTO work_item_history AS h (
        work_item_id, change_id, field, changed_at, from_value, to_value, from_status,
        to_status, actor_name, actor_id, from_default, to_default)
    SELECT w.id, t.change_id, t.field, t.changed_at, t.from_value, t.to_value, t.from_status,
           t.to_status, t.actor_name, t.actor_id, t.from_default, t.to_default
    FROM entries t
    -- one index lookup per entry (LATERAL … LIMIT: never a hash of every row of the source,
    -- which a first import's stale statistics would choose for every page)
    CROSS JOIN LATERAL (SELECT id FROM work_items
                        WHERE source = $1 AND external_id = t.external_id LIMIT 1) w
    ON CONFLICT (work_item_id, change_id, field) DO NOTHING
    RETURNING h.work_item_id
),
waiting AS (
    INSERT INTO history_orphans (
        integration_id, source, external_id, change_id, field, changed_at, from_value, to_value,
        from_status, to_status, actor_name, actor_id, from_default, to_default)
    SELECT $14, $1, t.external_id, t.change_id, t.field, t.changed_at, t.from_value, t.to_value,
           t.from_status, t.to_status, t.actor_name, t.actor_id, t.from_default, t.to_default
    FROM entries t
    WHERE $14::uuid IS NOT NULL
      AND (SELECT 1 FROM work_items w
           WHERE w.source = $1 AND w.external_id = t.external_id LIMIT 1) IS NULL
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT array_agg(DISTINCT work_item_id) FROM stored) AS gained,
       (SELECT count(*) FROM stored)::int AS stored,
       (SELECT count(*) FROM waiting)::int AS waiting
"""

# Changes read before their item was synced: into the history once the item is there ($1: source,
# $2: the external ids now synced); `stored` names the items that gained some. (Run with the
# page's other follow-ups in one statement: store.sync._AFTER_ROWS.)
ADOPT_CTES = """
moved AS (
    DELETE FROM history_orphans o
    USING work_items w
    WHERE o.source = $1 AND o.external_id = ANY($2::text[])
      AND w.source = o.source AND w.external_id = o.external_id
    RETURNING w.id AS work_item_id, o.*
),
stored AS (
    INSERT INTO work_item_history (
        work_item_id, change_id, field, changed_at, from_value, to_value, from_status,
        to_status, actor_name, actor_id, from_default, to_default)
    SELECT work_item_id, change_id, field, changed_at, from_value, to_value, from_status,
           to_status, actor_name, actor_id, from_default, to_default
    FROM moved
    ON CONFLICT (work_item_id, change_id, field) DO NOTHING
    RETURNING work_item_id
)
"""

# started_at: the first move into in_progress or later, when the history reaches back to the
# item's creation (else an earlier move may be missing: the time stays as it was).
# completed_at: the last move into completed, while the item is completed (a reopened item has
# none). Only rows whose times change are written. The items a history page read whole ($2/$3:
# source, external ids) lose their pending flag in the same write: one new version of a row a
# page, not one for its times and another for its flag.
_DERIVE = """
WITH h AS (
    SELECT i.id AS work_item_id, s.from_creation, s.first_start, s.last_completion
    FROM (SELECT DISTINCT id FROM unnest($1::uuid[]) AS u(id)) i
    -- each item's status rows through work_item_history_item_field_time (LATERAL: a first
    -- import's history table outgrows its statistics, and a scan of all of it a page is
    -- quadratic over the import)
    CROSS JOIN LATERAL (
        SELECT count(*) AS rows,
               bool_or(from_value IS NULL) AS from_creation,
               min(changed_at) FILTER (WHERE to_status IN ('in_progress', 'pr_ready', 'completed'))
                   AS first_start,
               max(changed_at) FILTER (WHERE to_status = 'completed') AS last_completion
        FROM work_item_history
        WHERE work_item_id = i.id AND field = 'status'
    ) s
    WHERE s.rows > 0
),
read AS (
    SELECT id FROM work_items
    WHERE source = $2 AND external_id = ANY($3::text[]) AND history_pending
),
want AS (
    SELECT w.id,
           CASE WHEN h.from_creation AND h.first_start IS NOT NULL THEN h.first_start
                ELSE w.started_at END AS started_at,
           CASE WHEN h.work_item_id IS NULL THEN w.completed_at
                WHEN w.status = 'completed' THEN COALESCE(h.last_completion, w.completed_at)
           END AS completed_at,
           CASE WHEN (h.from_creation AND h.first_start IS NOT NULL)
                     OR (w.status = 'completed' AND h.last_completion IS NOT NULL)
                THEN 'history' ELSE w.time_basis END AS time_basis,
           w.history_pending AND read.id IS NULL AS history_pending
    FROM (SELECT work_item_id AS id FROM h UNION SELECT id FROM read) x
    JOIN work_items w ON w.id = x.id
    LEFT JOIN h ON h.work_item_id = w.id
    LEFT JOIN read ON read.id = w.id
)
UPDATE work_items w
SET started_at = want.started_at, completed_at = want.completed_at,
    time_basis = want.time_basis, history_pending = want.history_pending
FROM want JOIN work_items old ON old.id = want.id
WHERE w.id = want.id
  AND (w.started_at, w.completed_at, w.time_basis, w.history_pending)
      IS DISTINCT FROM (want.started_at, want.completed_at, want.time_basis, want.history_pending)
RETURNING w.id, w.external_id, w.external_key, w.title, w.status,
          old.started_at AS old_started_at, w.started_at AS new_started_at,
          old.completed_at AS old_completed_at, w.completed_at AS new_completed_at,
          (old.started_at, old.completed_at, old.time_basis)
              IS DISTINCT FROM (w.started_at, w.completed_at, w.time_basis) AS times_changed
"""


@dataclass(frozen=True, slots=True)
class Recorded:
    gained: list[uuid.UUID]  # items that gained at least one row
    stored: int  # rows written
    waiting: int  # rows kept for items not synced yet


async def record(
    conn: asyncpg.Connection,
    source: str,
    columns: dict[str, list[Any]],
    orphans_of: uuid.UUID | None = None,
) -> Recorded:
    """Store history entries (arrays from `sanitize.history_columns`); a change already stored
    is skipped. With `orphans_of` (an integration), entries of items not synced yet wait for
    them; without, they are dropped (the page's own items always exist)."""
    if not columns["change_id"]:
        return Recorded([], 0, 0)
    row = await conn.fetchrow(_RECORD, source, *columns.values(), orphans_of)
    return Recorded(list(row["gained"] or []), row["stored"], row["waiting"])


async def derive_times(
    conn: asyncpg.Connection,
    ids: Sequence[uuid.UUID],
    source: str = "",
    read: Sequence[str] = (),
) -> list[asyncpg.Record]:
    """Re-derive `started_at`/`completed_at` of these items from their stored history, and clear
    the pending flag of the items of `source` whose history was `read` whole, in one write of
    each row; the rows whose times changed, with the times before and after. Inside the
    caller's transaction."""
    if not ids and not read:
        return []
    # Prepared for this call (not the connection's statement cache): planned on the tables as
    # they are now. Its best plan follows work_items' size, which a first import grows from
    # nothing on one connection; a plan cached on its first page scanned every row three times
    # a page by the last (10,000 Jira issues: 5 -> 18.5 ms a page).
    derive = await conn.prepare(_DERIVE)
    rows = await derive.fetch(list(ids), source, list(read))
    return [r for r in rows if r["times_changed"]]


# ---------------------------------------------------------------------------------------------
# Remap: status rows mapped again through a new status_map (their defaults, 0014)
# ---------------------------------------------------------------------------------------------
_STATUS_NAMES = """
SELECT x.name, count(*) FILTER (WHERE x.default_status IS NULL AND x.status IS NOT NULL)::int
           AS unknown
FROM (SELECT h.from_value, h.from_default, h.from_status, h.to_value, h.to_default, h.to_status
      FROM work_item_history h JOIN work_items w ON w.id = h.work_item_id
      WHERE w.integration_id = $1 AND h.field = 'status'
      UNION ALL
      SELECT from_value, from_default, from_status, to_value, to_default, to_status
      FROM history_orphans WHERE integration_id = $1 AND field = 'status') r
CROSS JOIN LATERAL (VALUES (r.from_value, r.from_default, r.from_status),
                           (r.to_value, r.to_default, r.to_status))
    AS x(name, default_status, status)
WHERE x.name IS NOT NULL
GROUP BY x.name
"""

# A name the new map names takes its status; any other its default; a row without a default
# (the map in force when it was read named it) keeps its status.
_NEW = (
    "COALESCE((SELECT m.status FROM m WHERE m.name = {p}.{c}_value),"
    " {p}.{c}_default, {p}.{c}_status)"
)
_REMAP_ROWS = f"""
WITH m AS (SELECT * FROM unnest($2::text[], $3::text[]) AS m(name, status)),
rows AS (
    UPDATE work_item_history h
    SET from_status = {_NEW.format(p="h", c="from")},
        to_status = {_NEW.format(p="h", c="to")}
    FROM work_items w
    WHERE w.id = h.work_item_id AND w.integration_id = $1 AND h.field = 'status'
      AND (h.from_status, h.to_status) IS DISTINCT FROM (
          {_NEW.format(p="h", c="from")},
          {_NEW.format(p="h", c="to")})
    RETURNING h.work_item_id
),
waiting AS (
    UPDATE history_orphans o
    SET from_status = {_NEW.format(p="o", c="from")},
        to_status = {_NEW.format(p="o", c="to")}
    WHERE o.integration_id = $1 AND o.field = 'status'
      AND (o.from_status, o.to_status) IS DISTINCT FROM (
          {_NEW.format(p="o", c="from")},
          {_NEW.format(p="o", c="to")})
    RETURNING 1
)
SELECT (SELECT count(*) FROM rows)::int AS changed, (SELECT count(*) FROM waiting)::int AS waiting,
       (SELECT array_agg(DISTINCT work_item_id) FROM rows) AS items
"""  # every value is a parameter


async def status_names(conn: asyncpg.Connection, integration_id: uuid.UUID) -> dict[str, int]:
    """Each status name in the integration's history (orphans too) -> rows of it with no
    default."""
    rows = await conn.fetch(_STATUS_NAMES, integration_id)
    return {r["name"]: r["unknown"] for r in rows}


@dataclass(frozen=True, slots=True)
class StatusRemap:
    changed: int  # history rows whose statuses changed
    waiting: int  # rows of items not synced yet that changed
    items: list[uuid.UUID]  # items whose history changed


async def remap_statuses(
    conn: asyncpg.Connection, integration_id: uuid.UUID, named: Mapping[str, str]
) -> StatusRemap:
    """Map the integration's status rows again: `named` (name as stored -> status) for the
    names the new status_map names, the row's default for the others. Only rows that change
    are written."""
    row = await conn.fetchrow(
        _REMAP_ROWS, integration_id, list(named), [str(s) for s in named.values()]
    )
    return StatusRemap(row["changed"], row["waiting"], list(row["items"] or []))


# ---------------------------------------------------------------------------------------------
# The history phase's progress
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Progress:
    cursor: dict[str, str]  # feed scope -> resume token
    through: dict[str, datetime]  # feed scope -> read up to this upstream time
    newest: dict[str, datetime]  # scope -> newest source_updated_at held


# The newest change integration $1 holds in one scope (`{}`: the expression naming it): one probe
# of work_items_scope_changed (0019), however many rows the scope holds.
_NEWEST_IN = (
    "(SELECT max(source_updated_at) FROM work_items"
    " WHERE integration_id = $1 AND sync_scope = {} AND out_of_scope_at IS NULL)"
)


async def progress(
    conn: asyncpg.Connection, integration_id: uuid.UUID, feed_scopes: Sequence[str]
) -> Progress:
    """The feeds' tokens and read-through times, and the newest change held in each of
    `feed_scopes` (only those: the other scopes' items need not be looked at)."""
    row = await conn.fetchrow(
        "SELECT s.history_cursor, s.history_through, ARRAY("
        f"  SELECT {_NEWEST_IN.format('u.sc')}"
        "  FROM unnest($2::text[]) WITH ORDINALITY AS u(sc, n) ORDER BY u.n) AS newest"
        " FROM (SELECT 1) one"
        " LEFT JOIN integration_sync_state s ON s.integration_id = $1",
        integration_id,
        list(feed_scopes),
    )
    cursor = _json(row["history_cursor"])
    through = _json(row["history_through"])
    return Progress(
        {str(k): str(v) for k, v in cursor.items()},
        {str(k): datetime.fromisoformat(str(v)) for k, v in through.items()},
        {scope: at for scope, at in zip(feed_scopes, row["newest"], strict=True) if at is not None},
    )


async def save_progress(
    conn: asyncpg.Connection,
    integration_id: uuid.UUID,
    cursor: Mapping[str, str],
    through: Mapping[str, datetime],
) -> None:
    """Merge a committed page's feed tokens and read-through times into the state."""
    if not cursor and not through:
        return
    await conn.execute(
        "INSERT INTO integration_sync_state (integration_id, history_cursor, history_through)"
        " VALUES ($1, $2::jsonb, $3::jsonb)"
        " ON CONFLICT (integration_id) DO UPDATE"
        " SET history_cursor = integration_sync_state.history_cursor || EXCLUDED.history_cursor,"
        "     history_through = integration_sync_state.history_through"
        "                       || EXCLUDED.history_through",
        integration_id,
        dict(cursor),
        {k: v.isoformat() for k, v in through.items()},
    )


async def pending(conn: asyncpg.Connection, integration_id: uuid.UUID, limit: int) -> list[str]:
    """Items whose history is to be read by id, oldest change first."""
    rows = await conn.fetch(
        "SELECT external_id FROM work_items"
        " WHERE integration_id = $1 AND history_pending"
        "   AND removed_upstream_at IS NULL AND out_of_scope_at IS NULL"
        " ORDER BY source_updated_at, external_id LIMIT $2",
        integration_id,
        limit,
    )
    return [r["external_id"] for r in rows]


async def backlog(
    conn: asyncpg.Connection,
    integration_id: uuid.UUID,
    feed_scopes: Sequence[str],
    *,
    save: bool = False,
) -> int:
    """Items whose history is not read yet: pending ones, and those changed after their feed's
    read-through time (`feed_scopes`). `save`: stored in the state too (`status`), in the same
    statement, written only when it changed."""
    # The pending ones through their partial index, plus per feed scope the others changed
    # after its read-through time, counted only when the scope's newest change (one probe of
    # work_items_scope_changed, 0019) is after it: an integration whose history is read through
    # costs a probe per scope, not a read of its rows.
    count = (
        "(SELECT count(*) FROM work_items WHERE integration_id = $1 AND history_pending"
        "   AND removed_upstream_at IS NULL AND out_of_scope_at IS NULL)"
        " + coalesce((SELECT sum(CASE WHEN t.through IS NULL OR t.newest > t.through THEN ("
        "      SELECT count(*) FROM work_items w WHERE w.integration_id = $1"
        "        AND w.sync_scope = t.sc AND w.out_of_scope_at IS NULL"
        "        AND NOT w.history_pending AND w.removed_upstream_at IS NULL"
        "        AND (t.through IS NULL OR w.source_updated_at > t.through)) ELSE 0 END)"
        "    FROM (SELECT sc,"
        "            (SELECT (history_through ->> sc)::timestamptz FROM integration_sync_state"
        "             WHERE integration_id = $1) AS through,"
        f"           {_NEWEST_IN.format('sc')} AS newest"
        "          FROM unnest($2::text[]) sc) t), 0)"
    )
    if save:
        # (an UPDATE, not an upsert: a run's state row exists from its start, and ON CONFLICT
        # would lock the row even when the count has not changed, a write for nothing)
        query = (
            f"WITH counted AS (SELECT ({count})::int AS n),"
            " saved AS (UPDATE integration_sync_state s SET history_backlog = c.n"
            "   FROM counted c WHERE s.integration_id = $1"
            "   AND s.history_backlog IS DISTINCT FROM c.n)"
            " SELECT n FROM counted"
        )
    else:
        query = f"SELECT ({count})::int"
    found: int = await conn.fetchval(query, integration_id, list(feed_scopes))
    return found


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value or {})


async def backlogs(conn: asyncpg.Connection) -> dict[uuid.UUID, int]:
    """Every integration's counted backlog (those never counted are left out)."""
    rows = await conn.fetch(
        "SELECT integration_id, history_backlog FROM integration_sync_state"
        " WHERE history_backlog IS NOT NULL"
    )
    return {r["integration_id"]: r["history_backlog"] for r in rows}

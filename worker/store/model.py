"""The SQL of the richer model (schema 0012): parents linked whichever side arrives first, and
sprint membership kept with when it began and ended."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from connectors.base import Sprint

# Children synced before these items (their parents, $2: external ids of source $1) point at them
# now. Only children still waiting (work_items_waiting_parent): one synced with its parent present
# got it from the upsert, and a deleted parent set its children's link NULL. (Run with the page's
# other follow-ups in one statement: store.sync._AFTER_ROWS.)
LINK_CHILDREN = """
UPDATE work_items c SET parent_id = p.id
FROM work_items p
WHERE p.source = $1 AND p.external_id = ANY($2::text[])
  AND c.source = p.source AND c.parent_external_id = p.external_id
  AND c.id <> p.id AND c.parent_id IS NULL
"""


_SPRINTS = """
INSERT INTO sprints AS s (source, external_id, integration_id, team_id, name, state, starts_at,
                          ends_at)
SELECT $1, t.external_id, $2, $3, t.name, t.state, t.starts_at, t.ends_at
FROM unnest($4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::timestamptz[])
     AS t(external_id, name, state, starts_at, ends_at)
ON CONFLICT (source, external_id) DO UPDATE SET
    name = EXCLUDED.name, state = EXCLUDED.state, starts_at = EXCLUDED.starts_at,
    ends_at = EXCLUDED.ends_at, integration_id = EXCLUDED.integration_id,
    team_id = EXCLUDED.team_id, updated_at = now()
WHERE (s.name, s.state, s.starts_at, s.ends_at, s.integration_id, s.team_id)
      IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.state, EXCLUDED.starts_at, EXCLUDED.ends_at,
                        EXCLUDED.integration_id, EXCLUDED.team_id)
"""

# The written items' memberships become exactly the page's: new ones begin, ones no longer
# named end (kept, with removed_at), ones named again begin again.
_MEMBERSHIP = """
WITH items AS (
    SELECT id, external_id FROM work_items WHERE source = $1 AND external_id = ANY($2::text[])
),
wanted AS (
    SELECT i.id AS work_item_id, s.id AS sprint_id
    FROM unnest($3::text[], $4::text[]) AS p(item, sprint)
    JOIN items i ON i.external_id = p.item
    JOIN sprints s ON s.source = $1 AND s.external_id = p.sprint
),
began AS (
    INSERT INTO work_item_sprints AS ws (work_item_id, sprint_id)
    SELECT work_item_id, sprint_id FROM wanted
    ON CONFLICT (work_item_id, sprint_id) DO UPDATE SET removed_at = NULL, added_at = now()
    WHERE ws.removed_at IS NOT NULL
    RETURNING 1
),
ended AS (
    UPDATE work_item_sprints ws SET removed_at = now()
    FROM items
    WHERE ws.work_item_id = items.id AND ws.removed_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM wanted w
                      WHERE w.work_item_id = ws.work_item_id AND w.sprint_id = ws.sprint_id)
    RETURNING 1
)
SELECT (SELECT count(*) FROM began)::int AS began, (SELECT count(*) FROM ended)::int AS ended
"""


async def set_sprints(
    conn: asyncpg.Connection,
    *,
    source: str,
    team_id: uuid.UUID,
    integration_id: uuid.UUID,
    items: Sequence[str],
    pairs: Sequence[tuple[str, Sprint]],
) -> tuple[int, int]:
    """Store the sprints the page names and make the written items' memberships the page's.
    (memberships begun, ended)."""
    if not items:
        return 0, 0
    sprints = {s.external_id: s for _, s in pairs}
    if sprints:
        await conn.execute(
            _SPRINTS,
            source,
            integration_id,
            team_id,
            list(sprints),
            [s.name for s in sprints.values()],
            [s.state for s in sprints.values()],
            [s.starts_at for s in sprints.values()],
            [s.ends_at for s in sprints.values()],
        )
    row = await conn.fetchrow(
        _MEMBERSHIP,
        source,
        list(items),
        [x for x, _ in pairs],
        [s.external_id for _, s in pairs],
    )
    return row["began"], row["ended"]

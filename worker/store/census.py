"""The census's SQL: what an integration holds per scope next to what its tracker lists, and the
stored result (`integration_census`, schema/0007)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True, slots=True)
class ScopeCensus:
    scope: str
    upstream: int  # ids the tracker listed
    held: int  # this integration's present rows of the scope
    removed: int  # its rows of the scope marked removed upstream
    missing: int  # listed ids with no present row at all
    lost: str | None = None  # why the credential cannot read the scope any more
    checked_at: datetime | None = None


_COUNT = """
WITH listed AS (
    SELECT DISTINCT s AS scope, i AS external_id
    FROM unnest($3::text[], $4::text[]) AS t(s, i)
),
scopes AS (SELECT DISTINCT s AS scope FROM unnest($5::text[]) AS t(s))
SELECT sc.scope,
       (SELECT count(*) FROM listed l WHERE l.scope = sc.scope)::int AS upstream,
       (SELECT count(*) FROM work_items w
         WHERE w.integration_id = $1 AND w.sync_scope = sc.scope
           AND w.removed_upstream_at IS NULL AND w.out_of_scope_at IS NULL)::int AS held,
       (SELECT count(*) FROM work_items w
         WHERE w.integration_id = $1 AND w.sync_scope = sc.scope
           AND w.removed_upstream_at IS NOT NULL)::int AS removed,
       (SELECT count(*) FROM listed l
         WHERE l.scope = sc.scope
           AND NOT EXISTS (SELECT 1 FROM work_items w
                           WHERE w.source = $2 AND w.external_id = l.external_id
                             AND w.removed_upstream_at IS NULL
                             AND w.out_of_scope_at IS NULL))::int AS missing
FROM scopes sc
ORDER BY sc.scope
"""


async def count(
    conn: asyncpg.Connection,
    integration_id: uuid.UUID,
    source: str,
    listing: Mapping[str, Sequence[str]],
) -> list[ScopeCensus]:
    """Per listed scope: upstream, held, removed and missing (by the rows as they are now)."""
    scopes = [s for s, ids in listing.items() for _ in ids]
    ids = [i for _, listed in listing.items() for i in listed]
    rows = await conn.fetch(_COUNT, integration_id, source, scopes, ids, list(listing))
    return [ScopeCensus(**dict(r)) for r in rows]


async def save(
    conn: asyncpg.Connection, integration_id: uuid.UUID, result: Sequence[ScopeCensus]
) -> None:
    """Replace the integration's census (scopes not in `result` are dropped)."""
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM integration_census WHERE integration_id = $1", integration_id
        )
        await conn.execute(
            "INSERT INTO integration_census"
            "       (integration_id, scope, upstream, held, removed, missing, lost)"
            " SELECT $1, * FROM unnest($2::text[], $3::int[], $4::int[], $5::int[], $6::int[],"
            "                          $7::text[])",
            integration_id,
            [c.scope for c in result],
            [c.upstream for c in result],
            [c.held for c in result],
            [c.removed for c in result],
            [c.missing for c in result],
            [c.lost for c in result],
        )


async def latest(
    conn: asyncpg.Connection | asyncpg.Pool, integration_id: uuid.UUID | None = None
) -> dict[uuid.UUID, list[ScopeCensus]]:
    """The stored census of one integration or of all, by integration."""
    rows = await conn.fetch(
        "SELECT integration_id, scope, upstream, held, removed, missing, lost, checked_at"
        " FROM integration_census WHERE $1::uuid IS NULL OR integration_id = $1"
        " ORDER BY integration_id, scope",
        integration_id,
    )
    out: dict[uuid.UUID, list[ScopeCensus]] = {}
    for r in rows:
        values = dict(r)
        out.setdefault(values.pop("integration_id"), []).append(ScopeCensus(**values))
    return out

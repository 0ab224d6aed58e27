"""Integrations and teams: as the sync run, the scheduler, admins, `status` and the demo see them.

`config` is selected only where a connector is built from it (`get_integration`,
`list_integrations`, `find`); the overview shown to people never selects it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from worker.store import notify

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True, slots=True)
class Integration:
    id: uuid.UUID
    team_id: uuid.UUID
    team_name: str
    type: str
    name: str  # unique per team and type (schema/0008); the type when none was given
    config: Any  # raw JSON as stored; validated by the connector's model
    is_active: bool
    sync_interval: int
    last_sync: datetime | None
    updated_at: datetime
    config_digest: str  # md5 of the config's JSON text: a changed config makes a run due
    siblings: int = 1  # the team's integrations of this type, this one included, up to 2

    @property
    def label(self) -> str:
        """TEAM/TYPE, or TEAM/TYPE/NAME when the team has several of this type: always a
        target the CLI resolves to this integration."""
        return label(self.team_name, self.type, self.name, self.siblings)


def label(team: str, type_: str, name: str | None, siblings: int) -> str:
    return f"{team}/{type_}" if siblings <= 1 or name is None else f"{team}/{type_}/{name}"


# Whether the team has another integration of this type (`label`): counted up to 2, so that a
# run's start does not count a team's thousands of integrations (a seq scan of them, every run).
SIBLINGS = """(SELECT count(*) FROM (SELECT FROM integrations o
                                  WHERE o.team_id = i.team_id AND o.type = i.type
                                  LIMIT 2) AS two)::int AS siblings"""

_SELECT = f"""
SELECT i.id, i.team_id, t.name AS team_name, i.type, i.name, i.config, i.is_active,
       i.sync_interval, i.last_sync, i.updated_at, md5(i.config::text) AS config_digest,
       {SIBLINGS}
FROM integrations i JOIN teams t ON t.id = i.team_id
"""  # (SIBLINGS is this module's constant)


async def get_integration(conn: Conn, integration_id: uuid.UUID) -> Integration | None:
    row = await conn.fetchrow(_SELECT + " WHERE i.id = $1", integration_id)
    return Integration(**dict(row)) if row else None


async def find(conn: Conn, ref: str) -> list[Integration]:
    """The integrations a TEAM/TYPE/NAME or TEAM/TYPE target names (compared whole, so team
    and integration names may contain slashes): one, several (TEAM/TYPE when the team has more
    than one of that type) or none. Exact TEAM/TYPE/NAME matches come first."""
    rows = await conn.fetch(
        _SELECT + " WHERE t.name || '/' || i.type || '/' || i.name = $1"
        "    OR t.name || '/' || i.type = $1"
        " ORDER BY (t.name || '/' || i.type || '/' || i.name = $1) DESC, i.name, i.id",
        ref,
    )
    return [Integration(**dict(r)) for r in rows]


async def find_named(conn: Conn, team_name: str, type_: str, name: str) -> Integration | None:
    """A team's integration of one type and name (unique per the schema)."""
    row = await conn.fetchrow(
        _SELECT + " WHERE t.name = $1 AND i.type = $2 AND i.name = $3", team_name, type_, name
    )
    return Integration(**dict(row)) if row else None


async def list_integrations(
    conn: Conn,
    *,
    active_only: bool = True,
    integration_id: uuid.UUID | None = None,
    team_name: str | None = None,
) -> list[Integration]:
    rows = await conn.fetch(
        _SELECT + " WHERE ($1::bool IS FALSE OR i.is_active)"
        "   AND ($2::uuid IS NULL OR i.id = $2)"
        "   AND ($3::text IS NULL OR t.name = $3)"
        " ORDER BY t.name, i.type, i.name",
        active_only,
        integration_id,
        team_name,
    )
    return [Integration(**dict(r)) for r in rows]


async def count_active(conn: Conn) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM integrations WHERE is_active")
    return count


# ---------------------------------------------------------------------------------------------
# The scheduler's view
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """What the scheduler needs to know about one active integration."""

    id: uuid.UUID
    type: str
    sync_interval: int
    config_digest: str
    last_success_at: datetime | None
    next_attempt_at: datetime | None


async def schedule_rows(conn: Conn) -> list[ScheduleRow]:
    rows = await conn.fetch(
        "SELECT i.id, i.type, i.sync_interval, md5(i.config::text) AS config_digest,"
        "       COALESCE(s.last_success_at, i.last_sync) AS last_success_at, s.next_attempt_at"
        " FROM integrations i LEFT JOIN integration_sync_state s ON s.integration_id = i.id"
        " WHERE i.is_active"
    )
    return [ScheduleRow(**dict(r)) for r in rows]


# ---------------------------------------------------------------------------------------------
# Health: `status` and `integrations list` (never `config`)
# ---------------------------------------------------------------------------------------------
_OVERVIEW = f"""
SELECT i.id, t.name AS team, i.type, i.name, i.is_active, i.sync_interval,
       COALESCE(s.last_success_at, i.last_sync) AS last_success_at,
       s.last_started_at, s.last_error_at, s.last_error_class, s.last_error,
       COALESCE(s.consecutive_failures, 0) AS consecutive_failures,
       s.next_attempt_at, s.last_duration_s,
       {notify.RUN_LOCK_HELD} AS running,
       CASE WHEN s.run_progress->>'run_id' = s.last_run_id::text THEN s.run_progress END
           AS run_progress,
       now() AS now
FROM integrations i
JOIN teams t ON t.id = i.team_id
LEFT JOIN integration_sync_state s ON s.integration_id = i.id
WHERE ($2::uuid IS NULL OR i.id = $2)
ORDER BY t.name, i.type, i.name
"""  # RUN_LOCK_HELD is this package's constant; every value is a parameter


async def overview_rows(
    conn: Conn, integration_id: uuid.UUID | None = None
) -> list[asyncpg.Record]:
    """One row per integration with its run state and whether a run holds its lock right now."""
    return await conn.fetch(_OVERVIEW, notify.INTEGRATION_LOCK_NAMESPACE, integration_id)


# ---------------------------------------------------------------------------------------------
# Admin writes
# ---------------------------------------------------------------------------------------------
async def team_id(conn: Conn, name: str) -> uuid.UUID | None:
    found: uuid.UUID | None = await conn.fetchval("SELECT id FROM teams WHERE name = $1", name)
    return found


async def insert_team(
    conn: Conn, name: str, *, product: str, repo_path: str, status: str, reactivate: bool
) -> uuid.UUID:
    """Create a team, or return the existing one of that name (its status set to `status` only
    when `reactivate`: the demo re-activates its team, an admin's race leaves it alone)."""
    new_id: uuid.UUID = await conn.fetchval(
        "INSERT INTO teams (name, product, repo_path, status) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (name) DO UPDATE"
        " SET status = CASE WHEN $5 THEN EXCLUDED.status ELSE teams.status END"
        " RETURNING id",
        name,
        product,
        repo_path,
        status,
        reactivate,
    )
    return new_id


async def insert_integration(
    conn: Conn,
    *,
    integration_id: uuid.UUID,
    team_id: uuid.UUID,
    type_: str,
    name: str,
    config: Any,
    active: bool,
    interval: int,
    replace: bool,
) -> uuid.UUID | None:
    """Insert a team's integration of a type and name. When the team already has one of that
    type and name: with `replace`, its config and activity are replaced (the demo re-points its
    rows) and its id returned; without, nothing changes and None is returned."""
    written: uuid.UUID | None = await conn.fetchval(
        "INSERT INTO integrations (id, team_id, type, name, config, is_active, sync_interval)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)"
        " ON CONFLICT (team_id, type, name) DO UPDATE"
        " SET config = EXCLUDED.config, is_active = EXCLUDED.is_active WHERE $8"
        " RETURNING id",
        integration_id,
        team_id,
        type_,
        name,
        config,
        active,
        interval,
        replace,
    )
    return written


async def set_active(conn: Conn, integration_ids: list[uuid.UUID], active: bool) -> None:
    await conn.execute(
        "UPDATE integrations SET is_active = $2 WHERE id = ANY($1::uuid[])",
        integration_ids,
        active,
    )


async def set_interval(conn: Conn, integration_id: uuid.UUID, seconds: int) -> None:
    await conn.execute(
        "UPDATE integrations SET sync_interval = $2 WHERE id = $1", integration_id, seconds
    )


async def clear_backoff(conn: Conn, integration_id: uuid.UUID) -> None:
    """An admin asking for a run now wants it now: no backoff wait. `consecutive_failures` stays,
    so `status` still shows the history."""
    await conn.execute(
        "UPDATE integration_sync_state SET next_attempt_at = NULL WHERE integration_id = $1",
        integration_id,
    )


async def delete(conn: Conn, integration_id: uuid.UUID) -> int:
    """Delete the row; its work items and activity stay. Returns how many work items it had."""
    items: int = await conn.fetchval(
        "SELECT count(*) FROM work_items WHERE integration_id = $1", integration_id
    )
    await conn.execute("DELETE FROM integrations WHERE id = $1", integration_id)
    return items


# ---------------------------------------------------------------------------------------------
# The demo's agents (the seed's example rows)
# ---------------------------------------------------------------------------------------------
async def seed_demo_agents(conn: Conn, team_id: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO agents (team_id, name, role, goal, status) VALUES"
        " ($1, 'backend_agent', 'Backend Developer', 'Build robust APIs and backend services',"
        "  'idle'),"
        " ($1, 'frontend_agent', 'Frontend Developer', 'Create responsive user interfaces',"
        "  'idle')"
        " ON CONFLICT (team_id, name) DO NOTHING",
        team_id,
    )

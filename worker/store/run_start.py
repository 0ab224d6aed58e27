"""The start of a run in as few round trips as it takes: the integration's lock, its row, its
run state and the database's clock in one statement; the start recorded only if no other run
has started since.

The row and the state are read in the statement's snapshot, taken just before the lock: a run
of another replica that both started and released the lock inside that instant is not seen
there, so the start is recorded only when the state's `last_run_id` is still the one read
(`record_start`); otherwise the run is skipped, as it would have been on a fresh read.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime

import asyncpg

from worker.store import notify
from worker.store.integrations import SIBLINGS, Integration
from worker.store.sync import SyncState, state_from_row

# The run's statements on this connection use generic plans from here on (until the pool's
# reset as the connection goes back, RESET ALL): the statements are the same every run with
# other values, and planning each anew cost more than running it when nothing changed
# (PostgreSQL CPU of a no-op run 2.1-2.6 -> 1.5-1.7 ms). None of them filters on whether a
# parameter is null, where a generic plan would scan.
_LOCK_AND_READ = f"""
SELECT set_config('plan_cache_mode', 'force_generic_plan', false) AS plans,
       pg_try_advisory_lock($1, hashtext($2::uuid::text)) AS locked, now() AS db_now,
       i.id, i.team_id, t.name AS team_name, i.type, i.name, i.config, i.is_active,
       i.sync_interval, i.last_sync, i.updated_at, md5(i.config::text) AS config_digest,
       {SIBLINGS},
       s.cursor AS s_cursor, s.last_started_at AS s_last_started_at,
       s.last_success_at AS s_last_success_at, s.last_error_at AS s_last_error_at,
       s.consecutive_failures AS s_consecutive_failures,
       s.next_attempt_at AS s_next_attempt_at, s.runs_since_sweep AS s_runs_since_sweep,
       s.config_digest AS s_config_digest, s.mapping_context AS s_mapping_context,
       s.rows_mapped_with AS s_rows_mapped_with, s.scopes_read AS s_scopes_read, s.last_run_id
FROM (SELECT) AS one
LEFT JOIN (integrations i JOIN teams t ON t.id = i.team_id) ON i.id = $2
LEFT JOIN integration_sync_state s ON s.integration_id = $2
"""  # (SIBLINGS is a constant)

_RECORD_START = """
INSERT INTO integration_sync_state (integration_id, last_run_id, last_started_at, config_digest)
VALUES ($1, $2, now(), $3)
ON CONFLICT (integration_id) DO UPDATE
SET last_run_id = EXCLUDED.last_run_id, last_started_at = EXCLUDED.last_started_at,
    config_digest = EXCLUDED.config_digest
WHERE integration_sync_state.last_run_id IS NOT DISTINCT FROM $4
RETURNING last_started_at
"""

_INTEGRATION = tuple(f.name for f in fields(Integration))  # the statement selects each


@dataclass(frozen=True, slots=True)
class Start:
    locked: bool  # the integration's lock is now held on the connection
    db_now: datetime
    integration: Integration | None  # None: deleted
    state: SyncState
    last_run_id: uuid.UUID | None  # of the state read: `record_start` checks it is still so


async def lock_and_read(conn: asyncpg.Connection, integration_id: uuid.UUID) -> Start:
    """Try the integration's session lock (see `notify.try_lock_integration`) and read what the
    due-check needs, in one round trip. The row and state are meaningful only when locked."""
    row = await conn.fetchrow(_LOCK_AND_READ, notify.INTEGRATION_LOCK_NAMESPACE, integration_id)
    assert row is not None  # (SELECT) yields one row
    integration = None
    if row["id"] is not None:
        integration = Integration(**{key: row[key] for key in _INTEGRATION})
    # (the state's columns are prefixed: the integration's row has a config_digest too)
    state = state_from_row(row, prefix="s_")
    return Start(row["locked"], row["db_now"], integration, state, row["last_run_id"])


async def record_start(
    conn: asyncpg.Connection, start: Start, run_id: uuid.UUID, config_digest: str
) -> datetime | None:
    """Record the run's start (its id, the time, the config it reads) and return that time;
    None, recording nothing, when another run has started since `start` was read."""
    assert start.integration is not None
    started_at: datetime | None = await conn.fetchval(
        _RECORD_START, start.integration.id, run_id, config_digest, start.last_run_id
    )
    return started_at

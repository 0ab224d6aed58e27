"""OAuth grants (schema/0009): one row per integration, its tokens already encrypted by the caller
(`worker.vault`). This module stores bytes and knows neither keys nor trackers.

A refresh runs inside one transaction that holds the row's lock (`lock`), so that two replicas,
or a daemon and `integrations test`, never both spend the same rotating refresh token.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True, slots=True)
class StoredGrant:
    """A row as stored: tokens are Fernet ciphertexts (None when absent)."""

    integration_id: uuid.UUID
    access_token: bytes | None
    access_expires_at: datetime | None
    refresh_token: bytes | None
    refreshes: int
    refreshed_at: datetime | None
    granted_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class GrantSummary:
    """What an admin may see of a grant: never a token."""

    integration_id: uuid.UUID
    label: str
    has_refresh_token: bool
    access_expires_at: datetime | None
    refreshes: int
    refreshed_at: datetime | None
    granted_at: datetime | None


_COLUMNS = (
    "integration_id, access_token, access_expires_at, refresh_token, refreshes, refreshed_at,"
    " granted_at, updated_at"
)
_GET = f"SELECT {_COLUMNS} FROM oauth_grants WHERE integration_id = $1"
# An empty row to lock when none exists yet (the first refresh, from the config's seed): a
# second refresher's INSERT waits on the first's uncommitted row, then locks it.
_ENSURE = (
    "INSERT INTO oauth_grants (integration_id) VALUES ($1) ON CONFLICT (integration_id) DO NOTHING"
)
_LOCK = _GET + " FOR UPDATE"
_SAVE_REFRESHED = """
UPDATE oauth_grants
SET access_token = $2, access_expires_at = $3, refresh_token = coalesce($4, refresh_token),
    refreshes = refreshes + 1, refreshed_at = now(), updated_at = now()
WHERE integration_id = $1
"""
_SAVE_CONSENT = """
INSERT INTO oauth_grants (integration_id, refresh_token, granted_at)
VALUES ($1, $2, now())
ON CONFLICT (integration_id) DO UPDATE
SET refresh_token = EXCLUDED.refresh_token, access_token = NULL, access_expires_at = NULL,
    granted_at = now(), updated_at = now()
"""
_LOCK_ALL = f"SELECT {_COLUMNS} FROM oauth_grants ORDER BY integration_id FOR UPDATE"
_REWRAP = """
UPDATE oauth_grants SET access_token = $2, refresh_token = $3, updated_at = now()
WHERE integration_id = $1
"""
_SUMMARIES = """
SELECT g.integration_id, t.name || '/' || i.type AS label,
       g.refresh_token IS NOT NULL AS has_refresh_token, g.access_expires_at, g.refreshes,
       g.refreshed_at, g.granted_at
FROM oauth_grants g JOIN integrations i ON i.id = g.integration_id JOIN teams t ON t.id = i.team_id
ORDER BY 2, 1
"""


def _grant(row: asyncpg.Record | None) -> StoredGrant | None:
    return StoredGrant(**dict(row)) if row else None


async def get(conn: asyncpg.Connection, integration_id: uuid.UUID) -> StoredGrant | None:
    """The row, without a lock (the common case: the access token is still good)."""
    return _grant(await conn.fetchrow(_GET, integration_id))


async def lock(conn: asyncpg.Connection, integration_id: uuid.UUID) -> StoredGrant:
    """The row under FOR UPDATE, created empty when missing. Call inside a transaction: the lock
    (and an empty row) last until it ends."""
    await conn.execute(_ENSURE, integration_id)
    found = _grant(await conn.fetchrow(_LOCK, integration_id))
    assert found is not None  # just ensured, and locked: nothing can delete it before we end
    return found


async def save_refreshed(
    conn: asyncpg.Connection,
    integration_id: uuid.UUID,
    *,
    access_token: bytes,
    access_expires_at: datetime,
    refresh_token: bytes | None,
) -> None:
    """A refresh's answer; a None refresh token keeps the stored one (a grant that does not
    rotate)."""
    await conn.execute(
        _SAVE_REFRESHED, integration_id, access_token, access_expires_at, refresh_token
    )


async def save_consent(
    conn: asyncpg.Connection, integration_id: uuid.UUID, refresh_token: bytes
) -> None:
    """A refresh token from a new consent: replaces whatever was stored (and its access token)."""
    await conn.execute(_SAVE_CONSENT, integration_id, refresh_token)


async def lock_all(conn: asyncpg.Connection) -> list[StoredGrant]:
    """Every row, locked (re-encryption: no refresh may write between read and rewrite)."""
    return [StoredGrant(**dict(r)) for r in await conn.fetch(_LOCK_ALL)]


async def rewrap(
    conn: asyncpg.Connection,
    integration_id: uuid.UUID,
    access_token: bytes | None,
    refresh_token: bytes | None,
) -> None:
    """The same tokens, encrypted again (with the newest key)."""
    await conn.execute(_REWRAP, integration_id, access_token, refresh_token)


async def summaries(conn: asyncpg.Connection) -> list[GrantSummary]:
    return [GrantSummary(**dict(r)) for r in await conn.fetch(_SUMMARIES)]

"""Credential health's SQL: what runs learned of each integration's credential expiry and TLS
verification (`integration_credentials`, `integration_tls`, schema/0010), and the marks that make
each expiry warning written once across runs and replicas. No secret is ever stored here."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from connectors.base import CredentialExpiry


@dataclass(frozen=True, slots=True)
class StoredCredential:
    kind: str
    expires_at: datetime
    renewable: bool
    observed_at: datetime
    warned_days: tuple[int, ...]  # warnings already written for this expires_at (0: expired)


async def save(
    conn: asyncpg.Connection, integration_id: uuid.UUID, reported: Sequence[CredentialExpiry]
) -> None:
    """Upsert what a run reported, one row per kind. A changed expires_at (a renewed or replaced
    credential) re-arms the row's warnings."""
    if not reported:
        return
    await conn.execute(
        "INSERT INTO integration_credentials (integration_id, kind, expires_at, renewable)"
        " SELECT $1, k, e, r FROM unnest($2::text[], $3::timestamptz[], $4::boolean[])"
        "   AS t(k, e, r)"
        " ON CONFLICT (integration_id, kind) DO UPDATE"
        " SET expires_at = EXCLUDED.expires_at, renewable = EXCLUDED.renewable,"
        "     observed_at = now(),"
        "     warned_days = CASE WHEN integration_credentials.expires_at = EXCLUDED.expires_at"
        "                        THEN integration_credentials.warned_days ELSE '{}' END",
        integration_id,
        [r.kind for r in reported],
        [r.expires_at for r in reported],
        [r.renewable for r in reported],
    )


async def keep_only(
    conn: asyncpg.Connection, integration_id: uuid.UUID, kinds: Collection[str]
) -> int:
    """Drop the integration's rows of every other kind (a credential it no longer uses)."""
    status: str = await conn.execute(
        "DELETE FROM integration_credentials WHERE integration_id = $1 AND kind <> ALL($2::text[])",
        integration_id,
        list(kinds),
    )
    return int(status.split()[-1])


async def save_tls(conn: asyncpg.Connection, integration_id: uuid.UUID, verification: str) -> None:
    await conn.execute(
        "INSERT INTO integration_tls (integration_id, verification) VALUES ($1, $2)"
        " ON CONFLICT (integration_id) DO UPDATE"
        " SET verification = EXCLUDED.verification, observed_at = now()",
        integration_id,
        verification,
    )


async def lock_for_warnings(
    conn: asyncpg.Connection, integration_id: uuid.UUID
) -> tuple[datetime, list[StoredCredential]]:
    """The database's clock and the integration's non-renewable rows, locked until the caller's
    transaction ends: two writers never claim the same warning."""
    rows = await conn.fetch(
        "SELECT now() AS now, kind, expires_at, renewable, observed_at, warned_days"
        " FROM integration_credentials"
        " WHERE integration_id = $1 AND NOT renewable ORDER BY kind FOR UPDATE",
        integration_id,
    )
    now: datetime = rows[0]["now"] if rows else await conn.fetchval("SELECT now()")
    return now, [_stored(r) for r in rows]


async def mark_warned(
    conn: asyncpg.Connection,
    integration_id: uuid.UUID,
    kind: str,
    expires_at: datetime,
    marks: Collection[int],
) -> None:
    await conn.execute(
        "UPDATE integration_credentials"
        " SET warned_days = ARRAY(SELECT DISTINCT d FROM unnest(warned_days || $4::smallint[])"
        "                         AS t(d) ORDER BY d DESC)"
        " WHERE integration_id = $1 AND kind = $2 AND expires_at = $3",
        integration_id,
        kind,
        expires_at,
        sorted(marks, reverse=True),
    )


async def latest(
    conn: asyncpg.Connection | asyncpg.Pool, integration_id: uuid.UUID | None = None
) -> dict[uuid.UUID, list[StoredCredential]]:
    """The stored expiries of one integration or of all, by integration, nearest first."""
    rows = await conn.fetch(
        "SELECT integration_id, kind, expires_at, renewable, observed_at, warned_days"
        " FROM integration_credentials WHERE $1::uuid IS NULL OR integration_id = $1"
        " ORDER BY integration_id, expires_at, kind",
        integration_id,
    )
    out: dict[uuid.UUID, list[StoredCredential]] = {}
    for r in rows:
        out.setdefault(r["integration_id"], []).append(_stored(r))
    return out


async def tls_modes(conn: asyncpg.Connection | asyncpg.Pool) -> dict[uuid.UUID, str]:
    """How each integration's last run verified TLS: system, custom_ca or unverified."""
    rows = await conn.fetch("SELECT integration_id, verification FROM integration_tls")
    return {r["integration_id"]: r["verification"] for r in rows}


def _stored(r: asyncpg.Record) -> StoredCredential:
    return StoredCredential(
        r["kind"], r["expires_at"], r["renewable"], r["observed_at"], tuple(r["warned_days"])
    )

"""How workers signal each other through PostgreSQL: the NOTIFY channel and its payloads, and the
advisory-lock keys that make one run of an integration exclusive across replicas.

Payloads on `CHANNEL` are JSON objects with an `op`:
- `insert` / `update` / `delete` and the integration's `id`: sent by the trigger on `integrations`
  (schema/0003) when a column that matters to scheduling changes. Never `config`: every listener
  sees a payload, and a config may hold a token.
- `sync_now`, `id` and `at` (the database's clock at the request): sent by `request_sync_now`.
- `replicas`: a replica joined or is leaving (`replicas_changed`): the others share the ticks
  out again at once instead of at their next look (worker.shards).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

CHANNEL = "c9_sync_integrations"

#: First key of the two-key advisory lock of an integration's run ("c9"); the second key is
#: `hashtext(id::text)`. `RUN_LOCK_HELD` decodes the same pair from `pg_locks`.
INTEGRATION_LOCK_NAMESPACE = 0x6339
#: First key of a team's metrics-recompute lock ("mt", transaction-level).
METRICS_LOCK_NAMESPACE = 0x6D74

_TRY_LOCK = "SELECT pg_try_advisory_lock($1, hashtext($2::uuid::text))"
_UNLOCK = "SELECT pg_advisory_unlock($1, hashtext($2::uuid::text))"

#: SQL condition, true while some session holds the run lock of integration `i` (a two-key
#: advisory lock shows as classid = key 1, objid = key 2, objsubid = 2). `$1` is the namespace.
RUN_LOCK_HELD = """EXISTS (SELECT 1 FROM pg_locks l
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                 AND l.classid = $1::int4::oid
                 AND l.objid = hashtext(i.id::text)::oid)"""

_SYNC_NOW = (
    "SELECT pg_notify($1, json_build_object('op', 'sync_now', 'id', $2::uuid, 'at', now())::text)"
)

_REPLICAS = "SELECT pg_notify($1, json_build_object('op', 'replicas')::text)"


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification, parsed. `at` is set for `sync_now` only."""

    op: str
    id: uuid.UUID | None
    at: datetime | None = None


class MalformedNotice(ValueError):
    """A payload on the channel that is not one of ours."""


def parse(payload: str) -> Notice:
    """A payload as a `Notice`; MalformedNotice when it cannot be read."""
    try:
        detail = json.loads(payload)
    except ValueError:
        raise MalformedNotice(f"not JSON: {payload[:100]!r}") from None
    if not isinstance(detail, dict) or not isinstance(detail.get("op"), str):
        raise MalformedNotice(f"no op: {payload[:100]!r}")
    op = detail["op"]
    try:
        ident = uuid.UUID(str(detail["id"])) if detail.get("id") is not None else None
        at = datetime.fromisoformat(str(detail["at"])) if op == "sync_now" else None
    except (KeyError, ValueError):
        raise MalformedNotice(f"bad id or time in {op!r}: {payload[:100]!r}") from None
    if op == "sync_now" and ident is None:
        raise MalformedNotice(f"sync_now without an id: {payload[:100]!r}")
    return Notice(op, ident, at)


async def request_sync_now(conn: asyncpg.Connection, integration_id: uuid.UUID) -> None:
    """Ask running workers to run it now. Delivered at commit; `at` is by the database's clock,
    which workers compare with `last_started_at` (also the database's) under the run lock, so one
    replica serves the request."""
    await conn.execute(_SYNC_NOW, CHANNEL, integration_id)


async def replicas_changed(
    conn: asyncpg.Connection | asyncpg.Pool, within: float | None = None
) -> None:
    await conn.execute(_REPLICAS, CHANNEL, timeout=within)


async def try_lock_integration(conn: asyncpg.Connection, integration_id: uuid.UUID) -> bool:
    """Session-level lock held on `conn` for the run; it dies with the connection, so a dead
    replica's lock is released by PostgreSQL."""
    locked: bool = await conn.fetchval(_TRY_LOCK, INTEGRATION_LOCK_NAMESPACE, integration_id)
    return locked


async def unlock_integration(conn: asyncpg.Connection, integration_id: uuid.UUID) -> None:
    await conn.execute(_UNLOCK, INTEGRATION_LOCK_NAMESPACE, integration_id)


async def ping(conn: asyncpg.Connection | asyncpg.Pool, within: float) -> None:
    """A round trip: a LISTEN connection that dropped silently, or a database that stopped
    answering, raises here (TimeoutError after `within` seconds)."""
    await conn.fetchval("SELECT 1", timeout=within)

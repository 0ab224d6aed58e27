"""The deletion sweep and the census of one integration.

Polling never reports deletions, so every few runs (and on `sync --full`) the connector lists
every id upstream, scope by scope. Rows the listing lacks are marked removed (never deleted) —
but only what a second listing confirms, and never in a scope the credential can no longer read
(`lost`: that is lost visibility, not a mass deletion). Then the census compares, per scope,
what the tracker lists with what we hold, stores it (`integration_census`), exports
`c9_sync_census_missing` and writes a `census_mismatch` row when listed items are missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from connectors.base import Connector
from worker import telemetry
from worker.logs import get_logger
from worker.store import census as census_store
from worker.store import sync as store
from worker.store.census import ScopeCensus
from worker.store.integrations import Integration

log = get_logger(__name__)


@dataclass(slots=True)
class Listing:
    """Every id upstream by scope, and the scopes the credential cannot read (with why)."""

    ids: dict[str, set[str]] = field(default_factory=dict)
    lost: dict[str, str] = field(default_factory=dict)

    @property
    def present(self) -> set[str]:
        return {i for ids in self.ids.values() for i in ids}

    def merge(self, other: Listing) -> None:
        for scope, ids in other.ids.items():
            self.ids.setdefault(scope, set()).update(ids)
        self.lost.update(other.lost)


async def list_upstream(connector: Connector) -> Listing:
    # every configured scope, empty ones too (a pattern's repositories are listed anew)
    listing = Listing({scope: set() for scope in await connector.scopes()})
    async for part in connector.all_ids():
        listing.ids.setdefault(part.scope, set()).update(part.ids)
        if part.lost is not None:
            listing.lost[part.scope] = part.lost
    return listing


@dataclass(slots=True)
class SweepResult:
    removed: list[asyncpg.Record] = field(default_factory=list)
    restored: list[asyncpg.Record] = field(default_factory=list)
    census: list[ScopeCensus] = field(default_factory=list)
    lost: dict[str, str] = field(default_factory=dict)

    @property
    def touched(self) -> list[datetime]:
        """Completion times of the rows marked or unmarked (their days' metrics change)."""
        return [r["completed_at"] for r in (*self.removed, *self.restored) if r["completed_at"]]


def _label(source: str, key: str | None, external_id: str) -> str:
    return f"{source} {key or external_id}"


async def sweep(
    conn: asyncpg.Connection,
    integration: Integration,
    connector: Connector,
    fields: Mapping[str, Any],
    *,
    alarm: bool = True,
    write: store.ActivityWriter | None = None,
) -> SweepResult:
    """Mark what a complete, confirmed listing lacks; clear the mark of what it lists again;
    take the census. `alarm`: write `census_mismatch` and export the gauge (off when a
    `start_date` makes older items missing on purpose). `write`: where the activity rows go
    (the run's log; the team's by default)."""
    write = write or store.team_writer(integration.team_id)
    listing = await list_upstream(connector)
    present = listing.present
    result = SweepResult(lost=dict(listing.lost))
    if not present:
        # Zero items upstream for a scope we have rows for is far likelier a lost permission or
        # a mis-scoped query than a mass deletion: mark nothing.
        log.warning("sweep_skipped", **fields, reason="tracker listed no items")
    else:
        spared, listed = list(listing.lost), list(listing.ids)
        if await store.missing_upstream(conn, integration.id, present, spared, listed):
            # Mark only what a second, complete listing confirms: a listing that shifted under a
            # concurrent deletion, or a page a proxy served short, must not mark live items.
            listing.merge(await list_upstream(connector))
            present, spared = listing.present, list(listing.lost)
        async with conn.transaction():
            result.removed = await store.mark_missing_upstream(
                conn, integration.id, present, spared, listed
            )
            result.restored = await store.unmark_present(conn, integration.id, present)
            await write(
                conn,
                [
                    store.Activity(
                        event,
                        f"{_label(integration.type, r['external_key'], r['external_id'])} {what}",
                        {**fields, "external_id": r["external_id"]},
                        r["id"],
                    )
                    for event, what, rows in (
                        ("work_item_removed", "no longer upstream", result.removed),
                        ("work_item_restored", "is upstream again", result.restored),
                    )
                    for r in rows
                ],
            )
    result.census = await take_census(conn, integration, listing, fields, alarm=alarm, write=write)
    return result


async def take_census(
    conn: asyncpg.Connection,
    integration: Integration,
    listing: Listing,
    fields: Mapping[str, Any],
    *,
    alarm: bool = True,
    write: store.ActivityWriter | None = None,
) -> list[ScopeCensus]:
    """Count, store, export; say so when listed items are missing or a scope was lost."""
    write = write or store.team_writer(integration.team_id)
    counted = await census_store.count(
        conn, integration.id, integration.type, {s: sorted(ids) for s, ids in listing.ids.items()}
    )
    by_scope = {c.scope: c for c in counted}
    result = [
        ScopeCensus(c.scope, c.upstream, c.held, c.removed, c.missing, listing.lost.get(c.scope))
        for c in by_scope.values()
    ]
    await census_store.save(conn, integration.id, result)
    activities = []
    for c in result:
        if alarm:
            telemetry.CENSUS_MISSING.labels(str(integration.id), c.scope).set(c.missing)
        if c.lost is not None:
            activities.append(
                store.Activity(
                    "visibility_lost",
                    f"{integration.type} cannot read {c.scope!r} any more ({c.lost}); its"
                    f" {c.held} item(s) are kept, not marked deleted",
                    {**fields, "scope": c.scope, "reason": c.lost, "held": c.held},
                )
            )
        elif alarm and c.missing:
            activities.append(
                store.Activity(
                    "census_mismatch",
                    f"{integration.type} {c.scope or 'scope'}: {c.missing} of {c.upstream} item(s)"
                    " upstream are not held (rejected, or not synced yet)",
                    {
                        **fields,
                        "scope": c.scope,
                        "upstream": c.upstream,
                        "held": c.held,
                        "removed": c.removed,
                        "missing": c.missing,
                    },
                )
            )
    await write(conn, activities)
    missing = sum(c.missing for c in result)
    log_fn = log.warning if (alarm and missing) or listing.lost else log.info
    log_fn(
        "census",
        **fields,
        upstream=sum(c.upstream for c in result),
        held=sum(c.held for c in result),
        missing=missing,
        lost=sorted(listing.lost),
    )
    return result

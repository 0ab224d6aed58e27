"""Remap one integration (`c9-sync remap`): every synced column of its rows mapped again from
what is stored — status through the config's status_map as it is NOW, priority, story points,
and the times derived from history — without calling the tracker.

Under the integration's run lock (a sync of it and a remap never interleave), in one
transaction: the history's status rows are mapped again (`store.history.remap_statuses`: the
new map's name, else the default kept with the row), then each row's `external_data` through the
connector's own mapping (`Remappable.map_stored`), its times as a sync derives them; an activity
row per changed item (as a sync writes them), one for the remap, then the metrics days touched.
A row whose external_data no longer maps is rejected (named, left as it is). A second remap
writes nothing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import asyncpg

from connectors import registry
from connectors.base import (
    ConnectorConfig,
    ConnectorError,
    FatalError,
    Rejected,
    Remappable,
)
from worker import connecting, metrics, redact, sanitize
from worker.connecting import ConnectorLoader
from worker.logs import get_logger
from worker.settings import Settings
from worker.store import history as history_store
from worker.store import notify
from worker.store import sync as store
from worker.store.integrations import Integration, get_integration
from worker.sync import RunResult, item_activities, status_map_digest, touched_by

log = get_logger(__name__)

BATCH = 500  # rows mapped and written a statement

Outcome = Literal["remapped", "refused", "busy"]


@dataclass(slots=True)
class RemapResult:
    integration_id: uuid.UUID
    outcome: Outcome
    label: str = ""
    items: int = 0  # rows mapped again
    changed: int = 0
    unchanged: int = 0
    rejected: int = 0  # rows whose external_data no longer maps (left as they are)
    history_rows: int = 0  # status rows of the history mapped to another status
    history_kept: int = 0  # status rows read under a map naming them: no default, kept
    metrics_rows: int = 0
    reason: str = ""
    touched: set[datetime] = field(default_factory=set)  # (as RunResult.touched)

    def summary(self) -> str:
        label = self.label or str(self.integration_id)
        if self.outcome != "remapped":
            return f"{label}: {'busy' if self.outcome == 'busy' else 'REFUSED'}: {self.reason}"
        return (
            f"{label}: remapped {self.items} items: changed={self.changed}"
            f" unchanged={self.unchanged} rejected={self.rejected}"
            f" history_rows={self.history_rows} history_kept={self.history_kept}"
            f" metrics_rows={self.metrics_rows}"
        )


class _Refused(Exception):
    """The integration cannot be remapped as it stands (config, connector, context)."""


async def remap_integration(
    pool: asyncpg.Pool,
    integration_id: uuid.UUID,
    settings: Settings,
    *,
    loader: ConnectorLoader = registry.load,
    wait: float = 0.0,
    poll: float = 0.2,
) -> RemapResult:
    """Remap one integration under its run lock, waiting up to `wait` seconds for a sync that
    holds it (then `busy`: nothing written). Never raises for a config's or a connector's
    fault (`refused`, with the reason); database failures propagate."""
    async with pool.acquire() as conn:
        give_up = time.monotonic() + wait
        while not await notify.try_lock_integration(conn, integration_id):
            if time.monotonic() >= give_up:
                return RemapResult(
                    integration_id,
                    "busy",
                    reason="a sync of it holds the integration's lock; nothing was written"
                    " (run remap again when it has finished, or give --wait SECONDS)",
                )
            await asyncio.sleep(poll)
        try:
            return await _locked_remap(conn, integration_id, settings, loader)
        finally:
            await notify.unlock_integration(conn, integration_id)


async def after_run(
    pool: asyncpg.Pool,
    run: RunResult,
    settings: Settings,
    *,
    loader: ConnectorLoader = registry.load,
) -> RemapResult | None:
    """After a run that found its integration's status_map edited since the stored rows were
    mapped (`remap_due`): remap them now (the daemon and `c9-sync sync` call it). A sync holding
    the lock again by then: the next run finds the map still differing and asks again."""
    if run.outcome != "succeeded" or not run.remap_due:
        return None
    result = await remap_integration(pool, run.integration_id, settings, loader=loader)
    log.info("remap_after_run", integration_id=str(run.integration_id), outcome=result.outcome,
             **_counts(result))  # fmt: skip
    return result


async def _locked_remap(
    conn: asyncpg.Connection,
    integration_id: uuid.UUID,
    settings: Settings,
    loader: ConnectorLoader,
) -> RemapResult:
    integration = await get_integration(conn, integration_id)
    if integration is None:
        return RemapResult(integration_id, "refused", reason="the integration was deleted")
    result = RemapResult(integration_id, "remapped", integration.label)
    fields = {
        "integration_id": str(integration_id),
        "source": integration.type,
        "remap_id": str(uuid.uuid4()),
    }
    try:
        cls, config, context, state_digest = await _prepare(conn, integration, loader)
        async with conn.transaction():
            await _remap_history(conn, integration, config, result)
            rejected = await _remap_items(conn, integration, cls, config, context, result, fields)
            if result.changed or result.history_rows:
                # a remap that changes nothing writes nothing: its rejections are in its
                # output and the log (the rows are left as they are, rejected again each time)
                await _log_remap(conn, integration, result, rejected, fields)
            digest = status_map_digest(config.status_map)
            if state_digest != digest:
                await store.save_rows_mapped_with(conn, integration_id, digest)
    except (_Refused, ConnectorError) as exc:
        result.outcome, result.reason = "refused", redact.scrub(str(exc))[:500]
        log.warning("remap_refused", **fields, reason=result.reason)
        return result
    if result.touched:
        # after the commit, as a sync run does: metrics are derived; a failure here is logged
        # and repaired by the next run or a rollup, never undoes the remap
        try:
            result.metrics_rows = await metrics.recompute_touched(
                conn, integration.team_id, result.touched, settings.metrics_tz
            )
        except asyncpg.PostgresError as exc:
            log.warning("metrics_recompute_failed", **fields, error=f"{type(exc).__name__}: {exc}")
    log.info("remap_completed", **fields, **_counts(result))
    return result


async def _prepare(
    conn: asyncpg.Connection, integration: Integration, loader: ConnectorLoader
) -> tuple[type[Remappable], ConnectorConfig, Mapping[str, Any], str | None]:
    """The connector class, the config as it is now (validated by its model, no secret
    resolved), the mapping context its runs kept and the status_map its rows are mapped with."""
    cls = loader(integration.type)
    if not isinstance(cls, Remappable):
        raise _Refused(f"the {integration.type} connector cannot map stored items (no map_stored)")
    config = connecting.validate_config(cls, integration.config)
    state = await store.get_state(conn, integration.id)
    if callable(getattr(cls, "mapping_context", None)) and state.mapping_context is None:
        raise _Refused(
            "no run has kept what mapping its items offline needs (schema 0014): run a sync of"
            " it first"
        )
    return cls, config, state.mapping_context or {}, state.rows_mapped_with


async def _remap_history(
    conn: asyncpg.Connection, integration: Integration, config: ConnectorConfig, result: RemapResult
) -> None:
    """Status rows through the new map: the names it names take its status, the others their
    default; rows read under a map that named them have none and are kept (counted)."""
    names = await history_store.status_names(conn, integration.id)
    named = {
        name: str(config.status_map[name.strip().casefold()])
        for name in names
        if sanitize.named_by(name, config.status_map)
    }
    remapped = await history_store.remap_statuses(conn, integration.id, named)
    result.history_rows = remapped.changed + remapped.waiting
    result.history_kept = sum(n for name, n in names.items() if name not in named)


async def _remap_items(
    conn: asyncpg.Connection,
    integration: Integration,
    cls: type[Remappable],
    config: ConnectorConfig,
    context: Mapping[str, Any],
    result: RemapResult,
    fields: Mapping[str, Any],
) -> list[Rejected]:
    """Every row mapped again, a batch a statement, with an activity row per changed item;
    the rows that no longer map."""
    after: uuid.UUID | None = None
    every_rejected: list[Rejected] = []
    while rows := await store.stored_items(conn, integration.id, after, BATCH):
        after = rows[-1]["id"]
        mapped, rejected = map_rows(cls, config, context, rows)
        written = await store.remap_items(conn, mapped)
        every_rejected.extend(rejected)
        await store.log_activities(
            conn, integration.team_id, item_activities(integration, written, fields)
        )
        result.items += len(mapped)
        result.changed += len(written.changes)
        result.unchanged += written.unchanged
        result.rejected += len(rejected)
        result.touched.update(touched_by(written.changes))
        for r in rejected:
            log.warning("remap_rejected", **fields, external_id=r.external_id, reason=r.reason)
    return every_rejected


def map_rows(
    cls: type[Remappable],
    config: ConnectorConfig,
    context: Mapping[str, Any],
    rows: Sequence[asyncpg.Record],
) -> tuple[list[store.Remapped], list[Rejected]]:
    """Each stored row through the connector's mapping; a row that no longer maps (or maps to
    another item) is rejected, named with the reason. A ConfigError (the context lacks what the
    config needs) refuses the whole integration."""
    mapped: list[store.Remapped] = []
    rejected: list[Rejected] = []
    for row in rows:
        external_id, key = row["external_id"], row["external_key"]
        raw = row["external_data"]
        try:
            if not isinstance(raw, Mapping):
                raise ValueError(f"external_data is {type(raw).__name__}, not an object")
            item = cls.map_stored(config, raw, scope=row["sync_scope"] or "", context=context)
        except FatalError:
            raise
        except Exception as exc:  # junk in a stored row: that row only, named
            reason = f"{type(exc).__name__}: {exc}"
            rejected.append(Rejected(external_id, f"no longer maps: {reason}"[:200], key))
            continue
        clean = sanitize.clean_item(item)
        if isinstance(clean, Rejected):
            rejected.append(Rejected(external_id, clean.reason, key))
            continue
        if clean.external_id != external_id:
            rejected.append(Rejected(external_id, "maps to another item id", key))
            continue
        mapped.append(
            store.Remapped(
                row["id"], clean.status, clean.priority, clean.story_points, clean.started_at,
                clean.completed_at,
            )
        )  # fmt: skip
    return mapped, rejected


def _counts(result: RemapResult) -> dict[str, int]:
    return {
        "items": result.items,
        "changed": result.changed,
        "unchanged": result.unchanged,
        "rejected": result.rejected,
        "history_rows": result.history_rows,
        "history_kept": result.history_kept,
    }


async def _log_remap(
    conn: asyncpg.Connection,
    integration: Integration,
    result: RemapResult,
    rejected: Sequence[Rejected],
    fields: Mapping[str, Any],
) -> None:
    await store.log_activities(
        conn,
        integration.team_id,
        item_activities(integration, store.PageResult(rejected=list(rejected)), fields),
    )
    await store.log_activities(
        conn,
        integration.team_id,
        [
            store.Activity(
                "integration_remapped",
                f"{integration.type} remapped with its current config: {result.changed} of"
                f" {result.items} items changed, {result.rejected} rejected,"
                f" {result.history_rows} history rows remapped",
                {**fields, **_counts(result)},
            )
        ],
    )

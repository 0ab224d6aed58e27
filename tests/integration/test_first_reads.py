"""A scope's first read is logged by the page (`work_items_imported`); what appears in a scope
read already gets its own `work_item_created` row (schema/0020, docs/dashboards.md)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from connectors.base import RetriableError, Status
from tests.fake_connector import T0, Upstream, fake_connector_class
from tests.helpers import imported_items, make_integration, make_team
from worker import sync
from worker.settings import Settings
from worker.sync import RunOptions


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", backoff_base_seconds=60, sweep_every_runs=0)


async def _integration(pool: asyncpg.Pool, **config: Any) -> uuid.UUID:
    team = await make_team(pool, "Alpha")
    return await make_integration(pool, team, "github", {"token": "t", **config}, interval=60)


async def _run(
    pool: asyncpg.Pool, integration: uuid.UUID, settings: Settings, upstream: Upstream, **opts: Any
) -> sync.RunResult:
    cls = fake_connector_class(upstream)
    return await sync.run_integration(
        pool,
        integration,
        settings,
        environ={},
        options=RunOptions(force=True, **opts),
        loader=lambda _type: cls,
    )


async def _rows(pool: asyncpg.Pool, event_type: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT message, metadata, work_item_id FROM activity_logs WHERE event_type = $1"
        " ORDER BY created_at, id",
        event_type,
    )
    return [dict(r) for r in rows]


async def _scopes_read(pool: asyncpg.Pool, integration: uuid.UUID) -> list[str]:
    value = await pool.fetchval(
        "SELECT scopes_read FROM integration_sync_state WHERE integration_id = $1", integration
    )
    return list(value)


@pytest.mark.usefixtures("a_transaction_a_page")
async def test_a_first_read_is_logged_by_the_page_and_later_items_one_by_one(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    upstream = Upstream()
    upstream.add(20, status=Status.QUEUED)
    upstream.add(5, status=Status.COMPLETED, start=T0 + timedelta(hours=1))
    integration = await _integration(pool)

    first = await _run(pool, integration, settings, upstream)
    assert (first.outcome, first.created, first.pages) == ("succeeded", 25, 3), first.reason
    assert await _rows(pool, "work_item_created") == []
    pages = await _rows(pool, "work_items_imported")
    assert [p["metadata"]["count"] for p in pages] == [10, 10, 5]
    assert pages[0]["message"] == "github: 10 items imported"
    assert all(p["work_item_id"] is None and p["metadata"]["scopes"] == [""] for p in pages)
    stored = {
        r["external_id"]: r["status"]
        for r in await pool.fetch("SELECT external_id, status FROM work_items")
    }
    assert await imported_items(pool) == stored  # every item, with the status it was stored with
    assert await _scopes_read(pool, integration) == [""]

    new = upstream.add(2, start=T0 + timedelta(days=1))
    second = await _run(pool, integration, settings, upstream)
    assert second.created == 2
    created = await _rows(pool, "work_item_created")
    assert sorted(r["metadata"]["external_id"] for r in created) == new
    assert all(r["work_item_id"] is not None for r in created)
    assert len(await _rows(pool, "work_items_imported")) == 3


async def test_a_first_read_cut_short_goes_on_as_a_first_read(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    upstream = Upstream()
    upstream.add(25)
    integration = await _integration(pool)
    upstream.fail_on_page, upstream.fail_with = 2, RetriableError("upstream 503")

    cut = await _run(pool, integration, settings, upstream)
    assert (cut.outcome, cut.created) == ("failed", 10)
    assert await _scopes_read(pool, integration) == []

    upstream.fail_on_page = None
    rest = await _run(pool, integration, settings, upstream)
    assert (rest.outcome, rest.created) == ("succeeded", 15), rest.reason
    assert await _rows(pool, "work_item_created") == []
    assert len(await imported_items(pool)) == 25
    assert await _scopes_read(pool, integration) == [""]


async def test_a_scope_added_later_is_imported_and_one_read_empty_is_not_any_more(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    upstream = Upstream()
    upstream.add(3, scope="A")
    upstream.add(4, scope="B", start=T0 + timedelta(hours=1))
    integration = await _integration(pool, projects=["A"])
    await _run(pool, integration, settings, upstream)
    assert await _scopes_read(pool, integration) == ["A"]

    await pool.execute(
        'UPDATE integrations SET config = config || \'{"projects": ["A", "B", "C"]}\''
        " WHERE id = $1",
        integration,
    )
    widened = await _run(pool, integration, settings, upstream)
    assert widened.created == 4, widened.reason
    pages = await _rows(pool, "work_items_imported")
    assert [(p["message"], p["metadata"]["scopes"]) for p in pages] == [
        ("github A: 3 items imported", ["A"]),
        ("github B: 4 items imported", ["B"]),
    ]
    # C was read to its end, empty: it has no cursor, yet what appears there now is news
    assert await _scopes_read(pool, integration) == ["A", "B", "C"]
    (fresh,) = upstream.add(1, scope="C", start=T0 + timedelta(days=1))
    await _run(pool, integration, settings, upstream)
    assert [r["metadata"]["external_id"] for r in await _rows(pool, "work_item_created")] == [fresh]

    # A scope that leaves the config is forgotten: back, it is read for the first time again
    await pool.execute(
        'UPDATE integrations SET config = config || \'{"projects": ["A", "C"]}\' WHERE id = $1',
        integration,
    )
    await _run(pool, integration, settings, upstream)
    assert await _scopes_read(pool, integration) == ["A", "C"]


async def test_a_lost_scope_stays_a_first_read_and_a_full_run_logs_new_items_one_by_one(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    upstream = Upstream()
    upstream.add(3, scope="A")
    b_items = upstream.add(2, scope="B", start=T0 + timedelta(hours=1))
    upstream.lost["B"] = "not found"
    integration = await _integration(pool, projects=["A", "B"])
    lost = await _run(pool, integration, settings, upstream)
    assert lost.outcome == "failed" and "B" in lost.lost
    assert await _scopes_read(pool, integration) == ["A"]  # (B's listing did not go through)

    del upstream.lost["B"]
    await _run(pool, integration, settings, upstream)
    assert set(await imported_items(pool)) == {*upstream.items}
    assert set(b_items) <= set(await imported_items(pool))
    assert await _scopes_read(pool, integration) == ["A", "B"]

    (late,) = upstream.add(1, scope="A", start=T0 + timedelta(days=1))
    full = await _run(pool, integration, settings, upstream, full=True)
    assert full.created == 1, full.reason
    assert [r["metadata"]["external_id"] for r in await _rows(pool, "work_item_created")] == [late]

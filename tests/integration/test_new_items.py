"""A first import's new rows go in by COPY (worker/store/new_items.py): the rows, the change
report and what follows a page are the upsert's own, and a row inserted by another writer
between the probe and the COPY sends the page through the upsert again."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from connectors.base import HistoryEntry, Person, Sprint, Status, WorkItem
from tests.fake_connector import T0, Upstream, fake_connector_class
from tests.helpers import make_integration, make_team
from worker import sync
from worker.settings import Settings
from worker.store import new_items
from worker.store import sync as store

# Every column a page writes, the parent as its external id (ids differ between the two writes)
_ROWS = """
SELECT w.external_id, w.external_key, w.title, w.description, w.acceptance_criteria, w.status,
       w.priority, w.story_points, w.external_url, w.external_data, w.source_updated_at,
       w.started_at, w.completed_at, w.assigned_at, w.removed_upstream_at, w.sync_scope,
       w.time_basis, w.history_pending, w.parent_external_id, p.external_id AS parent,
       w.item_type, w.item_type_name, w.labels, w.assignees, w.fields, w.out_of_scope_at,
       w.integration_id IS NOT NULL AS has_integration, w.team_id IS NOT NULL AS has_team,
       (SELECT count(*) FROM work_item_history h WHERE h.work_item_id = w.id) AS history,
       (SELECT array_agg(s.external_id ORDER BY s.external_id)
        FROM work_item_sprints ws JOIN sprints s ON s.id = ws.sprint_id
        WHERE ws.work_item_id = w.id) AS sprints
FROM work_items w LEFT JOIN work_items p ON p.id = w.parent_id
WHERE w.source = $1 ORDER BY w.external_id
"""


def _page() -> list[WorkItem]:
    at = T0 + timedelta(hours=1)
    sprint = Sprint("SPR-1", "Sprint 1", "active", T0, T0 + timedelta(days=14))
    return [
        WorkItem("N-1", "queued", Status.QUEUED, at, external_key="N-1", raw={"n": 1}),
        WorkItem("N-2", "working, observed", Status.IN_PROGRESS, at, priority=2),
        WorkItem("N-3", "working, tracker", Status.PR_READY, at, started_at=T0),
        WorkItem("N-4", "done, tracker", Status.COMPLETED, at, completed_at=at, started_at=T0),
        WorkItem("N-5", "done, observed", Status.COMPLETED, at, story_points=3),
        WorkItem("N-6", "queued with a stale completion", Status.QUEUED, at, completed_at=at),
        WorkItem("N-7", "cancelled", Status.CANCELLED, at, started_at=T0),
        WorkItem("N-8", "deleted upstream", Status.QUEUED, at, removed=True),
        WorkItem("N-9", "child of a stored parent", Status.QUEUED, at, parent_external_id="P-0"),
        WorkItem("N-10", "child of N-1", Status.BLOCKED, at, parent_external_id="N-1"),
        WorkItem("N-11", "its own parent", Status.QUEUED, at, parent_external_id="N-11"),
        WorkItem("N-12", "orphan", Status.QUEUED, at, parent_external_id="NOT-SYNCED"),
        WorkItem(
            "N-13",
            "x" * 600 + "\x00",
            Status.IN_PROGRESS,
            at,
            description="line\x00two \ud800",
            acceptance_criteria="given",
            external_url="https://tracker.example/N-13",
            raw={"nested": {"list": [1, 2.5, None, "\x00"], "é": True}, "email": None},
            scope="repo-a",
            labels=("bug", "ünïcode", "bug"),
            assignees=(Person("Ada", "u-1"), Person(None, "u-2")),
            custom_fields={"points": 3, "team": "Core"},
            item_type="bug",
            item_type_name="Bug",
            sprints=(sprint,),
            history=(
                HistoryEntry("h-1", "status", T0, None, "To Do", None, Status.QUEUED),
                HistoryEntry(
                    "h-2", "status", at, "To Do", "Doing", Status.QUEUED, Status.IN_PROGRESS
                ),
            ),
            history_pending=True,
        ),
    ]


async def _write(
    pool: asyncpg.Pool, source: str, items: list[WorkItem], *, probe_new: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    team = await make_team(pool, f"team-{source}")
    integration = await make_integration(pool, team, source, {"token": "t"})
    parent = WorkItem("P-0", "stored parent", Status.QUEUED, T0)
    async with pool.acquire() as conn:
        async with conn.transaction():
            await store.upsert_items(
                conn, source=source, team_id=team, integration_id=integration, items=[parent]
            )
        async with conn.transaction():
            now = await conn.fetchval("SELECT now()")
            result = await store.upsert_items(
                conn,
                source=source,
                team_id=team,
                integration_id=integration,
                items=items,
                probe_new=probe_new,
            )
        rows = [dict(r) for r in await conn.fetch(_ROWS, source)]

    def same_everywhere(value: Any) -> Any:  # the transaction's time reads the same in both
        return "NOW" if value == now else value

    changes = sorted(
        (
            {k: same_everywhere(v) for k, v in asdict(c).items() if k != "work_item_id"}
            for c in result.changes
        ),
        key=lambda c: c["external_id"],
    )
    page = [r for r in rows if r["external_id"] != "P-0"]  # (written by an earlier transaction)
    return [{k: same_everywhere(v) for k, v in r.items()} for r in page], changes


async def test_copied_rows_are_the_rows_the_upsert_writes(pool, monkeypatch) -> None:
    copied: list[int] = []
    real_copy = new_items.copy

    async def counted(conn: asyncpg.Connection, records: Any) -> None:
        copied.append(len(records))
        await real_copy(conn, records)

    monkeypatch.setattr(new_items, "copy", counted)
    upserted = await _write(pool, "jira", _page(), probe_new=False)
    assert copied == []
    by_copy = await _write(pool, "linear", _page(), probe_new=True)
    assert copied == [len(_page())]  # every item of the page was new
    assert by_copy == upserted
    rows, changes = by_copy
    by_id = {r["external_id"]: r for r in rows}
    # what the comparison rests on: the rules were exercised, not merely matched
    assert by_id["N-2"]["started_at"] == "NOW" and by_id["N-2"]["time_basis"] == "observed"
    assert by_id["N-3"]["started_at"] == T0 and by_id["N-3"]["time_basis"] == "tracker"
    assert by_id["N-6"]["completed_at"] is None and by_id["N-6"]["time_basis"] is None
    assert by_id["N-8"]["removed_upstream_at"] == "NOW"
    assert [by_id[x]["parent"] for x in ("N-9", "N-10", "N-11", "N-12")] == [
        "P-0",
        "N-1",  # linked after the page's rows (model.LINK_CHILDREN), as the upsert does
        None,
        None,
    ]
    assert len(by_id["N-13"]["title"]) == 500 and by_id["N-13"]["history"] == 2
    assert by_id["N-13"]["sprints"] == ["SPR-1"] and by_id["N-13"]["assignees"][0]["name"] == "Ada"
    assert all(c["created"] for c in changes) and len(changes) == len(_page())


async def test_a_page_of_stored_and_new_items_copies_only_the_new(pool, monkeypatch) -> None:
    copied: list[list[str]] = []
    real_copy = new_items.copy

    async def counted(conn: asyncpg.Connection, records: Any) -> None:
        copied.append(sorted(r[new_items.COLUMNS.index("external_id")] for r in records))
        await real_copy(conn, records)

    monkeypatch.setattr(new_items, "copy", counted)
    items = _page()
    await _write(pool, "github", items[:5], probe_new=True)
    again = [*items[:5], *items[5:8]]
    again[0] = WorkItem("N-1", "renamed", Status.QUEUED, T0 + timedelta(hours=2))
    async with pool.acquire() as conn, conn.transaction():
        integration = await conn.fetchval(
            "SELECT integration_id FROM work_items WHERE external_id = 'N-1'"
        )
        team = await conn.fetchval("SELECT team_id FROM integrations WHERE id = $1", integration)
        result = await store.upsert_items(
            conn,
            source="github",
            team_id=team,
            integration_id=integration,
            items=again,
            probe_new=True,
        )
    assert copied[-1] == ["N-6", "N-7", "N-8"]
    assert (result.created, result.updated, result.unchanged) == (3, 1, 4)
    assert await pool.fetchval("SELECT title FROM work_items WHERE external_id = 'N-1'") == (
        "renamed"
    )


async def test_an_item_inserted_meanwhile_sends_the_page_through_the_upsert(
    pool, tmp_path: Path, caplog
) -> None:
    caplog.set_level(logging.INFO)
    upstream = Upstream()
    upstream.add(5)
    team = await make_team(pool, "Alpha")
    integration = await make_integration(pool, team, "github", {"token": "t"}, interval=60)
    settings = Settings(home=tmp_path / "home", sweep_every_runs=0)
    async with pool.acquire() as other:
        raced = other.transaction()
        await raced.start()
        # another writer's row, not committed yet: the run's probe does not see it, its COPY
        # waits on the row's unique key and fails when that writer commits
        await other.execute(
            "INSERT INTO work_items (team_id, source, external_id, title, status)"
            " VALUES ($1, 'github', 'FAKE-3', 'raced', 'queued')",
            team,
        )
        running = asyncio.create_task(
            sync.run_integration(
                pool,
                integration,
                settings,
                environ={},
                options=sync.RunOptions(force=True),
                loader=lambda source: fake_connector_class(upstream),
            )
        )
        for _ in range(200):
            waiting = await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND query LIKE 'COPY%work_items%'"
            )
            if waiting or running.done():
                break
            await asyncio.sleep(0.05)
        assert waiting == 1, "the run's COPY never waited on the other writer's row"
        await raced.commit()
    result = await running
    assert (result.outcome, result.created, result.updated) == ("succeeded", 4, 1), result.reason
    assert await pool.fetchval("SELECT title FROM work_items WHERE external_id = 'FAKE-3'") == (
        "Item 3"
    )
    assert await pool.fetchval("SELECT count(*) FROM work_items") == 5
    assert any(r.getMessage() == "page_rewritten" for r in caplog.records)


@pytest.mark.parametrize("stored", [0, 3])
async def test_probe_finds_the_stored_ids_and_the_transaction_time(pool, stored: int) -> None:
    team = await make_team(pool, "Probe")
    integration = await make_integration(pool, team, "github", {"token": "t"})
    items = [WorkItem(f"Q-{n}", "t", Status.QUEUED, T0) for n in range(stored)]
    async with pool.acquire() as conn:
        if items:
            async with conn.transaction():
                await store.upsert_items(
                    conn, source="github", team_id=team, integration_id=integration, items=items
                )
        async with conn.transaction():
            found = await new_items.probe(conn, "github", ["Q-0", "Q-1", "Q-2", "absent"])
            now = await conn.fetchval("SELECT now()")
    assert found.now == now
    assert sorted(found.stored) == [f"Q-{n}" for n in range(stored)]
    assert all(isinstance(v, uuid.UUID) for v in found.stored.values())


def test_new_ids_are_distinct_version_4_uuids() -> None:
    ids = new_items.new_ids(5000)
    assert len(set(ids)) == 5000
    assert all(isinstance(i, uuid.UUID) for i in ids)
    assert {i.version for i in ids} == {4}
    assert {i.variant for i in ids} == {uuid.RFC_4122}
    assert new_items.new_ids(0) == []

"""The richer model in the store (schema 0012): parents linked whichever side arrives first,
item types, labels, assignees, custom fields by name, sprint membership that begins and ends,
and the views over them. Real PostgreSQL, a real sync run with the in-test connector."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from connectors.base import Person, Sprint, Status, WorkItem
from tests.fake_connector import T0, Upstream, fake_connector_class
from tests.helpers import make_integration, make_team, succeeded_run
from worker import sync
from worker.settings import Settings

S1 = Sprint("sprint-1", "Sprint 1", "closed", T0, T0 + timedelta(days=14))
S2 = Sprint("sprint-2", "Sprint 2", "active", T0 + timedelta(days=14), T0 + timedelta(days=28))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", sweep_every_runs=0, history_budget=0)


@pytest.fixture
async def integration(pool: asyncpg.Pool) -> uuid.UUID:
    team = await make_team(pool, "Alpha")
    return await make_integration(pool, team, "github", {"token": "tok-model-1"}, interval=60)


async def run(pool, integration, settings, up: Upstream) -> sync.RunResult:
    return await succeeded_run(pool, integration, settings, fake_connector_class(up))


def epic_with_children(up: Upstream) -> None:
    # Children change before their epic: with a page of 2 they land first, the epic last.
    up.page_size = 2
    kids = [
        ("C-1", Status.COMPLETED, (S1,), ("backend",), 3),
        ("C-2", Status.IN_PROGRESS, (S1, S2), ("backend", "api"), 5),  # carried over
        ("C-3", Status.QUEUED, (S2,), (), 2),
    ]
    for n, (ext, status, sprints, labels, points) in enumerate(kids):
        up.items[ext] = WorkItem(
            ext,
            f"child {ext}",
            status,
            T0 + n * timedelta(minutes=1),
            story_points=points,
            parent_external_id="E-1",
            item_type="story",
            item_type_name="Story",
            labels=labels,
            assignees=(Person("Ada", "acct-ada"),),
            sprints=sprints,
            custom_fields={"Team": "Core", "Severity": None},
        )
    up.items["E-1"] = WorkItem(
        "E-1", "the epic", Status.IN_PROGRESS, T0 + timedelta(hours=1), item_type="epic",
        item_type_name="Epic",
    )  # fmt: skip


async def test_an_epic_with_three_children_across_two_sprints(pool, integration, settings) -> None:
    up = Upstream()
    epic_with_children(up)
    await run(pool, integration, settings, up)

    rows = {
        r["external_id"]: r
        for r in await pool.fetch(
            "SELECT w.external_id, p.external_id AS parent, w.item_type, w.item_type_name,"
            "       w.labels, w.assignees, w.fields"
            " FROM work_items w LEFT JOIN work_items p ON p.id = w.parent_id"
        )
    }
    assert {k: r["parent"] for k, r in rows.items()} == {
        "C-1": "E-1", "C-2": "E-1", "C-3": "E-1", "E-1": None,
    }  # fmt: skip
    assert (rows["E-1"]["item_type"], rows["C-1"]["item_type_name"]) == ("epic", "Story")
    assert rows["C-2"]["labels"] == ["backend", "api"]
    assert rows["C-1"]["assignees"] == [{"name": "Ada", "account_id": "acct-ada"}]
    assert rows["C-1"]["fields"] == {"Team": "Core", "Severity": None}
    assert (
        await pool.fetchval("SELECT count(*) FROM work_items WHERE labels @> ARRAY['backend']") == 2
    )

    sprints = {
        r["name"]: dict(r)
        for r in await pool.fetch(
            "SELECT name, state, scope_items, done_items, scope_points, done_points"
            " FROM v_sprint_progress"
        )
    }
    assert sprints["Sprint 1"] | {"name": 0} == {
        "name": 0, "state": "closed", "scope_items": 2, "done_items": 1, "scope_points": 8,
        "done_points": 3,
    }  # fmt: skip
    assert (sprints["Sprint 2"]["scope_items"], sprints["Sprint 2"]["done_items"]) == (2, 0)
    rollup = await pool.fetchrow("SELECT * FROM v_epic_rollup")
    assert (rollup["external_key"], rollup["children"], rollup["completed"]) == (None, 3, 1)
    assert (rollup["in_progress"], rollup["queued"], rollup["points"]) == (1, 1, 10)

    before = await pool.fetchval("SELECT count(*) FROM activity_logs")
    again = await run(pool, integration, settings, up)
    assert (again.created, again.updated) == (0, 0)
    # a run that changes nothing writes no row (the sync state counts it: worker/runlog.py)
    assert await pool.fetchval("SELECT count(*) FROM activity_logs") == before


async def test_moving_a_child_to_another_parent_and_sprint(pool, integration, settings) -> None:
    up = Upstream()
    epic_with_children(up)
    up.items["E-2"] = WorkItem("E-2", "another epic", Status.QUEUED, T0, item_type="epic")
    await run(pool, integration, settings, up)

    up.items["C-3"] = replace(
        up.items["C-3"],
        parent_external_id="E-2",
        sprints=(S1,),
        updated_at=T0 + 2 * timedelta(hours=1),
    )
    result = await run(pool, integration, settings, up)
    assert result.updated == 1
    parent = await pool.fetchval(
        "SELECT p.external_id FROM work_items w JOIN work_items p ON p.id = w.parent_id"
        " WHERE w.external_id = 'C-3'"
    )
    assert parent == "E-2"
    member = {
        r["sprint"]: r["removed_at"] is None
        for r in await pool.fetch(
            "SELECT s.external_id AS sprint, ws.removed_at FROM work_item_sprints ws"
            " JOIN sprints s ON s.id = ws.sprint_id JOIN work_items w ON w.id = ws.work_item_id"
            " WHERE w.external_id = 'C-3'"
        )
    }
    assert member == {"sprint-1": True, "sprint-2": False}  # left sprint 2, kept as history
    updated = await pool.fetchrow(
        "SELECT metadata FROM activity_logs WHERE event_type = 'work_item_updated'"
    )
    assert "parent_external_id" in updated["metadata"]["fields"]
    progress = {
        r["name"]: (r["scope_items"], r["removed_items"])
        for r in await pool.fetch("SELECT * FROM v_sprint_progress")
    }
    assert progress == {"Sprint 1": (3, 0), "Sprint 2": (1, 1)}


async def test_a_parent_deleted_leaves_its_children(pool, integration, settings) -> None:
    up = Upstream()
    epic_with_children(up)
    await run(pool, integration, settings, up)
    await pool.execute("DELETE FROM work_items WHERE external_id = 'E-1'")
    assert await pool.fetchval("SELECT count(*) FROM work_items WHERE parent_id IS NULL") == 3
    # it comes back (an admin restored it): the children are linked again
    up.items["E-1"] = replace(up.items["E-1"], updated_at=T0 + 3 * timedelta(hours=1))
    await run(pool, integration, settings, up)
    assert await pool.fetchval("SELECT count(*) FROM work_items WHERE parent_id IS NOT NULL") == 3


async def test_an_item_naming_itself_as_parent_is_kept_unlinked(
    pool, integration, settings
) -> None:
    up = Upstream()
    up.items["L-1"] = WorkItem("L-1", "loop", Status.QUEUED, T0, parent_external_id="L-1")
    await run(pool, integration, settings, up)
    row = await pool.fetchrow("SELECT parent_id, parent_external_id FROM work_items")
    assert (row["parent_id"], row["parent_external_id"]) == (None, "L-1")


async def test_malformed_model_fields_reject_the_item_only(pool, integration, settings) -> None:
    up = Upstream()
    up.items["B-1"] = WorkItem("B-1", "bad", Status.QUEUED, T0, labels="not-a-list")  # type: ignore[arg-type]
    up.items["B-2"] = WorkItem("B-2", "bad", Status.QUEUED, T0, item_type="saga")
    up.items["G-1"] = WorkItem(
        "G-1", "good", Status.QUEUED, T0, labels=("x\x00y", "x\x00y", "z" * 600)
    )
    await run(pool, integration, settings, up)
    rows = await pool.fetch("SELECT external_id, labels FROM work_items")
    assert [(r["external_id"], len(r["labels"])) for r in rows] == [("G-1", 2)]
    assert rows[0]["labels"][0] == "xy"
    reasons = sorted(
        r["metadata"]["reason"]
        for r in await pool.fetch(
            "SELECT metadata FROM activity_logs WHERE event_type = 'work_item_rejected'"
        )
    )
    assert reasons == ["item_type 'saga' is not one of ours", "labels are not a list of text"]

"""The trackers' own history in the store: idempotent rows, start and completion times derived
from it, the metrics that follow, and the dashboard views (schema 0011). Real PostgreSQL, the
in-test connector handing items with their history to a real sync run."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from connectors.base import HistoryEntry, Status, WorkItem
from tests.fake_connector import T0, Upstream, fake_connector_class
from tests.helpers import make_integration, make_team
from worker import sync
from worker.settings import Settings
from worker.sync import RunOptions

H = timedelta(hours=1)

# queued -> in progress -> review -> done -> reopened -> done, all before the first sync
FLOW = [
    ("c1", None, "To Do", None, Status.QUEUED, 0),
    ("c2", "To Do", "In Progress", Status.QUEUED, Status.IN_PROGRESS, 2),
    ("c3", "In Progress", "In Review", Status.IN_PROGRESS, Status.PR_READY, 10),
    ("c4", "In Review", "Done", Status.PR_READY, Status.COMPLETED, 20),
    ("c5", "Done", "In Progress", Status.COMPLETED, Status.IN_PROGRESS, 30),
    ("c6", "In Progress", "Done", Status.IN_PROGRESS, Status.COMPLETED, 40),
]


def status_history(flow: list[tuple]) -> tuple[HistoryEntry, ...]:
    return tuple(
        HistoryEntry(
            change_id=cid,
            field="status",
            changed_at=T0 + hours * H,
            from_value=old,
            to_value=new,
            from_status=old_s,
            to_status=new_s,
            actor_name="Ada",
            actor_id="acct-1",
        )
        for cid, old, new, old_s, new_s, hours in flow
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", sweep_every_runs=0)


@pytest.fixture
async def integration(pool: asyncpg.Pool) -> uuid.UUID:
    team = await make_team(pool, "Alpha")
    return await make_integration(pool, team, "github", {"token": "tok-history-1"}, interval=60)


def item(status: Status, hours: float, flow: list[tuple], ext: str = "H-1") -> WorkItem:
    return WorkItem(
        external_id=ext,
        external_key=ext,
        title="Cycle me",
        status=status,
        updated_at=T0 + hours * H,
        history=status_history(flow),
    )


async def run(pool: asyncpg.Pool, integration: uuid.UUID, settings: Settings, up: Upstream):
    result = await sync.run_integration(
        pool,
        integration,
        settings,
        environ={},
        options=RunOptions(force=True),
        loader=lambda source: fake_connector_class(up),
    )
    assert result.outcome == "succeeded", result.reason
    return result


async def test_times_come_from_history_written_before_the_first_sync(
    pool, integration, settings
) -> None:
    up = Upstream()
    up.items["H-1"] = item(Status.COMPLETED, 40, FLOW)
    first = await run(pool, integration, settings, up)
    assert first.created == 1

    row = await pool.fetchrow("SELECT started_at, completed_at, time_basis FROM work_items")
    assert row["started_at"] == T0 + 2 * H  # the first move into progress
    assert row["completed_at"] == T0 + 40 * H  # the last move into done, after the reopen
    assert row["time_basis"] == "history"
    stored = await pool.fetch(
        "SELECT change_id, from_value, to_value, to_status, actor_name, changed_at"
        " FROM work_item_history ORDER BY changed_at"
    )
    assert [(r["change_id"], r["to_value"], r["to_status"]) for r in stored] == [
        (c, new, str(s)) for c, _, new, _, s, _ in FLOW
    ]
    assert stored[0]["from_value"] is None and stored[0]["actor_name"] == "Ada"

    # the metrics day: one completion, 38 hours from start to completion (hand computed)
    day = await pool.fetchrow(
        "SELECT metric_date, stories_completed, avg_completion_time_hours FROM metrics"
        " WHERE stories_completed > 0"
    )
    assert day["metric_date"] == (T0 + 40 * H).date()
    assert (day["stories_completed"], float(day["avg_completion_time_hours"])) == (1, 38.0)

    before = await pool.fetchval("SELECT count(*) FROM activity_logs")
    second = await run(pool, integration, settings, up)
    assert (second.created, second.updated) == (0, 0)
    assert await pool.fetchval("SELECT count(*) FROM work_item_history") == len(FLOW)
    assert await pool.fetchval("SELECT count(*) FROM activity_logs") == before + 2  # start, end


async def test_a_reopen_in_history_clears_completion_and_a_later_entry_adds_to_it(
    pool, integration, settings
) -> None:
    up = Upstream()
    up.items["H-1"] = item(Status.IN_PROGRESS, 30, FLOW[:5])
    await run(pool, integration, settings, up)
    row = await pool.fetchrow("SELECT started_at, completed_at, time_basis FROM work_items")
    assert (row["started_at"], row["completed_at"]) == (T0 + 2 * H, None)

    # the next read carries only the newest change: the stored ones still count
    up.items["H-1"] = replace(item(Status.COMPLETED, 40, FLOW[5:]))
    result = await run(pool, integration, settings, up)
    assert result.updated == 1
    row = await pool.fetchrow("SELECT started_at, completed_at, time_basis FROM work_items")
    assert (row["started_at"], row["completed_at"], row["time_basis"]) == (
        T0 + 2 * H,
        T0 + 40 * H,
        "history",
    )
    assert await pool.fetchval("SELECT count(*) FROM work_item_history") == 6


async def test_history_that_does_not_reach_back_to_creation_does_not_set_the_start(
    pool, integration, settings
) -> None:
    up = Upstream()
    # only the last 100 changes, say: the creation is not among them
    up.items["H-1"] = replace(item(Status.COMPLETED, 40, FLOW[3:]), started_at=T0 + 1 * H)
    await run(pool, integration, settings, up)
    row = await pool.fetchrow("SELECT started_at, completed_at, time_basis FROM work_items")
    assert row["started_at"] == T0 + 1 * H  # the tracker's own field: history cannot tell
    assert row["completed_at"] == T0 + 40 * H
    assert row["time_basis"] == "history"


async def test_without_history_the_basis_says_where_times_came_from(
    pool, integration, settings
) -> None:
    up = Upstream()
    up.items["T-1"] = WorkItem("T-1", "tracker", Status.COMPLETED, T0, completed_at=T0)
    up.items["O-1"] = WorkItem("O-1", "observed", Status.IN_PROGRESS, T0)
    up.items["Q-1"] = WorkItem("Q-1", "queued", Status.QUEUED, T0)
    await run(pool, integration, settings, up)
    basis = dict(await pool.fetch("SELECT external_id, time_basis FROM work_items"))
    assert basis == {"T-1": "tracker", "O-1": "observed", "Q-1": None}


async def test_a_malformed_history_entry_rejects_its_item_only(pool, integration, settings) -> None:
    up = Upstream()
    bad = HistoryEntry("x", "colour", T0, to_value="red")
    up.items["H-1"] = replace(item(Status.COMPLETED, 40, FLOW), history=(bad,))
    up.items["H-2"] = item(Status.COMPLETED, 41, FLOW, ext="H-2")
    await run(pool, integration, settings, up)
    assert [r["external_id"] for r in await pool.fetch("SELECT external_id FROM work_items")] == [
        "H-2"
    ]
    rejected = await pool.fetchrow(
        "SELECT metadata FROM activity_logs WHERE event_type = 'work_item_rejected'"
    )
    assert "history entry 0" in str(rejected["metadata"])


async def test_history_goes_with_its_item_only(pool, integration, settings) -> None:
    up = Upstream()
    up.items["H-1"] = item(Status.COMPLETED, 40, FLOW)
    up.items["H-2"] = item(Status.COMPLETED, 41, FLOW, ext="H-2")
    await run(pool, integration, settings, up)
    await pool.execute("DELETE FROM work_items WHERE external_id = 'H-1'")
    assert await pool.fetchval("SELECT count(*) FROM work_item_history") == len(FLOW)


async def test_dashboard_views_read_the_history(pool, integration, settings) -> None:
    up = Upstream()
    up.items["H-1"] = item(Status.COMPLETED, 40, FLOW)
    await run(pool, integration, settings, up)

    changes = await pool.fetch(
        "SELECT from_name, to_name, to_status, at_creation FROM v_status_changes"
        " ORDER BY changed_at"
    )
    assert [(r["to_name"], r["at_creation"]) for r in changes][:2] == [
        ("To Do", True),
        ("In Progress", False),
    ]
    hours = {
        r["status"]: (float(r["hours"]), r["visits"], r["current"])
        for r in await pool.fetch("SELECT * FROM v_time_in_status")
    }
    # queued 0-2, in progress 2-10 and 30-40, review 10-20, done 20-30 (then since 40: current)
    assert hours["queued"] == (2.0, 1, False)
    assert hours["in_progress"] == (18.0, 2, False)
    assert hours["pr_ready"] == (10.0, 1, False)
    assert hours["completed"][1:] == (2, True)

    cycle = await pool.fetchrow("SELECT * FROM v_cycle_time")
    assert (float(cycle["lead_time_hours"]), float(cycle["cycle_time_hours"])) == (40.0, 38.0)
    assert cycle["created_upstream_at"] == T0

    flow = await pool.fetch(
        "SELECT day, status, items FROM v_cumulative_flow ORDER BY day DESC LIMIT 1"
    )
    assert [(r["status"], r["items"]) for r in flow] == [("completed", 1)]

"""The trackers' own history in the store: idempotent rows, start and completion times derived
from it, the metrics that follow, and the dashboard views (schema 0011). Real PostgreSQL, the
in-test connector handing items with their history to a real sync run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from connectors.base import (
    HistoryEntry,
    HistoryPage,
    HistoryTodo,
    RetriableError,
    Status,
    WorkItem,
)
from tests.fake_connector import T0, Upstream, fake_connector_class
from tests.helpers import make_integration, make_team, succeeded_run
from worker import sync
from worker.commands import status
from worker.settings import Settings
from worker.store import history as history_store
from worker.store import sync as store
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


async def run(
    pool: asyncpg.Pool, integration: uuid.UUID, settings: Settings, up: Upstream
) -> sync.RunResult:
    return await succeeded_run(pool, integration, settings, fake_connector_class(up))


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
    # a run that changes nothing writes no row (the sync state counts it: worker/runlog.py)
    assert await pool.fetchval("SELECT count(*) FROM activity_logs") == before


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


# ---------------------------------------------------------------------------------------------
# The history phase: feeds and items read by id, within a budget, resumable
# ---------------------------------------------------------------------------------------------
@dataclass
class Feed:
    """A tracker's history feed (say a project's revisions): events in order, read `page` at a
    time from a token; and per-item histories for items marked pending."""

    events: list[tuple[str, HistoryEntry]] = field(default_factory=list)  # (external_id, entry)
    page: int = 2
    per_item: dict[str, list[HistoryEntry]] = field(default_factory=dict)
    asked: list[HistoryTodo] = field(default_factory=list)
    fail_at_event: int | None = None

    def add_flow(self, ext: str, flow: list[tuple], hours_offset: float = 0) -> None:
        for entry in status_history(flow):
            moved = replace(
                entry,
                changed_at=entry.changed_at + hours_offset * H,
                change_id=f"{ext}/{entry.change_id}",
            )
            self.events.append((ext, moved))
        # a feed lists changes in the order they happened (revisions, events)
        self.events.sort(key=lambda pair: (pair[1].changed_at, pair[1].change_id))


def with_history(up: Upstream, feed: Feed) -> type[Any]:
    base = fake_connector_class(up)

    class WithHistory(base):  # type: ignore[misc, valid-type]
        def feed_scopes(self) -> list[str]:
            return [""]

        async def history(self, todo: HistoryTodo) -> AsyncIterator[HistoryPage]:
            feed.asked.append(todo)
            if "" in todo.feeds:
                start = int(todo.feeds[""] or 0)
                for at in range(start, len(feed.events), feed.page):
                    if feed.fail_at_event is not None and at >= feed.fail_at_event:
                        raise RetriableError("feed 503")
                    chunk = feed.events[at : at + feed.page]
                    entries: dict[str, list[HistoryEntry]] = {}
                    for ext, entry in chunk:
                        entries.setdefault(ext, []).append(entry)
                    yield HistoryPage(
                        entries,
                        checkpoint={"": str(at + len(chunk))},
                        through={"": chunk[-1][1].changed_at},
                    )
            for ext in todo.items:
                yield HistoryPage({ext: feed.per_item.get(ext, [])}, complete=[ext])

    return WithHistory


async def run_with(pool, integration, settings, up, feed, **options: Any):
    result = await sync.run_integration(
        pool,
        integration,
        settings,
        environ={},
        options=RunOptions(force=True, **options),
        loader=lambda source: with_history(up, feed),
    )
    return result


async def test_a_feed_reads_history_after_the_items_and_not_again_when_nothing_changed(
    pool, integration, settings
) -> None:
    up, feed = Upstream(), Feed(page=10)
    up.items["H-1"] = WorkItem("H-1", "a", Status.COMPLETED, T0 + 40 * H)
    feed.add_flow("H-1", FLOW)
    first = await run_with(pool, integration, settings, up, feed)
    assert first.outcome == "succeeded", first.reason
    assert (first.history_requests, first.history_rows) == (1, len(FLOW))
    row = await pool.fetchrow("SELECT started_at, completed_at, time_basis FROM work_items")
    assert tuple(row) == (T0 + 2 * H, T0 + 40 * H, "history")
    # the item's times changed after its page: an activity row says so
    updated = await pool.fetchrow(
        "SELECT metadata FROM activity_logs WHERE event_type = 'work_item_updated'"
    )
    assert set(updated["metadata"]["fields"]) == {"started_at", "completed_at"}

    second = await run_with(pool, integration, settings, up, feed)
    assert second.outcome == "succeeded" and second.history_requests == 0
    assert len(feed.asked) == 1  # nothing changed: the feed is not asked at all
    async with pool.acquire() as conn:
        assert await history_store.backlog(conn, integration, [""]) == 0


async def test_the_budget_bounds_a_run_and_the_next_run_resumes_where_it_stopped(
    pool, integration, settings
) -> None:
    up, feed = Upstream(), Feed(page=2)
    for n in range(1, 6):
        ext = f"H-{n}"
        up.items[ext] = WorkItem(ext, ext, Status.COMPLETED, T0 + (40 + n) * H)
        feed.add_flow(ext, FLOW, hours_offset=n)
    integration_budget = 2
    await pool.execute(
        "UPDATE integrations SET config = config || jsonb_build_object('history_budget', $1::int)",
        integration_budget,
    )
    runs = []
    backlogs = []
    while True:
        result = await run_with(pool, integration, settings, up, feed)
        assert result.outcome == "succeeded", result.reason
        runs.append(result.history_requests)
        backlogs.append(await pool.fetchval("SELECT history_backlog FROM integration_sync_state"))
        gauge = REGISTRY.get_sample_value(
            "c9_sync_history_backlog", {"integration_id": str(integration)}
        )
        assert gauge == backlogs[-1]
        if result.history_requests == 0:
            break
        assert result.history_requests <= integration_budget
        assert len(runs) < 20
    assert sum(runs) == 15  # 30 events, 2 a page: every page read once, none twice
    # what status shows: the items the feed has not read yet, shrinking run by run, then none
    assert backlogs[0] == 5 and backlogs[-1] == 0
    assert backlogs == sorted(backlogs, reverse=True)
    assert status.history_cell(backlogs[0]) == "5 to read" and status.history_cell(0) == "read"
    assert [todo.feeds[""] for todo in feed.asked] == [None, "4", "8", "12", "16", "20", "24", "28"]
    assert await pool.fetchval("SELECT count(*) FROM work_item_history") == 30
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM work_items WHERE time_basis = 'history'"
            " AND started_at = $1::timestamptz + (substr(external_id, 3)::int + 2) * interval '1 hour'",
            T0,
        )
        == 5
    )


async def test_a_feed_that_fails_keeps_the_pages_it_committed(pool, integration, settings) -> None:
    up, feed = Upstream(), Feed(page=2, fail_at_event=4)
    up.items["H-1"] = WorkItem("H-1", "a", Status.COMPLETED, T0 + 40 * H)
    feed.add_flow("H-1", FLOW)
    failed = await run_with(pool, integration, settings, up, feed)
    assert failed.outcome == "failed" and "feed 503" in failed.reason
    assert await pool.fetchval("SELECT count(*) FROM work_items") == 1  # the items stay
    assert await pool.fetchval("SELECT count(*) FROM work_item_history") == 4
    feed.fail_at_event = None
    again = await run_with(pool, integration, settings, up, feed)
    assert again.outcome == "succeeded" and again.history_requests == 1
    assert feed.asked[-1].feeds[""] == "4"
    assert await pool.fetchval("SELECT count(*) FROM work_item_history") == len(FLOW)


async def test_a_failing_history_read_does_not_cost_the_sweep_its_turn(
    pool, integration, settings
) -> None:
    """The census of upstream ids runs before the history phase: a history read that fails
    (a rate limit, a 503) fails the run, but an item deleted upstream is still found."""
    up, feed = Upstream(), Feed(page=2)
    up.items["H-1"] = WorkItem("H-1", "a", Status.COMPLETED, T0 + 40 * H)
    up.items["H-2"] = WorkItem("H-2", "b", Status.QUEUED, T0)
    await run_with(pool, integration, settings, up, feed)
    del up.items["H-2"]
    feed.add_flow("H-1", FLOW)
    feed.fail_at_event = 0
    listed = up.ids_listed
    failed = await run_with(pool, integration, settings, up, feed, full=True)
    assert failed.outcome == "failed" and "feed 503" in failed.reason
    assert up.ids_listed > listed  # the census ran
    removed = await pool.fetchval(
        "SELECT removed_upstream_at IS NOT NULL FROM work_items WHERE external_id = 'H-2'"
    )
    assert removed


async def test_history_of_an_item_not_synced_yet_waits_for_it(pool, integration, settings) -> None:
    up, feed = Upstream(), Feed(page=10)
    up.items["H-1"] = WorkItem("H-1", "a", Status.QUEUED, T0)
    feed.add_flow("H-1", FLOW[:1])
    feed.add_flow("H-2", FLOW)  # created upstream after the items were listed
    await run_with(pool, integration, settings, up, feed)
    assert await pool.fetchval("SELECT count(*) FROM history_orphans") == len(FLOW)

    up.items["H-2"] = WorkItem("H-2", "b", Status.COMPLETED, T0 + 40 * H)
    await run_with(pool, integration, settings, up, feed)
    assert await pool.fetchval("SELECT count(*) FROM history_orphans") == 0
    row = await pool.fetchrow(
        "SELECT started_at, completed_at, time_basis FROM work_items WHERE external_id = 'H-2'"
    )
    assert tuple(row) == (T0 + 2 * H, T0 + 40 * H, "history")


async def test_items_whose_history_is_pending_are_read_by_id_oldest_first(
    pool, integration, settings
) -> None:
    up, feed = Upstream(), Feed()
    for n in (1, 2, 3):
        ext = f"P-{n}"
        up.items[ext] = replace(
            item(Status.COMPLETED, 40 + n, FLOW[3:], ext=ext), history_pending=True
        )
        feed.per_item[ext] = list(status_history(FLOW))
    await pool.execute(
        "UPDATE integrations SET config = config || '{\"history_budget\": 2}'::jsonb"
    )
    await run_with(pool, integration, settings, up, feed)
    assert feed.asked[-1].items == ["P-1", "P-2"]
    pending = [r[0] for r in await pool.fetch(
        "SELECT external_id FROM work_items WHERE history_pending ORDER BY 1"
    )]  # fmt: skip
    assert pending == ["P-3"]
    started = await pool.fetchval("SELECT started_at FROM work_items WHERE external_id = 'P-1'")
    assert started == T0 + 2 * H  # the whole history reaches back to creation now
    await run_with(pool, integration, settings, up, feed)
    assert feed.asked[-1].items == ["P-3"]
    assert not await pool.fetchval("SELECT bool_or(history_pending) FROM work_items")


async def test_a_budget_of_zero_reads_no_history(pool, integration, settings) -> None:
    up, feed = Upstream(), Feed()
    up.items["H-1"] = WorkItem("H-1", "a", Status.COMPLETED, T0 + 40 * H)
    feed.add_flow("H-1", FLOW)
    await pool.execute("UPDATE integrations SET config = config || '{\"history_budget\": 0}'")
    result = await run_with(pool, integration, settings, up, feed)
    assert result.outcome == "succeeded" and feed.asked == []


async def test_the_backlog_of_a_connector_without_feeds_counts_its_pending_items(
    pool, integration, settings
) -> None:
    up, feed = Upstream(), Feed()
    for n in (1, 2, 3):
        ext = f"P-{n}"
        up.items[ext] = replace(
            item(Status.COMPLETED, 40 + n, FLOW[3:], ext=ext), history_pending=True
        )
        feed.per_item[ext] = list(status_history(FLOW))
    per_item_only = with_history(up, feed)

    class NoFeeds(per_item_only):  # type: ignore[misc, valid-type]
        def feed_scopes(self) -> list[str]:
            return []

    await pool.execute("UPDATE integrations SET config = config || '{\"history_budget\": 2}'")
    counted = []
    for _ in range(2):
        result = await sync.run_integration(
            pool, integration, settings, environ={}, options=RunOptions(force=True),
            loader=lambda source: NoFeeds,
        )  # fmt: skip
        assert result.outcome == "succeeded", result.reason
        counted.append(await pool.fetchval("SELECT history_backlog FROM integration_sync_state"))
    assert counted == [1, 0]


async def test_a_history_page_writes_each_item_once(pool, integration, settings) -> None:
    """The items a page reads whole get their derived times and lose their pending flag in one
    write: one new row version each, not one for the times and another for the flag."""
    up, feed = Upstream(), Feed()
    for n in (1, 2):
        ext = f"P-{n}"
        up.items[ext] = replace(
            item(Status.COMPLETED, 40 + n, FLOW[3:], ext=ext), history_pending=True
        )
        feed.per_item[ext] = list(status_history(FLOW))
    await pool.execute(
        "UPDATE integrations SET config = config || '{\"history_budget\": 1}'::jsonb"
    )
    await run_with(pool, integration, settings, up, feed)  # P-1 read, P-2 left pending
    await pool.execute(
        "CREATE TABLE item_writes (external_id text);"
        " CREATE FUNCTION count_item_write() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN INSERT INTO item_writes VALUES (NEW.external_id); RETURN NEW; END $$;"
        " CREATE TRIGGER count_item_writes AFTER UPDATE ON work_items"
        " FOR EACH ROW EXECUTE FUNCTION count_item_write()"
    )
    await run_with(pool, integration, settings, up, feed)  # P-2's history: times, flag
    row = await pool.fetchrow(
        "SELECT started_at, time_basis, history_pending FROM work_items WHERE external_id = 'P-2'"
    )
    assert tuple(row) == (T0 + 2 * H, "history", False)
    writes = [r[0] for r in await pool.fetch("SELECT external_id FROM item_writes")]
    assert writes == ["P-2"]


async def test_deriving_times_is_planned_on_the_table_as_it_is_not_as_it_was(pool) -> None:
    """A run's connection caches generic plans (store.run_start); the derivation's best plan
    follows work_items' size, which a first import grows from nothing: planned when the table
    held a few rows, it scanned every row of it for every page after (a quadratic import)."""
    team = await make_team(pool, "Plans")
    integration = await make_integration(pool, team, "jira", {"token": "t"})
    entry = status_history(FLOW[:2])

    def items(n: int, start: int) -> list[WorkItem]:
        return [
            WorkItem(f"P-{k}", "t", Status.IN_PROGRESS, T0, history=entry)
            for k in range(start, start + n)
        ]

    async with pool.acquire() as conn:
        await conn.execute("SET plan_cache_mode = force_generic_plan")  # (as a run does)
        async with conn.transaction():  # a first page: a tiny table
            await store.upsert_items(
                conn, source="jira", team_id=team, integration_id=integration,
                items=items(3, 0),
            )  # fmt: skip
        await conn.execute(  # (not analyzed since: a first import outruns autovacuum)
            "INSERT INTO work_items (team_id, source, external_id, title, description)"
            " SELECT $1, 'jira', 'BULK-' || g, 't', repeat(md5(g::text), 8)"
            " FROM generate_series(1, 20000) g",
            team,
        )
        ids = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM work_items WHERE source = 'jira' AND external_id = ANY($1)",
                ["P-0", "P-1"],
            )
        ]
        async with conn.transaction():  # a later page: the table is large now
            scans = "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'work_items'"
            before = await conn.fetchval(scans)  # (this backend's counts not reported yet)
            await history_store.derive_times(conn, ids)
            scanned = await conn.fetchval(scans) - before
        await conn.execute("RESET plan_cache_mode")
    assert scanned == 0

"""Linear's issue history end to end: the Linear sandbox records an IssueHistory for every change
it makes and serves `Issue.history` with Linear's paging; the connector reads it by id for the
issues a run saw change; a real sync run (`worker.sync.run_integration`) stores it in a real
PostgreSQL and derives start and completion times and the metrics day from it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from connectors.base import Status
from connectors.linear import HISTORY_ENTRIES, HISTORY_ISSUES, HISTORY_PAGE
from connectors.sandbox.base import Fault, Request, Response
from connectors.sandbox.graphql import operation_name
from connectors.sandbox.linear import LinearSandbox
from tests.helpers import forced_run
from tests.integration.connectors.contract import T0
from tests.integration.connectors.sync_helpers import linear_integration
from worker import sync
from worker.settings import Settings
from worker.sync import RunOptions

H = timedelta(hours=1)
ADA_EMAIL = "ada.lovelace@analytical.example"

# queued -> in progress -> review -> done -> reopened -> done, all before the first sync
FLOW = [
    (2, "In Progress"),
    (10, "In Review"),
    (20, "Done"),
    (30, "In Progress"),
    (40, "Done"),
]


@pytest.fixture
def linear() -> Iterator[LinearSandbox]:
    with LinearSandbox() as sb:
        yield sb  # type: ignore[misc]


def history_ops(sandbox: LinearSandbox) -> list[str]:
    """The history operations the sandbox was sent, in order."""
    names = [operation_name(r.json()["query"]) for r in sandbox.requests]
    return [n for n in names if n and n.startswith("SyncIssueHistory")]


def flowed_issue(sandbox: LinearSandbox, n: int, *, actor: str, hours: float = 0) -> str:
    """An issue created at T0 + hours in Todo, moved through FLOW by `actor`."""
    start = T0 + hours * H
    issue = sandbox.add_issue("ENG", title=f"Cycle me {n}", created_at=start, updated_at=start)
    for offset, state in FLOW:
        sandbox.update_issue(issue["id"], at=start + offset * H, state=state, actor=actor)
    return str(issue["id"])


integration_for = linear_integration


async def run(pool: asyncpg.Pool, integration: uuid.UUID, settings: Settings) -> sync.RunResult:
    return await forced_run(pool, integration, settings)


async def set_budget(pool: asyncpg.Pool, integration: uuid.UUID, budget: int) -> None:
    await pool.execute(
        "UPDATE integrations SET config = config || jsonb_build_object('history_budget', $2::int)"
        " WHERE id = $1",
        integration,
        budget,
    )


async def test_a_flow_before_the_first_sync_gives_history_times_and_the_metrics_day(
    pool, linear, settings
) -> None:
    ada = linear.add_user("Ada Lovelace", email=ADA_EMAIL)
    cycle = linear.add_cycle("ENG", 7, starts_at=T0, ends_at=T0 + 14 * 24 * H)
    issue_id = flowed_issue(linear, 1, actor=ada)
    linear.update_issue(issue_id, at=T0 + 41 * H, assignee=ada, cycle=cycle, priority=2)
    integration = await integration_for(pool, linear)

    first = await run(pool, integration, settings)
    assert first.outcome == "succeeded", first.reason
    assert history_ops(linear) == ["SyncIssueHistory"]  # one issue, one request
    row = await pool.fetchrow(
        "SELECT started_at, completed_at, time_basis, history_pending FROM work_items"
    )
    assert tuple(row) == (T0 + 2 * H, T0 + 40 * H, "history", False)

    stored = await pool.fetch(
        "SELECT change_id, changed_at, from_value, to_value, from_status, to_status, actor_name,"
        " actor_id FROM work_item_history WHERE field = 'status' ORDER BY changed_at"
    )
    recorded = [h for h in linear.history_of(issue_id) if "toStateId" in h]
    # the creation is synthetic (Linear's entries need not carry the initial state); every other
    # row is one of Linear's IssueHistory entries, by its id, time and actor
    assert [r["change_id"] for r in stored] == [f"created:{issue_id}"] + [h["id"] for h in recorded]
    assert [(r["from_value"], r["to_value"]) for r in stored] == [
        (None, "Todo"),
        ("Todo", "In Progress"),
        ("In Progress", "In Review"),
        ("In Review", "Done"),
        ("Done", "In Progress"),
        ("In Progress", "Done"),
    ]
    assert [r["to_status"] for r in stored] == [
        Status.QUEUED,
        Status.IN_PROGRESS,
        Status.PR_READY,
        Status.COMPLETED,
        Status.IN_PROGRESS,
        Status.COMPLETED,
    ]
    assert [r["changed_at"] for r in stored] == [T0] + [T0 + h * H for h, _ in FLOW]
    assert stored[0]["actor_name"] is None  # synthetic: no actor is claimed
    assert {(r["actor_name"], r["actor_id"]) for r in stored[1:]} == {("Ada Lovelace", ada)}

    others = await pool.fetch(
        "SELECT field, from_value, to_value, actor_name FROM work_item_history"
        " WHERE field <> 'status' ORDER BY field"
    )
    assert [tuple(r) for r in others] == [
        ("assignee", None, "Ada Lovelace", "Sandbox Admin"),
        ("priority", "No priority", "High", "Sandbox Admin"),
        ("sprint", None, "Cycle 7", "Sandbox Admin"),
    ]

    # the metrics day: one completion, 38 hours from start (T0+2h) to completion (T0+40h)
    day = await pool.fetchrow(
        "SELECT metric_date, stories_completed, avg_completion_time_hours FROM metrics"
        " WHERE stories_completed > 0"
    )
    assert day["metric_date"] == (T0 + 40 * H).date()
    assert (day["stories_completed"], float(day["avg_completion_time_hours"])) == (1, 38.0)

    # the actor's e-mail is served by the sandbox, never selected, never stored
    dump = await pool.fetchval(
        "SELECT concat_ws(' ', (SELECT string_agg(h::text, ' ') FROM work_item_history h),"
        " (SELECT string_agg(w::text, ' ') FROM work_items w),"
        " (SELECT string_agg(a::text, ' ') FROM activity_logs a))"
    )
    assert "Ada Lovelace" in dump and ADA_EMAIL not in dump
    assert all("email" not in r.json()["query"] for r in linear.requests)

    # a second sync (the overlap re-reads the issue) writes nothing and asks for no history
    linear.clear_requests()
    rows = await pool.fetchval("SELECT count(*) FROM work_item_history")
    second = await run(pool, integration, settings)
    assert second.outcome == "succeeded", second.reason
    assert (second.created, second.updated, second.history_rows) == (0, 0, 0)
    assert history_ops(linear) == []
    assert len(linear.requests) == 1  # the one listing request of the scope
    assert await pool.fetchval("SELECT count(*) FROM work_item_history") == rows

    # a later change: only that issue's history is read again, the stored rows stay
    linear.update_issue(issue_id, at=T0 + 50 * H, state="In Progress", actor=ada)
    third = await run(pool, integration, settings)
    assert third.outcome == "succeeded", third.reason
    assert history_ops(linear) == ["SyncIssueHistory"]
    assert third.history_rows == 1
    row = await pool.fetchrow("SELECT status, started_at, completed_at FROM work_items")
    assert tuple(row) == ("in_progress", T0 + 2 * H, None)


async def test_a_long_history_is_followed_page_by_page(pool, linear, settings) -> None:
    # 10 entries come with the group, the other 130 in three follow-ups of 50
    assert (HISTORY_ENTRIES, HISTORY_PAGE) == (10, 50)
    issue_id = flowed_issue(linear, 1, actor=linear.viewer_id)
    for n in range(135):
        linear.update_issue(issue_id, at=T0 + (41 + n) * H, priority=1 + n % 4)
    integration = await integration_for(pool, linear)
    result = await run(pool, integration, settings)
    assert result.outcome == "succeeded", result.reason
    assert history_ops(linear) == [
        "SyncIssueHistory",
        "SyncIssueHistoryMore",
        "SyncIssueHistoryMore",
        "SyncIssueHistoryMore",
    ]
    assert result.history_requests == 4
    counts = dict(await pool.fetch("SELECT field, count(*) FROM work_item_history GROUP BY 1"))
    assert counts == {"status": 6, "priority": 135}
    row = await pool.fetchrow("SELECT started_at, completed_at, time_basis FROM work_items")
    assert tuple(row) == (T0 + 2 * H, T0 + 40 * H, "history")


async def test_a_budget_smaller_than_the_backlog_completes_over_several_runs(
    pool, linear, settings
) -> None:
    count = 2 * HISTORY_ISSUES + 5
    ids = [flowed_issue(linear, n, actor=linear.viewer_id, hours=n) for n in range(count)]
    integration = await integration_for(pool, linear, page_size=250)
    await set_budget(pool, integration, 1)  # one request a run: HISTORY_ISSUES issues
    spent = []
    for _ in range(6):
        result = await run(pool, integration, settings)
        assert result.outcome == "succeeded", result.reason
        spent.append(result.history_requests)
        if result.history_requests == 0:
            break
    assert spent == [1, 1, 1, 0]
    assert await pool.fetchval("SELECT count(*) FROM work_item_history") == count * 6
    assert await pool.fetchval(
        "SELECT count(*) FROM work_items WHERE time_basis = 'history' AND NOT history_pending"
        " AND completed_at - started_at = interval '38 hours'"
    ) == len(ids)


async def test_a_run_cut_mid_way_keeps_what_it_committed_and_the_next_resumes(
    pool, linear, settings
) -> None:
    count = 2 * HISTORY_ISSUES + 10
    for n in range(count):
        flowed_issue(linear, n, actor=linear.viewer_id, hours=n)
    integration = await integration_for(pool, linear, page_size=250)
    await set_budget(pool, integration, 0)
    assert (await run(pool, integration, settings)).outcome == "succeeded"  # items only
    assert await pool.fetchval("SELECT count(*) FROM work_items WHERE history_pending") == count

    # the second history request of the run is refused: the run fails after the first group
    seen: list[str] = []

    def cut(request: Request, response: Response) -> None:
        name = operation_name(request.json()["query"]) if request.path == "/graphql" else None
        if name == "SyncIssueHistory":
            seen.append(name)
            if len(seen) == 1:
                linear.inject(Fault("400_json", 1))

    linear.response_hook = cut
    await set_budget(pool, integration, 10)
    failed = await run(pool, integration, settings)
    assert failed.outcome == "failed", failed.reason
    left = count - HISTORY_ISSUES
    assert await pool.fetchval("SELECT count(*) FROM work_items WHERE history_pending") == left
    assert await pool.fetchval("SELECT count(*) FROM work_item_history") == HISTORY_ISSUES * 6

    linear.response_hook = None
    linear.clear_requests()
    again = await run(pool, integration, settings)
    assert again.outcome == "succeeded", again.reason
    assert history_ops(linear) == ["SyncIssueHistory", "SyncIssueHistory"]  # the 60 left
    assert await pool.fetchval("SELECT count(*) FROM work_items WHERE history_pending") == 0
    assert await pool.fetchval("SELECT count(*) FROM work_item_history") == count * 6


def test_the_sandbox_serves_history_with_relay_paging(linear) -> None:
    issue_id = flowed_issue(linear, 1, actor=linear.viewer_id)
    query = """
    query H($id: String!, $first: Int, $after: String, $last: Int, $before: String) {
      issue(id: $id) {
        history(first: $first, after: $after, last: $last, before: $before) {
          nodes { id createdAt toState { name } }
          pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
        }
      }
    }"""

    def ask(**variables: Any) -> httpx.Response:
        return httpx.post(
            f"{linear.url}/graphql",
            json={"query": query, "variables": {"id": issue_id, **variables}},
            headers={"Authorization": linear.token},
        )

    every = ask().json()["data"]["issue"]["history"]
    times = [n["createdAt"] for n in every["nodes"]]
    assert len(times) == len(FLOW) and times == sorted(times, reverse=True)  # newest first
    head = ask(first=2).json()["data"]["issue"]["history"]
    assert head["pageInfo"]["hasNextPage"] and not head["pageInfo"]["hasPreviousPage"]
    rest = ask(first=10, after=head["pageInfo"]["endCursor"]).json()["data"]["issue"]["history"]
    assert [n["id"] for n in head["nodes"] + rest["nodes"]] == [n["id"] for n in every["nodes"]]
    assert not rest["pageInfo"]["hasNextPage"] and rest["pageInfo"]["hasPreviousPage"]
    tail = ask(last=1).json()["data"]["issue"]["history"]
    assert tail["nodes"] == every["nodes"][-1:] and tail["pageInfo"]["hasPreviousPage"]
    bad = ask(first=1, after="no-such-entry")
    assert bad.status_code == 400
    assert "Invalid cursor" in bad.json()["errors"][0]["message"]
    too_many = ask(first=251)
    assert too_many.status_code == 400


async def test_history_stops_rather_than_wait_for_linears_budget(pool, settings) -> None:
    # 100,000 points an hour: the item pages fit at once; history goes on while a group fits
    # without pacing (ten more of them) and leaves a quarter, then stops: no request waits or is
    # refused, the run succeeds, the rest stays pending.
    left: list[int] = []

    def remaining(request: Request, response: Response) -> None:
        left.append(int(response.headers["X-RateLimit-Complexity-Remaining"]))

    with LinearSandbox(complexity_limit=100_000) as linear:
        count = 4 * HISTORY_ISSUES
        for n in range(count):
            flowed_issue(linear, n, actor=linear.viewer_id, hours=n)
        linear.response_hook = remaining
        integration = await integration_for(pool, linear, page_size=100)
        result = await run(pool, integration, settings)
        assert result.outcome == "succeeded", result.reason
        assert result.duration_s < 10
        assert linear.ratelimited == 0
        read = len(history_ops(linear))
        assert 0 < read < 4
        # the last group was sent with ten groups' worth left; after it, fewer than ten were
        assert 9 * 7_375 <= left[-1] < 10 * 7_375 and left[-1] > 25_000
        pending = await pool.fetchval("SELECT count(*) FROM work_items WHERE history_pending")
        assert pending == count - read * HISTORY_ISSUES


async def test_a_cut_while_following_a_long_history_keeps_the_group(
    pool, linear, settings, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    short = [flowed_issue(linear, n, actor=linear.viewer_id) for n in range(2)]
    long = flowed_issue(linear, 2, actor=linear.viewer_id, hours=1)
    for n in range(60):
        linear.update_issue(long, at=T0 + (42 + n) * H, priority=1 + n % 4)
    integration = await integration_for(pool, linear)

    def cut(request: Request, response: Response) -> None:
        if request.path == "/graphql" and operation_name(request.json()["query"]) == (
            "SyncIssueHistory"
        ):
            linear.inject(Fault("400_json", 1))  # the follow-up after the group is refused

    linear.response_hook = cut
    failed = await run(pool, integration, settings)
    assert failed.outcome == "failed", failed.reason
    assert "Linear rejected" in failed.reason
    assert linear.token not in failed.reason + caplog.text  # the API key is never shown
    assert history_ops(linear) == ["SyncIssueHistory", "SyncIssueHistoryMore"]
    pending = dict(await pool.fetch("SELECT external_id, history_pending FROM work_items"))
    assert pending == {short[0]: False, short[1]: False, long: True}
    # what the group brought of the long history is kept (its ten newest entries)
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM work_item_history h JOIN work_items w ON w.id = h.work_item_id"
            " WHERE w.external_id = $1",
            long,
        )
        == HISTORY_ENTRIES
    )

    linear.response_hook = None
    linear.clear_requests()
    again = await run(pool, integration, settings)
    assert again.outcome == "succeeded", again.reason
    # read again from its first entry: 65 entries are the group's 10 and two follow-ups
    assert history_ops(linear) == [
        "SyncIssueHistory",
        "SyncIssueHistoryMore",
        "SyncIssueHistoryMore",
    ]
    counts = dict(await pool.fetch(
        "SELECT w.external_id, count(*) FROM work_item_history h"
        " JOIN work_items w ON w.id = h.work_item_id GROUP BY 1"
    ))  # fmt: skip
    assert counts == {short[0]: 6, short[1]: 6, long: 66}
    assert not await pool.fetchval("SELECT bool_or(history_pending) FROM work_items")


async def test_issues_synced_before_history_was_read_get_it_with_a_full_sync(
    pool, linear, settings
) -> None:
    ids = [flowed_issue(linear, n, actor=linear.viewer_id, hours=n) for n in range(3)]
    integration = await integration_for(pool, linear)
    await set_budget(pool, integration, 0)
    assert (await run(pool, integration, settings)).outcome == "succeeded"
    # as rows synced by a version that read no history
    await pool.execute("UPDATE work_items SET history_pending = false")
    await set_budget(pool, integration, 50)
    linear.clear_requests()
    incremental = await run(pool, integration, settings)
    assert incremental.outcome == "succeeded", incremental.reason
    # only the issue the overlap re-reads (the newest) is read again: it gets its history
    assert history_ops(linear) == ["SyncIssueHistory"]
    assert await pool.fetchval("SELECT count(*) FROM work_item_history") == 6

    linear.clear_requests()
    full = await sync.run_integration(
        pool, integration, settings, environ={}, options=RunOptions(force=True, full=True)
    )
    assert full.outcome == "succeeded", full.reason
    assert history_ops(linear) == ["SyncIssueHistory"]
    assert await pool.fetchval("SELECT count(*) FROM work_item_history") == len(ids) * 6

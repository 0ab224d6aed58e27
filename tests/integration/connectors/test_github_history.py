"""GitHub issue history from the repository's issue events, end to end: the sandbox records an
event for every change, the connector walks `GET /repos/{o}/{r}/issues/events` with PyGithub's
Requester, a real sync run stores the rows in PostgreSQL and derives the times."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from connectors.base import Status
from connectors.github import GitHubConnector
from connectors.sandbox.base import Request, Response
from connectors.sandbox.github import GitHubSandbox
from tests.helpers import forced_run
from tests.integration.connectors.contract import PLANTED_TOKEN, T0
from tests.integration.connectors.sync_helpers import GITHUB_REPO as REPO
from tests.integration.connectors.sync_helpers import (
    github_integration,
    github_sandbox,
)
from worker import sync
from worker.settings import Settings

H = timedelta(hours=1)
EVENTS = "/issues/events"


@pytest.fixture
def sandbox() -> Iterator[GitHubSandbox]:
    """A sandbox whose requests and answers must conform to GitHub's published description."""
    yield from github_sandbox()


async def integration_for(pool: asyncpg.Pool, sandbox: GitHubSandbox, **config: Any) -> uuid.UUID:
    return await github_integration(
        pool, sandbox, **{"status_map": {"in review": "pr_ready"}, **config}
    )


async def run(pool: asyncpg.Pool, integration: uuid.UUID, settings: Settings) -> sync.RunResult:
    return await forced_run(pool, integration, settings, GitHubConnector)


def flow(sandbox: GitHubSandbox, hours: float = 0, title: str = "Cycle me") -> int:
    """queued -> in progress -> review -> done -> reopened -> done, `hours` after T0."""
    at = T0 + hours * H
    issue = sandbox.add_issue(REPO, title, created_at=at, updated_at=at, actor="mira")
    sandbox.update(issue.id, at=at + 2 * H, assignees=["ada"], actor="lead")
    sandbox.update(issue.id, at=at + 10 * H, labels=["in review"], actor="ada")
    sandbox.update(issue.id, at=at + 20 * H, state="closed", actor="ada")
    sandbox.update(issue.id, at=at + 30 * H, state="open", actor="lead")
    sandbox.update(issue.id, at=at + 40 * H, state="closed", actor="ada")
    return issue.id


async def test_a_flow_before_the_first_sync_gives_history_times_and_metrics(
    pool: asyncpg.Pool, sandbox: GitHubSandbox, settings: Settings
) -> None:
    issue_id = flow(sandbox)
    integration = await integration_for(pool, sandbox)
    first = await run(pool, integration, settings)
    assert first.outcome == "succeeded", first.reason
    assert first.history_requests == 1  # one listing of the repository's events

    row = await pool.fetchrow("SELECT status, started_at, completed_at, time_basis FROM work_items")
    assert row["status"] == "completed"
    assert row["started_at"] == T0 + 2 * H  # assigned: in progress
    assert row["completed_at"] == T0 + 40 * H  # the last closing, after the reopen
    assert row["time_basis"] == "history"

    stored = await pool.fetch(
        "SELECT change_id, from_value, to_value, from_status, to_status, actor_name, actor_id,"
        " changed_at FROM work_item_history WHERE field = 'status' ORDER BY changed_at"
    )
    events = sorted(sandbox.events[REPO], key=lambda e: e.id)
    ids = [str(e.id) for e in events]
    assert [
        (r["change_id"], r["from_value"], r["to_value"], r["from_status"], r["to_status"])
        for r in stored
    ] == [
        (f"created:{issue_id}", None, "open", None, "queued"),
        (ids[0], "open", "open", "queued", "in_progress"),
        (ids[1], "open", "in review", "in_progress", "pr_ready"),
        (ids[2], "in review", "completed", "pr_ready", "completed"),
        (ids[3], "completed", "in review", "completed", "pr_ready"),
        (ids[4], "in review", "completed", "pr_ready", "completed"),
    ]
    assert [r["changed_at"] for r in stored] == [T0 + h * H for h in (0, 2, 10, 20, 30, 40)]
    assert [r["actor_name"] for r in stored] == ["mira", "lead", "ada", "ada", "lead", "ada"]
    assert all(r["actor_id"] and r["actor_id"].isdigit() for r in stored)
    assignee = await pool.fetchrow(
        "SELECT change_id, from_value, to_value FROM work_item_history WHERE field = 'assignee'"
    )
    assert tuple(assignee) == (ids[0], None, "ada")
    # every actor came with a public e-mail address: none is stored anywhere
    dump = await pool.fetchval("SELECT string_agg(t::text, ' ') FROM work_item_history t")
    assert "@users.example" not in dump

    # the metrics day: one completion, 38 hours from start (T0+2h) to completion (T0+40h)
    day = await pool.fetchrow(
        "SELECT metric_date, stories_completed, avg_completion_time_hours FROM metrics"
        " WHERE stories_completed > 0"
    )
    assert day["metric_date"] == (T0 + 40 * H).date()
    assert (day["stories_completed"], float(day["avg_completion_time_hours"])) == (1, 38.0)

    rows = await pool.fetchval("SELECT count(*) FROM work_item_history")
    sandbox.clear_requests()
    second = await run(pool, integration, settings)
    assert second.outcome == "succeeded", second.reason
    assert (second.created, second.updated, second.history_requests) == (0, 0, 0)
    assert sandbox.requests_to(EVENTS) == []
    assert await pool.fetchval("SELECT count(*) FROM work_item_history") == rows

    # one more change: one listing, read down to the token only
    sandbox.update(issue_id, at=T0 + 50 * H, state="open", actor="lead")
    third = await run(pool, integration, settings)
    assert third.outcome == "succeeded", third.reason
    assert third.history_requests == 1
    assert [r.query.get("page") for r in sandbox.requests_to(EVENTS)] == [["1"]]
    row = await pool.fetchrow("SELECT status, started_at, completed_at FROM work_items")
    assert (row["status"], row["started_at"], row["completed_at"]) == (
        "pr_ready",
        T0 + 2 * H,
        None,
    )
    assert await pool.fetchval("SELECT count(*) FROM work_item_history") == rows + 1


async def test_a_budget_smaller_than_the_backlog_completes_over_several_runs(
    pool: asyncpg.Pool, sandbox: GitHubSandbox, settings: Settings
) -> None:
    for n in range(12):
        flow(sandbox, hours=50 * n, title=f"Issue {n}")
    # 12 issues x 5 events = 60 events, 7 a page: 9 pages, 2 requests a run
    integration = await integration_for(pool, sandbox, per_page=7, history_budget=2)
    runs = []
    while True:
        result = await run(pool, integration, settings)
        assert result.outcome == "succeeded", result.reason
        runs.append(result.history_requests)
        if result.history_requests == 0:
            break
        assert result.history_requests <= 2
        assert len(runs) < 20
    assert runs == [2, 2, 2, 2, 1, 0]
    pages = [r.query["page"][0] for r in sandbox.requests_to(EVENTS)]
    assert pages == [str(n) for n in range(1, 10)]  # every page read once, none twice
    assert await pool.fetchval("SELECT count(*) FROM work_item_history WHERE field = 'status'") == (
        12 * 6
    )
    started = await pool.fetch(
        "SELECT title, started_at, completed_at, time_basis FROM work_items ORDER BY title"
    )
    for row in started:
        n = int(row["title"].split()[1])
        assert row["started_at"] == T0 + (50 * n + 2) * H, row["title"]
        assert row["completed_at"] == T0 + (50 * n + 40) * H, row["title"]
        assert row["time_basis"] == "history"


async def test_a_run_cut_by_a_fault_keeps_its_pages_and_the_next_resumes(
    pool: asyncpg.Pool, sandbox: GitHubSandbox, settings: Settings
) -> None:
    for n in range(6):
        flow(sandbox, hours=50 * n, title=f"Issue {n}")
    integration = await integration_for(pool, sandbox, per_page=5)
    served: list[str] = []

    def fail_after_two(request: Request, response: Response) -> None:
        if EVENTS in request.path:
            served.append(request.query["page"][0])
            if len(served) == 2:  # every later events request fails (past the retries)
                sandbox.fail_next("5xx", count=20, retry_after=0, path_contains=EVENTS)

    sandbox.response_hook = fail_after_two
    cut = await run(pool, integration, settings)
    assert cut.outcome == "failed"
    assert PLANTED_TOKEN not in (cut.reason or "")
    kept = await pool.fetchval("SELECT count(*) FROM work_item_history")
    assert kept > 0  # the two pages read before the fault are committed
    sandbox.clear_faults()
    sandbox.clear_requests()
    sandbox.response_hook = None

    again = await run(pool, integration, settings)
    assert again.outcome == "succeeded", again.reason
    pages = [r.query["page"][0] for r in sandbox.requests_to(EVENTS)]
    assert pages[0] == "3" and pages == [str(n) for n in range(3, 7)]  # resumed, not restarted
    assert await pool.fetchval("SELECT count(*) FROM work_item_history WHERE field = 'status'") == (
        6 * 6
    )
    assert await pool.fetchval("SELECT count(*) FROM work_items WHERE time_basis = 'history'") == 6


async def test_pull_requests_and_other_events_write_no_history(
    pool: asyncpg.Pool, sandbox: GitHubSandbox, settings: Settings
) -> None:
    pr = sandbox.add_issue(REPO, "A PR", updated_at=T0, is_pr=True, labels=["in review"])
    sandbox.update(pr.id, at=T0 + H, state="closed", merged_at=T0 + H)
    issue = sandbox.add_issue(REPO, "Plain", updated_at=T0 + 2 * H, labels=["docs"])
    integration = await integration_for(pool, sandbox, include_pull_requests=True)
    result = await run(pool, integration, settings)
    assert result.outcome == "succeeded", result.reason
    rows = await pool.fetch(
        "SELECT w.external_id, h.field FROM work_item_history h JOIN work_items w ON w.id = h.work_item_id"
    )
    # the PR's events are passed over; the plain label changes no mapped field: creation only
    assert [(r["external_id"].rsplit("/", 1)[1], r["field"]) for r in rows] == [
        (str(issue.id), "status")
    ]
    assert Status.QUEUED == await pool.fetchval(
        "SELECT to_status FROM work_item_history WHERE from_value IS NULL"
    )


async def test_an_issue_without_events_gets_its_creation_when_its_first_event_comes(
    pool: asyncpg.Pool, sandbox: GitHubSandbox, settings: Settings
) -> None:
    quiet = sandbox.add_issue(REPO, "Quiet", updated_at=T0, actor="mira")
    flow(sandbox, hours=1)
    integration = await integration_for(pool, sandbox)
    first = await run(pool, integration, settings)
    assert first.outcome == "succeeded", first.reason
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM work_item_history h JOIN work_items w ON w.id = h.work_item_id"
            " WHERE w.title = 'Quiet'"
        )
        == 0
    )  # no event, no history

    sandbox.update(quiet.id, at=T0 + 60 * H, assignees=["ada"], actor="lead")
    second = await run(pool, integration, settings)
    assert second.outcome == "succeeded", second.reason
    assert second.history_requests == 1  # read down to the token only
    rows = await pool.fetch(
        "SELECT h.change_id, h.from_status, h.to_status, h.changed_at FROM work_item_history h"
        " JOIN work_items w ON w.id = h.work_item_id WHERE w.title = 'Quiet' AND field = 'status'"
        " ORDER BY changed_at"
    )
    assert [(r["change_id"], r["from_status"], r["to_status"]) for r in rows] == [
        (f"created:{quiet.id}", None, "queued"),
        (str(sandbox.events[REPO][-1].id), "queued", "in_progress"),
    ]
    row = await pool.fetchrow("SELECT started_at, time_basis FROM work_items WHERE title = 'Quiet'")
    assert (row["started_at"], row["time_basis"]) == (T0 + 60 * H, "history")


async def test_a_short_events_page_that_promises_more_is_sent_again(
    pool: asyncpg.Pool, sandbox: GitHubSandbox, settings: Settings
) -> None:
    for n in range(3):
        flow(sandbox, hours=50 * n, title=f"Issue {n}")
    integration = await integration_for(pool, sandbox, per_page=5)
    seen: list[str] = []

    def cut_the_second_page(request: Request, response: Response) -> None:
        if EVENTS in request.path:
            seen.append(request.query["page"][0])
            if len(seen) == 1:
                sandbox.answer_short(keep=2)  # the next list answer: 2 items, Link says next

    sandbox.response_hook = cut_the_second_page
    result = await run(pool, integration, settings)
    assert result.outcome == "succeeded", result.reason
    assert seen == ["1", "2", "2", "3"]  # the short page 2 was asked again, not taken as read
    assert await pool.fetchval("SELECT count(*) FROM work_item_history WHERE field = 'status'") == (
        3 * 6
    )

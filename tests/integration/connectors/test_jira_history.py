"""Jira's changelog through a real sync run: the sandbox over HTTP (Cloud and Data Center, every
request checked against the published API), the real SDK, real PostgreSQL.

An issue moved To Do -> In Progress -> In Review -> Done -> In Progress -> Done before the first
sync gets its start and completion from the changelog; a changelog cut in the search answer is
read whole by id (Cloud's changelog route, DC's expand on the issue) within the history budget,
over several runs, resuming after a run that failed mid-way; no e-mail address is stored.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta

import asyncpg
import pytest

from connectors.sandbox.jira import JiraSandbox, SandboxIssue
from tests.helpers import forced_run, make_integration, make_team
from tests.integration.connectors.contract import PLANTED_TOKEN, T0
from tests.integration.connectors.sync_helpers import (
    is_dc,
    jira_integration,
    jira_sandbox,
)
from tests.integration.connectors.test_jira import checked
from worker import sync
from worker.settings import Settings

H = timedelta(hours=1)
ADA = "Ada Lovelace"
#: (hours after creation, status) of the flow, all before the first sync
FLOW = [(2, "In Progress"), (10, "In Review"), (20, "Done"), (30, "In Progress"), (40, "Done")]
STATUSES = ["queued", "in_progress", "pr_ready", "completed", "in_progress", "completed"]


@pytest.fixture(params=["cloud", "dc"])
def jira(request: pytest.FixtureRequest) -> Iterator[JiraSandbox]:
    yield from jira_sandbox(request.param)


integration_of = jira_integration


def flowed(jira: JiraSandbox, n: int = 0, summary: str = "Cycle me") -> SandboxIssue:
    """An issue created at T0 (+n hours) and moved through FLOW by Ada, assigned to her first."""
    start = T0 + n * H
    issue = jira.add_issue("ABC", summary, created=start, updated=start)
    jira.update_issue(issue.id, at=start + 1 * H, by=ADA, assignee=ADA)
    for hours, status in FLOW:
        jira.update_issue(issue.id, at=start + hours * H, by=ADA, status=status)
    return issue


async def run(pool: asyncpg.Pool, integration: uuid.UUID, settings: Settings) -> sync.RunResult:
    return await forced_run(pool, integration, settings)


async def assert_times(pool: asyncpg.Pool, external_id: str, start_hours: float = 0) -> None:
    row = await pool.fetchrow(
        "SELECT started_at, completed_at, time_basis FROM work_items WHERE external_id = $1",
        external_id,
    )
    start = T0 + start_hours * H
    assert (row["started_at"], row["completed_at"], row["time_basis"]) == (
        start + 2 * H,  # the first move into progress
        start + 40 * H,  # the last move into done, after the reopen
        "history",
    )


async def status_rows(pool: asyncpg.Pool, external_id: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT h.change_id, h.from_value, h.to_value, h.to_status, h.changed_at"
        " FROM work_item_history h JOIN work_items w ON w.id = h.work_item_id"
        " WHERE w.external_id = $1 AND h.field = 'status' ORDER BY h.changed_at",
        external_id,
    )


async def assert_no_email(pool: asyncpg.Pool) -> None:
    assert not await pool.fetchval(
        "SELECT count(*) FROM work_item_history"
        " WHERE concat_ws(' ', from_value, to_value, actor_name, actor_id) LIKE '%@%'"
    )
    assert not await pool.fetchval(
        "SELECT count(*) FROM work_items WHERE external_data::text LIKE '%@example.com%'"
    )


async def test_a_flow_before_the_first_sync_takes_its_times_from_the_changelog(
    pool: asyncpg.Pool, jira: JiraSandbox, settings: Settings
) -> None:
    issue = flowed(jira)
    jira.update_issue(issue.id, at=T0 + 41 * H, by=ADA, priority="High", story_points=5)
    external_id = jira.external_id(issue)
    integration = await integration_of(pool, jira)

    first = await run(pool, integration, settings)
    assert first.outcome == "succeeded", first.reason
    assert first.created == 1 and first.history_requests == 0  # all came with the search
    await assert_times(pool, external_id)

    rows = await status_rows(pool, external_id)
    assert [r["to_status"] for r in rows] == STATUSES
    # the value at creation (synthetic id), then Jira's own history ids, times and names
    assert (rows[0]["change_id"], rows[0]["from_value"], rows[0]["to_value"]) == (
        "created",
        None,
        "To Do",
    )
    status_histories = [h for h in issue.histories if h.changes[0][0] == "status"]
    assert [r["change_id"] for r in rows[1:]] == [h.id for h in status_histories]
    assert [r["changed_at"] for r in rows] == [T0] + [T0 + h * H for h, _ in FLOW]
    assert [r["to_value"] for r in rows[1:]] == [s for _, s in FLOW]

    others = {
        r["field"]: r
        for r in await pool.fetch(
            "SELECT field, from_value, to_value, actor_name, actor_id FROM work_item_history"
            " WHERE field <> 'status'"
        )
    }
    assert set(others) == {"assignee", "priority", "story_points"}
    assert (others["assignee"]["from_value"], others["assignee"]["to_value"]) == (None, ADA)
    assert (others["priority"]["from_value"], others["priority"]["to_value"]) == ("Medium", "High")
    assert others["story_points"]["to_value"] == "5"
    author = jira._author(ADA)
    account = author["key"] if is_dc(jira) else author["accountId"]
    assert (others["assignee"]["actor_name"], others["assignee"]["actor_id"]) == (ADA, account)
    await assert_no_email(pool)

    # the metrics day: one completion, 38 hours from start to completion (hand computed)
    day = await pool.fetchrow(
        "SELECT metric_date, stories_completed, avg_completion_time_hours FROM metrics"
        " WHERE stories_completed > 0"
    )
    assert day["metric_date"] == (T0 + 40 * H).date()
    assert (day["stories_completed"], float(day["avg_completion_time_hours"])) == (1, 38.0)

    # nothing changed: one search, no history request, nothing written
    stored = await pool.fetchval("SELECT count(*) FROM work_item_history")
    jira.clear_requests()
    second = await run(pool, integration, settings)
    assert second.outcome == "succeeded", second.reason
    assert (second.created, second.updated, second.history_requests) == (0, 0, 0)
    assert len(jira.requests_to("/search")) == 1
    assert not jira.requests_to("/issue/") and not jira.requests_to("/status")
    assert await pool.fetchval("SELECT count(*) FROM work_item_history") == stored


async def test_a_cut_changelog_is_read_whole_by_id(
    pool: asyncpg.Pool, jira: JiraSandbox, settings: Settings
) -> None:
    jira.changelog_cap = 2  # the search carries only the two most recent histories
    issue = flowed(jira)
    external_id = jira.external_id(issue)
    integration = await integration_of(pool, jira)

    first = await run(pool, integration, settings)
    assert first.outcome == "succeeded", first.reason
    # DC gives the whole changelog on the issue; Cloud caps it there too: its changelog route
    issue_reads = [r for r in jira.requests_to("/issue/") if r.path.endswith(f"/{issue.id}")]
    assert len(issue_reads) == 1
    assert issue_reads[0].query == {
        "fields": ["created,status,resolution"],
        "expand": ["changelog"],
    }
    assert len(jira.requests_to(f"/issue/{issue.id}/changelog")) == (0 if is_dc(jira) else 1)
    assert first.history_requests == (1 if is_dc(jira) else 2)
    # serverInfo, myself, field, one search, status (once: the changelog names statuses the
    # issue is not in), then the history reads: nothing more
    assert len(jira.requests_to("/status")) == 1
    assert len(jira.requests) == 5 + first.history_requests
    await assert_times(pool, external_id)
    assert [r["to_status"] for r in await status_rows(pool, external_id)] == STATUSES
    assert not await pool.fetchval("SELECT bool_or(history_pending) FROM work_items")
    await assert_no_email(pool)

    # read again in the overlap, the same version: its history is not asked for again
    jira.clear_requests()
    second = await run(pool, integration, settings)
    assert (second.created, second.updated, second.history_requests) == (0, 0, 0)
    assert not jira.requests_to("/issue/")


async def test_a_budget_smaller_than_the_backlog_completes_over_runs_and_resumes_after_a_fault(
    pool: asyncpg.Pool, jira: JiraSandbox, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    jira.changelog_cap = 2
    issues = [flowed(jira, n, f"Issue {n}") for n in range(5)]
    budget = 2
    integration = await integration_of(pool, jira, history_budget=budget)
    # the third issue's history fails every time: the run fails mid-way, after what it read
    jira.fail_next("5xx", count=100, retry_after=0, path_contains=f"/issue/{issues[2].id}")

    spent: list[int] = []
    failed = 0
    for _ in range(12):
        result = await run(pool, integration, settings)
        if result.outcome == "failed":
            failed += 1
            assert "503" in result.reason or "unavailable" in result.reason
            assert PLANTED_TOKEN not in result.reason
            jira.clear_faults()
            continue
        assert result.outcome == "succeeded", result.reason
        assert result.history_requests <= budget
        spent.append(result.history_requests)
        if result.history_requests == 0:
            break
    assert failed == 1
    assert spent[-1] == 0 and len(spent) > 2  # several runs, each within the budget
    assert not await pool.fetchval("SELECT bool_or(history_pending) FROM work_items")
    for n, issue in enumerate(issues):
        await assert_times(pool, jira.external_id(issue), start_hours=n)
    # every issue: its creation, five moves, one assignment; each stored once
    assert await pool.fetchval("SELECT count(*) FROM work_item_history") == 5 * 7
    await assert_no_email(pool)
    assert PLANTED_TOKEN not in caplog.text
    activity = await pool.fetch("SELECT metadata::text AS m FROM activity_logs")
    assert not any(PLANTED_TOKEN in r["m"] for r in activity if r["m"])


async def test_the_demo_issues_carry_changelogs_that_give_completion_times(
    pool: asyncpg.Pool, jira: JiraSandbox, settings: Settings
) -> None:
    jira.seed_demo()
    config = jira.demo_config()
    team = await make_team(pool, "Demo")
    integration = await make_integration(pool, team, "jira", config, interval=60)
    result = await run(pool, integration, settings)
    assert result.outcome == "succeeded", result.reason
    completed = await pool.fetch(
        "SELECT started_at, completed_at, time_basis FROM work_items WHERE status = 'completed'"
    )
    assert completed and all(r["time_basis"] == "history" for r in completed)
    assert all(r["started_at"] < r["completed_at"] for r in completed)
    days = await pool.fetchval(
        "SELECT count(*) FROM metrics WHERE avg_completion_time_hours IS NOT NULL"
    )
    assert days > 0  # issue 15: "avg completion (h)" was empty on every day of the demo
    await assert_no_email(pool)


@pytest.fixture
def cloud() -> Iterator[JiraSandbox]:
    with checked(JiraSandbox(token=PLANTED_TOKEN)) as started:
        started.changelog_cap = 2
        yield started


async def test_an_issue_whose_pages_do_not_fit_what_is_left_waits_for_the_next_run(
    pool: asyncpg.Pool, cloud: JiraSandbox, settings: Settings
) -> None:
    first_issue, second_issue = flowed(cloud, 0, "First"), flowed(cloud, 1, "Second")
    integration = await integration_of(pool, cloud, history_budget=3)
    first = await run(pool, integration, settings)
    # the first costs its issue read and one changelog page; the second's page does not fit
    assert first.outcome == "succeeded" and first.history_requests == 3
    pending = await pool.fetchval(
        "SELECT array_agg(external_id) FROM work_items WHERE history_pending"
    )
    assert pending == [cloud.external_id(second_issue)]
    await assert_times(pool, cloud.external_id(first_issue))

    second = await run(pool, integration, settings)
    assert second.history_requests == 2
    await assert_times(pool, cloud.external_id(second_issue), start_hours=1)
    assert not await pool.fetchval("SELECT bool_or(history_pending) FROM work_items")


async def test_a_changelog_that_never_fits_a_run_keeps_its_most_recent_histories(
    pool: asyncpg.Pool, cloud: JiraSandbox, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    issue = cloud.add_issue("ABC", "Busy", created=T0, updated=T0)
    for n in range(105):  # 2 pages of 100 and the issue read: more than a budget of 2
        cloud.update_issue(issue.id, at=T0 + n * H, priority="High" if n % 2 else "Low")
    integration = await integration_of(pool, cloud, history_budget=2)
    result = await run(pool, integration, settings)
    assert result.outcome == "succeeded" and result.history_requests == 1
    assert not cloud.requests_to("/changelog")
    assert not await pool.fetchval("SELECT bool_or(history_pending) FROM work_items")
    rows = await pool.fetch("SELECT change_id, field FROM work_item_history ORDER BY changed_at")
    assert [r["change_id"] for r in rows] == [h.id for h in issue.histories[-2:]]  # no creation
    assert "jira_changelog_too_long" in caplog.text
    again = await run(pool, integration, settings)
    assert again.history_requests == 0  # done with, not read again every run


async def test_a_status_jira_no_longer_has_is_mapped_and_not_asked_for_again(
    pool: asyncpg.Pool, cloud: JiraSandbox, settings: Settings
) -> None:
    cloud.statuses["Triage"] = "new"
    issue = cloud.add_issue("ABC", "Old workflow", created=T0, updated=T0, status="Triage")
    cloud.update_issue(issue.id, at=T0 + H, status="In Progress")
    del cloud.statuses["Triage"]  # the workflow changed since: GET status does not list it
    integration = await integration_of(pool, cloud)
    first = await run(pool, integration, settings)
    assert first.outcome == "succeeded", first.reason
    rows = await status_rows(pool, cloud.external_id(issue))
    assert [(r["to_value"], r["to_status"]) for r in rows] == [
        ("Triage", "queued"),
        ("In Progress", "in_progress"),
    ]
    assert len(cloud.requests_to("/status")) == 1

    cloud.clear_requests()
    cloud.update_issue(issue.id, at=T0 + 2 * H, summary="Old workflow, edited")
    second = await run(pool, integration, settings)
    assert second.updated == 1
    assert not cloud.requests_to("/status")  # its categories are cached for the day

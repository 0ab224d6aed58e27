"""Azure DevOps history through the sync run: each project's reporting revisions feed (the real
SDK, the sandbox over HTTP, every request checked against Microsoft's published spec), stored in
real PostgreSQL by `worker.sync.run_integration`. Start and completion times from history, the
metrics day, a no-op second sync, a budget smaller than the backlog (with a fault mid-way), the
integration's scope, and no e-mail address stored."""

from __future__ import annotations

import base64
import logging
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from connectors.azure_devops import AzureDevOpsConfig, AzureDevOpsConnector
from connectors.base import ConnectorContext, HistoryEntry, HistoryPage, HistoryTodo
from connectors.sandbox.azure_devops import AzureDevOpsSandbox, to_ms
from connectors.sandbox.base import Request
from tests.helpers import forced_run
from tests.integration.connectors.contract import PLANTED_TOKEN
from tests.integration.connectors.sync_helpers import (
    ado_integration,
    ado_sandbox,
)
from worker import sync
from worker.settings import Settings
from worker.store import history as history_store

# Upstream times in the recent past: the item sync's cursor follows the sandbox's clock (the WIQL
# asOf, real time), so a change made "now" in a test is one the next sync reads.
T0 = (datetime.now(UTC) - timedelta(days=10)).replace(hour=8, minute=0, second=0, microsecond=0)
H = timedelta(hours=1)
ADA = "Ada Lovelace <ada.lovelace@example.com>"
LUKAS = "Lukas Novak <lukas.novak@example.com>"


@pytest.fixture
def sandbox() -> Iterator[AzureDevOpsSandbox]:
    yield from ado_sandbox()


integration_for = ado_integration


async def run(pool: asyncpg.Pool, integration: uuid.UUID, settings: Settings) -> sync.RunResult:
    return await forced_run(pool, integration, settings, AzureDevOpsConnector)


def reopened_story(sandbox: AzureDevOpsSandbox, title: str, start: datetime) -> int:
    """New -> Active -> In Review -> Closed -> Active (reopened) -> Closed, with a title edit
    (no history field) in between; the moves made by Ada, who is also assigned."""
    item = sandbox.add_item(title, changed=start, fields={"Microsoft.VSTS.Common.Priority": 2})
    by_ada = {"System.ChangedBy": ADA}
    sandbox.update_item(item, changed=start + 2 * H, state="Active", assigned_to=ADA, fields=by_ada)
    sandbox.update_item(item, changed=start + 10 * H, state="In Review", fields=by_ada)
    sandbox.update_item(item, changed=start + 20 * H, state="Closed", fields=by_ada)
    sandbox.update_item(item, changed=start + 25 * H, title=title + " (edited)")
    sandbox.update_item(item, changed=start + 30 * H, state="Active", fields=by_ada)
    sandbox.update_item(item, changed=start + 40 * H, state="Closed", fields=by_ada)
    return item


async def test_a_flow_before_the_first_sync_gives_history_times_and_the_metrics_day(
    pool: asyncpg.Pool,
    sandbox: AzureDevOpsSandbox,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    story = reopened_story(sandbox, "Checkout", T0)
    other = sandbox.add_item("Search", changed=T0 + 1 * H)  # stays New
    integration = await integration_for(pool, sandbox)

    first = await run(pool, integration, settings)
    assert first.outcome == "succeeded", first.reason
    row = await pool.fetchrow(
        "SELECT started_at, completed_at, time_basis FROM work_items WHERE external_id = $1",
        sandbox.external_id(story),
    )
    assert tuple(row) == (T0 + 2 * H, T0 + 40 * H, "history")

    status_rows = await pool.fetch(
        "SELECT h.change_id, h.from_value, h.to_value, h.from_status, h.to_status,"
        "       h.changed_at, h.actor_name, h.actor_id"
        " FROM work_item_history h JOIN work_items w ON w.id = h.work_item_id"
        " WHERE w.external_id = $1 AND h.field = 'status' ORDER BY h.changed_at",
        sandbox.external_id(story),
    )
    s = str(story)
    assert [
        (r["change_id"], r["from_value"], r["to_value"], r["to_status"]) for r in status_rows
    ] == [
        (f"{s}.1", None, "New", "queued"),
        (f"{s}.2", "New", "Active", "in_progress"),
        (f"{s}.3", "Active", "In Review", "pr_ready"),  # a review state of the InProgress category
        (f"{s}.4", "In Review", "Closed", "completed"),
        (f"{s}.6", "Closed", "Active", "in_progress"),  # rev 5 (a title edit) changed none
        (f"{s}.7", "Active", "Closed", "completed"),
    ]
    assert [r["changed_at"] for r in status_rows] == [
        T0 + h * H for h in (0, 2, 10, 20, 30, 40)
    ]  # System.ChangedDate of each revision, never its RevisedDate
    assert {r["actor_name"] for r in status_rows[1:]} == {"Ada Lovelace"}
    assert all(uuid.UUID(r["actor_id"]) for r in status_rows)  # the identity's id
    assignee = await pool.fetchrow(
        "SELECT change_id, from_value, to_value FROM work_item_history WHERE field = 'assignee'"
    )
    assert tuple(assignee) == (f"{s}.2", None, "Ada Lovelace")
    creation = dict(
        await pool.fetch(
            "SELECT field, to_value FROM work_item_history WHERE change_id = $1", f"{s}.1"
        )
    )
    # the project's root iteration is no sprint: nothing to record at creation
    assert creation == {"status": "New", "priority": "2"}
    # no e-mail address anywhere in the history (the identities' uniqueName is one)
    dumped = await pool.fetchval("SELECT string_agg(h::text, ' ') FROM work_item_history h")
    assert "@" not in dumped and "example.com" not in dumped
    assert await pool.fetchval("SELECT count(*) FROM history_orphans") == 0

    # the metrics day of the completion: one story, 38 hours from first start to last completion
    day = await pool.fetchrow(
        "SELECT stories_completed, avg_completion_time_hours FROM metrics WHERE metric_date = $1",
        (T0 + 40 * H).date(),
    )
    assert (day["stories_completed"], float(day["avg_completion_time_hours"])) == (1, 38.0)

    # nothing changed: the second sync writes nothing and sends no history request
    rows = await pool.fetchval("SELECT count(*) FROM work_item_history")
    reporting = len(sandbox.requests_to("/reporting/"))
    second = await run(pool, integration, settings)
    assert second.outcome == "succeeded", second.reason
    assert (second.created, second.updated, second.history_requests) == (0, 0, 0)
    assert len(sandbox.requests_to("/reporting/")) == reporting
    assert await pool.fetchval("SELECT count(*) FROM work_item_history") == rows

    # a change upstream: the next sync reads the feed from its watermark, not from the start
    now = to_ms(datetime.now(UTC))
    sandbox.update_item(other, changed=now, state="Active", fields={"System.ChangedBy": LUKAS})
    third = await run(pool, integration, settings)
    assert third.outcome == "succeeded", third.reason
    asked = sandbox.requests_to("/reporting/")[reporting:]
    assert len(asked) == 1 and asked[0].query["continuationToken"]
    moved = await pool.fetchrow(
        "SELECT from_value, to_value, actor_name FROM work_item_history"
        " WHERE change_id = $1 AND field = 'status'",
        f"{other}.2",
    )
    assert tuple(moved) == ("New", "Active", "Lukas Novak")
    started = await pool.fetchval(
        "SELECT started_at FROM work_items WHERE external_id = $1", sandbox.external_id(other)
    )
    assert started == now

    # the PAT never reaches a log line, an activity row or the history's progress
    stored = await pool.fetchval(
        "SELECT (SELECT string_agg(a::text, ' ') FROM activity_logs a)"
        " || (SELECT string_agg(s::text, ' ') FROM integration_sync_state s)"
    )
    assert PLANTED_TOKEN not in caplog.text and PLANTED_TOKEN not in stored


async def test_a_budget_smaller_than_the_backlog_completes_over_runs_and_resumes_after_a_fault(
    pool: asyncpg.Pool, sandbox: AzureDevOpsSandbox, settings: Settings
) -> None:
    count = 10
    stories = []
    for n in range(count):  # interleaved: an item's revisions fall in different batches
        stories.append(
            sandbox.add_item(
                f"Story {n}", changed=T0 + n * H, fields={"Microsoft.VSTS.Common.Priority": 3}
            )
        )
    for n, item in enumerate(stories):
        sandbox.update_item(item, changed=T0 + (20 + n) * H, state="Active")
    for n, item in enumerate(stories):
        sandbox.update_item(item, changed=T0 + (40 + n) * H, state="Closed")
    # 30 revisions in batches of 4: 8 batches; a budget of 5 takes two or three a run (a batch
    # costs one request, its look-back at items read by an earlier run one more, the states of a
    # type one the first time)
    integration = await integration_for(pool, sandbox, history_budget=5)

    runs, spent = 0, []
    faulted = False
    seen_reporting = len(sandbox.requests_to("/reporting/"))

    def fail_mid_run(request: Request) -> None:
        # in the third run, the reporting batch after the first one fails (past the retries)
        if runs == 2 and "/reporting/" in request.path:
            if len(sandbox.requests_to("/reporting/")) == seen_reporting + 2:
                sandbox.fail_next("5xx", count=10, path_contains="/reporting/")

    sandbox.between_requests = fail_mid_run
    while True:
        before = await pool.fetchval("SELECT count(*) FROM work_item_history")
        seen_reporting = len(sandbox.requests_to("/reporting/"))
        result = await run(pool, integration, settings)
        runs += 1
        if result.outcome != "succeeded":
            faulted = True
            # what the run committed before the fault stays: the next run resumes after it
            assert await pool.fetchval("SELECT count(*) FROM work_item_history") > before
            sandbox.clear_faults()
            continue
        spent.append(result.history_requests)
        async with pool.acquire() as conn:
            if await history_store.backlog(conn, integration, ["My Project/*/*"]) == 0:
                break
        assert runs < 20
    assert faulted and runs > 3
    assert max(spent) <= 5  # never more than the budget
    # every story: creation (status, priority), Active, Closed; nothing twice
    assert await pool.fetchval("SELECT count(*) FROM work_item_history") == 4 * count
    times = {
        r["external_id"]: (r["started_at"], r["completed_at"], r["time_basis"])
        for r in await pool.fetch(
            "SELECT external_id, started_at, completed_at, time_basis FROM work_items"
        )
    }
    assert times == {
        sandbox.external_id(item): (T0 + (20 + n) * H, T0 + (40 + n) * H, "history")
        for n, item in enumerate(stories)
    }
    transitions = await pool.fetch(
        "SELECT from_value, to_value, count(*) AS n FROM work_item_history WHERE field = 'status'"
        " GROUP BY 1, 2 ORDER BY 1 NULLS FIRST, 2"
    )
    # the look-back across runs gave each later revision its true previous value
    assert [(r["from_value"], r["to_value"], r["n"]) for r in transitions] == [
        (None, "New", count),
        ("Active", "Closed", count),
        ("New", "Active", count),
    ]


async def test_only_items_in_the_integrations_scope_give_history(
    pool: asyncpg.Pool, sandbox: AzureDevOpsSandbox, settings: Settings
) -> None:
    sandbox.add_project(sandbox.project, areas=("Web", "Mobile"))
    web = sandbox.add_item("Web story", changed=T0, area_path="My Project\\Web")
    sandbox.add_item("Mobile story", changed=T0 + H, area_path="My Project\\Mobile")
    bug = sandbox.add_item(
        "Web bug", changed=T0 + 2 * H, area_path="My Project\\Web", work_item_type="Bug"
    )
    for item in (web, bug):
        sandbox.update_item(item, changed=T0 + 5 * H, state="Active")
    integration = await integration_for(
        pool, sandbox, area_path="My Project\\Web", work_item_types=["User Story"]
    )
    result = await run(pool, integration, settings)
    assert result.outcome == "succeeded", result.reason
    held = await pool.fetch(
        "SELECT DISTINCT w.external_id FROM work_item_history h"
        " JOIN work_items w ON w.id = h.work_item_id"
    )
    assert [r["external_id"] for r in held] == [sandbox.external_id(web)]
    assert await pool.fetchval("SELECT count(*) FROM history_orphans") == 0


def test_the_sandbox_refuses_a_start_time_with_a_continuation_token() -> None:
    """startDateTime "cannot be used in conjunction with" the watermark (the spec's words)."""
    with AzureDevOpsSandbox(token=PLANTED_TOKEN) as server:
        assert isinstance(server, AzureDevOpsSandbox)
        server.add_item("A", changed=T0)
        auth = base64.b64encode(f":{PLANTED_TOKEN}".encode()).decode()
        base = f"{server.organization_url}/My%20Project/_apis/wit/reporting/workItemRevisions"

        def get(query: str) -> tuple[int, bytes]:
            request = urllib.request.Request(
                f"{base}?api-version=7.0&{query}", headers={"Authorization": f"Basic {auth}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    return answer.status, answer.read()
            except urllib.error.HTTPError as refused:
                return refused.code, refused.read()

        status, body = get("continuationToken=1;1;1&startDateTime=2026-01-01T00:00:00Z")
        assert status == 400 and b"cannot be used together" in body
        assert get("startDateTime=2026-01-01T00:00:00Z")[0] == 200


def connector_for(
    sandbox: AzureDevOpsSandbox, tmp_path: Path, **config: Any
) -> AzureDevOpsConnector:
    values = {
        "organization_url": sandbox.organization_url,
        "project": sandbox.project,
        "history_page_size": 4,
        "request_timeout": 5.0,
        **config,
    }
    ctx = ConnectorContext(
        integration_id="history",
        token=SecretStr(PLANTED_TOKEN),
        cache_dir=tmp_path,
        max_retries=2,
        sleep_cap=1.0,
    )
    return AzureDevOpsConnector(AzureDevOpsConfig.model_validate(values), ctx)


async def read_all(
    conn: AzureDevOpsConnector, feeds: dict[str, str | None], budget: int = 100
) -> tuple[dict[str, list[HistoryEntry]], list[HistoryPage]]:
    entries: dict[str, list[HistoryEntry]] = {}
    pages = [page async for page in conn.history(HistoryTodo(feeds, [], budget))]
    for page in pages:
        for external_id, found in page.entries.items():
            entries.setdefault(external_id, []).extend(found)
    return entries, pages


async def test_moves_between_sprints_and_parents_and_points_are_history(
    sandbox: AzureDevOpsSandbox, tmp_path: Path
) -> None:
    epic = sandbox.add_item("Epic", changed=T0, work_item_type="Epic")
    feature = sandbox.add_item("Feature", changed=T0 + H, work_item_type="Feature")
    story = sandbox.add_item(
        "Story",
        changed=T0 + 2 * H,
        fields={"System.Parent": epic, "Microsoft.VSTS.Scheduling.StoryPoints": 3.0},
    )
    sandbox.update_item(
        story, changed=T0 + 3 * H, iteration_path="My Project\\Sprint 1", parent=feature
    )
    sandbox.update_item(story, changed=T0 + 4 * H, story_points=5.0, priority=1)
    sandbox.update_item(story, changed=T0 + 5 * H, assigned_to=ADA)
    sandbox.update_item(story, changed=T0 + 6 * H, assigned_to="")  # unassigned
    conn = connector_for(sandbox, tmp_path)
    scope = conn.feed_scopes()[0]
    entries, pages = await read_all(conn, {scope: None})
    got = [
        (e.change_id, e.field, e.from_value, e.to_value)
        for e in entries[sandbox.external_id(story)]
        if e.field != "status"
    ]
    site = sandbox.external_id(0).rsplit("/", 1)[0]
    s = str(story)
    assert got == [
        (f"{s}.1", "parent", None, f"{site}/{epic}"),
        (f"{s}.1", "story_points", None, "3"),
        (f"{s}.2", "parent", f"{site}/{epic}", f"{site}/{feature}"),
        (f"{s}.2", "sprint", None, "My Project\\Sprint 1"),  # from the root: from none
        (f"{s}.3", "priority", None, "1"),
        (f"{s}.3", "story_points", "3", "5"),
        (f"{s}.4", "assignee", None, "Ada Lovelace"),
        (f"{s}.5", "assignee", "Ada Lovelace", None),
    ]
    # 8 revisions in batches of 4: the feed paged, each page a checkpoint of the same project
    assert len(pages) == 2 and all(p.checkpoint.keys() == {scope} for p in pages)
    assert pages[-1].through == {scope: T0 + 6 * H}
    await conn.aclose()


async def test_a_field_the_organization_lacks_is_dropped_and_the_request_counted(
    sandbox: AzureDevOpsSandbox, tmp_path: Path
) -> None:
    sandbox.known_fields.discard("Microsoft.VSTS.Scheduling.Size")  # an Agile organization
    sandbox.add_item("Story", changed=T0)
    conn = connector_for(sandbox, tmp_path)
    scope = conn.feed_scopes()[0]
    entries, pages = await read_all(conn, {scope: None})
    assert [e.to_value for e in next(iter(entries.values())) if e.field == "status"] == ["New"]
    # the refused request, the batch again, the states of User Story
    assert [p.requests for p in pages] == [3]
    asked = sandbox.requests_to("/reporting/")
    assert "Microsoft.VSTS.Scheduling.Size" in asked[0].query["fields"][0]
    assert "Microsoft.VSTS.Scheduling.Size" not in asked[1].query["fields"][0]
    await conn.aclose()


async def test_several_types_of_a_project_share_one_feed_and_its_checkpoint(
    pool: asyncpg.Pool, sandbox: AzureDevOpsSandbox, settings: Settings
) -> None:
    story = sandbox.add_item("Story", changed=T0)
    bug = sandbox.add_item("Bug", changed=T0 + H, work_item_type="Bug")
    for item in (story, bug):
        sandbox.update_item(item, changed=T0 + 2 * H, state="Active")
    integration = await integration_for(pool, sandbox, work_item_types=["User Story", "Bug"])
    result = await run(pool, integration, settings)
    assert result.outcome == "succeeded", result.reason
    cursor = await pool.fetchval(
        "SELECT history_cursor FROM integration_sync_state WHERE integration_id = $1", integration
    )
    assert set(cursor) == {"My Project/*/User Story", "My Project/*/Bug"}
    assert len(set(cursor.values())) == 1  # one watermark for the project
    # 4 revisions, batches of 4: the one batch reached the end of the feed
    assert len(sandbox.requests_to("/reporting/")) == 1
    assert await pool.fetchval("SELECT count(*) FROM work_item_history WHERE field = 'status'") == 4


async def test_an_older_server_serves_the_feed_at_its_own_api_version(tmp_path: Path) -> None:
    """Azure DevOps Server 2019 (api-version 5.0): the SDK negotiates down, the feed and its
    look-back work the same."""
    with AzureDevOpsSandbox(
        token=PLANTED_TOKEN, max_api_version="5.0", released_version="5.0"
    ) as server:
        assert isinstance(server, AzureDevOpsSandbox)
        server.reporting_page_cap = 4
        item = server.add_item("Story", changed=T0)
        server.update_item(item, changed=T0 + H, state="Active")
        conn = connector_for(server, tmp_path)
        scope = conn.feed_scopes()[0]
        _, pages = await read_all(conn, {scope: None})
        server.update_item(item, changed=T0 + 2 * H, state="Closed")
        later = connector_for(server, tmp_path)  # the next run: a new connector
        entries, _ = await read_all(later, {scope: pages[-1].checkpoint[scope]})
        assert [(e.from_value, e.to_value) for e in entries[server.external_id(item)]] == [
            ("Active", "Closed")
        ]
        versions = {r.headers.get("accept", "") for r in server.requests_to("/reporting/")}
        assert versions == {"application/json;api-version=5.0"}
        assert len(server.requests_to("/workItemsBatch")) == 1  # the look-back
        await conn.aclose()
        await later.aclose()

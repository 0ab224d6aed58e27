"""`c9-sync remap` per tracker: a real sync against the tracker's sandbox (real SDK over HTTP,
real PostgreSQL), then an admin edits `status_map` in the integrations row and the remap maps
every stored row again — status, history statuses, derived times, activity rows, metrics days —
without a single request to the sandbox; a second remap writes nothing; a row whose
external_data is junk is rejected and left as it is; the map put back restores every value.

Each tracker: an item moved queued -> in progress (+2h) -> review (+10h) -> done (+20h) ->
reopened (+30h) -> done (+40h), and one created at +50h, in progress at +52h, in review at
+55h. The new map sends "in progress" to queued and "review" to in_progress, so (by hand):
the done item starts at +10h instead of +2h (cycle 30h instead of 38h on its completion day),
the review item is in_progress from +55h instead of pr_ready from +52h.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from connectors.azure_devops import AzureDevOpsConnector
from connectors.github import GitHubConnector
from connectors.jira import JiraConnector
from connectors.linear import LinearConnector
from connectors.sandbox.azure_devops import AzureDevOpsSandbox
from connectors.sandbox.base import Request, SandboxServer
from connectors.sandbox.github import GitHubSandbox
from connectors.sandbox.jira import JiraDataCenterSandbox, JiraSandbox
from connectors.sandbox.linear import LinearSandbox
from tests.helpers import forced_run, make_integration, make_team, make_work_item, succeeded_run
from tests.integration.connectors.contract import PLANTED_TOKEN
from tests.integration.connectors.test_jira import checked
from tests.integration.test_migrations import apply_through
from worker import db, migrate, remap, sync
from worker.settings import Settings
from worker.store import notify

H = timedelta(hours=1)
# in the recent past: Azure DevOps' item cursor follows the sandbox's (real) clock
T0 = (datetime.now(UTC) - timedelta(days=10)).replace(hour=8, minute=0, second=0, microsecond=0)
DONE, REVIEW, JUNK = "Cycle me", "Review me", "Junk me"


@dataclass
class Tracker:
    """One tracker's sandbox with the two flows and a third item, and its integration."""

    name: str
    sandbox: SandboxServer
    original: dict[str, str]  # the status_map the integration starts with
    edited: dict[str, str]  # in progress -> queued, review -> in_progress, in its words
    config: dict[str, Any]
    connector: type[Any]
    reopened_as: str = "queued"  # the reopen's status under the edited map

    def requests(self) -> list[Request]:
        return list(self.sandbox.requests)

    def clear(self) -> None:
        self.sandbox.clear_requests()


@contextmanager
def jira_tracker(data_center: bool = False) -> Iterator[Tracker]:
    server = JiraDataCenterSandbox if data_center else JiraSandbox
    with checked(server(token=PLANTED_TOKEN)) as jira:
        for title, start, moves in flows(["In Progress", "In Review", "Done"]):
            issue = jira.add_issue("ABC", title, created=start, updated=start)
            for at, status in moves:
                jira.update_issue(issue.id, at=at, by="Ada Lovelace", status=status)
        yield Tracker(
            "jira",
            jira,
            {},
            {"In Progress": "queued", "In Review": "in_progress"},
            {
                "url": jira.url,
                **({} if data_center else {"email": jira.email}),
                "token": PLANTED_TOKEN,
                "projects": ["ABC"],
                "story_points_field": "Story point estimate",
            },
            JiraConnector,
        )


@contextmanager
def azure_devops_tracker() -> Iterator[Tracker]:
    with AzureDevOpsSandbox(token=PLANTED_TOKEN) as ado:
        assert isinstance(ado, AzureDevOpsSandbox)
        for title, start, moves in flows(["Active", "In Review", "Closed"]):
            item = ado.add_item(title, changed=start)
            for at, state in moves:
                ado.update_item(item, changed=at, state=state)
        yield Tracker(
            "azure_devops",
            ado,
            {},
            {"Active": "queued", "In Review": "in_progress"},
            {
                "organization_url": ado.organization_url,
                "project": ado.project,
                "token": PLANTED_TOKEN,
                "request_timeout": 5.0,
            },
            AzureDevOpsConnector,
        )


@contextmanager
def github_tracker() -> Iterator[Tracker]:
    repo = "octo/alpha"
    box = GitHubSandbox(token=PLANTED_TOKEN, repos=[repo])
    box.start()
    try:
        # in progress on GitHub: assigned; review: the "in review" label the map names
        moves = {"In Progress": {"assignees": ["ada"]}, "In Review": {"labels": ["in review"]}}
        moves |= {"Done": {"state": "closed"}, "Reopen": {"state": "open"}}
        for title, start, steps in flows(["In Progress", "In Review", "Done"], reopen="Reopen"):
            issue = box.add_issue(repo, title, created_at=start, updated_at=start, actor="mira")
            for at, step in steps:
                box.update(issue.id, at=at, actor="ada", **moves[step])
        yield Tracker(
            "github",
            box,
            {"in review": "pr_ready"},
            {"open": "queued", "in review": "in_progress"},
            {
                "token": PLANTED_TOKEN,
                "base_url": box.url,
                "repos": [repo],
                "seconds_between_requests": 0,
            },
            GitHubConnector,
            reopened_as="in_progress",  # reopened, still labelled "in review"
        )
    finally:
        box.stop()


@contextmanager
def linear_tracker() -> Iterator[Tracker]:
    with LinearSandbox() as linear:
        assert isinstance(linear, LinearSandbox)
        ada = linear.add_user("Ada Lovelace")
        for title, start, moves in flows(["In Progress", "In Review", "Done"]):
            issue = linear.add_issue("ENG", title=title, created_at=start, updated_at=start)
            for at, state in moves:
                linear.update_issue(issue["id"], at=at, state=state, actor=ada)
        yield Tracker(
            "linear",
            linear,
            {},
            {"In Progress": "queued", "In Review": "in_progress"},
            {"api_url": f"{linear.url}/graphql", "team_keys": ["ENG"], "token": linear.token},
            LinearConnector,
        )


def flows(names: list[str], reopen: str | None = None) -> list[tuple[str, datetime, list[Any]]]:
    """(title, created, [(time, step)]) of the three items, with the tracker's names for in
    progress, review and done (a reopen is a move back to in progress, or `reopen`); each is
    created 2h before its first move (the one that never moves at +60h)."""
    progress, review, done = names
    back = reopen or progress
    moved = [
        (DONE, [(T0 + h * H, s) for h, s in ((2, progress), (10, review), (20, done),
                                              (30, back), (40, done))]),
        (REVIEW, [(T0 + h * H, s) for h, s in ((52, progress), (55, review))]),
        (JUNK, []),
    ]  # fmt: skip
    return [(title, moves[0][0] - 2 * H if moves else T0 + 60 * H, moves) for title, moves in moved]


TRACKERS = {
    "jira": jira_tracker,
    "jira_dc": lambda: jira_tracker(data_center=True),
    "azure_devops": azure_devops_tracker,
    "github": github_tracker,
    "linear": linear_tracker,
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", sweep_every_runs=0, metrics_tz="UTC")


async def synced(pool: asyncpg.Pool, settings: Settings, tracker: Tracker) -> uuid.UUID:
    """The tracker's integration, its items stored by one real sync."""
    team = await make_team(pool, f"Team {tracker.name}")
    config = {**tracker.config, "status_map": tracker.original}
    integration = await make_integration(pool, team, tracker.name, config, interval=60)
    first = await succeeded_run(pool, integration, settings, tracker.connector)
    assert first.created == 3
    return integration


@pytest.fixture(params=sorted(TRACKERS))
async def tracked(
    request: pytest.FixtureRequest, pool: asyncpg.Pool, settings: Settings
) -> AsyncIterator[tuple[Tracker, uuid.UUID]]:
    """A tracker whose items one real sync has stored."""
    with TRACKERS[request.param]() as tracker:
        yield tracker, await synced(pool, settings, tracker)


async def row(pool: asyncpg.Pool, integration: uuid.UUID, title: str) -> tuple[Any, ...]:
    found = await pool.fetchrow(
        "SELECT status, started_at, completed_at, time_basis FROM work_items"
        " WHERE integration_id = $1 AND title = $2",
        integration,
        title,
    )
    assert found is not None, title
    return tuple(found)


async def cycle_hours(pool: asyncpg.Pool, integration: uuid.UUID) -> float:
    """The done item's completion day: one completion, its mean cycle time."""
    day = await pool.fetchrow(
        "SELECT m.stories_completed, m.avg_completion_time_hours FROM metrics m"
        " JOIN integrations i ON i.team_id = m.team_id"
        " WHERE i.id = $1 AND m.metric_date = $2",
        integration,
        (T0 + 40 * H).date(),
    )
    assert day is not None and day["stories_completed"] == 1
    return float(day["avg_completion_time_hours"])


async def set_status_map(pool: asyncpg.Pool, integration: uuid.UUID, mapping: dict) -> None:
    await pool.execute(
        "UPDATE integrations SET config = jsonb_set(config, '{status_map}', $2::jsonb)"
        " WHERE id = $1",
        integration,
        mapping,
    )


async def snapshot(pool: asyncpg.Pool) -> tuple[Any, ...]:
    """Everything a remap could write."""
    return tuple(
        [
            await pool.fetchval(f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), ''))"
                                f" FROM {table} t")
            for table in ("work_items", "work_item_history", "metrics", "integration_sync_state")
        ]
        + [await pool.fetchval("SELECT count(*) FROM activity_logs")]
    )  # fmt: skip


async def test_an_edited_status_map_is_applied_to_stored_rows_without_the_tracker(
    pool: asyncpg.Pool, tracked: tuple[Tracker, uuid.UUID], settings: Settings
) -> None:
    tracker, integration = tracked
    assert await row(pool, integration, DONE) == (
        "completed", T0 + 2 * H, T0 + 40 * H, "history",
    )  # fmt: skip
    assert await row(pool, integration, REVIEW) == ("pr_ready", T0 + 52 * H, None, "history")
    assert await cycle_hours(pool, integration) == 38.0
    junk_before = await pool.fetchrow(
        "UPDATE work_items SET external_data = '{\"junk\": true}'::jsonb"
        " WHERE integration_id = $1 AND title = $2 RETURNING status, started_at, completed_at",
        integration,
        JUNK,
    )

    await set_status_map(pool, integration, tracker.edited)
    tracker.clear()
    result = await remap.remap_integration(pool, integration, settings)
    assert tracker.requests() == []  # not one request to the tracker
    assert result.outcome == "remapped", result.reason
    assert (result.items, result.changed, result.unchanged, result.rejected) == (2, 2, 0, 1)
    # done: 2h->10h (to and from in progress), 10h, 20h (from review), 30h, 40h; review: 2
    assert (result.history_rows, result.history_kept) == (7, 0)

    assert await row(pool, integration, DONE) == (
        "completed", T0 + 10 * H, T0 + 40 * H, "history",
    )  # fmt: skip
    assert await row(pool, integration, REVIEW) == ("in_progress", T0 + 55 * H, None, "history")
    statuses = await pool.fetch(
        "SELECT h.to_status FROM work_item_history h JOIN work_items w ON w.id = h.work_item_id"
        " WHERE w.integration_id = $1 AND w.title = $2 AND h.field = 'status'"
        " ORDER BY h.changed_at, h.id",
        integration,
        DONE,
    )
    assert [r["to_status"] for r in statuses][-5:] == [
        "queued", "in_progress", "completed", tracker.reopened_as, "completed",
    ]  # fmt: skip
    assert await cycle_hours(pool, integration) == 30.0  # the metrics day, recomputed
    junk = await pool.fetchrow(
        "SELECT status, started_at, completed_at, external_data FROM work_items"
        " WHERE integration_id = $1 AND title = $2",
        integration,
        JUNK,
    )
    assert tuple(junk)[:3] == tuple(junk_before) and junk["external_data"] == {"junk": True}

    logged = await pool.fetch(
        "SELECT a.event_type, a.metadata, w.title FROM activity_logs a"
        " LEFT JOIN work_items w ON w.id = a.work_item_id"
        " WHERE a.metadata ->> 'remap_id' IS NOT NULL ORDER BY a.event_type, w.title"
    )
    assert [(r["event_type"], r["title"]) for r in logged] == [
        ("integration_remapped", None),
        ("work_item_rejected", None),
        ("work_item_status_changed", REVIEW),
        ("work_item_updated", DONE),
    ]
    by_type = {r["event_type"]: r["metadata"] for r in logged}
    assert by_type["work_item_updated"]["fields"] == ["started_at"]
    assert by_type["work_item_status_changed"]["fields"] == ["status", "started_at"]
    assert (by_type["work_item_status_changed"]["old_status"],
            by_type["work_item_status_changed"]["new_status"]) == ("pr_ready", "in_progress")  # fmt: skip
    assert by_type["work_item_rejected"]["reason"].startswith("no longer maps")
    summary = by_type["integration_remapped"]
    assert (summary["items"], summary["changed"], summary["rejected"]) == (2, 2, 1)
    assert {r["metadata"]["remap_id"] for r in logged} == {summary["remap_id"]}

    # a second remap writes nothing (and asks the tracker nothing)
    before = await snapshot(pool)
    again = await remap.remap_integration(pool, integration, settings)
    assert (again.changed, again.rejected, again.history_rows, again.metrics_rows) == (0, 1, 0, 0)
    assert await snapshot(pool) == before
    assert tracker.requests() == []

    # the map put back: every value as the sync had it (the defaults kept with the history)
    await set_status_map(pool, integration, tracker.original)
    back = await remap.remap_integration(pool, integration, settings)
    assert (back.changed, back.history_rows) == (2, 7)
    assert await row(pool, integration, DONE) == (
        "completed", T0 + 2 * H, T0 + 40 * H, "history",
    )  # fmt: skip
    assert await row(pool, integration, REVIEW) == ("pr_ready", T0 + 52 * H, None, "history")
    assert await cycle_hours(pool, integration) == 38.0


async def test_a_remap_waits_for_a_sync_holding_the_lock_else_refuses_writing_nothing(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    with github_tracker() as tracker:
        integration = await synced(pool, settings, tracker)
        await set_status_map(pool, integration, tracker.edited)
        async with pool.acquire() as running:
            # the lock a sync run of this integration holds while it runs
            assert await notify.try_lock_integration(running, integration)
            before = await snapshot(pool)
            busy = await remap.remap_integration(pool, integration, settings, wait=0.3, poll=0.05)
            assert busy.outcome == "busy"
            assert "a sync of it holds the integration's lock; nothing was written" in busy.reason
            assert await snapshot(pool) == before

            waiting = asyncio.create_task(
                remap.remap_integration(pool, integration, settings, wait=30, poll=0.05)
            )
            await asyncio.sleep(0.5)
            assert not waiting.done()  # waits for the run to end
            assert await snapshot(pool) == before
            await notify.unlock_integration(running, integration)
            done = await waiting
        assert (done.outcome, done.changed) == ("remapped", 2)
        # and while a remap holds it, a sync of the integration is skipped (the same lock)
        async with pool.acquire() as remapping:
            assert await notify.try_lock_integration(remapping, integration)
            skipped = await forced_run(pool, integration, settings, tracker.connector)
            await notify.unlock_integration(remapping, integration)
        assert (skipped.outcome, skipped.reason) == ("skipped", "running on another worker")


async def test_an_integration_no_run_has_kept_a_context_for_is_refused_naming_the_cause(
    pool: asyncpg.Pool, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    team = await make_team(pool, "Never synced")
    config = {
        "url": "https://acme.atlassian.net",
        "email": "ops@acme.example",
        "token": PLANTED_TOKEN,
        "projects": ["ABC"],
        "status_map": {"In Review": "in_progress"},
    }
    integration = await make_integration(pool, team, "jira", config)
    result = await remap.remap_integration(pool, integration, settings)
    assert result.outcome == "refused"
    assert "run a sync of it first" in result.reason
    assert PLANTED_TOKEN not in result.reason + caplog.text

    # a config that no longer validates is refused naming the key, never a value
    await set_status_map(pool, integration, {"In Review": "reviewing"})
    bad = await remap.remap_integration(pool, integration, settings)
    assert bad.outcome == "refused" and "status_map" in bad.reason
    assert PLANTED_TOKEN not in bad.reason + caplog.text
    assert not await pool.fetchval("SELECT count(*) FROM activity_logs")


async def test_a_changed_custom_field_config_waits_for_a_sync_to_resolve_it(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """Jira's story points field named anew: its id is learnt online, so the remap refuses
    until a sync has resolved it (mapping without it would drop every item's points)."""
    with jira_tracker() as tracker:
        integration = await synced(pool, settings, tracker)
        await pool.execute(
            'UPDATE integrations SET config = config || \'{"story_points_field": "Points"}\''
            " WHERE id = $1",
            integration,
        )
        before = await snapshot(pool)
        result = await remap.remap_integration(pool, integration, settings)
        assert result.outcome == "refused"
        assert "story_points_field" in result.reason and "run a sync" in result.reason
        assert await snapshot(pool) == before


async def test_history_keeps_the_default_where_the_map_in_force_did_not_name_the_value(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """GitHub read with {"in review": pr_ready}: a row whose value the map named has no
    default (never seen); the others keep theirs. A map that no longer names "in review"
    keeps those rows as they are, and says how many."""
    with github_tracker() as tracker:
        integration = await synced(pool, settings, tracker)
        rows = await pool.fetch(
            "SELECT DISTINCT h.to_value, h.to_status, h.to_default FROM work_item_history h"
            " JOIN work_items w ON w.id = h.work_item_id"
            " WHERE w.integration_id = $1 AND h.field = 'status' AND w.title = $2",
            integration,
            DONE,
        )
        assert {(r["to_value"], r["to_status"], r["to_default"]) for r in rows} == {
            ("open", "queued", "queued"),  # created
            ("open", "in_progress", "in_progress"),  # assigned
            ("in review", "pr_ready", None),  # named by the map: its default never seen
            ("completed", "completed", "completed"),
        }
        await set_status_map(pool, integration, {})
        result = await remap.remap_integration(pool, integration, settings)
        # "in review": to (+10h, +30h) and from (+20h, +40h) of the done item, to (+55h) of
        # the review item: kept as they were
        assert (result.outcome, result.history_kept) == ("remapped", 5)
        assert result.history_rows == 0
        # the items themselves map whole from their JSON: the review item is assigned (in
        # progress by GitHub's own rule), as a sync would map it now
        assert (await row(pool, integration, REVIEW))[0] == "in_progress"


async def test_0014_fills_the_defaults_of_history_read_before_it(empty_db_url: str) -> None:
    conn = await db.connect(empty_db_url)
    try:
        await apply_through(conn, 13)
        team = await make_team(conn, "Alpha")
        mapped = await make_integration(conn, team, "jira", {"status_map": {" in REVIEW": "done"}})
        plain = await make_integration(conn, team, "linear", {"token": "x"})
        for n, (integration, source) in enumerate(((mapped, "jira"), (plain, "linear"))):
            item = await make_work_item(
                conn, team, f"x-{n}", source=source, integration_id=integration
            )
            await conn.execute(
                "INSERT INTO work_item_history (work_item_id, change_id, field, changed_at,"
                "   from_value, to_value, from_status, to_status)"
                " VALUES ($1, 'c1', 'status', now(), NULL, 'To Do', NULL, 'queued'),"
                "        ($1, 'c2', 'status', now(), 'To Do', 'In Review', 'queued', 'completed'),"
                "        ($1, 'c3', 'assignee', now(), NULL, 'Ada', NULL, NULL)",
                item,
            )
        await migrate.apply(conn)
        rows = await conn.fetch(
            "SELECT w.source, h.change_id, h.from_default, h.to_default FROM work_item_history h"
            " JOIN work_items w ON w.id = h.work_item_id ORDER BY w.source, h.change_id"
        )
        assert [tuple(r) for r in rows] == [
            ("jira", "c1", None, "queued"),
            ("jira", "c2", "queued", None),  # "In Review" was named: its default unknown
            ("jira", "c3", None, None),
            ("linear", "c1", None, "queued"),
            ("linear", "c2", "queued", "completed"),
            ("linear", "c3", None, None),
        ]
    finally:
        await conn.close()


async def test_history_waiting_for_its_item_is_remapped_too(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """Changes a feed read before their item was synced wait in history_orphans: they are
    mapped again as well, so they arrive with the new map's statuses."""
    team = await make_team(pool, "Orphans")
    config = {"token": PLANTED_TOKEN, "repos": ["o/r"], "status_map": {"open": "blocked"}}
    integration = await make_integration(pool, team, "github", config)
    await pool.execute(
        "INSERT INTO history_orphans (integration_id, source, external_id, change_id, field,"
        "   changed_at, from_value, to_value, from_status, to_status, from_default, to_default)"
        " VALUES ($1, 'github', '9', 'e1', 'status', now(), 'open', 'completed', 'queued',"
        "         'completed', 'queued', 'completed')",
        integration,
    )
    result = await remap.remap_integration(pool, integration, settings)
    assert (result.outcome, result.items, result.history_rows) == ("remapped", 0, 1)
    row = await pool.fetchrow("SELECT from_status, to_status FROM history_orphans")
    assert tuple(row) == ("blocked", "completed")


async def test_a_run_says_when_the_rows_are_mapped_with_another_map_and_after_run_remaps(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    with github_tracker() as tracker:
        integration = await synced(pool, settings, tracker)  # the first run records its map

        async def run() -> sync.RunResult:
            return await forced_run(pool, integration, settings, tracker.connector)

        quiet = await run()
        assert (quiet.outcome, quiet.remap_due) == ("succeeded", False)
        assert await remap.after_run(pool, quiet, settings) is None

        await set_status_map(pool, integration, tracker.edited)
        edited = await run()
        assert (edited.outcome, edited.remap_due) == ("succeeded", True)
        done = await remap.after_run(pool, edited, settings)
        assert done is not None and (done.outcome, done.changed) == ("remapped", 2)
        assert (await run()).remap_due is False  # the rows are mapped with it now

        # a remap by hand records the map it applied as well
        await set_status_map(pool, integration, tracker.original)
        assert (await remap.remap_integration(pool, integration, settings)).changed == 2
        assert (await run()).remap_due is False

"""The sync run against a real PostgreSQL, with the in-test connector."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from connectors.base import FatalError, RetriableError, Status
from tests.fake_connector import T0, Upstream, fake_connector_class
from tests.helpers import creations, imported_items, make_integration, make_team
from worker import db, sync
from worker.settings import Settings
from worker.store import sync as store
from worker.sync import RunOptions

TOKEN = "tok-PLANTED-engine-7a6b5c"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", backoff_base_seconds=60, sweep_every_runs=0)


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
async def team(pool: asyncpg.Pool) -> uuid.UUID:
    return await make_team(pool, "Alpha")


@pytest.fixture
async def integration(pool: asyncpg.Pool, team: uuid.UUID) -> uuid.UUID:
    return await make_integration(pool, team, "github", {"token": TOKEN}, interval=60)


async def run(
    pool: asyncpg.Pool,
    integration_id: uuid.UUID,
    settings: Settings,
    upstream: Upstream,
    *,
    force: bool = True,
    full: bool = False,
    environ: dict[str, str] | None = None,
    stop: asyncio.Event | None = None,
    tick_due: datetime | None = None,
) -> sync.RunResult:
    loader = lambda source: fake_connector_class(upstream)  # noqa: E731
    return await sync.run_integration(
        pool,
        integration_id,
        settings,
        environ=environ or {},
        options=RunOptions(force=force, full=full, stop=stop, tick_due=tick_due),
        loader=loader,
    )


async def events(pool: asyncpg.Pool, *types: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT * FROM activity_logs WHERE cardinality($1::text[]) = 0 OR event_type = ANY($1)"
        " ORDER BY created_at, id",
        list(types),
    )


async def test_first_sync_inserts_and_second_writes_nothing(
    pool, integration, settings, upstream
) -> None:
    upstream.add(25)
    first = await run(pool, integration, settings, upstream)
    assert (first.outcome, first.created, first.updated, first.pages) == ("succeeded", 25, 0, 3), (
        first.reason
    )
    rows = await pool.fetch(
        "SELECT external_id, updated_at, team_id, integration_id, assigned_at"
        " FROM work_items ORDER BY external_id"
    )
    assert len(rows) == 25 and all(r["integration_id"] == integration for r in rows)
    assert all(r["assigned_at"] is not None for r in rows)
    assert await creations(pool) == dict.fromkeys([r["external_id"] for r in rows], 1)
    before_events = len(await events(pool))

    second = await run(pool, integration, settings, upstream)
    assert (second.outcome, second.created, second.updated) == ("succeeded", 0, 0)
    again = await pool.fetch("SELECT external_id, updated_at FROM work_items ORDER BY external_id")
    assert [(r["external_id"], r["updated_at"]) for r in again] == [
        (r["external_id"], r["updated_at"]) for r in rows
    ]
    # A run that changed nothing writes no row (worker/runlog.py): the state counts it.
    assert len(await events(pool)) == before_events
    counted = await pool.fetchrow(
        "SELECT quiet_runs, quiet_last_at, last_started_at, last_run_id FROM integration_sync_state"
    )
    assert counted["quiet_runs"] == 1 and counted["last_run_id"] == second.run_id
    assert counted["quiet_last_at"] == counted["last_started_at"]
    completed = (await events(pool, "sync_completed"))[-1]["metadata"]
    assert {"integration_id", "created", "updated", "unchanged", "pages", "duration_s"} <= set(
        completed
    )
    assert completed["integration_id"] == str(integration)


async def test_status_change_sets_timestamps_and_logs_once(
    pool, integration, settings, upstream
) -> None:
    ids = upstream.add(3)
    await run(pool, integration, settings, upstream)
    upstream.change(ids[0], T0 + timedelta(hours=1), status=Status.IN_PROGRESS)
    await run(pool, integration, settings, upstream)
    started = await pool.fetchrow(
        "SELECT status, started_at, completed_at FROM work_items WHERE external_id = $1", ids[0]
    )
    assert started["status"] == "in_progress" and started["started_at"] is not None
    assert started["completed_at"] is None

    done_at = T0 + timedelta(hours=2)
    upstream.change(ids[0], done_at, status=Status.COMPLETED, completed_at=done_at)
    result = await run(pool, integration, settings, upstream)
    assert result.updated == 1 and done_at in result.touched
    row = await pool.fetchrow(
        "SELECT status, started_at, completed_at FROM work_items WHERE external_id = $1", ids[0]
    )
    assert row["status"] == "completed" and row["completed_at"] == done_at
    assert row["started_at"] == started["started_at"]  # kept from the first time work started
    changes = await events(pool, "work_item_status_changed")
    assert [(c["metadata"]["old_status"], c["metadata"]["new_status"]) for c in changes] == [
        ("queued", "in_progress"),
        ("in_progress", "completed"),
    ]
    assert all(c["work_item_id"] is not None and c["team_id"] is not None for c in changes)
    assert len(await events(pool, "work_item_updated")) == 0

    # Reopened: the completion time goes away (it is no longer a completion).
    upstream.change(
        ids[0], done_at + timedelta(hours=1), status=Status.IN_PROGRESS, completed_at=None
    )
    await run(pool, integration, settings, upstream)
    assert (
        await pool.fetchval("SELECT completed_at FROM work_items WHERE external_id = $1", ids[0])
        is None
    )


async def test_completion_without_tracker_time_uses_first_sync_that_sees_it(
    pool, integration, settings, upstream
) -> None:
    ids = upstream.add(1)
    await run(pool, integration, settings, upstream)
    upstream.change(ids[0], T0 + timedelta(hours=1), status=Status.COMPLETED)
    before = datetime.now(UTC)
    await run(pool, integration, settings, upstream)
    first_seen = await pool.fetchval("SELECT completed_at FROM work_items")
    assert first_seen >= before - timedelta(seconds=1)
    upstream.change(ids[0], T0 + timedelta(hours=2), title="renamed")
    await run(pool, integration, settings, upstream)
    assert await pool.fetchval("SELECT completed_at FROM work_items") == first_seen


async def test_title_edit_logs_changed_fields(pool, integration, settings, upstream) -> None:
    ids = upstream.add(2)
    await run(pool, integration, settings, upstream)
    upstream.change(ids[1], T0 + timedelta(hours=1), title="New title")
    result = await run(pool, integration, settings, upstream)
    assert (result.updated, result.created) == (1, 0)
    [updated] = await events(pool, "work_item_updated")
    assert "title" in updated["metadata"]["fields"]
    assert updated["metadata"]["external_id"] == ids[1]


async def test_failure_on_page_3_keeps_pages_1_2_and_resumes(
    pool, integration, settings, upstream
) -> None:
    upstream.add(50)  # 5 pages of 10
    upstream.fail_on_page = 3
    failed = await run(pool, integration, settings, upstream)
    assert failed.outcome == "failed" and failed.pages == 2
    assert await pool.fetchval("SELECT count(*) FROM work_items") == 20
    cursor = await pool.fetchval("SELECT cursor FROM integration_sync_state")
    page2_last = sorted(upstream.items.values(), key=lambda i: i.updated_at)[19].updated_at
    assert datetime.fromisoformat(cursor[""]) == page2_last
    [failure] = await events(pool, "sync_failed")
    assert failure["metadata"]["error_class"] == "RetriableError"
    state = await pool.fetchrow("SELECT * FROM integration_sync_state")
    assert state["consecutive_failures"] == 1 and state["next_attempt_at"] is not None

    upstream.fail_on_page = None
    resumed = await run(pool, integration, settings, upstream)
    assert resumed.outcome == "succeeded"
    assert upstream.since_seen[-1] == {"": page2_last - timedelta(minutes=5)}
    assert await pool.fetchval("SELECT count(*) FROM work_items") == 50
    assert resumed.created == 30
    assert await pool.fetchval("SELECT consecutive_failures FROM integration_sync_state") == 0


async def test_backoff_skips_until_due_and_an_admin_edit_retries_at_once(
    pool, integration, settings, upstream
) -> None:
    upstream.add(1)
    upstream.fail_on_page = 1
    assert (await run(pool, integration, settings, upstream)).outcome == "failed"
    upstream.fail_on_page = None
    skipped = await run(pool, integration, settings, upstream, force=False)
    assert skipped.outcome == "skipped" and "backing off" in skipped.reason
    await pool.execute(
        "UPDATE integrations SET config = config || '{\"status_map\": {}}' WHERE id = $1",
        integration,
    )
    assert (await run(pool, integration, settings, upstream, force=False)).outcome == "succeeded"
    not_due = await run(pool, integration, settings, upstream, force=False)
    assert not_due.outcome == "skipped" and "synced" in not_due.reason


async def test_a_config_edit_after_a_successful_run_runs_at_once(
    pool, integration, settings, upstream
) -> None:
    upstream.add(2)
    assert (await run(pool, integration, settings, upstream, force=False)).outcome == "succeeded"
    not_due = await run(pool, integration, settings, upstream, force=False)
    assert not_due.outcome == "skipped" and "synced" in not_due.reason
    # An admin widens or fixes the config: the run started for the edit must not wait an interval.
    await pool.execute(
        'UPDATE integrations SET config = config || \'{"status_map": {"open": "blocked"}}\''
        " WHERE id = $1",
        integration,
    )
    edited = await run(pool, integration, settings, upstream, force=False)
    assert edited.outcome == "succeeded"
    # Once run with the new config, the interval rules again.
    again = await run(pool, integration, settings, upstream, force=False)
    assert again.outcome == "skipped" and "synced" in again.reason


async def test_backoff_grows_and_is_capped(pool, integration, tmp_path, upstream) -> None:
    settings = Settings(home=tmp_path, backoff_base_seconds=10, backoff_max_seconds=35)
    upstream.add(1)
    upstream.fail_on_page = 1
    waits = []
    for _ in range(4):
        await run(pool, integration, settings, upstream)
        waits.append(
            await pool.fetchval(
                "SELECT extract(epoch FROM next_attempt_at - last_error_at) FROM integration_sync_state"
            )
        )
    assert [round(float(w)) for w in waits] == [10, 20, 35, 35]


async def test_hostile_text_is_stored(pool, integration, settings, upstream) -> None:
    ids = upstream.add(4)
    at = T0 + timedelta(hours=1)
    # (a lone surrogate: half an emoji, as a JSON answer's "\\ud83d" decodes)
    upstream.change(ids[0], at, title="nul\x00byte", description="a\x00b\ud83d")
    upstream.items[ids[0]] = replace(
        upstream.items[ids[0]],
        raw={"body": "x\x00y", "k\x00": ["\x00"], "half": "\udc00!", "nan": float("nan")},
    )
    upstream.change(ids[1], at, title="x" * 600)
    upstream.change(ids[2], at, title="emoji 🚀 ✓")
    upstream.change(ids[3], at, title="עברית RTL العربية")
    result = await run(pool, integration, settings, upstream)
    assert result.outcome == "succeeded" and result.created == 4
    rows = {r["external_id"]: r for r in await pool.fetch("SELECT * FROM work_items")}
    assert rows[ids[0]]["title"] == "nulbyte" and rows[ids[0]]["description"] == "ab"
    assert rows[ids[0]]["external_data"] == {"body": "xy", "k": [""], "half": "!", "nan": None}
    assert len(rows[ids[1]]["title"]) == 500 and rows[ids[1]]["title"].endswith("…")
    assert rows[ids[2]]["title"] == "emoji 🚀 ✓"
    assert rows[ids[3]]["title"] == "עברית RTL العربية"


async def test_older_copy_never_overwrites_newer(pool, integration, settings, upstream) -> None:
    ids = upstream.add(1)
    upstream.change(ids[0], T0 + timedelta(hours=2), title="newest")
    await run(pool, integration, settings, upstream)
    upstream.change(ids[0], T0 + timedelta(hours=1), title="stale replica copy")
    result = await run(pool, integration, settings, upstream, full=True)
    assert result.updated == 0
    assert await pool.fetchval("SELECT title FROM work_items") == "newest"


async def test_cursor_never_moves_past_the_run_start(pool, integration, settings, upstream) -> None:
    future = datetime.now(UTC) + timedelta(days=2)  # a tracker clock far ahead of ours
    upstream.add(2, start=future)
    before = datetime.now(UTC)
    await run(pool, integration, settings, upstream)
    cursor = datetime.fromisoformat(
        await pool.fetchval("SELECT cursor->>'' FROM integration_sync_state")
    )
    assert before - timedelta(seconds=5) <= cursor <= datetime.now(UTC)


async def test_invalid_config_fails_clearly_and_others_carry_on(
    pool, team, settings, upstream
) -> None:
    other_team = await make_team(pool, "Beta")
    bad = await make_integration(pool, team, "github", {"token": TOKEN, "project": 12, "bogus": 1})
    good = await make_integration(pool, other_team, "github", {"token": TOKEN})
    upstream.add(3)
    results = [await run(pool, i, settings, upstream) for i in (bad, good)]
    assert [r.outcome for r in results] == ["failed", "succeeded"]
    assert results[0].error_class == "ConfigError"
    assert "project" in results[0].reason and "bogus" in results[0].reason
    [failure] = await events(pool, "sync_failed")
    assert "invalid integrations.config" in failure["message"]


async def test_config_that_is_not_an_object_fails_clearly(pool, team, settings, upstream) -> None:
    bad = await make_integration(pool, team, "github", ["not", "an", "object"])  # type: ignore[arg-type]
    result = await run(pool, bad, settings, upstream)
    assert result.outcome == "failed" and "JSON object" in result.reason


async def test_missing_connector_type_fails_clearly(pool, integration, settings) -> None:
    def loader(source: str) -> Any:
        raise FatalError(f"no connector installed for type {source!r}")

    result = await sync.run_integration(
        pool, integration, settings, environ={}, options=RunOptions(force=True), loader=loader
    )
    assert result.outcome == "failed" and "no connector installed" in result.reason
    assert len(await events(pool, "sync_failed")) == 1


async def test_token_env_missing_names_the_key_not_a_value(pool, team, settings, upstream) -> None:
    integration = await make_integration(
        pool, team, "github", {"token_env": "C9_TEST_MISSING_TOKEN"}
    )
    result = await run(pool, integration, settings, upstream)
    assert result.outcome == "failed" and "C9_TEST_MISSING_TOKEN" in result.reason
    upstream.add(1)
    ok = await run(pool, integration, settings, upstream, environ={"C9_TEST_MISSING_TOKEN": TOKEN})
    assert ok.outcome == "succeeded"


async def test_token_file_is_read(pool, team, settings, upstream, tmp_path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    integration = await make_integration(pool, team, "github", {"token_file": str(path)})
    upstream.add(1)
    assert (await run(pool, integration, settings, upstream)).outcome == "succeeded"


async def test_secrets_never_reach_logs_activity_or_results(
    pool, integration, settings, upstream, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    upstream.add(12)
    upstream.fail_on_page = 2
    upstream.fail_with = RuntimeError(f"SDK blew up with header Authorization: token {TOKEN}")
    result = await run(pool, integration, settings, upstream)
    assert result.outcome == "failed" and "***" in result.reason
    upstream.fail_with = RetriableError(f"retry later {TOKEN}")
    await run(pool, integration, settings, upstream)
    dumped = "\n".join(str(dict(r)) for r in await pool.fetch("SELECT * FROM activity_logs"))
    dumped += "\n".join(
        str(dict(r)) for r in await pool.fetch("SELECT * FROM integration_sync_state")
    )
    from worker.logs import JsonFormatter

    formatted = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert "sync_failed" in dumped and "sync_crashed" in formatted
    assert TOKEN not in dumped and TOKEN not in formatted and TOKEN not in result.reason


async def test_deletion_sweep_marks_never_deletes(pool, integration, settings, upstream) -> None:
    ids = upstream.add(3)
    await run(pool, integration, settings, upstream)
    del upstream.items[ids[1]]
    result = await run(pool, integration, settings, upstream, full=True)
    assert result.removed == 1
    rows = {
        r["external_id"]: r["removed_upstream_at"]
        for r in await pool.fetch("SELECT * FROM work_items")
    }
    assert len(rows) == 3 and rows[ids[1]] is not None and rows[ids[0]] is None
    [removed] = await events(pool, "work_item_removed")
    assert removed["metadata"]["external_id"] == ids[1]


async def test_sweep_refuses_to_mark_everything_when_upstream_lists_nothing(
    pool, integration, settings, upstream
) -> None:
    upstream.add(3)
    await run(pool, integration, settings, upstream)
    upstream.items.clear()
    await run(pool, integration, settings, upstream, full=True)
    assert (
        await pool.fetchval("SELECT count(*) FROM work_items WHERE removed_upstream_at IS NOT NULL")
        == 0
    )


async def test_tracker_reported_removal_marks_the_row(
    pool, integration, settings, upstream
) -> None:
    ids = upstream.add(2)
    await run(pool, integration, settings, upstream)
    upstream.change(ids[0], T0 + timedelta(hours=1), removed=True)
    result = await run(pool, integration, settings, upstream)
    assert result.removed == 1
    assert len(await events(pool, "work_item_removed")) == 1


async def test_two_runs_at_once_one_runs_one_skips(pool, integration, settings, upstream) -> None:
    upstream.add(30)
    upstream.page_delay = 0.2
    a, b = await asyncio.gather(
        run(pool, integration, settings, upstream), run(pool, integration, settings, upstream)
    )
    assert sorted([a.outcome, b.outcome]) == ["skipped", "succeeded"]
    assert len(await creations(pool)) == 30 and set((await creations(pool)).values()) == {1}
    assert len(await events(pool, "sync_started")) == 1


async def test_stop_event_ends_the_run_after_the_current_transaction(
    pool, integration, settings, upstream
) -> None:
    """A stop asked for ends the run once the transaction under way commits: the pages it took
    (those fetched by then, PAGES_AHEAD at most) stay with their cursor, no other is written."""
    upstream.add(10 * (sync.PAGES_AHEAD + 5))
    stop = asyncio.Event()
    stop.set()
    result = await run(pool, integration, settings, upstream, stop=stop)
    assert result.outcome == "interrupted" and 1 <= result.pages <= sync.PAGES_AHEAD
    assert await pool.fetchval("SELECT count(*) FROM work_items") == 10 * result.pages
    last = sorted(upstream.items.values(), key=lambda i: i.updated_at)[10 * result.pages - 1]
    cursor = await pool.fetchval("SELECT cursor->>'' FROM integration_sync_state")
    assert cursor == last.updated_at.isoformat()
    assert len(await events(pool, "sync_interrupted")) == 1
    assert await pool.fetchval("SELECT last_sync FROM integrations") is None


async def test_duplicate_ids_inside_one_page_keep_the_newest(
    pool, integration, settings, upstream
) -> None:
    from connectors.base import Page, WorkItem
    from worker.store import sync as store

    older = WorkItem("X-1", "old", Status.QUEUED, T0)
    newer = WorkItem("X-1", "new", Status.QUEUED, T0 + timedelta(minutes=1))
    async with pool.acquire() as conn, conn.transaction():
        team = await conn.fetchval("SELECT team_id FROM integrations WHERE id = $1", integration)
        result = await store.upsert_items(
            conn,
            source="github",
            team_id=team,
            integration_id=integration,
            items=Page([newer, older]).items,
        )
    assert result.created == 1
    assert await pool.fetchval("SELECT title FROM work_items") == "new"


async def test_a_failing_metrics_recompute_does_not_fail_the_sync(
    pool, integration, settings, upstream, caplog
) -> None:
    await pool.execute("""
        CREATE FUNCTION refuse_metrics() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION 'metrics are read-only today'; END $$ LANGUAGE plpgsql;
        CREATE TRIGGER refuse_metrics BEFORE INSERT OR UPDATE ON metrics
            FOR EACH ROW EXECUTE FUNCTION refuse_metrics();
    """)
    done_at = datetime.now(UTC) - timedelta(hours=1)
    upstream.add(2, status=Status.COMPLETED)
    upstream.change("FAKE-1", done_at, completed_at=done_at)
    result = await run(pool, integration, settings, upstream)
    assert result.outcome == "succeeded" and result.created == 2
    assert await pool.fetchval("SELECT last_success_at FROM integration_sync_state") is not None
    assert await pool.fetchval("SELECT count(*) FROM metrics") == 0
    assert any(r.getMessage() == "metrics_recompute_failed" for r in caplog.records)


async def test_sweep_clears_a_mark_when_the_item_is_listed_again(
    pool, integration, tmp_path, upstream
) -> None:
    settings = Settings(home=tmp_path, sweep_every_runs=1)  # every run sweeps
    ids = upstream.add(30, step=timedelta(hours=1))
    await run(pool, integration, settings, upstream)
    hidden = upstream.items.pop(ids[1])  # left out of one listing (or deleted, then restored)
    await run(pool, integration, settings, upstream)
    assert await pool.fetchval(
        "SELECT removed_upstream_at FROM work_items WHERE external_id = $1", ids[1]
    )
    upstream.items[ids[1]] = hidden  # unchanged and old: an incremental `changes` skips it
    result = await run(pool, integration, settings, upstream)
    assert upstream.since_seen[-1], "an incremental run"
    assert result.created == result.updated == 0
    assert (
        await pool.fetchval(
            "SELECT removed_upstream_at FROM work_items WHERE external_id = $1", ids[1]
        )
        is None
    )
    [restored] = await events(pool, "work_item_restored")
    assert restored["metadata"]["external_id"] == ids[1]


async def test_an_item_read_again_after_its_mark_is_logged_as_restored(
    pool, integration, settings, upstream
) -> None:
    ids = upstream.add(3)
    await run(pool, integration, settings, upstream)
    hidden = upstream.items.pop(ids[1])
    await run(pool, integration, settings, upstream, full=True)
    upstream.items[ids[1]] = hidden
    await run(pool, integration, settings, upstream, full=True)  # `changes` reads it again
    assert (
        await pool.fetchval(
            "SELECT removed_upstream_at FROM work_items WHERE external_id = $1", ids[1]
        )
        is None
    )
    [restored] = await events(pool, "work_item_restored")
    assert restored["metadata"]["external_id"] == ids[1] and restored["work_item_id"] is not None
    assert await events(pool, "work_item_updated") == []


async def test_an_item_moving_to_another_team_says_so(
    pool, integration, settings, upstream
) -> None:
    upstream.add(1)
    await run(pool, integration, settings, upstream)
    beta = await make_team(pool, "Beta")
    other = await make_integration(pool, beta, "github", {"token": TOKEN})
    result = await run(pool, other, settings, upstream)  # the same upstream project
    assert result.updated == 1
    assert await pool.fetchval("SELECT team_id FROM work_items") == beta
    [moved] = await events(pool, "work_item_updated")
    assert moved["metadata"]["fields"] == ["team_id"] and moved["team_id"] == beta


async def test_one_malformed_item_is_rejected_by_name_and_the_rest_lands(
    pool, integration, settings, upstream
) -> None:
    ids = upstream.add(25)  # three pages of 10
    # The connector cannot map one item (say, a garbage `updated`), and another passes a
    # description that is not text (Linear once crashed the page commit on that).
    upstream.unmappable[ids[3]] = "updated: unreadable time 'soon'"
    upstream.change(ids[14], upstream.items[ids[14]].updated_at, description={"doc": 1})
    first = await run(pool, integration, settings, upstream, force=False)
    assert first.outcome == "succeeded" and first.pages == 3
    stored = {r["external_id"] for r in await pool.fetch("SELECT external_id FROM work_items")}
    assert stored == set(ids) - {ids[3], ids[14]}
    rejected = await events(pool, "work_item_rejected")
    # (pages committed together share their rows' time: their order is not asked for)
    assert sorted((r["metadata"]["external_key"], r["metadata"]["reason"]) for r in rejected) == [
        (ids[14], "description is dict, not text"),
        (ids[3], "updated: unreadable time 'soon'"),
    ]
    assert all(ids[3] in r["message"] or ids[14] in r["message"] for r in rejected)
    # Nothing froze: the cursor passed them, and the next run reads only the overlap.
    second = await run(pool, integration, settings, upstream, force=True)
    assert second.outcome == "succeeded" and second.created == 0


async def test_a_retry_after_longer_than_a_run_may_wait_delays_the_next_run(
    pool, integration, settings, upstream
) -> None:
    upstream.add(1)
    upstream.fail_on_page = 1
    upstream.fail_with = RetriableError("rate limited (429)", retry_after=7200)
    failed = await run(pool, integration, settings, upstream)
    assert failed.outcome == "failed"
    wait = await pool.fetchval(
        "SELECT extract(epoch FROM next_attempt_at - now()) FROM integration_sync_state"
        " WHERE integration_id = $1",
        integration,
    )
    assert 7100 < wait <= 7200  # the tracker's word, not the 60 s first backoff
    skipped = await run(pool, integration, settings, upstream, force=False)
    assert skipped.outcome == "skipped" and "backing off" in skipped.reason


async def test_an_integration_deleted_mid_run_fails_clearly_and_keeps_its_pages(
    pool, integration, settings, upstream, team, caplog
) -> None:
    upstream.add(25)

    async def delete_after_first(n: int) -> None:
        if n == 1:  # (page 2 is read while page 1 commits: the admin deletes after that commit)
            async with asyncio.timeout(10):
                # (polls the database: no event to wait on)
                while await pool.fetchval("SELECT count(*) FROM work_items") < 10:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            await pool.execute("DELETE FROM integrations WHERE id = $1", integration)

    upstream.between_pages = delete_after_first
    caplog.set_level(logging.INFO)
    result = await run(pool, integration, settings, upstream)
    assert result.outcome == "failed" and result.error_class == "IntegrationDeleted"
    assert "deleted during the run" in result.reason
    assert await pool.fetchval("SELECT count(*) FROM work_items") == 10  # page 1 stays
    [failed] = await events(pool, "sync_failed")
    assert failed["team_id"] == team and "deleted during the run" in failed["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "ForeignKeyViolation" not in caplog.text


async def test_two_integrations_covering_the_same_items_say_so(
    pool, integration, settings, upstream
) -> None:
    upstream.add(3)
    await run(pool, integration, settings, upstream)
    beta = await make_team(pool, "Beta")
    other = await make_integration(pool, beta, "github", {"token": TOKEN})
    await run(pool, other, settings, upstream)
    [overlap] = await events(pool, "scope_overlap")
    assert overlap["team_id"] == beta
    assert overlap["metadata"]["count"] == 3
    assert overlap["metadata"]["other_integrations"] == [str(integration)]
    # The first team's next run takes back the two unchanged items (an overlap) and the edited
    # one with its newer version (a move, not counted).
    upstream.change("FAKE-1", T0 + timedelta(days=1), title="edited")
    await run(pool, integration, settings, upstream)
    latest = (await events(pool, "scope_overlap"))[-1]
    assert latest["team_id"] != beta
    assert latest["metadata"]["count"] == 2 and "FAKE-1" not in latest["metadata"]["examples"]


async def test_a_sweep_marks_only_what_a_second_listing_confirms(
    pool, integration, team, tmp_path, upstream
) -> None:
    sweeping = Settings(home=tmp_path / "home", sweep_every_runs=1)
    ids = upstream.add(20)
    await run(pool, integration, sweeping, upstream)
    # One listing comes back short (a page served empty, an offset shifted by a deletion).
    upstream.listing_drops = [set(ids[5:15])]
    await run(pool, integration, sweeping, upstream)
    assert upstream.ids_listed == 3  # the short listing was checked by a second one
    assert (
        await pool.fetchval("SELECT count(*) FROM work_items WHERE removed_upstream_at IS NOT NULL")
        == 0
    )
    assert await events(pool, "work_item_removed") == []
    # A real deletion is missing from both listings, and is marked.
    del upstream.items[ids[0]]
    await run(pool, integration, sweeping, upstream)
    assert (
        await pool.fetchval(
            "SELECT external_id FROM work_items WHERE removed_upstream_at IS NOT NULL"
        )
        == ids[0]
    )


async def test_skipped_runs_are_counted(pool, integration, settings, upstream) -> None:
    from worker import telemetry

    def skipped() -> float:
        return telemetry.RUNS.labels(source="github", outcome="skipped")._value.get()

    upstream.add(1)
    await run(pool, integration, settings, upstream, force=False)
    before = skipped()
    assert (await run(pool, integration, settings, upstream, force=False)).outcome == "skipped"
    assert skipped() == before + 1


async def set_config(pool: asyncpg.Pool, integration_id: uuid.UUID, config: dict[str, Any]) -> None:
    await pool.execute("UPDATE integrations SET config = $2 WHERE id = $1", integration_id, config)


async def test_scope_widened_backfills_narrowed_marks_and_widened_again_restores(
    pool, team, settings, upstream
) -> None:
    a_ids = upstream.add(12, scope="A", start=T0 + timedelta(days=1))
    b_ids = upstream.add(8, scope="B", start=T0)  # older than everything A's cursor passed
    integration = await make_integration(
        pool, team, "github", {"token": TOKEN, "projects": ["A"]}, interval=3600
    )
    first = await run(pool, integration, settings, upstream, force=False)
    assert first.created == 12

    # Widened: B is read in full, A keeps its cursor; the edit alone makes the run due.
    await set_config(pool, integration, {"token": TOKEN, "projects": ["A", "B"]})
    widened = await run(pool, integration, settings, upstream, force=False)
    assert widened.outcome == "succeeded" and widened.created == 8
    assert set(upstream.since_seen[-1]) == {"A"}  # B had no mark: read from the start
    state = await pool.fetchval(
        "SELECT cursor FROM integration_sync_state WHERE integration_id = $1", integration
    )
    assert set(state) == {"A", "B"}

    # Narrowed: B's items are out of scope (not deleted), its cursor is dropped.
    await set_config(pool, integration, {"token": TOKEN, "projects": ["A"]})
    narrowed = await run(pool, integration, settings, upstream, force=True, full=True)
    assert narrowed.outcome == "succeeded" and narrowed.removed == 0
    out = await pool.fetch(
        "SELECT external_id, removed_upstream_at FROM work_items WHERE out_of_scope_at IS NOT NULL"
    )
    assert sorted(r["external_id"] for r in out) == sorted(b_ids)
    assert all(r["removed_upstream_at"] is None for r in out)  # the sweep left them alone
    assert len(await events(pool, "work_item_out_of_scope")) == 8
    assert await events(pool, "work_item_removed") == []
    queue = await pool.fetchval("SELECT count(*) FROM v_team_work_queue WHERE team_id = $1", team)
    assert queue == 12
    health = await pool.fetchrow(
        "SELECT items, out_of_scope FROM v_integration_health WHERE integration_id = $1",
        integration,
    )
    assert (health["items"], health["out_of_scope"]) == (12, 8)
    state = await pool.fetchval(
        "SELECT cursor FROM integration_sync_state WHERE integration_id = $1", integration
    )
    assert set(state) == {"A"}

    # Widened again: B is read in full again and its items are back.
    await set_config(pool, integration, {"token": TOKEN, "projects": ["A", "B"]})
    again = await run(pool, integration, settings, upstream, force=False)
    assert again.outcome == "succeeded" and again.created == 0 and again.updated == 8
    assert (
        await pool.fetchval("SELECT count(*) FROM work_items WHERE out_of_scope_at IS NOT NULL")
        == 0
    )
    assert len(await events(pool, "work_item_back_in_scope")) == 8
    assert set(a_ids) | set(b_ids) == {
        r["external_id"] for r in await pool.fetch("SELECT external_id FROM work_items")
    }


async def test_start_date_skips_older_items_in_every_scope(pool, team, settings, upstream) -> None:
    upstream.add(5, scope="A", start=T0, step=timedelta(days=1))  # T0 .. T0+4d
    upstream.add(5, scope="B", start=T0, step=timedelta(days=1))
    start = (T0 + timedelta(days=3)).date().isoformat()
    integration = await make_integration(
        pool, team, "github", {"token": TOKEN, "projects": ["A", "B"], "start_date": start}
    )
    result = await run(pool, integration, settings, upstream)
    assert result.created == 4  # the last two days of each scope
    midnight = datetime(2025, 5, 4, tzinfo=UTC)  # the start of the start date
    assert upstream.since_seen[-1] == {"A": midnight, "B": midnight}


async def test_a_row_synced_before_scopes_were_recorded_is_never_marked_out_of_scope(
    pool, team, settings, upstream
) -> None:
    upstream.add(3, scope="A")
    integration = await make_integration(pool, team, "github", {"token": TOKEN, "projects": ["A"]})
    await run(pool, integration, settings, upstream)
    await pool.execute("UPDATE work_items SET sync_scope = NULL")  # as 0006 found them
    await set_config(pool, integration, {"token": TOKEN, "projects": ["B"]})
    await run(pool, integration, settings, upstream)
    assert (
        await pool.fetchval("SELECT count(*) FROM work_items WHERE out_of_scope_at IS NOT NULL")
        == 0
    )


async def test_edits_after_a_tracker_clock_stepped_back_are_not_hidden(
    pool, integration, settings, upstream
) -> None:
    ahead = datetime.now(UTC) + timedelta(hours=1)  # the tracker's clock runs an hour ahead
    [ext] = upstream.add(1, start=ahead)
    await run(pool, integration, settings, upstream)
    # The clock is set right; the next edit carries an honest, earlier stamp.
    upstream.change(ext, datetime.now(UTC), title="edited after the clock was fixed")
    await run(pool, integration, settings, upstream, full=True)
    assert await pool.fetchval("SELECT title FROM work_items") == "edited after the clock was fixed"
    # An ordinary older copy still never overwrites a newer one.
    past = datetime.now(UTC) - timedelta(hours=1)
    upstream.change(ext, past, title="a stale copy")
    await run(pool, integration, settings, upstream, full=True)
    assert await pool.fetchval("SELECT title FROM work_items") == "edited after the clock was fixed"


async def census_rows(pool: asyncpg.Pool, integration_id: uuid.UUID) -> dict[str, tuple]:
    rows = await pool.fetch(
        "SELECT scope, upstream, held, removed, missing, lost FROM integration_census"
        " WHERE integration_id = $1",
        integration_id,
    )
    return {r["scope"]: tuple(r)[1:] for r in rows}


async def test_the_census_counts_each_scope_and_says_when_items_are_missing(
    pool, team, tmp_path, upstream
) -> None:
    from worker import telemetry

    sweeping = Settings(home=tmp_path / "home", sweep_every_runs=1)
    a = upstream.add(6, scope="A")
    upstream.add(4, scope="B")
    integration = await make_integration(
        pool, team, "github", {"token": TOKEN, "projects": ["A", "B"]}
    )
    await run(pool, integration, sweeping, upstream)
    assert await census_rows(pool, integration) == {
        "A": (6, 6, 0, 0, None),
        "B": (4, 4, 0, 0, None),
    }
    assert await events(pool, "census_mismatch") == []

    # One item can never be stored, one is deleted upstream: the census shows both.
    upstream.unmappable[a[0]] = "updated: unreadable"
    upstream.change(a[0], T0 + timedelta(days=1), title="now unmappable")
    await pool.execute("DELETE FROM work_items WHERE external_id = $1", a[0])  # never synced
    del upstream.items[a[1]]
    await run(pool, integration, sweeping, upstream)
    assert (await census_rows(pool, integration))["A"] == (5, 4, 1, 1, None)
    [mismatch] = await events(pool, "census_mismatch")
    assert mismatch["metadata"]["scope"] == "A" and mismatch["metadata"]["missing"] == 1
    gauge = telemetry.CENSUS_MISSING.labels(str(integration), "A")._value.get()
    assert gauge == 1


async def test_a_scope_the_credential_lost_is_never_mass_marked_deleted(
    pool, team, tmp_path, upstream
) -> None:
    sweeping = Settings(home=tmp_path / "home", sweep_every_runs=1)
    upstream.add(5, scope="A")
    upstream.add(5, scope="B")
    integration = await make_integration(
        pool, team, "github", {"token": TOKEN, "projects": ["A", "B"]}
    )
    await run(pool, integration, sweeping, upstream)
    upstream.lost["B"] = "404: repository not found or not visible to this token"
    upstream.change("FAKE-1", T0 + timedelta(days=1), title="A goes on")
    result = await run(pool, integration, sweeping, upstream)
    # A is synced, B's items are kept, and the run fails saying what to fix.
    assert result.outcome == "failed" and "'B'" in result.reason and "404" in result.reason
    assert await pool.fetchval("SELECT title FROM work_items WHERE external_id = 'FAKE-1'") == (
        "A goes on"
    )
    assert (
        await pool.fetchval("SELECT count(*) FROM work_items WHERE removed_upstream_at IS NOT NULL")
        == 0
    )
    lost = await events(pool, "visibility_lost")
    assert lost and all(r["metadata"]["scope"] == "B" for r in lost)
    census = await census_rows(pool, integration)
    assert census["B"][4].startswith("404") and census["B"][1] == 5  # held, not deleted


async def test_a_run_start_is_one_record_at_one_time(pool, integration, settings, upstream) -> None:
    """The run's `sync_started` row (written with its first page) is dated at the state's
    `last_started_at`, the start the due-check measures the interval from: a dashboard reading
    the log sees the start the scheduler used, in order before the run's other rows."""
    upstream.add(3)
    result = await run(pool, integration, settings, upstream)
    [started] = await events(pool, "sync_started")
    state = await pool.fetchrow("SELECT last_run_id, last_started_at FROM integration_sync_state")
    assert started["metadata"]["run_id"] == str(state["last_run_id"]) == str(result.run_id)
    assert started["created_at"] == state["last_started_at"]


async def test_an_item_deleted_while_its_scope_was_out_is_marked_removed_when_it_is_back(
    pool, team, settings, upstream
) -> None:
    """Found by the model test (tests/model). An item whose scope was taken out of the config is
    deleted upstream meanwhile; when the scope is configured again, the sweep must mark it
    removed (it is covered again, and gone), not leave it "out of scope" for good."""
    upstream.add(1, scope="A")
    gone, kept = upstream.add(2, scope="B")
    integration = await make_integration(
        pool, team, "github", {"token": TOKEN, "projects": ["A", "B"]}
    )
    await run(pool, integration, settings, upstream)
    await set_config(pool, integration, {"token": TOKEN, "projects": ["A"]})
    await run(pool, integration, settings, upstream)
    del upstream.items[gone]
    await set_config(pool, integration, {"token": TOKEN, "projects": ["A", "B"]})
    result = await run(pool, integration, settings, upstream, full=True)
    assert result.outcome == "succeeded" and result.removed == 1
    rows = {
        r["external_id"]: (r["removed_upstream_at"] is not None, r["out_of_scope_at"] is not None)
        for r in await pool.fetch("SELECT * FROM work_items WHERE sync_scope = 'B'")
    }
    assert rows == {gone: (True, False), kept: (False, False)}
    [removed] = await events(pool, "work_item_removed")
    assert removed["metadata"]["external_id"] == gone
    census = await census_rows(pool, integration)
    assert census["B"] == (1, 1, 1, 0, None)


async def test_a_sweep_that_lists_no_item_at_all_marks_nothing(
    pool, team, settings, upstream
) -> None:
    """Found by the model test (tests/model) as the one exception to "every item gone upstream is
    marked": when the listing holds no item in any scope, the sweep marks nothing (an empty
    answer is likelier a lost permission or a mis-scoped query than everything deleted). The
    rows stay present, and the census shows it (upstream 0, held 2); one item upstream again is
    enough for the next sweep to mark the others."""
    ids = upstream.add(2, scope="A")
    integration = await make_integration(pool, team, "github", {"token": TOKEN, "projects": ["A"]})
    await run(pool, integration, settings, upstream)
    survivor = upstream.items[ids[0]]
    upstream.items.clear()
    result = await run(pool, integration, settings, upstream, full=True)
    assert (result.outcome, result.removed) == ("succeeded", 0)
    assert await events(pool, "work_item_removed") == []
    assert (await census_rows(pool, integration))["A"] == (0, 2, 0, 0, None)

    upstream.items["FAKE-NEW"] = replace(survivor, external_id="FAKE-NEW", external_key="FAKE-NEW")
    result = await run(pool, integration, settings, upstream, full=True)
    assert (result.outcome, result.created, result.removed) == ("succeeded", 1, 2)
    assert (await census_rows(pool, integration))["A"] == (1, 1, 2, 0, None)


async def test_an_item_read_deleted_is_marked_though_the_sweep_lists_nothing(
    pool, team, settings, upstream
) -> None:
    """Found by the model test's long profile (Linear, its last issue trashed, then a run with
    its sweep): the sweep whose listing holds nothing marks nothing, but a page that read the
    item deleted (a tracker that still serves its deleted items) marks it, as any run does."""
    [ext] = upstream.add(1, scope="A")
    integration = await make_integration(pool, team, "github", {"token": TOKEN, "projects": ["A"]})
    await run(pool, integration, settings, upstream)
    upstream.change(ext, T0 + timedelta(hours=1), removed=True)
    upstream.listing_drops.append({ext})  # (as Linear's listing leaves out its trash)
    result = await run(
        pool, integration, settings.model_copy(update={"sweep_every_runs": 1}), upstream
    )
    assert upstream.ids_listed == 1 and not upstream.listing_drops
    assert (result.outcome, result.removed) == ("succeeded", 1)
    [removed] = await events(pool, "work_item_removed")
    assert removed["message"].endswith("deleted upstream")  # the page's, not the sweep's
    assert (await census_rows(pool, integration))["A"] == (0, 0, 1, 0, None)


async def test_a_row_removed_upstream_is_not_also_marked_out_of_scope(
    pool, team, settings, upstream
) -> None:
    """Found by the model test (tests/model). A row already marked removed upstream whose scope
    is then taken out of the config stays removed, not also "out of scope": otherwise, with the
    scope configured again, it would stay out of a scope the config covers (nothing reads a
    deleted item again, and the sweep leaves marked rows alone)."""
    upstream.add(1, scope="A")
    gone, kept = upstream.add(2, scope="B")
    integration = await make_integration(
        pool, team, "github", {"token": TOKEN, "projects": ["A", "B"]}
    )
    await run(pool, integration, settings, upstream)
    del upstream.items[gone]
    assert (await run(pool, integration, settings, upstream, full=True)).removed == 1
    await set_config(pool, integration, {"token": TOKEN, "projects": ["A"]})
    await run(pool, integration, settings, upstream)
    await set_config(pool, integration, {"token": TOKEN, "projects": ["A", "B"]})
    await run(pool, integration, settings, upstream, full=True)
    rows = {
        r["external_id"]: (r["removed_upstream_at"] is not None, r["out_of_scope_at"] is not None)
        for r in await pool.fetch("SELECT * FROM work_items WHERE sync_scope = 'B'")
    }
    assert rows == {gone: (True, False), kept: (False, False)}
    out = await events(pool, "work_item_out_of_scope")
    assert [e["metadata"]["external_id"] for e in out] == [kept]


async def test_an_item_first_read_already_deleted_has_its_removal_logged(
    pool, integration, settings, upstream
) -> None:
    """A tracker that still serves deleted items marked deleted (a trashed Linear issue: its
    `changes` report it `removed`) may show the worker an item for the first time already
    deleted. If the worker keeps a row for it, marked removed, the activity log must say so too:
    every row's story ends where the row is."""
    (ext,) = upstream.add(1)
    upstream.change(ext, T0 + timedelta(minutes=5), removed=True)
    await run(pool, integration, settings, upstream)
    row = await pool.fetchrow("SELECT * FROM work_items WHERE external_id = $1", ext)
    assert row is not None and row["removed_upstream_at"] is not None
    story = [e for e in await events(pool) if e["work_item_id"] == row["id"]]
    assert [e["event_type"] for e in story] == ["work_item_created"]
    assert story[0]["metadata"]["removed"] is True and "already deleted" in story[0]["message"]


@pytest.mark.parametrize("skew", [timedelta(hours=1), -timedelta(hours=1)])
async def test_a_skewed_worker_clock_neither_stalls_nor_hurries_a_scheduled_run(
    pool, integration, settings, upstream, monkeypatch, skew
) -> None:
    upstream.add(3)
    await run(pool, integration, settings, upstream)  # the last success, by the database's clock

    class SkewedClock(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def,override]
            return datetime.now(tz) - skew

    monkeypatch.setattr(sync, "datetime", SkewedClock)
    # Within the interval by the database's clock: skipped, however far the worker's clock runs.
    early = await run(pool, integration, settings, upstream, force=False)
    assert early.outcome == "skipped", early.reason
    # Due by the database's clock: runs, though the worker's clock says otherwise.
    await pool.execute(
        "UPDATE integration_sync_state SET last_started_at = now() - interval '61 seconds',"
        " last_success_at = now() - interval '61 seconds'"
    )
    due = await run(pool, integration, settings, upstream, force=False)
    assert due.outcome == "succeeded", due.reason


async def test_a_run_after_the_server_dropped_the_pools_idle_connections_still_runs(
    pool, integration, settings, upstream, db_url
) -> None:
    upstream.add(3)
    await run(pool, integration, settings, upstream)
    # PostgreSQL restarted, or an admin terminated idle sessions: the pool still holds them.
    admin = await asyncpg.connect(db_url)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    assert killed >= 1
    upstream.change("FAKE-1", T0 + timedelta(hours=1), title="after the restart")
    again = await run(pool, integration, settings, upstream)
    assert again.outcome == "succeeded", again.reason
    assert await pool.fetchval("SELECT title FROM work_items WHERE external_id = 'FAKE-1'") == (
        "after the restart"
    )


async def test_an_item_back_in_scope_but_deleted_meanwhile_says_both(
    pool, team, settings, upstream
) -> None:
    # Found by the model test (Linear, under load): an out-of-scope item read again, deleted
    # upstream meanwhile (a tracker that serves its trashed items), got only its back-in-scope
    # row; the row was marked removed with no activity row saying so.
    [ext] = upstream.add(1, scope="B", start=T0)
    integration = await make_integration(
        pool, team, "github", {"token": TOKEN, "projects": ["A", "B"]}, interval=3600
    )
    await run(pool, integration, settings, upstream)
    await set_config(pool, integration, {"token": TOKEN, "projects": ["A"]})
    await run(pool, integration, settings, upstream)
    upstream.change(ext, T0 + timedelta(hours=1), removed=True)  # trashed while out of scope
    await set_config(pool, integration, {"token": TOKEN, "projects": ["A", "B"]})
    await run(pool, integration, settings, upstream)
    row = await pool.fetchrow("SELECT removed_upstream_at, out_of_scope_at FROM work_items")
    assert row["removed_upstream_at"] is not None and row["out_of_scope_at"] is None
    kinds = [e["event_type"] for e in await events(pool) if e["event_type"].startswith("work_")]
    assert kinds[:2] == ["work_items_imported", "work_item_out_of_scope"]
    # written together, in one statement: their order is the ids' (random), not meaningful
    assert sorted(kinds[2:]) == ["work_item_back_in_scope", "work_item_removed"]


async def test_pages_fetched_while_a_transaction_commits_are_committed_together(
    pool, integration, settings, upstream, monkeypatch
) -> None:
    """While the first transaction commits, the next pages are read, PAGES_AHEAD of them and no
    more: its commit waits (inside the transaction) until they are, so fetching only after each
    commit, or one page ahead, it would wait in vain. The next transaction takes them all: one
    cursor, at the last of them, and one row for the items they import."""
    ahead = sync.PAGES_AHEAD
    upstream.add(10 * (ahead + 3))  # page 1, then `ahead` pages, then two more
    first_commit = asyncio.Event()
    fetches: list[int] = []  # n: page n handed out, page n + 1 being read

    async def fetching_next(n: int) -> None:
        if n == 1:  # (page 1 alone in the first transaction: the rest comes while it commits)
            await asyncio.wait_for(first_commit.wait(), 5)
        fetches.append(n)

    upstream.between_pages = fetching_next
    save_cursor = store.save_cursor
    saved: list[str] = []
    read_by_first_commit: list[int] = []

    async def save_once_the_reading_stops(conn, integration_id, cursor) -> None:
        if not saved:
            first_commit.set()
            async with asyncio.timeout(5):
                while len(fetches) < ahead:  # (no event to wait on)  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # (time for a fetch too many to begin)
            read_by_first_commit.extend(fetches)
        await save_cursor(conn, integration_id, cursor)
        saved.append(cursor[""])

    monkeypatch.setattr(store, "save_cursor", save_once_the_reading_stops)
    result = await run(pool, integration, settings, upstream)
    assert result.outcome == "succeeded", result.reason
    assert result.created == 10 * (ahead + 3) and result.pages == ahead + 3
    assert read_by_first_commit == list(range(1, ahead + 1))  # page ahead + 2 not begun
    ordered = sorted(upstream.items.values(), key=lambda i: i.updated_at)
    assert saved[:2] == [ordered[k].updated_at.isoformat() for k in (9, 10 * (ahead + 1) - 1)]
    assert saved[-1] == ordered[-1].updated_at.isoformat()
    assert await pool.fetchval("SELECT cursor->>'' FROM integration_sync_state") == saved[-1]
    counts = await pool.fetch(
        "SELECT (metadata->>'count')::int AS n FROM activity_logs"
        " WHERE event_type = 'work_items_imported' ORDER BY created_at"
    )
    assert [r["n"] for r in counts][:2] == [10, 10 * ahead]
    assert len(await imported_items(pool)) == 10 * (ahead + 3)


@pytest.mark.usefixtures("a_transaction_a_page")
async def test_a_failed_commit_ends_the_run_and_the_fetch_ahead_with_it(
    pool, integration, settings, upstream, monkeypatch
) -> None:
    """Page 2's commit fails while page 3 is being read: the run fails as it would have, page 1
    stays with its cursor, page 2 is rolled back, and the fetch in flight is cancelled (nothing
    left running, nothing of page 3 written)."""
    upstream.add(30)
    ended: list[str] = []

    async def page_three_never_comes(n: int) -> None:
        if n == 2:
            try:
                await asyncio.Event().wait()
            finally:
                ended.append("fetch of page 3 cancelled")

    upstream.between_pages = page_three_never_comes
    save_cursor = store.save_cursor
    commits = 0

    async def second_commit_fails(conn, integration_id, cursor) -> None:
        nonlocal commits
        commits += 1
        if commits == 2:
            await asyncio.sleep(0.05)  # (page 3's fetch is under way)
            raise asyncpg.DiskFullError("could not extend file: No space left on device")
        await save_cursor(conn, integration_id, cursor)

    monkeypatch.setattr(store, "save_cursor", second_commit_fails)
    result = await asyncio.wait_for(run(pool, integration, settings, upstream), 30)
    assert result.outcome == "failed" and result.error_class == "DiskFullError"
    assert ended == ["fetch of page 3 cancelled"]
    assert result.pages == 1
    assert await pool.fetchval("SELECT count(*) FROM work_items") == 10
    first = sorted(upstream.items.values(), key=lambda i: i.updated_at)[9]
    cursor = await pool.fetchval("SELECT cursor->>'' FROM integration_sync_state")
    assert cursor == first.updated_at.isoformat()


async def test_a_tracker_error_after_the_database_went_away_is_a_database_failure(
    pool, integration, settings, upstream, db_url
) -> None:
    # Found by CI (PostgreSQL stopped mid-run): the run's error was the tracker's, raised after
    # the connection had died, so the daemon logged a crash instead of a database failure.
    upstream.add(25)
    upstream.page_size = 10

    async def server_gone(page: int) -> None:
        if page == 1:
            await asyncio.sleep(0.3)  # page 1 commits meanwhile (read ahead)
            admin = await asyncpg.connect(db_url)
            try:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            finally:
                await admin.close()
            await asyncio.sleep(0.3)  # the run's connection sees it closed; then page 2 fails

    upstream.between_pages = server_gone
    upstream.fail_on_page = 2
    with pytest.raises(db.FAILURES) as raised:
        await run(pool, integration, settings, upstream)
    assert not isinstance(raised.value, RetriableError)
    assert await pool.fetchval("SELECT count(*) FROM work_items") == 10  # page 1 committed
    # Nothing recorded on the dead connection, and the pages committed before it stay.
    upstream.between_pages = upstream.fail_on_page = None
    again = await run(pool, integration, settings, upstream)
    assert again.outcome == "succeeded", again.reason
    assert await pool.fetchval("SELECT count(*) FROM work_items") == 25


async def test_a_tick_after_a_late_run_runs_on_time(pool, integration, settings, upstream) -> None:
    """A run that started late (it waited for a slot) does not make the next tick, due on time,
    look served: that tick is measured from its own due time, on the database's clock."""
    upstream.add(2)
    assert (await run(pool, integration, settings, upstream, force=False)).outcome == "succeeded"
    # As if that run had started 40 s ago, 20 s after its tick (due 60 s ago).
    await pool.execute(
        "UPDATE integration_sync_state SET last_started_at = last_started_at - interval '40 s',"
        " last_success_at = last_success_at - interval '40 s' WHERE integration_id = $1",
        integration,
    )
    await pool.execute("UPDATE integrations SET sync_interval = 60 WHERE id = $1", integration)

    async def tick(due: datetime) -> sync.RunResult:
        return await run(pool, integration, settings, upstream, force=False, tick_due=due)

    # that run's own tick, fired by another replica that is late too: served
    again = await tick(datetime.now(UTC) - timedelta(seconds=60))
    assert again.outcome == "skipped" and "served" in again.reason
    # outside the schedule, measured from now: 40 s since the last start, not due
    not_due = await run(pool, integration, settings, upstream, force=False)
    assert not_due.outcome == "skipped" and "synced" in not_due.reason
    # the next tick, due now (60 s after the last one): it runs
    assert (await tick(datetime.now(UTC))).outcome == "succeeded"

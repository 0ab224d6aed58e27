"""Runs that change nothing: no sync_started/sync_completed pair each, one row an hour that counts
them (worker/runlog.py); every other run keeps its rows. The clock is moved by ageing the state's
`run_logged_at`, never by sleeping."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from connectors.base import FatalError
from tests.fake_connector import T0, Upstream, fake_connector_class
from tests.helpers import make_integration, make_team, runs_ended
from worker import health, sync
from worker.settings import Settings
from worker.sync import RunOptions


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", sweep_every_runs=0)


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
async def integration(pool: asyncpg.Pool) -> uuid.UUID:
    team = await make_team(pool, "Quiet")
    return await make_integration(pool, team, "github", {"token": "t"}, interval=60)


async def run(
    pool: asyncpg.Pool, integration: uuid.UUID, settings: Settings, upstream: Upstream
) -> sync.RunResult:
    return await sync.run_integration(
        pool,
        integration,
        settings,
        environ={},
        options=RunOptions(force=True),
        loader=lambda source: fake_connector_class(upstream),
    )


async def run_rows(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT event_type, created_at, metadata FROM activity_logs"
        " WHERE event_type LIKE 'sync\\_%' ORDER BY created_at, id"
    )


async def state(pool: asyncpg.Pool, integration: uuid.UUID) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT quiet_runs, quiet_first_at, quiet_last_at, run_logged_at, last_started_at,"
        "       last_success_at, last_run_id FROM integration_sync_state WHERE integration_id = $1",
        integration,
    )
    assert row is not None
    return row


async def an_hour_passes(pool: asyncpg.Pool, integration: uuid.UUID) -> None:
    """The last run row was written an hour and a second ago."""
    await pool.execute(
        "UPDATE integration_sync_state SET run_logged_at = run_logged_at - interval '3601 s'"
        " WHERE integration_id = $1",
        integration,
    )


async def test_twelve_quiet_runs_in_an_hour_write_one_row_and_the_next_hour_another(
    pool, integration, settings, upstream, caplog
) -> None:
    caplog.set_level(logging.INFO)
    results = [await run(pool, integration, settings, upstream) for _ in range(12)]
    assert {r.outcome for r in results} == {"succeeded"}
    # The first quiet run found no run row at all: it writes one, for itself. The eleven after
    # it, within the hour, are counted in the state.
    [first] = await run_rows(pool)
    assert first["event_type"] == "sync_completed"
    assert first["metadata"]["quiet_runs"] == 1 and first["metadata"]["quiet"] is True
    assert first["metadata"]["run_id"] == str(results[0].run_id)
    counted = await state(pool, integration)
    assert counted["quiet_runs"] == 11
    # each run is still in the state: the last one's id and start, and its success
    assert counted["last_run_id"] == results[-1].run_id
    assert counted["quiet_last_at"] == counted["last_started_at"]
    assert counted["last_success_at"] >= counted["last_started_at"]
    # every run still logs its own start and end lines
    lines = [r.getMessage() for r in caplog.records]
    assert lines.count("sync_started") == lines.count("sync_completed") == 12

    await an_hour_passes(pool, integration)
    thirteenth = await run(pool, integration, settings, upstream)
    rows = await run_rows(pool)
    assert [r["event_type"] for r in rows] == ["sync_completed", "sync_completed"]
    hourly = rows[1]["metadata"]
    assert hourly["quiet_runs"] == 12  # the eleven counted, and itself
    assert hourly["run_id"] == str(thirteenth.run_id)
    starts = await pool.fetchval(
        "SELECT last_started_at FROM integration_sync_state WHERE integration_id = $1",
        integration,
    )
    assert datetime.fromisoformat(hourly["quiet_last_at"]) == starts
    assert datetime.fromisoformat(hourly["quiet_first_at"]) < starts
    # every run is in exactly one row's count
    assert sum(r["metadata"]["quiet_runs"] for r in rows) == 13 == await runs_ended(pool)
    after = await state(pool, integration)
    assert (after["quiet_runs"], after["quiet_first_at"], after["quiet_last_at"]) == (0, None, None)


async def test_a_changing_run_writes_its_pair_and_carries_the_quiet_count(
    pool, integration, settings, upstream
) -> None:
    upstream.add(2)
    await run(pool, integration, settings, upstream)  # creates: its pair
    assert [r["event_type"] for r in await run_rows(pool)] == ["sync_started", "sync_completed"]
    for _ in range(3):
        await run(pool, integration, settings, upstream)
    assert len(await run_rows(pool)) == 2  # quiet, within the hour of the last row
    quiet = await state(pool, integration)
    assert quiet["quiet_runs"] == 3

    upstream.change("FAKE-1", T0 + timedelta(days=2), title="renamed")
    changed = await run(pool, integration, settings, upstream)
    assert changed.updated == 1
    rows = await pool.fetch(
        "SELECT event_type, created_at, metadata FROM activity_logs"
        " WHERE metadata->>'run_id' = $1 ORDER BY created_at, id",
        str(changed.run_id),
    )
    assert [r["event_type"] for r in rows] == [
        "sync_started",
        "work_item_updated",
        "sync_completed",
    ]
    after = await state(pool, integration)
    # the start row is dated at the run's recorded start, so the log reads in order
    assert rows[0]["created_at"] == after["last_started_at"]
    end = rows[-1]["metadata"]
    assert end["quiet_runs"] == 3 and "quiet" not in end  # (the 3 before it)
    assert await runs_ended(pool) == 5
    assert datetime.fromisoformat(end["quiet_first_at"]) == quiet["quiet_first_at"]
    assert datetime.fromisoformat(end["quiet_last_at"]) == quiet["quiet_last_at"]
    assert after["quiet_runs"] == 0 and after["run_logged_at"] > quiet["run_logged_at"]


async def test_a_failing_run_keeps_its_rows_and_carries_the_quiet_count(
    pool, integration, settings, upstream
) -> None:
    upstream.add(2)
    await run(pool, integration, settings, upstream)  # creates: its pair
    await run(pool, integration, settings, upstream)  # quiet: counted
    upstream.fail_on_page = 1  # (a no-op run still reads the overlap's page)
    upstream.fail_with = FatalError("upstream refused the token (401)")
    failed = await run(pool, integration, settings, upstream)
    assert failed.outcome == "failed"
    rows = await pool.fetch(
        "SELECT event_type, metadata FROM activity_logs WHERE metadata->>'run_id' = $1"
        " ORDER BY created_at, id",
        str(failed.run_id),
    )
    assert [r["event_type"] for r in rows] == ["sync_started", "sync_failed"]
    assert rows[1]["metadata"]["quiet_runs"] == 1
    assert (await state(pool, integration))["quiet_runs"] == 0


@pytest.mark.parametrize("refused", ["FAKE-1", "FAKE-2"])
async def test_a_start_row_rolled_back_with_its_page_is_written_at_the_end_once(
    pool, integration, settings, upstream, refused
) -> None:
    """The start row goes out with the run's first page. FAKE-1 refused: that page's
    transaction, the start row with it, is rolled back, and the end writes it. FAKE-2 refused:
    the first page (and the start row) committed, the second failed; it is not written twice."""
    await pool.execute(f"""
        CREATE FUNCTION refuse_item() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql;
        CREATE TRIGGER refuse_item BEFORE INSERT ON work_items
            FOR EACH ROW WHEN (NEW.external_id = '{refused}') EXECUTE FUNCTION refuse_item();
    """)
    upstream.add(3)
    upstream.page_size = 1
    failed = await run(pool, integration, settings, upstream)
    assert failed.outcome == "failed" and "refused by the test" in failed.reason
    rows = await pool.fetch(
        "SELECT event_type FROM activity_logs WHERE metadata->>'run_id' = $1"
        " AND event_type LIKE 'sync\\_%' ORDER BY created_at, id",
        str(failed.run_id),
    )
    assert [r["event_type"] for r in rows] == ["sync_started", "sync_failed"]


async def test_status_shows_the_last_run_of_quiet_runs(
    pool, integration, settings, upstream
) -> None:
    for _ in range(3):
        last = await run(pool, integration, settings, upstream)
    async with pool.acquire() as conn:
        [row] = await health.overview(conn, integration_id=integration)
    counted = await state(pool, integration)
    assert row.last_started_at == counted["last_started_at"] == counted["quiet_last_at"]
    assert row.last_result == "ok"
    assert row.last_success_at is not None and row.last_success_at >= row.last_started_at
    assert last.outcome == "succeeded"
    assert datetime.now(UTC) - row.last_started_at < timedelta(minutes=1)

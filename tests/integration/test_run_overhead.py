"""What a run of an unchanged integration costs besides its pages: connector classes read once
per process, the lock, row, state and clock in one statement, no metrics recompute when nothing
changed (within `C9_SYNC_METRICS_REFRESH_SECONDS`). Real PostgreSQL; the in-test connector."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from connectors import registry
from connectors.base import FatalError, Status
from tests.fake_connector import Upstream, fake_connector_class
from tests.helpers import forced_run, make_integration, make_team
from worker import db, sync
from worker.settings import Settings
from worker.store import notify, run_start


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
async def team(pool: asyncpg.Pool) -> uuid.UUID:
    return await make_team(pool, "Alpha")


@pytest.fixture
async def integration(pool: asyncpg.Pool, team: uuid.UUID) -> uuid.UUID:
    return await make_integration(pool, team, "github", {"token": "t"}, interval=60)


async def run(
    pool: asyncpg.Pool, integration_id: uuid.UUID, settings: Settings, upstream: Upstream
) -> sync.RunResult:
    return await forced_run(pool, integration_id, settings, fake_connector_class(upstream))


async def commits_today(pool: asyncpg.Pool, team: uuid.UUID) -> int | None:
    value: int | None = await pool.fetchval(
        "SELECT commits_count FROM metrics WHERE team_id = $1 AND metric_date = current_date",
        team,
    )
    return value


async def agent_commit(pool: asyncpg.Pool, team: uuid.UUID) -> None:
    await pool.execute(
        "INSERT INTO activity_logs (team_id, event_type, message) VALUES ($1, 'commit_created',"
        " 'an agent committed')",
        team,
    )


# -------------------------------------------------------------------------------------------------
# Connector classes
# -------------------------------------------------------------------------------------------------
@pytest.fixture
def entry_point_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    reads: list[Any] = []

    def counting(**kwargs: Any) -> Any:
        reads.append(kwargs)
        return metadata.entry_points(**kwargs)

    monkeypatch.setattr(registry, "entry_points", counting)
    registry._installed.cache_clear()
    registry._load.cache_clear()
    yield reads
    registry._installed.cache_clear()
    registry._load.cache_clear()


def test_connector_classes_are_read_once_per_process(entry_point_reads) -> None:
    first = registry.load("github")
    for _ in range(5):
        assert registry.load("github") is first
    assert registry.load("jira").source == "jira"
    assert len(entry_point_reads) == 1


def test_an_unknown_type_still_names_the_installed_ones(entry_point_reads) -> None:
    for _ in range(2):
        with pytest.raises(FatalError, match=r"no connector installed for type 'nope'.*github"):
            registry.load("nope")
    assert len(entry_point_reads) == 1


# -------------------------------------------------------------------------------------------------
# The start: one statement
# -------------------------------------------------------------------------------------------------
class Statements:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, record: Any) -> None:
        self.texts.append(" ".join(record.query.split()))


async def test_lock_row_state_and_clock_are_one_statement(
    pool, db_url, integration, tmp_path: Path, upstream
) -> None:
    upstream.add(3)
    settings = Settings(home=tmp_path, sweep_every_runs=0)
    await run(pool, integration, settings, upstream)
    await pool.execute(  # due again: as a tick an interval later finds it
        "UPDATE integration_sync_state SET last_started_at = now() - interval '61 s',"
        " last_success_at = now() - interval '61 s'"
    )
    async with pool.acquire() as conn:
        start = await run_start.lock_and_read(conn, integration)
        await conn.execute("SELECT pg_advisory_unlock_all()")
    assert start.locked and start.integration is not None
    assert start.integration.id == integration and start.state.last_started_at is not None

    # A whole run: that statement, then the start recorded: nothing read in between.
    seen = Statements()

    async def logged(conn: asyncpg.Connection) -> None:
        await db._init_connection(conn)
        conn.add_query_logger(seen)

    logging_pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2, init=logged)
    assert logging_pool is not None
    try:
        result = await sync.run_integration(
            logging_pool, integration, settings, environ={},
            loader=lambda source: fake_connector_class(upstream),
        )  # fmt: skip
    finally:
        await logging_pool.close()
    assert result.outcome == "succeeded", result.reason
    assert seen.texts[0] == " ".join(run_start._LOCK_AND_READ.split())
    # (one statement, no transaction: its sync_started row waits for the run's first row)
    assert seen.texts[1].startswith(
        "INSERT INTO integration_sync_state (integration_id, last_run_id"
    )


async def test_the_start_reads_at_most_two_of_a_big_teams_integrations(
    pool, team, integration
) -> None:
    """The label needs to know whether the team has another integration of the type, not how
    many: a team with 300 of them must not be counted at every run's start (measured: 2.1 of
    2.2 ms of the statement, with 10,000 in one team)."""
    for n in range(300):
        await make_integration(pool, team, "github", {"token": "t"}, name=f"repo-{n}")
    plan = "\n".join(
        r[0]
        for r in await pool.fetch(
            "EXPLAIN (ANALYZE, COSTS off, TIMING off) " + run_start._LOCK_AND_READ,
            notify.INTEGRATION_LOCK_NAMESPACE,
            integration,
        )
    )
    await pool.execute("SELECT pg_advisory_unlock_all()")
    scans = [line for line in plan.splitlines() if "on integrations o" in line]
    assert scans, plan
    assert all(int(line.split("rows=")[1].split()[0]) <= 2 for line in scans), plan
    async with pool.acquire() as conn:
        start = await run_start.lock_and_read(conn, integration)
        await conn.execute("SELECT pg_advisory_unlock_all()")
    assert start.integration is not None and start.integration.label.endswith("/github")
    assert start.integration.siblings == 2  # (more than one: the label names it)


async def test_a_run_plans_generically_and_hands_its_connection_back_as_it_found_it(
    db_url, integration, tmp_path: Path, upstream
) -> None:
    """The run's statements use generic plans (set by its first statement), and the pool's
    reset takes that back: the next user of the connection plans as PostgreSQL decides."""
    upstream.add(2)
    one = await db.create_pool(db_url, max_size=1)
    try:
        async with one.acquire() as conn:
            assert await conn.fetchval("SHOW plan_cache_mode") == "auto"
            await run_start.lock_and_read(conn, integration)
            assert await conn.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
            await conn.execute("SELECT pg_advisory_unlock_all()")
        assert await one.fetchval("SHOW plan_cache_mode") == "auto"  # (released: reset)
        result = await run(one, integration, Settings(home=tmp_path), upstream)
        assert result.outcome == "succeeded" and result.created == 2
        assert await one.fetchval("SHOW plan_cache_mode") == "auto"
    finally:
        await one.close()


async def test_a_run_started_since_the_read_is_not_started_again(pool, integration) -> None:
    """The read and the lock share a snapshot: a run of another replica that started (and let
    go of the lock) in between is caught when the start is recorded."""
    async with pool.acquire() as conn:
        stale = await run_start.lock_and_read(conn, integration)
        await conn.execute("SELECT pg_advisory_unlock_all()")
    async with pool.acquire() as other:
        fresh = await run_start.lock_and_read(other, integration)
        assert await run_start.record_start(other, fresh, uuid.uuid4(), "digest")
        await other.execute("SELECT pg_advisory_unlock_all()")
    async with pool.acquire() as conn:
        assert not await run_start.record_start(conn, stale, uuid.uuid4(), "digest")
        again = await run_start.lock_and_read(conn, integration)
        await conn.execute("SELECT pg_advisory_unlock_all()")
        assert await run_start.record_start(conn, again, uuid.uuid4(), "digest")


async def test_a_deleted_integration_reads_as_none(pool, integration) -> None:
    await pool.execute("DELETE FROM integrations WHERE id = $1", integration)
    async with pool.acquire() as conn:
        start = await run_start.lock_and_read(conn, integration)
        await conn.execute("SELECT pg_advisory_unlock_all()")
    assert start.locked and start.integration is None


# -------------------------------------------------------------------------------------------------
# Metrics of a run that changed nothing
# -------------------------------------------------------------------------------------------------
async def test_a_quiet_run_does_not_recompute_metrics_within_the_refresh_period(
    pool, team, integration, tmp_path: Path, upstream
) -> None:
    upstream.add(3)
    settings = Settings(home=tmp_path, sweep_every_runs=0, metrics_refresh_seconds=300)
    await run(pool, integration, settings, upstream)  # changed something: recomputed
    await agent_commit(pool, team)
    quiet = await run(pool, integration, settings, upstream)
    assert (quiet.created, quiet.updated) == (0, 0)
    assert not await commits_today(pool, team), "a quiet run within the period recomputes nothing"

    now = datetime.now(UTC)  # an item completed: its day's numbers move, they are recomputed
    upstream.change("FAKE-1", now, status=Status.COMPLETED, completed_at=now)
    busy = await run(pool, integration, settings, upstream)
    assert busy.updated == 1
    assert await commits_today(pool, team) == 1


async def test_with_a_refresh_of_0_every_quiet_run_recomputes(
    pool, team, integration, tmp_path: Path, upstream
) -> None:
    upstream.add(3)
    settings = Settings(home=tmp_path, sweep_every_runs=0, metrics_refresh_seconds=0)
    await run(pool, integration, settings, upstream)
    await agent_commit(pool, team)
    quiet = await run(pool, integration, settings, upstream)
    assert (quiet.created, quiet.updated) == (0, 0)
    assert await commits_today(pool, team) == 1

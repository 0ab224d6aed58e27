"""The scheduler in-process against a real PostgreSQL, with a fake runner in place of the sync run.

Edits reach the scheduler through the `integrations` trigger's NOTIFY (the safety-net timer is set
to a minute, so a test passes only if the notification did the work); sync-now requests are sent
with SQL, as `c9-sync integrations sync-now` sends them. Every wait is a poll with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from tests.helpers import make_integration, make_team
from worker.scheduler import Scheduler, spread
from worker.settings import Settings

CHANNEL = "c9_sync_integrations"
SYNC_NOW = (
    "SELECT now() AS at,"
    " pg_notify($1, json_build_object('op', 'sync_now', 'id', $2::uuid, 'at', now())::text)"
)


# -------------------------------------------------------------------------------------------------
# The fake runner
# -------------------------------------------------------------------------------------------------
@dataclass
class Call:
    integration_id: uuid.UUID
    requested_at: datetime | None
    started: float  # time.monotonic()
    config: Any = None  # the row's config when the run read it
    tick_due: datetime | None = None  # the tick it serves (None: a run asked for again)
    finished: float | None = None
    cancelled: bool = False


@dataclass
class FakeRunner:
    """Records every call; `gate` (when set) holds runs until it is set, `delay` slows them,
    `failing` makes runs of those ids raise."""

    pool: asyncpg.Pool
    gate: asyncio.Event | None = None
    delay: float = 0.0
    failing: set[uuid.UUID] = field(default_factory=set)
    calls: list[Call] = field(default_factory=list)
    active: int = 0
    peak: int = 0
    at_gate: int = 0

    async def __call__(
        self,
        integration_id: uuid.UUID,
        requested_at: datetime | None,
        tick_due: datetime | None = None,
    ) -> None:
        call = Call(integration_id, requested_at, time.monotonic(), tick_due=tick_due)
        self.calls.append(call)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            call.config = await self.pool.fetchval(
                "SELECT config FROM integrations WHERE id = $1", integration_id
            )
            if integration_id in self.failing:
                raise RuntimeError(f"planted failure for {integration_id}")
            if self.gate is not None:
                self.at_gate += 1
                await self.gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            call.cancelled = True
            raise
        finally:
            self.active -= 1
            call.finished = time.monotonic()

    def of(self, integration_id: uuid.UUID) -> list[Call]:
        return [c for c in self.calls if c.integration_id == integration_id]

    def done(self, *integration_ids: uuid.UUID, runs: int = 1) -> bool:
        """Each of these has had `runs` runs, and none is running (a run in progress would make
        APScheduler skip the next one: see test_a_sync_now_during_a_run_is_not_lost)."""
        return all(
            len(self.of(i)) == runs and all(c.finished for c in self.of(i)) for i in integration_ids
        )


# -------------------------------------------------------------------------------------------------
# Helpers and fixtures
# -------------------------------------------------------------------------------------------------
async def eventually(predicate: Callable[[], object], what: str, within: float = 5.0) -> Any:
    """Poll `predicate` until it is truthy; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.02)


async def add_integration(
    pool: asyncpg.Pool | asyncpg.Connection,
    *,
    interval: int = 300,
    active: bool = True,
    config: Any = None,
) -> uuid.UUID:
    """One integration on a team of its own, named (a row inserted with the table's triggers off
    gets no default name)."""
    team = await make_team(pool)
    return await make_integration(
        pool,
        team,
        "github",
        config or {"repos": ["o/r"]},
        interval=interval,
        active=active,
        name="github",
    )


async def sync_now(pool: asyncpg.Pool, integration_id: uuid.UUID) -> datetime:
    """Send what `c9-sync integrations sync-now` sends; return the payload's `at`."""
    row = await pool.fetchrow(SYNC_NOW, CHANNEL, integration_id)
    assert row is not None
    at: datetime = row["at"]
    return at


async def notify_raw(pool: asyncpg.Pool, payload: str) -> None:
    await pool.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)


@pytest.fixture
def runner(pool: asyncpg.Pool) -> FakeRunner:
    return FakeRunner(pool)


class Schedulers:
    """Starts schedulers with small settings and stops, after the test, any still running."""

    def __init__(self, pool: asyncpg.Pool, url: str, runner: FakeRunner, home: Path) -> None:
        self._pool, self._url, self._runner, self._home = pool, url, runner, home
        self.running: list[Scheduler] = []

    async def start(self, **overrides: Any) -> Scheduler:
        values: dict[str, Any] = {
            "home": self._home,
            "reconcile_seconds": 60,  # the safety-net timer must not do the NOTIFY's work
            "jitter_seconds": 0,
            "max_concurrency": 4,
            **overrides,
        }
        scheduler = Scheduler(self._pool, self._url, Settings(**values), self._runner)
        self.running.append(scheduler)  # before start(): a failed start is still stopped
        await scheduler.start()
        return scheduler

    async def stop(self, scheduler: Scheduler, grace: float) -> int:
        self.running.remove(scheduler)
        return await scheduler.stop(grace)


@pytest.fixture
async def schedulers(
    pool: asyncpg.Pool, db_url: str, runner: FakeRunner, tmp_path: Path
) -> AsyncIterator[Schedulers]:
    harness = Schedulers(pool, db_url, runner, tmp_path / "home")
    yield harness
    for scheduler in list(harness.running):
        await harness.stop(scheduler, grace=1)


def side_tasks_alive(scheduler: Scheduler) -> None:
    dead = [t.get_name() for t in scheduler.side_tasks if t.done()]
    assert not dead, f"side tasks ended: {dead}"


async def no_run_on_sync_now(
    pool: asyncpg.Pool, runner: FakeRunner, target: uuid.UUID, probe: uuid.UUID
) -> None:
    """A sync-now for `target` runs nothing. Notifications are handled in order: once the
    sync-now sent after it, for the scheduled `probe`, has run, `target`'s has been handled."""
    before = len(runner.of(target))
    await sync_now(pool, target)
    at = await sync_now(pool, probe)
    await eventually(
        lambda: any(c.requested_at == at for c in runner.of(probe)), "the probe's sync-now run"
    )
    await asyncio.sleep(0.2)  # a run submitted with the probe's would have started by now
    assert len(runner.of(target)) == before


# -------------------------------------------------------------------------------------------------
# Reconcile: insert, pause, interval, config, delete
# -------------------------------------------------------------------------------------------------
async def test_a_row_inserted_after_start_is_scheduled_and_run_at_once(
    pool, runner, schedulers
) -> None:
    scheduler = await schedulers.start()
    assert scheduler.jobs() == {}
    paused = await add_integration(pool, active=False)
    t0 = time.monotonic()
    new = await add_integration(pool, interval=300)

    await eventually(lambda: runner.of(new), "the new row's first run")
    [call] = runner.of(new)
    assert call.requested_at is None
    assert call.started - t0 < 3.0  # NOTIFY, not the 60 s safety-net timer
    assert scheduler.jobs() == {new: 300}  # the inactive row gets no job
    assert runner.of(paused) == []
    side_tasks_alive(scheduler)


async def test_pausing_removes_the_job_and_resuming_brings_it_back(
    pool, runner, schedulers
) -> None:
    target = await add_integration(pool)
    probe = await add_integration(pool)
    scheduler = await schedulers.start()
    await eventually(lambda: runner.done(target, probe), "the first runs")
    assert set(scheduler.jobs()) == {target, probe}

    await pool.execute("UPDATE integrations SET is_active = false WHERE id = $1", target)
    await eventually(lambda: target not in scheduler.jobs(), "the paused row's job removed")
    assert set(scheduler.jobs()) == {probe}
    await no_run_on_sync_now(pool, runner, target, probe)
    assert len(runner.of(target)) == 1

    await pool.execute("UPDATE integrations SET is_active = true WHERE id = $1", target)
    await eventually(lambda: len(runner.of(target)) == 2, "a run after resuming (never synced)")
    assert set(scheduler.jobs()) == {target, probe}


async def test_an_interval_change_reschedules_the_job_from_the_last_success(
    pool, runner, schedulers
) -> None:
    row = await add_integration(pool, interval=300)
    # Synced a second ago (the worker's column: writing it does not notify): due in 299 s.
    await pool.execute(
        "UPDATE integrations SET last_sync = now() - interval '1 second' WHERE id = $1", row
    )
    scheduler = await schedulers.start()
    assert scheduler.jobs() == {row: 300}

    t0 = time.monotonic()
    await pool.execute(
        "UPDATE integrations SET sync_interval = 5, last_sync = now() - interval '3 seconds'"
        " WHERE id = $1",
        row,
    )
    await eventually(lambda: scheduler.jobs().get(row) == 5, "the job's new interval")
    # Due 5 s after the last success, i.e. 2 s after the change: not at once, not in 300 s.
    await eventually(lambda: runner.of(row), "the run on the new interval")
    [call] = runner.of(row)
    assert 1.5 <= call.started - t0 < 4.0


async def test_a_config_change_runs_the_integration_promptly_with_the_new_config(
    pool, runner, schedulers
) -> None:
    row = await add_integration(pool, interval=300, config={"repos": ["o/old"]})
    scheduler = await schedulers.start()
    await eventually(lambda: runner.done(row), "the first run")
    assert runner.of(row)[0].config == {"repos": ["o/old"]}

    t0 = time.monotonic()
    await pool.execute(
        "UPDATE integrations SET config = $2::jsonb WHERE id = $1", row, {"repos": ["o/new"]}
    )
    await eventually(lambda: runner.done(row, runs=2), "a run after the config change")
    second = runner.of(row)[1]
    assert second.config == {"repos": ["o/new"]}
    assert second.requested_at is None
    assert second.started - t0 < 3.0
    assert scheduler.jobs() == {row: 300}  # same job, same interval


async def test_deleting_a_row_removes_its_job(pool, runner, schedulers) -> None:
    target = await add_integration(pool)
    probe = await add_integration(pool)
    scheduler = await schedulers.start()
    await eventually(lambda: runner.done(target, probe), "the first runs")

    await pool.execute("DELETE FROM integrations WHERE id = $1", target)
    await eventually(lambda: target not in scheduler.jobs(), "the deleted row's job removed")
    assert set(scheduler.jobs()) == {probe}
    await no_run_on_sync_now(pool, runner, target, probe)
    side_tasks_alive(scheduler)


# -------------------------------------------------------------------------------------------------
# Sync-now
# -------------------------------------------------------------------------------------------------
async def test_sync_now_runs_that_integration_with_the_request_time(
    pool, runner, schedulers
) -> None:
    row = await add_integration(pool)
    other = await add_integration(pool)
    await schedulers.start()
    await eventually(lambda: runner.done(row, other), "the first runs")

    t0 = time.monotonic()
    at = await sync_now(pool, row)
    await eventually(lambda: runner.done(row, runs=2), "the sync-now run")
    call = runner.of(row)[1]
    assert call.requested_at == at
    assert call.started - t0 < 3.0
    assert len(runner.of(other)) == 1  # only the one asked for

    # The request is used once: the next sync-now carries its own time.
    again = await sync_now(pool, row)
    await eventually(lambda: len(runner.of(row)) == 3, "the second sync-now run")
    assert again > at
    assert runner.of(row)[2].requested_at == again


async def test_a_sync_now_during_a_run_is_not_lost(pool, runner, schedulers) -> None:
    runner.gate = asyncio.Event()
    row = await add_integration(pool)
    await schedulers.start()
    await eventually(lambda: runner.at_gate == 1, "the first run in progress")
    at = await sync_now(pool, row)
    await asyncio.sleep(0.3)  # the request reaches the scheduler while the run is still going
    runner.gate.set()
    await eventually(lambda: len(runner.of(row)) == 2, "a run for the request", within=2)
    assert runner.of(row)[1].requested_at == at


async def test_sync_now_for_an_unknown_id_reconciles_instead(pool, runner, schedulers) -> None:
    scheduler = await schedulers.start()
    # Once a row inserted now is scheduled, the listener is up (the timer is a minute away);
    # then let any reconcile still pending (the listener's catch-up) finish.
    seen = await add_integration(pool)
    await eventually(lambda: seen in scheduler.jobs(), "the listener up")
    await asyncio.sleep(0.5)
    # A row the scheduler is not told about: inserted with the table's triggers off.
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE integrations DISABLE TRIGGER USER")
        hidden = await add_integration(conn)
        await conn.execute("ALTER TABLE integrations ENABLE TRIGGER USER")
    await asyncio.sleep(0.3)
    assert hidden not in scheduler.jobs()  # so only the sync-now below can bring it in
    beat = scheduler.heartbeat

    stranger = uuid.uuid4()
    await sync_now(pool, stranger)
    await eventually(lambda: hidden in scheduler.jobs(), "a reconcile that finds the hidden row")
    await eventually(lambda: runner.of(hidden), "the hidden row's first run")
    assert scheduler.heartbeat > beat
    assert runner.of(stranger) == []
    side_tasks_alive(scheduler)


async def test_a_malformed_sync_now_is_ignored_with_a_warning(
    pool, runner, schedulers, caplog
) -> None:
    caplog.set_level(logging.WARNING)
    row = await add_integration(pool)
    scheduler = await schedulers.start()
    await eventually(lambda: runner.done(row), "the first run")

    malformed = [
        {"op": "sync_now"},
        {"op": "sync_now", "at": "2025-01-02T03:04:05+00:00"},
        {"op": "sync_now", "id": "not-a-uuid", "at": "2025-01-02T03:04:05+00:00"},
        {"op": "sync_now", "id": str(row)},
        {"op": "sync_now", "id": str(row), "at": "yesterday"},
    ]
    for payload in malformed:
        await notify_raw(pool, json.dumps(payload))
    at = await sync_now(pool, row)  # handled after the malformed ones: notifications keep order
    await eventually(lambda: len(runner.of(row)) == 2, "the well-formed sync-now's run")
    await asyncio.sleep(0.2)

    assert [c.requested_at for c in runner.of(row)] == [None, at]
    warned = [
        r for r in caplog.records if r.name.startswith("worker") and r.levelno == logging.WARNING
    ]
    assert len(warned) == len(malformed), [r.getMessage() for r in warned]
    side_tasks_alive(scheduler)


# -------------------------------------------------------------------------------------------------
# Stop, concurrency, failures
# -------------------------------------------------------------------------------------------------
async def test_stop_cuts_off_a_run_that_outlasts_the_grace(pool, runner, schedulers) -> None:
    runner.gate = asyncio.Event()  # never set: the run blocks until cancelled
    await add_integration(pool)
    scheduler = await schedulers.start()
    await eventually(lambda: runner.at_gate == 1, "the run blocked")

    t0 = time.monotonic()
    cut = await schedulers.stop(scheduler, grace=0.5)
    elapsed = time.monotonic() - t0
    assert cut == 1
    assert 0.45 <= elapsed < 1.5
    [call] = runner.calls
    assert call.cancelled


async def test_stop_waits_for_a_run_that_ends_within_the_grace(pool, runner, schedulers) -> None:
    runner.gate = asyncio.Event()
    await add_integration(pool)
    scheduler = await schedulers.start()
    await eventually(lambda: runner.at_gate == 1, "the run blocked")

    asyncio.get_running_loop().call_later(0.3, runner.gate.set)  # ends while stop() waits
    t0 = time.monotonic()
    cut = await schedulers.stop(scheduler, grace=5)
    elapsed = time.monotonic() - t0
    assert cut == 0
    assert 0.25 <= elapsed < 1.5  # it waited for the run, and no longer than the run
    [call] = runner.calls
    assert call.finished is not None and not call.cancelled


@pytest.mark.parametrize("limit", [1, 2])
async def test_runs_never_exceed_max_concurrency(pool, runner, schedulers, limit) -> None:
    rows = [await add_integration(pool) for _ in range(3)]
    runner.delay = 0.3  # all three are due at start; each holds its slot a while
    await schedulers.start(max_concurrency=limit)
    await eventually(
        lambda: len(runner.calls) == 3 and all(c.finished for c in runner.calls),
        "all three runs",
    )
    assert sorted(c.integration_id for c in runner.calls) == sorted(rows)
    assert runner.peak == limit


async def test_a_run_that_raises_stops_no_other_job(pool, runner, schedulers, caplog) -> None:
    bad = await add_integration(pool)
    runner.failing = {bad}
    scheduler = await schedulers.start()
    await eventually(lambda: runner.done(bad), "the failing run")
    assert any(r.exc_info and "planted failure" in str(r.exc_info[1]) for r in caplog.records), (
        "the failure is logged with its traceback"
    )

    good = await add_integration(pool)  # scheduled and run after the failure
    await eventually(lambda: runner.of(good), "another integration's run")
    at = await sync_now(pool, bad)  # and the failing one keeps its job
    await eventually(lambda: len(runner.of(bad)) == 2, "the failing integration's next run")
    assert runner.of(bad)[1].requested_at == at
    assert set(scheduler.jobs()) == {bad, good}
    side_tasks_alive(scheduler)


# -------------------------------------------------------------------------------------------------
# At scale: concurrency sized by the work, ticks of a busy integration, stop with a backlog
# -------------------------------------------------------------------------------------------------
def missed_ticks(reason: str) -> float:
    return REGISTRY.get_sample_value("c9_sync_missed_ticks_total", {"reason": reason}) or 0.0


async def test_runs_waiting_on_the_network_do_not_hold_back_others_by_default(
    pool, runner, schedulers
) -> None:
    rows = [await add_integration(pool) for _ in range(12)]  # one tracker, under its bound
    runner.gate = asyncio.Event()  # every run waits on its "tracker" until the gate opens
    await schedulers.start(max_concurrency=Settings().max_concurrency)
    await eventually(lambda: runner.at_gate == len(rows), "every due run started at once")
    runner.gate.set()
    await eventually(lambda: runner.done(*rows), "all runs")
    assert runner.peak == len(rows)


async def test_runs_against_one_tracker_are_bounded_apart_from_others(pool, runner) -> None:
    """Four GitHub runs wait on their tracker with max_per_tracker=2: two run, two queue, and
    the Jira runs are not queued behind them."""
    team = await make_team(pool)
    github = [await make_integration(pool, team, "github", {}, name=f"gh{n}") for n in range(4)]
    jira = [await make_integration(pool, team, "jira", {}, name=f"j{n}") for n in range(2)]
    runner.gate = asyncio.Event()
    scheduler = Scheduler(
        pool, "unused", Settings(max_concurrency=10, max_per_tracker=2, jitter_seconds=0),
        runner,
    )  # fmt: skip
    await scheduler.start()
    try:
        await eventually(lambda: runner.at_gate == 4, "two runs per tracker")
        await asyncio.sleep(0.3)
        started = {c.integration_id for c in runner.calls}
        assert set(jira) <= started
        assert len(started & set(github)) == 2
        assert scheduler.queued == 2
        runner.gate.set()
        await eventually(lambda: runner.done(*github, *jira), "the queued runs after them")
    finally:
        await scheduler.stop(1)


async def test_ticks_of_a_running_integration_are_counted_and_logged_once(
    pool, runner, schedulers, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    runner.gate = asyncio.Event()
    row = await add_integration(pool, interval=5)
    before = missed_ticks("busy")
    await schedulers.start()
    await eventually(lambda: runner.at_gate == 1, "the run blocked")
    await eventually(lambda: missed_ticks("busy") >= before + 2, "two ticks", within=15)
    runner.gate.set()
    await eventually(lambda: runner.done(row), "the run")

    assert len(runner.of(row)) == 1, "the ticks served by the run started none"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings if "ticks_missed" in r.getMessage()], "summed up"
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # that line only


async def test_stop_starts_no_queued_run_and_drops_them_quietly(
    pool, runner, schedulers, caplog
) -> None:
    caplog.set_level(logging.INFO)
    for _ in range(20):  # not so many that their first ticks are spread
        await add_integration(pool)
    runner.gate = asyncio.Event()
    scheduler = await schedulers.start(max_concurrency=2)
    await eventually(lambda: runner.at_gate == 2, "two runs, the rest queued")
    await asyncio.sleep(0.5)  # the other 18 are due too: they queue behind the two

    asyncio.get_running_loop().call_later(0.2, runner.gate.set)  # both end within the grace
    t0 = time.monotonic()
    cut = await schedulers.stop(scheduler, grace=3)
    assert time.monotonic() - t0 < 1.5, "it waited for the two runs only"
    assert cut == 0
    await asyncio.sleep(0.3)
    assert len(runner.calls) == 2, "no queued run started after stop"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info]


async def test_among_many_due_rows_those_that_only_missed_their_last_tick_run_at_once(
    pool, runner, schedulers
) -> None:
    """A replica that takes over the share of one that just died, or restarts: rows due less
    than an interval ago missed only that tick (the dead replica's) and run now, or that interval
    is lost; the herd (never synced: a script's rows) is still spread."""
    herd = [await add_integration(pool, interval=600) for _ in range(25)]
    missed = [await add_integration(pool, interval=600) for _ in range(3)]
    for m in missed:  # last success 610 s ago: due 10 s ago
        await pool.execute(
            "INSERT INTO integration_sync_state (integration_id, last_started_at, last_success_at)"
            " VALUES ($1, now() - interval '610 s', now() - interval '610 s')",
            m,
        )
    await schedulers.start()
    await eventually(lambda: all(runner.of(m) for m in missed), "the missed ticks run at once", 3)
    assert sum(1 for h in herd if runner.of(h)) <= 2  # ~3 s of 600, for 25 rows


async def test_many_rows_due_at_start_are_spread_over_their_interval(
    pool, runner, schedulers
) -> None:
    """25 never-synced rows at start (a script added them, or the replicas were down): their
    first ticks spread over the interval, where every replica puts them, not one herd a minute."""
    rows = [await add_integration(pool, interval=600) for _ in range(25)]
    await schedulers.start()
    await asyncio.sleep(1.5)
    assert len(runner.calls) <= 2  # ~1.5 s of 600, for 25 rows
    at = datetime.now(UTC)
    first = {r: spread(r, 600, at) for r in rows}
    waits = [w.total_seconds() for w in first.values()]
    assert max(waits) - min(waits) > 300  # spread, not bunched
    # The same phase for a replica that reconciles later (on the database's clock): its ticks
    # fall on the same instants, an interval apart.
    later = at + timedelta(seconds=42)
    for r in rows:
        apart = ((later + spread(r, 600, later)) - (at + first[r])).total_seconds()
        assert min(apart % 600, -apart % 600) < 1e-3, apart
    later = await add_integration(pool, interval=600)
    await eventually(lambda: runner.of(later), "a row added alone runs at once")


# -------------------------------------------------------------------------------------------------
# Replicas share the ticks (worker.shards)
# -------------------------------------------------------------------------------------------------
def shares_settled(ids: list[uuid.UUID], *replicas: Scheduler) -> bool:
    """Every integration ticked by exactly one of `replicas`."""
    shares = [set(r.jobs()) for r in replicas]
    return set().union(*shares) == set(ids) and sum(map(len, shares)) == len(ids)


async def test_two_replicas_tick_disjoint_shares_and_one_takes_all_when_the_other_stops(
    pool, runner, schedulers
) -> None:
    ids = [await add_integration(pool, interval=300) for _ in range(30)]
    a = await schedulers.start()
    b = await schedulers.start()
    await eventually(lambda: shares_settled(ids, a, b), "two disjoint shares", within=10)
    assert 5 <= len(a.jobs()) <= 25, len(a.jobs())
    assert REGISTRY.get_sample_value("c9_sync_replicas") == 2

    stopped = time.monotonic()
    await schedulers.stop(b, grace=1)
    await eventually(lambda: set(a.jobs()) == set(ids), "the other's share taken over", within=5)
    # announced as it left: not the next look at the replicas, nor the 60 s reconcile timer
    assert time.monotonic() - stopped < 2.0
    side_tasks_alive(a)


async def test_a_replica_that_joins_takes_its_share_from_the_others(
    pool, runner, schedulers
) -> None:
    ids = [await add_integration(pool, interval=300) for _ in range(30)]
    a = await schedulers.start()
    await eventually(lambda: set(a.jobs()) == set(ids), "one replica ticks everything")
    b = await schedulers.start()
    await eventually(lambda: shares_settled(ids, a, b), "a share handed over", within=5)
    assert b.jobs(), "the new replica ticks some"


async def test_a_replica_unseen_by_the_others_ticks_everything_until_seen_again(
    pool, runner, schedulers
) -> None:
    """Its LISTEN connection dropped: it cannot say it is there, so it ticks every integration
    until it is back (twice the attempts for a moment, which the run lock absorbs). At no moment
    is an integration ticked by nobody. Reconnected, they share again."""
    ids = [await add_integration(pool, interval=300) for _ in range(20)]
    a = await schedulers.start()
    b = await schedulers.start()
    await eventually(lambda: shares_settled(ids, a, b), "two disjoint shares", within=10)
    dropped = await pool.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
        "c9-sync replica " + a.replica,
    )
    assert dropped == 1
    unowned: list[set[uuid.UUID]] = []
    a_alone = False

    def watch() -> bool:
        nonlocal a_alone
        unowned.append(set(ids) - set(a.jobs()) - set(b.jobs()))
        a_alone |= set(a.jobs()) == set(ids)
        return a_alone and shares_settled(ids, a, b)

    await eventually(watch, "everything ticked by the unseen one, then shared again", within=10)
    assert not any(unowned), [u for u in unowned if u][:1]
    side_tasks_alive(a)

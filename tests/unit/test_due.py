"""worker.sync.is_due: when a scheduled tick may run."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from worker.store.integrations import Integration
from worker.store.sync import SyncState
from worker.sync import first_tick, is_due

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def integration(
    interval: int = 60, updated: datetime = NOW - timedelta(days=1), digest: str = "d0"
) -> Integration:
    return Integration(
        uuid.uuid4(), uuid.uuid4(), "t", "github", None, {}, True, interval, None, updated, digest
    )


def state(
    started: datetime | None = None,
    success: datetime | None = None,
    error: datetime | None = None,
    next_attempt: datetime | None = None,
    failures: int = 0,
    digest: str | None = "d0",
) -> SyncState:
    return SyncState({}, started, success, error, failures, next_attempt, 0, digest)


def test_never_synced_is_due() -> None:
    assert is_due(integration(), state(), NOW) is None


def test_a_slow_run_does_not_skip_the_next_tick() -> None:
    # The last run started 60 s ago and took 10 s: the tick 60 s after its start runs.
    s = state(started=NOW - timedelta(seconds=60), success=NOW - timedelta(seconds=50))
    assert is_due(integration(60), s, NOW) is None


def test_synced_by_another_replica_within_the_interval_is_skipped() -> None:
    s = state(started=NOW - timedelta(seconds=20), success=NOW - timedelta(seconds=15))
    assert "synced" in (is_due(integration(60), s, NOW) or "")


def test_a_config_edited_since_the_last_run_is_due_at_once() -> None:
    s = state(started=NOW - timedelta(seconds=20), success=NOW - timedelta(seconds=15))
    assert is_due(integration(3600, digest="d1"), s, NOW) is None
    # a state written before the digest was recorded: the interval rules as before
    old = state(
        started=NOW - timedelta(seconds=20), success=NOW - timedelta(seconds=15), digest=None
    )
    assert "synced" in (is_due(integration(3600, digest="d1"), old, NOW) or "")


def test_a_later_failed_start_does_not_count_as_a_sync() -> None:
    s = state(started=NOW - timedelta(seconds=5), success=NOW - timedelta(seconds=100))
    assert is_due(integration(60), s, NOW) is None


def test_backoff_holds_until_next_attempt_unless_the_row_was_edited() -> None:
    failed = NOW - timedelta(seconds=30)
    s = state(started=failed, error=failed, next_attempt=NOW + timedelta(seconds=90), failures=2)
    assert "backing off after 2" in (is_due(integration(), s, NOW) or "")
    edited = integration(updated=NOW - timedelta(seconds=10))
    assert is_due(edited, s, NOW) is None


def test_next_due_is_last_success_plus_interval_but_not_before_backoff_ends() -> None:
    from worker.sync import next_due

    assert next_due(NOW, 60, None, None) == NOW  # never synced: now
    assert next_due(NOW, 60, NOW - timedelta(seconds=20), None) == NOW + timedelta(seconds=40)
    assert next_due(NOW, 60, NOW - timedelta(hours=1), None) == NOW  # overdue: now
    backoff = NOW + timedelta(minutes=5)
    assert next_due(NOW, 60, NOW - timedelta(seconds=20), backoff) == backoff


def test_the_first_tick_follows_the_database_clock_whatever_the_skew() -> None:
    # Synced 50 s ago by the database's clock, 60 s interval: due in 10 s, on any worker clock.
    db_now = NOW
    for skew in (timedelta(hours=1), -timedelta(hours=1), timedelta(0)):
        worker_now = db_now - skew  # the database host runs `skew` ahead of the worker's
        first = first_tick(worker_now, db_now, 60, db_now - timedelta(seconds=50), None)
        assert first == worker_now + timedelta(seconds=10), skew
    # Backoff ends in 2 minutes by the database's clock: 2 minutes on the worker's too.
    worker_now = db_now - timedelta(hours=3)
    first = first_tick(worker_now, db_now, 60, None, db_now + timedelta(minutes=2))
    assert first == worker_now + timedelta(minutes=2)


# -- a scheduled tick: served or not, measured from the tick's due time ----------------------------
def test_a_late_run_does_not_make_the_next_tick_look_served() -> None:
    # The previous tick's run waited 4 s for a slot (it started 56 s before this tick, due now):
    # measured from now, that run is 56 s old, under 95% of 60 s, and this tick would be lost.
    s = state(started=NOW - timedelta(seconds=56), success=NOW - timedelta(seconds=50))
    assert is_due(integration(60), s, NOW, tick=NOW) is None
    assert "synced" in (is_due(integration(60), s, NOW) or "")  # (outside the schedule: as ever)


def test_this_late_tick_still_runs_when_the_last_run_is_older_than_the_tick() -> None:
    # This run itself starts 20 s after its tick: still its tick's, not the previous one's.
    s = state(started=NOW - timedelta(seconds=75), success=NOW - timedelta(seconds=70))
    tick = NOW - timedelta(seconds=20)
    assert is_due(integration(60), s, NOW, tick=tick) is None


def test_the_same_tick_served_by_another_replica_or_a_sync_now_is_skipped() -> None:
    # another replica's tick (its jitter was smaller) ran 3 s before ours was due
    s = state(started=NOW - timedelta(seconds=3), success=NOW - timedelta(seconds=1))
    assert "served" in (is_due(integration(60), s, NOW, tick=NOW) or "")
    # ... or after it: ours started late, the other replica ran the tick meanwhile
    later = state(started=NOW + timedelta(seconds=2), success=NOW + timedelta(seconds=4))
    assert "served" in (is_due(integration(60), later, NOW + timedelta(seconds=5), tick=NOW) or "")
    # an admin's sync-now 20 s before the tick served it
    s = state(started=NOW - timedelta(seconds=20), success=NOW - timedelta(seconds=15))
    assert "served" in (is_due(integration(60), s, NOW, tick=NOW) or "")

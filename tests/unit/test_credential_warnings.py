"""Which expiry warning is due, and how the time left reads (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from worker.credentials import EXPIRED, describe_left, due_warning

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_each_mark_is_due_from_its_day_on() -> None:
    days = timedelta(days=1)
    assert due_warning(NOW + 14 * days + timedelta(seconds=1), NOW, ()) is None
    assert due_warning(NOW + 14 * days, NOW, ()) == 14
    assert due_warning(NOW + 7 * days, NOW, (14,)) == 7
    assert due_warning(NOW + 3 * days, NOW, ()) == 7  # first seen late: the nearest only
    assert due_warning(NOW + days, NOW, (14, 7)) == 1
    assert due_warning(NOW, NOW, (14, 7, 1)) == EXPIRED
    assert due_warning(NOW - 30 * days, NOW, ()) == EXPIRED


def test_a_written_mark_is_not_due_again() -> None:
    assert due_warning(NOW + timedelta(days=10), NOW, (14,)) is None
    assert due_warning(NOW + timedelta(hours=20), NOW, (14, 7, 1)) is None
    assert due_warning(NOW - timedelta(days=2), NOW, (14, 7, 1, 0)) is None


def test_time_left_reads_in_the_largest_whole_unit() -> None:
    assert describe_left(NOW + timedelta(days=6, hours=23), NOW) == "6 d"
    assert describe_left(NOW + timedelta(hours=5, minutes=59), NOW) == "5 h"
    assert describe_left(NOW + timedelta(minutes=20, seconds=30), NOW) == "20 min"
    assert describe_left(NOW - timedelta(days=9, hours=2), NOW) == "9 d ago"

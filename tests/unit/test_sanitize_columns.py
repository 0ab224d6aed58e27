"""The page's parallel arrays and the upsert's unnest agree on names and order."""

from __future__ import annotations

from datetime import UTC, datetime

from connectors.base import Status, WorkItem
from worker import sanitize


def test_columns_come_in_the_order_and_names_page_columns_declare() -> None:
    item = WorkItem("X-1", "t", Status.QUEUED, datetime(2026, 1, 1, tzinfo=UTC))
    assert list(sanitize.columns([item])) == [name for name, _ in sanitize.PAGE_COLUMNS]

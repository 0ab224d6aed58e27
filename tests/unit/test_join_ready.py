"""Pages made ready one by one and joined (a transaction that takes the pages fetched
meanwhile) are the page `ready_page` makes of their items together."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connectors.base import Page, Rejected, Status, WorkItem
from worker.store.sync import join_ready, ready_page
from worker.sync import _joined

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def item(external_id: object, title: str, minutes: int) -> WorkItem:
    return WorkItem(external_id, title, Status.QUEUED, T0 + timedelta(minutes=minutes))  # type: ignore[arg-type]


def test_joined_pages_keep_one_item_per_id_the_newest_where_it_first_came() -> None:
    first = [
        item("A", "a new", 5),
        item("B", "b", 1),
        item(7, "not an id", 1),  # refused: its id is not text
        item("C", "c old", 1),
        item("D", "d tie, first", 3),
    ]
    second = [
        item("A", "a old", 2),  # older than the first page's: not kept
        item("C", "c new", 4),  # newer: kept, where C first came
        item("E", "e", 1),
        item(None, "no id", 1),
        item("D", "d tie, later", 3),  # a tie: the later one
    ]
    third = [item("F\x00", "f with a NUL in its id", 1)]
    joined = join_ready([ready_page(first), ready_page(second), ready_page(third)])
    assert joined == ready_page([*first, *second, *third])
    assert [i.title for i in joined.items] == [
        "a new",
        "b",
        "c new",
        "d tie, later",
        "e",
        "f with a NUL in its id",
    ]
    assert [r.reason for r in joined.rejected] == ["external_id is not text"] * 2


def test_one_page_joined_is_itself() -> None:
    page = ready_page([item("A", "a", 1), item("A", "a again", 2)])
    assert join_ready([page]) == page


def test_joined_pages_keep_each_scopes_latest_checkpoint_and_the_first_word_on_a_lost_scope() -> (
    None
):
    a, b = [item("A", "a", 1)], [item("B", "b", 2)]
    pages = [
        Page(a, {"repo1": T0 + timedelta(hours=2)}, [Rejected("X", "junk")], {"gone": "404"}),
        # a later page whose mark for repo1 is earlier (advance keeps the later one)
        Page(
            b,
            {"repo1": T0 + timedelta(hours=1), "repo2": T0},
            [Rejected("Y", "junk")],
            {"gone": "403"},
        ),
    ]
    page, ready = _joined([(p, ready_page(p.items)) for p in pages])
    assert page.checkpoint == {"repo1": T0 + timedelta(hours=2), "repo2": T0}
    assert page.lost == {"gone": "404"}
    assert [r.external_id for r in page.rejected] == ["X", "Y"]
    assert [i.external_id for i in page.items] == ["A", "B"]
    assert ready == ready_page([*a, *b])

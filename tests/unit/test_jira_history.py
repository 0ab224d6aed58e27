"""Jira's changelog as HistoryEntry (connectors/jira_history.py): cut detection, change ids,
actors without e-mail, the value at creation, resolutions in the status mapping."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from connectors.base import Status
from connectors.jira import jira_status
from connectors.jira_history import (
    CREATED,
    TrackedFields,
    changelog_cut,
    history_entries,
    status_names,
)

CATEGORIES = {"to do": "new", "in progress": "indeterminate", "done": "done"}
FIELDS = TrackedFields(story_points="customfield_10016", sprint="customfield_10020")


def status_of(name: str | None, resolution: str | None) -> Status:
    return jira_status(name, CATEGORIES.get((name or "").casefold()), resolution)


def history(hid: str, at: str, *items: dict[str, Any], author: Any = None) -> dict[str, Any]:
    return {"id": hid, "created": at, "author": author, "items": list(items)}


def status(old: str, new: str) -> dict[str, Any]:
    return {"field": "status", "fieldtype": "jira", "fieldId": "status", "fromString": old,
            "toString": new, "from": "1", "to": "3"}  # fmt: skip


def entries(histories: list[dict[str, Any]], **kw: Any) -> list[Any]:
    kw.setdefault("whole", True)
    return history_entries(histories, fields=FIELDS, status_of=status_of, **kw)


def test_a_changelog_is_cut_when_total_passes_what_came_or_is_unreadable() -> None:
    two = [history("1", "2025-05-01T08:00:00.000+0000")] * 2
    assert not changelog_cut({"startAt": 0, "maxResults": 2, "total": 2, "histories": two})
    assert changelog_cut({"startAt": 0, "maxResults": 2, "total": 3, "histories": two})
    assert changelog_cut({"startAt": 0, "maxResults": 100, "total": 3, "histories": two})
    assert changelog_cut({"histories": two})  # no total: cannot tell
    assert changelog_cut(None)  # asked for and absent


def test_entries_are_oldest_first_with_the_value_at_creation() -> None:
    got = entries(
        [
            history("12", "2025-05-01T20:00:00.000+0000", status("In Progress", "Done")),
            history("11", "2025-05-01T10:00:00.000+0000", status("To Do", "In Progress")),
        ],
        created=None,
    )
    assert [e.change_id for e in got] == ["11", "12"]  # no created time: no creation entry
    created = datetime(2025, 5, 1, 8, tzinfo=UTC)
    got = entries(
        [history("11", "2025-05-01T10:00:00.000+0000", status("To Do", "In Progress"))],
        created=created,
        current_status="In Progress",
    )
    first = got[0]
    assert (first.change_id, first.from_value, first.to_value, first.changed_at) == (
        CREATED,
        None,
        "To Do",  # the first change's from, not the current status
        created,
    )
    assert first.to_status is Status.QUEUED
    never = entries([], created=created, current_status="In Progress")
    assert [(e.change_id, e.to_value) for e in never] == [(CREATED, "In Progress")]
    assert entries([], created=created, current_status="Done", whole=False) == []


def test_a_resolution_in_the_same_history_decides_cancelled() -> None:
    resolution = {"field": "resolution", "fieldtype": "jira", "toString": "Won't Do"}
    got = entries(
        [history("5", "2025-05-01T10:00:00.000+0000", status("To Do", "Done"), resolution)]
    )
    assert got[0].to_status is Status.CANCELLED
    reopened = {"field": "resolution", "fieldtype": "jira", "fromString": "Won't Do"}
    got = entries(
        [
            history("5", "2025-05-01T10:00:00.000+0000", status("To Do", "Done"), resolution),
            history("6", "2025-05-01T11:00:00.000+0000", status("Done", "To Do"), reopened),
        ]
    )
    assert (got[1].from_status, got[1].to_status) == (Status.CANCELLED, Status.QUEUED)


def test_actors_are_names_and_account_ids_never_addresses() -> None:
    cloud = {"accountId": "5b10", "displayName": "Ada", "emailAddress": "ada@example.com"}
    dc = {"name": "ada", "key": "JIRAUSER10100", "displayName": "Ada", "emailAddress": "a@x"}
    hidden = {"accountId": "5b11", "displayName": "ada@example.com"}
    for author, expected in ((cloud, ("Ada", "5b10")), (dc, ("Ada", "JIRAUSER10100")),
                             (hidden, (None, "5b11"))):  # fmt: skip
        got = entries(
            [history("1", "2025-05-01T10:00:00.000+0000", status("To Do", "Done"), author=author)]
        )
        assert (got[0].actor_name, got[0].actor_id) == expected


def test_tracked_fields_by_id_or_name_and_one_field_twice_in_a_history() -> None:
    items = [
        {"field": "assignee", "fieldId": "assignee", "fromString": None, "toString": "Ada"},
        {"field": "Story point estimate", "fieldId": "customfield_10016", "toString": "5"},
        {"field": "Sprint", "toString": "Sprint 2"},  # DC: no fieldId
        {"field": "Epic Link", "toString": "ABC-1"},
        {"field": "IssueParentAssociation", "toString": "ABC-2"},
        {"field": "summary", "toString": "ignored"},
    ]
    got = entries([history("9", "2025-05-01T10:00:00.000+0000", *items)], created=None)
    assert [(e.change_id, e.field, e.to_value) for e in got] == [
        ("9", "assignee", "Ada"),
        ("9", "story_points", "5"),
        ("9", "sprint", "Sprint 2"),
        ("9/3", "parent", "ABC-1"),  # the same field twice in one history: the item's index
        ("9/4", "parent", "ABC-2"),
    ]
    assert status_names([history("1", "x", status("A", "B"))]) == {"A", "B"}

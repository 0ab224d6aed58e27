"""The richer model's pure mapping of GitHub issue JSON (connectors/github_model.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Person, Sprint
from connectors.github_model import (
    ParentIds,
    assignees_of,
    item_type_of,
    parent_ref,
    sprints_of,
    stored_raw,
)


@pytest.mark.parametrize(
    ("raw", "pull", "expected"),
    [
        ({}, True, ("pull_request", "Pull request")),
        ({"type": None}, False, ("issue", "Issue")),
        ({}, False, ("issue", "Issue")),
        ({"type": {"name": "bug"}}, False, ("bug", "bug")),
        ({"type": {"name": " Epic "}}, False, ("epic", "Epic")),
        ({"type": {"name": "Feature"}}, False, ("feature", "Feature")),
        ({"type": {"name": "Task"}}, False, ("task", "Task")),
        ({"type": {"name": "Spike"}}, False, ("other", "Spike")),
        ({"type": "Bug"}, False, ("issue", "Issue")),  # not an issue-type object
        ({"type": {"name": ""}}, False, ("issue", "Issue")),
    ],
)
def test_item_type(raw: dict[str, Any], pull: bool, expected: tuple[str, str]) -> None:
    assert item_type_of(raw, pull=pull) == expected


def test_assignees_are_logins_and_ids_never_addresses() -> None:
    raw = {
        "assignees": [
            {"login": "ada", "id": 1, "email": "ada@example.com"},
            {"login": "ada", "id": 1},  # twice: once
            {"login": "x@example.com", "id": 2},  # no GitHub login holds "@"
            {"id": True},
            "mona",
        ],
        "assignee": {"login": "ignored", "id": 9},
    }
    assert assignees_of(raw) == [Person("ada", "1"), Person(None, "2")]
    assert assignees_of({"assignee": {"login": "solo", "id": 3}}) == [Person("solo", "3")]
    assert assignees_of({"assignees": None, "assignee": None}) == []


def test_the_milestone_is_the_sprint() -> None:
    due = "2026-04-01T07:00:00Z"
    raw = {"milestone": {"id": 77, "number": 3, "title": "v2", "state": "closed", "due_on": due}}
    assert sprints_of(raw, "ghe.example.com") == [
        Sprint("ghe.example.com/milestones/77", "v2", "closed", None,
               datetime(2026, 4, 1, 7, tzinfo=UTC)),
    ]  # fmt: skip
    open_untitled = {"milestone": {"id": 5, "number": 2, "title": " ", "state": "open"}}
    assert sprints_of(open_untitled, "h") == [Sprint("h/milestones/5", "Milestone 2", "active")]
    assert sprints_of({"milestone": {"id": 5, "state": "??", "due_on": "soon"}}, "h") == [
        Sprint("h/milestones/5", "Milestone 5", None)
    ]
    for bad in (None, "v2", {"id": "77", "title": "v2"}, {"title": "v2"}):
        assert sprints_of({"milestone": bad}, "h") == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.github.com/repos/o/r/issues/12", ("o/r", 12)),
        ("https://ghe.example.com/api/v3/repos/Org/Repo.js/issues/3", ("Org/Repo.js", 3)),
        ("https://api.github.com/repos/o/r/pulls/12", None),
        ("https://api.github.com/repos/o/r/issues/x", None),
        ("not a url", None),
        ("", None),
        (None, None),
        (12, None),
    ],
)
def test_parent_ref(url: object, expected: tuple[str, int] | None) -> None:
    assert parent_ref({"parent_issue_url": url}) == expected


def test_stored_raw_drops_addresses_and_milestone_counters() -> None:
    raw = {
        "user": {"login": "a", "email": "a@example.com"},
        "assignees": [{"login": "b", "email": "b@example.com"}],
        "milestone": {"id": 1, "open_issues": 4, "closed_issues": 2, "creator": {"email": "c@x"}},
    }
    assert stored_raw(raw) == {
        "user": {"login": "a"},
        "assignees": [{"login": "b"}],
        "milestone": {"id": 1, "creator": {}},
    }


@pytest.mark.parametrize(
    "raw",
    [
        {"user": {"login": "a"}, "body": 'write to "email": me', "labels": [{"name": "email"}]},
        {"user": {"login": "a"}, "assignees": [{"login": "b", "id": 2}], "milestone": None},
    ],
)
def test_stored_raw_without_any_address_is_the_issue_as_read(raw: dict[str, object]) -> None:
    kept = stored_raw(raw)
    assert kept == raw and kept is not raw  # (a copy: the milestone is edited in it)


def test_an_address_anywhere_is_found_and_dropped() -> None:
    raw = {"a": [{"b": {"c": [{"email": "deep@example.com"}]}}], 1: "non-text key"}
    assert "deep@example.com" not in str(stored_raw(raw))


def test_parent_ids_learn_from_listings_and_a_cache(tmp_path: Path) -> None:
    cache = tmp_path / "parents.json"
    ids = ParentIds(cache)
    ids.learn("O/R", [{"id": 100, "number": 1}, {"id": "x", "number": 2}])
    assert ids.unknown([("o/r", 1), ("o/r", 2), ("o/r", 2), ("o/s", 1)]) == [("o/r", 2), ("o/s", 1)]
    ids.record(("o/s", 1), 300)
    ids.record(("o/r", 2), None)  # unreadable: not cached
    assert ids.save() is None
    later = ParentIds(cache)
    assert later.unknown([("o/r", 1), ("O/S", 1), ("o/r", 2)]) == [("o/r", 2)]
    assert (later.get(("o/r", 1)), later.get(("o/s", 1))) == (100, 300)


def test_only_issues_that_may_be_parents_are_learned() -> None:
    """A million-issue import must not hold a million ids: an issue whose summary says it has
    no sub-issue is not learned; one with sub-issues, or without a summary (a server that does
    not send it), is."""
    ids = ParentIds(None)
    ids.learn(
        "o/r",
        [
            {"id": 10, "number": 1, "sub_issues_summary": {"total": 0, "completed": 0}},
            {"id": 20, "number": 2, "sub_issues_summary": {"total": 3, "completed": 1}},
            {"id": 30, "number": 3},
        ],
    )
    assert ids.get(("o/r", 1)) is None
    assert ids.unknown([("o/r", 1)]) == [("o/r", 1)]  # asked for once, if ever needed
    assert (ids.get(("o/r", 2)), ids.get(("O/R", 3))) == (20, 30)

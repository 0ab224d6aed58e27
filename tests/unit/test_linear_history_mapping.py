"""Linear IssueHistory nodes as HistoryEntry records (connectors.linear.history_entries): sorted
by time whatever order Linear lists them in, one entry per field an edit changed, actors without
e-mail, status by state type and the admin's status_map, and the synthetic creation entry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.base import ConnectorError, RetriableError, Status
from connectors.linear import history_actor, history_entries, history_page

TODO = {"id": "s-todo", "name": "Todo", "type": "unstarted"}
DOING = {"id": "s-doing", "name": "In Progress", "type": "started"}
REVIEW = {"id": "s-review", "name": "In Review", "type": "started"}
DONE = {"id": "s-done", "name": "Done", "type": "completed"}
ADA = {"id": "u-ada", "name": "Ada Lovelace"}
ISSUE = {"id": "i-1", "createdAt": "2025-05-01T08:00:00.000Z", "state": DONE}


def at(hour: int) -> str:
    return f"2025-05-01T{hour:02d}:00:00.000Z"


def entry(change_id: str, hour: int, **fields: Any) -> dict[str, Any]:
    return {"id": change_id, "createdAt": at(hour), "actor": ADA, **fields}


def test_entries_are_sorted_by_time_and_the_creation_is_synthesized() -> None:
    nodes = [  # newest first, as the sandbox (and maybe Linear) lists them
        entry("h3", 12, fromState=REVIEW, toState=DONE),
        entry("h2", 11, fromState=DOING, toState=REVIEW),
        entry("h1", 10, fromState=TODO, toState=DOING),
    ]
    out = history_entries(ISSUE, nodes, {}, whole=True)
    assert [(e.change_id, e.from_value, e.to_value, e.to_status) for e in out] == [
        ("created:i-1", None, "Todo", Status.QUEUED),
        ("h1", "Todo", "In Progress", Status.IN_PROGRESS),
        ("h2", "In Progress", "In Review", Status.PR_READY),
        ("h3", "In Review", "Done", Status.COMPLETED),
    ]
    assert out[0].changed_at == datetime(2025, 5, 1, 8, tzinfo=UTC)
    assert (out[0].actor_name, out[0].actor_id) == (None, None)
    assert (out[1].actor_name, out[1].actor_id, out[1].from_status) == (
        "Ada Lovelace",
        "u-ada",
        Status.QUEUED,
    )


def test_an_issue_whose_state_never_changed_was_created_in_its_current_state() -> None:
    out = history_entries(ISSUE, [entry("h1", 9, fromPriority=0, toPriority=1)], {}, whole=True)
    assert [(e.field, e.to_value) for e in out] == [("status", "Done"), ("priority", "Urgent")]


def test_no_creation_is_synthesized_from_part_of_a_history_or_when_linear_sent_one() -> None:
    nodes = [entry("h1", 10, fromState=TODO, toState=DOING)]
    assert [e.change_id for e in history_entries(ISSUE, nodes, {}, whole=False)] == ["h1"]
    created = [entry("h0", 8, toState=TODO), *nodes]
    out = history_entries(ISSUE, created, {}, whole=True)
    assert [(e.change_id, e.from_value) for e in out] == [("h0", None), ("h1", "Todo")]


def test_one_edit_that_changes_several_fields_is_one_entry_per_field() -> None:
    node = entry(
        "h1",
        10,
        fromState=TODO,
        toState=DOING,
        fromAssignee=None,
        toAssignee=ADA,
        fromCycle={"id": "c-1", "number": 3.0, "name": None},
        toCycle={"id": "c-2", "number": 4.0, "name": "Hardening"},
        fromParent=None,
        toParent={"id": "i-0", "identifier": "ENG-7"},
        fromPriority=4.0,
        toPriority=1.0,
        fromEstimate=None,
        toEstimate=0.5,
    )
    out = history_entries(ISSUE, [node], {}, whole=False)
    assert [(e.field, e.from_value, e.to_value) for e in out] == [
        ("status", "Todo", "In Progress"),
        ("assignee", None, "Ada Lovelace"),
        ("sprint", "Cycle 3", "Hardening"),
        ("parent", None, "ENG-7"),
        ("priority", "Low", "Urgent"),
        ("story_points", None, "0.5"),
    ]
    assert {e.change_id for e in out} == {"h1"}


def test_the_admins_status_map_applies_to_history_as_to_the_item() -> None:
    nodes = [entry("h1", 10, fromState=TODO, toState=REVIEW)]
    out = history_entries(ISSUE, nodes, {"in review": Status.BLOCKED}, whole=False)
    assert out[0].to_status is Status.BLOCKED


def test_actors_are_a_user_a_bot_or_nobody_never_an_email() -> None:
    assert history_actor({"actor": {"id": "u-1", "name": "Ada", "email": "a@x.io"}}) == (
        "Ada",
        "u-1",
    )
    assert history_actor({"actor": None, "botActor": {"id": None, "type": "github"}}) == (
        "github",
        None,
    )
    assert history_actor({"actor": None, "botActor": None}) == (None, None)


def test_an_entry_without_id_or_readable_time_is_left_out() -> None:
    nodes = [
        {"id": None, "createdAt": at(9), "fromState": TODO, "toState": DOING},
        {"id": "h2", "createdAt": "yesterday", "fromState": TODO, "toState": DOING},
        entry("h3", 11, fromState=DOING, toState=DONE),
    ]
    assert [e.change_id for e in history_entries(ISSUE, nodes, {}, whole=False)] == ["h3"]


def test_a_history_page_that_breaks_its_promise_is_retried_and_a_wrong_shape_refused() -> None:
    good = {"nodes": [entry("h1", 9)], "pageInfo": {"hasNextPage": True, "endCursor": "h1"}}
    assert history_page(good, "t") == (good["nodes"], True, "h1")
    with pytest.raises(RetriableError):
        history_page({"nodes": [], "pageInfo": {"hasNextPage": True, "endCursor": None}}, "t")
    with pytest.raises(RetriableError):
        history_page({"nodes": [], "pageInfo": {}}, "t")
    with pytest.raises(ConnectorError):
        history_page({"nodes": ["x"], "pageInfo": {"hasNextPage": False}}, "t")
    with pytest.raises(ConnectorError):
        history_page(None, "t")

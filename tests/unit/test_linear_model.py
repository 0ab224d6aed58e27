"""The richer model of a Linear issue node (connectors/linear_model.py), as the pure mapping sees
it: parent, kind, labels, assignee, cycle and its state against the server's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.base import Person, Sprint, Status
from connectors.linear import map_issue
from connectors.linear_model import cycle_name, model_fields, without_addresses

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)
CYCLE = {
    "id": "c-8",
    "number": 8.0,
    "name": None,
    "startsAt": "2026-04-24T00:00:00.000Z",
    "endsAt": "2026-05-08T00:00:00.000Z",
    "completedAt": None,
}


def node(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "i-1",
        "identifier": "ENG-1",
        "title": "t",
        "updatedAt": "2026-04-30T00:00:00.000Z",
        "state": {"name": "Todo", "type": "unstarted"},
        "labels": {"nodes": [], "pageInfo": {"hasNextPage": False}},
        "parent": None,
        "assignee": None,
        "cycle": None,
    }
    return {**base, **fields}


def test_a_sub_issue_names_its_parent_by_the_parents_own_id() -> None:
    item = map_issue(node(parent={"id": "i-0"}), scope="ENG", overrides={}, now=NOW)
    assert (item.parent_external_id, item.item_type, item.item_type_name) == (
        "i-0",
        "sub_task",
        "Sub-issue",
    )
    top = map_issue(node(), scope="ENG", overrides={}, now=NOW)
    assert (top.parent_external_id, top.item_type, top.item_type_name) == (None, "issue", "Issue")


@pytest.mark.parametrize(
    ("changes", "state"),
    [
        ({}, "active"),
        ({"startsAt": "2026-05-02T00:00:00.000Z"}, "future"),
        ({"completedAt": "2026-04-30T00:00:00.000Z"}, "closed"),
        ({"completedAt": "yesterday"}, None),  # its completion cannot be read
        ({"startsAt": None}, None),
    ],
)
def test_a_cycles_state_is_closed_future_or_active(changes: dict[str, Any], state: str) -> None:
    fields, _ = model_fields(node(cycle={**CYCLE, **changes}), now=NOW)
    assert [s.state for s in fields["sprints"]] == [state]


def test_a_cycle_is_a_sprint_named_as_linear_shows_it() -> None:
    fields, problems = model_fields(node(cycle=CYCLE), now=NOW)
    starts, ends = datetime(2026, 4, 24, tzinfo=UTC), datetime(2026, 5, 8, tzinfo=UTC)
    assert fields["sprints"] == (Sprint("c-8", "Cycle 8", "active", starts, ends),)
    assert problems == []
    assert cycle_name({**CYCLE, "name": "Hardening"}) == "Hardening"
    assert cycle_name({"id": "c-9", "number": True}) == "c-9"  # a Boolean is not a number


def test_the_assignee_is_its_display_name_and_id_never_an_address() -> None:
    user = {"id": "u-1", "name": "Maya Chen", "displayName": "maya"}
    fields, _ = model_fields(node(assignee=user), now=NOW)
    assert fields["assignees"] == (Person("maya", "u-1"),)
    invited = {"id": "u-2", "name": "ana@corp.example", "displayName": "ana@corp.example"}
    fields, _ = model_fields(node(assignee=invited), now=NOW)
    assert fields["assignees"] == (Person(None, "u-2"),)
    assert "@" not in repr(without_addresses(node(assignee=invited)))
    fields, _ = model_fields(node(assignee={**invited, "name": "Ana Lima"}), now=NOW)
    assert fields["assignees"] == (Person("Ana Lima", "u-2"),)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("parent", "ENG-0", "parent is not an object with an id"),
        ("parent", {"id": 7}, "parent is not an object with an id"),
        ("assignee", ["u-1"], "assignee is not an object"),
        ("assignee", {"id": None, "name": ""}, "assignee has neither a name nor an id"),
        ("cycle", {"number": 3}, "cycle is not an object with an id"),
        ("cycle", {**CYCLE, "endsAt": 17}, "cycle.endsAt is not an ISO 8601 time"),
        ("labels", {"nodes": [{"name": None}]}, "a label has no text name"),
    ],
)
def test_a_malformed_value_is_left_out_and_named(field: str, value: Any, problem: str) -> None:
    item = map_issue(node(**{field: value}), scope="ENG", overrides={}, now=NOW)
    assert item.status is Status.QUEUED  # the issue itself is mapped
    _, problems = model_fields(node(**{field: value}), now=NOW)
    assert problems == [problem]
    if field == "cycle" and "id" in value:
        assert item.sprints[0].ends_at is None
    elif field != "parent":
        assert not getattr(item, {"cycle": "sprints", "labels": "labels"}.get(field, "assignees"))


def test_without_a_clock_the_mapping_uses_the_local_one() -> None:
    ahead = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    item = map_issue(node(cycle={**CYCLE, "startsAt": ahead}), scope="ENG", overrides={})
    assert item.sprints[0].state == "future"

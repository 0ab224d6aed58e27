"""The richer model of a Linear issue (docs/trackers/linear.md#richer-model): its parent, kind,
labels, assignee and cycle, read from the fields the changes listing selects with each issue
(MODEL_SELECTION): no request of its own.

- parent: `parent { id }` (a sub-issue's parent issue); `parent_external_id` is that id, the
  same UUID the parent's own `external_id` is.
- kind: Linear has no issue types. A sub-issue (it has a parent) is `sub_task` "Sub-issue", any
  other issue `issue` "Issue", as Linear's app names them.
- labels: the names of `labels` (the listing reads every label: connectors.linear).
- assignee: `assignee { id name displayName }` as Person(displayName, else name; the user id).
  `email` is never selected, and a name that holds an "@" is not used (nor kept in `raw`).
- sprint: `cycle { … }` as Sprint(cycle id, name or "Cycle <number>", state: completedAt set is
  closed, startsAt still ahead is future, else active; startsAt, endsAt).

A value that does not match Linear's schema (a parent that is not an object with an id, a cycle
date that is not ISO 8601, a label that is not text) is left out on its own and named in the
returned problems; the issue itself still lands.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connectors import http
from connectors.base import Person, Sprint

#: what the changes listing selects with each issue for this model (beside its `labels`)
MODEL_SELECTION = """
      parent { id }
      assignee { id name displayName }
      cycle { id number name startsAt endsAt completedAt }
"""

SUB_ISSUE = ("sub_task", "Sub-issue")
ISSUE = ("issue", "Issue")


def cycle_name(cycle: Any) -> str | None:
    """A cycle as Linear shows it: its name, else "Cycle <number>" (else its id)."""
    if not isinstance(cycle, Mapping):
        return None
    number = cycle.get("number")
    numbered = (
        f"Cycle {number:g}"
        if isinstance(number, int | float) and not isinstance(number, bool)
        else None
    )
    return _text(cycle.get("name")) or numbered or _text(cycle.get("id"))


def model_fields(node: Mapping[str, Any], *, now: datetime) -> tuple[dict[str, Any], list[str]]:
    """The WorkItem keyword arguments of the richer model for one issue node, and the problems
    found (each names the field and why it was left out). `now` decides whether a cycle that
    has not completed is still ahead (future) or under way (active)."""
    problems: list[str] = []
    parent = node.get("parent")
    parent_id: str | None = None
    if parent is not None:
        parent_id = _text(parent.get("id")) if isinstance(parent, Mapping) else None
        if parent_id is None:
            problems.append("parent is not an object with an id")
    # a parent Linear names, even unreadably, still makes the issue a sub-issue
    item_type, item_type_name = SUB_ISSUE if parent is not None else ISSUE
    return {
        "parent_external_id": parent_id,
        "item_type": item_type,
        "item_type_name": item_type_name,
        "labels": _labels(node.get("labels"), problems),
        "assignees": _assignees(node.get("assignee"), problems),
        "sprints": _sprints(node.get("cycle"), now, problems),
    }, problems


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def person_name(value: Any) -> str | None:
    """A user's name or display name, unless it is an e-mail address (an invited user's name
    can be one): never stored, whatever field it came in."""
    text = _text(value)
    return text if text is not None and "@" not in text else None


def without_addresses(node: Mapping[str, Any]) -> dict[str, Any]:
    """The issue node as kept in `raw`, its assignee's names that are e-mail addresses blanked
    (`email` itself is never selected)."""
    user = node.get("assignee")
    if not isinstance(user, Mapping):
        return dict(node)
    names = {k: person_name(user.get(k)) for k in ("name", "displayName") if k in user}
    return {**node, "assignee": {**user, **names}}


def _labels(labels: Any, problems: list[str]) -> tuple[str, ...]:
    nodes = labels.get("nodes") if isinstance(labels, Mapping) else None
    names = [n.get("name") if isinstance(n, Mapping) else None for n in nodes or ()]
    if any(not isinstance(name, str) for name in names):
        problems.append("a label has no text name")
    return tuple(name for name in names if isinstance(name, str))


def _assignees(user: Any, problems: list[str]) -> tuple[Person, ...]:
    if user is None:
        return ()
    if not isinstance(user, Mapping):
        problems.append("assignee is not an object")
        return ()
    name = person_name(user.get("displayName")) or person_name(user.get("name"))
    account = _text(user.get("id"))
    if name is None and account is None:
        problems.append("assignee has neither a name nor an id")
        return ()
    return (Person(name, account),)


def _sprints(cycle: Any, now: datetime, problems: list[str]) -> tuple[Sprint, ...]:
    if cycle is None:
        return ()
    cycle_id = _text(cycle.get("id")) if isinstance(cycle, Mapping) else None
    if not isinstance(cycle, Mapping) or cycle_id is None:
        problems.append("cycle is not an object with an id")
        return ()
    times: dict[str, datetime | None] = {}
    for key in ("startsAt", "endsAt", "completedAt"):
        value = cycle.get(key)
        times[key] = http.parse_time(value) if isinstance(value, str) else None
        if value is not None and times[key] is None:
            problems.append(f"cycle.{key} is not an ISO 8601 time")
    starts, completed = times["startsAt"], times["completedAt"]
    state: str | None
    if completed is not None:
        state = "closed"
    elif cycle.get("completedAt") is not None or starts is None:
        state = None  # not known: its completion or its start cannot be read
    else:
        state = "future" if starts > now else "active"
    name = cycle_name(cycle) or cycle_id
    return (Sprint(cycle_id, name, state, starts, times["endsAt"]),)


__all__ = ["MODEL_SELECTION", "cycle_name", "model_fields", "person_name", "without_addresses"]

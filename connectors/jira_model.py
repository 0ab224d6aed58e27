"""The richer model of a Jira issue (pure: no requests): parent, item type, labels, assignee,
sprints and the admin's `extra_fields`, read from the fields the search already returns
(docs/trackers/jira.md#richer-model).

- Parent: the `parent` field (`{id, key, …}`: on Cloud every level, on Data Center the parent of a
  sub-task) gives the parent's id; on Data Center an epic's children carry the Epic Link custom
  field instead, whose value is the epic's KEY: the connector resolves keys to ids (one batched
  search per page for keys it does not know yet) and hands them here as `epic_ids`.
- Sprints: the Sprint custom field. Cloud sends objects `{id, name, state, startDate, endDate,
  completeDate, …}`; Data Center strings `com.atlassian.greenhopper.service.sprint.Sprint@6f2[
  id=266,rapidViewId=174,state=CLOSED,name=…,startDate=…,…]` whose `name` and `goal` may hold
  commas, so the string is split only where a known key follows a comma.
- Nothing here ever keeps an e-mail address: users are a display name and an account id (Cloud
  `accountId`, Data Center `key`), and `scrub_emails` drops `emailAddress` from what is stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.base import Person, Sprint
from connectors.http import json_mentions, parse_time

#: `schema.custom` of the fields GET /field lists (Jira Software's own plugin keys).
SPRINT_SCHEMA = "com.pyxis.greenhopper.jira:gh-sprint"
EPIC_LINK_SCHEMA = "com.pyxis.greenhopper.jira:gh-epic-link"

#: Issue type names (folded) -> ITEM_TYPES, when the hierarchy level does not decide.
TYPE_BY_NAME = {
    "epic": "epic",
    "feature": "feature",
    "story": "story",
    "user story": "story",
    "task": "task",
    "bug": "bug",
    "defect": "bug",
    "sub-task": "sub_task",
    "subtask": "sub_task",
}

SPRINT_STATES = {"active": "active", "closed": "closed", "future": "future"}

#: Keys of a Data Center sprint string (GreenHopper's `Sprint.toString()`), as reported for
#: Jira Software 7.x-10.x. Only these split the string, so a comma inside a name or goal stays.
SPRINT_KEYS = (
    "id", "rapidViewId", "state", "name", "startDate", "endDate", "completeDate",
    "activatedDate", "sequence", "goal", "autoStartStop", "synced",
    "incompleteIssuesDestinationId",
)  # fmt: skip
_SPRINT_STRING = re.compile(r"^[\w.$]*Sprint@[0-9a-fA-F]*\[(?P<body>.*)\]$", re.DOTALL)
_SPRINT_SPLIT = re.compile(r"(?:^|,)(" + "|".join(SPRINT_KEYS) + r")=")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")  # fullmatch: a whole value that is one
_ISSUE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*-[0-9]+")
_DIGITS = re.compile(r"[0-9]+")


def is_email(value: object) -> bool:
    return isinstance(value, str) and "@" in value and bool(_EMAIL.fullmatch(value.strip()))


def scrub_emails(value: Any) -> Any:
    """A JSON value without any `emailAddress` key, at any depth (Jira sends it in every user
    object it may show: assignee, reporter, creator, user pickers), and with None for any string
    that is an e-mail address as a whole (a text field holding one). A value whose text holds
    neither that key nor an `@` has nothing to scrub: it is returned as it is, unwalked (Cloud
    hides most addresses; walking an issue's fields costs about 50 µs)."""
    if not json_mentions(value, b"@", b'"emailAddress":'):
        return value
    return _scrubbed(value)


def _scrubbed(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _scrubbed(v) for k, v in value.items() if k != "emailAddress"}
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    return None if is_email(value) else value


# -- item type ---------------------------------------------------------------------------------
def item_type_of(issuetype: object) -> tuple[str | None, str | None]:
    """(one of ITEM_TYPES, the type's own name) of an `issuetype` field: hierarchy level 1 is an
    epic, a sub-task (`subtask`, or level -1) a sub_task, else by name; (None, None) when the
    field is absent or not an object."""
    if not isinstance(issuetype, Mapping):
        return None, None
    raw_name = issuetype.get("name")
    name = raw_name.strip() if isinstance(raw_name, str) and raw_name.strip() else None
    level = issuetype.get("hierarchyLevel")
    level = level if isinstance(level, int) and not isinstance(level, bool) else None
    if level == 1:
        return "epic", name
    if issuetype.get("subtask") is True or level == -1:
        return "sub_task", name
    return TYPE_BY_NAME.get((name or "").casefold(), "other"), name


# -- people and labels -------------------------------------------------------------------------
def person_of(user: object) -> Person | None:
    """A Jira user as a Person: display name and account id (Cloud `accountId`, Data Center
    `key`, else `name`); never the e-mail address (a display name that is one is dropped)."""
    if not isinstance(user, Mapping):
        return None
    shown = _text(user.get("displayName"))
    if shown is not None and is_email(shown):
        shown = None
    account = next(
        (t for k in ("accountId", "key", "name") if (t := _text(user.get(k))) is not None), None
    )
    if account is not None and is_email(account):
        account = None
    if shown is None and account is None:
        return None
    return Person(shown, account)


def assignees_of(assignee: object) -> tuple[Person, ...]:
    person = person_of(assignee)
    return (person,) if person is not None else ()


def labels_of(labels: object) -> tuple[str, ...]:
    """The `labels` field: its non-empty strings (anything else in the list is skipped)."""
    if not isinstance(labels, list):
        return ()
    return tuple(t for x in labels if isinstance(x, str) and (t := x.strip()))


# -- parent ------------------------------------------------------------------------------------
def parent_id_of(parent: object) -> str | None:
    """The parent's issue id from the `parent` field (`{id, key, …}`), None for any other shape."""
    if not isinstance(parent, Mapping):
        return None
    value = parent.get("id")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return value
    return None


def epic_key_of(value: object) -> str | None:
    """The epic's key an Epic Link value names (a string such as `ABC-12`), else None."""
    if isinstance(value, str) and _ISSUE_KEY.fullmatch(value.strip()):
        return value.strip().upper()
    return None


def epic_keys(raws: Sequence[Any], epic_link: str | None) -> set[str]:
    """Every epic key the Epic Link field of these search results names."""
    if epic_link is None:
        return set()
    keys: set[str] = set()
    for raw in raws:
        f = raw.get("fields") if isinstance(raw, Mapping) else None
        key = epic_key_of(f.get(epic_link)) if isinstance(f, Mapping) else None
        if key is not None:
            keys.add(key)
    return keys


# -- sprints -----------------------------------------------------------------------------------
def sprints_of(value: object, site: str) -> tuple[Sprint, ...]:
    """The Sprint field's sprints (Cloud objects or Data Center strings); a value that parses as
    neither is skipped."""
    if not isinstance(value, list):
        return ()
    found: list[Sprint] = []
    for entry in value:
        fields = entry if isinstance(entry, Mapping) else parse_sprint_string(entry)
        sprint = _sprint(fields, site) if fields is not None else None
        if sprint is not None:
            found.append(sprint)
    return tuple(found)


def parse_sprint_string(value: object) -> dict[str, str | None] | None:
    """The known keys of a Data Center sprint string (`<null>` as None), or None when it is not
    one (no `Sprint@…[…]` shape, or no id)."""
    if not isinstance(value, str):
        return None
    match = _SPRINT_STRING.match(value.strip())
    if match is None:
        return None
    body = match.group("body")
    marks = list(_SPRINT_SPLIT.finditer(body))
    if not marks or marks[0].start() != 0:
        return None
    parsed: dict[str, str | None] = {}
    for n, mark in enumerate(marks):
        end = marks[n + 1].start() if n + 1 < len(marks) else len(body)
        text = body[mark.end() : end]
        parsed.setdefault(mark.group(1), None if text == "<null>" else text)
    return parsed


def _sprint(fields: Mapping[str, Any], site: str) -> Sprint | None:
    sprint_id = fields.get("id")
    if isinstance(sprint_id, bool) or not isinstance(sprint_id, int | str):
        return None
    sprint_id = str(sprint_id).strip()
    if not _DIGITS.fullmatch(sprint_id):
        return None
    name = _text(fields.get("name")) or sprint_id
    state = SPRINT_STATES.get(str(fields.get("state") or "").strip().casefold())
    return Sprint(
        external_id=f"{site}/sprint/{sprint_id}",
        name=name,
        state=state,
        starts_at=parse_time(fields.get("startDate")),
        ends_at=parse_time(fields.get("endDate")),
    )


# -- extra fields ------------------------------------------------------------------------------
def simple_value(value: Any) -> Any:
    """A custom field's value as plain JSON: an option its `value` (a cascading one
    `"parent / child"`), a user its display name, a version/component/group its `name`, a rich
    list each item; numbers, strings and booleans as they are. Never an
    e-mail address (a string that is one, or a user's `emailAddress`, becomes None)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return None if is_email(value) else value
    if isinstance(value, list):
        return [simple_value(v) for v in value]
    if isinstance(value, Mapping):
        return _simple_object(value)
    return str(value)


def _simple_object(value: Mapping[str, Any]) -> Any:
    if "value" in value:  # an option; a cascading select carries its child option
        child = value.get("child")
        shown = simple_value(value.get("value"))
        if isinstance(child, Mapping) and "value" in child:
            return f"{shown} / {simple_value(child.get('value'))}"
        return shown
    if any(k in value for k in ("accountId", "displayName", "emailAddress")):
        person = person_of(value)
        return person.name if person is not None else None
    if isinstance(value.get("name"), str):  # version, component, group, priority, status
        return simple_value(value["name"])
    return {
        str(k): simple_value(v)
        for k, v in value.items()
        if k not in ("self", "emailAddress", "avatarUrls", "iconUrl")
    }


def _text(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text or None

"""Jira's changelog as `HistoryEntry`s (pure: no requests).

A changelog is a list of histories `{id, author, created, items[{field, fieldtype, fieldId,
from, fromString, to, toString}]}` (Cloud items carry `fieldId`; Data Center's may not, so a field
is also known by its name). Each tracked item is one entry: the history's `id` is the change id
(`<id>/<index>` when one history changes the same tracked field twice), `created` its time, the
author's display name and account id (Cloud `accountId`, Data Center `key` or `name`) its actor,
never `emailAddress`. Values are the `fromString`/`toString` Jira shows; statuses are mapped onto
`Status` by the caller (the status's category is not in the changelog).

Jira writes no history for an issue's creation: when the changelog is whole, an entry with
`from_value` None is made up from the issue's `created` and the first status change's `from`
(or the current status when it never changed). Its change id, `created`, is synthetic
(docs/trackers/jira.md#history).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors.base import HistoryEntry, Status
from connectors.http import parse_time

#: The synthetic change id of the value at creation (Jira has no history for it).
CREATED = "created"

#: Changelog field names (folded) that mean the issue's parent: the parent of a sub-task or a
#: team-managed child, the company-managed Epic Link, Advanced Roadmaps' Parent Link.
PARENT_NAMES = frozenset({"parent", "issueparentassociation", "epic link", "parent link"})

#: A status name and the resolution it was in -> our Status (the connector's mapping).
StatusOf = Callable[[str | None, str | None], Status]


@dataclass(frozen=True, slots=True)
class TrackedFields:
    """How this site names the tracked custom fields in a changelog (ids from `GET /field`)."""

    story_points: str | None = None  # field id
    story_points_name: str | None = None
    sprint: str | None = None  # field id


def changelog_of(raw: object) -> Mapping[str, Any] | None:
    """An expanded issue's `changelog`, when it is an object."""
    changelog = raw.get("changelog") if isinstance(raw, Mapping) else None
    return changelog if isinstance(changelog, Mapping) else None


def histories_of(changelog: Mapping[str, Any] | None, key: str = "histories") -> list[Any]:
    values = changelog.get(key) if changelog is not None else None
    return [h for h in values if isinstance(h, Mapping)] if isinstance(values, list) else []


def changelog_cut(changelog: Mapping[str, Any] | None) -> bool:
    """Whether an expanded changelog is not the whole history: absent, no readable `total`, or
    `total` beyond what came (Cloud keeps the most recent 100, or fewer, in a search answer)."""
    if changelog is None:
        return True
    total = changelog.get("total")
    if not isinstance(total, int) or isinstance(total, bool):
        return True
    came = len(histories_of(changelog))
    most = changelog.get("maxResults")
    return total > came or (isinstance(most, int) and total > most)


def status_names(histories: Sequence[Mapping[str, Any]]) -> set[str]:
    """Every status name a changelog mentions."""
    names: set[str] = set()
    for history in histories:
        for item in _items(history):
            if _is(item, "status"):
                names.update(v for v in (item.get("fromString"), item.get("toString")) if v)
    return {n for n in names if isinstance(n, str)}


def history_entries(
    histories: Sequence[Mapping[str, Any]],
    *,
    fields: TrackedFields,
    status_of: StatusOf,
    whole: bool,
    created: datetime | None = None,
    current_status: str | None = None,
) -> list[HistoryEntry]:
    """The entries of a changelog, oldest first; with the value at creation when `whole` and
    the issue's `created` is known. A history without a readable time is left out."""
    dated = []
    for history in histories:
        at = parse_time(history.get("created"))
        if at is not None and history.get("id") is not None:
            dated.append((at, _order(history.get("id")), history))
    dated.sort(key=lambda d: (d[0], d[1]))
    entries: list[HistoryEntry] = []
    resolution: str | None = None  # Jira issues are created unresolved
    first_status: str | None = None
    seen_status = False
    for at, _, history in dated:
        items = _items(history)
        resolved = resolution
        for item in items:
            if _is(item, "resolution"):
                resolved = _text(item.get("toString"))
        name, account = _actor(history.get("author"))
        tracked = [(n, item, _tracked(item, fields)) for n, item in enumerate(items)]
        counts: dict[str, int] = {}
        for _, _, kind in tracked:
            if kind is not None:
                counts[kind] = counts.get(kind, 0) + 1
        for index, item, kind in tracked:
            if kind is None:
                continue
            old, new = _text(item.get("fromString")), _text(item.get("toString"))
            change_id = str(history["id"])
            if counts[kind] > 1:
                change_id = f"{change_id}/{index}"
            from_status = to_status = None
            if kind == "status":
                if not seen_status:
                    first_status, seen_status = old, True
                from_status = status_of(old, resolution) if old is not None else None
                to_status = status_of(new, resolved) if new is not None else None
            entries.append(
                HistoryEntry(change_id, kind, at, old, new, from_status, to_status, name, account)
            )
        resolution = resolved
    if whole and created is not None:
        initial = first_status if seen_status else current_status
        if initial is not None:
            creation = HistoryEntry(
                CREATED, "status", created, None, initial, None, status_of(initial, None)
            )
            entries.insert(0, creation)
    return entries


def _items(history: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    items = history.get("items")
    return [i for i in items if isinstance(i, Mapping)] if isinstance(items, list) else []


def _is(item: Mapping[str, Any], name: str) -> bool:
    return item.get("fieldId") == name or str(item.get("field") or "").casefold() == name


def _tracked(item: Mapping[str, Any], fields: TrackedFields) -> str | None:
    """Which of HISTORY_FIELDS a changelog item changes, or None."""
    field_id = item.get("fieldId")
    name = str(item.get("field") or "").strip().casefold()
    for kind in ("status", "assignee", "priority"):
        if _is(item, kind):
            return kind
    if field_id == "parent" or name in PARENT_NAMES:
        return "parent"
    if (fields.sprint is not None and field_id == fields.sprint) or name == "sprint":
        return "sprint"
    if fields.story_points is not None and field_id == fields.story_points:
        return "story_points"
    points_name = (fields.story_points_name or "").strip().casefold()
    if field_id is None and points_name and name == points_name:
        return "story_points"
    return None


def _actor(author: object) -> tuple[str | None, str | None]:
    """Display name and account id (Cloud accountId; Data Center key, else name). Never the
    e-mail address."""
    if not isinstance(author, Mapping):
        return None, None
    shown = _text(author.get("displayName"))
    account = next(
        (str(v) for k in ("accountId", "key", "name") if (v := author.get(k)) not in (None, "")),
        None,
    )
    if shown is not None and "@" in shown:
        shown = None  # a display name that is an address is not kept
    return shown, account


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _order(history_id: object) -> int:
    """Histories of one instant in id order (ids are numbers in both deployments)."""
    try:
        return int(str(history_id))
    except ValueError:
        return 0

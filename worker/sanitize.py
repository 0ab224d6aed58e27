"""Make connector output safe for PostgreSQL: no NUL bytes (text and jsonb refuse them) and no
lone surrogates (UTF-8 cannot encode them: a JSON answer may carry half an emoji as `\\ud83d`),
values fitted to their columns (a 600-character title is truncated, not a failed batch), one item
per key.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

import orjson

from connectors.base import (
    HISTORY_FIELDS,
    ITEM_TYPES,
    HistoryEntry,
    Person,
    Rejected,
    Sprint,
    Status,
    WorkItem,
    utc,
)

TITLE_MAX = 500
KEY_MAX = 255
EXTERNAL_ID_MAX = 255
HISTORY_VALUE_MAX = 500  # a history value is a status, a person, a sprint: never a document
INT4_MAX = 2**31 - 1
ELLIPSIS = "…"


# What neither a text column nor jsonb takes: NUL, and a lone surrogate (a str holds a pair as one
# code point, so any code point of the surrogate range is a lone half).
_UNSAFE = re.compile("[\x00\ud800-\udfff]")


def clean_str(value: str) -> str:
    if value.isascii():  # (a flag CPython keeps: no scan) no surrogate in it, maybe a NUL
        return value.replace("\x00", "") if "\x00" in value else value
    return _UNSAFE.sub("", value) if _UNSAFE.search(value) else value


def clean_text(value: str | None, limit: int | None = None) -> str | None:
    if value is None:
        return None
    text = clean_str(value)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + ELLIPSIS
    return text


def clean_json(value: Any) -> Any:
    """A JSON-like value with NUL and lone surrogates stripped from every string and key (jsonb
    rejects both), NaN and infinities as null, and anything JSON has no type for as its text."""
    if isinstance(value, str):
        return clean_str(value)
    if isinstance(value, Mapping):
        return {clean_str(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):  # not JSON
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
# The common case's encoder: orjson (a GitHub issue in 3.5 µs against json's 25; the same text:
# compact, UTF-8, control characters escaped; NaN and infinities written as null, as
# `clean_json` makes them). It refuses a lone surrogate, a non-text key or an integer past 64
# bits, and is told to refuse what it would write its own way (a datetime, a subclass, a
# dataclass): those go through `clean_json`.
_FAST_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


class JsonText(str):
    """JSON text already encoded (and cleaned, `json_text`): a jsonb value the connection's codec
    (worker.db) sends as it is, not encoded again as a JSON string."""


def json_text(value: Any) -> str:
    """The JSON text of a value for a jsonb column, as `clean_json` would make it. Encoded once
    as it stands (the common case: nothing to clean, no copy); only a value with something to
    clean (an escaped NUL, a lone surrogate, a type JSON lacks) is encoded from a cleaned copy.
    (`\\u0000` may also be a literal backslash's text: then the copy is merely not needed.)
    """
    try:
        text = orjson.dumps(value, option=_FAST_OPTIONS).decode()
    except TypeError:  # (orjson.JSONEncodeError is one)
        return _ENCODE(clean_json(value))
    if "\\u0000" in text:
        return _ENCODE(clean_json(value))
    return text


_TEXT_FIELDS = ("title", "external_key", "description", "acceptance_criteria", "external_url")


def _wrong_type(item: WorkItem) -> str | None:
    """Why a field of the item has a type no column takes (a connector passed upstream junk
    through), or None. Checked before anything touches the values."""
    for name in _TEXT_FIELDS:
        value = getattr(item, name)
        if value is not None and not isinstance(value, str):
            return f"{name} is {type(value).__name__}, not text"
    if not isinstance(item.updated_at, datetime):
        return f"updated_at is {type(item.updated_at).__name__}, not a time"
    for name in ("started_at", "completed_at"):
        value = getattr(item, name)
        if value is not None and not isinstance(value, datetime):
            return f"{name} is {type(value).__name__}, not a time"
    if not isinstance(item.status, Status):
        return f"status {str(item.status)[:40]!r} is not one of ours"
    if not isinstance(item.priority, int | None) or isinstance(item.priority, bool):
        return f"priority is {type(item.priority).__name__}, not a number"
    if item.story_points is not None and not isinstance(item.story_points, int):
        return f"story_points is {type(item.story_points).__name__}, not a number"
    if not isinstance(item.raw, Mapping):
        return f"raw is {type(item.raw).__name__}, not an object"
    problem = _wrong_model(item)
    if problem is not None:
        return problem
    for n, entry in enumerate(item.history):
        problem = _wrong_history(entry)
        if problem is not None:
            return f"history entry {n}: {problem}"
    return None


def _wrong_model(item: WorkItem) -> str | None:
    """The richer model's fields (0012), checked as the others: a wrong type rejects the item."""
    for name in ("parent_external_id", "item_type_name"):
        value = getattr(item, name)
        if value is not None and not isinstance(value, str):
            return f"{name} is {type(value).__name__}, not text"
    if item.item_type is not None and item.item_type not in ITEM_TYPES:
        return f"item_type {str(item.item_type)[:40]!r} is not one of ours"
    if isinstance(item.labels, str) or not all(isinstance(x, str) for x in item.labels):
        return "labels are not a list of text"
    if not all(isinstance(p, Person) for p in item.assignees):
        return "assignees are not Persons"
    for sprint in item.sprints:
        if not isinstance(sprint, Sprint) or not isinstance(sprint.external_id, str):
            return "sprints are not Sprints"
        if not sprint.external_id.strip() or len(sprint.external_id) > EXTERNAL_ID_MAX:
            return f"sprint id {sprint.external_id[:40]!r} is empty or too long"
        for when in (sprint.starts_at, sprint.ends_at):
            if when is not None and not isinstance(when, datetime):
                return f"sprint {sprint.external_id[:40]!r} has a date that is not a time"
        if sprint.state not in (None, "future", "active", "closed"):
            return f"sprint state {str(sprint.state)[:20]!r} is not future, active or closed"
    if not isinstance(item.custom_fields, Mapping):
        return f"custom_fields is {type(item.custom_fields).__name__}, not an object"
    return None


def _clean_model(item: WorkItem) -> dict[str, Any]:
    parent = clean_text(item.parent_external_id)
    return {
        # an id is identity: one too long to store links nothing (never a truncated one)
        "parent_external_id": parent if parent and len(parent) <= EXTERNAL_ID_MAX else None,
        "item_type_name": clean_text(item.item_type_name, KEY_MAX),
        "labels": tuple(dict.fromkeys(t for x in item.labels if (t := clean_text(x, KEY_MAX)))),
        "assignees": tuple(
            Person(clean_text(p.name, KEY_MAX), clean_text(p.account_id, KEY_MAX))
            for p in item.assignees
        ),
        "sprints": tuple(
            Sprint(
                s.external_id.replace("\x00", ""),
                clean_text(s.name, TITLE_MAX) or s.external_id,
                s.state,
                utc(s.starts_at) if s.starts_at else None,
                utc(s.ends_at) if s.ends_at else None,
            )
            for s in {s.external_id: s for s in item.sprints}.values()  # one per sprint
        ),
    }


def _wrong_history(entry: object) -> str | None:
    if not isinstance(entry, HistoryEntry):
        return f"is {type(entry).__name__}, not a HistoryEntry"
    if not isinstance(entry.change_id, str) or not entry.change_id.strip():
        return "change_id is not text"
    if len(entry.change_id) > EXTERNAL_ID_MAX:  # an id is identity: never truncated
        return f"change_id longer than {EXTERNAL_ID_MAX}"
    if entry.field not in HISTORY_FIELDS:
        return f"field {str(entry.field)[:40]!r} is not one we keep"
    if not isinstance(entry.changed_at, datetime):
        return f"changed_at is {type(entry.changed_at).__name__}, not a time"
    for name in ("from_value", "to_value", "actor_name", "actor_id"):
        value = getattr(entry, name)
        if value is not None and not isinstance(value, str):
            return f"{name} is {type(value).__name__}, not text"
    for name in ("from_status", "to_status"):
        value = getattr(entry, name)
        if value is not None and not isinstance(value, Status):
            return f"{name} {str(value)[:40]!r} is not one of ours"
    return None


def clean_history(entry: HistoryEntry) -> HistoryEntry:
    return replace(
        entry,
        change_id=entry.change_id.replace("\x00", ""),
        changed_at=utc(entry.changed_at),
        from_value=clean_text(entry.from_value, HISTORY_VALUE_MAX),
        to_value=clean_text(entry.to_value, HISTORY_VALUE_MAX),
        actor_name=clean_text(entry.actor_name, KEY_MAX),
        actor_id=clean_text(entry.actor_id, KEY_MAX),
    )


def clean_item(item: WorkItem) -> WorkItem | Rejected:
    if not isinstance(item.external_id, str):
        return Rejected(repr(item.external_id)[:80], "external_id is not text")
    external_id = item.external_id.replace("\x00", "")
    key = item.external_key[:KEY_MAX] if isinstance(item.external_key, str) else None
    if not external_id.strip():
        return Rejected(repr(item.external_id), "empty external_id", key)
    if len(external_id) > EXTERNAL_ID_MAX:
        # An id is identity: truncating it could merge two items. Refuse it instead.
        return Rejected(
            external_id[:80] + ELLIPSIS, f"external_id longer than {EXTERNAL_ID_MAX}", key
        )
    problem = _wrong_type(item)
    if problem is not None:
        return Rejected(external_id, problem, key)
    points = item.story_points
    if points is not None and not (0 <= points <= INT4_MAX):
        points = None
    return replace(
        item,
        external_id=external_id,
        title=clean_text(item.title or "(untitled)", TITLE_MAX) or "(untitled)",
        external_key=clean_text(item.external_key, KEY_MAX),
        description=clean_text(item.description),
        acceptance_criteria=clean_text(item.acceptance_criteria),
        external_url=clean_text(item.external_url),
        priority=min(4, max(0, int(item.priority or 0))),
        story_points=points,
        updated_at=utc(item.updated_at),
        started_at=utc(item.started_at) if item.started_at else None,
        completed_at=utc(item.completed_at) if item.completed_at else None,
        # raw and custom_fields are cleaned as they are encoded (`columns`, `json_text`)
        history=tuple(clean_history(e) for e in item.history),
        **_clean_model(item),
    )


def prepare_page(items: Iterable[WorkItem]) -> tuple[list[WorkItem], list[Rejected]]:
    """Clean every item and keep one per external_id (`newest_per_id`): PostgreSQL refuses an
    INSERT … ON CONFLICT that touches the same row twice."""
    clean: list[WorkItem] = []
    rejected: list[Rejected] = []
    for item in items:
        cleaned = clean_item(item)
        if isinstance(cleaned, Rejected):
            rejected.append(cleaned)
        else:
            clean.append(cleaned)
    return newest_per_id((i, i) for i in clean), rejected


T = TypeVar("T")


def newest_per_id(pairs: Iterable[tuple[WorkItem, T]]) -> list[T]:
    """Of (item, what stands for it) pairs, one per external_id, kept where the id first came:
    its newest version's (the later one on a tie)."""
    newest: dict[str, tuple[WorkItem, T]] = {}
    for item, value in pairs:
        seen = newest.get(item.external_id)
        if seen is None or item.updated_at >= seen[0].updated_at:
            newest[item.external_id] = (item, value)
    return [value for _, value in newest.values()]


# The page's columns, in the order `columns` gives them, with their PostgreSQL array types.
PAGE_COLUMNS = (
    ("external_id", "text"), ("external_key", "text"), ("title", "text"),
    ("description", "text"), ("acceptance_criteria", "text"), ("status", "text"),
    ("priority", "int"), ("story_points", "int"), ("external_url", "text"),
    ("external_data", "text"), ("source_updated_at", "timestamptz"),
    ("started_at", "timestamptz"), ("completed_at", "timestamptz"), ("removed", "bool"),
    ("sync_scope", "text"), ("history_pending", "bool"), ("parent_external_id", "text"),
    # lists go as JSON text: asyncpg would take a list inside an array for a second dimension;
    # objects too (`json_text`: cleaned as they are encoded), cast to jsonb by the statement
    ("item_type", "text"), ("item_type_name", "text"), ("labels", "text"),
    ("assignees", "text"), ("fields", "text"),
)  # fmt: skip


def columns(items: Sequence[WorkItem]) -> dict[str, list[Any]]:
    """The page as parallel arrays, one per column of PAGE_COLUMNS (in its order), for
    `unnest`."""
    return {
        "external_id": [i.external_id for i in items],
        "external_key": [i.external_key for i in items],
        "title": [i.title for i in items],
        "description": [i.description for i in items],
        "acceptance_criteria": [i.acceptance_criteria for i in items],
        "status": [str(i.status) for i in items],
        "priority": [i.priority for i in items],
        "story_points": [i.story_points for i in items],
        "external_url": [i.external_url for i in items],
        "external_data": [json_text(i.raw) for i in items],
        "source_updated_at": [i.updated_at for i in items],
        "started_at": [i.started_at for i in items],
        "completed_at": [i.completed_at for i in items],
        "removed": [i.removed for i in items],
        "sync_scope": [i.scope for i in items],
        "history_pending": [bool(i.history_pending) for i in items],
        "parent_external_id": [i.parent_external_id for i in items],
        "item_type": [i.item_type for i in items],
        "item_type_name": [i.item_type_name for i in items],
        "labels": [json_text(list(i.labels)) for i in items],
        "assignees": [
            json_text([{"name": p.name, "account_id": p.account_id} for p in i.assignees])
            for i in items
        ],
        "fields": [json_text(i.custom_fields) for i in items],
    }


def sprint_pairs(items: Sequence[WorkItem]) -> list[tuple[str, Sprint]]:
    """(external_id, sprint) for every sprint the page's (clean) items are in."""
    return [(i.external_id, s) for i in items for s in i.sprints]


def history_pairs(items: Sequence[WorkItem]) -> list[tuple[str, HistoryEntry]]:
    """The history the page's (clean) items carry, as (external_id, entry)."""
    return [(i.external_id, e) for i in items for e in i.history]


def clean_history_page(
    entries: Mapping[str, Sequence[HistoryEntry]],
) -> tuple[list[tuple[str, HistoryEntry]], list[str]]:
    """A history page's entries, cleaned, as (external_id, entry); and why each bad one was left
    out (a connector passed junk through: the other entries still land)."""
    pairs: list[tuple[str, HistoryEntry]] = []
    problems: list[str] = []
    for external_id, found in entries.items():
        if not isinstance(external_id, str) or not external_id.strip():
            problems.append(f"{str(external_id)[:40]!r}: external_id is not text")
            continue
        for entry in found:
            problem = _wrong_history(entry)
            if problem is not None:
                problems.append(f"{external_id[:80]}: {problem}")
                continue
            pairs.append((external_id.replace("\x00", ""), clean_history(entry)))
    return pairs, problems


def history_columns(
    pairs: Sequence[tuple[str, HistoryEntry]], status_map: Mapping[str, Status]
) -> dict[str, list[Any]]:
    """History entries as parallel arrays, one per column, for `unnest`. With each status its
    default (`from_default`/`to_default`, schema 0014): the status itself when `status_map` (the
    map the connector read them with) does not name the value, else unknown."""
    return {
        "external_id": [x for x, _ in pairs],
        "change_id": [e.change_id for _, e in pairs],
        "field": [e.field for _, e in pairs],
        "changed_at": [e.changed_at for _, e in pairs],
        "from_value": [e.from_value for _, e in pairs],
        "to_value": [e.to_value for _, e in pairs],
        "from_status": [None if e.from_status is None else str(e.from_status) for _, e in pairs],
        "to_status": [None if e.to_status is None else str(e.to_status) for _, e in pairs],
        "actor_name": [e.actor_name for _, e in pairs],
        "actor_id": [e.actor_id for _, e in pairs],
        "from_default": [_default(e.from_value, e.from_status, status_map) for _, e in pairs],
        "to_default": [_default(e.to_value, e.to_status, status_map) for _, e in pairs],
    }


def named_by(value: str | None, status_map: Mapping[str, Status]) -> bool:
    """Whether the admin's `status_map` (keys case-folded) names this tracker status name, as
    `connectors.base.map_status` looks it up."""
    return value is not None and value.strip().casefold() in status_map


def _default(
    value: str | None, status: Status | None, status_map: Mapping[str, Status]
) -> str | None:
    if status is None or named_by(value, status_map):
        return None
    return str(status)

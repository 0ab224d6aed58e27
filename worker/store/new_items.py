"""A page's items that are not stored yet, written by COPY instead of the page upsert.

A first import creates every row it reads. Through the upsert each new row costs a lookup that
finds nothing, its values parsed out of parameter arrays and a speculative insertion (the
conflict check); COPY writes the same row for about half the server's CPU (docs/operations.md,
"Write path"). So a run that expects new rows (`worker.sync.write_pages`) first asks which of
the page's ids are stored (`probe`: one index lookup each, and the parents' ids, and the
transaction's `now()`), COPYs the others with the values the upsert would have given them
(`records`), and upserts only the stored ones. The rule for a new row's times is the upsert's
(store.sync `_STARTED`, `_COMPLETED`, `_TIME_BASIS`) read with no prior row;
tests/integration/test_new_items.py holds the two paths to the same rows.

A row another transaction inserts between the probe and the COPY fails the COPY (a unique
violation, which rolls the page back whole): the caller writes that page again through the
upsert alone.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from connectors.base import Status, WorkItem
from worker.sanitize import JsonText
from worker.store.changes import SYNCED_FIELDS, Change

# One index lookup per id (LIMIT: as in the upsert, never a scan the planner may choose over a
# table whose statistics, filling up, are stale)
_PROBE = """
SELECT now() AS now, array_agg(x.external_id) AS found, array_agg(w.id) AS ids
FROM unnest($2::text[]) AS x(external_id)
CROSS JOIN LATERAL (SELECT id FROM work_items
                    WHERE source = $1 AND external_id = x.external_id LIMIT 1) w
"""


@dataclass(frozen=True, slots=True)
class Probe:
    """What a page finds stored: the transaction's `now()` (the time every row it writes
    carries) and the ids of those of the asked external ids that are rows already."""

    now: datetime
    stored: Mapping[str, uuid.UUID]


async def probe(conn: asyncpg.Connection, source: str, external_ids: Sequence[str]) -> Probe:
    """Which of `external_ids` (a page's items and their parents) are stored. Inside the
    page's transaction (its `now()` is the page's)."""
    row = await conn.fetchrow(_PROBE, source, list(external_ids))
    assert row is not None  # (an aggregate without GROUP BY: always one row)
    return Probe(row["now"], dict(zip(row["found"] or (), row["ids"] or (), strict=True)))


# The columns a new row gets from the page; the others take their defaults, as the upsert
# leaves them (created_at, updated_at, out_of_scope_at).
COLUMNS = (
    "id", "team_id", "integration_id", "source", "external_id", "external_key", "title",
    "description", "acceptance_criteria", "status", "priority", "story_points", "external_url",
    "external_data", "source_updated_at", "started_at", "completed_at", "assigned_at",
    "removed_upstream_at", "sync_scope", "time_basis", "history_pending",
    "parent_external_id", "parent_id", "item_type", "item_type_name", "labels", "assignees",
    "fields",
)  # fmt: skip

_WORKING = (Status.IN_PROGRESS, Status.PR_READY)
# Where each of the change report's fields (SYNCED_FIELDS) stands in a record: a new row reports
# those it sets
_REPORTED = tuple((name, COLUMNS.index(name)) for name in SYNCED_FIELDS)


def new_ids(n: int) -> list[uuid.UUID]:
    """`n` random (version 4) UUIDs, as uuid4 makes them, from one read of the system's random
    source: uuid4 reads it once per id, and each read lets the thread that fetches the next page
    take the interpreter (a page's JSON decoding it then holds for milliseconds)."""
    raw = bytearray(os.urandom(16 * n))
    raw[6::16] = bytes(b & 0x0F | 0x40 for b in raw[6::16])  # version 4
    raw[8::16] = bytes(b & 0x3F | 0x80 for b in raw[8::16])  # RFC 4122 variant
    return [uuid.UUID(bytes=bytes(raw[k : k + 16])) for k in range(0, 16 * n, 16)]


def records(
    columns: Mapping[str, Sequence[Any]],
    items: Sequence[WorkItem],
    rows: Sequence[int],
    found: Probe,
    *,
    source: str,
    team_id: uuid.UUID,
    integration_id: uuid.UUID,
) -> tuple[list[tuple[Any, ...]], list[Change]]:
    """The COPY records (in COLUMNS' order) of the page's rows `rows` (indexes into its clean
    `items` and their JSON columns in `columns`, store.sync.ReadyPage), none of them stored,
    and the change each reports."""
    out: list[tuple[Any, ...]] = []
    changes: list[Change] = []
    now, stored = found.now, found.stored
    external_data, assignees, fields = (
        columns["external_data"], columns["assignees"], columns["fields"]
    )  # fmt: skip
    for n, work_item_id in zip(rows, new_ids(len(rows)), strict=True):
        i = items[n]
        status = i.status
        started = i.started_at or (now if status in _WORKING else None)
        completed = (i.completed_at or now) if status is Status.COMPLETED else None
        if started is None and completed is None:
            time_basis = None
        elif i.started_at is not None or i.completed_at is not None:
            time_basis = "tracker"
        else:
            time_basis = "observed"
        parent = i.parent_external_id
        removed = now if i.removed else None
        record = (
            work_item_id, team_id, integration_id, source, i.external_id, i.external_key,
            i.title, i.description, i.acceptance_criteria, status.value, i.priority,
            i.story_points, i.external_url, JsonText(external_data[n]), i.updated_at, started,
            completed, now, removed, i.scope, time_basis, bool(i.history_pending), parent,
            stored.get(parent) if parent and parent != i.external_id else None, i.item_type,
            i.item_type_name, list(i.labels), JsonText(assignees[n]), JsonText(fields[n]),
        )  # fmt: skip
        out.append(record)
        changes.append(
            Change(
                work_item_id=work_item_id,
                external_id=i.external_id,
                external_key=i.external_key,
                title=i.title,
                created=True,
                old_status=None,
                new_status=status.value,
                changed_fields=tuple(f for f, at in _REPORTED if record[at] is not None),
                old_completed_at=None,
                new_completed_at=completed,
                removed_now=i.removed,
                restored_now=False,
            )
        )
    return out, changes


async def copy(conn: asyncpg.Connection, records: Sequence[tuple[Any, ...]]) -> None:
    """COPY the records into work_items (binary; the column types asyncpg reads once per
    connection). Inside the page's transaction."""
    await conn.copy_records_to_table("work_items", records=records, columns=COLUMNS)

"""The writes of one sync run: the page upsert, its activity rows, the cursor and the run state.

A page is written in one statement (`unnest` of parallel arrays, then INSERT … ON CONFLICT … DO
UPDATE … WHERE … IS DISTINCT FROM …), its activity rows in a second, and the cursor in a third,
all inside the caller's transaction.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import asyncpg

from connectors.base import HistoryEntry, Rejected, Status, WorkItem
from worker import sanitize
from worker.store import history, model, new_items
from worker.store.changes import SYNCED_FIELDS, Change


# ---------------------------------------------------------------------------------------------
# Run state: cursor, last start, success, failure and backoff
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SyncState:
    cursor: dict[str, str]
    last_started_at: datetime | None
    last_success_at: datetime | None
    last_error_at: datetime | None
    consecutive_failures: int
    next_attempt_at: datetime | None
    runs_since_sweep: int
    config_digest: str | None = None  # of the config the last started run read
    # what the connector learnt online that mapping stored rows offline needs (0014, remap)
    mapping_context: dict[str, Any] | None = None
    rows_mapped_with: str | None = None  # digest of the status_map every row is mapped with
    # scopes whose first read reached the end of their listing (0020): what is new to the
    # others is logged by the transaction (`work_items_imported`), not by the item
    scopes_read: tuple[str, ...] = ()


async def get_state(conn: asyncpg.Connection, integration_id: uuid.UUID) -> SyncState:
    row = await conn.fetchrow(
        "SELECT cursor, last_started_at, last_success_at, last_error_at, consecutive_failures,"
        "       next_attempt_at,"
        "       runs_since_sweep, config_digest, mapping_context, rows_mapped_with, scopes_read"
        " FROM integration_sync_state WHERE integration_id = $1",
        integration_id,
    )
    return state_from_row(row)


#: integration_sync_state's columns that make a SyncState, in its order
STATE_COLUMNS = tuple(f.name for f in dataclasses.fields(SyncState))


def state_from_row(row: Mapping[str, Any] | None, prefix: str = "") -> SyncState:
    """The SyncState of a row holding STATE_COLUMNS (named `prefix` + column), or the state of
    an integration that has never run when there is none."""
    if row is None or row[f"{prefix}cursor"] is None:  # (the column is NOT NULL)
        return SyncState({}, None, None, None, 0, None, 0)
    state = {name: row[f"{prefix}{name}"] for name in STATE_COLUMNS}
    if isinstance(state["mapping_context"], str):
        state["mapping_context"] = json.loads(state["mapping_context"])
    state["scopes_read"] = tuple(state["scopes_read"])
    return SyncState(**state)


async def _save_column(
    conn: asyncpg.Connection,
    integration_id: uuid.UUID,
    column: Literal["rows_mapped_with", "mapping_context", "cursor", "scopes_read"],
    value: Any,
) -> None:
    """Sets one column of the integration's sync state, creating the row if it has none."""
    await conn.execute(
        f"INSERT INTO integration_sync_state (integration_id, {column}) VALUES ($1, $2)"
        f" ON CONFLICT (integration_id) DO UPDATE SET {column} = EXCLUDED.{column}",
        integration_id,
        value,
    )


async def save_rows_mapped_with(
    conn: asyncpg.Connection, integration_id: uuid.UUID, digest: str
) -> None:
    await _save_column(conn, integration_id, "rows_mapped_with", digest)


async def save_scopes_read(
    conn: asyncpg.Connection, integration_id: uuid.UUID, scopes: Collection[str]
) -> None:
    await _save_column(conn, integration_id, "scopes_read", sorted(scopes))


async def save_mapping_context(
    conn: asyncpg.Connection, integration_id: uuid.UUID, context: Mapping[str, Any]
) -> None:
    await _save_column(conn, integration_id, "mapping_context", sanitize.clean_json(dict(context)))


async def database_now(conn: asyncpg.Connection) -> datetime:
    """The database's clock: every "is it due" comparison is made against the times the database
    wrote (`last_started_at`, `next_attempt_at`, a sync-now's `at`), never the worker's clock."""
    now: datetime = await conn.fetchval("SELECT now()")
    return now


async def mark_started(
    conn: asyncpg.Connection, integration_id: uuid.UUID, run_id: uuid.UUID, config_digest: str
) -> None:
    await conn.execute(
        "INSERT INTO integration_sync_state"
        "       (integration_id, last_run_id, last_started_at, config_digest)"
        " VALUES ($1, $2, now(), $3)"
        " ON CONFLICT (integration_id) DO UPDATE"
        " SET last_run_id = EXCLUDED.last_run_id, last_started_at = EXCLUDED.last_started_at,"
        "     config_digest = EXCLUDED.config_digest",
        integration_id,
        run_id,
        config_digest,
    )


async def save_cursor(
    conn: asyncpg.Connection, integration_id: uuid.UUID, cursor: Mapping[str, str]
) -> None:
    await _save_column(conn, integration_id, "cursor", dict(cursor))


@dataclass(frozen=True, slots=True)
class QuietRuns:
    """Runs that changed nothing and wrote no row (worker/runlog.py): how many, first and last
    start. `due`: a quiet run's own row is due (none was written for the period)."""

    runs: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    due: bool = False

    def metadata(self) -> dict[str, Any]:
        if not self.runs:
            return {}
        assert self.first_at is not None and self.last_at is not None
        return {
            "quiet_runs": self.runs,
            "quiet_first_at": self.first_at.isoformat(),
            "quiet_last_at": self.last_at.isoformat(),
        }


# A quiet run ($4: its start) adds itself to the count, unless its row is due (no run row for
# $5 seconds): then the count goes into that row and starts again. Any other run ($4 NULL)
# takes the count into its own end row. The old values come from the row locked first. The
# seed's `integrations.last_sync` is set in the same statement (a WITH that writes runs whether
# or not the rest reads it).
_MARK_SUCCEEDED = """
WITH synced AS (
    UPDATE integrations SET last_sync = now() WHERE id = $1
), old AS (
    SELECT quiet_runs, quiet_first_at, quiet_last_at,
           $4::timestamptz IS NOT NULL
           AND (run_logged_at IS NULL OR run_logged_at <= now() - make_interval(secs => $5))
           AS due
    FROM integration_sync_state WHERE integration_id = $1 FOR UPDATE
), counted AS (
    SELECT old.*, $4::timestamptz IS NOT NULL AND NOT old.due AS adds FROM old
)
UPDATE integration_sync_state s
SET last_success_at = now(), consecutive_failures = 0, next_attempt_at = NULL,
    last_duration_s = $2,
    runs_since_sweep = CASE WHEN $3 THEN 0 ELSE s.runs_since_sweep + 1 END,
    quiet_runs = CASE WHEN c.adds THEN c.quiet_runs + 1 ELSE 0 END,
    quiet_first_at = CASE WHEN c.adds THEN COALESCE(c.quiet_first_at, $4) END,
    quiet_last_at = CASE WHEN c.adds THEN $4 END,
    run_logged_at = CASE WHEN c.adds THEN s.run_logged_at ELSE now() END
FROM counted c
WHERE s.integration_id = $1
RETURNING c.quiet_runs, c.quiet_first_at, c.quiet_last_at, c.due
"""


async def mark_succeeded(
    conn: asyncpg.Connection,
    integration_id: uuid.UUID,
    duration_s: float,
    swept: bool,
    *,
    quiet_start: datetime | None = None,
    quiet_row_every_s: float = 3600.0,
) -> QuietRuns:
    """Record a success. `quiet_start`: the run changed nothing (it started then). Returns the
    quiet runs the run's row must stand for: for a quiet run, itself and those before it when
    its row is due (else nothing: it was counted); for any other, those before it."""
    row = await conn.fetchrow(
        _MARK_SUCCEEDED, integration_id, duration_s, swept, quiet_start, quiet_row_every_s
    )
    if row is None:
        return QuietRuns()
    if quiet_start is None:
        return QuietRuns(row["quiet_runs"], row["quiet_first_at"], row["quiet_last_at"])
    if not row["due"]:
        return QuietRuns()
    return QuietRuns(row["quiet_runs"] + 1, row["quiet_first_at"] or quiet_start, quiet_start, True)


async def take_quiet_runs(conn: asyncpg.Connection, integration_id: uuid.UUID) -> QuietRuns:
    """The quiet runs counted so far, now that a run writes its end row (failed, interrupted):
    the row carries them, the count starts again."""
    row = await conn.fetchrow(
        "WITH old AS (SELECT quiet_runs, quiet_first_at, quiet_last_at"
        "   FROM integration_sync_state WHERE integration_id = $1 FOR UPDATE)"
        " UPDATE integration_sync_state s SET quiet_runs = 0, quiet_first_at = NULL,"
        "       quiet_last_at = NULL, run_logged_at = now()"
        " FROM old WHERE s.integration_id = $1"
        " RETURNING old.quiet_runs, old.quiet_first_at, old.quiet_last_at",
        integration_id,
    )
    if row is None:
        return QuietRuns()
    return QuietRuns(row["quiet_runs"], row["quiet_first_at"], row["quiet_last_at"])


async def mark_failed(
    conn: asyncpg.Connection,
    integration_id: uuid.UUID,
    *,
    error_class: str,
    error: str,
    duration_s: float,
    backoff_base_s: float,
    backoff_max_s: float,
    not_before_s: float = 0.0,
) -> int:
    """Record a failure and schedule the next attempt with capped exponential backoff, and not
    sooner than `not_before_s` (a tracker's Retry-After longer than a run may wait). Returns the
    number of consecutive failures."""
    failures: int = await conn.fetchval(
        "INSERT INTO integration_sync_state AS s (integration_id, last_error_at, last_error_class,"
        "       last_error, consecutive_failures, next_attempt_at, last_duration_s)"
        " VALUES ($1, now(), $2, $3, 1,"
        "         now() + make_interval(secs => GREATEST($7::float8, $4::float8)), $6)"
        " ON CONFLICT (integration_id) DO UPDATE SET"
        "   last_error_at = now(), last_error_class = $2, last_error = $3,"
        "   consecutive_failures = s.consecutive_failures + 1,"
        "   next_attempt_at = now() + make_interval(secs => GREATEST($7::float8,"
        "       LEAST($5::float8, $4::float8 * power(2, LEAST(s.consecutive_failures, 30))))),"
        "   last_duration_s = $6"
        " RETURNING consecutive_failures",
        integration_id,
        error_class,
        error,
        backoff_base_s,
        backoff_max_s,
        duration_s,
        not_before_s,
    )
    return failures


# ---------------------------------------------------------------------------------------------
# Work items
# ---------------------------------------------------------------------------------------------
@dataclass(slots=True)
class PageResult:
    changes: list[Change] = field(default_factory=list)
    unchanged: int = 0
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def created(self) -> int:
        return sum(1 for c in self.changes if c.created)

    @property
    def updated(self) -> int:
        return sum(1 for c in self.changes if not c.created)


# Written with every read but never reported as a change of the item.
_BOOKKEEPING = ("sync_scope", "time_basis", "history_pending", "parent_id", "integration_id")

# How a row's times follow a (re)mapped item `i` and the row before it `p` (`timed`), and where
# they came from (`final`, over `timed t`): one rule for the page upsert and the remap.
# Times derived from the tracker's history stay until history says otherwise
# (store.history.derive_times, after the statement); else the tracker's own start time; else the
# first sync that sees work start.
_STARTED = """COALESCE(CASE WHEN p.time_basis = 'history' THEN p.started_at END, i.started_at,
                 p.started_at,
                 CASE WHEN i.status IN ('in_progress', 'pr_ready') THEN now() END)"""
# Only completed items have a completion time (a reopened item loses it; cancelled items are not
# completions). History's time, the tracker's, else the first sync that saw it.
_COMPLETED = """CASE WHEN i.status = 'completed' THEN
            COALESCE(CASE WHEN p.time_basis = 'history' AND p.status = 'completed'
                          THEN p.completed_at END,
                     i.completed_at,
                     CASE WHEN p.status = 'completed' THEN p.completed_at END, now())
        END"""
_TIME_BASIS = """CASE WHEN t.started IS NULL AND t.completed IS NULL THEN NULL
             WHEN (t.prior).time_basis = 'history' THEN 'history'
             WHEN t.started_at IS NOT NULL OR t.completed_at IS NOT NULL THEN 'tracker'
             ELSE 'observed'
        END"""


def _would_write(old: str, new: Callable[[str], str]) -> str:
    """When a read item rewrites its stored row `old` with the values `new(column)`: a field a
    sync writes differs, or the row is out of scope (read again: in scope again, and the scope
    (0006) and time basis (0011) of a row synced before those migrations are filled in;
    integration_id: another integration of the same team reading the item takes it, as one of
    another team does through team_id, so that their overlap is seen and reported); and the read
    copy is not older. An older copy (overlap re-read, a lagging page) never overwrites a newer
    one; but a stored time from the future was stamped by a tracker clock running ahead, and once
    that clock is set right every later edit looks "older": the stamp cannot order those."""
    columns = (*SYNCED_FIELDS, *_BOOKKEEPING)
    return f"""({", ".join(f"{old}.{c}" for c in columns)}, {old}.out_of_scope_at)
          IS DISTINCT FROM ({", ".join(new(c) for c in columns)}, NULL::timestamptz)
      AND ({old}.source_updated_at IS NULL
           OR {new("source_updated_at")} >= {old}.source_updated_at
           OR {old}.source_updated_at > now() + interval '5 minutes')"""


_UPSERT = f"""
WITH incoming AS (
    SELECT * FROM unnest(
        {", ".join(f"${n}::{kind}[]" for n, (_, kind) in enumerate(sanitize.PAGE_COLUMNS, 4))}
    ) AS t({", ".join(name for name, _ in sanitize.PAGE_COLUMNS)})
),
timed AS (
    SELECT
        i.*,
        {_STARTED} AS started,
        {_COMPLETED} AS completed,
        p AS prior
    FROM incoming i
    -- one index lookup per row read (LIMIT: never flattened into a join that the planner may
    -- hash over every row of the source, on a first import's stale statistics)
    LEFT JOIN LATERAL (SELECT * FROM work_items p
                       WHERE p.source = $1 AND p.external_id = i.external_id LIMIT 1) p ON true
),
final AS (
    SELECT
        t.external_id, t.external_key, t.title, t.description, t.acceptance_criteria, t.status,
        t.priority, t.story_points, t.external_url, t.external_data::jsonb AS external_data,
        t.source_updated_at,
        t.sync_scope,
        -- the same version read again (the overlap) keeps its flag once it has history: what
        -- was read is not asked for again, what is pending is not forgotten; a row without any
        -- (synced before history was read) takes the connector's word
        CASE WHEN (t.prior).source_updated_at = t.source_updated_at
                  AND EXISTS (SELECT 1 FROM work_item_history h
                              WHERE h.work_item_id = (t.prior).id)
             THEN (t.prior).history_pending ELSE t.history_pending END AS history_pending,
        t.started AS started_at, t.completed AS completed_at,
        t.parent_external_id, t.item_type, t.item_type_name, t.assignees::jsonb AS assignees,
        t.fields::jsonb AS fields,
        ARRAY(SELECT jsonb_array_elements_text(t.labels::jsonb)) AS labels,
        -- the parent when it is synced already (else linked when it arrives: model.LINK_CHILDREN)
        (SELECT pw.id FROM work_items pw
         WHERE pw.source = $1 AND pw.external_id = t.parent_external_id
           AND t.parent_external_id <> t.external_id) AS parent_id,
        {_TIME_BASIS} AS time_basis,
        COALESCE((t.prior).assigned_at, now()) AS assigned_at,
        CASE WHEN t.removed THEN COALESCE((t.prior).removed_upstream_at, now())
        END AS removed_upstream_at,
        $2::uuid AS team_id,
        t.prior
    FROM timed t
),
written AS (
    INSERT INTO work_items AS w (
        team_id, integration_id, source, external_id, external_key, title, description,
        acceptance_criteria, status, priority, story_points, external_url, external_data,
        source_updated_at, started_at, completed_at, assigned_at, removed_upstream_at,
        sync_scope, time_basis, history_pending, parent_external_id, parent_id, item_type,
        item_type_name, labels, assignees, fields)
    SELECT $2, $3, $1, external_id, external_key, title, description, acceptance_criteria,
           status, priority, story_points, external_url, external_data, source_updated_at,
           started_at, completed_at, assigned_at, removed_upstream_at, sync_scope, time_basis,
           history_pending, parent_external_id, parent_id, item_type, item_type_name, labels,
           assignees, fields
    FROM final f
    -- only the rows the DO UPDATE below would write (its WHERE, on the row read before): a row
    -- that reaches ON CONFLICT is locked even when that WHERE then skips it, and a lock is a
    -- write (a transaction id, WAL, a commit flushed) for every unchanged item re-read
    WHERE (f.prior).id IS NULL
       OR ({_would_write("(f.prior)", lambda c: "$3::uuid" if c == "integration_id" else f"f.{c}")})
    ON CONFLICT (source, external_id) DO UPDATE SET
        team_id = EXCLUDED.team_id, integration_id = EXCLUDED.integration_id,
        external_key = EXCLUDED.external_key, title = EXCLUDED.title,
        description = EXCLUDED.description, acceptance_criteria = EXCLUDED.acceptance_criteria,
        status = EXCLUDED.status, priority = EXCLUDED.priority,
        story_points = EXCLUDED.story_points, external_url = EXCLUDED.external_url,
        external_data = EXCLUDED.external_data, source_updated_at = EXCLUDED.source_updated_at,
        started_at = EXCLUDED.started_at, completed_at = EXCLUDED.completed_at,
        assigned_at = EXCLUDED.assigned_at, removed_upstream_at = EXCLUDED.removed_upstream_at,
        sync_scope = EXCLUDED.sync_scope, time_basis = EXCLUDED.time_basis,
        history_pending = EXCLUDED.history_pending,
        parent_external_id = EXCLUDED.parent_external_id, parent_id = EXCLUDED.parent_id,
        item_type = EXCLUDED.item_type, item_type_name = EXCLUDED.item_type_name,
        labels = EXCLUDED.labels, assignees = EXCLUDED.assignees, fields = EXCLUDED.fields,
        out_of_scope_at = NULL
    -- (when this copy rewrites the row: _would_write)
    WHERE {_would_write("w", lambda c: f"EXCLUDED.{c}")}
    RETURNING w.id, w.external_id, w.external_key, w.title, w.status, w.completed_at,
              w.removed_upstream_at
)
SELECT wr.id, wr.external_id, wr.external_key, wr.title, wr.status AS new_status,
       wr.completed_at AS new_completed_at, (f.prior).id IS NULL AS created,
       (f.prior).status AS old_status, (f.prior).completed_at AS old_completed_at,
       -- set now: on an existing row, or on a row created already removed (a tracker that
       -- still serves its deleted items showed this one first after its deletion)
       (wr.removed_upstream_at IS NOT NULL AND (f.prior).removed_upstream_at IS NULL)
           AS removed_now,
       (wr.removed_upstream_at IS NULL AND (f.prior).removed_upstream_at IS NOT NULL)
           AS restored_now,
       (f.prior).out_of_scope_at IS NOT NULL AS back_in_scope,
       -- taken from another active integration that holds the very same version: two
       -- integrations cover this item, and each run would take it back
       CASE WHEN (f.prior).source_updated_at = f.source_updated_at
                 AND EXISTS (SELECT 1 FROM integrations oi
                             WHERE oi.id = (f.prior).integration_id AND oi.id <> $3
                               AND oi.is_active)
            THEN (f.prior).integration_id END AS contested_with,
       array_remove(ARRAY[{
    ", ".join(
        f"CASE WHEN (f.prior).{c} IS DISTINCT FROM f.{c} THEN '{c}' END" for c in SYNCED_FIELDS
    )
},
       -- moved between two integrations of one team (between teams, team_id says it)
       CASE WHEN (f.prior).integration_id <> $3 AND (f.prior).team_id = $2
            THEN 'integration_id' END], NULL) AS changed_fields
FROM written wr JOIN final f USING (external_id)
"""  # column names are this module's constants; every value is a parameter


@dataclass(frozen=True, slots=True)
class ReadyPage:
    """A page made safe to write (`sanitize`): its clean items (one per id), their columns as
    the upsert's parallel arrays, and the items refused."""

    items: list[WorkItem]
    columns: dict[str, list[Any]]
    rejected: list[Rejected]


def ready_page(items: Sequence[WorkItem]) -> ReadyPage:
    """The worker's CPU share of a page's write, apart from the statement: a run does it while
    the previous pages commit (worker.sync, reading ahead)."""
    clean, rejected = sanitize.prepare_page(items)
    return ReadyPage(clean, sanitize.columns(clean), rejected)


def join_ready(pages: Sequence[ReadyPage]) -> ReadyPage:
    """Pages made ready one by one, as `ready_page` makes their items together: one item per
    id (`sanitize.newest_per_id`), with its columns."""
    kept = sanitize.newest_per_id(
        (item, (page, n)) for page in pages for n, item in enumerate(page.items)
    )
    return ReadyPage(
        [page.items[n] for page, n in kept],
        {name: [page.columns[name][n] for page, n in kept] for name in pages[0].columns},
        [rejected for page in pages for rejected in page.rejected],
    )


async def upsert_items(
    conn: asyncpg.Connection,
    *,
    source: str,
    team_id: uuid.UUID,
    integration_id: uuid.UUID,
    items: Sequence[WorkItem] | ReadyPage,
    status_map: Mapping[str, Status] | None = None,
    sent: Callable[[], None] | None = None,
    probe_new: bool = False,
) -> PageResult:
    """Write one page (its items, or the page `ready_page` made of them); return what changed.
    Must run inside the caller's transaction. `status_map`: the one the connector mapped the
    items' history with (its defaults, 0014). `sent`: called as the rows' statement is sent
    (what the caller does meanwhile runs while PostgreSQL writes them). `probe_new`: the page's
    items are likely new (a first import): those that are go in by COPY (`new_items`), the
    others through the upsert; a concurrent insert of one of them raises UniqueViolationError
    (the caller writes the page again without the probe)."""
    page = items if isinstance(items, ReadyPage) else ready_page(items)
    clean = page.items
    result = PageResult(rejected=list(page.rejected))
    if not clean:
        return result
    columns = page.columns
    if probe_new:
        ids = columns["external_id"]
        parents = {i.parent_external_id for i in clean if i.parent_external_id} - set(ids)
        found = await new_items.probe(conn, source, [*ids, *parents])
        new = [n for n, x in enumerate(ids) if x not in found.stored]
        if new:
            records, result.changes = new_items.records(
                columns, clean, new, found,
                source=source, team_id=team_id, integration_id=integration_id,
            )  # fmt: skip
            if sent is not None:
                sent()
                sent = None
            await new_items.copy(conn, records)
            stored = [n for n, x in enumerate(ids) if x in found.stored]
            columns = {name: [values[n] for n in stored] for name, values in columns.items()}
    rows = []
    if columns["external_id"]:
        if sent is not None:
            sent()  # (its effect comes at the fetch's first await: the rows are on their way)
        rows = await conn.fetch(_UPSERT, source, team_id, integration_id, *columns.values())
    for r in rows:
        result.changes.append(
            Change(
                work_item_id=r["id"],
                external_id=r["external_id"],
                external_key=r["external_key"],
                title=r["title"],
                created=r["created"],
                old_status=r["old_status"],
                new_status=r["new_status"],
                changed_fields=tuple(r["changed_fields"]),
                old_completed_at=r["old_completed_at"],
                new_completed_at=r["new_completed_at"],
                removed_now=r["removed_now"],
                restored_now=r["restored_now"],
                contested_with=r["contested_with"],
                back_in_scope=r["back_in_scope"],
            )
        )
    written = {c.external_id for c in result.changes}  # (COPY'd and upserted: every row)
    pairs = [(x, s) for x, s in sanitize.sprint_pairs(clean) if x in written]
    # A row created now has no membership to end: only one in a sprint has any to write.
    members = {r["external_id"] for r in rows if not r["created"]} | {x for x, _ in pairs}
    gained = await _after_rows(conn, source, [i.external_id for i in clean])
    await model.set_sprints(
        conn,
        source=source,
        team_id=team_id,
        integration_id=integration_id,
        items=[i.external_id for i in clean if i.external_id in members],
        pairs=pairs,
    )
    recorded = await history.record(
        conn, source, sanitize.history_columns(sanitize.history_pairs(clean), status_map or {})
    )
    await _derive(conn, [*gained, *recorded.gained], result)
    # A row rewritten only to fill in its scope (synced before 0006) did not change for anyone.
    result.changes = [c for c in result.changes if c.created or c.changed_fields or c.back_in_scope]
    result.unchanged = len(clean) - len(result.changes)
    return result


# What follows a page's rows, in one statement (one round trip): children synced before these
# items link to them, and their changes read before they were synced join their history.
_AFTER_ROWS = f"""
WITH linked AS ({model.LINK_CHILDREN} RETURNING 1),
{history.ADOPT_CTES}
SELECT DISTINCT work_item_id FROM stored
"""


async def _after_rows(
    conn: asyncpg.Connection, source: str, external_ids: Sequence[str]
) -> list[uuid.UUID]:
    """Link the children waiting for these (just written) items and adopt their waiting
    history; the items that gained history."""
    rows = await conn.fetch(_AFTER_ROWS, source, list(external_ids))
    return [r["work_item_id"] for r in rows]


async def record_history(
    conn: asyncpg.Connection,
    source: str,
    integration_id: uuid.UUID,
    pairs: Sequence[tuple[str, HistoryEntry]],
    status_map: Mapping[str, Status] | None = None,
    read: Sequence[str] = (),
) -> tuple[PageResult, history.Recorded]:
    """A history page (clean entries by external id): stored, items not synced yet keep theirs
    waiting, times re-derived, the items `read` whole no longer pending (in the same write);
    what changed, as a page's changes. Inside the caller's transaction."""
    result = PageResult()
    recorded = await history.record(
        conn, source, sanitize.history_columns(pairs, status_map or {}), orphans_of=integration_id
    )
    await _derive(conn, recorded.gained, result, source, read)
    return result, recorded


# ---------------------------------------------------------------------------------------------
# Remap (`c9-sync remap`): rows mapped again from their own external_data, no tracker call
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Remapped:
    """A stored row mapped again: its id and the columns a remap re-derives (the times are the
    tracker's own, as a connector maps them; the row's are then derived as a sync derives
    them)."""

    work_item_id: uuid.UUID
    status: Status
    priority: int
    story_points: int | None
    started_at: datetime | None
    completed_at: datetime | None


REMAPPED_FIELDS = ("status", "priority", "story_points", "started_at", "completed_at")

_REMAP = f"""
WITH incoming AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::int[], $5::timestamptz[],
                         $6::timestamptz[])
        AS i(id, status, priority, story_points, started_at, completed_at)
),
timed AS (
    SELECT i.*, {_STARTED} AS started, {_COMPLETED} AS completed, p AS prior
    FROM incoming i JOIN work_items p ON p.id = i.id
),
final AS (
    SELECT t.id, t.status, t.priority, t.story_points, t.started AS new_started,
           t.completed AS new_completed, {_TIME_BASIS} AS time_basis, t.prior
    FROM timed t
)
UPDATE work_items w
SET status = f.status, priority = f.priority, story_points = f.story_points,
    started_at = f.new_started, completed_at = f.new_completed, time_basis = f.time_basis
FROM final f
WHERE w.id = f.id
  AND (w.status, w.priority, w.story_points, w.started_at, w.completed_at, w.time_basis)
      IS DISTINCT FROM
      (f.status, f.priority, f.story_points, f.new_started, f.new_completed, f.time_basis)
RETURNING w.id, w.external_id, w.external_key, w.title, (f.prior).status AS old_status,
          w.status AS new_status, (f.prior).completed_at AS old_completed_at,
          w.completed_at AS new_completed_at,
          array_remove(ARRAY[{
    ", ".join(
        f"CASE WHEN (f.prior).{c} IS DISTINCT FROM w.{c} THEN '{c}' END" for c in REMAPPED_FIELDS
    )
}], NULL) AS changed_fields
"""  # column names are this module's constants; every value is a parameter


async def remap_items(conn: asyncpg.Connection, items: Sequence[Remapped]) -> PageResult:
    """Write the re-derived columns of rows mapped again, then derive their times from their
    history (as a history page does); what changed, as a page's changes. Inside the caller's
    transaction."""
    result = PageResult()
    if not items:
        return result
    rows = await conn.fetch(
        _REMAP,
        [i.work_item_id for i in items],
        [str(i.status) for i in items],
        [i.priority for i in items],
        [i.story_points for i in items],
        [i.started_at for i in items],
        [i.completed_at for i in items],
    )
    for r in rows:
        result.changes.append(
            _updated(r, r["old_status"], r["new_status"], tuple(r["changed_fields"]))
        )
    await _derive(conn, [i.work_item_id for i in items], result)
    result.changes = [c for c in result.changes if c.changed_fields]  # (time_basis only)
    result.unchanged = len(items) - len(result.changes)
    return result


async def stored_items(
    conn: asyncpg.Connection, integration_id: uuid.UUID, after: uuid.UUID | None, limit: int
) -> list[asyncpg.Record]:
    """The next `limit` rows of an integration (by id, after `after`) with what a remap maps."""
    return await conn.fetch(
        "SELECT id, external_id, external_key, external_data, sync_scope FROM work_items"
        " WHERE integration_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
        integration_id,
        after,
        limit,
    )


def _updated(
    r: asyncpg.Record, old_status: str, new_status: str, changed_fields: tuple[str, ...]
) -> Change:
    """The change of a row that was there before and still is (a remap's, or times re-derived
    from history): `r` names the item and its completion before and after."""
    return Change(
        work_item_id=r["id"],
        external_id=r["external_id"],
        external_key=r["external_key"],
        title=r["title"],
        created=False,
        old_status=old_status,
        new_status=new_status,
        changed_fields=changed_fields,
        old_completed_at=r["old_completed_at"],
        new_completed_at=r["new_completed_at"],
        removed_now=False,
        restored_now=False,
    )


async def _derive(
    conn: asyncpg.Connection,
    gained: Sequence[uuid.UUID],
    result: PageResult,
    source: str = "",
    read: Sequence[str] = (),
) -> None:
    """Re-derive the times of the items that gained history (clearing the pending flag of those
    `read` whole, in the same write) and fold what that changed into the page's changes (one
    change per item)."""
    if not gained and not read:
        return
    by_id = {c.work_item_id: n for n, c in enumerate(result.changes)}
    for r in await history.derive_times(conn, sorted(set(gained)), source, read):
        fields = tuple(
            name for name in ("started_at", "completed_at") if r[f"old_{name}"] != r[f"new_{name}"]
        )
        n = by_id.get(r["id"])
        if n is not None:
            change = result.changes[n]
            result.changes[n] = replace(
                change,
                changed_fields=tuple(dict.fromkeys((*change.changed_fields, *fields))),
                new_completed_at=r["new_completed_at"],
            )
            continue
        result.changes.append(_updated(r, r["status"], r["status"], fields))


# The scopes an integration's rows are in, found one index probe each (a skip scan over
# work_items_scope_changed, 0019), and those of them the config ($2) no longer covers: every run
# asks, and reading its rows to learn that the config still covers them all cost a run in
# proportion to the rows it holds.
_SCOPES_LEFT = """
WITH RECURSIVE present(scope) AS (
    (SELECT sync_scope FROM work_items
     WHERE integration_id = $1 AND out_of_scope_at IS NULL AND sync_scope IS NOT NULL
     ORDER BY sync_scope LIMIT 1)
    UNION ALL
    SELECT (SELECT w.sync_scope FROM work_items w
            WHERE w.integration_id = $1 AND w.out_of_scope_at IS NULL AND w.sync_scope > p.scope
            ORDER BY w.sync_scope LIMIT 1)
    FROM present p WHERE p.scope IS NOT NULL
),
left_scopes AS (
    SELECT scope FROM present WHERE scope IS NOT NULL AND NOT (scope = ANY($2::text[]))
)
"""


async def scopes_left(
    conn: asyncpg.Connection, integration_id: uuid.UUID, scopes: Collection[str]
) -> bool:
    """Whether `mark_out_of_scope` has any row to mark (one read, no lock, no write)."""
    found: bool = await conn.fetchval(
        _SCOPES_LEFT + "SELECT EXISTS (SELECT 1 FROM left_scopes l JOIN work_items w"
        "   ON w.integration_id = $1 AND w.sync_scope = l.scope AND w.out_of_scope_at IS NULL"
        "   WHERE w.removed_upstream_at IS NULL)",
        integration_id,
        list(scopes),
    )
    return found


async def mark_out_of_scope(
    conn: asyncpg.Connection, integration_id: uuid.UUID, scopes: Collection[str]
) -> list[asyncpg.Record]:
    """Mark this integration's rows whose scope its config no longer covers (never a row whose
    scope is unknown, nor one already marked removed upstream: gone is the stronger fact, and
    nothing would clear the mark once the scope is configured again). Cleared by the upsert when
    a sync reads the item again."""
    return await conn.fetch(
        _SCOPES_LEFT + "UPDATE work_items SET out_of_scope_at = now()"
        " WHERE integration_id = $1 AND out_of_scope_at IS NULL AND removed_upstream_at IS NULL"
        "   AND sync_scope IN (SELECT scope FROM left_scopes)"
        " RETURNING id, external_id, external_key, sync_scope, completed_at",
        integration_id,
        list(scopes),
    )


async def forget_cursor(
    conn: asyncpg.Connection, integration_id: uuid.UUID, scope: str | None
) -> None:
    """Drop one scope's high-water mark (all of them when `scope` is None): the next run reads
    that scope in full. Items are kept; re-reading them changes only what differs."""
    await conn.execute(
        "UPDATE integration_sync_state"
        " SET cursor = CASE WHEN $2::text IS NULL THEN '{}'::jsonb ELSE cursor - $2::text END"
        " WHERE integration_id = $1",
        integration_id,
        scope,
    )


_COVERED = """
   AND (out_of_scope_at IS NULL OR sync_scope = ANY($4::text[]))"""  # out, but configured again
_SPARED = """
   AND NOT (sync_scope = ANY($3::text[]))
   AND (cardinality($3::text[]) = 0 OR sync_scope IS NOT NULL)"""  # unknown scope: maybe spared


async def missing_upstream(
    conn: asyncpg.Connection,
    integration_id: uuid.UUID,
    present_ids: Collection[str],
    spared: Collection[str] = (),
    listed: Collection[str] = (),
) -> list[str]:
    """This integration's unmarked rows whose ids a listing lacks (what a sweep would mark).
    Rows of `spared` scopes (the credential lost them) are never counted, nor rows of unknown
    scope while any scope is spared. A row marked out of scope counts when its scope is `listed`
    again (the config covers it again; an item not listed there is gone)."""
    rows = await conn.fetch(
        "SELECT external_id FROM work_items"
        " WHERE integration_id = $1 AND removed_upstream_at IS NULL"
        + _COVERED
        + "   AND NOT (external_id = ANY($2::text[]))"
        + _SPARED,
        integration_id,
        list(present_ids),
        list(spared),
        list(listed),
    )
    return [r["external_id"] for r in rows]


async def mark_missing_upstream(
    conn: asyncpg.Connection,
    integration_id: uuid.UUID,
    present_ids: Collection[str],
    spared: Collection[str] = (),
    listed: Collection[str] = (),
) -> list[asyncpg.Record]:
    """Mark (never delete) this integration's rows whose ids are no longer upstream, `spared`
    scopes aside (as `missing_upstream`); a row out of scope whose scope is `listed` again is
    marked removed and in scope."""
    return await conn.fetch(
        "UPDATE work_items SET removed_upstream_at = now(), out_of_scope_at = NULL"
        " WHERE integration_id = $1 AND removed_upstream_at IS NULL"
        + _COVERED
        + "   AND NOT (external_id = ANY($2::text[]))"
        + _SPARED
        + " RETURNING id, team_id, external_id, external_key, title, completed_at",
        integration_id,
        list(present_ids),
        list(spared),
        list(listed),
    )


async def unmark_present(
    conn: asyncpg.Connection, integration_id: uuid.UUID, present_ids: Collection[str]
) -> list[asyncpg.Record]:
    """Clear the mark of this integration's rows that are listed upstream again: an item
    restored from the trash, or one a listing that shifted under a deletion had left out."""
    return await conn.fetch(
        "UPDATE work_items SET removed_upstream_at = NULL"
        " WHERE integration_id = $1 AND removed_upstream_at IS NOT NULL"
        "   AND external_id = ANY($2::text[])"
        " RETURNING id, team_id, external_id, external_key, title, completed_at",
        integration_id,
        list(present_ids),
    )


# ---------------------------------------------------------------------------------------------
# Activity log
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Activity:
    event_type: str
    message: str
    metadata: Mapping[str, Any]
    work_item_id: uuid.UUID | None = None
    at: datetime | None = None  # created_at; None: the transaction's time (now())


async def log_activities(
    conn: asyncpg.Connection | asyncpg.Pool, team_id: uuid.UUID, activities: Sequence[Activity]
) -> None:
    if not activities:
        return
    await conn.execute(
        "INSERT INTO activity_logs (team_id, work_item_id, event_type, message, metadata,"
        "       created_at)"
        " SELECT $1, w, e, m, d::jsonb, COALESCE(c, now())"
        " FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])"
        "   AS t(w, e, m, d, c)",
        team_id,
        [a.work_item_id for a in activities],
        [a.event_type for a in activities],
        [sanitize.clean_text(a.message) for a in activities],
        [sanitize.json_text(a.metadata) for a in activities],
        [a.at for a in activities],
    )


#: where a run's activity rows go (`RunLog.write`: its opening row first); `team_writer` when
#: no run is writing them
ActivityWriter = Callable[[asyncpg.Connection, Sequence[Activity]], Awaitable[None]]


def team_writer(team_id: uuid.UUID) -> ActivityWriter:
    async def write(conn: asyncpg.Connection, activities: Sequence[Activity]) -> None:
        await log_activities(conn, team_id, activities)

    return write


async def log_opening_once(conn: asyncpg.Connection, team_id: uuid.UUID, opening: Activity) -> None:
    """A run's `sync_started` row unless it is there (its time and run_id find it at once)."""
    await conn.execute(
        "INSERT INTO activity_logs (team_id, event_type, message, metadata, created_at)"
        " SELECT $1, $2::text, $3, $4::jsonb, $5::timestamptz"
        " WHERE NOT EXISTS (SELECT 1 FROM activity_logs"
        "   WHERE created_at = $5 AND event_type = $2"
        "     AND metadata->>'run_id' = $4::jsonb->>'run_id')",
        team_id,
        opening.event_type,
        sanitize.clean_text(opening.message),
        sanitize.clean_json(dict(opening.metadata)),
        opening.at,
    )


# The same warning of an integration is kept once a day: a field that stays unresolved would
# otherwise add a row to every run.
_WARNINGS = """
INSERT INTO activity_logs (team_id, event_type, message, metadata)
SELECT $1, 'sync_warning', w.message, $4::jsonb || jsonb_build_object('code', w.code)
FROM unnest($2::text[], $3::text[]) AS w(code, message)
WHERE NOT EXISTS (
    SELECT 1 FROM activity_logs a
    WHERE a.team_id = $1 AND a.created_at > now() - interval '1 day'
      AND a.event_type = 'sync_warning' AND a.message = w.message
      AND a.metadata->>'integration_id' = $4::jsonb->>'integration_id'
)
"""


async def log_warnings(
    conn: asyncpg.Connection,
    team_id: uuid.UUID,
    warnings: Sequence[tuple[str, str]],
    fields: Mapping[str, Any],
) -> int:
    """`sync_warning` rows for a connector's (code, message) pairs not recorded in a day;
    returns how many were written."""
    status: str = await conn.execute(
        _WARNINGS,
        team_id,
        [code for code, _ in warnings],
        [sanitize.clean_text(message) for _, message in warnings],
        sanitize.clean_json(dict(fields)),
    )
    return int(status.rsplit(" ", 1)[1])


def cursor_to_json(cursor: Mapping[str, datetime]) -> dict[str, str]:
    return {scope: at.isoformat() for scope, at in cursor.items()}


def cursor_from_json(raw: Mapping[str, Any] | str | None) -> dict[str, datetime]:
    data = json.loads(raw) if isinstance(raw, str) else raw
    out: dict[str, datetime] = {}
    for scope, value in (data or {}).items():
        try:
            out[str(scope)] = datetime.fromisoformat(str(value))
        except ValueError:
            continue  # a hand-edited, unreadable mark: that scope is read in full again
    return out

"""Azure DevOps history: each project's reporting revisions feed
(docs/trackers/azure_devops.md#history).

`GET {org}/{project}/_apis/wit/reporting/workitemrevisions` walks every revision of a project in
the order they were saved, a batch at a time, each batch ending with a continuation token (the
watermark); after the last batch that token reads only revisions saved since. One feed per
project: its token is the checkpoint of every scope (work item type) of the project.

A change is found by comparing consecutive revisions of one item: revision 1 gives the values at
creation (`from_value` None), each later one the fields that differ from the revision before it.
The revision before the first one a run reads of an item was read by an earlier run: its values
come from one `workItemsBatch` with `asOf` = the time the feed had read up to (carried in the
checkpoint with the token), for up to 200 such items a request, instead of one request per item.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from connectors.base import HistoryEntry, HistoryPage, Status
from connectors.http import log_event, parse_time

log = logging.getLogger(__name__)

LOOK_BACK_CAP = 200  # ids per workItemsBatch (VS403474)
# Field reference names (the connector's item fields are the same names).
F_ID = "System.Id"
F_REV = "System.Rev"
F_STATE = "System.State"
F_CHANGED = "System.ChangedDate"
F_TYPE = "System.WorkItemType"
F_PROJECT = "System.TeamProject"
F_PRIORITY = "Microsoft.VSTS.Common.Priority"
F_STORY_POINTS = "Microsoft.VSTS.Scheduling.StoryPoints"
F_EFFORT = "Microsoft.VSTS.Scheduling.Effort"
F_SIZE = "Microsoft.VSTS.Scheduling.Size"
F_CHANGED_BY = "System.ChangedBy"
F_ASSIGNED = "System.AssignedTo"
F_PARENT = "System.Parent"
F_ITERATION = "System.IterationPath"
F_AREA = "System.AreaPath"
POINTS_FIELDS = (F_STORY_POINTS, F_EFFORT, F_SIZE)
#: What history needs of a revision, and nothing more (a revision carries every field).
HISTORY_FIELDS_READ = (
    F_ID,
    F_REV,
    F_STATE,
    F_CHANGED,
    F_CHANGED_BY,
    F_ASSIGNED,
    F_PARENT,
    F_ITERATION,
    F_PRIORITY,
    *POINTS_FIELDS,
    F_TYPE,
    F_AREA,
    F_PROJECT,
)
#: Fields a feed cannot do without: an organization lacking one is an error, not a field to drop.
NEEDED = frozenset({F_ID, F_REV, F_STATE, F_CHANGED, F_TYPE, F_PROJECT})


# ---------------------------------------------------------------------------------------------
# Pure helpers (unit-tested without a server)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Mark:
    """A feed's checkpoint: the service's continuation token and the newest ChangedDate read up
    to it (what `asOf` needs to see an item as the previous run last read it). Stored as
    "<ISO time> <token>"; the service's tokens ("813;350;1") hold no space."""

    token: str | None = None
    through: datetime | None = None

    def __str__(self) -> str:
        token = self.token or ""
        return f"{self.through.isoformat()} {token}" if self.through is not None else token

    @classmethod
    def parse(cls, text: str | None) -> Mark:
        if not text:
            return cls()
        time_text, space, token = text.partition(" ")
        through = parse_time(time_text) if space else None
        if through is None:  # a bare token (no time known yet)
            return cls(text.strip() or None, None)
        return cls(token or None, through)


def is_email(text: str) -> bool:
    return "@" in text


def person(value: Any) -> tuple[str | None, str | None]:
    """An identity field as (name, account id), never an e-mail address: an IdentityRef's
    displayName (or the name part of a "Name <unique name>" uniqueName) and id; the text form
    older servers send ("Name <unique name>") gives the name only."""
    if isinstance(value, Mapping):
        name = _name_of(value.get("displayName")) or _name_of(value.get("uniqueName"))
        ident = value.get("id")
        return name, str(ident) if isinstance(ident, str) and ident else None
    return _name_of(value), None


def _name_of(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith(">") and "<" in text:  # "Name <unique name>"
        text = text[: text.rindex("<")].strip()
    return text if text and not is_email(text) else None


def _number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return f"{value:g}"


def tracked(fields: Mapping[str, Any], site: str) -> dict[str, str | None]:
    """The history fields of one revision as text (None: empty)."""
    assignee = fields.get(F_ASSIGNED)
    name, ident = person(assignee) if assignee else (None, None)
    parent = fields.get(F_PARENT)
    points = next(
        (_number(fields.get(f)) for f in POINTS_FIELDS if fields.get(f) is not None), None
    )
    state, sprint = fields.get(F_STATE), fields.get(F_ITERATION)
    return {
        "status": state if isinstance(state, str) and state else None,
        "assignee": name or ident,
        "parent": f"{site}/{int(parent)}" if isinstance(parent, int) and parent > 0 else None,
        # the project's root iteration is no sprint
        "sprint": sprint if isinstance(sprint, str) and "\\" in sprint.strip("\\") else None,
        "priority": _number(fields.get(F_PRIORITY)),
        "story_points": points,
    }


def in_scope(
    work_item_types: Sequence[str] | None, area_path: str | None, fields: Mapping[str, Any]
) -> bool:
    """Whether a revision belongs to the integration: its type and area path (that area or
    under it) as configured."""
    if work_item_types:
        kind = str(fields.get(F_TYPE) or "").casefold()
        if kind not in {t.casefold() for t in work_item_types}:
            return False
    if area_path:
        area = str(fields.get(F_AREA) or "").casefold()
        wanted = area_path.casefold()
        if area != wanted and not area.startswith(wanted + "\\"):
            return False
    return True


@dataclass(slots=True)
class Seen:
    """An item's last revision read: its number, history values and (for status) type."""

    rev: int
    values: dict[str, str | None]
    work_item_type: str


def changes(
    previous: Seen | None,
    rev: int,
    values: Mapping[str, str | None],
    *,
    item_id: int,
    changed_at: datetime,
    actor: tuple[str | None, str | None],
    status: Callable[[str, str | None], Status],
    previous_type: str | None,
    work_item_type: str,
) -> list[HistoryEntry]:
    """The entries of revision `rev` against the one before it (`previous`; None with rev 1:
    the creation, every value set then, from None). `status(state, type)` maps a state name."""
    out: list[HistoryEntry] = []
    for name, new in values.items():
        old = previous.values.get(name) if previous is not None else None
        if previous is not None and old == new:
            continue
        if previous is None and new is None:
            continue
        from_status = to_status = None
        if name == "status":
            from_status = status(old, previous_type) if old is not None else None
            to_status = status(new, work_item_type) if new is not None else None
        out.append(
            HistoryEntry(
                change_id=f"{item_id}.{rev}",
                field=name,
                changed_at=changed_at,
                from_value=old,
                to_value=new,
                from_status=from_status,
                to_status=to_status,
                actor_name=actor[0],
                actor_id=actor[1],
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# The feed
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RevisionBatch:
    """One reporting batch: its revisions, the token after it, whether it was the last, and
    what it cost (a request refused for a field the organization lacks counts too)."""

    values: Sequence[Mapping[str, Any]]
    token: str | None
    last: bool
    requests: int = 1


class RevisionReader(Protocol):
    """What a feed needs of the connector (its SDK calls and state categories)."""

    site: str

    async def read_revisions(self, project: str, token: str | None, size: int) -> RevisionBatch:
        """One reporting revisions batch from `token` (None: the first)."""
        ...

    async def read_as_of(
        self, project: str, ids: Sequence[int], at: datetime
    ) -> list[Mapping[str, Any]]:
        """`{id, rev, fields}` of up to 200 items as they were at `at` (one request)."""
        ...

    async def load_states(self, project: str, kinds: Sequence[str]) -> int:
        """Fetch the states of these types (cached): the requests it took."""
        ...

    def state_status(self, project: str, state: str, work_item_type: str | None) -> Status:
        """A state name mapped as the item's own status is."""
        ...


@dataclass(slots=True)
class Budget:
    """Requests a run may spend on history, and those spent."""

    total: int
    spent: int = 0


def start_mark(feeds: Mapping[str, str | None], scopes: Sequence[str]) -> Mark | None:
    """Where a project's feed resumes: None when `feeds` asks for none of its scopes. Its scopes
    share one token; when they differ (a scope added since has none) the project is read from
    the start: a re-read stores nothing twice."""
    tokens = {feeds[s] for s in scopes if s in feeds}
    if not tokens:
        return None
    return Mark.parse(tokens.pop()) if len(tokens) == 1 else Mark()


@dataclass(slots=True)
class ProjectFeed:
    """One project's revisions from a checkpoint, as HistoryPages (one per batch)."""

    reader: RevisionReader
    project: str
    scopes: Sequence[str]
    start: Mark
    budget: Budget
    page_size: int
    wanted: Callable[[Mapping[str, Any]], bool]  # a revision of an item in the integration
    seen: dict[int, Seen] = field(default_factory=dict)

    async def pages(self) -> AsyncIterator[HistoryPage]:
        token, through = self.start.token, self.start.through
        worst = 1 + math.ceil(self.page_size / LOOK_BACK_CAP)  # a batch and its look-back
        while True:
            left = self.budget.total - self.budget.spent
            if left <= 0 or (self.budget.spent and left < worst):
                return  # the rest waits for the next run
            batch = await self.reader.read_revisions(self.project, token, self.page_size)
            requests = batch.requests
            values = [v for v in batch.values if isinstance(v, Mapping)]
            requests += await self._look_back(values)
            kinds = {
                str(f.get(F_TYPE))
                for v in values
                if (f := v.get("fields") or {}).get(F_TYPE) and self.wanted(f)
            }
            requests += await self.reader.load_states(self.project, sorted(kinds))
            entries: dict[str, list[HistoryEntry]] = {}
            for value in values:
                read = self._apply(value)
                if read is None:
                    continue
                at, external_id, found = read
                through = at if through is None or at > through else through
                if found:
                    entries.setdefault(external_id, []).extend(found)
            token = batch.token or token
            self.budget.spent += requests
            mark = str(Mark(token, through))
            yield HistoryPage(
                entries,
                checkpoint={s: mark for s in self.scopes},
                through={s: through for s in self.scopes} if through is not None else {},
                requests=requests,
            )
            if batch.last or not batch.token:
                return

    async def _look_back(self, values: Sequence[Mapping[str, Any]]) -> int:
        """Fill `seen` for items whose first revision in `values` follows one an earlier run
        read: their values as of the time that run had read up to, 200 ids a request."""
        at = self.start.through
        firsts: dict[int, int] = {}
        for value in values:
            item_id, rev = _id_rev(value)
            if item_id is not None and item_id not in firsts:
                firsts[item_id] = rev
        unknown = [i for i, rev in firsts.items() if rev > 1 and i not in self.seen]
        if at is None or not unknown:
            return 0
        requests = 0
        for n in range(0, len(unknown), LOOK_BACK_CAP):
            chunk = unknown[n : n + LOOK_BACK_CAP]
            for raw in await self.reader.read_as_of(self.project, chunk, at):
                item_id, rev = _id_rev(raw)
                fields = raw.get("fields") or {}
                if item_id is not None and rev > 0:
                    self.seen[item_id] = Seen(
                        rev, tracked(fields, self.reader.site), str(fields.get(F_TYPE) or "")
                    )
            requests += 1
        return requests

    def _status(self, state: str, work_item_type: str | None) -> Status:
        return self.reader.state_status(self.project, state, work_item_type)

    def _apply(self, value: Mapping[str, Any]) -> tuple[datetime, str, list[HistoryEntry]] | None:
        """One revision read: its ChangedDate, item and entries (None: unreadable, skipped)."""
        item_id, rev = _id_rev(value)
        fields = value.get("fields") or {}
        at = parse_time(fields.get(F_CHANGED))
        if item_id is None or at is None or rev < 1:
            log_event(log, "azure_devops.revision_skipped", logging.WARNING, item=item_id, rev=rev)
            return None
        external_id = f"{self.reader.site}/{item_id}"
        previous = self.seen.get(item_id)
        if previous is not None and previous.rev >= rev:
            return at, external_id, []  # read already (a look-back reached it)
        values = tracked(fields, self.reader.site)
        kind = str(fields.get(F_TYPE) or "")
        found: list[HistoryEntry] = []
        # Without the previous revision (nor the creation) nothing says what changed: this
        # revision only becomes the base of the next.
        if self.wanted(fields) and (previous is not None or rev == 1):
            found = changes(
                previous if rev > 1 else None,
                rev,
                values,
                item_id=item_id,
                changed_at=at,
                actor=person(fields.get(F_CHANGED_BY)),
                status=self._status,
                previous_type=previous.work_item_type if previous is not None else None,
                work_item_type=kind,
            )
        self.seen[item_id] = Seen(rev, values, kind)
        return at, external_id, found


def _id_rev(value: Mapping[str, Any]) -> tuple[int | None, int]:
    raw_id, raw_rev = value.get("id"), value.get("rev")
    item_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
    rev = raw_rev if isinstance(raw_rev, int) and not isinstance(raw_rev, bool) else 0
    return item_id, rev

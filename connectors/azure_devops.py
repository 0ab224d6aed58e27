"""Azure DevOps Boards connector: work items of one or more projects (optionally one area path
and some work item types), through the `azure-devops` SDK (v7_0 work item tracking client), on
Azure DevOps Services or Server, with a PAT or a Microsoft Entra ID credential (`connectors.entra`).

How a sync reads (docs/trackers/azure_devops.md#overview):
- WIQL on `[System.ChangedDate]` with `timePrecision=true`, ordered by (ChangedDate, Id), `$top`
  below the server's 20,000 cap. When a query comes back full, the next one continues after the
  last (ChangedDate, Id) read; if the server refuses a query for matching too much (VS402337),
  the (ChangedDate, Id) window is bisected until it fits. So any number of items, even all
  changed in the same millisecond, is read with no gap.
- WIQL returns ids only: fields come from `workItemsBatch` in chunks of at most 200, one Page each.
- The WIQL `asOf` (server clock) of the run's first query bounds every checkpoint.
- A state's category (Proposed/InProgress/...) is not a field: it comes from the type's states,
  fetched once per type per connector instance.
History (HistorySource): each project's reporting revisions feed, read by
`connectors.azure_devops_history` through the SDK calls below
(docs/trackers/azure_devops.md#history).
The SDK is blocking: every call runs in a worker thread, with the SDK's own retries switched off
so `connectors.retry` (which honours Retry-After and the run's deadline) does all retrying. The
SDK never retries POSTs (WIQL, batch) anyway.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from html.parser import HTMLParser
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote, urlsplit

from pydantic import Field, field_validator, model_validator

from connectors.azure_devops_history import (
    HISTORY_FIELDS_READ,
    NEEDED,
    Budget,
    ProjectFeed,
    RevisionBatch,
    in_scope,
    start_mark,
)
from connectors.azure_devops_model import (
    ITERATION_DEPTH,
    MODEL_FIELDS,
    ExtraField,
    IterationTree,
    KnownField,
    assignees,
    custom_values,
    item_kind,
    iteration_tree,
    labels,
    names_a_sprint,
    parent_id,
    resolve_extra_fields,
    sprint_of,
    without_unique_names,
)
from connectors.base import (
    PRIORITY_HIGH,
    PRIORITY_HIGHEST,
    PRIORITY_LOW,
    PRIORITY_MEDIUM,
    PRIORITY_NONE,
    ConnectorConfig,
    ConnectorContext,
    ConnectorError,
    FatalError,
    HistoryPage,
    HistoryTodo,
    Page,
    Rejected,
    RetriableError,
    ScopeIds,
    Status,
    WorkItem,
    http_url,
    map_status,
    status_name_suggests,
    utc,
)
from connectors.entra import EntraAuth, EntraConfig, EntraToken
from connectors.http import call_sdk, json_body, log_event, parse_time, retry_after

T = TypeVar("T")
log = logging.getLogger(__name__)

WIQL_CAP = 20_000  # the server refuses a WIQL result larger than this (VS402337)
BATCH_CAP = 200  # the most ids one workItemsBatch accepts (VS403474)
MAX_ID = 2**31 - 1  # work item ids are int32
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # before any Azure DevOps / TFS work item existed
MILLISECOND = timedelta(milliseconds=1)

# Field reference names.
F_ID = "System.Id"
F_TYPE = "System.WorkItemType"
F_PROJECT = "System.TeamProject"
F_STATE = "System.State"
F_TITLE = "System.Title"
F_CHANGED = "System.ChangedDate"
F_CREATED = "System.CreatedDate"
F_TAGS = "System.Tags"
F_DESCRIPTION = "System.Description"
F_ACCEPTANCE = "Microsoft.VSTS.Common.AcceptanceCriteria"
F_PRIORITY = "Microsoft.VSTS.Common.Priority"
F_STORY_POINTS = "Microsoft.VSTS.Scheduling.StoryPoints"
F_EFFORT = "Microsoft.VSTS.Scheduling.Effort"
F_SIZE = "Microsoft.VSTS.Scheduling.Size"
F_CLOSED = "Microsoft.VSTS.Common.ClosedDate"
F_STATE_CHANGED = "Microsoft.VSTS.Common.StateChangeDate"
F_ACTIVATED = "Microsoft.VSTS.Common.ActivatedDate"
F_CMMI_BLOCKED = "Microsoft.VSTS.CMMI.Blocked"

#: Fields every sync needs; an organization always has them.
REQUIRED_FIELDS = (F_ID, F_TYPE, F_PROJECT, F_STATE, F_TITLE, F_CHANGED)
#: Fields a process may lack (e.g. CMMI's Blocked on an on-prem collection without CMMI
#: projects): dropped from the request if the server says it cannot find them (TF51535).
OPTIONAL_FIELDS = (
    F_CREATED,
    "System.Reason",
    "System.AreaPath",
    "System.IterationPath",
    "System.AssignedTo",
    F_TAGS,
    F_DESCRIPTION,
    F_ACCEPTANCE,
    F_PRIORITY,
    F_STORY_POINTS,
    F_EFFORT,
    F_SIZE,
    F_CLOSED,
    F_STATE_CHANGED,
    F_ACTIVATED,
    "Microsoft.VSTS.Common.ResolvedDate",
    F_CMMI_BLOCKED,
    *MODEL_FIELDS,
)

CATEGORY_STATUS = {
    "proposed": Status.QUEUED,
    "inprogress": Status.IN_PROGRESS,
    "resolved": Status.PR_READY,
    "completed": Status.COMPLETED,
    "removed": Status.CANCELLED,
}
PRIORITIES = {1: PRIORITY_HIGHEST, 2: PRIORITY_HIGH, 3: PRIORITY_MEDIUM, 4: PRIORITY_LOW}


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------
class AzureDevOpsConfig(ConnectorConfig):
    """`integrations.config` of an azure_devops row."""

    # https://dev.azure.com/myorg (or https://myorg.visualstudio.com); Azure DevOps Server: the
    # collection, https://server:8080/tfs/DefaultCollection (or without /tfs)
    organization_url: str
    project: str | None = None  # one project, or
    projects: list[str] | None = None  # several, each its own scopes
    # Microsoft Entra ID instead of a PAT (token*): service principal, managed or workload identity
    entra: EntraConfig | None = None
    area_path: str | None = None  # e.g. "My Project\\Web": that area and everything under it
    work_item_types: list[str] | None = None  # e.g. ["User Story", "Bug"]; None = every type
    batch_size: int = Field(default=200, ge=1, le=BATCH_CAP)
    wiql_top: int = Field(default=19_000, ge=1, lt=WIQL_CAP)
    # revisions per reporting batch ($maxPageSize) when reading history; at most 200, so a
    # batch's look-back at earlier revisions is one workItemsBatch
    history_page_size: int = Field(default=200, ge=1, le=BATCH_CAP)
    request_timeout: float = Field(default=60.0, gt=0)  # seconds, per HTTP request
    # more fields to keep in work_items.fields, by display name ("Severity") or reference name
    # ("Microsoft.VSTS.Common.Severity", "Custom.Team"), keyed there by the name given here
    extra_fields: list[str] = Field(default_factory=list)

    @field_validator("organization_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_url(value, "organization_url", "https://dev.azure.com/<organization>")

    @field_validator("project")
    @classmethod
    def _non_empty(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value:
            raise ValueError("project must not be empty")
        return value

    @field_validator("projects")
    @classmethod
    def _names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        names: list[str] = []
        for name in (n.strip() for n in value):
            if not name:
                raise ValueError("projects must not hold an empty name")
            if name.casefold() in (n.casefold() for n in names):
                raise ValueError(f"projects names {name!r} twice")
            names.append(name)
        if not names:
            raise ValueError("projects must name at least one project")
        return names

    @model_validator(mode="after")
    def _one_project_key_and_one_credential(self) -> AzureDevOpsConfig:
        if (self.project is None) == (self.projects is None):
            raise ValueError("give project (one) or projects (a list), exactly one of them")
        if self.area_path and len(self.project_names()) > 1:
            raise ValueError("area_path names one project's area: use it with a single project")
        if self.entra is not None:
            given = [k for k in ("token", "token_env", "token_file") if getattr(self, k)]
            if given:
                raise ValueError(f"give entra or {given[0]}, not both")
        return self

    def project_names(self) -> list[str]:
        """The configured projects, in config order."""
        return list(self.projects) if self.projects is not None else [str(self.project)]

    def uses_token(self) -> bool:
        return self.entra is None

    @field_validator("area_path")
    @classmethod
    def _area(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().strip("\\")
        return value or None

    @field_validator("extra_fields")
    @classmethod
    def _extra_names(cls, value: list[str]) -> list[str]:
        names: list[str] = []
        for name in (n.strip() for n in value):
            if not name:
                raise ValueError("extra_fields must not hold an empty name")
            if name.casefold() not in (n.casefold() for n in names):
                names.append(name)
        return names

    @field_validator("work_item_types")
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        cleaned = [t.strip() for t in value if t.strip()]
        return cleaned or None


# ---------------------------------------------------------------------------------------------
# Pure helpers: identity, WIQL text, mapping (unit-tested without a server)
# ---------------------------------------------------------------------------------------------
def org_identity(organization_url: str) -> str:
    """The site part of external_id: host[:port]/path, lower case (organization names are
    case-insensitive). A legacy `myorg.visualstudio.com` URL names the same organization as
    `dev.azure.com/myorg`, so both give `dev.azure.com/myorg`."""
    parts = urlsplit(organization_url.strip())
    host = (parts.hostname or "").lower()
    path = parts.path.strip("/").lower()
    if host.endswith(".visualstudio.com") and path in ("", "defaultcollection"):
        return f"dev.azure.com/{host.removesuffix('.visualstudio.com')}"
    site = f"{host}:{parts.port}" if parts.port else host
    return f"{site}/{path}" if path else site


def web_url(organization_url: str, project: str, item_id: int) -> str:
    """The work item's page in the browser."""
    return f"{organization_url.rstrip('/')}/{quote(project, safe='')}/_workitems/edit/{item_id}"


def wiql_string(text: str) -> str:
    """A WIQL string literal: quotes doubled, so a name cannot end the literal early."""
    return "'" + text.replace("'", "''") + "'"


def wiql_time(value: datetime) -> str:
    """A WIQL date literal in UTC (read with timePrecision=true), fractional seconds only when
    the value has them (ChangedDate is kept to the millisecond)."""
    value = utc(value)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        digits = f"{value.microsecond:06d}"
        text += "." + (digits[:3] if value.microsecond % 1000 == 0 else digits)
    return wiql_string(text + "Z")


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A place in the (ChangedDate, Id) order the sync reads in."""

    changed: datetime
    item_id: int


def scope_clauses(config: AzureDevOpsConfig, work_item_type: str | None = None) -> list[str]:
    """The WHERE clauses every query of this integration shares; with `work_item_type`, those
    of that one type's scope."""
    # @project is the project of the request's route (each project is queried on its own)
    clauses = ["[System.TeamProject] = @project"]
    if config.area_path:
        clauses.append(f"[System.AreaPath] UNDER {wiql_string(config.area_path)}")
    if work_item_type is not None:
        clauses.append(f"[System.WorkItemType] = {wiql_string(work_item_type)}")
    elif config.work_item_types:
        types = ", ".join(wiql_string(t) for t in config.work_item_types)
        clauses.append(f"[System.WorkItemType] IN ({types})")
    return clauses


def scope_key(config: AzureDevOpsConfig, work_item_type: str | None, project: str) -> str:
    """The cursor key of one scope: project, area path, work item type (`*`: all). Adding a
    type (or a project) to the config adds a scope, read in full, while the others keep their
    cursors; a new area path is a new scope altogether."""
    return f"{project}/{config.area_path or '*'}/{work_item_type or '*'}"


def changes_query(
    config: AzureDevOpsConfig,
    *,
    since: datetime | None,
    after: Position | None,
    upto: Position | None,
    work_item_type: str | None = None,
) -> str:
    """Ids changed at or after `since`, strictly after position `after`, up to and including
    position `upto`, in (ChangedDate, Id) order (of one type's scope when given)."""
    clauses = scope_clauses(config, work_item_type)
    if since is not None:
        clauses.append(f"[System.ChangedDate] >= {wiql_time(since)}")
    if after is not None:
        at = wiql_time(after.changed)
        clauses.append(
            f"([System.ChangedDate] > {at} OR "
            f"([System.ChangedDate] = {at} AND [System.Id] > {after.item_id}))"
        )
    if upto is not None:
        at = wiql_time(upto.changed)
        if upto.item_id >= MAX_ID:
            clauses.append(f"[System.ChangedDate] <= {at}")
        else:
            clauses.append(
                f"([System.ChangedDate] < {at} OR "
                f"([System.ChangedDate] = {at} AND [System.Id] <= {upto.item_id}))"
            )
    return (
        "SELECT [System.Id] FROM WorkItems WHERE "
        + " AND ".join(clauses)
        + " ORDER BY [System.ChangedDate] ASC, [System.Id] ASC"
    )


def ids_query(
    config: AzureDevOpsConfig,
    *,
    after_id: int,
    upto_id: int | None,
    work_item_type: str | None = None,
) -> str:
    """Ids in scope greater than `after_id` (and at most `upto_id`), in id order (of one type's
    scope when given)."""
    clauses = scope_clauses(config, work_item_type)
    if after_id > 0:
        clauses.append(f"[System.Id] > {after_id}")
    if upto_id is not None:
        clauses.append(f"[System.Id] <= {upto_id}")
    return (
        "SELECT [System.Id] FROM WorkItems WHERE "
        + " AND ".join(clauses)
        + " ORDER BY [System.Id] ASC"
    )


def split_window(start: Position, upto: Position) -> Position:
    """A position strictly between `start` (exclusive) and `upto` (inclusive): the new upper
    bound after the server refused the window (start, upto] for matching more than 20,000
    items. Halves the time span; within one instant, halves the id range instead."""
    if upto.changed - start.changed >= timedelta(microseconds=2):
        return Position(start.changed + (upto.changed - start.changed) / 2, MAX_ID)
    if upto.changed > start.changed and start.item_id < MAX_ID:
        return Position(start.changed, MAX_ID)
    low_id = start.item_id if upto.changed == start.changed else -1
    middle = low_id + (upto.item_id - low_id) // 2
    if not low_id < middle < upto.item_id:
        raise RetriableError("Azure DevOps refused a WIQL window it cannot be split further")
    return Position(upto.changed, middle)


_BLOCK_TAGS = frozenset(
    "address article aside blockquote dd div dl dt fieldset figcaption figure footer form h1 h2 h3 "
    "h4 h5 h6 header hr li main nav ol p pre section table tbody thead tfoot tr ul".split()
)


class _TextExtractor(HTMLParser):
    """HTML -> readable text: blocks and <br> become line breaks, list items get "- "."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(value: Any) -> str | None:
    """ADO rich-text fields (HTML) as plain text; None when empty."""
    if not isinstance(value, str) or not value.strip():
        return None
    if "<" not in value and "&" not in value:
        return value.strip()
    parser = _TextExtractor()
    parser.feed(value)
    parser.close()
    text = "".join(parser.parts).replace("\xa0", " ")
    lines = (re.sub(r"[ \t]+", " ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line) or None


def story_points(fields: Mapping[str, Any]) -> int | None:
    """StoryPoints (Agile), else Effort (Scrum, Basic), else Size (CMMI), rounded half up."""
    for name in (F_STORY_POINTS, F_EFFORT, F_SIZE):
        value = fields.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return math.floor(value + 0.5)
    return None


def priority(fields: Mapping[str, Any]) -> int:
    """ADO 1 (highest) .. 4 (lowest) onto our 0 none .. 4 highest."""
    value = fields.get(F_PRIORITY)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return PRIORITY_NONE
    return PRIORITIES.get(int(value), PRIORITY_NONE)


def has_tag(tags: Any, wanted: str) -> bool:
    """ADO tags are one string, "a; b; c"."""
    if not isinstance(tags, str):
        return False
    return any(t.strip().casefold() == wanted.casefold() for t in tags.split(";"))


def guess_category(state: str | None) -> str:
    """A state's category when the type's states cannot tell (type deleted, state renamed)."""
    name = (state or "").strip().casefold()
    if name in ("new", "to do", "proposed", "approved", ""):
        return "Proposed"
    if name == "resolved":
        return "Resolved"
    if name in ("closed", "done", "completed"):
        return "Completed"
    if name in ("removed", "cut"):
        return "Removed"
    return "InProgress"


def status_of(
    fields: Mapping[str, Any], category: str | None, overrides: Mapping[str, Status]
) -> Status:
    """The state's category, refined for blocked / in-review work; the admin's status_map (keyed
    by state name) wins (docs/trackers/azure_devops.md#status-mapping)."""
    state = fields.get(F_STATE)
    state_name = state if isinstance(state, str) else None
    category = category or guess_category(state_name)
    default = CATEGORY_STATUS.get(category.casefold(), Status.QUEUED)
    if default is Status.IN_PROGRESS:
        blocked = str(fields.get(F_CMMI_BLOCKED) or "").strip().casefold() == "yes"
        if blocked or has_tag(fields.get(F_TAGS), "Blocked"):
            default = Status.BLOCKED
        elif status_name_suggests(state_name, "review", "reviewing", "pr"):
            default = Status.PR_READY
    return map_status(state_name, default, overrides)


class UnmappableItem(ConnectorError):
    """One work item the connector cannot map (a field of the wrong type, an unreadable change
    time): it is rejected on its own (`Page.rejected`, naming the field) while the rest of the
    page and every later page still land."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _shown(value: Any) -> str:
    """A field's value for a rejection reason: short, never the whole of a long value."""
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def text_field(fields: Mapping[str, Any], name: str) -> str | None:
    """A string field (plain or HTML); absent is None, anything else is refused."""
    value = fields.get(name)
    if value is None or isinstance(value, str):
        return value
    raise UnmappableItem(f"{name} is {type(value).__name__}, not text")


def time_field(fields: Mapping[str, Any], name: str) -> datetime | None:
    """A date field that must be readable when present (the change and creation times)."""
    value = fields.get(name)
    if value is None:
        return None
    parsed = parse_time(value)
    if parsed is None:
        raise UnmappableItem(f"{name} is not a date: {_shown(value)}")
    return parsed


def map_work_item(
    raw: Mapping[str, Any],
    *,
    config: AzureDevOpsConfig,
    site: str,
    category: str | None,
    project: str | None = None,
    iterations: IterationTree | None = None,
    extras: Sequence[ExtraField] = (),
    now: datetime | None = None,
) -> WorkItem:
    """One workItemsBatch entry ({"id","rev","fields","url"}) onto a WorkItem. Raises
    UnmappableItem (naming the field) for an item that cannot be mapped: a title or description
    that is not text, a change time that is absent or unreadable. Optional dates (activated,
    closed) that cannot be read are unknown (connectors/http.py). The richer model
    (connectors.azure_devops_model): the sprint's dates come from `iterations` (the project's
    tree, when the run read it), `extras` are the resolved `extra_fields`."""
    fields: Mapping[str, Any] = raw.get("fields") or {}
    item_id = int(raw["id"])
    updated = time_field(fields, F_CHANGED) or time_field(fields, F_CREATED)
    if updated is None:
        raise UnmappableItem(f"no {F_CHANGED}")
    title = text_field(fields, F_TITLE)
    description = text_field(fields, F_DESCRIPTION)
    acceptance = text_field(fields, F_ACCEPTANCE)
    status = status_of(fields, category, config.status_map)
    completed = parse_time(fields.get(F_CLOSED))
    if completed is None and status is Status.COMPLETED:
        completed = parse_time(fields.get(F_STATE_CHANGED))
    name = fields.get(F_PROJECT)
    kind, kind_name = item_kind(fields.get(F_TYPE))
    sprint = sprint_of(fields, iterations, site, now or datetime.now(UTC))
    return WorkItem(
        external_id=f"{site}/{item_id}",
        external_key=str(item_id),
        title=title or "",
        status=status,
        updated_at=updated,
        description=html_to_text(description),
        acceptance_criteria=html_to_text(acceptance),
        priority=priority(fields),
        story_points=story_points(fields),
        external_url=web_url(
            config.organization_url,
            name if isinstance(name, str) else (project or config.project_names()[0]),
            item_id,
        ),
        started_at=parse_time(fields.get(F_ACTIVATED)),
        completed_at=completed,
        raw=without_unique_names(raw),
        parent_external_id=parent_id(fields.get("System.Parent"), site),
        item_type=kind,
        item_type_name=kind_name,
        labels=labels(fields.get(F_TAGS)),
        assignees=assignees(fields.get("System.AssignedTo")),
        sprints=(sprint,) if sprint is not None else (),
        custom_fields=custom_values(fields, extras),
    )


# ---------------------------------------------------------------------------------------------
# The SDK boundary
# ---------------------------------------------------------------------------------------------
class _Window:
    """Where a `changes` run stands in the (ChangedDate, Id) order.

    `after`: every item up to this position has been read. `upto`: the current query's upper
    bound, set only while the server refuses larger windows (VS402337). `reached`: the furthest
    position read whose date the query that found it can vouch for: an item changed after that
    query (date past its asOf) has jumped ahead and says nothing about where the query stood.
    """

    def __init__(self, since: datetime | None) -> None:
        self.since = since
        self.after: Position | None = None
        self.upto: Position | None = None
        self.reached: Position | None = None
        self._reached_in_query: Position | None = None
        self._bounded_from: Position | None = None  # start of the current bounded window
        self._stalls = 0

    def start(self) -> Position:
        if self.after is not None:
            return self.after
        return Position(self.since or EARLIEST, -1)  # -1: every id at `since` is still to read

    def narrow(self, horizon: datetime) -> None:
        self._bounded_from = self.start()
        self.upto = split_window(self._bounded_from, self.upto or Position(horizon, MAX_ID))
        self._reached_in_query = None

    def saw(self, position: Position, as_of: datetime) -> None:
        if position.changed <= as_of:
            if self._reached_in_query is None or position > self._reached_in_query:
                self._reached_in_query = position
            if self.reached is None or position > self.reached:
                self.reached = position

    def checkpoint(self, scope: str, first_as_of: datetime) -> dict[str, datetime]:
        """Resume point after the items so far: nothing unread before it (clamped to the run's
        first asOf, past which items may have changed during the run)."""
        if self.reached is None:
            return {}
        return {scope: min(self.reached.changed, first_as_of)}

    def advance(self, full: bool, horizon: datetime) -> None:
        """After a query's ids were all fetched: continue after the last vouched-for item when
        the query came back full, else move past the exhausted bounded window."""
        reached, self._reached_in_query = self._reached_in_query, None
        if not full:
            assert self.upto is not None and self._bounded_from is not None
            done, began = self.upto, self._bounded_from
            self.after, self.upto, self._bounded_from = done, None, done
            # Next window: twice as wide as the one that fitted (instead of bisecting down from
            # the whole remaining range again); narrowed again if the server still refuses it.
            if done.changed > began.changed:
                end = done.changed + 2 * (done.changed - began.changed)
                self.upto = Position(end, MAX_ID) if end < horizon else None
            elif done.item_id < MAX_ID:
                end_id = done.item_id + 2 * (done.item_id - max(began.item_id, 0))
                self.upto = Position(done.changed, end_id) if end_id < MAX_ID else None
            return
        if reached is None or (self.after is not None and reached <= self.after):
            self._stalls += 1  # every item of the window changed meanwhile: ask again
            if self._stalls > 3:
                raise RetriableError(
                    "Azure DevOps work items kept changing faster than they could be read"
                )
            return
        self._stalls, self.after = 0, reached


class _IdWindow:
    """Where an `all_ids` listing stands in id order: every id up to `after` is listed; the
    next query asks for ids in (`after`, `upto`] (`upto` None: every id above `after`).

    The first query is open-ended. Once the server refuses a window (VS402337: more than
    20,000 matches, even with `$top` on some servers), the listing goes on in id windows whose
    width adapts like the (ChangedDate, Id) window of `changes`: halved while refused, twice
    as wide after one that fitted. A refusal then costs about one query per window, instead of
    a bisection down from 2^31 after every window. Past the last id the windows come back
    empty: the next query is open-ended again, so the listing ends there instead of doubling
    its way up to 2^31.
    """

    def __init__(self, top: int) -> None:
        self.top = top
        self.after = 0
        self.upto: int | None = None
        self._span = 0  # width of the current (or next) bounded window; 0: none fitted yet

    def narrow(self) -> None:
        """The server refused (after, upto]. A bounded window: half as wide. The open-ended
        range: the bounded window the listing would have used, or at first `top` ids (so wide
        a window cannot match more than `top` items, below the server's cap; a server with a
        lower cap halves it further)."""
        ceiling = self.upto if self.upto is not None else MAX_ID
        width = ceiling - self.after
        if width <= 1:
            raise RetriableError("Azure DevOps refused a WIQL id window of one item")
        if self.upto is not None:
            self._span = width // 2
        else:
            self._span = min(width // 2, self._span or self.top)
        self.upto = self.after + self._span

    def advance(self, ids: Sequence[int]) -> bool:
        """After a query's answer (ascending ids): False when the listing is complete. A full
        answer continues after its last id in the same window; an exhausted bounded window is
        followed by one twice as wide, or by the open-ended rest after an empty one."""
        if len(ids) >= self.top and (self.upto is None or ids[-1] < self.upto):
            self.after = ids[-1]
            return True
        if self.upto is None:
            return False
        self.after, self._span = self.upto, 2 * self._span
        end = self.after + self._span
        self.upto = end if ids and end < MAX_ID else None
        return True


class _CapExceeded(Exception):
    """The server refused a WIQL query for matching more than 20,000 items (VS402337)."""


class _UnknownField(Exception):
    """The organization has no such field (TF51535): drop it from the request."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


# The status and headers of the last response seen on this thread (a requests response hook on
# our client records them): the SDK's exceptions keep neither, and a 200 may carry Retry-After.
_LAST = threading.local()


def _record_response(response: Any, *args: Any, **kwargs: Any) -> None:
    _LAST.status = response.status_code
    _LAST.headers = dict(response.headers)
    _LAST.response = response


def _last_json() -> Any:
    """The JSON body of the last response on this thread (None: none, or not JSON)."""
    response = getattr(_LAST, "response", None)
    try:
        return json_body(response.content) if response is not None else None
    except ValueError:
        return None


# workItemsBatch as the SDK's (v7_0) WorkItemTrackingClient.get_work_items_batch sends it: its
# resource location and api-version, through the client's own `_send` (the credential, the
# location's URL, version negotiation, its errors). Only the answer is read otherwise: as JSON,
# not into msrest models the connector then turned back into dicts (85 µs an item of 200, most
# of an import's CPU). tests/integration/connectors/test_azure_devops.py holds the request to
# the SDK's.
_BATCH_LOCATION = "908509b6-4248-4475-a1cd-829139ba419f"
_BATCH_VERSION = "7.0"


def _work_items_batch(wit: Any, request: Any, project: str) -> list[dict[str, Any] | None]:
    """One workItemsBatch (`request`: a WorkItemBatchGetRequest): its entries in the answer's
    order, each `{"id", "rev", "fields", "url"}` or None (the `null` of errorPolicy=omit). An
    answer of another shape is a ValueError (malformed: retried)."""
    content = wit._serialize.body(request, "WorkItemBatchGetRequest")
    route = {"project": wit._serialize.url("project", project, "str")}
    response = wit._send(
        http_method="POST",
        location_id=_BATCH_LOCATION,
        version=_BATCH_VERSION,
        route_values=route,
        content=content,
    )
    body = json_body(response.content)
    if not isinstance(body, Mapping) or not isinstance(body.get("value"), list):
        raise ValueError("a workItemsBatch answer without its list of items")
    return [_batch_entry(entry) for entry in body["value"]]


def _batch_entry(entry: object) -> dict[str, Any] | None:
    """A batch entry as the SDK's model read it (an id and rev are integers, `fields` an
    object; absent, None), or None for `null`."""
    if entry is None:
        return None
    if not isinstance(entry, Mapping):
        raise ValueError("a workItemsBatch entry that is not an object")
    fields, rev, url = entry.get("fields"), entry.get("rev"), entry.get("url")
    if fields is not None and not isinstance(fields, Mapping):
        raise ValueError("a workItemsBatch entry whose fields are not an object")
    if url is not None and not isinstance(url, str):
        raise ValueError("a workItemsBatch entry whose url is not text")
    return {
        "id": None if entry.get("id") is None else int(entry["id"]),
        "rev": None if rev is None else int(rev),
        "fields": dict(fields or {}),
        "url": url,
    }


def _sdk() -> Any:
    """Import the SDK (lazily: see `_prepare_cache_dir`)."""
    from azure.devops import connection

    return connection


def _prepare_cache_dir(ctx: ConnectorContext) -> None:
    # The SDK caches API locations on disk for 12 h, in a directory it reads from
    # AZURE_DEVOPS_CACHE_DIR once, when `azure.devops` is first imported. Point it under our
    # cache dir before that import (a home directory may be read-only, and a shared cache makes
    # a sandbox on a reused port skip its OPTIONS call). Later connectors cannot change it.
    path = ctx.cache_dir / "azure-devops-sdk"
    path.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AZURE_DEVOPS_CACHE_DIR", str(path))


class _ProjectGone(FatalError):
    """A configured project does not exist (any more) or this credential cannot see it."""

    def __init__(self, message: str, project: str) -> None:
        super().__init__(message)
        self.project = project


def _connection_class() -> Any:
    """The SDK's Connection, with every client it makes configured by `configure`: the location
    client it builds on its own for ResourceAreas included (hence the SDK's one per-client hook,
    named for Fiddler, which it calls on each client it creates when `use_fiddler` is set)."""
    base = _sdk().Connection

    class ConfiguredConnection(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, configure: Callable[[Any], None], **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._configure = configure
            self.use_fiddler = True

        def _configure_client_for_fiddler(self, client: Any) -> None:
            self._configure(client)

    return ConfiguredConnection


def _tls_refused(exc: Exception) -> bool:
    """msrest wraps requests' exception: a certificate this host does not trust (no retry helps)."""
    inner = getattr(exc, "inner_exception", None)
    return "CERTIFICATE_VERIFY_FAILED" in str(inner or "")


def _service_message(exc: BaseException) -> str:
    """The server's own error text (never carries request headers)."""
    message = getattr(exc, "message", None)
    return message if isinstance(message, str) else ""


# ---------------------------------------------------------------------------------------------
# The connector
# ---------------------------------------------------------------------------------------------
class AzureDevOpsConnector:
    """Work items of one or more Azure DevOps projects."""

    source: ClassVar[str] = "azure_devops"
    config_model: ClassVar[type[ConnectorConfig]] = AzureDevOpsConfig
    overlap: ClassVar[timedelta] = timedelta(minutes=2)

    def __init__(self, config: AzureDevOpsConfig, ctx: ConnectorContext) -> None:
        self.config = (
            config
            if isinstance(config, AzureDevOpsConfig)
            else AzureDevOpsConfig.model_validate(config)
        )
        self.ctx = ctx
        self.site = org_identity(self.config.organization_url)
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._fields: list[str] = [*REQUIRED_FIELDS, *OPTIONAL_FIELDS]
        #: (project, type) -> state -> category (casefold); None: the project has no such type
        self._categories: dict[tuple[str, str], dict[str, str] | None] = {}
        #: the Entra credential (None: a PAT); built here, so a bad secret or certificate is a
        #: ConfigError before any request
        self._entra = (
            EntraToken(self.config.entra, ctx, self.config.tls_verify())
            if self.config.entra is not None
            else None
        )
        self._renewed = False  # a 401 already led to a new token, with no success since
        #: history fields the organization turned out not to have (TF51535), not asked again
        self._history_dropped: set[str] = set()
        #: project (casefold) -> its iteration tree, read once a run when a page first names an
        #: iteration below the project root
        self._iterations: dict[str, IterationTree] = {}
        #: the resolved `extra_fields` (None: not resolved yet this run)
        self._extras: list[ExtraField] | None = None
        _prepare_cache_dir(ctx)

    # -- plumbing -----------------------------------------------------------------------------
    def _wit(self) -> Any:
        """The work item tracking client, created on first use (in a worker thread: creating
        it calls OPTIONS /_apis and GET /_apis/ResourceAreas)."""
        with self._client_lock:
            if self._client is None:
                connection = _connection_class()(
                    base_url=self.config.organization_url,
                    creds=self._creds(),
                    configure=self._configure,
                )
                self._client = connection.clients.get_work_item_tracking_client()
            return self._client

    def _creds(self) -> Any:
        """msrest authentication: Entra bearer tokens, or the PAT as Basic auth."""
        if self._entra is not None:
            return EntraAuth(self._entra)
        from azure.devops.credentials import BasicAuthentication

        return BasicAuthentication("", self.ctx.bearer().get_secret_value())

    def _configure(self, client: Any) -> None:
        """Each SDK client (its own msrest config): no retries inside the SDK (msrest would
        sleep Retry-After in this thread with no deadline; every response comes back to us and
        connectors.retry decides), our timeout, the response hook, and the TLS trust
        (`ca_bundle` / `verify_tls`)."""
        # Edit msrest's urllib3 Retry in place (msrest reads attributes a fresh one lacks).
        policy = client.config.retry_policy.policy
        policy.total = policy.connect = policy.read = policy.status = policy.other = 0
        policy.status_forcelist = frozenset()
        policy.respect_retry_after_header = False
        policy.raise_on_status = False
        client.config.connection.timeout = self.config.request_timeout
        client.config.connection.verify = self.config.tls_verify()
        client.config.hooks.append(_record_response)

    def _blocking(self, call: Callable[[Any], T]) -> tuple[T, float | None]:
        """Run one SDK call (in a worker thread): its result and any Retry-After the successful
        response carried."""
        _LAST.status, _LAST.headers, _LAST.response = None, {}, None
        result = call(self._wit())
        self._renewed = False
        return result, retry_after(_LAST.headers)

    async def _call(self, what: str, call: Callable[[Any], T], project: str) -> T:
        """One SDK call through the shared guard; `_translate` classifies its exceptions."""
        result, pause = await call_sdk(
            self.ctx,
            what,
            partial(self._blocking, call),
            partial(self._translate, what=what, project=project),
        )
        if pause:
            await self._pause(what, pause)
        return result

    async def _pause(self, what: str, seconds: float) -> None:
        """ADO sends Retry-After on successful responses when it starts delaying a user: slow
        down, within the run's limits."""
        seconds = min(seconds, self.ctx.sleep_cap)
        if self.ctx.deadline is not None:
            seconds = min(seconds, max(0.0, self.ctx.deadline - time.monotonic()))
        if seconds > 0:
            self.ctx.on_wait(what, seconds)
            await asyncio.sleep(seconds)

    def _translate(self, exc: Exception, what: str, project: str) -> Exception | None:
        """An SDK exception as RetriableError / FatalError (or an internal signal); None when it
        is none of those (the guard then lets it propagate: a bug, not a transient failure)."""
        from azure.devops.exceptions import AzureDevOpsAuthenticationError
        from msrest.exceptions import ClientRequestError, DeserializationError

        status: int | None = getattr(_LAST, "status", None)
        headers: Mapping[str, str] = getattr(_LAST, "headers", {}) or {}
        message = _service_message(exc)
        org = self.config.organization_url
        if isinstance(exc, AzureDevOpsAuthenticationError) or status == 401:
            return self._unauthorized(message)
        if status == 429 or "TF400733" in message:
            return RetriableError(
                f"Azure DevOps rate limit (429) on {what}", retry_after=retry_after(headers)
            )
        if status is not None and status >= 500:
            return RetriableError(
                f"Azure DevOps server error ({status}) on {what}",
                retry_after=retry_after(headers),
            )
        if "VS402337" in message:
            return _CapExceeded(message)
        field = re.search(r"TF51535: Cannot find field ([\w.]+)", message)
        if field and field.group(1).rstrip(".") not in REQUIRED_FIELDS:
            return _UnknownField(field.group(1).rstrip("."))
        if "TF200016" in message or (status == 404 and "project" in message.casefold()):
            return _ProjectGone(
                f"Azure DevOps project {project!r} not found in {org}: check the project name "
                f"(as shown in the project's URL) and that {self._who()} can see it",
                project,
            )
        if "TF51011" in message and self.config.area_path:
            return FatalError(
                f"Azure DevOps refused area_path {self.config.area_path!r} in project "
                f"{project!r}: {message}"
            )
        if status == 403:
            return FatalError(
                f"Azure DevOps denied access (403) to project {project!r}: give {self._who()} "
                "read access to its work items (an access level of Basic; Stakeholder is not "
                "enough)"
            )
        if status is not None and 400 <= status < 500:
            detail = message or f"HTTP {status}"
            return FatalError(f"Azure DevOps refused the {what}: {detail}")
        if isinstance(exc, ValueError) and "is not registered" in str(exc):
            return FatalError(
                f"{org} does not answer like an Azure DevOps organization: check organization_url "
                "(https://dev.azure.com/<organization>)"
            )
        if isinstance(exc, DeserializationError | ValueError):
            return RetriableError(f"Azure DevOps sent a malformed response to the {what}")
        if isinstance(exc, ClientRequestError) and _tls_refused(exc):
            return FatalError(
                f"TLS verification of {urlsplit(org).hostname} failed: set ca_bundle to the CA "
                "that signed its certificate (or, knowingly, verify_tls: false)"
            )
        if isinstance(exc, ClientRequestError):
            return RetriableError(
                f"could not reach Azure DevOps for the {what} ({type(exc).__name__})"
            )
        return None

    def _who(self) -> str:
        """Who this integration reads as, for messages."""
        if self.config.entra is not None:
            return self.config.entra.principal()
        return "the PAT's user"

    def _unauthorized(self, message: str) -> Exception:
        """A 401. With a PAT: the token is bad. With Entra: a service principal the organization
        does not know (TF400813), or a token the service no longer takes (expired in flight,
        revoked): then one new token is tried before giving up."""
        org = self.config.organization_url
        if self._entra is None:
            return FatalError(
                f"Azure DevOps rejected the PAT (401) for {org}: create a new personal access "
                "token with the Work Items (Read) scope for this organization and update the "
                "integration's token"
            )
        if "TF400813" in message:
            return FatalError(
                f"Azure DevOps does not know {self._who()} (401 TF400813): a Project Collection "
                f"Administrator of {org} must add the service principal to the organization "
                "(Organization settings > Users > Add users, access level Basic) and to the "
                "projects' Readers"
            )
        if not self._renewed:
            self._renewed = True
            self._entra.renew()
            return RetriableError("Azure DevOps refused the Entra token (401): getting a new one")
        return FatalError(
            f"Azure DevOps refused new Entra tokens of {self._who()} (401) for {org}: check that "
            "the organization is connected to the credential's tenant"
        )

    # -- SDK calls ----------------------------------------------------------------------------
    async def _wiql(self, query: str, top: int, project: str) -> tuple[list[int], datetime]:
        """One WIQL query: the ids in its order and the server's asOf."""

        def call(wit: Any) -> tuple[list[int], datetime]:
            from azure.devops.v7_0.work_item_tracking.models import (
                TeamContext,
                Wiql,
            )

            result = wit.query_by_wiql(
                Wiql(query=query),
                team_context=TeamContext(project=project),
                time_precision=True,
                top=top,
            )
            if result.work_items is None:  # an empty result is `"workItems": []`
                raise RetriableError("Azure DevOps sent a WIQL answer without workItems")
            ids = [int(ref.id) for ref in result.work_items]
            as_of = result.as_of
            return ids, utc(as_of) if isinstance(as_of, datetime) else datetime.now(UTC)

        return await self._call("WIQL query", call, project)

    async def _fetch(self, ids: Sequence[int], project: str) -> list[dict[str, Any]]:
        """The fields of `ids` (at most 200) in the order asked, less those the service says it
        cannot read (deleted since the WIQL query, or no longer readable).

        Ids an answer leaves out without a `null` in their place (a short or empty `value`) are
        asked for again, alone; the service's word is the `null` of errorPolicy=omit, so an id
        still left out after that fails the run (RetriableError) instead of being skipped while
        the checkpoint passes it (docs/trackers/azure_devops.md#response-bodies)."""
        if self._extras is None:
            await self._resolve_extra_fields(project)
        got, unaccounted = await self._batch(ids, project)
        if unaccounted:
            log_event(
                log,
                "azure_devops.short_batch",
                logging.WARNING,
                asked=len(ids),
                left_out=len(unaccounted),
            )
            again, unaccounted = await self._batch(unaccounted, project)
            got.update(again)
            if unaccounted:
                shown = ", ".join(str(i) for i in unaccounted[:10])
                more = f" and {len(unaccounted) - 10} more" if len(unaccounted) > 10 else ""
                raise RetriableError(
                    f"Azure DevOps left out work item(s) {shown}{more} from a batch answer twice "
                    "without saying they cannot be read; will retry"
                )
        return [got[i] for i in ids if i in got]

    async def _batch(
        self, ids: Sequence[int], project: str
    ) -> tuple[dict[int, dict[str, Any]], list[int]]:
        """One workItemsBatch request (re-sent without a field the organization lacks): the
        items it returned by id, and the ids it did not account for. An id counts as accounted
        for when the answer has its entry, or when it answered one entry per id asked and a
        `null` stands for each id without an entry (errorPolicy=omit: cannot be read)."""
        while True:
            fields = list(self._fields)

            def call(wit: Any, fields: list[str] = fields) -> list[dict[str, Any] | None]:
                from azure.devops.v7_0.work_item_tracking.models import (
                    WorkItemBatchGetRequest,
                )

                request = WorkItemBatchGetRequest(ids=list(ids), fields=fields, error_policy="omit")
                return _work_items_batch(wit, request, project)

            try:
                answer = await self._call("work item batch", call, project)
            except _UnknownField as missing:
                if missing.name not in self._fields:
                    raise RetriableError("Azure DevOps keeps refusing a field") from None
                self._fields.remove(missing.name)
                continue
            asked = set(ids)
            by_id = {
                w["id"]: w
                for w in answer
                if w is not None and w["id"] is not None and w["id"] in asked
            }
            without = [i for i in ids if i not in by_id]
            nulls = sum(1 for w in answer if w is None)
            if len(answer) == len(ids) and nulls == len(without):
                return by_id, []  # each id without an entry has its `null`: cannot be read
            return by_id, without

    async def _iteration_tree(self, project: str) -> IterationTree:
        """The project's iterations (GET {project}/_apis/wit/classificationnodes/Iterations
        ?$depth=14), read once a run; an answer without nodes is an empty tree (its items keep
        their iteration's id and name, without dates)."""
        key = project.casefold()
        if key not in self._iterations:

            def call(wit: Any) -> IterationTree:
                node = wit.get_classification_node(project, "iterations", depth=ITERATION_DEPTH)
                return iteration_tree(node)

            tree = await self._call("iterations", call, project)
            if not tree.by_id:
                log_event(log, "azure_devops.iterations_empty", logging.WARNING, project=project)
            self._iterations[key] = tree
        return self._iterations[key]

    async def _resolve_extra_fields(self, project: str) -> None:
        """`extra_fields` by reference or display name through the organization's field list
        (GET {org}/_apis/wit/fields), once a run, and only when the config names some; their
        reference names join the batch's field list. A name that resolves to no field is a
        warning (logged): the sync goes on without it."""
        wanted = self.config.extra_fields
        if not wanted:
            self._extras = []
            return

        def call(wit: Any) -> list[KnownField]:
            return [
                KnownField(str(f.reference_name), str(f.name or ""), f.is_identity is True)
                for f in wit.get_fields() or []
                if f is not None and f.reference_name
            ]

        known = await self._call("field list", call, project)
        resolved, unknown = resolve_extra_fields(wanted, known)
        for name in unknown:
            self.ctx.on_warning(
                "extra_field_unknown",
                f"extra_fields: {name!r} names no field of this organization (by display or"
                " reference name); it is left out of work_items.fields",
            )
        self._extras = resolved
        for extra in resolved:
            if extra.reference not in self._fields:
                self._fields.append(extra.reference)

    async def _states(self, project: str, work_item_type: str) -> dict[str, str] | None:
        """State name (casefold) -> category of `work_item_type` in `project`, fetched once per
        type; None when the project has no such type (VS402323)."""
        key = (project.casefold(), work_item_type.casefold())
        if key not in self._categories:

            def call(wit: Any) -> dict[str, str] | None:
                try:
                    states = wit.get_work_item_type_states(project, work_item_type)
                except Exception as exc:
                    if "VS402323" in _service_message(exc):  # no such type (or no longer)
                        return None
                    raise
                return {
                    str(s.name).casefold(): str(s.category)
                    for s in states or []
                    if s.name and s.category
                }

            self._categories[key] = await self._call(f"states of {work_item_type!r}", call, project)
        return self._categories[key]

    async def _category(self, project: str, work_item_type: str, state: str | None) -> str | None:
        """The category of `state` in `work_item_type` (None: guess it from the name)."""
        states = await self._states(project, work_item_type)
        if not state or not states:
            return None
        return states.get(state.casefold())

    async def _check_types(self, project: str) -> None:
        """Every configured work item type exists in the project, else FatalError naming the
        missing ones: a WIQL filter on a misspelt type only matches nothing, which must not
        read as "no work items"."""
        missing = await self._missing_types(project)
        if missing:
            names = ", ".join(repr(t) for t in missing)
            raise FatalError(
                f"Azure DevOps project {project!r} has no work item type {names}: "
                "fix work_item_types (type names as the project's process shows them, e.g. "
                "'User Story', 'Bug')"
            )

    async def _missing_types(self, project: str) -> list[str]:
        types = self.config.work_item_types or []
        return [t for t in types if await self._states(project, t) is None]

    def _type_lost(self, project: str, work_item_type: str) -> str:
        return (
            f"project {project!r} has no work item type {work_item_type!r} (any"
            " more): fix work_item_types"
        )

    async def _map_page(
        self, raws: Iterable[Mapping[str, Any]], project: str
    ) -> list[tuple[Position | None, WorkItem | Rejected]]:
        """Each batch entry mapped on its own: a WorkItem, or a Rejected naming it and why. With
        each, its place in the (ChangedDate, Id) order when its ChangedDate can be read."""
        out: list[tuple[Position | None, WorkItem | Rejected]] = []
        raws = list(raws)
        tree = None
        if any(names_a_sprint(raw.get("fields") or {}) for raw in raws):
            tree = await self._iteration_tree(project)
        now = datetime.now(UTC)
        for raw in raws:
            fields = raw.get("fields") or {}
            item_id = int(raw["id"])
            work_item_type = fields.get(F_TYPE)
            state = fields.get(F_STATE)
            category = (
                await self._category(
                    project, work_item_type, state if isinstance(state, str) else None
                )
                if isinstance(work_item_type, str) and work_item_type
                else None
            )
            try:
                item = map_work_item(
                    raw,
                    config=self.config,
                    site=self.site,
                    category=category,
                    project=project,
                    iterations=tree,
                    extras=self._extras or (),
                    now=now,
                )
            except UnmappableItem as exc:
                changed = parse_time(fields.get(F_CHANGED))
                place = Position(changed, item_id) if changed is not None else None
                out.append((place, Rejected(f"{self.site}/{item_id}", exc.reason, str(item_id))))
                continue
            out.append((Position(item.updated_at, item_id), item))
        return out

    # -- the contract -------------------------------------------------------------------------
    async def check(self) -> None:
        """The credential works and each project (and the area path) exists: one WIQL with
        $top=1 per project; and each configured work item type exists there (its states)."""
        query = (
            "SELECT [System.Id] FROM WorkItems WHERE "
            + " AND ".join(scope_clauses(self.config))
            + " ORDER BY [System.Id] ASC"
        )
        for project in self.config.project_names():
            try:
                await self._wiql(query, 1, project)
            except _CapExceeded:
                pass  # the query ran (a server that counts before $top): credential, scope fine
            await self._check_types(project)

    def _scope_types(self) -> list[str | None]:
        """One scope per configured work item type; one for all types when none is named."""
        if not self.config.work_item_types:
            return [None]
        return list(self.config.work_item_types)

    async def scopes(self) -> list[str]:
        return [
            scope_key(self.config, t, project)
            for project in self.config.project_names()
            for t in self._scope_types()
        ]

    def _project_lost(self) -> bool:
        """With several projects, one that is gone is a lost scope (the others go on, the run
        fails naming it); a config of one project fails outright."""
        return len(self.config.project_names()) > 1

    async def changes(self, since: Mapping[str, datetime]) -> AsyncIterator[Page]:
        """Per project and scope (work item type), pages of work items changed at or after
        `since[scope]`, in (ChangedDate, Id) order."""
        for project in self.config.project_names():
            try:
                async for page in self._project_changes(project, since):
                    yield page
            except _ProjectGone as gone:
                if not self._project_lost():
                    raise
                lost = {scope_key(self.config, t, project): str(gone) for t in self._scope_types()}
                yield Page([], {}, lost=lost)

    async def _project_changes(
        self, project: str, since: Mapping[str, datetime]
    ) -> AsyncIterator[Page]:
        missing = await self._missing_types(project)
        for work_item_type in self._scope_types():
            scope = scope_key(self.config, work_item_type, project)
            if work_item_type in missing:  # lost: the other types go on, the run fails naming it
                yield Page([], {}, lost={scope: self._type_lost(project, work_item_type)})
                continue
            async for page in self._scope_changes(project, scope, work_item_type, since.get(scope)):
                yield page

    async def _scope_changes(
        self, project: str, scope: str, work_item_type: str | None, since: datetime | None
    ) -> AsyncIterator[Page]:
        start = utc(since) if since is not None else None
        window = _Window(since=start)
        first_as_of: datetime | None = None
        final_sent = False
        # An item rejected without a readable ChangedDate gives the window no position, so the
        # next query may read it again: report each rejected id once per run.
        reported: set[str] = set()
        while True:
            query = changes_query(
                self.config,
                since=start,
                after=window.after,
                upto=window.upto,
                work_item_type=work_item_type,
            )
            try:
                ids, as_of = await self._wiql(query, self.config.wiql_top, project)
            except _CapExceeded:
                window.narrow((first_as_of or datetime.now(UTC)) + timedelta(days=1))
                continue
            first_as_of = first_as_of or as_of
            full = len(ids) >= self.config.wiql_top
            last_query = not full and window.upto is None
            size = self.config.batch_size
            chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
            for n, chunk in enumerate(chunks):
                items: list[WorkItem] = []
                rejected: list[Rejected] = []
                fetched = await self._fetch(chunk, project)
                for place, mapped in await self._map_page(fetched, project):
                    if place is not None:  # a rejected item counts as read: it may be passed
                        window.saw(place, as_of)
                    if isinstance(mapped, WorkItem):
                        items.append(replace(mapped, scope=scope))
                    elif mapped.external_id not in reported:
                        reported.add(mapped.external_id)
                        rejected.append(mapped)
                final = last_query and n == len(chunks) - 1
                if final:
                    final_sent = True
                    yield Page(items, {scope: first_as_of}, rejected)
                elif items or rejected:
                    yield Page(items, window.checkpoint(scope, first_as_of), rejected)
            if last_query:
                break
            window.advance(full, (first_as_of or datetime.now(UTC)) + timedelta(days=1))
        if not final_sent:
            yield Page([], {scope: first_as_of or datetime.now(UTC)})

    async def all_ids(self) -> AsyncIterator[ScopeIds]:
        """Every work item id in scope, project by project and scope (work item type) by scope,
        by id, `wiql_top` at a time."""
        for project in self.config.project_names():
            try:
                async for part in self._project_ids(project):
                    yield part
            except _ProjectGone as gone:
                if not self._project_lost():
                    raise
                for t in self._scope_types():
                    yield ScopeIds(scope_key(self.config, t, project), [], lost=str(gone))

    async def _project_ids(self, project: str) -> AsyncIterator[ScopeIds]:
        missing = await self._missing_types(project)
        for work_item_type in self._scope_types():
            scope = scope_key(self.config, work_item_type, project)
            if work_item_type in missing:  # lost, never an empty listing taken for deletions
                yield ScopeIds(scope, [], lost=self._type_lost(project, work_item_type))
                continue
            async for ids in self._scope_ids(project, work_item_type):
                yield ScopeIds(scope, [f"{self.site}/{i}" for i in ids])

    async def _scope_ids(
        self, project: str, work_item_type: str | None
    ) -> AsyncIterator[list[int]]:
        top = self.config.wiql_top
        window = _IdWindow(top)
        while True:
            query = ids_query(
                self.config,
                after_id=window.after,
                upto_id=window.upto,
                work_item_type=work_item_type,
            )
            try:
                ids, _ = await self._wiql(query, top, project)
            except _CapExceeded:
                window.narrow()
                continue
            if ids:
                yield ids
            if not window.advance(ids):
                return

    # -- history (connectors.azure_devops_history) ---------------------------------------------
    def feed_scopes(self) -> list[str]:
        """Every scope: each project's history is one reporting revisions feed."""
        return [
            scope_key(self.config, t, project)
            for project in self.config.project_names()
            for t in self._scope_types()
        ]

    async def history(self, todo: HistoryTodo) -> AsyncIterator[HistoryPage]:
        """Each asked-for project's revisions since its checkpoint, a page per batch, until
        the budget would not cover the next batch."""
        budget = Budget(todo.budget)
        config = self.config
        for project in config.project_names():
            scopes = [scope_key(config, t, project) for t in self._scope_types()]
            start = start_mark(todo.feeds, scopes)
            if start is None:
                continue
            feed = ProjectFeed(
                self,
                project,
                scopes,
                start,
                budget,
                config.history_page_size,
                partial(in_scope, config.work_item_types, config.area_path),
            )
            try:
                async for page in feed.pages():
                    yield page
            except _ProjectGone:
                if not self._project_lost():
                    raise
                continue  # the item phase reports the lost project; the others go on
            if budget.spent >= budget.total:
                return

    async def read_revisions(self, project: str, token: str | None, size: int) -> RevisionBatch:
        """One reporting revisions batch (GET .../wit/reporting/workitemrevisions): every
        revision (includeLatestOnly=false), identities as IdentityRef, only the fields history
        needs; a field the organization lacks (TF51535) is dropped and the batch asked again."""
        requests = 0
        while True:
            fields = [f for f in HISTORY_FIELDS_READ if f not in self._history_dropped]

            def call(wit: Any, fields: list[str] = fields) -> Any:
                wit.read_reporting_revisions_get(
                    project=project,
                    fields=fields,
                    continuation_token=token,
                    include_identity_ref=True,
                    include_latest_only=False,
                    max_page_size=size,
                )
                # The SDK's ReportingWorkItemRevisionsBatch has an empty attribute map (azure-
                # devops 7.1.0b4, v7_0 and v7_1): its result holds none of the answer's fields.
                # The request is the SDK's; the answer is read from the response itself.
                return _last_json()

            requests += 1
            try:
                batch = await self._call("reporting revisions", call, project)
            except _UnknownField as missing:
                if missing.name in NEEDED or missing.name in self._history_dropped:
                    raise RetriableError(
                        f"Azure DevOps refused the field {missing.name} of a revision read"
                    ) from None
                self._history_dropped.add(missing.name)
                continue
            if not isinstance(batch, Mapping) or not isinstance(batch.get("values"), list):
                raise RetriableError("Azure DevOps sent a malformed reporting revisions batch")
            values = [v for v in batch["values"] if isinstance(v, Mapping)]
            token_after = batch.get("continuationToken")
            return RevisionBatch(
                values,
                token_after if isinstance(token_after, str) and token_after else None,
                batch.get("isLastBatch") is True,
                requests,
            )

    async def read_as_of(
        self, project: str, ids: Sequence[int], at: datetime
    ) -> list[Mapping[str, Any]]:
        """Up to 200 items as they were at `at`: one workItemsBatch with asOf (an item that
        cannot be read, or did not exist then, is left out)."""
        fields = [f for f in HISTORY_FIELDS_READ if f not in self._history_dropped]

        def call(wit: Any) -> list[Mapping[str, Any]]:
            from azure.devops.v7_0.work_item_tracking.models import WorkItemBatchGetRequest

            request = WorkItemBatchGetRequest(
                ids=list(ids), fields=fields, as_of=at, error_policy="omit"
            )
            answer = _work_items_batch(wit, request, project)
            return [
                {"id": w["id"], "rev": w["rev"], "fields": w["fields"]}
                for w in answer
                if w is not None and w["id"] is not None
            ]

        return await self._call("work items as of", call, project)

    async def load_states(self, project: str, kinds: Sequence[str]) -> int:
        """The states of each type (fetched once per type per connector): the requests made."""
        before = len(self._categories)
        for kind in kinds:
            await self._states(project, kind)
        return len(self._categories) - before

    def state_status(self, project: str, state: str, work_item_type: str | None) -> Status:
        """A state name through the item mapping: its category in the type, the admin's
        status_map."""
        states = self._categories.get((project.casefold(), (work_item_type or "").casefold()))
        category = states.get(state.casefold()) if states else None
        return status_of({F_STATE: state}, category, self.config.status_map)

    # -- remap (offline, `c9-sync remap`; docs/trackers/azure_devops.md#remap) ----------------
    def mapping_context(self) -> dict[str, Any] | None:
        """The state categories of each work item type this connector read (project -> type ->
        state -> category, all case-folded; a type the project lacks: null): what mapping a
        stored work item needs besides its fields."""
        states: dict[str, dict[str, dict[str, str] | None]] = {}
        for (project, kind), categories in self._categories.items():
            states.setdefault(project, {})[kind] = categories
        return {"states": states} if states else None

    @classmethod
    def map_stored(
        cls,
        config: AzureDevOpsConfig,
        raw: Mapping[str, Any],
        *,
        scope: str,
        context: Mapping[str, Any],
    ) -> WorkItem:
        """A stored work item (its workItemsBatch entry) mapped again with `config` through
        `map_work_item`, its state's category from `mapping_context`: no request. A type whose
        states no run has read since 0014 cannot be mapped yet (a sync reading such an item
        learns them)."""
        fields = raw.get("fields") or {}
        project = scope.partition("/")[0] or None
        kind, state = fields.get(F_TYPE), fields.get(F_STATE)
        category = None
        if isinstance(kind, str) and kind:
            types = (context.get("states") or {}).get((project or "").casefold()) or {}
            if kind.casefold() not in types:
                raise ValueError(f"the states of {kind!r} in {project!r} are not known yet")
            states = types[kind.casefold()]
            if states and isinstance(state, str):
                category = states.get(state.casefold())
        item = map_work_item(
            raw, config=config, site=org_identity(config.organization_url), category=category,
            project=project,
        )  # fmt: skip
        return replace(item, scope=scope)

    async def aclose(self) -> None:
        """Drop the client (its HTTP sessions live in the worker threads and close with them)."""
        self._client = None

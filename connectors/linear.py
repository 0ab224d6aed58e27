"""Linear connector: the issues of the configured teams, over Linear's GraphQL API (httpx, async).

Requests. One POST endpoint (`api_url`, default https://api.linear.app/graphql). Every query is a
constant text; every value (team keys, the `since` time, cursors, page sizes) travels in
`variables`, so nothing from config or from upstream is ever spliced into GraphQL.

Authentication (`auth_scheme`, `oauth`). Linear takes a personal API key (`lin_api_…`) raw in the
`Authorization` header and an OAuth access token as `Bearer <token>`
(docs/trackers/linear.md#authentication). The config says which one the token is: `auth_scheme:
"api_key"` (default) sends the token as is, `"oauth"` sends `Bearer <token>`. Nothing is guessed
from the token's shape. With `oauth: {client_id, client_secret…}` instead of `token*`, the access
token comes from an OAuth grant with rotating refresh tokens kept by the worker
(`connectors.linear_oauth`): renewed before it expires, and once more when Linear refuses it.

Ordering (docs/trackers/linear.md#paging). `orderBy: updatedAt` lists the most recently updated
issue FIRST, and the `sort:` argument that could flip it is marked [INTERNAL] in Linear's schema, so
we do not rely on it. Instead we walk the documented newest-first order from its far end with Relay
backward pagination (`last: N` while `pageInfo.hasPreviousPage`; Linear documents both first/after
and last/before). The next page is asked by keyset, not `before:` the page's cursor: a cursor names
an issue and is resolved at that issue's *current* `updatedAt`, so an edit of it during the walk
would move the walk past every issue in between (a gap the checkpoint then makes permanent). The
filter asks instead for the issues changed after the newest one read, or at that very instant and
not read yet (`id: {nin: …}`, which also walks a tie larger than a page). Each page therefore
holds the N least recently updated issues not yet read, and reversed it runs oldest to newest, so
the pages come oldest change first and each can carry an honest checkpoint: the newest `updatedAt`
yielded so far (issues sharing that instant are re-read next run, the `since` filter being `gte` and
the overlap 2 minutes). An issue updated while we walk jumps to the newest end, which we have not
reached yet, so it is read later in the same run or, if the server cuts the walk short, by the next
run: the checkpoint is the newest time actually *seen*, never the run's start. If a server ever
answers out of that order, we stop advancing the checkpoint until the scope's walk is complete
(logged as `linear.order_unexpected`; the walk then goes on `before:` the server's cursor, the
keyset meaning nothing in a disorderly listing) instead of committing a point we cannot vouch for;
and when
the first page says it has a next page, one probe (`first: 1, after: endCursor`) checks that no
older issue follows (a server that read `last` as `first` stops the run before anything is yielded).
Checkpoints are also clamped to the server's clock (the HTTP `Date` of the run's first answer).

Scope. One cursor per team key: a team added to `team_keys` later is read in full on its next run
instead of being hidden behind the other teams' cursor. Pages are oldest-first within each team.
`all_ids()` lists every issue of all configured teams at once, archived included, trashed left out
(trashed issues are deleted for us: `changes` reports them `removed`).

Richer model (docs/trackers/linear.md#richer-model). Each issue's parent, assignee and cycle come
with it in the changes listing (`connectors.linear_model`): sub-issue or issue, labels, the
assignee without any e-mail address, the cycle as a sprint. No request of its own.

History (docs/trackers/linear.md#history). Linear has no workspace-wide history query: every issue
`changes()` yields is `history_pending`, and `history()` reads the IssueHistory of the pending
ones by id, 50 issues with 10 entries each a request, the rest of a longer history 50 entries a
request, sorted by createdAt here (Linear does not state its order), with a synthetic creation
entry when the history is whole. It never waits for a budget and leaves a quarter of the hour's
complexity to the item sync: it stops and the issues stay pending for the next run.

Errors and rate limits (docs/trackers/linear.md#rate-limits). Linear scores each query before
running it and refuses one above 10,000 points, so every connection we ask for says its size
(`first`/`last`; an issue's labels too) and each query's worst case stays under
COMPLEXITY_CEILING. Before each request we read the budgets the latest answers reported (requests,
complexity at the query's last cost, an endpoint's own limit): a budget that cannot take the
request is waited out until its reset, and the last few a budget allows are spread until it, never
past the cap or the run's deadline (a reset further off ends the run with RetriableError and its
retry_after, before anything is sent). Linear reports a rate limit as HTTP 400 (sometimes 429)
whose body has `errors[].extensions.code == "RATELIMITED"` (or `type == "ratelimited"`); we then
wait until the exhausted bucket's reset (epoch milliseconds) with `connectors.retry.with_retries`,
which never sleeps past the cap or the run's deadline. GraphQL errors are checked in every body,
200 or not: authentication and validation errors (a query too complex among them) are fatal with
Linear's own message; Linear's internal/lock-timeout errors, 5xx, timeouts and connection
failures are retriable; a 200 whose body is not JSON is a plain ConnectorError. httpx exceptions
are re-raised `from None` with our own text, because their context can carry the request headers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, field_validator, model_validator

from connectors import http, linear_model
from connectors.base import (
    PRIORITY_HIGH,
    PRIORITY_HIGHEST,
    PRIORITY_LOW,
    PRIORITY_MEDIUM,
    PRIORITY_NONE,
    ConfigError,
    ConnectorConfig,
    ConnectorContext,
    ConnectorError,
    FatalError,
    HistoryEntry,
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
from connectors.linear_oauth import REAUTHORIZE, LinearOAuth, LinearTokens
from connectors.retry import with_retries

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.linear.app/graphql"
#: The largest `first` / `last` the connector asks for. 250 is the ceiling third-party sources give
#: (Linear's pagination page names none); a changes page of 250 issues stays under
#: COMPLEXITY_CEILING (tests/unit/test_linear_complexity.py), so the page size is bounded by both.
MAX_PAGE_SIZE = 250

# ---------------------------------------------------------------------------------------------
# Complexity (docs/trackers/linear.md#rate-limits): Linear scores a query before running it, 0.1
# a property, 1 an object, and a connection multiplies its children by its `first` / `last`, or
# by 50 when it has neither; a query above 10,000 points is refused. Every connection below
# therefore says how many nodes it wants, and each query's worst case stays under the ceiling.
# ---------------------------------------------------------------------------------------------
MAX_QUERY_COMPLEXITY = 10_000  # Linear's maximum for a single query
COMPLEXITY_CEILING = 7_500  # ours: a quarter under it, for a scoring that reads differently
#: Labels read with each issue of a changes page. Issues rarely have more; one that does says so
#: (`labels.pageInfo.hasNextPage`) and has all its labels read with LABELS_QUERY. Eight, not
#: ten, since the issue's parent, assignee and cycle are read too (linear_model.MODEL_SELECTION):
#: a page of MAX_PAGE_SIZE issues must stay under COMPLEXITY_CEILING.
LABELS_PER_ISSUE = 8
LABELS_PAGE = 100  # labels per LABELS_QUERY page

# ---------------------------------------------------------------------------------------------
# Queries: constant texts; values only ever go in `variables`.
# ---------------------------------------------------------------------------------------------
_ISSUE_FIELDS = (
    """
      id identifier title description priority estimate url
      createdAt updatedAt startedAt completedAt canceledAt archivedAt trashed
      state { id name type }
      team { id key name }
      labels(first: """
    + str(LABELS_PER_ISSUE)
    + """) { nodes { name } pageInfo { hasNextPage } }"""
    + linear_model.MODEL_SELECTION
)

CHANGES_QUERY = (
    """
query SyncIssueChanges($filter: IssueFilter!, $last: Int!, $before: String) {
  issues(filter: $filter, last: $last, before: $before, orderBy: updatedAt, includeArchived: true) {
    nodes {"""
    + _ISSUE_FIELDS
    + """    }
    pageInfo { hasPreviousPage hasNextPage startCursor endCursor }
  }
}
"""
)

PROBE_QUERY = """
query SyncIssueProbe($filter: IssueFilter!, $after: String) {
  issues(filter: $filter, first: 1, after: $after, orderBy: updatedAt, includeArchived: true) {
    nodes { id }
  }
}
"""

IDS_QUERY = """
query SyncIssueIds($filter: IssueFilter!, $first: Int!, $after: String) {
  issues(filter: $filter, first: $first, after: $after, includeArchived: true) {
    nodes { id trashed team { key } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

LABELS_QUERY = (
    """
query SyncIssueLabels($id: String!, $after: String) {
  issue(id: $id) {
    labels(first: """
    + str(LABELS_PAGE)
    + """, after: $after) { nodes { name } pageInfo { hasNextPage endCursor } }
  }
}
"""
)

#: History (docs/trackers/linear.md#history): Linear has no workspace-wide history query, so the
#: history of the issues a run saw change is read per group of HISTORY_ISSUES issues, each with
#: its first HISTORY_ENTRIES entries; an issue with more has the rest read alone, HISTORY_PAGE a
#: request. An entry costs 14.5 points a slot whether it is filled or not
#: (tests/unit/test_linear_complexity.py), and Linear's hourly complexity budget (250,000) binds
#: long before its request budget (5,000): so the slots an issue reserves are kept near what a
#: typical issue has (creation, an assignment, a few moves), not at the most a query allows.
HISTORY_ISSUES = 50
HISTORY_ENTRIES = 10
HISTORY_PAGE = 50
HISTORY_GROUP_POINTS = 7_375.0  # 50 x (2.5 + 10 x 14.5)
HISTORY_MORE_POINTS = 726.0  # 1 + 50 x 14.5
#: History stops for the run (its issues stay pending) rather than leave less than this share
#: of the hour's complexity budget to the item sync.
HISTORY_RESERVE = 0.25

_HISTORY_FIELDS = """
        id createdAt
        actor { id name }
        botActor { id name type }
        fromState { name type } toState { name type }
        fromAssignee { name } toAssignee { name }
        fromCycle { number name } toCycle { number name }
        fromParent { identifier } toParent { identifier }
        fromPriority toPriority fromEstimate toEstimate
"""

HISTORY_QUERY = (
    """
query SyncIssueHistory($filter: IssueFilter!, $first: Int!, $entries: Int!) {
  issues(filter: $filter, first: $first, includeArchived: true) {
    nodes {
      id createdAt
      state { id name type }
      history(first: $entries) {
        nodes {"""
    + _HISTORY_FIELDS
    + """        }
        pageInfo { hasNextPage endCursor }
      }
    }
  }
}
"""
)

HISTORY_MORE_QUERY = (
    """
query SyncIssueHistoryMore($id: String!, $after: String) {
  issue(id: $id) {
    history(first: """
    + str(HISTORY_PAGE)
    + """, after: $after) {
      nodes {"""
    + _HISTORY_FIELDS
    + """      }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""
)

CHECK_QUERY = """
query SyncCheck($keys: [String!]!, $first: Int!) {
  viewer { id }
  teams(filter: { key: { in: $keys } }, first: $first) {
    nodes { id key name }
  }
}
"""


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------
class LinearConfig(ConnectorConfig):
    """`integrations.config` of a Linear integration."""

    no_custom_fields = "Linear issues"
    team_keys: list[str] = Field(min_length=1)
    api_url: str = DEFAULT_API_URL
    page_size: int = Field(default=100, ge=1, le=MAX_PAGE_SIZE)
    timeout: float = Field(default=30.0, gt=0, le=600)
    #: "api_key": the token is a personal API key, sent raw; "oauth": sent as `Bearer <token>`.
    auth_scheme: Literal["api_key", "oauth"] = "api_key"
    #: an OAuth app's grant instead of `token*` (connectors.linear_oauth)
    oauth: LinearOAuth | None = None

    def uses_token(self) -> bool:
        return self.oauth is None

    @model_validator(mode="after")
    def _token_or_oauth(self) -> LinearConfig:
        given = [k for k in ("token", "token_env", "token_file") if getattr(self, k) is not None]
        if self.oauth is not None and given:
            raise ValueError(f"give oauth or {given[0]}, not both")
        return self

    @field_validator("team_keys")
    @classmethod
    def _clean_team_keys(cls, value: list[str]) -> list[str]:
        keys: list[str] = []
        for raw in value:
            key = raw.strip()
            if not key:
                raise ValueError("team_keys: a team key is empty")
            if key not in keys:
                keys.append(key)
        return keys

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_url(value, "api_url", "https://api.linear.app/graphql")


# ---------------------------------------------------------------------------------------------
# Pure mapping: Linear issue JSON -> WorkItem
# ---------------------------------------------------------------------------------------------
#: Linear 0 none, 1 urgent, 2 high, 3 medium, 4 low -> ours 0 none … 4 highest.
PRIORITY_FROM_LINEAR = {
    0: PRIORITY_NONE,
    1: PRIORITY_HIGHEST,
    2: PRIORITY_HIGH,
    3: PRIORITY_MEDIUM,
    4: PRIORITY_LOW,
}

STATE_TYPE_STATUS = {
    "triage": Status.QUEUED,
    "backlog": Status.QUEUED,
    "unstarted": Status.QUEUED,
    "started": Status.IN_PROGRESS,
    "completed": Status.COMPLETED,
    "canceled": Status.CANCELLED,
    "duplicate": Status.CANCELLED,
}
REVIEW_WORDS = ("review", "reviewing", "pr", "qa", "merge")
BLOCKED_LABEL = "blocked"
_OPEN = (Status.QUEUED, Status.IN_PROGRESS, Status.PR_READY)


def parse_time(value: Any) -> datetime | None:
    """Linear's ISO 8601 UTC timestamp (`2025-05-01T12:34:56.789Z`) as an aware datetime; None
    when absent. Stricter than `connectors.http.parse_time`, which it calls: Linear's schema types
    these fields as DateTime, so other text means the answer is not what the schema promises and
    is refused rather than read as "no time"."""
    if not value:
        return None
    parsed = http.parse_time(value)
    if parsed is None:
        raise ConnectorError(f"Linear sent a timestamp that is not ISO 8601: {value!r}")
    return parsed


def format_time(value: datetime) -> str:
    """An aware datetime as Linear writes it: UTC, milliseconds, `Z`."""
    return utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def map_priority(value: Any) -> int:
    """Linear's priority number onto our 0..4 scale (unknown values: none)."""
    try:
        return PRIORITY_FROM_LINEAR.get(round(float(value)), PRIORITY_NONE)
    except (TypeError, ValueError, OverflowError):
        return PRIORITY_NONE


def label_names(node: Mapping[str, Any]) -> list[str]:
    labels = node.get("labels") or {}
    return [str(n.get("name") or "") for n in labels.get("nodes") or [] if isinstance(n, Mapping)]


def map_issue_status(
    state: Mapping[str, Any] | None, labels: Sequence[str], overrides: Mapping[str, Status]
) -> Status:
    """By `state.type` (docs/trackers/linear.md#status-mapping); a started state whose name suggests
    review is `pr_ready`; the admin's `status_map` (keyed by state name) overrides; an open issue
    labelled "Blocked" is `blocked` (the label is the more specific signal, so it wins over an open
    state's mapping)."""
    state = state or {}
    name = state.get("name")
    state_type = str(state.get("type") or "").casefold()
    default = STATE_TYPE_STATUS.get(state_type, Status.QUEUED)
    if default is Status.IN_PROGRESS and status_name_suggests(name, *REVIEW_WORDS):
        default = Status.PR_READY
    status = map_status(name, default, overrides)
    if status in _OPEN and any(label.strip().casefold() == BLOCKED_LABEL for label in labels):
        return Status.BLOCKED
    return status


def map_story_points(estimate: Any) -> int | None:
    """`estimate` (a Float, on the team's scale) as whole story points, rounded half up as the
    Jira and Azure DevOps connectors round (`work_items.story_points` is an integer): 0.5 is 1, not
    Python's half-to-even 0 (docs/trackers/linear.md#priority-and-story-points). None when absent
    or not a finite number."""
    if isinstance(estimate, bool) or not isinstance(estimate, int | float):
        return None
    if not math.isfinite(estimate):
        return None
    return math.floor(estimate + 0.5)


class MalformedIssue(ConnectorError):
    """One issue node that does not match Linear's schema (a field of the wrong type, a time that
    is not ISO 8601): it is rejected on its own (`Page.rejected`, naming the field) while the
    rest of the page and every later page still land."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Linear sent a malformed issue: {reason}")
        self.reason = reason


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _text(node: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    """A String field (Linear's schema: `description` is a nullable Markdown String, `title`,
    `identifier` and `url` are String!). A value of another type is refused, never str()-ed."""
    value = node.get(name)
    if isinstance(value, str) or (value is None and not required):
        return value
    raise MalformedIssue(f"{name} is {type(value).__name__}, not a string")


def _time(node: Mapping[str, Any], name: str) -> datetime | None:
    """A DateTime field: null is None, anything but ISO 8601 text is refused."""
    value = node.get(name)
    if value is None:
        return None
    parsed = http.parse_time(value) if isinstance(value, str) else None
    if parsed is None:
        raise MalformedIssue(f"{name} is not an ISO 8601 time: {_shown(value)}")
    return parsed


def _object(node: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    value = node.get(name)
    if value is None or isinstance(value, Mapping):
        return value
    raise MalformedIssue(f"{name} is {type(value).__name__}, not an object")


def map_issue(
    node: Mapping[str, Any],
    *,
    scope: str,
    overrides: Mapping[str, Status],
    now: datetime | None = None,
) -> WorkItem:
    """One issue node (as selected by CHANGES_QUERY) as a WorkItem. `raw` is the node itself
    (an assignee's name that is an e-mail address blanked).
    Raises MalformedIssue (naming the field) when the node does not match the schema; a value
    of the richer model that does not (linear_model) is left out and logged, the issue kept.
    `now` (the server's clock when known) tells a future cycle from an active one."""
    issue_id = node.get("id")
    if not isinstance(issue_id, str) or not issue_id:
        raise MalformedIssue(f"id is {_shown(issue_id)}")
    updated = _time(node, "updatedAt")
    if updated is None:
        raise MalformedIssue("no updatedAt")
    title = _text(node, "title")
    state = _object(node, "state")
    if state is not None:
        for name in ("name", "type"):
            if not isinstance(state.get(name), str | None):
                raise MalformedIssue(f"state.{name} is {type(state[name]).__name__}, not a string")
    labels = _object(node, "labels")
    if labels is not None and not isinstance(labels.get("nodes"), list | None):
        raise MalformedIssue(f"labels.nodes is {type(labels['nodes']).__name__}, not a list")
    started = _time(node, "startedAt")
    completed = _time(node, "completedAt") or _time(node, "canceledAt")
    model, problems = linear_model.model_fields(node, now=now or datetime.now(UTC))
    for problem in problems:
        http.log_event(
            log, "linear.field_unreadable", logging.WARNING, issue=issue_id, detail=problem
        )
    return WorkItem(
        external_id=issue_id,
        external_key=_text(node, "identifier"),
        external_url=_text(node, "url"),
        title=title or "",
        description=_text(node, "description"),
        status=map_issue_status(state, label_names(node), overrides),
        priority=map_priority(node.get("priority")),
        story_points=map_story_points(node.get("estimate")),
        updated_at=updated,
        started_at=started,
        completed_at=completed,
        raw=linear_model.without_addresses(node),
        scope=scope,
        removed=node.get("trashed") is True,
        # its updatedAt moved: its history is read by id after the pages (`history`)
        history_pending=True,
        **model,
    )


def map_nodes(
    nodes: Sequence[Mapping[str, Any]],
    *,
    scope: str,
    overrides: Mapping[str, Status],
    now: datetime | None = None,
) -> tuple[list[WorkItem], list[Rejected]]:
    """Each node mapped on its own: the issues, and the ones that cannot be mapped, named by id
    and identifier with the reason."""
    items: list[WorkItem] = []
    rejected: list[Rejected] = []
    for node in nodes:
        try:
            items.append(map_issue(node, scope=scope, overrides=overrides, now=now))
        except MalformedIssue as exc:
            key = node.get("identifier")
            rejected.append(
                Rejected(str(node.get("id")), exc.reason, key if isinstance(key, str) else None)
            )
    return items, rejected


# ---------------------------------------------------------------------------------------------
# Pure mapping: IssueHistory nodes -> HistoryEntry (docs/trackers/linear.md#history)
# ---------------------------------------------------------------------------------------------
#: Linear's words for its priority numbers (the schema's `priorityLabel`).
PRIORITY_LABELS = {0: "No priority", 1: "Urgent", 2: "High", 3: "Medium", 4: "Low"}


def _priority_label(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return PRIORITY_LABELS.get(round(value), f"{value:g}")


def _estimate_text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return f"{value:g}"


def _name(obj: Any, key: str = "name") -> str | None:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, str) and value else None


def history_actor(entry: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Who made a change: the user's name and id, else the bot's (an integration or automation);
    never an e-mail address (none is selected, and a name that is one is dropped)."""
    actor = entry.get("actor")
    if isinstance(actor, Mapping):
        return linear_model.person_name(actor.get("name")), _name(actor, "id")
    bot = entry.get("botActor")
    if isinstance(bot, Mapping):
        return _name(bot) or _name(bot, "type"), _name(bot, "id")
    return None, None


#: (field, the IssueHistory pair's stem, its value in Linear's words)
_PAIRS: tuple[tuple[str, str, Callable[[Any], str | None]], ...] = (
    ("assignee", "Assignee", lambda user: linear_model.person_name(_name(user))),
    ("sprint", "Cycle", linear_model.cycle_name),
    ("parent", "Parent", lambda issue: _name(issue, "identifier") or _name(issue, "id")),
    ("priority", "Priority", _priority_label),
    ("story_points", "Estimate", _estimate_text),
)


def _changed_at(entry: Mapping[str, Any]) -> datetime | None:
    value = entry.get("createdAt")
    return http.parse_time(value) if isinstance(value, str) else None


def history_entries(
    issue: Mapping[str, Any],
    nodes: Sequence[Mapping[str, Any]],
    overrides: Mapping[str, Status],
    *,
    whole: bool,
) -> list[HistoryEntry]:
    """An issue's IssueHistory nodes as HistoryEntry records, oldest first (Linear does not say
    in which order it lists them: sorted here by createdAt, then id). Change id = the entry's id;
    one entry may change several fields. Status values are state names, mapped by state type as
    the issue's own status is (labels aside: history does not say what they were then).

    When the whole history was read (`whole`) and no entry carries the initial state, a
    synthetic creation entry `created:<issue id>` is added at the issue's createdAt: to the
    first change's fromState, or to the current state when the state never changed. An entry
    without an id or a readable createdAt is left out."""
    readable = [
        (at, n) for n in nodes if (at := _changed_at(n)) is not None and _name(n, "id") is not None
    ]
    readable.sort(key=lambda pair: (pair[0], str(pair[1]["id"])))
    out: list[HistoryEntry] = []
    first_from: Mapping[str, Any] | None = None
    creation_seen = False
    for at, node in readable:
        name, actor_id = history_actor(node)
        change = functools.partial(
            HistoryEntry, str(node["id"]), changed_at=at, actor_name=name, actor_id=actor_id
        )
        old, new = node.get("fromState"), node.get("toState")
        if isinstance(new, Mapping):
            if not isinstance(old, Mapping):
                creation_seen = True
            elif first_from is None:
                first_from = old
            out.append(
                change(
                    field="status",
                    from_value=_name(old),
                    to_value=_name(new),
                    from_status=(
                        map_issue_status(old, (), overrides) if isinstance(old, Mapping) else None
                    ),
                    to_status=map_issue_status(new, (), overrides),
                )
            )
        for field, stem, words in _PAIRS:
            before, after = node.get(f"from{stem}"), node.get(f"to{stem}")
            if before is not None or after is not None:
                out.append(change(field=field, from_value=words(before), to_value=words(after)))
    created = _changed_at(issue)
    initial = first_from if first_from is not None else issue.get("state")
    if whole and not creation_seen and created is not None and isinstance(initial, Mapping):
        out.insert(
            0,
            HistoryEntry(
                change_id=f"created:{issue['id']}",
                field="status",
                changed_at=created,
                to_value=_name(initial),
                to_status=map_issue_status(initial, (), overrides),
            ),
        )
    return out


def history_page(conn: Any, what: str) -> tuple[list[Mapping[str, Any]], bool, Any]:
    """The entries of one `history` connection, whether more follow and the cursor to go on
    from; a page that promises more without a cursor is RetriableError (as `label_page`)."""
    nodes = conn.get("nodes") if isinstance(conn, Mapping) else None
    info = conn.get("pageInfo") if isinstance(conn, Mapping) else None
    if not isinstance(nodes, list) or not isinstance(info, Mapping):
        raise ConnectorError(f"Linear's answer has no history.nodes / pageInfo ({what})")
    if not all(isinstance(n, Mapping) for n in nodes):
        raise ConnectorError(f"Linear's answer has a history entry that is not an object ({what})")
    more = info.get("hasNextPage")
    if not isinstance(more, bool):
        raise RetriableError(f"Linear's answer ({what}) has no pageInfo.hasNextPage")
    cursor = info.get("endCursor")
    if more and (not nodes or not cursor):
        raise RetriableError(f"Linear said hasNextPage but sent no cursor ({what})")
    return list(nodes), more, cursor


def _groups(ids: Sequence[str], size: int) -> Iterator[list[str]]:
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), size):
        yield unique[start : start + size]


# ---------------------------------------------------------------------------------------------
# Pure response classification
# ---------------------------------------------------------------------------------------------
MAX_RESET_WAIT = 3600.0  # Linear's buckets are hourly; anything longer is a bad header
_RETRIABLE_TYPES = {"internal error", "lock timeout", "network error"}
_RETRIABLE_CODES = {"INTERNAL_SERVER_ERROR", "LOCK_TIMEOUT"}


def _error_kind(error: Mapping[str, Any]) -> tuple[str, str]:
    ext = error.get("extensions") or {}
    if not isinstance(ext, Mapping):
        ext = {}
    return str(ext.get("code") or "").upper(), str(ext.get("type") or "").casefold()


def _has(kinds: Sequence[tuple[str, str]], code: str, kind: str) -> bool:
    return any(c == code or k == kind for c, k in kinds)


def is_rate_limited(errors: Sequence[Mapping[str, Any]]) -> bool:
    return _has([_error_kind(e) for e in errors], "RATELIMITED", "ratelimited")


def _epoch_seconds(value: str | None) -> float | None:
    """A reset header: epoch milliseconds (Linear), tolerating epoch seconds."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return number / 1000.0 if number > 1e11 else number


def _number_header(headers: Mapping[str, str], name: str) -> float | None:
    value = http.header(headers, name)
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


@dataclass(frozen=True, slots=True)
class Budget:
    """One of Linear's rate-limit buckets as an answer's headers left it."""

    remaining: float | None  # None: the answer gave a reset only
    reset: float  # epoch seconds
    limit: float | None = None


#: bucket -> (header prefix, what we call it in logs and waits)
_BUCKETS = {
    "requests": ("X-RateLimit-Requests", "request"),
    "complexity": ("X-RateLimit-Complexity", "complexity"),
    "endpoint": ("X-RateLimit-Endpoint-Requests", "endpoint"),
}


def read_budgets(headers: Mapping[str, str], roots: Sequence[str] = ()) -> dict[str, Budget]:
    """The buckets an answer reports: `requests`, `complexity`, and `endpoint:<name>` for a
    query- or mutation-specific limit (`X-RateLimit-Endpoint-Name`; without it, the root
    fields of the query that got the answer). A bucket without a Reset is left out."""
    found: dict[str, Budget] = {}
    for bucket, (prefix, _) in _BUCKETS.items():
        remaining = _number_header(headers, f"{prefix}-Remaining")
        reset = _epoch_seconds(http.header(headers, f"{prefix}-Reset"))
        if reset is None:
            continue
        budget = Budget(remaining, reset, _number_header(headers, f"{prefix}-Limit"))
        if bucket != "endpoint":
            found[bucket] = budget
            continue
        name = http.header(headers, "X-RateLimit-Endpoint-Name")
        for endpoint in [name] if name else roots:
            found[f"endpoint:{endpoint}"] = budget
    return found


@dataclass(frozen=True, slots=True)
class BudgetWait:
    seconds: float
    bucket: str
    spent: bool  # the next request cannot fit (else: spreading the last few out)

    @property
    def reason(self) -> str:
        kind, _, endpoint = self.bucket.partition(":")
        name = f"{endpoint} endpoint" if endpoint else _BUCKETS[kind][1]
        return f"linear {name} budget low"


def budget_wait(
    budgets: Mapping[str, Budget],
    *,
    cost: float,
    roots: Sequence[str],
    now: float,
    pace_below: int,
) -> BudgetWait | None:
    """How long to wait before a request of `cost` complexity points to the root fields `roots`,
    from the budgets the last answers reported (docs/trackers/linear.md#rate-limits): until a
    bucket's reset when the request cannot fit in it (spent), or a share of the time to the
    reset when fewer than `pace_below` such requests fit (the last ones spread out instead of
    sent at once); the longest of these. None when nothing asks to wait (a reset passed is a
    refilled bucket)."""
    longest: BudgetWait | None = None
    for bucket, budget in budgets.items():
        kind, _, endpoint = bucket.partition(":")
        if endpoint and endpoint not in roots:
            continue
        until = budget.reset - now
        if until <= 0 or budget.remaining is None:
            continue
        need = max(1.0, cost) if kind == "complexity" else 1.0
        fits = math.floor(budget.remaining / need)
        if fits < 1:
            wait = BudgetWait(until, bucket, spent=True)
        elif fits < pace_below:
            wait = BudgetWait(until / (fits + 1), bucket, spent=False)
        else:
            continue
        if longest is None or wait.seconds > longest.seconds:
            longest = wait
    return longest


def rate_limit_wait(
    headers: Mapping[str, str], now: float, *, cost: float | None = None
) -> float | None:
    """Seconds until the exhausted bucket resets: requests, complexity (also when fewer points
    remain than the query's `cost`) or an endpoint's own limit, from the epoch-ms reset headers,
    the latest when several are; the latest reset given when none says it is exhausted;
    `Retry-After` when there are no reset headers; None when nothing says (-> backoff)."""
    budgets = read_budgets(headers, roots=("?",))
    exhausted = [
        b.reset
        for name, b in budgets.items()
        if b.remaining is not None
        and (b.remaining <= 0 or (name == "complexity" and cost is not None and b.remaining < cost))
    ]
    resets = exhausted or [b.reset for b in budgets.values()]
    if resets:
        return min(MAX_RESET_WAIT, max(0.0, max(resets) - now))
    wait = http.retry_after(headers, now)
    return None if wait is None else min(MAX_RESET_WAIT, wait)


def messages_of(errors: Sequence[Mapping[str, Any]], limit: int = 300) -> str:
    """Linear's own words: `userPresentableMessage`, else `message`, deduplicated."""
    seen: list[str] = []
    for error in errors:
        ext = error.get("extensions") or {}
        text = (isinstance(ext, Mapping) and ext.get("userPresentableMessage")) or error.get(
            "message"
        )
        if text and str(text) not in seen:
            seen.append(str(text))
    joined = "; ".join(seen) or "no message"
    return joined if len(joined) <= limit else joined[: limit - 1] + "…"


def classify_response(
    status: int,
    body: Any,
    headers: Mapping[str, str],
    *,
    what: str,
    now: float,
    cost: float | None = None,
) -> Mapping[str, Any]:
    """The `data` of a good answer, else the error a connector raises for it (`cost`: the
    complexity the query is expected to cost, for reading a complexity refusal)."""
    errors = body.get("errors") if isinstance(body, Mapping) else None
    errors = [e for e in errors if isinstance(e, Mapping)] if isinstance(errors, list) else []
    kinds = [_error_kind(e) for e in errors]
    said = messages_of(errors) if errors else None

    if status == 429 or is_rate_limited(errors):
        wait = rate_limit_wait(headers, now, cost=cost)
        raise RetriableError(f"Linear rate limit reached ({what})", retry_after=wait)
    if status >= 500:
        wait = http.retry_after(headers, now)
        raise RetriableError(
            f"Linear answered HTTP {status} ({what}){': ' + said if said else ''}",
            retry_after=None if wait is None else min(MAX_RESET_WAIT, wait),
        )
    if status == 401 or _has(kinds, "AUTHENTICATION_ERROR", "authentication error"):
        raise FatalError(
            f"Linear rejected the API key ({said or f'HTTP {status}'}): check the integration's "
            "token and auth_scheme (a personal key lin_api_… is 'api_key', an OAuth token 'oauth')"
        )
    if status == 403 or _has(kinds, "FORBIDDEN", "forbidden"):
        raise FatalError(
            f"Linear refused access ({said or f'HTTP {status}'}): give the key's user access to "
            "the configured teams, or use a key with read scope"
        )
    if errors:
        if any(c in _RETRIABLE_CODES or k in _RETRIABLE_TYPES for c, k in kinds):
            raise RetriableError(f"Linear had a transient error ({what}): {said}")
        raise FatalError(f"Linear rejected the {what} query: {said}")
    if status != 200:
        raise FatalError(f"Linear answered HTTP {status} ({what}) without an explanation")
    data = body.get("data") if isinstance(body, Mapping) else None
    if not isinstance(data, Mapping):
        raise ConnectorError(f"Linear's answer ({what}) has no data object")
    return data


def connection(
    data: Mapping[str, Any], field: str, *, paged: bool = True
) -> tuple[list[Mapping[str, Any]], dict]:
    """`nodes` and (when `paged`) `pageInfo` of a connection field, checked for shape. A node
    that is not an object is an error, never silently left out of a listing."""
    conn = data.get(field)
    nodes = conn.get("nodes") if isinstance(conn, Mapping) else None
    info = conn.get("pageInfo", {} if not paged else None) if isinstance(conn, Mapping) else None
    if not isinstance(nodes, list) or not isinstance(info, Mapping):
        raise ConnectorError(f"Linear's answer has no {field}.nodes / pageInfo")
    if not all(isinstance(n, Mapping) for n in nodes):
        raise ConnectorError(f"Linear's answer has a {field}.nodes entry that is not an object")
    return list(nodes), dict(info)


def complete_page(
    data: Mapping[str, Any], *, more: str, cursor: str, asked: int, what: str
) -> tuple[list[Mapping[str, Any]], dict]:
    """The `issues` nodes and pageInfo of a page that keeps its promise, else RetriableError.

    Relay: a page that says there is more (`more`: hasNextPage for `first:`, hasPreviousPage for
    `last:`) holds the full `asked` nodes and a `cursor` to go on from. An empty or short page
    that still promises more, or an issue without an id, would end or skip part of the listing
    while saying "done": the sweep would mark the rest deleted, the checkpoint pass it."""
    nodes, info = connection(data, "issues")
    promised = info.get(more)
    if not isinstance(promised, bool):
        raise RetriableError(f"Linear's answer ({what}) has no pageInfo.{more}")
    if promised and (len(nodes) < asked or not info.get(cursor)):
        without = "" if info.get(cursor) else f" and no {cursor}"
        raise RetriableError(
            f"Linear said {more} but sent {len(nodes)} of {asked} issues{without} ({what}); "
            "the listing would have a gap"
        )
    for node in nodes:
        if not isinstance(node.get("id"), str) or not node["id"]:
            key = node.get("identifier")
            named = f" ({key})" if isinstance(key, str) else ""
            raise RetriableError(f"Linear sent an issue without an id{named} ({what})")
    return nodes, info


def label_page(data: Mapping[str, Any], what: str) -> tuple[list[Mapping[str, Any]], bool, Any]:
    """The label nodes of a LABELS_QUERY answer, whether more follow, and the cursor to go on
    from; a page that promises more must be full and carry that cursor (as `complete_page`)."""
    issue = data.get("issue")
    labels = issue.get("labels") if isinstance(issue, Mapping) else None
    nodes = labels.get("nodes") if isinstance(labels, Mapping) else None
    info = labels.get("pageInfo") if isinstance(labels, Mapping) else None
    if not isinstance(nodes, list) or not isinstance(info, Mapping):
        raise ConnectorError(f"Linear's answer has no issue.labels.nodes / pageInfo ({what})")
    if not all(isinstance(n, Mapping) for n in nodes):
        raise ConnectorError(f"Linear's answer has a label that is not an object ({what})")
    more = info.get("hasNextPage")
    if not isinstance(more, bool):
        raise RetriableError(f"Linear's answer ({what}) has no pageInfo.hasNextPage")
    cursor = info.get("endCursor")
    if more and (len(nodes) < LABELS_PAGE or not cursor):
        raise RetriableError(
            f"Linear said hasNextPage but sent {len(nodes)} of {LABELS_PAGE} labels ({what})"
        )
    return list(nodes), more, cursor


# ---------------------------------------------------------------------------------------------
# The connector
# ---------------------------------------------------------------------------------------------
TEAM_NOT_VISIBLE = (
    "visible to this API key: fix team_keys (team keys are case-sensitive) or give the key's"
    " user access to the team"
)


def _team_key(node: Mapping[str, Any]) -> str:
    """The scope of a listed issue: its team's key (the filter only lists configured teams)."""
    team = node.get("team")
    key = team.get("key") if isinstance(team, Mapping) else None
    if not isinstance(key, str) or not key:
        raise RetriableError("Linear listed an issue without its team's key (issue ids)")
    return key


class LinearConnector:
    """Issues of `team_keys` from Linear (see the module docstring for ordering and scopes)."""

    source: ClassVar[str] = "linear"
    config_model: ClassVar[type[ConnectorConfig]] = LinearConfig
    overlap: ClassVar[timedelta] = timedelta(minutes=2)

    #: ids per all_ids() request (ids are cheap in Linear's complexity budget)
    ids_page_size: int = MAX_PAGE_SIZE
    #: issues whose history one request reads (the worker hands `history` this many a request)
    history_batch: ClassVar[int] = HISTORY_ISSUES
    #: below this many requests (or pages' worth of complexity) left before a budget's reset,
    #: spread the rest until the reset
    pace_below: int = 10

    def __init__(self, config: LinearConfig, ctx: ConnectorContext) -> None:
        self._config = config
        self._ctx = ctx
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "claude-nine-sync (linear connector)",
        }
        self._tokens: LinearTokens | None = None
        self._token_client: httpx.AsyncClient | None = None
        if config.oauth is not None:
            self._token = ""
            # The token endpoint's own client: form bodies, and never an Authorization header.
            self._token_client = httpx.AsyncClient(
                timeout=httpx.Timeout(config.timeout),
                headers={"User-Agent": headers["User-Agent"]},
                follow_redirects=False,
            )
            self._tokens = LinearTokens(config.oauth, ctx, self._token_client)
        else:
            token = ctx.bearer().get_secret_value().strip()
            if not token:
                raise ConfigError("the Linear token is empty")
            self._token = token
            headers["Authorization"] = f"Bearer {token}" if config.auth_scheme == "oauth" else token
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout), headers=headers, follow_redirects=False
        )
        self._server_date: datetime | None = None  # HTTP Date of the latest answer
        #: what the latest answers said of Linear's budgets (docs/trackers/linear.md#rate-limits)
        self._budgets: dict[str, Budget] = {}
        self._costs: dict[str, float] = {}  # query -> its latest X-Complexity
        self._teams_seen: set[str] = set()  # team keys Linear has shown to exist

    def __repr__(self) -> str:
        return (
            f"LinearConnector(teams={self._config.team_keys!r}, api_url={self._config.api_url!r})"
        )

    # -- the contract ---------------------------------------------------------------------------
    async def check(self) -> None:
        await self._check_teams(self._config.team_keys)

    async def _check_teams(self, keys: Sequence[str]) -> None:
        """The key works and Linear lists every team in `keys`, else FatalError naming the
        missing ones: a team key that matches nothing must not read as "no issues"."""
        missing = await self._missing_teams(keys)
        if missing:
            names = ", ".join(repr(k) for k in missing)
            raise FatalError(f"Linear has no team with key {names} {TEAM_NOT_VISIBLE}")

    async def _missing_teams(self, keys: Sequence[str]) -> list[str]:
        """The keys among `keys` Linear lists no team for (the API key must work)."""
        data = await self._graphql(
            CHECK_QUERY, {"keys": list(keys), "first": MAX_PAGE_SIZE}, "check"
        )
        viewer = data.get("viewer")
        if not isinstance(viewer, Mapping) or not viewer.get("id"):
            raise FatalError("Linear did not identify the API key's user (viewer is empty)")
        teams, _ = connection(data, "teams", paged=False)
        found = {str(t.get("key")) for t in teams}
        self._teams_seen.update(k for k in keys if k in found)
        return [k for k in keys if k not in found]

    async def scopes(self) -> list[str]:
        """One scope per configured team key."""
        return list(self._config.team_keys)

    async def changes(self, since: Mapping[str, datetime]) -> AsyncIterator[Page]:
        run_clock: list[datetime | None] = [None]
        for key in self._config.team_keys:
            async for page in self._team_changes(key, since.get(key), run_clock):
                yield page

    async def all_ids(self) -> AsyncIterator[ScopeIds]:
        # A team Linear no longer shows would only shorten the listing (and the sweep would mark
        # its issues deleted): it is reported lost instead, and the others are listed.
        unseen = [k for k in self._config.team_keys if k not in self._teams_seen]
        lost = await self._missing_teams(unseen) if unseen else []
        for key in lost:
            yield ScopeIds(key, [], lost=f"no team with this key {TEAM_NOT_VISIBLE}")
        listed = [k for k in self._config.team_keys if k not in lost]
        if not listed:
            return
        variables: dict[str, Any] = {
            "filter": {"team": {"key": {"in": listed}}},
            "first": self.ids_page_size,
            "after": None,
        }

        def page(data: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], dict]:
            return complete_page(
                data,
                more="hasNextPage",
                cursor="endCursor",
                asked=variables["first"],
                what="issue ids",
            )

        while True:
            data = await self._graphql(IDS_QUERY, variables, "issue ids", check=page)
            nodes, info = page(data)
            # Trashed issues are deleted for us (`changes` marks them removed): not listed, so the
            # deletion sweep agrees with `changes` about what exists.
            by_team: dict[str, list[str]] = {}
            for n in nodes:
                if not n.get("trashed"):
                    by_team.setdefault(_team_key(n), []).append(str(n["id"]))
            for key, ids in by_team.items():
                yield ScopeIds(key, ids)
            cursor = info.get("endCursor")
            if not info["hasNextPage"]:
                return
            if cursor == variables["after"]:
                raise ConnectorError("Linear returned the same page cursor twice (issue ids)")
            variables["after"] = cursor

    @classmethod
    def map_stored(
        cls,
        config: LinearConfig,
        raw: Mapping[str, Any],
        *,
        scope: str,
        context: Mapping[str, Any],
    ) -> WorkItem:
        """A stored issue node mapped again with `config` through `map_issue`: no request
        (`c9-sync remap`; docs/trackers/linear.md#remap)."""
        return map_issue(raw, scope=scope, overrides=config.status_map)

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._token_client is not None:
            await self._token_client.aclose()

    # -- history (docs/trackers/linear.md#history) ------------------------------------------------
    def feed_scopes(self) -> Sequence[str]:
        """None: Linear has no history feed; every issue a run saw change is read by id."""
        return []

    async def history(self, todo: HistoryTodo) -> AsyncIterator[HistoryPage]:
        """The history of `todo.items`, HISTORY_ISSUES issues a request with their first
        HISTORY_ENTRIES entries; an issue with more has the rest read with HISTORY_MORE_QUERY,
        one request a page, while the budget lasts. One HistoryPage a group; an issue is
        `complete` only when its whole history was read (else it is read again next run). An id
        Linear no longer lists (deleted, or out of this key's reach) is complete with nothing."""
        spent = 0
        for group in _groups(todo.items, HISTORY_ISSUES):
            if spent >= todo.budget or not self._history_room(HISTORY_QUERY):
                return
            what = f"history of {len(group)} issues"
            variables = {
                "filter": {"id": {"in": group}},
                "first": HISTORY_ISSUES,
                "entries": HISTORY_ENTRIES,
            }

            def page(data: Mapping[str, Any], what: str = what) -> list[Mapping[str, Any]]:
                nodes, _ = connection(data, "issues", paged=False)
                for node in nodes:
                    history_page(node.get("history"), what)
                return nodes

            data = await self._graphql(HISTORY_QUERY, variables, what, check=page)
            spent += 1
            entries: dict[str, list[HistoryEntry]] = {}
            complete: list[str] = []
            listed: set[str] = set()
            longer: list[tuple[Mapping[str, Any], list[Mapping[str, Any]], Any]] = []
            for node in page(data):
                issue_id = node.get("id")
                if not isinstance(issue_id, str) or issue_id not in group:
                    continue
                listed.add(issue_id)
                found, more, cursor = history_page(node.get("history"), what)
                entries[issue_id] = history_entries(
                    node, found, self._config.status_map, whole=not more
                )
                if more:
                    longer.append((node, found, cursor))
                else:
                    complete.append(issue_id)
            complete += [i for i in group if i not in listed]
            # The group commits first; then each longer history, one page an issue, so a
            # failure part-way loses at most the issue it was reading.
            yield HistoryPage(entries, complete=complete, requests=1)
            for node, found, cursor in longer:
                issue_id, requests, more = str(node["id"]), 0, True
                while more and spent < todo.budget and self._history_room(HISTORY_MORE_QUERY):
                    found_more, more, cursor = await self._more_history(issue_id, cursor)
                    found = found + found_more
                    spent += 1
                    requests += 1
                if not requests:
                    return  # the budget is spent: the rest stays pending
                whole = history_entries(node, found, self._config.status_map, whole=not more)
                done = [] if more else [issue_id]
                yield HistoryPage({issue_id: whole}, complete=done, requests=requests)

    def _history_room(self, query: str) -> bool:
        """Whether one more history request can go now without waiting for a budget (as
        `_within_budgets` would, pacing the last requests before a reset included) and leaves
        HISTORY_RESERVE of the hour's complexity budget to the item sync. History never waits
        for Linear's budgets: it stops, its issues stay pending for the next run (logged)."""
        fallback = HISTORY_GROUP_POINTS if query == HISTORY_QUERY else HISTORY_MORE_POINTS
        cost = self._costs.get(query, fallback)
        now = time.time()
        wait = budget_wait(
            self._budgets, cost=cost, roots=_ROOTS[query], now=now, pace_below=self.pace_below
        )
        complexity = self._budgets.get("complexity")
        short = (
            complexity is not None
            and complexity.remaining is not None
            and bool(complexity.limit)
            and complexity.reset > now
            and complexity.remaining - cost < HISTORY_RESERVE * (complexity.limit or 0)
        )
        if (wait is None or wait.seconds <= 0.01) and not short:
            return True
        http.log_event(
            log,
            "linear.history_paused",
            bucket=wait.bucket if wait is not None else "complexity reserve",
            detail="the rest of the history waits for the next run",
        )
        return False

    async def _more_history(
        self, issue_id: str, after: Any
    ) -> tuple[list[Mapping[str, Any]], bool, Any]:
        """The next HISTORY_PAGE entries of one issue after `after`."""
        what = "more history of an issue"

        def page(data: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], bool, Any]:
            issue = data.get("issue")
            return history_page(issue.get("history") if isinstance(issue, Mapping) else None, what)

        data = await self._graphql(
            HISTORY_MORE_QUERY, {"id": issue_id, "after": after}, what, check=page
        )
        found, more, cursor = page(data)
        if more and cursor == after:
            raise ConnectorError(f"Linear returned the same page cursor twice ({what})")
        return found, more, cursor

    # -- changes of one team --------------------------------------------------------------------
    async def _team_changes(
        self, key: str, since: datetime | None, run_clock: list[datetime | None]
    ) -> AsyncIterator[Page]:
        """Backward walk of the newest-first list: pages oldest first (module docstring).

        Each page after the first is asked by keyset (`_after_filter`), not by `before:` a page
        cursor: Linear's cursors name an issue, and an issue edited during the walk moves with
        its new `updatedAt`, so `before:` it would skip every issue between its old place and its
        new one, and the checkpoint would pass them for good."""
        team_filter: dict[str, Any] = {"team": {"key": {"eq": key}}}
        issue_filter = dict(team_filter)
        if since is not None:
            issue_filter["updatedAt"] = {"gte": format_time(since)}
        variables: dict[str, Any] = {
            "filter": issue_filter,
            "last": self._config.page_size,
            "before": None,
        }
        high: datetime | None = None  # newest updatedAt yielded so far
        at_high: set[str] = set()  # ids of the issues read at exactly `high`
        timeless: set[str] = set()  # issues rejected for an unreadable updatedAt (listed again)
        in_order = True
        first = True
        what = f"issues of team {key}"

        def page(data: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], dict]:
            return complete_page(
                data,
                more="hasPreviousPage",
                cursor="startCursor",
                asked=variables["last"],
                what=what,
            )

        while True:
            data = await self._graphql(CHANGES_QUERY, variables, what, check=page)
            if run_clock[0] is None:
                run_clock[0] = self._server_date
            nodes, info = page(data)
            nodes = [await self._with_every_label(node, key) for node in nodes]
            if first:
                first = False
                if nodes:
                    self._teams_seen.add(key)  # the filter is the team's key: it exists
                elif key not in self._teams_seen and await self._missing_teams([key]):
                    # Nothing listed and no such team: lost, not "no changes". The other teams
                    # go on; the run fails naming it.
                    yield Page([], {}, lost={key: f"no team with this key {TEAM_NOT_VISIBLE}"})
                    return
                if info.get("hasNextPage"):
                    await self._check_first_page_is_the_oldest(key, issue_filter, info)
            # Within a page Linear lists newest first too: reversed, the page runs oldest first.
            items, rejected = map_nodes(
                nodes[::-1],
                scope=key,
                overrides=self._config.status_map,
                now=self._server_date,
            )
            # Every readable updatedAt, rejected issues' too: a rejected issue counts as read, so
            # the checkpoint may pass it (else the newest issues, if malformed, are re-read and
            # re-rejected by every run).
            read = [(t, str(n["id"])) for n in nodes[::-1] if (t := _readable_time(n)) is not None]
            # An issue whose updatedAt cannot be read has no place in the keyset: the next page
            # may list it again; it is reported once.
            rejected = [r for r in rejected if r.external_id not in timeless]
            timeless.update(str(n["id"]) for n in nodes if _readable_time(n) is None)
            times = [t for t, _ in read]
            progressed = False
            if times:
                if in_order and not _ascending_after(times, high):
                    in_order = False
                    http.log_event(
                        log,
                        "linear.order_unexpected",
                        logging.WARNING,
                        team=key,
                        detail="checkpoints held until the walk ends",
                    )
                for at, issue_id in read:
                    if high is None or at > high:
                        high, at_high, progressed = at, {issue_id}, True
                    elif at == high and issue_id not in at_high:
                        at_high.add(issue_id)
                        progressed = True
            cursor = info.get("startCursor")
            more = info["hasPreviousPage"]  # with a cursor: complete_page checked it
            checkpoint: dict[str, datetime] = {}
            if high is not None and (in_order or not more):
                checkpoint[key] = _clamp(high, run_clock[0])
            if items or rejected or checkpoint:
                yield Page(items=items, checkpoint=checkpoint, rejected=rejected)
            if not more:
                return
            if in_order and progressed and high is not None:
                # The next page: what follows the newest issue read, by keyset (the docstring).
                variables["filter"] = _after_filter(team_filter, high, at_high)
                variables["before"] = None
            else:
                # A server out of the documented order (its own cursor, checkpoints held above),
                # or a page that moved no keyset (its issues' updatedAt unreadable): the cursor.
                if cursor == variables["before"]:
                    raise ConnectorError(f"Linear returned the same page cursor twice (team {key})")
                variables["filter"] = issue_filter
                variables["before"] = cursor

    async def _with_every_label(self, node: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        """The node, with every label when its first LABELS_PER_ISSUE did not hold them all
        (`labels.pageInfo.hasNextPage`): the rest are read with LABELS_QUERY, so a "Blocked"
        label past the tenth still counts. A node whose labels are malformed is left as it is,
        for the mapping to reject."""
        labels = node.get("labels")
        info = labels.get("pageInfo") if isinstance(labels, Mapping) else None
        issue_id = node.get("id")
        if not isinstance(info, Mapping) or info.get("hasNextPage") is not True:
            return node
        if not isinstance(issue_id, str):
            return node
        what = f"labels of an issue of team {key}"
        variables: dict[str, Any] = {"id": issue_id, "after": None}

        def page(data: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], bool, Any]:
            return label_page(data, what)

        every: list[Mapping[str, Any]] = []
        while True:
            data = await self._graphql(LABELS_QUERY, variables, what, check=page)
            found, more, cursor = page(data)
            every += found
            if not more:
                return {**node, "labels": {"nodes": every, "pageInfo": {"hasNextPage": False}}}
            if cursor == variables["after"]:
                raise ConnectorError(f"Linear returned the same page cursor twice ({what})")
            variables["after"] = cursor

    async def _check_first_page_is_the_oldest(
        self, key: str, issue_filter: Mapping[str, Any], info: Mapping[str, Any]
    ) -> None:
        """`last: N` from the list's end has nothing after it (Relay). When the first page says
        otherwise, look: if older issues do follow, the server paged from the newest end and a
        checkpoint would skip them, so stop before anything is yielded."""
        variables = {"filter": issue_filter, "after": info.get("endCursor")}
        data = await self._graphql(PROBE_QUERY, variables, f"order probe of team {key}")
        older, _ = connection(data, "issues", paged=False)
        if older:
            raise FatalError(
                f"Linear did not page backwards as documented (team {key}: older issues follow "
                "the first `last:` page); nothing was committed, please report this"
            )

    # -- HTTP -----------------------------------------------------------------------------------
    async def _graphql(
        self,
        query: str,
        variables: Mapping[str, Any],
        what: str,
        *,
        check: Callable[[Mapping[str, Any]], object] | None = None,
    ) -> Mapping[str, Any]:
        """POST one operation (with retries); the `data` object or a ConnectorError. `check`
        vets the data inside each attempt: an answer it refuses with RetriableError (a page
        that breaks its promise) is asked for again like any transient failure."""

        async def attempt() -> Mapping[str, Any]:
            data = await self._post_once(query, variables, what)
            if check is not None:
                check(data)
            return data

        return await with_retries(self._ctx, f"linear {what}", attempt)

    async def _post_once(
        self, query: str, variables: Mapping[str, Any], what: str
    ) -> Mapping[str, Any]:
        payload = {"query": query, "variables": dict(variables)}
        await self._within_budgets(query, what)
        authorization = await self._tokens.bearer() if self._tokens is not None else None
        response = await self._send(payload, what, authorization)
        if self._tokens is not None and _refused(response):
            # Revoked, or replaced by a refresh elsewhere: one newer token, one more try.
            self._note_budgets(query, response.headers)
            authorization = await self._tokens.bearer(refused=True)
            response = await self._send(payload, what, authorization)
            if _refused(response):
                raise FatalError(
                    f"Linear refused the OAuth access token ({what}, HTTP"
                    f" {response.status_code}) right after it was renewed: the grant may have"
                    " been revoked; " + REAUTHORIZE.format(id=self._ctx.integration_id)
                )
        self._server_date = http.parse_http_date(response.headers.get("Date"))
        self._note_budgets(query, response.headers)
        try:
            body: Any = response.json()
        except ValueError:
            body = None
            if response.status_code == 200:
                raise ConnectorError(
                    f"Linear answered HTTP 200 with a body that is not JSON ({what})"
                ) from None
        failure: ConnectorError | None = None
        try:
            data = classify_response(
                response.status_code,
                body,
                response.headers,
                what=what,
                now=time.time(),
                cost=self._costs.get(query),
            )
        except ConnectorError as exc:
            failure = exc
        if failure is not None:  # raised outside the handler: no context chained to it
            raise self._scrubbed(failure)
        return data

    async def _send(
        self, payload: Mapping[str, Any], what: str, authorization: str | None
    ) -> httpx.Response:
        """One POST; `authorization` overrides the client's header (an OAuth access token)."""
        headers = {"Authorization": authorization} if authorization is not None else None
        try:
            return await self._client.post(self._config.api_url, json=payload, headers=headers)
        except httpx.TimeoutException:
            raise RetriableError(
                f"Linear did not answer within {self._config.timeout:g}s ({what})"
            ) from None
        except httpx.TransportError as exc:
            # The exception's text and context may carry the request (and its headers): drop it.
            raise RetriableError(
                f"cannot reach Linear at {self._config.api_url} ({type(exc).__name__}, {what})"
            ) from None

    def _scrubbed(self, error: ConnectorError) -> ConnectorError:
        """Belt and braces: no message we raise may contain a token, whatever upstream said."""
        text = str(error)
        for secret in ({self._token} if self._tokens is None else self._tokens.secrets) - {""}:
            text = text.replace(secret, "***")
        if isinstance(error, RetriableError):
            return RetriableError(text, retry_after=error.retry_after)
        return type(error)(text)

    def _note_budgets(self, query: str, headers: Mapping[str, str]) -> None:
        """Keep what an answer says of the budgets, and what the query cost (`X-Complexity`,
        absent or 0 on a refusal: the previous cost stands)."""
        self._budgets.update(read_budgets(headers, _ROOTS.get(query, ())))
        cost = _number_header(headers, "X-Complexity")
        if cost:
            self._costs[query] = cost

    async def _within_budgets(self, query: str, what: str) -> None:
        """Before a request: wait while a budget it needs is spent, or spread the last requests
        a budget allows until its reset (requests, complexity at the query's last known cost,
        and the endpoint limit of its root fields), instead of sending into RATELIMITED. Never
        past the run's deadline or the context's sleep cap: a spent budget whose reset is
        further off ends the attempt with RetriableError(retry_after=…), so the run stops
        cleanly (the next run starts after the reset) and nothing is sent to be refused."""
        wait = budget_wait(
            self._budgets,
            cost=self._costs.get(query, 1.0),
            roots=_ROOTS.get(query, ()),
            now=time.time(),
            pace_below=self.pace_below,
        )
        if wait is None or wait.seconds <= 0.01:
            return
        room = self._ctx.sleep_cap
        if self._ctx.deadline is not None:
            room = min(room, max(0.0, self._ctx.deadline - time.monotonic()))
        budget = self._budgets[wait.bucket]
        fields: dict[str, Any] = {
            "bucket": wait.bucket,
            "remaining": budget.remaining,
            "reset_in": round(wait.seconds if wait.spent else budget.reset - time.time(), 3),
            "what": what,
        }
        if wait.spent and wait.seconds > room:
            http.log_event(log, "linear.budget_spent", logging.WARNING, **fields)
            raise RetriableError(
                f"Linear's {wait.reason.removeprefix('linear ').removesuffix(' low')} is spent "
                f"until its reset in {wait.seconds:.0f}s ({what}); the run stops here",
                retry_after=wait.seconds,
            )
        delay = min(wait.seconds, room)
        if delay <= 0.01:
            return
        http.log_event(log, "linear.budget_wait", wait=round(delay, 3), spent=wait.spent, **fields)
        self._ctx.on_wait(wait.reason, delay)
        await asyncio.sleep(delay)


#: the root fields each query asks for: the endpoints whose own request limits it spends
_ROOTS: dict[str, tuple[str, ...]] = {
    CHECK_QUERY: ("viewer", "teams"),
    CHANGES_QUERY: ("issues",),
    PROBE_QUERY: ("issues",),
    IDS_QUERY: ("issues",),
    LABELS_QUERY: ("issue",),
    HISTORY_QUERY: ("issues",),
    HISTORY_MORE_QUERY: ("issue",),
}


def _refused(response: httpx.Response) -> bool:
    """Linear refused the credential: HTTP 401, or its AUTHENTICATION_ERROR body (any status)."""
    if response.status_code == 401:
        return True
    if response.status_code == 200 and b"AUTHENTICATION_ERROR" not in response.content:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    errors = body.get("errors") if isinstance(body, Mapping) else None
    kinds = [_error_kind(e) for e in errors or [] if isinstance(e, Mapping)]
    return _has(kinds, "AUTHENTICATION_ERROR", "authentication error")


def _ascending_after(times: Sequence[datetime], floor: datetime | None) -> bool:
    """True when the page runs oldest first and starts no earlier than what came before."""
    return list(times) == sorted(times) and (floor is None or times[0] >= floor)


def _readable_time(node: Mapping[str, Any]) -> datetime | None:
    """The node's updatedAt when it can be read, else None (its mapping rejects it)."""
    value = node.get("updatedAt")
    return http.parse_time(value) if isinstance(value, str) else None


def _after_filter(
    team_filter: Mapping[str, Any], high: datetime, at_high: Iterable[str]
) -> dict[str, Any]:
    """The team's issues not yet read by a walk that has read everything up to `high` and, at
    exactly `high`, the issues `at_high`: changed later, or at `high` and not among them. An
    issue read, then edited during the walk, has a newer `updatedAt` and is listed again."""
    at = format_time(high)
    return {
        **team_filter,
        "or": [
            {"updatedAt": {"gt": at}},
            {"updatedAt": {"eq": at}, "id": {"nin": sorted(at_high)}},
        ],
    }


def _clamp(value: datetime, server_now: datetime | None) -> datetime:
    return value if server_now is None else min(value, server_now)


__all__ = [
    "CHANGES_QUERY",
    "CHECK_QUERY",
    "HISTORY_MORE_QUERY",
    "HISTORY_QUERY",
    "IDS_QUERY",
    "LABELS_QUERY",
    "PROBE_QUERY",
    "LinearConfig",
    "LinearConnector",
    "budget_wait",
    "classify_response",
    "history_entries",
    "map_issue",
    "map_issue_status",
    "map_nodes",
    "map_priority",
    "rate_limit_wait",
    "read_budgets",
]

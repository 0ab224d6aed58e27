"""GitHub issue history from a repository's issue events (docs/trackers/github.md#history).

One listing per repository, `GET /repos/{o}/{r}/issues/events` (PyGithub's
`Repository.get_issues_events()`): it has no `since` and lists newest first, so a walk starts at
page 1 and goes on until it meets an event at or below the feed's token (the newest event id the
last complete walk read), or the end of the listing. Only then is the walk complete: its token
becomes the newest id it saw and `through` that event's `created_at`.

A walk the budget cuts keeps what it read (stored idempotently) and checkpoints where it stands:
`done|top|top_at|offset`, the token it walks towards, the newest event of the walk and how many
events it has read. Events only ever come in at the top, so the event that stood at that offset
now stands at or below it: the next run goes on at the page holding `offset` (re-reading a few
events, a no-op) and can skip none. Without this a backlog longer than one budget would restart
at the newest page every run and never finish.

Each event carries its issue as it is NOW. The state of an issue at each event (open/closed and
its reason, labels, assignees, milestone, parent: what the connector's mapping reads) is therefore
replayed backwards from that, undoing each event in the order the walk meets them (newest
first); an entry is emitted for each mapped field an event changes (status through the
connector's own mapping and `status_map`, assignee, sprint = milestone, parent = the sub-issue's
parent as `owner/repo#N` from `parent_issue_added`/`parent_issue_removed`, priority and story
points from labels). A `closed` event names its `state_reason` (as GitHub sends it; the OpenAPI
`issue-event` schema does not list it): the `reopened` entry that undoes it takes the reason of
the closing the walk meets next for that issue.

The entry at creation is synthetic (GitHub records no event for it): change id
`created:<issue id>`, time the issue's `created_at`, actor its author, `from_value` None, the
status it had then. It is emitted once the walk has read every event since the issue's creation:
an event older than the creation was read, or the walk is complete (the end of the listing, or
the token). At the token this holds too: the first complete walk that met any event of an issue
read all of them (every earlier walk met none, so all lie above its token), and an issue an
earlier walk met has its creation entry already (re-emitting it is a no-op).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from connectors.base import HistoryEntry, HistoryPage, Status
from connectors.github_model import parent_ref
from connectors.http import header, parse_time

#: One GET of the listing: (response headers, the JSON array of events, whether `Link` says
#: there is a next page).
Fetch = Callable[
    [str, dict[str, Any]], Awaitable[tuple[Mapping[str, Any], list[dict[str, Any]], bool]]
]


@dataclass(frozen=True, slots=True)
class IssueMapping:
    """The connector's own mapping of an issue's JSON (connectors/github.py), handed in so the
    history maps a replayed state exactly as the item sync maps the issue."""

    status: Callable[[Mapping[str, Any]], Status]  # with the admin's status_map
    status_names: Callable[[Mapping[str, Any]], list[str]]
    overrides: Mapping[str, Status]  # status_map, keys case-folded
    priority: Callable[[Mapping[str, Any]], int]
    story_points: Callable[[Mapping[str, Any]], int | None]
    is_pull_request: Callable[[Mapping[str, Any]], bool]
    per_page: int


#: The events that change a field we track; every other kind (commented, referenced, renamed,
#: locked, …) is passed over.
TRACKED = frozenset(
    {
        "closed", "reopened", "labeled", "unlabeled", "assigned", "unassigned",
        "milestoned", "demilestoned", "parent_issue_added", "parent_issue_removed",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class FeedToken:
    """Where a repository's event feed stands (see the module docstring). Complete: the newest
    event id read, as digits. A walk under way: JSON with the token it walks towards (`done`),
    its newest event (`top`, `top_at`), how many events it has read (`offset`), the lowest
    event id it has read (`low`: events at or above it, met again after new ones pushed them
    down, are passed over) and the replayed state of each issue it met whose creation it has
    not reached yet (`states`), so the next run goes on replaying from there."""

    done: int | None  # newest event id of the last complete walk
    top: int | None = None
    top_at: datetime | None = None
    offset: int = 0
    low: int | None = None
    states: Mapping[str, list[Any]] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.top is None:
            return "" if self.done is None else str(self.done)
        return json.dumps(
            {
                "done": self.done,
                "top": self.top,
                "top_at": self.top_at.isoformat() if self.top_at is not None else None,
                "offset": self.offset,
                "low": self.low,
                "states": self.states,
            },
            separators=(",", ":"),
        )

    @classmethod
    def parse(cls, token: str | None) -> FeedToken:
        """A stored token; one this code cannot read starts the feed over (a re-read is a no-op)."""
        if not token:
            return cls(None)
        try:
            if token.isdigit():
                return cls(int(token))
            data = json.loads(token)
            at = data.get("top_at")
            return cls(
                _int(data.get("done")),
                int(data["top"]),
                datetime.fromisoformat(at) if isinstance(at, str) else None,
                max(0, int(data.get("offset") or 0)),
                _int(data.get("low")),
                {str(k): list(v) for k, v in (data.get("states") or {}).items()},
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return cls(None)


@dataclass(slots=True)
class _State:
    """What the status mapping reads of an issue at one moment."""

    state: str
    reason: str | None
    labels: list[str]
    assignees: list[str]
    milestone: str | None
    parent: str | None = None  # `owner/repo#N` of a sub-issue's parent

    def copy(self) -> _State:
        return _State(
            self.state, self.reason, list(self.labels), list(self.assignees), self.milestone,
            self.parent,
        )  # fmt: skip


def _names(values: Any, key: str) -> list[str]:
    out = []
    for value in values or []:
        name = value.get(key) if isinstance(value, Mapping) else value
        if isinstance(name, str):
            out.append(name)
    return out


def _state_of(issue: Mapping[str, Any]) -> _State:
    milestone = issue.get("milestone")
    title = milestone.get("title") if isinstance(milestone, Mapping) else None
    parent = parent_ref(issue)
    return _State(
        "closed" if issue.get("state") == "closed" else "open",
        issue.get("state_reason") if isinstance(issue.get("state_reason"), str) else None,
        _names(issue.get("labels"), "name"),
        _names(issue.get("assignees"), "login"),
        title if isinstance(title, str) else None,
        None if parent is None else f"{parent[0]}#{parent[1]}",
    )


def _reference(value: Any) -> str | None:
    """`owner/repo#N` of a sub-issue event's other issue (`nullable-issue-reference`)."""
    if not isinstance(value, Mapping):
        return None
    number, repository = value.get("number"), value.get("repository")
    full_name = repository.get("full_name") if isinstance(repository, Mapping) else None
    if _int(number) is None or not isinstance(full_name, str) or "/" not in full_name:
        return None
    return f"{full_name}#{number}"


def _raw(issue: Mapping[str, Any], state: _State) -> dict[str, Any]:
    """The issue's JSON as it was in `state`, for the connector's mapping functions."""
    return {
        **issue,
        "state": state.state,
        "state_reason": state.reason if state.state == "closed" else None,
        "labels": [{"name": n} for n in state.labels],
        "assignees": [{"login": a} for a in state.assignees],
        "assignee": {"login": state.assignees[0]} if state.assignees else None,
    }


def status_value(raw: Mapping[str, Any], mapping: IssueMapping) -> str:
    """The tracker's name for an issue's status: the first of its names that `status_map` maps,
    else the closing reason (`completed`, `not_planned`, …) or `open`."""
    names = mapping.status_names(raw)
    overrides = mapping.overrides
    for name in names:
        if name.strip().casefold() in overrides:
            return name
    return names[0] if raw.get("state") == "closed" else names[-1]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _actor(user: Any) -> tuple[str | None, str | None]:
    """Login and account id (never the e-mail a user object may carry)."""
    if not isinstance(user, Mapping):
        return None, None
    login = user.get("login") if isinstance(user.get("login"), str) else None
    uid = _int(user.get("id"))
    return login, None if uid is None else str(uid)


@dataclass(slots=True)
class Replay:
    """Issues' states replayed backwards over the events a walk reads (newest first)."""

    prefix: str
    mapping: IssueMapping
    states: dict[int, _State] = field(default_factory=dict)
    issues: dict[int, Mapping[str, Any]] = field(default_factory=dict)
    entries: dict[str, list[HistoryEntry]] = field(default_factory=dict)
    reopens: dict[int, list[tuple[str, int]]] = field(default_factory=dict)  # waiting for a reason
    born: set[int] = field(default_factory=set)  # creation entries emitted

    def load(self, saved: Mapping[str, list[Any]]) -> None:
        """The states a cut walk saved (`saved_states`): it goes on replaying from them."""
        for key, value in saved.items():
            try:
                state, reason, labels, assignees, milestone, created, login, uid = value[:8]
                parent = value[8] if len(value) > 8 else None  # saved before parents were kept
                issue_id = int(key)
            except (TypeError, ValueError):
                continue  # unreadable: that issue replays from its state now
            self.states[issue_id] = _State(
                str(state), reason, list(labels), list(assignees), milestone, parent
            )
            self.issues[issue_id] = {
                "id": issue_id, "created_at": created, "user": {"login": login, "id": uid},
            }  # fmt: skip

    def saved_states(self) -> dict[str, list[Any]]:
        """The state of each issue met whose creation is not reached yet, for the token."""
        out: dict[str, list[Any]] = {}
        for issue_id, state in self.states.items():
            if issue_id in self.born:
                continue
            issue = self.issues.get(issue_id, {})
            login, uid = _actor(issue.get("user"))
            out[str(issue_id)] = [
                state.state, state.reason, state.labels, state.assignees, state.milestone,
                issue.get("created_at"), login, None if uid is None else int(uid), state.parent,
            ]  # fmt: skip
        return out

    def _status(self, issue: Mapping[str, Any], state: _State) -> tuple[str, Status]:
        raw = _raw(issue, state)
        return status_value(raw, self.mapping), self.mapping.status(raw)

    def apply(self, event: Mapping[str, Any]) -> None:
        """Undo one event on its issue's replayed state, emitting the entries it made."""
        issue = event.get("issue")
        kind = event.get("event")
        if not isinstance(issue, Mapping) or kind not in TRACKED:
            return
        if self.mapping.is_pull_request(issue):
            return
        issue_id, event_id = _int(issue.get("id")), _int(event.get("id"))
        at = parse_time(event.get("created_at"))
        if issue_id is None or event_id is None or at is None:
            return
        after = self.states.get(issue_id) or _state_of(issue)
        before = after.copy()
        label = event.get("label")
        label_name = label.get("name") if isinstance(label, Mapping) else None
        assignee = _actor(event.get("assignee"))[0]
        milestone = event.get("milestone")
        title = milestone.get("title") if isinstance(milestone, Mapping) else None
        reason_known: str | None = None
        if kind == "closed":
            reason = event.get("state_reason")
            if not isinstance(reason, str):
                reason = after.reason if after.state == "closed" else None
            after.state, after.reason = "closed", reason
            before.state, before.reason = "open", None
            reason_known = reason or "completed"
        elif kind == "reopened":
            after.state, after.reason = "open", None
            before.state, before.reason = "closed", None  # its reason: the closing met next
        elif kind in ("labeled", "unlabeled") and isinstance(label_name, str):
            with_it = [*[n for n in after.labels if n != label_name], label_name]
            without = [n for n in after.labels if n != label_name]
            after.labels, before.labels = (
                (with_it, without) if kind == "labeled" else (without, with_it)
            )
        elif kind in ("assigned", "unassigned") and assignee is not None:
            with_them = [*[a for a in after.assignees if a != assignee], assignee]
            without = [a for a in after.assignees if a != assignee]
            after.assignees, before.assignees = (
                (with_them, without) if kind == "assigned" else (without, with_them)
            )
        elif kind in ("milestoned", "demilestoned") and isinstance(title, str):
            after.milestone, before.milestone = (
                (title, None) if kind == "milestoned" else (None, title)
            )
        elif kind in ("parent_issue_added", "parent_issue_removed") and (
            parent := _reference(event.get("parent_issue"))
        ):
            after.parent, before.parent = (
                (parent, None) if kind == "parent_issue_added" else (None, parent)
            )
        else:
            return
        self.issues[issue_id] = issue  # as it is now: every event carries the same
        self.states[issue_id] = before
        key = f"{self.prefix}{issue_id}"
        if reason_known is not None:
            self._resolve(issue_id, issue, after)
        self._emit(key, issue_id, issue, str(event_id), at, event.get("actor"), before, after)
        if kind == "reopened":
            rows = self.entries.get(key, [])
            for n, row in enumerate(rows):
                if row.change_id == str(event_id) and row.field == "status":
                    self.reopens.setdefault(issue_id, []).append((key, n))

    def _emit(
        self,
        key: str,
        issue_id: int,
        issue: Mapping[str, Any],
        change_id: str,
        at: datetime,
        actor: Any,
        before: _State,
        after: _State,
    ) -> None:
        name, actor_id = _actor(actor)
        old_raw, new_raw = _raw(issue, before), _raw(issue, after)
        pairs: list[tuple[str, str | None, str | None]] = []
        old_status, new_status = self._status(issue, before), self._status(issue, after)
        rows = self.entries.setdefault(key, [])
        if old_status != new_status:
            rows.append(
                HistoryEntry(
                    change_id, "status", at, old_status[0], new_status[0],
                    old_status[1], new_status[1], name, actor_id,
                )
            )  # fmt: skip
        pairs.append(("assignee", ", ".join(before.assignees), ", ".join(after.assignees)))
        pairs.append(("sprint", before.milestone, after.milestone))
        pairs.append(("parent", before.parent, after.parent))
        old_priority = self.mapping.priority(old_raw)
        new_priority = self.mapping.priority(new_raw)
        pairs.append(("priority", str(old_priority), str(new_priority)))
        old_points = self.mapping.story_points(old_raw)
        new_points = self.mapping.story_points(new_raw)
        pairs.append(
            (
                "story_points",
                None if old_points is None else str(old_points),
                None if new_points is None else str(new_points),
            )
        )
        for fld, old, new in pairs:
            if (old or None) != (new or None):
                entry = HistoryEntry(change_id, fld, at, old or None, new or None)
                rows.append(replace(entry, actor_name=name, actor_id=actor_id))

    def _resolve(self, issue_id: int, issue: Mapping[str, Any], closed: _State) -> None:
        """A closing met after a reopening (it is older): the reopening's `from` is `closed`."""
        value, status = self._status(issue, closed)
        for key, n in self.reopens.pop(issue_id, []):
            row = self.entries[key][n]
            self.entries[key][n] = replace(row, from_value=value, from_status=status)

    def take(self, oldest: datetime | None, *, final: bool) -> dict[str, list[HistoryEntry]]:
        """The entries read so far, with the creation entry of every issue whose events are now
        all read: created after `oldest` (the oldest event read), or any when the walk is
        `final` without one (it read the whole listing)."""
        for issue_id, issue in self.issues.items():
            created = parse_time(issue.get("created_at"))
            if issue_id in self.born or created is None:
                continue
            if oldest is None and not final:
                continue
            if oldest is not None and created <= oldest:
                continue
            self.born.add(issue_id)
            value, status = self._status(issue, self.states.get(issue_id) or _state_of(issue))
            name, actor_id = _actor(issue.get("user"))
            self.entries.setdefault(f"{self.prefix}{issue_id}", []).append(
                HistoryEntry(
                    f"created:{issue_id}", "status", created, None, value, None, status,
                    name, actor_id,
                )
            )  # fmt: skip
        self.reopens.clear()  # a closing on a later page: the reopening keeps `closed`/completed
        out = {k: v for k, v in self.entries.items() if v}
        self.entries = {}
        return out


def _date(headers: Mapping[str, Any]) -> datetime | None:
    value = header(headers, "date")
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


async def walk(
    repo: str,
    token: str | None,
    budget: int,
    fetch: Fetch,
    *,
    prefix: str,
    mapping: IssueMapping,
) -> AsyncGenerator[HistoryPage, None]:
    """The history pages of one repository's event feed from `token`, at most `budget`
    requests (one page each)."""
    start = FeedToken.parse(token)
    size = mapping.per_page
    page_no = start.offset // size + 1 if start.top is not None else 1
    top, top_at = start.top, start.top_at
    replay = Replay(prefix, mapping)
    replay.load(start.states)
    low = start.low
    url = f"/repos/{repo}/issues/events"
    spent = 0
    while spent < budget:
        headers, events, more = await fetch(url, {"per_page": size, "page": page_no})
        spent += 1
        if top is None and events:
            top, top_at = _int(events[0].get("id")), parse_time(events[0].get("created_at"))
        reached = False
        for event in events:
            event_id = _int(event.get("id"))
            if start.done is not None and event_id is not None and event_id <= start.done:
                reached = True
                break
            if low is not None and event_id is not None and event_id >= low:
                continue  # read by this walk before newer events pushed it down
            replay.apply(event)
            if event_id is not None:
                low = event_id if low is None else min(low, event_id)
        if reached or not events or not more:
            newest = top if top is not None else start.done
            through = top_at or _date(headers)
            yield HistoryPage(
                replay.take(None, final=True),
                {repo: str(FeedToken(newest))} if newest is not None else {},
                {repo: through} if through is not None else {},
                requests=1,
            )
            return
        oldest = parse_time(events[-1].get("created_at"))
        entries = replay.take(oldest, final=False)
        progress = FeedToken(start.done, top, top_at, page_no * size, low, replay.saved_states())
        yield HistoryPage(entries, {repo: str(progress)})
        page_no += 1

"""The richer model of a GitHub issue (docs/trackers/github.md#richer-model): item type, labels,
assignees, milestone as sprint, and the parent of a sub-issue, from the JSON the repository's
issue listing already returns (GitHub's OpenAPI `issue` schema: `type`, `labels`, `assignees`,
`milestone`, `parent_issue_url`, `sub_issues_summary`).

The one thing the listing does not give whole is the parent's id: `parent_issue_url` names the
parent as `…/repos/{owner}/{repo}/issues/{number}`, while items are known by their numeric `id`.
`ParentIds` maps (repository, number) to id from every issue listed in the run, and the connector
asks GitHub (`GET /repos/{o}/{r}/issues/{n}`) only for a parent the run has not listed, once a run
each, within `MAX_PARENT_LOOKUPS`.

Pure functions of the JSON, except `ParentIds`, which only remembers what it is told.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from connectors.base import Person, Sprint
from connectors.http import parse_time

#: GitHub's organization issue types that have a kind of ours; any other type is "other".
TYPE_KINDS = {"bug": "bug", "feature": "feature", "task": "task", "epic": "epic"}
#: Issues a run may fetch to learn a parent's id (one per distinct parent it has not listed).
MAX_PARENT_LOOKUPS = 500
_ISSUE_PATH = re.compile(r"/repos/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)/issues/([0-9]+)/?$")

#: A parent named by `parent_issue_url`: (`owner/repo`, issue number).
ParentRef = tuple[str, int]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def item_type_of(raw: Mapping[str, Any], *, pull: bool) -> tuple[str, str]:
    """(our kind, GitHub's name): a pull request; else the organization issue type
    (`type.name`: Bug, Feature, Task, Epic, or another the organization defined); else an issue."""
    if pull:
        return "pull_request", "Pull request"
    kind = raw.get("type")
    name = kind.get("name") if isinstance(kind, Mapping) else None
    if isinstance(name, str) and name.strip():
        return TYPE_KINDS.get(name.strip().casefold(), "other"), name.strip()
    return "issue", "Issue"


def assignees_of(raw: Mapping[str, Any]) -> list[Person]:
    """Each assignee as (login, account id). Never the `email` a user object may carry; a
    `login` that looks like an address is left out too (GitHub logins never hold `@`)."""
    users = raw.get("assignees")
    if not isinstance(users, list):
        single = raw.get("assignee")
        users = [single] if isinstance(single, Mapping) else []
    people: dict[tuple[str | None, str | None], Person] = {}
    for user in users:
        if not isinstance(user, Mapping):
            continue
        login = user.get("login")
        name = login if isinstance(login, str) and login and "@" not in login else None
        uid = str(user["id"]) if _is_int(user.get("id")) else None
        if name is not None or uid is not None:
            people.setdefault((name, uid), Person(name, uid))
    return list(people.values())


def sprints_of(raw: Mapping[str, Any], host: str) -> list[Sprint]:
    """The issue's milestone as a sprint (GitHub's milestones are its sprints): id qualified by
    the API host (milestone ids are unique per GitHub instance), its title, open → active and
    closed → closed, no start (GitHub has none), due_on as the end. A milestone without a
    numeric id is none (nothing to key it by); an unreadable due_on is no end."""
    milestone = raw.get("milestone")
    if not isinstance(milestone, Mapping) or not _is_int(milestone.get("id")):
        return []
    title = milestone.get("title")
    number = milestone.get("number")
    name = title.strip() if isinstance(title, str) and title.strip() else None
    if name is None:
        name = f"Milestone {number}" if _is_int(number) else f"Milestone {milestone['id']}"
    state = {"open": "active", "closed": "closed"}.get(str(milestone.get("state")))
    ends = parse_time(milestone.get("due_on"))
    return [Sprint(f"{host}/milestones/{milestone['id']}", name, state, None, ends)]


def parent_ref(raw: Mapping[str, Any]) -> ParentRef | None:
    """The parent a sub-issue's `parent_issue_url` names, or None (no parent, or a value of
    another shape: the item is still stored, without a parent)."""
    url = raw.get("parent_issue_url")
    if not isinstance(url, str) or not url:
        return None
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    match = _ISSUE_PATH.search(path)
    if match is None:
        return None
    owner, repo, number = match.groups()
    return f"{owner}/{repo}", int(number)


def key_of(ref: ParentRef) -> tuple[str, int]:
    """Repository names compare without case on GitHub."""
    return ref[0].casefold(), ref[1]


def without_emails(value: Any) -> Any:
    """The JSON with every `email` key dropped (user objects may carry one): `raw` is stored as
    external_data, where no e-mail address may land."""
    if isinstance(value, Mapping):
        return {k: without_emails(v) for k, v in value.items() if k != "email"}
    if isinstance(value, list):
        return [without_emails(v) for v in value]
    return value


class ParentIds:
    """(repository, number) → issue id, for one run: learned from every listed issue, and from
    the lookups the connector makes (a parent it could not read is remembered as None)."""

    def __init__(self, budget: int = MAX_PARENT_LOOKUPS) -> None:
        self._ids: dict[tuple[str, int], int | None] = {}
        self.budget = budget
        self.lookups = 0  # requests spent this run

    def learn(self, repo: str, raws: Iterable[Mapping[str, Any]]) -> None:
        for raw in raws:
            if _is_int(raw.get("id")) and _is_int(raw.get("number")):
                self._ids[(repo.casefold(), raw["number"])] = raw["id"]

    def unknown(self, refs: Iterable[ParentRef]) -> list[ParentRef]:
        """The distinct refs neither listed nor looked up yet this run."""
        seen: dict[tuple[str, int], ParentRef] = {}
        for ref in refs:
            if key_of(ref) not in self._ids:
                seen.setdefault(key_of(ref), ref)
        return list(seen.values())

    def record(self, ref: ParentRef, issue_id: int | None) -> None:
        self._ids[key_of(ref)] = issue_id

    def get(self, ref: ParentRef) -> int | None:
        return self._ids.get(key_of(ref))

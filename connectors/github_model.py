"""The richer model of a GitHub issue (docs/trackers/github.md#richer-model): item type, labels,
assignees, milestone as sprint, and the parent of a sub-issue, from the JSON the repository's
issue listing already returns (GitHub's OpenAPI `issue` schema: `type`, `labels`, `assignees`,
`milestone`, `parent_issue_url`, `sub_issues_summary`).

The one thing the listing does not give whole is the parent's id: `parent_issue_url` names the
parent as `…/repos/{owner}/{repo}/issues/{number}`, while items are known by their numeric `id`.
`ParentIds` maps (repository, number) to id from every issue listed in the run and from a small
cache file of the parents learned by earlier runs (a repository's issue number names one issue id
for good: a transferred issue gets a new number and a new id elsewhere), and the connector asks
GitHub (`GET /repos/{o}/{r}/issues/{n}`) only for a parent known neither way, once a run each,
within `MAX_PARENT_LOOKUPS`. So a run that re-reads a sub-issue in its overlap asks nothing.

Pure functions of the JSON, except `ParentIds`, which only remembers what it is told.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connectors.base import Person, Sprint
from connectors.http import json_mentions, parse_time

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


def stored_raw(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The issue's JSON as it is kept (external_data): without any e-mail address, and without
    its milestone's `open_issues`/`closed_issues`, which count the milestone's other issues and
    change whenever one of them opens or closes (an issue read again would look changed)."""
    # Most issues carry no `email` key (GitHub adds a user's address only where the user made
    # it public): their text says so at a tenth of the cost of walking every field.
    kept: dict[str, Any] = without_emails(raw) if json_mentions(raw, b'"email":') else dict(raw)
    milestone = kept.get("milestone")
    if isinstance(milestone, dict):
        kept["milestone"] = {
            k: v for k, v in milestone.items() if k not in ("open_issues", "closed_issues")
        }
    return kept


def without_emails(value: Any) -> Any:
    """The JSON with every `email` key dropped (user objects may carry one): no e-mail address
    may land in the store. (Decoded JSON: objects are dicts. Only containers are walked into:
    this runs over every field of every issue read.)"""
    if isinstance(value, dict):
        return {
            k: without_emails(v) if isinstance(v, (dict, list)) else v
            for k, v in value.items()
            if k != "email"
        }
    if isinstance(value, list):
        return [without_emails(v) if isinstance(v, (dict, list)) else v for v in value]
    return value


class ParentIds:
    """(repository, number) → issue id, for one run: learned from every listed issue, from the
    parents earlier runs learned (`cache`, a JSON file; unreadable = empty), and from the
    lookups the connector makes (a parent it could not read is None for this run only)."""

    def __init__(self, cache: Path | None = None, budget: int = MAX_PARENT_LOOKUPS) -> None:
        self._ids: dict[tuple[str, int], int | None] = {}
        self._cache = cache
        self._cached: dict[str, int] | None = None  # loaded on first need
        self._dirty = False
        self.budget = budget
        self.lookups = 0  # requests spent this run

    def learn(self, repo: str, raws: Iterable[Mapping[str, Any]]) -> None:
        """The ids of the listed issues that may be parents: not those whose
        `sub_issues_summary` says they have no sub-issue (most issues: learning every one held
        a million entries, 200 MB, through a million-issue import). One that gains a sub-issue
        later in the run costs a lookup, once."""
        for raw in raws:
            summary = raw.get("sub_issues_summary")
            if isinstance(summary, Mapping) and summary.get("total") == 0:
                continue
            if _is_int(raw.get("id")) and _is_int(raw.get("number")):
                self._ids[(repo.casefold(), raw["number"])] = raw["id"]

    def unknown(self, refs: Iterable[ParentRef]) -> list[ParentRef]:
        """The distinct refs neither listed, cached nor looked up yet this run; the parents
        known are kept in the cache from now on."""
        seen: dict[tuple[str, int], ParentRef] = {}
        for ref in refs:
            key = key_of(ref)
            if key not in self._ids:
                cached = self._from_cache().get(_cache_key(key))
                if cached is not None:
                    self._ids[key] = cached
                    continue
                seen.setdefault(key, ref)
            else:
                self._keep(key)
        return list(seen.values())

    def record(self, ref: ParentRef, issue_id: int | None) -> None:
        self._ids[key_of(ref)] = issue_id
        self._keep(key_of(ref))

    def get(self, ref: ParentRef) -> int | None:
        return self._ids.get(key_of(ref))

    def _keep(self, key: tuple[str, int]) -> None:
        issue_id = self._ids.get(key)
        cached = self._from_cache()
        if issue_id is not None and cached.get(_cache_key(key)) != issue_id:
            cached[_cache_key(key)] = issue_id
            self._dirty = True

    def _from_cache(self) -> dict[str, int]:
        if self._cached is None:
            self._cached = {}
            if self._cache is not None:
                try:
                    loaded = json.loads(self._cache.read_text())
                except (OSError, ValueError):
                    loaded = {}
                if isinstance(loaded, dict):
                    self._cached = {k: v for k, v in loaded.items() if _is_int(v)}
        return self._cached

    def save(self) -> str | None:
        """Write the cache when it learned something (atomically: runs of other integrations
        may share it); the reason when it cannot (it is only a cache: the next run asks)."""
        if not self._dirty or self._cache is None or self._cached is None:
            return None
        try:
            self._cache.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._cache.parent, prefix=".parents-")
            with os.fdopen(fd, "w") as out:
                json.dump(self._cached, out, separators=(",", ":"))
            os.replace(tmp, self._cache)
        except OSError as exc:
            return exc.strerror or type(exc).__name__
        self._dirty = False
        return None


def _cache_key(key: tuple[str, int]) -> str:
    return f"{key[0]}#{key[1]}"

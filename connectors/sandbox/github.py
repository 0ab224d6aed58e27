"""A local GitHub REST API (the part PyGithub calls for issue sync), for tests, demo and benchmarks.

Serves `GET /repos/{o}/{r}`, `GET /repos/{o}/{r}/issues` (with `state`, `since`, `sort`,
`direction`, `per_page`, `page` and a `Link` header whose URLs carry every query parameter and point
back at this server) and `GET /repos/{o}/{r}/issues/{n}` (so a client that fetches issues one by one
shows up in the request log). `transfer()` moves an issue to another repository as GitHub does: a
new issue (new id, next number) there, the old URL answering 301. Bodies follow
docs/trackers/github.md#response-bodies: every API `url` points at the sandbox, the
`pull_request` key exists on pull requests only, and every response carries the `x-ratelimit-*`
headers. Faults use GitHub's own shapes (primary rate limit: 403 with
`x-ratelimit-remaining: 0` and an epoch `x-ratelimit-reset`; secondary: `Retry-After`). A deleted
issue (`delete()`) leaves every list, as on GitHub, and its own URL answers 410.

History: every change the sandbox makes to an issue (`add_issue`, `update`) is recorded as GitHub
records it, an issue event (`labeled`, `unlabeled`, `assigned`, `unassigned`, `milestoned`,
`demilestoned`, `closed` with its `state_reason`, `reopened`; `merged` then `closed` for a merged
pull request), with its actor, served by `GET /repos/{o}/{r}/issues/events` newest first (highest
id first: ids are given in the order the changes are made, so give changes in time order), paged
with `per_page` (max 100) and `page` and a `Link` header. Each event carries the issue as it is
now (`null` once the issue is deleted or transferred), as GitHub does.

Richer model: issues carry `type` (organization issue types), `milestone` (the repository's
milestones: `add_milestone`), `sub_issues_summary` and, on sub-issues, `parent_issue_url`;
`set_parent` re-parents a sub-issue, recording GitHub's sub-issue events, and moves only the
child's `updated_at` (docs/trackers/github.md#richer-model).

Fault knobs for what GitHub itself should never send but a client must not trust blindly:
`corrupt()` serves chosen JSON keys of one item instead of the real ones (a garbage `updated_at`,
a wrong-typed field), without changing where it sorts; `answer_short()` cuts list answers short
while their `Link` header still promises a next page."""

from __future__ import annotations

import math
import random
import secrets
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives import serialization

from connectors.sandbox import webhooks
from connectors.sandbox.base import (
    DemoChange,
    Fault,
    Request,
    Response,
    SandboxServer,
    demo_action,
)

DOCS = "https://docs.github.com/rest"
PRIMARY_LIMIT_MESSAGE = (
    "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please "
    "include the request ID ABCD:1234."
)
SECONDARY_LIMIT_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)
#: GitHub's 401 messages for app JWTs it refuses (docs: "Generating a JSON Web Token (JWT) for a
#: GitHub App"; the wording as GitHub sends it, seen in client issue trackers).
JWT_UNDECODABLE = "A JSON web token could not be decoded"
JWT_NO_ISSUER = "Missing 'issuer' claim ('iss') in assertion"
JWT_BAD_IAT = (
    "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was "
    "issued"
)
JWT_BAD_EXP = (
    "'Expiration time' claim ('exp') must be a numeric value representing the future time at "
    "which the assertion expires"
)
JWT_EXP_TOO_FAR = "'Expiration time' claim ('exp') is too far in the future"
SUSPENDED = "This installation has been suspended"
#: Where GitHub Enterprise Server serves the REST API (the sandbox serves it at the root too).
GHES_PREFIX = "/api/v3"


def iso(value: datetime | None) -> str | None:
    """GitHub's timestamp format: UTC, whole seconds, `Z`."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_since(value: str) -> datetime:
    """Parse a `since` query value the way GitHub accepts it (ISO 8601, `Z` or an offset)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@dataclass(slots=True)
class SandboxIssue:
    """One issue or pull request held by the sandbox."""

    repo: str
    id: int
    number: int
    title: str
    created_at: datetime
    updated_at: datetime
    body: str | None = None
    state: str = "open"  # open | closed
    state_reason: str | None = None  # completed | not_planned | duplicate | reopened | None
    closed_at: datetime | None = None
    labels: list[str] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)
    author: str = "octocat"
    is_pr: bool = False
    draft: bool = False
    merged_at: datetime | None = None
    milestone: str | None = None  # the milestone's title (in this repository)
    type: str | None = None  # the organization's issue type (Bug, Feature, Task, Epic, …)
    parent_id: int | None = None  # the parent issue of a sub-issue (set_parent)
    corrupt: dict[str, Any] = field(default_factory=dict)  # fault knob: JSON keys served instead


@dataclass(slots=True)
class SandboxMilestone:
    """A repository's milestone (`nullable-milestone`): ids are unique across repositories."""

    id: int
    number: int
    title: str
    state: str = "open"  # open | closed
    due_on: datetime | None = None


@dataclass(frozen=True, slots=True)
class SandboxEvent:
    """One issue event (`GET /repos/{o}/{r}/issues/events`): what changed, when and by whom."""

    id: int
    issue_id: int
    event: str  # labeled | unlabeled | assigned | unassigned | milestoned | demilestoned | …
    created_at: datetime
    actor: str
    label: str | None = None
    assignee: str | None = None
    milestone: str | None = None
    state_reason: str | None = None
    # sub-issue events: the other issue (the parent on the child's, the child on the parent's)
    other: tuple[str, int, str] | None = None  # (repository, number, title)


@dataclass(slots=True)
class SandboxApp:
    """A GitHub App as the sandbox knows it: only its PUBLIC key (the test holds the private)."""

    id: int
    client_id: str
    slug: str
    public_key: Any  # a cryptography RSA public key


@dataclass(slots=True)
class SandboxInstallation:
    """An app installed on one account: all its repositories, or the `repos` selected."""

    id: int
    app_id: int
    account: str
    account_type: str  # Organization | User
    repos: set[str] | None = None  # full names (casefolded); None: all
    suspended_at: datetime | None = None

    def covers(self, full_name: str) -> bool:
        owner = full_name.partition("/")[0].casefold()
        if owner != self.account.casefold():
            return False
        return self.repos is None or full_name.casefold() in self.repos


@dataclass(slots=True)
class _Caller:
    """Who sent a request: a personal access token, the app (its JWT) or an installation."""

    kind: str  # pat | app | installation
    app: SandboxApp | None = None
    installation: SandboxInstallation | None = None


class GitHubSandbox(SandboxServer):
    """An in-memory GitHub holding repositories and their issues/pull requests."""

    html_base = "https://github.com"
    rate_limit = 5000
    #: Serve pull requests as older GitHub Enterprise Server does: `pull_request` without
    #: `merged_at` (optional in GitHub's OpenAPI `issue` schema), so a list item does not say
    #: whether a closed PR was merged.
    legacy_pull_requests = False

    def __init__(self, token: str = "sandbox-token", *, repos: Iterable[str] = ()) -> None:
        super().__init__()
        self.token = token
        self.repos: dict[str, int] = {}  # full name -> repository id
        self.issues: dict[str, list[SandboxIssue]] = {}
        self._next_id = 1001  # ids are unique across repositories, as on github.com
        self._by_id: dict[int, SandboxIssue] = {}  # find() without a scan (benchmarks)
        self.events: dict[str, list[SandboxEvent]] = {}  # repo -> its issue events, oldest first
        self._next_event_id = 70001
        self._used = 0
        self._data_lock = threading.RLock()
        #: webhook subscriptions: every add_issue/update is delivered, signed as GitHub signs
        self.hooks = webhooks.WebhookSender(webhooks.github_headers)
        self._deleted: dict[str, set[int]] = {}  # repo -> numbers of deleted issues (410)
        self._moved: dict[str, dict[int, tuple[str, int]]] = {}  # repo -> number -> new place
        self._numbers: dict[str, int] = {}  # repo -> the last number given (never reused)
        self.milestones: dict[tuple[str, str], SandboxMilestone] = {}  # (repo, title) -> it
        self._next_milestone_id = 9001
        self._children: dict[int, list[int]] = {}  # parent id -> its sub-issues' ids, in order
        # logins whose user objects carry a public e-mail address (a client must not keep it)
        self.public_emails: dict[str, str] = {}
        self.users: set[str] = set()  # owners (casefolded) that are user accounts, not orgs
        self.issues_disabled: set[str] = set()  # full names whose issues are switched off
        # GitHub Apps (add_app, install): tokens are minted against the app's JWT
        self.apps: dict[int, SandboxApp] = {}
        self.installations: dict[int, SandboxInstallation] = {}
        self.token_lifetime = 3600.0  # seconds an installation token lives (GitHub: one hour)
        self.clock_offset = 0.0  # seconds the server's clock is ahead of this machine's
        # token -> (installation id, expiry as server time); every token ever issued, in order
        self.installation_tokens: dict[str, tuple[int, float]] = {}
        # a PAT's expiry, announced as GitHub does (GitHub-Authentication-Token-Expiration)
        self.pat_expires_at: datetime | None = None
        for name in repos:
            self.add_repo(name)

    # -- data helpers (tests, demo, benchmarks) -------------------------------------------------
    def add_repo(self, full_name: str) -> None:
        """Create an empty repository `owner/name` (no-op when it exists)."""
        with self._data_lock:
            if full_name not in self.repos:
                self.repos[full_name] = len(self.repos) + 1
                self.issues[full_name] = []
                self.events[full_name] = []
                self._numbers[full_name] = 0

    def add_app(
        self, app_id: int, public_key_pem: bytes | str, *, client_id: str = "", slug: str = ""
    ) -> SandboxApp:
        """Register a GitHub App by its PUBLIC key (PEM): the sandbox verifies its JWTs."""
        pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
        app = SandboxApp(
            id=app_id,
            client_id=client_id or f"Iv23li{app_id:014d}",
            slug=slug or f"sync-app-{app_id}",
            public_key=serialization.load_pem_public_key(pem),
        )
        with self._data_lock:
            self.apps[app_id] = app
        return app

    def install(
        self,
        app_id: int,
        account: str,
        *,
        repos: Iterable[str] | None = None,
        account_type: str = "Organization",
    ) -> SandboxInstallation:
        """Install an app on an account (all its repositories, or only `repos`)."""
        with self._data_lock:
            installation = SandboxInstallation(
                id=70000 + len(self.installations) + 1,
                app_id=app_id,
                account=account,
                account_type=account_type,
                repos=None if repos is None else {r.casefold() for r in repos},
            )
            self.installations[installation.id] = installation
            if account_type == "User":
                self.users.add(account.casefold())
            return installation

    def suspend(self, installation_id: int) -> None:
        """Suspend an installation: no new tokens (403), and its tokens stop working."""
        with self._data_lock:
            self.installations[installation_id].suspended_at = datetime.now(UTC)

    def uninstall(self, installation_id: int) -> None:
        """Remove an installation: its tokens die, minting answers 404."""
        with self._data_lock:
            del self.installations[installation_id]

    def expire_tokens(self) -> None:
        """Every installation token issued so far dies now, whatever its `expires_at` said
        (revoked, or GitHub's clock ahead of the client's): the next use answers 401."""
        with self._data_lock:
            self.installation_tokens = {
                token: (inst, 0.0) for token, (inst, _) in self.installation_tokens.items()
            }

    def remove_repo(self, full_name: str) -> None:
        """Delete a repository (it leaves every listing; its URLs answer 404)."""
        with self._data_lock:
            del self.repos[full_name]
            for issue in self.issues.pop(full_name):
                self._by_id.pop(issue.id, None)

    def add_issue(
        self,
        repo: str,
        title: str = "An issue",
        *,
        updated_at: datetime,
        created_at: datetime | None = None,
        body: str | None = None,
        state: str = "open",
        state_reason: str | None = None,
        closed_at: datetime | None = None,
        labels: Iterable[str] = (),
        assignees: Iterable[str] = (),
        is_pr: bool = False,
        draft: bool = False,
        merged_at: datetime | None = None,
        milestone: str | None = None,
        actor: str = "octocat",
        type: str | None = None,
        parent: int | None = None,
    ) -> SandboxIssue:
        """Add an issue (or, with `is_pr`, a pull request) with explicit upstream timestamps.
        Its events are recorded as GitHub would have: labels, assignees and milestone given at
        creation (by `actor`), then, for one added closed, its closing at `closed_at`; with
        `parent`, it is that issue's sub-issue from its creation."""
        with self._data_lock:
            self.add_repo(repo)
            if milestone is not None:
                self.add_milestone(repo, milestone)
            if state == "closed" and closed_at is None:
                closed_at = merged_at or updated_at
            if state == "closed" and state_reason is None and not is_pr:
                state_reason = "completed"
            self._numbers[repo] += 1
            issue = SandboxIssue(
                repo=repo,
                id=self._next_id,
                # Numbers are never reused, even after a deletion or a transfer.
                number=self._numbers[repo],
                title=title,
                body=body,
                created_at=created_at or updated_at,
                updated_at=updated_at,
                state=state,
                state_reason=state_reason,
                closed_at=closed_at,
                labels=list(labels),
                assignees=list(assignees),
                is_pr=is_pr,
                draft=draft,
                merged_at=merged_at,
                milestone=milestone,
                type=type,
                author=actor,
            )
            self._next_id += 1
            self.issues[repo].append(issue)
            self._by_id[issue.id] = issue
            opened = SandboxIssue(repo, issue.id, issue.number, title, issue.created_at, updated_at)
            opened.is_pr = is_pr
            self._record(opened, issue, issue.created_at, actor)
            if parent is not None:
                self._adopt(issue, parent, issue.created_at, actor)
            self._announce("opened", issue, actor)
            return issue

    def add_milestone(
        self, repo: str, title: str, *, state: str = "open", due_on: datetime | None = None
    ) -> SandboxMilestone:
        """A milestone of `repo` (the existing one of that title, else a new one with the next
        number): issues name it by title (`add_issue(milestone=…)`, `update(milestone=…)`)."""
        with self._data_lock:
            found = self.milestones.get((repo, title))
            if found is None:
                number = 1 + sum(1 for r, _ in self.milestones if r == repo)
                found = SandboxMilestone(self._next_milestone_id, number, title, state, due_on)
                self._next_milestone_id += 1
                self.milestones[(repo, title)] = found
            return found

    def set_parent(
        self, issue_id: int, parent_id: int | None, *, at: datetime, actor: str = "octocat"
    ) -> SandboxIssue:
        """Make an issue a sub-issue of `parent_id` (replacing its parent, as
        `POST …/sub_issues` with `replace_parent: true` does), or of none. GitHub records
        `parent_issue_removed`/`parent_issue_added` on the child and `sub_issue_removed`/
        `sub_issue_added` on the parents.

        GitHub does not document whether this moves either issue's `updated_at`. The sandbox
        moves the child's (its own `parent_issue_url` changed, as a milestone change moves it)
        and NOT the parents', whose `sub_issues_summary` changes silently: the connector must
        not count on a parent being listed again (docs/trackers/github.md#richer-model)."""
        with self._data_lock:
            issue = self.find(issue_id)
            if parent_id == issue.parent_id:
                return issue
            if issue.parent_id is not None:
                old = self.find(issue.parent_id)
                self._children[old.id].remove(issue.id)
                issue.parent_id = None
                self._event(issue, "parent_issue_removed", at, actor, other=_ref(old))
                self._event(old, "sub_issue_removed", at, actor, other=_ref(issue))
            if parent_id is not None:
                self._adopt(issue, parent_id, at, actor)
            issue.updated_at = at
            return issue

    def _adopt(self, issue: SandboxIssue, parent_id: int, at: datetime, actor: str) -> None:
        """Make `issue` a sub-issue of `parent_id`, refusing what GitHub refuses."""
        parent = self.find(parent_id)
        if issue.is_pr or parent.is_pr:
            raise ValueError("pull requests cannot be sub-issues or have sub-issues")
        ancestor: SandboxIssue | None = parent
        depth = 1
        while ancestor is not None:
            if ancestor.id == issue.id:
                raise ValueError("an issue cannot be its own ancestor")
            ancestor = self._by_id.get(ancestor.parent_id) if ancestor.parent_id else None
            depth += 1
        if depth > 8:
            raise ValueError("sub-issues nest at most 8 levels")
        if len(self._children.get(parent.id, [])) >= 100:
            raise ValueError("a parent has at most 100 sub-issues")
        issue.parent_id = parent.id
        self._children.setdefault(parent.id, []).append(issue.id)
        self._event(parent, "sub_issue_added", at, actor, other=_ref(issue))
        self._event(issue, "parent_issue_added", at, actor, other=_ref(parent))

    def _record(self, old: SandboxIssue, new: SandboxIssue, at: datetime, actor: str) -> None:
        """The events of a change from `old` to `new` at `at`, in GitHub's order."""
        for name in [n for n in new.labels if n not in old.labels]:
            self._event(new, "labeled", at, actor, label=name)
        for name in [n for n in old.labels if n not in new.labels]:
            self._event(new, "unlabeled", at, actor, label=name)
        for login in [a for a in new.assignees if a not in old.assignees]:
            self._event(new, "assigned", at, actor, assignee=login)
        for login in [a for a in old.assignees if a not in new.assignees]:
            self._event(new, "unassigned", at, actor, assignee=login)
        if old.milestone != new.milestone:
            if old.milestone is not None:
                self._event(new, "demilestoned", at, actor, milestone=old.milestone)
            if new.milestone is not None:
                self._event(new, "milestoned", at, actor, milestone=new.milestone)
        if old.state != new.state:
            if new.state == "closed":
                closed = new.closed_at or at
                if new.merged_at is not None:
                    self._event(new, "merged", new.merged_at, actor)
                self._event(new, "closed", closed, actor, state_reason=new.state_reason)
            else:
                self._event(new, "reopened", at, actor)

    def _event(
        self, issue: SandboxIssue, kind: str, at: datetime, actor: str, **extra: Any
    ) -> None:
        event = SandboxEvent(self._next_event_id, issue.id, kind, at, actor, **extra)
        self._next_event_id += 1
        self.events[issue.repo].append(event)

    def delete(self, issue_id: int) -> None:
        """Delete an issue, as a repository admin can: it leaves every list, and
        `GET /repos/{o}/{r}/issues/{n}` answers 410 Gone."""
        with self._data_lock:
            issue = self.find(issue_id)
            self.issues[issue.repo].remove(issue)
            self._by_id.pop(issue.id, None)
            self._deleted.setdefault(issue.repo, set()).add(issue.number)
            for child in self._children.pop(issue.id, []):  # its sub-issues lose their parent
                if child in self._by_id:
                    self._by_id[child].parent_id = None
            if issue.parent_id is not None and issue.parent_id in self._children:
                self._children[issue.parent_id].remove(issue.id)

    def transfer(self, issue_id: int, repo: str, *, at: datetime) -> SandboxIssue:
        """Transfer an issue to another repository, as GitHub does: it leaves every list of its
        repository and its old URL answers 301 to the new one; in `repo` it is a new issue with
        a new id (GitHub does not keep the id across a transfer) and the next number, keeping
        title, body, state, labels, assignees and creation time, updated at `at`. Pull requests
        cannot be transferred."""
        with self._data_lock:
            old = self.find(issue_id)
            if old.is_pr:
                raise ValueError("pull requests cannot be transferred")
            if repo == old.repo:
                raise ValueError("an issue is transferred to another repository")
            self.add_repo(repo)
            self.issues[old.repo].remove(old)
            self._by_id.pop(old.id, None)
            self._numbers[repo] += 1
            new = SandboxIssue(
                repo=repo,
                id=self._next_id,
                number=self._numbers[repo],
                title=old.title,
                body=old.body,
                created_at=old.created_at,
                updated_at=at,
                state=old.state,
                state_reason=old.state_reason,
                closed_at=old.closed_at,
                labels=list(old.labels),
                assignees=list(old.assignees),
                author=old.author,
            )
            self._next_id += 1
            self.issues[repo].append(new)
            self._by_id[new.id] = new
            self._moved.setdefault(old.repo, {})[old.number] = (repo, new.number)
            return new

    def corrupt(self, issue_id: int, **json_fields: Any) -> None:
        """Fault knob: serve these JSON keys of the item instead of the real ones (a value of
        `...` drops the key), without changing its place in any list."""
        with self._data_lock:
            self.find(issue_id).corrupt.update(json_fields)

    def find(self, issue_id: int) -> SandboxIssue:
        """The issue or pull request with this (global) id."""
        with self._data_lock:
            issue = self._by_id.get(issue_id)
        if issue is None:
            raise KeyError(issue_id)
        return issue

    def update(
        self, issue_id: int, *, at: datetime, actor: str = "octocat", **changes: Any
    ) -> SandboxIssue:
        """Change an item at upstream time `at`, by `actor` (its events are recorded). Keys are
        `SandboxIssue` fields; closing sets `closed_at` (and `state_reason=completed` for issues)
        unless given; reopening clears it."""
        with self._data_lock:
            issue = self.find(issue_id)
            old = SandboxIssue(
                issue.repo, issue.id, issue.number, issue.title, issue.created_at,
                issue.updated_at, state=issue.state, labels=list(issue.labels),
                assignees=list(issue.assignees), milestone=issue.milestone,
            )  # fmt: skip
            for name, value in changes.items():
                if not hasattr(issue, name) or name == "parent_id":  # parents: set_parent
                    raise AttributeError(name)
                setattr(issue, name, value)
            if issue.milestone is not None:
                self.add_milestone(issue.repo, issue.milestone)
            if changes.get("state") == "closed":
                if "closed_at" not in changes:
                    issue.closed_at = at
                if "state_reason" not in changes and not issue.is_pr:
                    issue.state_reason = "completed"
            elif changes.get("state") == "open":
                issue.closed_at = None
                if "state_reason" not in changes:
                    issue.state_reason = "reopened" if not issue.is_pr else None
            issue.updated_at = at
            self._record(old, issue, at, actor)
            action = {"closed": "closed", "open": "reopened"}.get(
                changes.get("state", ""), "edited"
            )
            self._announce(action, issue, actor)
            return issue

    def _announce(self, action: str, issue: SandboxIssue, actor: str) -> None:
        """The `issues` (or `pull_request`) webhook event of a change, to every subscription."""
        if not self.hooks.subscribed:
            return
        event = "pull_request" if issue.is_pr else "issues"
        payload = {
            "action": action,
            "issue" if not issue.is_pr else "pull_request": self.issue_json(issue),
            "repository": {"id": self.repos.get(issue.repo), "full_name": issue.repo},
            "sender": {"login": actor, "type": "User"},
        }
        self.hooks.deliver(event, payload)

    # -- JSON bodies ----------------------------------------------------------------------------
    def repo_json(self, full_name: str) -> dict[str, Any]:
        """A repository in a list (`/orgs/{o}/repos`, `/installation/repositories`): every key
        GitHub's OpenAPI `repository` schema requires."""
        owner, name = full_name.split("/", 1)
        api = f"{self.url}/repos/{full_name}"
        html = f"{self.html_base}/{full_name}"
        open_issues = sum(1 for i in self.issues[full_name] if i.state == "open")
        body: dict[str, Any] = {
            "id": self.repos[full_name],
            "node_id": f"R_{self.repos[full_name]}",
            "name": name,
            "full_name": full_name,
            "private": False,
            "owner": _user(owner, self.url, self.html_base, kind="Organization"),
            "url": api,
            "html_url": html,
            "description": None,
            "fork": False,
            "issues_url": f"{api}/issues{{/number}}",
            "has_issues": full_name not in self.issues_disabled,
            "open_issues_count": open_issues,
            "open_issues": open_issues,
            "clone_url": f"{html}.git",
            "git_url": f"git://{html.split('://', 1)[-1]}.git",
            "ssh_url": f"git@{html.split('://', 1)[-1].split('/', 1)[0]}:{full_name}.git",
            "svn_url": html,
            "mirror_url": None,
            "homepage": None,
            "language": None,
            "license": None,
            "default_branch": "main",
            "forks": 0,
            "forks_count": 0,
            "stargazers_count": 0,
            "watchers": 0,
            "watchers_count": 0,
            "size": 0,
            "has_downloads": True,
            "has_projects": True,
            "has_wiki": True,
            "has_pages": False,
            "has_discussions": False,
            "archived": False,
            "disabled": False,
            "visibility": "public",
            "pushed_at": "2020-01-01T00:00:00Z",
            "created_at": "2020-01-01T00:00:00Z",
            "updated_at": "2020-01-01T00:00:00Z",
        }
        for key, suffix in _REPO_URLS:
            body[key] = f"{api}/{suffix}"
        return body

    def full_repo_json(self, full_name: str) -> dict[str, Any]:
        """`GET /repos/{o}/{r}`: the `full-repository` schema, which also requires
        `network_count` and `subscribers_count` (and, unlike a list's `repository`, a
        non-null `pushed_at`)."""
        return {**self.repo_json(full_name), "network_count": 0, "subscribers_count": 0}

    def issue_json(self, issue: SandboxIssue) -> dict[str, Any]:
        api = f"{self.url}/repos/{issue.repo}"
        kind = "pull" if issue.is_pr else "issues"
        body: dict[str, Any] = {
            "id": issue.id,
            "node_id": f"{'PR' if issue.is_pr else 'I'}_kw{issue.id}",
            "number": issue.number,
            "url": f"{api}/issues/{issue.number}",
            "repository_url": api,
            "labels_url": f"{api}/issues/{issue.number}/labels{{/name}}",
            "comments_url": f"{api}/issues/{issue.number}/comments",
            "events_url": f"{api}/issues/{issue.number}/events",
            "html_url": f"{self.html_base}/{issue.repo}/{kind}/{issue.number}",
            "title": issue.title,
            "body": issue.body,
            "user": _user(issue.author, self.url, self.html_base),
            "labels": [_label(api, name) for name in issue.labels],
            "state": issue.state,
            "state_reason": issue.state_reason,
            "locked": False,
            "assignee": self._person(issue.assignees[0]) if issue.assignees else None,
            "assignees": [self._person(login) for login in issue.assignees],
            "milestone": self._milestone_json(issue.repo, issue.milestone),
            "comments": 0,
            "created_at": iso(issue.created_at),
            "updated_at": iso(issue.updated_at),
            "closed_at": iso(issue.closed_at),
            "author_association": "MEMBER",
        }
        if not issue.is_pr:
            body["type"] = _issue_type(issue.type)
            body["sub_issues_summary"] = self._summary(issue.id)
            parent = self._by_id.get(issue.parent_id) if issue.parent_id else None
            if parent is not None:  # GitHub sends the key on sub-issues only
                body["parent_issue_url"] = f"{self.url}/repos/{parent.repo}/issues/{parent.number}"
        if issue.is_pr:
            body["draft"] = issue.draft
            body["pull_request"] = {
                "url": f"{api}/pulls/{issue.number}",
                "html_url": body["html_url"],
                "diff_url": f"{body['html_url']}.diff",
                "patch_url": f"{body['html_url']}.patch",
                "merged_at": iso(issue.merged_at),
            }
            if self.legacy_pull_requests:
                del body["pull_request"]["merged_at"]
        for key, value in issue.corrupt.items():
            if value is ...:
                body.pop(key, None)
            else:
                body[key] = value
        return body

    def _person(self, login: str) -> dict[str, Any]:
        """A `simple-user`, with the public e-mail address planted for it, if any."""
        user = _user(login, self.url, self.html_base)
        if login in self.public_emails:
            user["email"] = self.public_emails[login]
        return user

    def _summary(self, issue_id: int) -> dict[str, int]:
        """`sub-issues-summary`: how many sub-issues, how many closed, percent closed."""
        children = [self._by_id[c] for c in self._children.get(issue_id, []) if c in self._by_id]
        done = sum(1 for c in children if c.state == "closed")
        percent = done * 100 // len(children) if children else 0
        return {"total": len(children), "completed": done, "percent_completed": percent}

    def _milestone_json(self, repo: str, title: str | None) -> dict[str, Any] | None:
        """A `nullable-milestone`, every key the schema requires."""
        if title is None:
            return None
        milestone = self.milestones.get((repo, title)) or self.add_milestone(repo, title)
        api = f"{self.url}/repos/{repo}"
        number = milestone.number
        open_issues = closed_issues = 0
        for issue in self.issues.get(repo, []):
            if issue.milestone == title:
                open_issues += issue.state == "open"
                closed_issues += issue.state == "closed"
        return {
            "url": f"{api}/milestones/{number}",
            "html_url": f"{self.html_base}/{repo}/milestone/{number}",
            "labels_url": f"{api}/milestones/{number}/labels",
            "id": milestone.id,
            "node_id": f"MI_kw{milestone.id}",
            "number": number,
            "title": title,
            "description": None,
            "creator": None,
            "open_issues": open_issues,
            "closed_issues": closed_issues,
            "state": milestone.state,
            "created_at": "2020-01-01T00:00:00Z",
            "updated_at": "2020-01-01T00:00:00Z",
            "closed_at": "2020-01-02T00:00:00Z" if milestone.state == "closed" else None,
            "due_on": iso(milestone.due_on),
        }

    def event_json(self, event: SandboxEvent, repo: str) -> dict[str, Any]:
        """An `issue-event` of the repository listing, with the issue as it is now (null when
        it is gone). `state_reason` on `closed` is sent as GitHub sends it, though the
        `issue-event` schema does not list it (its timeline twin `state-change-issue-event`
        does)."""
        api = f"{self.url}/repos/{repo}"
        issue = self._by_id.get(event.issue_id)
        if issue is not None and issue.repo != repo:
            issue = None
        body: dict[str, Any] = {
            "id": event.id,
            "node_id": f"IE_kw{event.id}",
            "url": f"{api}/issues/events/{event.id}",
            "actor": self._actor_json(event.actor),
            "event": event.event,
            "commit_id": None,
            "commit_url": None,
            "created_at": iso(event.created_at),
            "issue": self.issue_json(issue) if issue is not None else None,
            "performed_via_github_app": None,
        }
        if event.label is not None:
            body["label"] = {"name": event.label, "color": "ededed"}
        if event.assignee is not None:
            body["assignee"] = _user(event.assignee, self.url, self.html_base)
            body["assigner"] = self._actor_json(event.actor)
        if event.milestone is not None:
            body["milestone"] = {"title": event.milestone}
        if event.event == "closed":
            body["state_reason"] = event.state_reason
        if event.other is not None:
            key = "parent_issue" if event.event.startswith("parent_") else "sub_issue"
            body[key] = self._reference_json(*event.other)
        return body

    def _reference_json(self, repo: str, number: int, title: str) -> dict[str, Any]:
        """A `nullable-issue-reference`: the other issue of a sub-issue event."""
        found = next((i for i in self.issues.get(repo, []) if i.number == number), None)
        return {
            "number": number,
            "title": title,
            "state": found.state if found is not None else "open",
            "state_reason": found.state_reason if found is not None else None,
            "repository": self.repo_json(repo) if repo in self.repos else None,
            "issue_type": _issue_type(found.type if found is not None else None, short=True),
        }

    def _actor_json(self, login: str) -> dict[str, Any]:
        """The actor as a `simple-user` with a public e-mail (a client must not keep it)."""
        return {**_user(login, self.url, self.html_base), "email": f"{login}@users.example"}

    def _list_events(self, full_name: str, request: Request, prefix: str = "") -> Response:
        """`GET /repos/{o}/{r}/issues/events`: newest first, `per_page` (max 100) and `page`."""
        per_page, page = _paging(request)
        events = self.events[full_name]  # oldest first (ids ascending): read from the end
        last = max(1, math.ceil(len(events) / per_page))
        end = max(0, len(events) - (page - 1) * per_page)
        chunk = events[max(0, end - per_page) : end][::-1]
        keep = self._cut()
        if keep is not None:
            chunk = chunk[:keep]
        query = {k: v[-1] for k, v in request.query.items()}
        headers = {}
        link = self._link(f"{prefix}/repos/{full_name}/issues/events", query, page, last)
        if link:
            headers["Link"] = link
        return Response(200, [self.event_json(e, full_name) for e in chunk], headers)

    # -- HTTP -----------------------------------------------------------------------------------
    def _rate_headers(
        self, remaining: int | None = None, reset: int | None = None
    ) -> dict[str, str]:
        with self._data_lock:
            self._used += 1
            used = self._used
        left = max(0, self.rate_limit - used) if remaining is None else remaining
        return {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(left),
            "x-ratelimit-used": str(min(used, self.rate_limit)),
            "x-ratelimit-reset": str(reset if reset is not None else int(time.time()) + 3600),
            "x-ratelimit-resource": "core",
        }

    def handle(self, request: Request) -> Response:
        response = self._route(request)
        headers = self._rate_headers()
        _, _, credential = request.headers.get("authorization", "").partition(" ")
        if self.pat_expires_at is not None and credential == self.token:
            # GitHub's format for fine-grained and expiring classic tokens
            when = self.pat_expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            headers["GitHub-Authentication-Token-Expiration"] = when
        response.headers = {**headers, **response.headers}
        return response

    def _now(self) -> float:
        """The server's clock (`clock_offset` ahead of this machine's)."""
        return time.time() + self.clock_offset

    def _caller(self, request: Request) -> _Caller | Response:
        """Who is asking, as GitHub tells: the PAT, an installation token (`token` or `Bearer`),
        or the app's JWT (`Bearer` only), verified with the app's public key."""
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        scheme = scheme.casefold()
        if scheme not in ("token", "bearer") or not credential:
            return _error(401, "Bad credentials")
        if credential == self.token:
            return _Caller("pat")
        if credential in self.installation_tokens:
            installation_id, expires = self.installation_tokens[credential]
            installation = self.installations.get(installation_id)
            if installation is None or expires <= self._now():
                return _error(401, "Bad credentials")  # expired, or the app was uninstalled
            if installation.suspended_at is not None:
                return _error(403, SUSPENDED)
            return _Caller("installation", installation=installation)
        if scheme == "bearer" and credential.count(".") == 2:
            return self._verify_jwt(credential)
        return _error(401, "Bad credentials")

    def _verify_jwt(self, token: str) -> _Caller | Response:
        """GitHub's checks of an app JWT: RS256 signed by the key of the app named by `iss`
        (app ID or client ID), `iat` not in the future, `exp` in the future and at most ten
        minutes ahead (server time)."""
        try:
            alg = jwt.get_unverified_header(token).get("alg")
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return _error(401, JWT_UNDECODABLE)
        if alg != "RS256":
            return _error(401, JWT_UNDECODABLE)
        if "iss" not in claims:
            return _error(401, JWT_NO_ISSUER)
        issuer = str(claims["iss"])
        app = next((a for a in self.apps.values() if issuer in (str(a.id), a.client_id)), None)
        if app is None:
            return _error(401, JWT_UNDECODABLE)
        try:
            jwt.decode(
                token,
                app.public_key,
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.PyJWTError:  # signed by another key
            return _error(401, JWT_UNDECODABLE)
        now = self._now()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or iat > now:
            return _error(401, JWT_BAD_IAT)
        if not isinstance(exp, int | float) or exp <= now:
            return _error(401, JWT_BAD_EXP)
        if exp - now > 600:
            return _error(401, JWT_EXP_TOO_FAR)
        return _Caller("app", app=app)

    def _route(self, request: Request) -> Response:
        path, prefix = request.path, ""
        if path == GHES_PREFIX or path.startswith(GHES_PREFIX + "/"):
            prefix, path = GHES_PREFIX, path[len(GHES_PREFIX) :]
        parts = path.strip("/").split("/")
        with self._data_lock:
            caller = self._caller(request)
            if isinstance(caller, Response):
                return caller
            if _app_endpoint(parts):
                return self._app_route(request, parts, caller, prefix)
            if request.method != "GET":
                return _error(404, "Not Found")
            if caller.kind == "app":
                # The JWT authenticates as the app only: no repository data with it.
                return _error(401, "Bad credentials")
            if parts == ["installation", "repositories"]:
                return self._installation_repos(request, caller, prefix)
            if len(parts) == 3 and parts[0] in ("orgs", "users") and parts[2] == "repos":
                return self._owner_repos(request, caller, parts[0], parts[1], prefix)
            return self._repo_route(request, parts, caller, prefix)

    def _canonical(self, full_name: str) -> str:
        """The repository's own spelling: GitHub resolves names without regard to case."""
        wanted = full_name.casefold()
        return next((n for n in self.repos if n.casefold() == wanted), full_name)

    def _visible(self, caller: _Caller, full_name: str) -> bool:
        return full_name in self.repos and (
            caller.installation is None or caller.installation.covers(full_name)
        )

    def _repo_route(
        self, request: Request, parts: list[str], caller: _Caller, prefix: str
    ) -> Response:
        if len(parts) < 3 or parts[0] != "repos":
            return _error(404, "Not Found")
        full_name = self._canonical(f"{parts[1]}/{parts[2]}")
        if not self._visible(caller, full_name):
            return _error(404, "Not Found")
        if len(parts) == 3:
            return Response(200, self.full_repo_json(full_name))
        if len(parts) == 4 and parts[3] == "issues":
            if full_name in self.issues_disabled:
                return _error(410, "Issues are disabled for this repo")
            return self._list_issues(full_name, request, prefix)
        if parts[3:] == ["issues", "events"]:
            return self._list_events(full_name, request, prefix)
        if len(parts) == 5 and parts[3] == "issues" and parts[4].isdigit():
            number = int(parts[4])
            for issue in self.issues[full_name]:
                if issue.number == number:
                    return Response(200, self.issue_json(issue))
            if number in self._deleted.get(full_name, ()):
                return _error(410, "This issue was deleted")
            moved = self._moved.get(full_name, {}).get(number)
            if moved is not None:
                where = f"{self.url}/repos/{moved[0]}/issues/{moved[1]}"
                return Response(
                    301, {**_body("Moved Permanently"), "url": where}, {"Location": where}
                )
        return _error(404, "Not Found")

    # -- GitHub Apps ------------------------------------------------------------------------------
    def _app_route(
        self, request: Request, parts: list[str], caller: _Caller, prefix: str
    ) -> Response:
        """The endpoints that take the app's JWT (`Bearer`) and nothing else."""
        if caller.app is None:
            return _error(401, JWT_UNDECODABLE)
        app = caller.app
        mine = [i for i in self.installations.values() if i.app_id == app.id]
        if request.method == "POST":
            if len(parts) == 4 and parts[3] == "access_tokens" and parts[2].isdigit():
                found = self.installations.get(int(parts[2]))
                if found is None or found.app_id != app.id:
                    return _error(404, "Not Found")
                if found.suspended_at is not None:
                    return _error(403, SUSPENDED)
                return self._mint(found)
            return _error(404, "Not Found")
        if request.method != "GET":
            return _error(404, "Not Found")
        if parts == ["app"]:
            return Response(200, self.app_json(app))
        if parts == ["app", "installations"]:
            chunk, headers = self._page_of(request, mine, f"{prefix}/app/installations", cut=False)
            return Response(200, [self.installation_json(i) for i in chunk], headers)
        installation: SandboxInstallation | None = None
        if parts[0] == "app" and len(parts) == 3 and parts[2].isdigit():
            installation = next((i for i in mine if i.id == int(parts[2])), None)
        elif parts[0] == "repos":
            full_name = self._canonical(f"{parts[1]}/{parts[2]}")
            if full_name in self.repos:
                installation = next((i for i in mine if i.covers(full_name)), None)
        else:  # orgs/{org}/installation, users/{user}/installation
            kind = "Organization" if parts[0] == "orgs" else "User"
            installation = next(
                (
                    i
                    for i in mine
                    if i.account.casefold() == parts[1].casefold() and i.account_type == kind
                ),
                None,
            )
        if installation is None:
            return _error(404, "Not Found")
        return Response(200, self.installation_json(installation))

    def _mint(self, installation: SandboxInstallation) -> Response:
        """`POST /app/installations/{id}/access_tokens`: a new token, good for `token_lifetime`
        (GitHub: one hour). Never assume a length: GitHub's formats change."""
        token = "ghs_" + secrets.token_urlsafe(27)
        expires = self._now() + self.token_lifetime
        self.installation_tokens[token] = (installation.id, expires)
        return Response(
            201,
            {
                "token": token,
                # Whole seconds, rounded down: never later than the token really dies.
                "expires_at": iso(datetime.fromtimestamp(math.floor(expires), UTC)),
                "permissions": {"issues": "read", "metadata": "read"},
                "repository_selection": "all" if installation.repos is None else "selected",
            },
        )

    def _installation_repos(self, request: Request, caller: _Caller, prefix: str) -> Response:
        """`GET /installation/repositories` (installation token only): paged, with
        `total_count`."""
        installation = caller.installation
        if installation is None:
            return _error(
                403,
                "You must authenticate with an installation access token in order to list "
                "repositories for an installation.",
            )
        names = sorted(n for n in self.repos if installation.covers(n))
        chunk, headers = self._page_of(request, names, f"{prefix}/installation/repositories")
        body = {
            "total_count": len(names),
            "repository_selection": "all" if installation.repos is None else "selected",
            "repositories": [self.repo_json(n) for n in chunk],
        }
        return Response(200, body, headers)

    def _owner_repos(
        self, request: Request, caller: _Caller, kind: str, owner: str, prefix: str
    ) -> Response:
        """`GET /orgs/{org}/repos` (404 for a user account) and `GET /users/{user}/repos`."""
        is_user = owner.casefold() in self.users
        names = sorted(n for n in self.repos if n.partition("/")[0].casefold() == owner.casefold())
        if (kind == "orgs" and is_user) or not (names or is_user):
            return _error(404, "Not Found")
        names = [n for n in names if self._visible(caller, n)]
        chunk, headers = self._page_of(request, names, f"{prefix}/{kind}/{owner}/repos")
        return Response(200, [self.repo_json(n) for n in chunk], headers)

    def _page_of(
        self, request: Request, items: list[Any], path: str, *, cut: bool = True
    ) -> tuple[list[Any], dict[str, str]]:
        """The page `per_page`/`page` ask for, and its `Link` header; `cut`: an injected short
        answer (`answer_short`) may cut it while the header still promises more."""
        per_page, page = _paging(request)
        chunk = items[(page - 1) * per_page : page * per_page]
        keep = self._cut() if cut else None
        if keep is not None:
            chunk = chunk[:keep]
        query = {k: v[-1] for k, v in request.query.items()}
        last = max(1, math.ceil(len(items) / per_page))
        link = self._link(path, query, page, last)
        return chunk, ({"Link": link} if link else {})

    def app_json(self, app: SandboxApp) -> dict[str, Any]:
        """`GET /app`: the `integration` schema's required keys."""
        owner = next(iter(self.installations.values()), None)
        login = owner.account if owner is not None else "acme"
        return {
            "id": app.id,
            "slug": app.slug,
            "client_id": app.client_id,
            "node_id": f"A_kw{app.id}",
            "owner": _user(login, self.url, self.html_base, kind="Organization"),
            "name": app.slug.replace("-", " ").title(),
            "description": "Syncs issues into PostgreSQL",
            "external_url": "https://example.com",
            "html_url": f"{self.html_base}/apps/{app.slug}",
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "permissions": {"issues": "read", "metadata": "read"},
            "events": [],
        }

    def installation_json(self, installation: SandboxInstallation) -> dict[str, Any]:
        """An `installation`: the keys GitHub's schema requires."""
        app = self.apps[installation.app_id]
        return {
            "id": installation.id,
            "account": _user(
                installation.account, self.url, self.html_base, kind=installation.account_type
            ),
            "repository_selection": "all" if installation.repos is None else "selected",
            "access_tokens_url": f"{self.url}/app/installations/{installation.id}/access_tokens",
            "repositories_url": f"{self.url}/installation/repositories",
            "html_url": f"{self.html_base}/settings/installations/{installation.id}",
            "app_id": app.id,
            "app_slug": app.slug,
            "target_id": zlib.crc32(installation.account.encode()) % 10**6,
            "target_type": installation.account_type,
            "permissions": {"issues": "read", "metadata": "read"},
            "events": [],
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "single_file_name": None,
            "suspended_by": None,
            "suspended_at": iso(installation.suspended_at),
        }

    def _list_issues(self, full_name: str, request: Request, prefix: str = "") -> Response:
        query = {k: v[-1] for k, v in request.query.items()}
        state = query.get("state", "open")
        sort = query.get("sort", "created")
        direction = query.get("direction", "desc")
        if state not in ("open", "closed", "all") or sort not in ("created", "updated", "comments"):
            return _error(422, "Validation Failed")
        if direction not in ("asc", "desc"):
            return _error(422, "Validation Failed")
        try:
            per_page = min(100, max(1, int(query.get("per_page", "30"))))
            page = max(1, int(query.get("page", "1")))
            since = parse_since(query["since"]) if "since" in query else None
        except ValueError:
            return _error(422, "Validation Failed")
        items = [
            i
            for i in self.issues[full_name]
            if (state == "all" or i.state == state) and (since is None or i.updated_at >= since)
        ]
        key = {"created": "created_at", "updated": "updated_at", "comments": "number"}[sort]
        items.sort(key=lambda i: (getattr(i, key), i.number), reverse=direction == "desc")
        last = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        keep = self._cut()
        if keep is not None:
            chunk = chunk[:keep]
        headers = {}
        link = self._link(f"{prefix}/repos/{full_name}/issues", query, page, last)
        if link:
            headers["Link"] = link
        return Response(200, [self.issue_json(i) for i in chunk], headers)

    def _link(self, path: str, query: dict[str, str], page: int, last: int) -> str:
        """GitHub's Link header: next/last while there are more pages, then prev/first."""

        def url(n: int) -> str:
            return f"{self.url}{path}?{urlencode({**query, 'page': str(n)})}"

        rels = []
        if page < last:
            rels += [f'<{url(page + 1)}>; rel="next"', f'<{url(last)}>; rel="last"']
        if page > 1:
            rels += [f'<{url(page - 1)}>; rel="prev"', f'<{url(1)}>; rel="first"']
        return ", ".join(rels)

    def fault_response(self, fault: Fault) -> Response:
        """GitHub's own error shapes, with the rate-limit headers GitHub sends.

        `403_rate_limit`: the primary limit by default (no Retry-After, `x-ratelimit-remaining: 0`,
        `x-ratelimit-reset` = now + retry_after); with another `body` message it is a secondary
        limit carrying `Retry-After`, or, with `retry_after=None`, a plain permission 403.
        `malformed` with a `body` sends that body (bytes or JSON) as a 200.
        """
        wait = fault.retry_after if fault.retry_after is not None else 1.0
        if fault.kind == "403_rate_limit":
            message = (fault.body or {}).get("message", PRIMARY_LIMIT_MESSAGE)
            if message.startswith("API rate limit exceeded"):
                # Primary limit: no Retry-After; wait until the epoch in x-ratelimit-reset.
                reset = math.ceil(time.time() + wait)
                headers = self._rate_headers(remaining=0, reset=reset)
            elif fault.retry_after is not None:
                headers = {**self._rate_headers(), "Retry-After": str(math.ceil(wait))}
            else:
                headers = self._rate_headers()
            return Response(403, _body(message), {**headers, **fault.headers})
        if fault.kind == "429":
            headers = {**self._rate_headers(), "Retry-After": str(math.ceil(wait))}
            body = fault.body or _body(SECONDARY_LIMIT_MESSAGE)
            return Response(429, body, {**headers, **fault.headers})
        if fault.kind == "malformed" and fault.body is not None:
            # A proxy's HTML page or JSON of the wrong shape, served as 200.
            return Response(200, fault.body, {**self._rate_headers(), **fault.headers})
        response = super().fault_response(fault)
        if fault.kind == "401" and fault.body is None:
            response.body = _body("Bad credentials")
        response.headers = {**self._rate_headers(), **response.headers}
        return response

    # -- demo -----------------------------------------------------------------------------------
    def seed_demo(self) -> None:
        """Two repositories with a few dozen believable issues and pull requests in mixed states."""
        # Anchored to today's midnight: recent, yet identical when the demo runs again today
        # (a second run then finds nothing changed instead of every issue "edited").
        now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start = now - timedelta(days=30)
        # The richer model: an epic per repository with its sub-issues, two sprints (milestones:
        # one closed, one running), issue types from the labels.
        epics: dict[str, int] = {}
        for repo, (title, body) in _DEMO_EPICS.items():
            epic = self.add_issue(
                repo, title, created_at=start - timedelta(days=2), updated_at=start,
                body=body, type="Epic", labels=["roadmap"], assignees=["mira"],
            )  # fmt: skip
            epics[repo] = epic.id
            self.add_milestone(repo, "Sprint 41", state="closed", due_on=now - timedelta(days=14))
            self.add_milestone(repo, "Sprint 42", due_on=now + timedelta(days=7))
        for n, spec in enumerate(_DEMO):
            repo, title, kind, labels, assignees = spec
            created = start + timedelta(hours=17 * n)
            updated = created + timedelta(hours=3 + n % 11)
            kw: dict[str, Any] = {"labels": labels, "assignees": assignees}
            if kind not in ("pr", "draft", "merged", "pr_closed"):
                kw["type"] = "Bug" if "bug" in labels else "Feature" if n % 3 else "Task"
                if n % 4 == 0:
                    kw["parent"] = epics[repo]
                if n % 3 != 2:
                    kw["milestone"] = "Sprint 41" if kind == "done" else "Sprint 42"
            if kind == "done":
                kw |= {"state": "closed", "state_reason": "completed"}
            elif kind == "wontfix":
                kw |= {"state": "closed", "state_reason": "not_planned"}
            elif kind == "duplicate":
                kw |= {"state": "closed", "state_reason": "duplicate"}
            elif kind == "pr":
                kw |= {"is_pr": True}
            elif kind == "draft":
                kw |= {"is_pr": True, "draft": True}
            elif kind == "merged":
                kw |= {"is_pr": True, "state": "closed", "merged_at": updated}
            elif kind == "pr_closed":
                kw |= {"is_pr": True, "state": "closed"}
            body = f"{title}.\n\nSteps and context are in the linked discussion."
            self.add_issue(repo, title, created_at=created, updated_at=updated, body=body, **kw)

    def demo_step(self, rng: random.Random, now: datetime) -> DemoChange:
        """One thing the demo team does in its repositories at `now`: opens an issue, picks one
        up (assigned: in progress), flags or unblocks it (the `blocked` label), hands it to
        someone else, or closes it; the events are recorded as for any change."""
        who = rng.choice(_DEMO_PEOPLE)
        with self._data_lock:
            repos = sorted(self.repos)
            issues = [
                i for repo in repos for i in self.issues[repo]
                if i.state == "open" and not i.is_pr and i.type != "Epic"
            ]  # fmt: skip
            action = demo_action(rng)
            if action == "create" or not issues:
                repo = rng.choice(repos)
                title = _DEMO_NEW[self._numbers[repo] % len(_DEMO_NEW)]
                label = rng.choice(["bug", "enhancement"])
                new = self.add_issue(
                    repo, title, updated_at=now, body=f"{title}.", labels=[label],
                    type="Bug" if label == "bug" else "Task", actor=who,
                )  # fmt: skip
                key = f"{repo}#{new.number}"
                return DemoChange(key, f"{who} opened {key} “{title}”")
            issue = rng.choice(issues)
            key = f"{issue.repo}#{issue.number}"
            if action == "reassign":
                other = rng.choice([p for p in _DEMO_PEOPLE if p not in issue.assignees])
                self.update(issue.id, at=now, actor=who, assignees=[other])
                return DemoChange(key, f"{who} assigned {key} to {other}")
            if action == "move" and not issue.assignees:
                self.update(issue.id, at=now, actor=who, assignees=[who])
                return DemoChange(key, f"{who} picked up {key} (assigned: in progress)")
            if action == "move" and "blocked" in issue.labels:
                labels = [n for n in issue.labels if n != "blocked"]
                self.update(issue.id, at=now, actor=who, labels=labels)
                return DemoChange(key, f"{who} unblocked {key}")
            if action == "move" and rng.random() < 0.3:
                self.update(issue.id, at=now, actor=who, labels=[*issue.labels, "blocked"])
                return DemoChange(key, f"{who} labelled {key} blocked")
            self.update(issue.id, at=now, actor=who, state="closed")
            return DemoChange(key, f"{who} closed {key} as completed")

    def demo_config(self) -> dict[str, Any]:
        """The `integrations.config` of a row that syncs the demo repositories from this sandbox."""
        return {
            "token": self.token,
            "base_url": self.url,
            "repos": sorted(self.repos),
            "include_pull_requests": True,
            "priority_labels": {"P0": 4, "P1": 3, "P2": 2, "P3": 1},
            "per_page": 20,
        }


#: The templated `*_url` keys GitHub's OpenAPI `repository` schema requires (under its API URL).
_REPO_URLS = (
    ("archive_url", "{archive_format}{/ref}"),
    ("assignees_url", "assignees{/user}"),
    ("blobs_url", "git/blobs{/sha}"),
    ("branches_url", "branches{/branch}"),
    ("collaborators_url", "collaborators{/collaborator}"),
    ("comments_url", "comments{/number}"),
    ("commits_url", "commits{/sha}"),
    ("compare_url", "compare/{base}...{head}"),
    ("contents_url", "contents/{+path}"),
    ("contributors_url", "contributors"),
    ("deployments_url", "deployments"),
    ("downloads_url", "downloads"),
    ("events_url", "events"),
    ("forks_url", "forks"),
    ("git_commits_url", "git/commits{/sha}"),
    ("git_refs_url", "git/refs{/sha}"),
    ("git_tags_url", "git/tags{/sha}"),
    ("hooks_url", "hooks"),
    ("issue_comment_url", "issues/comments{/number}"),
    ("issue_events_url", "issues/events{/number}"),
    ("keys_url", "keys{/key_id}"),
    ("labels_url", "labels{/name}"),
    ("languages_url", "languages"),
    ("merges_url", "merges"),
    ("milestones_url", "milestones{/number}"),
    ("notifications_url", "notifications{?since,all,participating}"),
    ("pulls_url", "pulls{/number}"),
    ("releases_url", "releases{/id}"),
    ("stargazers_url", "stargazers"),
    ("statuses_url", "statuses/{sha}"),
    ("subscribers_url", "subscribers"),
    ("subscription_url", "subscription"),
    ("tags_url", "tags"),
    ("teams_url", "teams"),
    ("trees_url", "git/trees{/sha}"),
)


def _user(login: str, api: str, html: str, *, kind: str = "User") -> dict[str, Any]:
    """A `simple-user`: every key GitHub's OpenAPI schema requires (`api`: the API base URL)."""
    user_id = zlib.crc32(login.encode()) % 10**6
    url = f"{api}/users/{login}"
    return {
        "login": login,
        "id": user_id,
        "node_id": f"{'O' if kind == 'Organization' else 'U'}_kg{user_id}",
        "avatar_url": f"{html}/avatars/u/{user_id}",
        "gravatar_id": "",
        "url": url,
        "html_url": f"{html}/{login}",
        "followers_url": f"{url}/followers",
        "following_url": f"{url}/following{{/other_user}}",
        "gists_url": f"{url}/gists{{/gist_id}}",
        "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{url}/subscriptions",
        "organizations_url": f"{url}/orgs",
        "repos_url": f"{url}/repos",
        "events_url": f"{url}/events{{/privacy}}",
        "received_events_url": f"{url}/received_events",
        "type": kind,
        "site_admin": False,
    }


def _ref(issue: SandboxIssue) -> tuple[str, int, str]:
    return issue.repo, issue.number, issue.title


#: The colours GitHub gives its default organization issue types.
_TYPE_COLOURS = {"bug": "red", "feature": "blue", "task": "yellow", "epic": "purple"}


def _issue_type(name: str | None, *, short: bool = False) -> dict[str, Any] | None:
    """An `issue-type` (`short`: the one of an issue reference), or None for no type."""
    if name is None:
        return None
    type_id = zlib.crc32(name.encode()) % 10**6
    body: dict[str, Any] = {
        "id": type_id,
        "node_id": f"IT_kw{type_id}",
        "name": name,
        "color": _TYPE_COLOURS.get(name.casefold(), "gray"),
    }
    if not short:
        body |= {
            "description": None,
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "is_enabled": True,
        }
    return body


def _label(api: str, name: str) -> dict[str, Any]:
    label_id = zlib.crc32(name.encode()) % 10**8
    return {
        "id": label_id,
        "node_id": f"LA_kw{label_id}",
        "name": name,
        "url": f"{api}/labels/{name}",
        "color": "ededed",
        "default": False,
        "description": None,
    }


def _app_endpoint(parts: list[str]) -> bool:
    """The routes that take the app's JWT: /app…, and the installation lookups."""
    return (
        parts[0] == "app"
        or (len(parts) == 3 and parts[0] in ("orgs", "users") and parts[2] == "installation")
        or (len(parts) == 4 and parts[0] == "repos" and parts[3] == "installation")
    )


def _paging(request: Request) -> tuple[int, int]:
    """`per_page` (1-100, default 30) and `page` (from 1) of a list request."""
    query = {k: v[-1] for k, v in request.query.items()}
    try:
        per_page = min(100, max(1, int(query.get("per_page", "30"))))
        page = max(1, int(query.get("page", "1")))
    except ValueError:
        return 30, 1
    return per_page, page


def _body(message: str) -> dict[str, Any]:
    return {"message": message, "documentation_url": DOCS}


def _error(status: int, message: str) -> Response:
    return Response(status, {**_body(message), "status": str(status)})


_DEMO_EPICS = {
    "acme/web": ("Checkout and settings overhaul", "The web work of this quarter, as sub-issues."),
    "acme/api": ("API hardening", "Rate limits, idempotency and the Postgres upgrade."),
}
_DEMO_PEOPLE = ["mira", "jonas", "li", "sam"]
#: Titles of the issues the demo team opens while the demo runs (`demo_step`).
_DEMO_NEW = [
    "Password reset link expires too early",
    "Add a changelog page",
    "Rate-limit headers missing on 429 answers",
    "Flaky test: checkout totals",
    "Support WebP avatars",
    "Profile page is slow with 500+ projects",
    "Typo in the billing e-mail footer",
    "Expose /healthz behind the load balancer",
]
_DEMO: list[tuple[str, str, str, list[str], list[str]]] = [
    ("acme/web", "Checkout button does nothing on Safari 17", "open", ["bug", "P1"], []),
    ("acme/web", "Dark mode for the settings page", "open", ["enhancement", "points: 5"], []),
    ("acme/web", "Crash when saving a draft with emoji 🚀", "done", ["bug", "P0"], ["mira"]),
    ("acme/web", "Migrate date picker to the new design system", "open", ["P2"], ["jonas"]),
    ("acme/web", "Cookie banner overlaps footer links", "done", ["bug", "P3"], ["li"]),
    ("acme/web", "Add keyboard shortcuts cheat sheet", "wontfix", ["enhancement"], []),
    ("acme/web", "Search results flicker while typing", "open", ["bug", "in progress"], []),
    ("acme/web", "Upgrade to React 19", "open", ["blocked", "P2", "points: 8"], ["mira"]),
    ("acme/web", "Fix checkout on Safari 17", "pr", ["P1"], ["mira"]),
    ("acme/web", "Settings: dark mode toggle", "draft", [], ["jonas"]),
    ("acme/web", "Localise the onboarding flow (de, fr, ar)", "open", ["i18n", "points: 3"], []),
    ("acme/web", "Broken image on the pricing page", "duplicate", ["bug"], []),
    ("acme/web", "Bump eslint to v9", "merged", ["dependencies"], ["li"]),
    ("acme/web", "Experiment: server components for the dashboard", "pr_closed", [], ["li"]),
    ("acme/web", "Lighthouse accessibility score below 90", "open", ["a11y", "P2"], []),
    ("acme/web", "Right-to-left layout for Arabic: مرحبا", "open", ["i18n"], ["noor"]),
    ("acme/web", "Sticky header jumps on iOS", "done", ["bug", "P2", "points: 2"], ["jonas"]),
    ("acme/web", "Add CSV export to the reports table", "open", ["enhancement", "P3"], []),
    ("acme/api", "Rate-limit the public search endpoint", "open", ["security", "P1"], ["sam"]),
    ("acme/api", "Webhook deliveries retried forever on 410", "open", ["bug", "P0"], []),
    ("acme/api", "Paginate /v2/invoices", "done", ["enhancement", "points: 5"], ["sam"]),
    ("acme/api", "Postgres 16 upgrade", "open", ["blocked", "infra", "P2"], ["ada"]),
    ("acme/api", "N+1 query in the orders serializer", "done", ["performance", "P1"], ["ada"]),
    ("acme/api", "Deprecate the v1 auth endpoints", "wontfix", ["P3"], []),
    ("acme/api", "OpenAPI spec out of date for /users", "open", ["docs", "points: 1"], []),
    ("acme/api", "Add idempotency keys to POST /payments", "open", ["in progress", "P1"], []),
    ("acme/api", "Rate-limit search endpoint", "pr", ["security"], ["sam"]),
    ("acme/api", "Idempotency keys for payments", "draft", [], ["ada"]),
    ("acme/api", "Bump urllib3 to 2.2.2", "merged", ["dependencies"], ["dependabot"]),
    ("acme/api", "Timeouts on the export job after 30 s", "open", ["bug", "P2"], ["sam"]),
    ("acme/api", "Structured logging for the worker", "done", ["enhancement"], ["ada"]),
    ("acme/api", "Health check reports green while the DB is down", "open", ["bug", "P0"], []),
    ("acme/api", "Remove unused feature flags", "open", ["chore", "points: 2"], []),
    ("acme/api", "Try gRPC for internal calls", "pr_closed", [], ["sam"]),
    ("acme/api", "Customer emails contain HTML entities &amp;", "done", ["bug", "P3"], ["ada"]),
    ("acme/api", "Audit log for admin actions", "open", ["enhancement", "P2", "points: 13"], []),
]

"""GitHub issues (and, on request, pull requests) through PyGithub, one cursor per repository.

Each configured repository `owner/name` is its own scope, and with `include_pull_requests` its
pull requests are one more (`owner/name:pulls`, see `pulls_scope`). A run lists
`GET /repos/{o}/{r}/issues?state=all&sort=updated&direction=asc&since=…` (one `Page` per HTTP page,
oldest change first) and checkpoints the newest `updated_at` seen so far in that repository. It
pages by keyset, not by page number: each request starts again at the newest second read, so an
issue edited mid-run (which jumps to the end of the list) cannot shift another one onto a page
already read (docs/trackers/github.md#paging).

Tie groups. `since` has whole seconds, so when more issues than a page share one `updated_at`
second (a bulk edit) the keyset cannot move inside that second: the group is walked by page
number, and a member already read that is edited or deleted meanwhile shifts the later ones back
a slot, so one can be skipped. The rule: while a group is being walked the checkpoint stays at the
group's second; when the walk has reached a later second (or the end of the list) the group is
read again, with GitHub's largest page (100). That re-read is trusted when it is one answer (one
answer is one consistent snapshot), or when it lists exactly the members the walk before it did:
a skip needs a member that was read and then left the group (edited to a later second, or
deleted), and such a member is missing from the next walk, so two walks that list the same members
prove the first one skipped none. Otherwise the group is read again. Members can only leave a past
second, so this ends; a group of the current second can also gain members, which the next run
reads again because the worker never moves the cursor past the run's start. Only then does the
keyset move on, from the newest second of the trusted walk.

Broken promises. GitHub fills every page but the last, so an answer with fewer items than asked
whose `Link` still says `next` (empty or short) is a RetriableError, sent again; it never ends a
walk or a listing early (docs/trackers/github.md#paging).

Malformed items. Each listed issue is mapped on its own: one that cannot be (`shape_problem`: no
numeric id, no readable `updated_at`, a wrong-typed field) goes into `Page.rejected`, named by its
id, else `owner/repo#N`, else its URL; the rest of the page and every later page still land
(docs/trackers/github.md#response-bodies). The sweep's listing is the exception: an unreadable id
there fails it, as a listing with a gap would mark an existing issue deleted.

Credentials (docs/trackers/github.md#authentication): a token (`token*`), or a GitHub App
(`app_id`, `private_key*`, optionally `installation_id`): connectors/github_app.py finds each
owner's installation and mints installation tokens as they fall due, each registered for
redaction before use. `repos` may hold patterns (`owner/*`), listed once a run by
connectors/github_repos.py; the run's repositories are the named ones and the patterns' matches.
`base_url` may be GitHub Enterprise Server's `https://HOST/api/v3`; `ca_bundle`/`verify_tls` go
to every PyGithub client.

Requests go through PyGithub's Requester (auth,
base_url, throttling, its exceptions) and the list JSON is read as is, so a page can be retried
exactly and no per-item `Issue` object exists whose `pull_request` or `raw_data` could cost one
extra GET per item (docs/trackers/github.md#extra-request-per-item). Pull requests come in the
same list; only they carry the `pull_request` key.

PyGithub's own retries are switched off (`retry=None`): every transient failure (rate limits,
5xx, timeouts, malformed bodies) becomes a `RetriableError` and `connectors.retry` waits for it,
honouring `Retry-After` / `x-ratelimit-reset`, `ctx.sleep_cap` and `ctx.deadline`, so no thread
ever sleeps an hour inside the SDK.

Richer model (docs/trackers/github.md#richer-model, connectors/github_model.py): item type,
labels, assignees and the milestone as sprint from the listed JSON; a sub-issue's parent from
`parent_issue_url`, its id learned from the run's listing or a cache of earlier runs, else one
`GET /repos/{o}/{r}/issues/{n}` per parent and run, at most `MAX_PARENT_LOOKUPS` a run.

History (docs/trackers/github.md#history): each repository's issue events are a feed
(`HistorySource`), walked newest first to the last walk's newest event by
connectors/github_history.py, which replays them through this module's mapping.

Status mapping (docs/trackers/github.md#status-mapping) and the names `status_map` overrides are
keyed on:

* open issue: each of its label names (in the order GitHub lists them), then ``open``;
  default: a `blocked` label → blocked; an assignee or an `in progress` label → in_progress;
  else queued.
* closed issue: its `state_reason` (``completed``, ``not_planned``, ``duplicate``; none counts
  as ``completed``), then ``closed``; default: not_planned/duplicate → cancelled, else completed.
* pull request (with `include_pull_requests`): while open, its label names, then ``pr_draft`` or
  ``pr_open``; once closed ``pr_merged`` or ``pr_closed``; defaults: draft → in_progress,
  open → pr_ready, merged → completed, closed unmerged → cancelled. A closed PR whose item does
  not say whether it was merged (no `merged_at` key: older GitHub Enterprise Server) is
  ``pr_<state_reason>`` (e.g. ``pr_not_planned``) or ``pr_closed_unknown``; default: cancelled
  only for not_planned/duplicate, else completed.

The first of those names present in `status_map` (case-insensitive) wins; e.g.
``{"needs review": "pr_ready", "not_planned": "completed"}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import requests
from github import Auth, Github, GithubException
from github.Requester import Requester
from pydantic import Field, SecretStr, field_validator, model_validator

from connectors.base import (
    PRIORITY_NONE,
    ConnectorConfig,
    ConnectorContext,
    ConnectorError,
    CredentialExpiry,
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
from connectors.github_app import (
    GitHubApp,
    InstallationAuth,
    NotInstalled,
    check_private_key,
    pat_expiry,
)
from connectors.github_history import IssueMapping, walk
from connectors.github_model import (
    ParentIds,
    ParentRef,
    assignees_of,
    item_type_of,
    parent_ref,
    sprints_of,
    stored_raw,
)
from connectors.github_repos import installation_repos, is_pattern, matches, owner_repos
from connectors.http import call_sdk, header, json_body, log_event, parse_time, retry_after

T = TypeVar("T")
log = logging.getLogger(__name__)

PUBLIC_API = "https://api.github.com"
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_OWNER = re.compile(r"^[A-Za-z0-9_.-]+$")
_GLOB = re.compile(r"^[A-Za-z0-9_.*?-]+$")
_APP_ID = re.compile(r"^(?:[0-9]+|Iv[A-Za-z0-9._-]+)$")
_POINTS_LABEL = re.compile(
    r"^(?:points?|story[ _-]?points?|sp|estimate)\s*[:=]\s*(\d+(?:\.\d+)?)$", re.IGNORECASE
)
#: GitHub's advice for a secondary limit without Retry-After: wait at least a minute.
SECONDARY_LIMIT_WAIT = 60.0
#: GitHub's largest page: re-reads of a tie group use it (one answer is a consistent snapshot).
GROUP_PAGE = 100
#: Re-reads of one tie group before the run gives up (each follows a change seen in the group).
MAX_GROUP_WALKS = 20


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------
class GitHubConfig(ConnectorConfig):
    """`integrations.config` of a GitHub integration: a token (`token*`) or a GitHub App
    (`app_id`, `private_key*`, optionally `installation_id`), never both."""

    no_custom_fields = "GitHub issues"
    # `owner/name`, or `owner/*` (a glob on the name: `owner/svc-*`) for every repository of the
    # owner that the credential reads, listed again each run (connectors/github_repos.py)
    repos: list[str] = Field(min_length=1)
    # https://api.github.com, or GitHub Enterprise Server's https://HOST/api/v3
    base_url: str = PUBLIC_API
    include_pull_requests: bool = False
    priority_labels: dict[str, int] = Field(default_factory=dict)  # label -> 0 none … 4 highest
    per_page: int = Field(100, ge=1, le=100)
    timeout: int = Field(15, ge=1, le=300)  # seconds per HTTP request
    # Client-side spacing of requests: keeps a big first sync well under GitHub's secondary
    # limit (900 REST points a minute) without blocking a thread for long.
    seconds_between_requests: float = Field(0.1, ge=0, le=5)
    # GitHub App: its ID (numeric) or client ID (`Iv23…`), the JWT's `iss`
    app_id: str | None = None
    installation_id: int | None = Field(None, ge=1)  # else found from each owner
    private_key: SecretStr | None = None  # PEM
    private_key_env: str | None = None
    private_key_file: Path | None = None

    @field_validator("repos")
    @classmethod
    def _check_repos(cls, value: list[str]) -> list[str]:
        seen: dict[str, str] = {}
        for entry in value:
            name = entry.strip().strip("/")
            owner, _, repo = name.partition("/")
            if is_pattern(name):
                if not _OWNER.match(owner) or not _GLOB.match(repo):
                    raise ValueError(
                        f"repos: {entry!r} is not of the form 'owner/name' or 'owner/*'"
                    )
            elif not _REPO.match(name) or owner in (".", "..") or repo in (".", ".."):
                raise ValueError(f"repos: {entry!r} is not of the form 'owner/name'")
            seen.setdefault(name.casefold(), name)
        return list(seen.values())

    @field_validator("app_id", mode="before")
    @classmethod
    def _check_app_id(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and not _APP_ID.match(value.strip()):
            raise ValueError("app_id must be the app's numeric ID or its client ID (Iv…)")
        return value.strip() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_credential(self) -> GitHubConfig:
        keys = ("private_key", "private_key_env", "private_key_file")
        keys_given = [k for k in keys if getattr(self, k) is not None]
        tokens = [k for k in ("token", "token_env", "token_file") if getattr(self, k) is not None]
        if self.app_id is None:
            if keys_given or self.installation_id is not None:
                extra = ", ".join(
                    [*keys_given, *(["installation_id"] if self.installation_id else [])]
                )
                raise ValueError(f"{extra} belong to a GitHub App: give app_id too")
            return self
        if tokens:
            raise ValueError(
                f"give a token ({', '.join(tokens)}) or a GitHub App (app_id), not both"
            )
        if len(keys_given) != 1:
            got = f" (got {', '.join(keys_given)})" if keys_given else ""
            raise ValueError(
                f"app_id needs exactly one of private_key, private_key_env, private_key_file{got}"
            )
        return self

    def uses_token(self) -> bool:
        return self.app_id is None

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        return http_url(value, "base_url", "https://api.github.com")

    @field_validator("priority_labels")
    @classmethod
    def _check_priorities(cls, value: dict[str, int]) -> dict[str, int]:
        for label, priority in value.items():
            if not 0 <= priority <= 4:
                raise ValueError(
                    f"priority_labels: {label!r} maps to {priority}; use 0 (none) … 4 (highest)"
                )
        return {k.strip().casefold(): v for k, v in value.items()}


# ---------------------------------------------------------------------------------------------
# Mapping: pure functions of the issue JSON
# ---------------------------------------------------------------------------------------------
def is_pull_request(raw: Mapping[str, Any]) -> bool:
    """GitHub lists every PR as an issue; only PR items carry the `pull_request` key."""
    return "pull_request" in raw


def label_names(raw: Mapping[str, Any]) -> list[str]:
    names = []
    for label in raw.get("labels") or []:
        # (a JSON object is a dict: no ABC check, read four times an issue)
        name = label.get("name") if isinstance(label, dict) else label
        if isinstance(name, str):
            names.append(name)
    return names


def _merged_at(raw: Mapping[str, Any]) -> datetime | None:
    pull = raw.get("pull_request")
    merged = pull.get("merged_at") if isinstance(pull, Mapping) else None
    return parse_time(merged or raw.get("merged_at"))


def merge_known(raw: Mapping[str, Any]) -> bool:
    """Whether the item says if the PR was merged: GitHub's OpenAPI `issue` schema makes
    `pull_request.merged_at` optional (only `url`, `html_url`, `diff_url`, `patch_url` are
    required) and older GitHub Enterprise Server answers leave it out. Without the key a closed
    PR may be merged or not (docs/trackers/github.md#status-mapping)."""
    pull = raw.get("pull_request")
    return (isinstance(pull, Mapping) and "merged_at" in pull) or "merged_at" in raw


def default_status(raw: Mapping[str, Any]) -> Status:
    """Our status for an issue or PR, before any `status_map`
    (docs/trackers/github.md#status-mapping)."""
    closed = raw.get("state") == "closed"
    if is_pull_request(raw):
        if _merged_at(raw) is not None:
            return Status.COMPLETED
        if closed and not merge_known(raw):
            # Merge state not sent: cancelled only when `state_reason` says so; a merged PR
            # must not count as cancelled.
            if raw.get("state_reason") in ("not_planned", "duplicate"):
                return Status.CANCELLED
            return Status.COMPLETED
        if closed:
            return Status.CANCELLED
        return Status.IN_PROGRESS if raw.get("draft") else Status.PR_READY
    if closed:
        if raw.get("state_reason") in ("not_planned", "duplicate"):
            return Status.CANCELLED
        return Status.COMPLETED
    labels = label_names(raw)
    if any(status_name_suggests(name, "blocked") for name in labels):
        return Status.BLOCKED
    if raw.get("assignees") or raw.get("assignee"):
        return Status.IN_PROGRESS
    if any(status_name_suggests(name, "in progress", "wip") for name in labels):
        return Status.IN_PROGRESS
    return Status.QUEUED


def status_names(raw: Mapping[str, Any]) -> list[str]:
    """The native names `status_map` can override, most specific first (see module docstring)."""
    if is_pull_request(raw):
        if _merged_at(raw) is not None:
            return ["pr_merged"]
        if raw.get("state") == "closed" and not merge_known(raw):
            reason = raw.get("state_reason")
            return [f"pr_{reason}" if isinstance(reason, str) and reason else "pr_closed_unknown"]
        if raw.get("state") == "closed":
            return ["pr_closed"]
        return [*label_names(raw), "pr_draft" if raw.get("draft") else "pr_open"]
    if raw.get("state") == "closed":
        return [raw.get("state_reason") or "completed", "closed"]
    return [*label_names(raw), "open"]


def item_status(raw: Mapping[str, Any], overrides: Mapping[str, Status]) -> Status:
    """The default status, unless the admin's `status_map` names one of `status_names`."""
    default = default_status(raw)
    for name in status_names(raw):
        if name.strip().casefold() in overrides:
            return map_status(name, default, overrides)
    return default


def priority_of(raw: Mapping[str, Any], priority_labels: Mapping[str, int]) -> int:
    """The highest priority any of the item's labels maps to (keys already case-folded)."""
    found = [priority_labels.get(name.strip().casefold()) for name in label_names(raw)]
    return max((p for p in found if p is not None), default=PRIORITY_NONE)


def story_points_of(raw: Mapping[str, Any]) -> int | None:
    """Points from a label such as `points: 3`, `sp:5` or `estimate=2.5` (rounded)."""
    for name in label_names(raw):
        match = _POINTS_LABEL.match(name.strip())
        if match:
            return round(float(match.group(1)))
    return None


def site_prefix(base_url: str) -> str:
    """ "" for github.com (plain numeric ids), else the API host: ids are unique per instance."""
    if base_url.rstrip("/") == PUBLIC_API:
        return ""
    return f"{urlsplit(base_url).netloc}/"


def external_id(raw: Mapping[str, Any], prefix: str) -> str:
    value = raw.get("id")
    if not isinstance(value, int) or isinstance(value, bool):
        raise RetriableError("GitHub returned an issue without a numeric id (malformed body)")
    return f"{prefix}{value}"


def map_issue(
    raw: Mapping[str, Any],
    *,
    repo: str,
    prefix: str,
    config: GitHubConfig,
    parents: ParentIds | None = None,
) -> WorkItem:
    """One issue/PR JSON object (as the list endpoint returns it) as a `WorkItem`. `parents`
    holds the ids of the parents the run has learned (connectors/github_model.py); without it,
    or for a parent it could not learn, the item has no parent."""
    updated = parse_time(raw.get("updated_at"))
    if updated is None:
        raise RetriableError(f"GitHub returned an issue of {repo} without updated_at")
    status = item_status(raw, config.status_map)
    pull = is_pull_request(raw)
    completed_at = None
    if status in (Status.COMPLETED, Status.CANCELLED):
        completed_at = (_merged_at(raw) if pull else None) or parse_time(raw.get("closed_at"))
    return WorkItem(
        external_id=external_id(raw, prefix),
        external_key=f"{repo}#{raw.get('number')}",
        title=str(raw.get("title") or ""),
        description=raw.get("body") if isinstance(raw.get("body"), str) else None,
        status=status,
        updated_at=updated,
        priority=priority_of(raw, config.priority_labels),
        story_points=story_points_of(raw),
        external_url=raw.get("html_url") if isinstance(raw.get("html_url"), str) else None,
        # Opening a PR means work has started; an issue has no such timestamp.
        started_at=parse_time(raw.get("created_at")) if pull else None,
        completed_at=completed_at,
        raw=stored_raw(raw),
        scope=pulls_scope(repo) if pull else repo,
        **richer_model(raw, pull=pull, prefix=prefix, config=config, parents=parents),
    )


def richer_model(
    raw: Mapping[str, Any],
    *,
    pull: bool,
    prefix: str,
    config: GitHubConfig,
    parents: ParentIds | None,
) -> dict[str, Any]:
    """The WorkItem fields of the richer model (docs/trackers/github.md#richer-model)."""
    kind, kind_name = item_type_of(raw, pull=pull)
    ref = parent_ref(raw)
    parent_id = parents.get(ref) if parents is not None and ref is not None else None
    return {
        "parent_external_id": None if parent_id is None else f"{prefix}{parent_id}",
        "item_type": kind,
        "item_type_name": kind_name,
        "labels": label_names(raw),
        "assignees": assignees_of(raw),
        "sprints": sprints_of(raw, urlsplit(config.base_url).netloc),
    }


def pulls_scope(repo: str) -> str:
    """The scope of a repository's pull requests (`owner/name:pulls`; `:` is never part of a
    repository name): with `include_pull_requests` they are a scope of their own, so switching
    the option on reads them in full instead of from the issues' cursor, which passed them while
    they were left out, and switching it off marks them out of scope, not deleted."""
    return f"{repo}:pulls"


#: The keys the mapping reads whose type would make it fail or mean something else, and the JSON
#: types GitHub sends for them (None: null). A key that is absent is fine, except `id` (checked on
#: its own), `number`, `state` and `updated_at`.
_SHAPE: dict[str, tuple[type, ...]] = {
    "number": (int,),
    "state": (str,),
    "updated_at": (str,),
    "title": (str, type(None)),
    "body": (str, type(None)),
    "labels": (list, type(None)),
    "assignees": (list, type(None)),
    "assignee": (dict, type(None)),
    "pull_request": (dict,),
}
_REQUIRED = ("number", "state", "updated_at")


def _shown(value: object) -> str:
    """A value, short, for a rejection reason (the tracker's data; never a secret of ours)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def shape_problem(raw: Mapping[str, Any]) -> str | None:
    """Why an issue object cannot be mapped faithfully, or None: the first missing or
    wrong-typed key the mapping reads, or an `updated_at` that is not a time."""
    if not _is_int(raw.get("id")):
        return f"id is not a number ({_shown(raw.get('id'))})"
    for key, types in _SHAPE.items():
        if key not in raw:
            if key in _REQUIRED:
                return f"{key} is missing"
            continue
        value = raw[key]
        if not isinstance(value, types) or (key == "number" and isinstance(value, bool)):
            return f"{key} is {type(value).__name__}, not {' or '.join(_json_type(types))}"
    if parse_time(raw["updated_at"]) is None:
        return f"updated_at is not a time ({_shown(raw['updated_at'])})"
    return None


def _json_type(types: tuple[type, ...]) -> list[str]:
    names = {int: "a number", str: "a string", list: "a list", dict: "an object"}
    return [names.get(t, "null") for t in types]


def rejection(raw: Mapping[str, Any], reason: str, *, repo: str, prefix: str) -> Rejected:
    """An issue that cannot be mapped, named by its id when readable, else its key
    (`owner/repo#N`), else its html_url."""
    number = raw.get("number")
    key = f"{repo}#{number}" if _is_int(number) else None
    html_url = raw.get("html_url")
    if _is_int(raw.get("id")):
        named = f"{prefix}{raw['id']}"
    elif key is not None:
        named = key
    elif isinstance(html_url, str) and html_url:
        named = html_url[:300]
    else:
        named = f"{repo}: an issue without id, number or html_url"
    return Rejected(named, reason[:200], key)


def map_or_reject(
    raw: Mapping[str, Any],
    *,
    repo: str,
    prefix: str,
    config: GitHubConfig,
    parents: ParentIds | None = None,
) -> WorkItem | Rejected:
    """`map_issue`, or a `Rejected` naming the issue and why when it cannot be mapped: one
    malformed issue is set aside on its own, the rest of its page still lands."""
    problem = shape_problem(raw)
    if problem is not None:
        return rejection(raw, problem, repo=repo, prefix=prefix)
    try:
        return map_issue(raw, repo=repo, prefix=prefix, config=config, parents=parents)
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
        # A shape _SHAPE does not describe (a label that is neither an object nor a string, …).
        return rejection(raw, f"{type(exc).__name__}: {exc}", repo=repo, prefix=prefix)


# ---------------------------------------------------------------------------------------------
# Errors: every SDK/HTTP failure becomes RetriableError or FatalError
# ---------------------------------------------------------------------------------------------
class RepositoryLost(FatalError):
    """A configured repository this token cannot read (any more): 404 or a plain 403. While
    syncing it is a lost scope (`Page.lost`, `ScopeIds.lost`): the other repositories go on."""

    def __init__(self, repo: str, message: str, reason: str) -> None:
        super().__init__(message)
        self.repo = repo
        self.reason = reason  # short, for `lost`: the run fails naming the repository and this


class NotInstalledOn(RepositoryLost):
    """The GitHub App is not installed on a named repository (its installation lookup is 404)."""

    def __init__(self, repo: str, message: str) -> None:
        super().__init__(repo, message, "the GitHub App is not installed on it")


class RepositoryNotFound(RepositoryLost):
    """A configured repository does not exist or the token cannot see it (404): deleted,
    renamed or transferred away, made private, or the token lost access."""

    def __init__(self, repo: str) -> None:
        super().__init__(
            repo,
            f"GitHub repository {repo!r} was not found (404): check `repos` in the integration "
            "config and that the token can read it (private repositories need a token with "
            "access to them)",
            "not found or not visible to this token (404): deleted, renamed or transferred "
            "away, or the token lost access",
        )


class RepositoryForbidden(RepositoryLost):
    """GitHub refuses this token the repository's issues (a plain 403, not a rate limit)."""

    def __init__(self, repo: str, detail: str) -> None:
        super().__init__(
            repo,
            f"GitHub refused access for {repo} (403){detail}. Check the token's permissions "
            "(classic: repo scope; fine-grained: Issues read) and any SSO authorization",
            f"access refused to this token (403){detail}",
        )


def _message(data: Any) -> str:
    message = data.get("message") if isinstance(data, Mapping) else data
    return str(message or "")[:300]


def rate_limit_wait(
    status: int, headers: Mapping[str, Any] | None, message: str, now: float
) -> float | None:
    """Seconds to wait for a 403/429 that is a rate limit, else None (a plain 403).

    Order per GitHub's docs: `Retry-After`; else, with `x-ratelimit-remaining: 0`, until
    `x-ratelimit-reset` (+1 s: the reset happens somewhere in that second); else a minute.
    """
    if status not in (403, 429):
        return None
    if header(headers, "retry-after") is not None:
        wait = retry_after(headers, now)
        # Present but unreadable: still a rate limit; wait as for a secondary one.
        return SECONDARY_LIMIT_WAIT if wait is None else wait
    reset = header(headers, "x-ratelimit-reset")
    if header(headers, "x-ratelimit-remaining") == "0" and reset and reset.isdigit():
        return max(0.0, int(reset) - now) + 1.0
    lowered = message.casefold()
    if status == 429 or "rate limit" in lowered or "wait a few minutes" in lowered:
        return SECONDARY_LIMIT_WAIT
    return None


def error_for_status(
    status: int, headers: Mapping[str, Any] | None, message: str, repo: str | None, now: float
) -> ConnectorError:
    """The connector error for an HTTP error answer from GitHub."""
    where = f" for {repo}" if repo else ""
    detail = f": {message}" if message else ""
    if status == 401:
        return FatalError(
            "GitHub rejected the token (401): check token/token_env/token_file in the "
            "integration config; the token may be mistyped, expired or revoked"
        )
    wait = rate_limit_wait(status, headers, message, now)
    if wait is not None:
        return RetriableError(
            f"GitHub rate limit hit{where} ({status}); retry in {wait:.0f}s", retry_after=wait
        )
    if status == 403 and repo:
        return RepositoryForbidden(repo, detail)
    if status == 403:
        return FatalError(
            f"GitHub refused access{where} (403){detail}. Check the token's permissions "
            "(classic: repo scope; fine-grained: Issues read) and any SSO authorization"
        )
    if status == 404 and repo:
        return RepositoryNotFound(repo)
    if status == 410 and repo:
        return FatalError(
            f"GitHub says issues are gone for {repo} (410){detail}: enable issues on the "
            "repository or remove it from `repos`"
        )
    if status >= 500 or status in (408, 425):
        return RetriableError(f"GitHub server error {status}{where}; will retry")
    return FatalError(f"GitHub refused the request{where} ({status}){detail}")


def error_for(exc: BaseException, *, repo: str | None, timeout: float) -> ConnectorError | None:
    """The connector error for an exception out of PyGithub/requests, or None if unexpected."""
    if isinstance(exc, GithubException):
        return error_for_status(exc.status, exc.headers, _message(exc.data), repo, time.time())
    if isinstance(exc, requests.exceptions.RetryError):
        return RetriableError("GitHub kept failing (SDK retries exhausted); will retry")
    if isinstance(exc, requests.exceptions.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return FatalError(
            "GitHub's TLS certificate is not trusted by this machine: for GitHub Enterprise "
            "Server behind a corporate CA set ca_bundle to the CA's PEM file"
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return RetriableError(f"GitHub did not answer within {timeout:g}s; will retry")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return RetriableError("cannot connect to GitHub (connection failed); will retry")
    if isinstance(exc, requests.exceptions.RequestException):
        return RetriableError(f"HTTP request to GitHub failed ({type(exc).__name__}); will retry")
    if isinstance(exc, AssertionError):  # PyGithub refuses URLs outside base_url
        return FatalError(
            "GitHub answered with a link outside base_url (different host, port or path): set "
            "base_url to the API URL the server itself uses"
        )
    if isinstance(exc, ValueError):  # json.JSONDecodeError from PyGithub's body parsing
        return RetriableError("GitHub sent a body that is not valid JSON (a proxy or an outage?)")
    return None


_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="([^"]+)"')


def next_link(headers: Mapping[str, Any] | None) -> str | None:
    """The `rel="next"` URL of GitHub's `Link` header (it carries every query parameter)."""
    for url, rel in _LINK.findall(header(headers, "link") or ""):
        if rel == "next":
            return str(url)
    return None


def issue_list(data: Any) -> list[dict[str, Any]]:
    """The body of a list endpoint, checked to be a JSON array of objects."""
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise RetriableError(
            "GitHub sent an issue list that is not a JSON array of objects (a proxy or an outage?)"
        )
    return data


def decoded_body(body: str) -> Any:
    """A response body as PyGithub's Requester reads it (empty: None; text that is not JSON and
    does not look like it: `{"data": body}`; malformed JSON: the ValueError), decoded by orjson:
    a page of 100 issues in about half json's time (0.43 against 0.93 ms, 260 KB), which the
    fetching thread holds the interpreter for (the event loop's thread waits). What orjson
    refuses and json takes (a lone surrogate's escape, NaN) is decoded by json, as PyGithub
    would; an integer past 64 bits becomes a float (GitHub's ids and counts are far below
    2^63)."""
    if not body:
        return None
    try:
        return json_body(body)
    except ValueError:
        if body.startswith(("{", "[")):
            raise
        return {"data": body}


def _get_list(
    requester: Requester, url: str, params: dict[str, Any], page_size: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One GET of a list endpoint: (response headers, the array). Blocking: run in a thread.

    An answer with fewer than `page_size` items whose `Link` still says `next` broke its promise
    (GitHub fills every page but the last): a listing that went on, or stopped, after it could
    leave a gap, so it is a RetriableError and the same request is sent again.

    A path (every listing's first page, and every page of a listing that moves on by `since`) is
    sent as `requestJsonAndCheck` sends it, and its body decoded by `decoded_body`; a full URL
    (a `Link` header's next page) goes through `requestJsonAndCheck` itself, which first checks
    its host against base_url."""
    if url.startswith("/"):
        status, headers, body = requester.requestJson("GET", url, parameters=params)
        data = decoded_body(body)
        if status >= 400:
            raise requester.createException(status, headers, data)
    else:
        headers, data = requester.requestJsonAndCheck("GET", url, parameters=params)
    raws = issue_list(data)
    if len(raws) < page_size and next_link(headers) is not None:
        raise RetriableError(
            f"GitHub promised a next page after a page of {len(raws)} of {page_size} issues "
            "(a page came back empty or short); will retry"
        )
    return headers, raws


def _get_issue(requester: Requester, url: str) -> Any:
    """One GET of an issue: its JSON, or None when GitHub says it cannot be read (404, 410, a
    403 that is not a rate limit). Blocking: run in a thread."""
    try:
        return requester.requestJsonAndCheck("GET", url)[1]
    except GithubException as exc:
        unreadable = exc.status in (404, 410) or (
            exc.status == 403
            and rate_limit_wait(exc.status, exc.headers, _message(exc.data), time.time()) is None
        )
        if unreadable:
            return None
        raise


class ParentLookupsSpent(ConnectorError):
    """The run's parent lookups are spent: a repository stops before the answer that needs one
    more (what it yielded before stays, with its checkpoint)."""


# ---------------------------------------------------------------------------------------------
# Paging state (module docstring: keyset on `since`, tie groups)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Answer:
    """One answer of the issues list: its items, each one's `updated_at` when readable, and
    whether its `Link` header promises a next page."""

    raws: list[dict[str, Any]]
    times: list[datetime | None]
    more: bool

    @property
    def newest(self) -> datetime | None:
        known = [t for t in self.times if t is not None]
        return max(known) if known else None

    def beyond(self, second: datetime | None) -> bool:
        """Whether it holds an item of a later second than `second` (any dated one for None)."""
        return any(t is not None and (second is None or t > second) for t in self.times)


def _identity(raw: Mapping[str, Any], position: int) -> str:
    """What tells one listed item from another, even a malformed one."""
    for key in ("id", "number"):
        value = raw.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{key}:{value}"
    return f"position:{position}"


def group_members(walk: list[_Answer], second: datetime | None) -> set[str]:
    """Every item a walk listed before its first item of a later second than `second`."""
    members: set[str] = set()
    position = 0
    for answer in walk:
        for raw, at in zip(answer.raws, answer.times, strict=True):
            if at is not None and (second is None or at > second):
                return members
            members.add(_identity(raw, position))
            position += 1
    return members


class _RepoRun:
    """What one repository's walk has yielded, and the checkpoint it has handed out."""

    def __init__(
        self,
        repo: str,
        keys: list[str],
        prefix: str,
        config: GitHubConfig,
        parents: ParentIds | None = None,
    ) -> None:
        self.repo = repo
        self.parents = parents
        self.keys = keys  # the repository's scopes: each page checkpoints them all
        self.prefix = prefix
        self.config = config
        self.mark: datetime | None = None
        self._yielded: dict[str, datetime] = {}  # external_id -> updated_at of what was yielded
        self._rejected: set[str] = set()  # external_ids of the issues rejected so far

    def page(self, answer: _Answer, *, advance: bool) -> Page:
        """The page of an answer: items not yielded yet (in this version). The checkpoint moves
        to the answer's newest second only with `advance` (never while a tie group is open)."""
        items: list[WorkItem] = []
        rejected: list[Rejected] = []
        for raw in answer.raws:
            if not self.config.include_pull_requests and is_pull_request(raw):
                continue  # still counts for the checkpoint (newest), like every listed item
            item = map_or_reject(
                raw, repo=self.repo, prefix=self.prefix, config=self.config, parents=self.parents
            )
            if isinstance(item, Rejected):
                if item.external_id not in self._rejected:  # named once a run, not per re-read
                    self._rejected.add(item.external_id)
                    rejected.append(item)
                continue
            if self._yielded.get(item.external_id) == item.updated_at:
                continue  # read again at a boundary second or in a re-read of a group
            self._yielded[item.external_id] = item.updated_at
            items.append(item)
        if advance and answer.newest is not None:
            self.mark = answer.newest if self.mark is None else max(self.mark, answer.newest)
        mark = self.mark
        return Page(items, {} if mark is None else dict.fromkeys(self.keys, mark), rejected)

    def forget_before(self, second: datetime) -> None:
        """Keyset moved on to `second`: an older version can never be listed again."""
        self._yielded = {k: at for k, at in self._yielded.items() if at >= second}


# ---------------------------------------------------------------------------------------------
# The connector
# ---------------------------------------------------------------------------------------------
class GitHubConnector:
    """Issues of the configured repositories (see the module docstring for the status names)."""

    source: ClassVar[str] = "github"
    config_model: ClassVar[type[ConnectorConfig]] = GitHubConfig
    overlap: ClassVar[timedelta] = timedelta(minutes=5)

    def __init__(self, config: GitHubConfig, ctx: ConnectorContext) -> None:
        self.config = config
        self.ctx = ctx
        self._prefix = site_prefix(config.base_url)
        # No request happens here (lazy=True; an app's installation and tokens are looked up on
        # first use). retry=None: connectors.retry owns every wait.
        kwargs: dict[str, Any] = {
            "base_url": config.base_url,
            "per_page": config.per_page,
            "timeout": config.timeout,
            "retry": None,
            "seconds_between_requests": config.seconds_between_requests or None,
            "seconds_between_writes": None,
            "verify": config.tls_verify(),
            "lazy": True,
        }
        self._app: GitHubApp | None = None
        self._gh: Github | None = None
        if config.app_id is not None:
            pem = ctx.secret(
                "private_key", config.private_key, config.private_key_env, config.private_key_file
            )
            key = check_private_key(pem.get_secret_value())
            if key.strip() != pem.get_secret_value():
                ctx.on_secret(key.strip())  # the `\n`-escaped form, restored, is secret too
            self._app = GitHubApp(
                config.app_id,
                key,
                installation_id=config.installation_id,
                client_kwargs=kwargs,
                on_secret=ctx.on_secret,
                on_credential=ctx.on_credential,
            )
        else:
            self._gh = Github(auth=Auth.Token(ctx.bearer().get_secret_value()), **kwargs)
        self._resolved: list[str] | None = None  # the repositories of this run (patterns listed)
        self._listings: dict[str, list[str]] = {}  # pattern -> its matches, listed once a run
        self._pat_expiry: datetime | None = None  # last reported
        # sub-issues' parents: (repo, number) -> id, for this run and cached for the next ones
        digest = hashlib.sha256(config.base_url.encode()).hexdigest()[:16]
        self._parents = ParentIds(ctx.cache_dir / f"github-parents-{digest}.json")

    def __repr__(self) -> str:
        return f"GitHubConnector(repos={self.config.repos!r}, base_url={self.config.base_url!r})"

    async def _call(
        self,
        what: str,
        repo: str | None,
        call: Callable[[], T],
        auth: InstallationAuth | None = None,
    ) -> T:
        """Run a blocking SDK call through the shared guard; SDK errors become ours. With an
        installation's `auth`, a 401 drops its token and the call is sent again with a new one."""

        def classify(exc: Exception) -> ConnectorError | None:
            if auth is not None and isinstance(exc, GithubException) and exc.status == 401:
                if auth.refused():
                    return RetriableError(
                        "GitHub refused the installation token (401) before its expiry; a new "
                        "one is minted, will retry",
                        retry_after=0,
                    )
                return FatalError(
                    "GitHub refused newly minted installation tokens (401): the app's "
                    "installation may have been removed or suspended; check it in the owner's "
                    "Settings → GitHub Apps"
                )
            return error_for(exc, repo=repo, timeout=self.config.timeout)

        result = await call_sdk(self.ctx, what, call, classify)
        if auth is not None:
            auth.confirmed()
        return result

    async def _client(
        self, owner: str, repo: str | None = None
    ) -> tuple[Github, InstallationAuth | None]:
        """The client for `owner`'s repositories: the token's, or the app installation's (found
        once per owner; `repo` names the repository to look it up by)."""
        if self._app is None:
            assert self._gh is not None
            return self._gh, None
        app = self._app
        installation = app.known(owner)
        if installation is None:
            where = f"{owner}/{repo}" if repo else f"{owner}/*"
            lookup = partial(app.installation_for, owner, repo)
            installation = await self._call(f"find the app installation of {where}", None, lookup)
        return app.client(installation)

    async def _repo_client(self, repo: str) -> tuple[Github, InstallationAuth | None]:
        """`_client` for one repository; an app not installed on it loses it (RepositoryLost)."""
        owner, _, name = repo.partition("/")
        try:
            return await self._client(owner, name)
        except NotInstalled as exc:
            raise NotInstalledOn(repo, str(exc)) from None

    def _note(self, headers: Mapping[str, Any] | None) -> None:
        """A token's expiry, as GitHub announces it on each answer (fine-grained and expiring
        classic PATs), reported when first seen or changed."""
        if self._app is not None:
            return
        when = pat_expiry(header(headers, "github-authentication-token-expiration"))
        if when is not None and when != self._pat_expiry:
            self._pat_expiry = when
            self.ctx.on_credential(CredentialExpiry("pat", when, renewable=False))

    async def _get(self, repo: str, url: str) -> tuple[dict[str, Any], Any]:
        """One GET of a repository's endpoint (headers, JSON)."""
        gh, auth = await self._repo_client(repo)
        request = partial(gh.requester.requestJsonAndCheck, "GET", url)
        headers, data = await self._call(f"read {repo}", repo, request, auth)
        self._note(headers)
        return headers, data

    async def check(self) -> None:
        """Each configured repository answers `GET /repos/{o}/{r}` and each pattern matches at
        least one readable repository; names every one that doesn't."""
        missing: list[str] = []
        for repo in [r for r in self.config.repos if not is_pattern(r)]:
            try:
                await self._get(repo, f"/repos/{repo}")
            except NotInstalledOn as exc:
                missing.append(f"{repo} ({exc.reason})")
            except RepositoryLost:
                missing.append(repo)
        empty = [p for p in self.config.repos if is_pattern(p) and not await self._listed(p)]
        if missing:
            who = "this GitHub App" if self._app is not None else "this token"
            raise FatalError(
                f"GitHub repositories not found or not visible to {who}: {', '.join(missing)}."
                " Check `repos` in the integration config and the credential's access"
            )
        if empty:
            raise FatalError(
                f"repos: {', '.join(empty)} matches no repository (with issues) that this "
                "credential can read"
            )

    async def scopes(self) -> list[str]:
        """One scope per repository, and one for its pull requests when included; patterns are
        listed (once a run, completely or an error)."""
        return [key for repo in await self._repos() for key in self._keys(repo)]

    async def _repos(self) -> list[str]:
        """The repositories of this run: the named ones, then each pattern's matches."""
        if self._resolved is None:
            found: dict[str, str] = {}
            for entry in self.config.repos:
                names = await self._listed(entry) if is_pattern(entry) else [entry]
                for name in names:
                    found.setdefault(name.casefold(), name)
            self._resolved = list(found.values())
        return self._resolved

    async def _listed(self, pattern: str) -> list[str]:
        """The readable repositories matching `pattern`, sorted by name (listed once a run)."""
        if pattern in self._listings:
            return self._listings[pattern]
        owner = pattern.partition("/")[0]
        gh, auth = await self._client(owner)
        per_page = GROUP_PAGE
        if auth is not None:
            listing = partial(installation_repos, gh.requester, per_page)
        else:
            listing = partial(owner_repos, gh.requester, owner, per_page)
        names = await self._call(f"list the repositories of {owner}", None, listing, auth)
        found = sorted((n for n in names if matches(n, pattern)), key=str.casefold)
        self._listings[pattern] = found
        return found

    def _keys(self, repo: str) -> list[str]:
        """The scopes of one repository: its issues, and its pull requests when included."""
        return [repo, pulls_scope(repo)] if self.config.include_pull_requests else [repo]

    async def changes(self, since: Mapping[str, datetime]) -> AsyncIterator[Page]:
        """Pages of issues changed at or after `since[scope]`, per repository, oldest first. One
        list holds a repository's issues and pull requests: it is read from the older of their
        two marks (in full when either has none), and each page checkpoints both. A repository
        that answers 404 or a plain 403 is lost (`Page.lost`, its scopes): the others go on and
        the run fails naming it; what was read of it before stays (its checkpoints too)."""
        for repo in await self._repos():
            marks = [since.get(key) for key in self._keys(repo)]
            known = [m for m in marks if m is not None]
            start = min(known) if len(known) == len(marks) else None
            try:
                async for page in self._repo_changes(repo, start):
                    yield page
            except RepositoryLost as exc:
                yield Page([], {}, lost={key: exc.reason for key in self._keys(repo)})
            except ParentLookupsSpent:
                # What was yielded is committed with its checkpoint: the next run goes on here.
                self.ctx.on_warning(
                    "parent_lookups_spent",
                    f"{repo}: the run's {self._parents.lookups} parent lookups are spent; the"
                    " repository stops at its last checkpoint and the next run goes on from there",
                )
            self._save_parents()

    def _save_parents(self) -> None:
        problem = self._parents.save()
        if problem is not None:  # a cache only: the next run looks the parents up again
            log_event(log, "github_parent_cache_unwritable", logging.WARNING, error=problem)

    async def _repo_changes(self, repo: str, since: datetime | None) -> AsyncIterator[Page]:
        """Keyset pagination on `since`: each request starts again at the newest `updated_at`
        second read so far (page 1) instead of following page numbers. An issue edited mid-run
        jumps to the end of the list; with page numbers every later issue would shift back one
        slot and one could fall onto a page already read, lost for good (its old time lies behind
        the cursor). Issues of the boundary second come again and are dropped here. A first page
        that lies wholly within one second opens a tie group (module docstring)."""
        run = _RepoRun(repo, self._keys(repo), self._prefix, self.config, self._parents)
        second = utc(since).replace(microsecond=0) if since is not None else None
        while True:
            first = await self._answer(repo, second, 1, self.config.per_page)
            if not first.raws:
                return
            yield run.page(first, advance=True)
            if not first.more:
                return
            if first.beyond(second):
                second = first.newest
            else:
                # More than a page within `second`: walk the group by page number, then re-read
                # it until a walk can be trusted. The checkpoint stays where it is meanwhile.
                walk = [first]
                async for page in self._walk(repo, second, self.config.per_page, walk, run):
                    yield page
                for _ in range(MAX_GROUP_WALKS):
                    again: list[_Answer] = []
                    async for page in self._walk(repo, second, GROUP_PAGE, again, run):
                        yield page
                    if len(again) == 1:  # one answer: a snapshot of the whole group
                        walk = again
                        break
                    if group_members(again, second) == group_members(walk, second):
                        break  # `walk` skipped nobody
                    walk = again
                else:
                    raise RetriableError(
                        f"GitHub issues of {repo} updated at {second} kept changing while they "
                        "were read; will retry"
                    )
                # The group is read whole: the checkpoint may pass it now.
                last = walk[-1]
                yield run.page(last, advance=True)
                if not last.more:
                    return
                second = last.newest
            assert second is not None
            run.forget_before(second)

    async def _walk(
        self, repo: str, second: datetime | None, size: int, walk: list[_Answer], run: _RepoRun
    ) -> AsyncIterator[Page]:
        """Page-number walk of `since=second` (from page len(walk) + 1), appending each answer to
        `walk`, until one holds a later second or the list ends. The checkpoint does not move."""
        while not walk or (walk[-1].more and not walk[-1].beyond(second)):
            answer = await self._answer(repo, second, len(walk) + 1, size)
            walk.append(answer)
            if answer.raws:
                yield run.page(answer, advance=False)

    async def _answer(self, repo: str, second: datetime | None, page_no: int, size: int) -> _Answer:
        """One page of `GET /repos/{repo}/issues` sorted by update, from `second` on."""
        query: dict[str, Any] = {
            "state": "all", "sort": "updated", "direction": "asc",
            "per_page": size, "page": page_no,
        }  # fmt: skip
        if second is not None:
            # GitHub's format, in UTC (PyGithub's get_issues would not convert the zone).
            query["since"] = second.strftime("%Y-%m-%dT%H:%M:%SZ")
        url = f"/repos/{repo}/issues"
        gh, auth = await self._repo_client(repo)
        request = partial(_get_list, gh.requester, url, query, size)
        headers, raws = await self._call(f"list issues of {repo}", repo, request, auth)
        self._note(headers)
        await self._learn_parents(repo, raws)
        times = [parse_time(raw.get("updated_at")) for raw in raws]
        return _Answer(raws, times, next_link(headers) is not None)

    async def _learn_parents(self, repo: str, raws: list[dict[str, Any]]) -> None:
        """The ids of the parents an answer's sub-issues name (`parent_issue_url`): every listed
        issue's id is learned for free; a parent the run has not listed costs one
        `GET /repos/{o}/{r}/issues/{n}`, once a run, within the run's lookups (else
        ParentLookupsSpent: the repository stops before this answer, to go on next run)."""
        self._parents.learn(repo, raws)
        wanted = [
            ref
            for raw in raws
            if self.config.include_pull_requests or not is_pull_request(raw)
            if (ref := parent_ref(raw)) is not None
        ]
        for ref in self._parents.unknown(wanted):
            if self._parents.lookups >= self._parents.budget:
                raise ParentLookupsSpent(repo)
            self._parents.lookups += 1
            self._parents.record(ref, await self._issue_id(ref))

    async def _issue_id(self, ref: ParentRef) -> int | None:
        """The id of issue `ref` (`GET /repos/{o}/{r}/issues/{n}`; a transferred one answers
        301, which PyGithub follows), or None when this credential cannot read it: deleted (410),
        not found or not visible (404, 403), or in an owner the app is not installed on."""
        parent_repo, number = ref
        try:
            gh, auth = await self._repo_client(parent_repo)
        except RepositoryLost:
            return None
        request = partial(_get_issue, gh.requester, f"/repos/{parent_repo}/issues/{number}")
        data = await self._call(
            f"read the parent issue {parent_repo}#{number}", None, request, auth
        )
        issue_id = data.get("id") if isinstance(data, Mapping) else None
        return issue_id if _is_int(issue_id) else None

    async def all_ids(self) -> AsyncIterator[ScopeIds]:
        """Every issue id of every repository (its scope), and every PR id (its repository's
        pulls scope) when included, a page at a time."""
        # Creation order never changes, so items created mid-sweep only append at the end.
        query = {"state": "all", "sort": "created", "direction": "asc"}
        for repo in await self._repos():
            try:
                async for raws in self._list_pages(f"list ids of {repo}", repo, query):
                    issues = [self._listed_id(r, repo) for r in raws if not is_pull_request(r)]
                    if issues:
                        yield ScopeIds(repo, issues)
                    if self.config.include_pull_requests:
                        pulls = [self._listed_id(r, repo) for r in raws if is_pull_request(r)]
                        if pulls:
                            yield ScopeIds(pulls_scope(repo), pulls)
            except RepositoryLost as exc:
                # Lost, never an empty listing the sweep would take for deletions. Parts already
                # yielded are harmless: the sweep never marks anything in a lost scope.
                for key in self._keys(repo):
                    yield ScopeIds(key, [], lost=exc.reason)

    def _listed_id(self, raw: Mapping[str, Any], repo: str) -> str:
        """The external_id of a listed issue. The sweep marks every row it does not list, so an
        issue whose id cannot be read fails the listing (named) rather than leave a gap."""
        if not _is_int(raw.get("id")):
            named = rejection(raw, "", repo=repo, prefix=self._prefix).external_id
            raise RetriableError(
                f"GitHub listed {named} without a numeric id ({_shown(raw.get('id'))}); the "
                "deletion sweep needs every id, will retry"
            )
        return f"{self._prefix}{raw['id']}"

    async def _list_pages(
        self, what: str, repo: str, query: Mapping[str, Any]
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """`GET /repos/{repo}/issues`, one non-empty HTTP page at a time, following `Link: next`
        to the end; a page that comes back empty or short while `Link` promises more is sent again
        (`_get_list`), never taken for the end: the sweep marks every issue it is not given.

        PyGithub's Requester sends each request (auth, base_url, throttling, its exceptions), but
        the cursor is ours: PaginatedList forgets its next URL before it parses a page, so a page
        with a malformed body could not be fetched again. Here the URL only moves on after a page
        was parsed, which makes every retry re-send the same request.
        """
        url: str | None = f"/repos/{repo}/issues"
        params: dict[str, Any] = {**query, "per_page": self.config.per_page}
        gh, auth = await self._repo_client(repo)
        while url is not None:
            request = partial(_get_list, gh.requester, url, params, self.config.per_page)
            headers, raws = await self._call(what, repo, request, auth)
            self._note(headers)
            if not raws:
                return
            yield raws
            url, params = next_link(headers), {}  # the next URL carries every parameter

    # -- history (connectors/github_history.py) ------------------------------------------------
    def feed_scopes(self) -> list[str]:
        """Each repository's issues are a feed: its issue events. Pull requests are not: their
        history (merged, draft/ready) is not replayed from events, and a PR's start is its
        creation already (docs/trackers/github.md#history)."""
        if self._resolved is not None:
            return list(self._resolved)
        return [r for r in self.config.repos if not is_pattern(r)]

    async def history(self, todo: HistoryTodo) -> AsyncIterator[HistoryPage]:
        """Each due repository's event feed, newest first, within `todo.budget` requests. A
        repository lost since the item pages is passed over (the item sync names it)."""
        overrides = self.config.status_map
        mapping = IssueMapping(
            status=partial(item_status, overrides=overrides),
            status_names=status_names,
            overrides=overrides,
            priority=partial(priority_of, priority_labels=self.config.priority_labels),
            story_points=story_points_of,
            is_pull_request=is_pull_request,
            per_page=self.config.per_page,
        )
        spent = 0
        for repo in await self._repos():
            if repo not in todo.feeds or spent >= todo.budget:
                continue

            async def fetch(
                url: str, params: dict[str, Any], repo: str = repo
            ) -> tuple[Mapping[str, Any], list[dict[str, Any]], bool]:
                gh, auth = await self._repo_client(repo)
                size = int(params["per_page"])
                request = partial(_get_list, gh.requester, url, params, size)
                headers, raws = await self._call(
                    f"list issue events of {repo}", repo, request, auth
                )
                self._note(headers)
                return headers, raws, next_link(headers) is not None

            pages = walk(
                repo, todo.feeds[repo], todo.budget - spent, fetch,
                prefix=self._prefix, mapping=mapping,
            )  # fmt: skip
            try:
                async for page in pages:
                    spent += page.requests
                    yield page
            except RepositoryLost:
                continue
            finally:
                await pages.aclose()

    @classmethod
    def map_stored(
        cls,
        config: GitHubConfig,
        raw: Mapping[str, Any],
        *,
        scope: str,
        context: Mapping[str, Any],
    ) -> WorkItem:
        """A stored issue or PR (its JSON as listed) mapped again with `config` through
        `map_issue`: no request (`c9-sync remap`; docs/trackers/github.md#remap)."""
        problem = shape_problem(raw)
        if problem is not None:
            raise ValueError(problem)
        repo = scope.removesuffix(":pulls")
        return map_issue(raw, repo=repo, prefix=site_prefix(config.base_url), config=config)

    async def aclose(self) -> None:
        if self._gh is not None:
            await asyncio.to_thread(self._gh.close)
        if self._app is not None:
            await asyncio.to_thread(self._app.close)

"""Jira connector: Jira Cloud through the enhanced search (`/rest/api/{2,3}/search/jql`), Jira
Data Center / Server (9.x, 10.x) through the Server search (`/rest/api/2/search`).

Deployment: `serverInfo.deploymentType` ("Cloud" is Cloud, anything else is Data Center), read at
connect; the config's way of signing in must fit it (docs/trackers/jira.md#jira-data-center):
Cloud takes `email` + API token (basic) or an OAuth 2.0 (3LO) grant (`oauth`: Bearer through
Atlassian's gateway `/ex/jira/{cloudId}`, the access token renewed before each SDK call and once
more when refused; docs/trackers/jira.md#oauth-20-3lo), DC a personal access token alone
(Bearer) or `username` + password (basic). A 401 before serverInfo was read is explained by the
anonymous serverInfo when the site is the other deployment. The two searches answer one page shape
(connectors/jira_search.py), so the paging below is the same on both: on DC the "token" is the
next `startAt`. TLS: `ca_bundle` / `verify_tls` go to the SDK's `options["verify"]`.

The blocking `jira` SDK runs in worker threads. Its own retry loop is switched off
(`max_retries=0`: its waits of up to 60 s would ignore the run's deadline); transient failures are
converted to `RetriableError` and retried by `connectors.retry`, which honours `Retry-After`.

Cursor: JQL compares `updated` with a literal read in the searching user's profile time zone at
minute granularity, so the caller's cursor is rendered in that zone (from `myself().timeZone`) and
floored to the minute. Checkpoints are the newest `updated` seen, never past `serverInfo.serverTime`
read at the start of the run.

Paging (docs/trackers/jira.md#paging): keyset by minute. When a page reaches a later minute than
the search started at, the search starts again at that minute (no token): the token may be an
offset, and an issue edited mid-run jumps to the end of the results, shifting later ones back.

Minute groups. Within one minute the keyset cannot move, so when a page holds nothing of a later
minute the token is followed, and a member already read that is edited or deleted meanwhile
shifts the later ones back: one can be skipped. The rule: while such a group is walked the
checkpoint stays where it was (inside the minute); when the walk has reached a later minute (or
the end) the minute is searched again with the largest page (100). That re-read is trusted when it
is one answer (one answer is one consistent snapshot), or when it lists exactly the issues (up to
the first of a later minute) the walk before it did: a skip needs an issue that was read and then
left the group (edited to a later minute, deleted, moved out of scope), and such an issue is
missing from the next walk, so two walks that list the same issues prove the first one skipped
none. Otherwise the minute is read again. Issues only leave a past minute, so this ends; the
current minute can also gain issues, which the next run reads again as checkpoints never pass the
server's clock at the run's start. Only then does the checkpoint pass the minute and the keyset
move on, from the newest minute of the trusted walk.

Broken promises. Jira may answer fewer issues than asked, so a short page is fine; but an empty
page whose `nextPageToken` promises more, or `isLast: false` without a token, is a RetriableError
(the same request is sent again), never the end of a walk or of the sweep's listing.

Malformed issues. Each search result is mapped on its own: one that cannot be (`shape_problem`: no
readable id or `updated`, a wrong-typed field) goes into `Page.rejected`, named by
`<site>/<id>` (else its key); the rest of the page and every later page still land
(docs/trackers/jira.md#response-bodies). The sweep's listing is the exception: an unreadable id
there fails it, as a listing with a gap would mark an existing issue deleted.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import requests
from jira import JIRA, JIRAError
from jira.client import TokenAuth
from pydantic import Field, field_validator, model_validator

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
from connectors.http import call_sdk, header, log_event, parse_time, retry_after
from connectors.jira_history import (
    TrackedFields,
    changelog_cut,
    changelog_of,
    histories_of,
    history_entries,
    status_names,
)
from connectors.jira_model import (
    EPIC_LINK_SCHEMA,
    SPRINT_SCHEMA,
    assignees_of,
    epic_key_of,
    epic_keys,
    item_type_of,
    labels_of,
    parent_id_of,
    scrub_emails,
    simple_value,
    sprints_of,
)
from connectors.jira_oauth import (
    REAUTHORIZE,
    AtlassianOAuth,
    AtlassianTokens,
    TokenRefused,
    find_cloud_id,
    gateway_url,
)
from connectors.jira_search import (
    Answer,
    SearchPage,
    cloud_page,
    group_members,
    minute_of,
    server_page,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

SCOPE = ""  # what `map_work_item` stamps; `changes` sets each item's scope to its project / JQL
ORDER = "updated ASC, key ASC"
IDS_PAGE_SIZE = 1000  # search/jql returns up to 5000 per page when only ids are asked for
GROUP_PAGE = 100  # the largest page with fields: re-reads of a minute group use it
CHANGELOG = "changelog"  # the item search asks for each issue's changelog with it
CHANGELOG_PAGE = 100  # the most GET issue/{id}/changelog answers per page (Cloud)
STATUS_CACHE_AGE = timedelta(hours=24)  # how long `GET status` categories are trusted
MAX_GROUP_WALKS = 20  # re-reads of one minute group before the run gives up

#: Fields every search asks for (plus the resolved custom fields).
BASE_FIELDS = (
    "summary",
    "status",
    "priority",
    "updated",
    "created",
    "resolution",
    "resolutiondate",
    "statuscategorychangedate",
    "description",
    "issuetype",
    "project",
    "assignee",
    "labels",
    "parent",
)

CANCELLED_RESOLUTIONS = frozenset(
    {"won't do", "won't fix", "duplicate", "declined", "cannot reproduce"}
)
REVIEW_WORDS = ("review", "reviewing", "pr", "pull request")
BLOCKED_WORDS = ("blocked", "on hold", "impeded", "impediment")
CANCELLED_STATUS_WORDS = ("cancelled", "canceled", "rejected", "declined", "abandoned", "won t do")

PRIORITY_BY_NAME = {
    "highest": PRIORITY_HIGHEST,
    "blocker": PRIORITY_HIGHEST,
    "urgent": PRIORITY_HIGHEST,
    "p0": PRIORITY_HIGHEST,
    "p1": PRIORITY_HIGHEST,
    "high": PRIORITY_HIGH,
    "critical": PRIORITY_HIGH,
    "p2": PRIORITY_HIGH,
    "medium": PRIORITY_MEDIUM,
    "major": PRIORITY_MEDIUM,  # the middle of the classic Blocker…Trivial scheme
    "normal": PRIORITY_MEDIUM,
    "p3": PRIORITY_MEDIUM,
    "low": PRIORITY_LOW,
    "lowest": PRIORITY_LOW,
    "minor": PRIORITY_LOW,
    "trivial": PRIORITY_LOW,
    "p4": PRIORITY_LOW,
    "p5": PRIORITY_LOW,
}
#: Ids of Jira's default priority scheme, for renamed priorities we do not recognise.
PRIORITY_BY_DEFAULT_ID = {
    "1": PRIORITY_HIGHEST,
    "2": PRIORITY_HIGH,
    "3": PRIORITY_MEDIUM,
    "4": PRIORITY_LOW,
    "5": PRIORITY_LOW,
}


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------
def _has_control_chars(value: str, allowed: str = "") -> bool:
    return any((ord(c) < 32 or ord(c) == 127) and c not in allowed for c in value)


#: How a config signs in: Cloud (email + API token), Cloud OAuth 2.0 (3LO) through Atlassian's
#: gateway, DC personal access token (Bearer), DC basic.
AuthKind = Literal["cloud", "oauth", "pat", "basic"]


class JiraConfig(ConnectorConfig):
    """`integrations.config` of a Jira integration. Jira Cloud: `email` + API token. Jira Data
    Center / Server: a personal access token alone (sent as Bearer), or `username` + password
    (basic auth); either way the secret is in `token`/`token_env`/`token_file`. Jira Cloud with
    an OAuth 2.0 (3LO) app: `oauth` alone (connectors.jira_oauth), no `token*`."""

    url: str
    email: str | None = None
    username: str | None = None
    jql: str | None = None
    projects: list[str] | None = None
    story_points_field: str | None = None
    acceptance_criteria_field: str | None = None
    #: custom fields kept in work_items.fields, by name ("Team") or id ("customfield_10042")
    extra_fields: list[str] = Field(default_factory=list)
    page_size: int = Field(100, ge=1, le=100)
    # Cloud defaults to 3; Data Center has REST v2 only
    rest_api_version: Literal["2", "3"] | None = None
    request_timeout: float = Field(30.0, gt=0, le=300)
    # DC: jira.search.platform.max.result.window (startAt + maxResults may not pass it)
    max_result_window: int = Field(10_000, ge=1)
    #: Jira Cloud through an OAuth 2.0 (3LO) app's grant instead of email + API token
    oauth: AtlassianOAuth | None = None

    def uses_token(self) -> bool:
        return self.oauth is None

    @field_validator("url")
    @classmethod
    def _site_url(cls, value: str) -> str:
        return http_url(value, "url", "https://your-site.atlassian.net")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value or _has_control_chars(value):
            raise ValueError("email must be the Atlassian account's e-mail address")
        return value

    @field_validator("username")
    @classmethod
    def _username(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value or _has_control_chars(value) or ":" in value:
            raise ValueError("username must be the Jira Data Center user name (no colon)")
        return value

    @field_validator("projects")
    @classmethod
    def _project_keys(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        keys: list[str] = []
        for raw in value:
            key = raw.strip()
            if not key:
                raise ValueError("projects: empty project key")
            if _has_control_chars(key):
                raise ValueError(f"projects: {key!r} contains a control character or newline")
            if key not in keys:
                keys.append(key)
        if not keys:
            raise ValueError("projects: give at least one project key")
        return keys

    @field_validator("jql")
    @classmethod
    def _jql(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value:
            raise ValueError("jql is empty")
        if _has_control_chars(value, allowed="\n\r\t"):
            raise ValueError("jql contains a control character")
        if not strip_order_by(value):
            # Jira Cloud's search/jql refuses an unbounded query (400): the full sync and the
            # sweep's listing would send this one as it is.
            raise ValueError(
                "jql has no search restriction (it is only an ORDER BY): Jira Cloud's search "
                "requires a bounded query; say what to sync, e.g. `project in (ABC, XYZ)`, or "
                "`project is not EMPTY` for every project the account can browse"
            )
        return value

    @field_validator("story_points_field", "acceptance_criteria_field")
    @classmethod
    def _field_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value or _has_control_chars(value):
            raise ValueError("a field id such as customfield_10016 or its name")
        return value

    @field_validator("extra_fields")
    @classmethod
    def _extra_fields(cls, value: list[str]) -> list[str]:
        names: list[str] = []
        for raw in value:
            name = raw.strip()
            if not name or _has_control_chars(name):
                raise ValueError(
                    "extra_fields: each is a field id such as customfield_10042 or "
                    "its name, without control characters"
                )
            if name not in names:
                names.append(name)
        return names

    @model_validator(mode="after")
    def _one_scope(self) -> JiraConfig:
        if (self.jql is None) == (self.projects is None):
            raise ValueError("give exactly one of jql or projects")
        return self

    @model_validator(mode="after")
    def _one_sign_in(self) -> JiraConfig:
        if self.oauth is not None:
            given = [
                k
                for k in ("email", "username", "token", "token_env", "token_file")
                if getattr(self, k) is not None
            ]
            if given:
                raise ValueError(
                    f"give oauth (Jira Cloud's OAuth 2.0 app) or {given[0]}, not both: an OAuth"
                    " grant signs in on its own"
                )
            return self
        if self.email is not None and self.username is not None:
            raise ValueError(
                "give email (Jira Cloud, with an API token) or username (Jira Data Center, with "
                "a password), not both"
            )
        if self.email is None and self.rest_api_version == "3":
            raise ValueError(
                "rest_api_version 3 is Jira Cloud's (with email): Jira Data Center has REST v2"
            )
        return self

    @property
    def auth(self) -> AuthKind:
        if self.oauth is not None:
            return "oauth"
        if self.email is not None:
            return "cloud"
        return "basic" if self.username is not None else "pat"

    @property
    def api_version(self) -> str:
        """The REST version the client speaks: configured, else 3 on Cloud and 2 on DC."""
        if self.rest_api_version is not None:
            return self.rest_api_version
        return "3" if self.auth in ("cloud", "oauth") else "2"


def site_of(url: str) -> str:
    """The site part of external ids: host (and port, and path for a context path), lowercased."""
    parts = urlsplit(url)
    return (parts.netloc + parts.path.rstrip("/")).lower()


# ---------------------------------------------------------------------------------------------
# JQL
# ---------------------------------------------------------------------------------------------
def jql_quote(value: str) -> str:
    """A JQL string literal: backslash and double quote escaped so the value stays one literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_ORDER_BY = re.compile(r"order\s+by\b", re.IGNORECASE)


def strip_order_by(jql: str) -> str:
    """The JQL without its ORDER BY clause (an `order by` inside a string literal is kept)."""
    quote: str | None = None
    i = 0
    while i < len(jql):
        c = jql[i]
        if quote is not None:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif (
            c in "oO"
            and (i == 0 or not (jql[i - 1].isalnum() or jql[i - 1] == "_"))
            and _ORDER_BY.match(jql, i)
        ):
            return jql[:i].strip()
        i += 1
    return jql.strip()


def scope_jql(config: JiraConfig) -> str:
    """The admin's scope as a JQL condition (never "": the config refuses an unbounded `jql`)."""
    if config.projects is not None:
        return f"project in ({', '.join(jql_quote(p) for p in config.projects)})"
    assert config.jql is not None
    admin = strip_order_by(config.jql)
    return f"({admin})" if admin else ""


def scope_conditions(config: JiraConfig) -> dict[str, str]:
    """Scope key -> its JQL condition: one scope per project in `projects` (adding a project
    reads it in full while the others keep their cursors; one taken out marks its issues out of
    scope), or one for the admin's `jql`, keyed by a digest of it (an edited JQL is a new scope,
    read in full)."""
    if config.projects is not None:
        return {p: f"project = {jql_quote(p)}" for p in config.projects}
    condition = scope_jql(config)
    digest = hashlib.sha256(condition.encode()).hexdigest()[:12]
    return {f"jql:{digest}": condition}


def search_jql(scope: str, since_literal: str | None, order: str = ORDER) -> str:
    """`<scope> AND updated >= "<literal>" ORDER BY <order>`, leaving out what is not given."""
    conditions = [c for c in (scope, since_literal and f'updated >= "{since_literal}"') if c]
    where = " AND ".join(conditions)
    return f"{where} ORDER BY {order}" if where else f"ORDER BY {order}"


def jql_time_literal(at: datetime, tz: ZoneInfo | None) -> str:
    """`at` as a JQL `"yyyy-MM-dd HH:mm"` literal in the user's time zone, floored to the minute,
    never naming a later instant than `at` (a repeated local hour in autumn is read either way).

    With an unknown zone the literal is written as if the user were at UTC-12, the westernmost
    offset: whatever zone Jira reads it in, it names an instant at or before `at`.
    """
    at = utc(at)
    if tz is None:
        return (at - timedelta(hours=12)).strftime("%Y-%m-%d %H:%M")
    local = at.astimezone(tz).replace(second=0, microsecond=0, tzinfo=None)
    for _ in range(8):
        latest = max(local.replace(tzinfo=tz, fold=fold).astimezone(UTC) for fold in (0, 1))
        if latest <= at:
            break
        local -= timedelta(minutes=math.ceil((latest - at).total_seconds() / 60))
    return local.strftime("%Y-%m-%d %H:%M")


def user_time_zone(name: object) -> ZoneInfo | None:
    """The ZoneInfo of `myself().timeZone`, or None when Jira gave none we know."""
    if not isinstance(name, str) or not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# Mapping (pure)
# ---------------------------------------------------------------------------------------------
def jira_status(
    name: str | None,
    category: str | None,
    resolution: str | None,
    *,
    flagged: bool = False,
    overrides: Mapping[str, Status] | None = None,
) -> Status:
    """Our status for a Jira status, the admin's `status_map` (by name) winning
    (docs/trackers/jira.md#status-mapping)."""
    return map_status(name, _default_status(name, category, resolution, flagged), overrides or {})


def _default_status(
    name: str | None, category: str | None, resolution: str | None, flagged: bool
) -> Status:
    category = (category or "").casefold()
    if category == "done":
        resolution_key = (resolution or "").strip().casefold().replace("\u2019", "'")
        if resolution_key in CANCELLED_RESOLUTIONS or status_name_suggests(
            name, *CANCELLED_STATUS_WORDS
        ):
            return Status.CANCELLED
        return Status.COMPLETED
    if flagged or status_name_suggests(name, *BLOCKED_WORDS):
        return Status.BLOCKED
    if category == "indeterminate":
        if status_name_suggests(name, *REVIEW_WORDS):
            return Status.PR_READY
        return Status.IN_PROGRESS
    return Status.QUEUED  # "new", "undefined" (id 1) and anything unknown


def jira_priority(priority: object) -> int:
    """The priority field (`{"id","name"}` or None) on our 0-4 scale."""
    if not isinstance(priority, Mapping):
        return PRIORITY_NONE
    name = str(priority.get("name") or "").strip().casefold()
    if name in PRIORITY_BY_NAME:
        return PRIORITY_BY_NAME[name]
    return PRIORITY_BY_DEFAULT_ID.get(str(priority.get("id") or ""), PRIORITY_NONE)


def story_points(value: object) -> int | None:
    """A story-point value rounded half up to an int (0.5 counts as 1); None when not a number."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    return math.floor(number + 0.5)


_ADF_INLINE = frozenset(
    {"text", "hardBreak", "mention", "emoji", "inlineCard", "date", "status", "mediaInline"}
)


def adf_to_text(node: object) -> str:
    """Readable plain text of an Atlassian Document Format node (a v3 description)."""
    return _adf(node).strip()


def _adf(node: object) -> str:
    if isinstance(node, str):
        return node
    if not isinstance(node, Mapping):
        return ""
    kind = node.get("type")
    attrs = node.get("attrs") if isinstance(node.get("attrs"), Mapping) else {}
    assert isinstance(attrs, Mapping)
    kids = node.get("content") if isinstance(node.get("content"), list) else []
    assert isinstance(kids, list)
    if kind == "text":
        return str(node.get("text") or "")
    if kind == "hardBreak":
        return "\n"
    if kind in ("mention", "emoji", "status"):
        return str(attrs.get("text") or attrs.get("shortName") or "")
    if kind in ("inlineCard", "blockCard", "embedCard"):
        return str(attrs.get("url") or "")
    if kind == "date":
        return _adf_date(attrs.get("timestamp"))
    if kind == "rule":
        return "---"
    if kind in ("bulletList", "orderedList", "taskList", "decisionList"):
        return _adf_list(kind, attrs, kids)
    if kind == "blockquote":
        return "\n".join("> " + line for line in _adf_blocks(kids).split("\n"))
    if kind == "table":
        return "\n".join(
            " | ".join(_adf(cell).replace("\n", " ") for cell in _kids(row)) for row in kids
        )
    if kind == "doc":  # top-level blocks read best with a blank line between them
        return "\n\n".join(text for text in (_adf(k) for k in kids) if text)
    if kind in ("expand", "nestedExpand") and attrs.get("title"):
        return str(attrs["title"]) + "\n" + _adf_blocks(kids)
    if kids and all(isinstance(k, Mapping) and k.get("type") in _ADF_INLINE for k in kids):
        return "".join(_adf(k) for k in kids)
    return _adf_blocks(kids)


def _kids(node: object) -> list[Any]:
    content = node.get("content") if isinstance(node, Mapping) else None
    return content if isinstance(content, list) else []


def _adf_blocks(kids: Sequence[object]) -> str:
    return "\n".join(text for text in (_adf(k) for k in kids) if text)


def _adf_list(kind: object, attrs: Mapping[str, Any], kids: Sequence[object]) -> str:
    lines = []
    start = attrs.get("order", 1) if isinstance(attrs.get("order"), int) else 1
    for n, kid in enumerate(kids, start=start):
        if kind == "orderedList":
            marker = f"{n}. "
        elif kind == "taskList":
            done = isinstance(kid, Mapping) and (kid.get("attrs") or {}).get("state") == "DONE"
            marker = "[x] " if done else "[ ] "
        else:
            marker = "- "
        text = _adf(kid)
        lines.append(marker + text.replace("\n", "\n" + " " * len(marker)))
    return "\n".join(lines)


def _adf_date(timestamp: object) -> str:
    try:
        return datetime.fromtimestamp(int(str(timestamp)) / 1000, UTC).strftime("%Y-%m-%d")
    except (TypeError, ValueError, OverflowError):
        return ""


def rich_text(value: object) -> str | None:
    """A description-like field as text: v2 strings as is, v3 ADF documents flattened."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    text = adf_to_text(value) if isinstance(value, Mapping) else str(value)
    return text or None


@dataclass(frozen=True, slots=True)
class FieldIds:
    """Ids of the site's custom fields the mapping reads (None: not configured / not on site)."""

    story_points: str | None = None
    acceptance_criteria: str | None = None
    flagged: str | None = None
    story_points_name: str | None = None  # how a changelog names the story points field
    sprint: str | None = None  # the Sprint field (and how changelogs name it)
    epic_link: str | None = None  # Data Center's Epic Link (an epic's children name its key)
    extra: tuple[tuple[str, str], ...] = ()  # extra_fields: (the admin's name, the field id)

    def tracked(self) -> TrackedFields:
        return TrackedFields(self.story_points, self.story_points_name, self.sprint)

    def search_fields(self) -> list[str]:
        extra = [
            *(self.story_points, self.acceptance_criteria, self.flagged),
            *(self.sprint, self.epic_link),
            *(field_id for _, field_id in self.extra),
        ]
        return [*BASE_FIELDS, *dict.fromkeys(f for f in extra if f and f not in BASE_FIELDS)]


def resolve_field(fields: Sequence[Mapping[str, Any]], wanted: str) -> str | None:
    """The id of a field given by id or by name (as `GET /field` lists them), else None."""
    folded = wanted.strip().casefold()
    for f in fields:
        if wanted in (f.get("id"), f.get("key")):
            return str(f["id"])
    for f in fields:
        if str(f.get("name") or "").strip().casefold() == folded:
            return str(f["id"])
    for f in fields:
        if any(str(c).casefold() == folded for c in f.get("clauseNames") or ()):
            return str(f["id"])
    return None


def field_by_schema(fields: Sequence[Mapping[str, Any]], custom: str, name: str) -> str | None:
    """The id of the field whose `schema.custom` is `custom` (Jira Software's plugin key, the
    same whatever the admin renamed it to), else of the field named `name`."""
    for f in fields:
        schema = f.get("schema")
        if isinstance(schema, Mapping) and schema.get("custom") == custom:
            return str(f["id"])
    return resolve_field(fields, name)


def richer_model(
    f: Mapping[str, Any], *, site: str, fields: FieldIds, epic_ids: Mapping[str, str | None]
) -> dict[str, Any]:
    """The richer-model fields of a WorkItem from an issue's `fields` (connectors.jira_model):
    parent (the `parent` field's id, else the Epic Link key through `epic_ids`), item type,
    labels, assignee, sprints and the admin's extra_fields."""
    parent = parent_id_of(f.get("parent"))
    if parent is None and fields.epic_link is not None:
        key = epic_key_of(f.get(fields.epic_link))
        parent = epic_ids.get(key) if key is not None else None
    item_type, type_name = item_type_of(f.get("issuetype"))
    return {
        "parent_external_id": f"{site}/{parent}" if parent is not None else None,
        "item_type": item_type,
        "item_type_name": type_name,
        "labels": labels_of(f.get("labels")),
        "assignees": assignees_of(f.get("assignee")),
        "sprints": sprints_of(f.get(fields.sprint), site) if fields.sprint else (),
        "custom_fields": {name: custom_value(f.get(fid)) for name, fid in fields.extra},
    }


def custom_value(value: Any) -> Any:
    """An extra field's value as plain JSON (jira_model.simple_value; rich text as its text)."""
    if isinstance(value, Mapping) and value.get("type") == "doc":
        return rich_text(value)
    return simple_value(value)


def map_issue(
    raw: Mapping[str, Any],
    *,
    site: str,
    base_url: str,
    fields: FieldIds,
    overrides: Mapping[str, Status],
    epic_ids: Mapping[str, str | None] | None = None,
) -> WorkItem:
    """One search result (`{"id","key","fields":{…}}`) as a WorkItem. `epic_ids`: Data Center
    Epic Link keys -> the epic's id (None: the key names no issue)."""
    f = raw.get("fields") or {}
    key = str(raw.get("key") or "")
    status = f.get("status") or {}
    resolution = f.get("resolution") or {}
    flagged = bool(f.get(fields.flagged)) if fields.flagged else False
    mapped = jira_status(
        status.get("name"),
        (status.get("statusCategory") or {}).get("key"),
        resolution.get("name"),
        flagged=flagged,
        overrides=overrides,
    )
    updated = parse_time(f.get("updated"))
    if updated is None:
        raise ValueError("no updated time")
    completed = None
    if mapped is Status.COMPLETED:
        # Team-managed workflows may finish without a resolution: fall back to the category change.
        completed = parse_time(f.get("resolutiondate")) or parse_time(
            f.get("statuscategorychangedate")
        )
    return WorkItem(
        external_id=f"{site}/{raw['id']}",
        external_key=key or None,
        external_url=f"{base_url}/browse/{key}" if key else None,
        title=str(f.get("summary") or ""),
        description=rich_text(f.get("description")),
        acceptance_criteria=(
            rich_text(f.get(fields.acceptance_criteria)) if fields.acceptance_criteria else None
        ),
        status=mapped,
        priority=jira_priority(f.get("priority")),
        story_points=story_points(f.get(fields.story_points)) if fields.story_points else None,
        updated_at=updated,
        started_at=None,  # Jira keeps no start time in the issue's fields
        completed_at=completed,
        raw=scrub_emails(raw),  # external_data: Jira's user objects carry e-mail addresses
        scope=SCOPE,
        **richer_model(f, site=site, fields=fields, epic_ids=epic_ids or {}),
    )


#: Fields the mapping reads whose type would make it fail or mean something else, and the JSON
#: types Jira sends for them (absent is fine, except `updated`).
_FIELD_SHAPE: dict[str, tuple[type, ...]] = {
    "updated": (str,),
    "summary": (str, type(None)),
    "status": (dict, type(None)),
    "resolution": (dict, type(None)),
}
_ISSUE_ID = re.compile(r"[0-9]+")


_TYPE_NAMES: dict[type, str] = {
    type(None): "null",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "an object",
}


def _json_name(value: object) -> str:
    """The JSON type of a parsed value, for a rejection reason."""
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _shown(value: object) -> str:
    """A value, short, for a rejection reason (Jira's data; never a secret of ours)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def issue_id_of(raw: object) -> str | None:
    """An issue's id (digits, as Jira writes it), or None when the result has no readable one."""
    value = raw.get("id") if isinstance(raw, Mapping) else None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and _ISSUE_ID.fullmatch(value):
        return value
    return None


def shape_problem(raw: object) -> str | None:
    """Why a search result cannot be mapped faithfully, or None: no readable id, `fields` or
    `updated`, or a field the mapping reads with a type Jira never sends for it."""
    if not isinstance(raw, Mapping):
        return f"the issue is {_json_name(raw)}, not an object"
    if issue_id_of(raw) is None:
        return f"id is not an issue id ({_shown(raw.get('id'))})"
    if not isinstance(raw.get("key"), str | None):
        return f"key is {_json_name(raw.get('key'))}, not a string"
    f = raw.get("fields")
    if not isinstance(f, Mapping):
        return f"fields is {_json_name(f)}, not an object"
    if "updated" not in f:
        return "updated is missing"
    for name, types in _FIELD_SHAPE.items():
        if name in f and not isinstance(f[name], types):
            wanted = " or ".join(_TYPE_NAMES[t] for t in types)
            return f"{name} is {_json_name(f[name])}, not {wanted}"
    status = f.get("status") or {}
    if not isinstance(status.get("name"), str | None):
        return f"status.name is {_json_name(status.get('name'))}, not a string"
    if not isinstance(status.get("statusCategory"), dict | None):
        return f"status.statusCategory is {_json_name(status.get('statusCategory'))}"
    if parse_time(f["updated"]) is None:
        return f"updated is not a time ({_shown(f['updated'])})"
    return None


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait from `Retry-After` (seconds or HTTP date), else from Jira's
    `X-RateLimit-Reset` (an ISO time); None when neither is readable."""
    now = utc(now) if now is not None else datetime.now(UTC)
    wait = retry_after(headers, now.timestamp())
    if wait is not None:
        return wait
    reset = parse_time(header(headers, "X-RateLimit-Reset"))
    if reset is not None:
        return max(0.0, (reset - now).total_seconds())
    return None


def _jira_said(exc: JIRAError) -> str:
    """Jira's own error text (errorMessages), one line, bounded. Never includes headers."""
    text = " ".join(str(exc.text or "").split())
    return text[:500] if text else "no message"


#: What to check after a 401, by the way the config signs in.
CREDENTIAL_HINTS: dict[str, str] = {
    "cloud": "check email and token",
    "oauth": "the OAuth access token was refused through Atlassian's gateway",
    "pat": "check the personal access token in token (expired or revoked?) and that url is "
    "the Jira Data Center it was made on",
    "basic": "check username and password; a personal access token is given without "
    "username (it is sent as Bearer, and Jira refuses it as a password)",
}
CONNECTING = "connecting (serverInfo)"


def convert_error(exc: BaseException, what: str, auth: AuthKind = "cloud") -> ConnectorError | None:
    """The ConnectorError for an SDK/HTTP exception, or None when it is not one of those."""
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, JIRAError):
        return _from_jira_error(exc, what, auth)
    if isinstance(exc, json.JSONDecodeError | requests.exceptions.JSONDecodeError):
        if what == CONNECTING:  # the first answer is a page, not Jira: a login page, a proxy
            html = str(getattr(exc, "doc", "")).lstrip()[:1].startswith("<")
            return FatalError(
                f"url answered {'an HTML page' if html else 'a body that is not JSON'} instead "
                "of Jira's REST API while connecting (serverInfo): check url (with the context "
                "path, e.g. https://jira.example.com/jira), and that no login page or proxy "
                "stands in front of the REST API for token sign-ins"
            )
        return RetriableError(
            f"Jira sent a body that is not JSON while {what}; if this persists, check that url "
            "points at the Jira site"
        )
    if isinstance(exc, requests.exceptions.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return FatalError(
            f"Jira's TLS certificate is not trusted while {what} (certificate verify failed): "
            "set ca_bundle to the CA bundle (PEM) that signed it, e.g. your corporate CA"
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return RetriableError(f"Jira did not answer in time while {what} ({type(exc).__name__})")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return RetriableError(f"could not reach Jira while {what} ({type(exc).__name__})")
    if isinstance(exc, requests.exceptions.RequestException):
        return RetriableError(f"HTTP error while {what} ({type(exc).__name__})")
    return None


def _unless_gone(client: JIRA, path: str, params: Mapping[str, Any]) -> Any:
    """`GET <path>` (blocking); None when Jira answers 404 (the issue was deleted or moved out
    of reach since it was listed: its history is not there to read)."""
    try:
        return client._get_json(path, params=dict(params))
    except JIRAError as exc:
        if exc.status_code == 404:
            return None
        raise


class CredentialsRejected(FatalError):
    """Jira answered 401: the credentials, or the way the config signs in, are wrong."""


#: Jira's 400 for JQL naming a project that does not exist or that the account cannot browse
#: (Jira does not tell the two apart).
_NO_PROJECT = re.compile(
    r"The value '((?:[^']|'(?! does not))*)' does not exist for the field 'project'"
)


class ProjectNotFound(FatalError):
    """The scope's JQL names a project Jira says does not exist (deleted, its key changed, or
    the account lost browse permission). While syncing that scope is lost (`Page.lost`,
    `ScopeIds.lost`): the other scopes go on and the run fails naming it."""

    def __init__(self, message: str, projects: Sequence[str]) -> None:
        super().__init__(message)
        self.projects = list(projects)

    @property
    def reason(self) -> str:
        """Short, for `lost`."""
        names = ", ".join(repr(p) for p in self.projects)
        return (
            f"Jira says project {names} does not exist (deleted, key changed, or this account "
            "has no Browse Projects permission on it)"
        )


def _from_jira_error(exc: JIRAError, what: str, auth: AuthKind = "cloud") -> ConnectorError:
    status = exc.status_code
    headers = exc.response.headers if exc.response is not None else {}
    if status == 401:
        return CredentialsRejected(f"Jira rejected the credentials (401): {CREDENTIAL_HINTS[auth]}")
    if status == 403:
        return FatalError(
            f"Jira refused access while {what} (403): give the account browse permission on the "
            f"projects, or solve a pending CAPTCHA by logging in once. Jira said: {_jira_said(exc)}"
        )
    if status == 404:
        hint = (
            " (Jira Data Center has no REST API v3: for DC leave out email)"
            if what == CONNECTING and auth == "cloud"
            else ""
        )
        return FatalError(
            f"Jira answered 404 while {what}: check that url is the site address "
            "(https://<site>.atlassian.net, or the Data Center base URL with its context path)"
            f"{hint}. Jira said: {_jira_said(exc)}"
        )
    if status == 400:
        said = _jira_said(exc)
        missing = _NO_PROJECT.findall(said)
        if missing:
            return ProjectNotFound(
                f"Jira rejected the query (400): {said} The project is deleted, its key "
                "changed, or the account this token signs in as has no Browse Projects "
                "permission on it",
                missing,
            )
        return FatalError(f"Jira rejected the query (400): {said}")
    if status in (429, 503):
        return RetriableError(
            f"Jira is rate limiting or unavailable ({status}) while {what}",
            retry_after=retry_after_seconds(headers),
        )
    if status is None or status >= 500:
        return RetriableError(f"Jira failed while {what} ({status or 'no response'})")
    return FatalError(f"Jira answered {status} while {what}: {_jira_said(exc)}")


# ---------------------------------------------------------------------------------------------
# The connector
# ---------------------------------------------------------------------------------------------
class _Jira(JIRA):
    """The SDK client, remembering the serverInfo its constructor (or we) read last."""

    last_server_info: Mapping[str, Any] = {}

    def server_info(self) -> dict[str, Any]:
        info = super().server_info()
        self.last_server_info = info if isinstance(info, dict) else {}
        return info

    def search_jql_post(
        self,
        jql: str,
        token: str | None,
        size: int,
        fields: Sequence[str],
        expand: str | None = None,
    ) -> Any:
        """`POST search/jql` with only the properties Jira's published schema allows
        (`SearchAndReconcileRequestBean`: additionalProperties false, none nullable). The SDK's
        own POST sends `"expand": null, "properties": null`. None when not Cloud, as the SDK."""
        if not self._is_cloud:
            return None
        cache = self._fields_cache  # JQL names -> ids, as the SDK translates them
        body: dict[str, Any] = {
            "jql": jql,
            "fields": [cache.get(f, f) for f in fields],
            "maxResults": size,
        }
        if token:
            body["nextPageToken"] = token
        if expand:
            body["expand"] = expand  # a string in this bean
        return self._get_json("search/jql", params=body, use_post=True)

    def search_post(
        self,
        jql: str,
        start: int,
        size: int,
        fields: Sequence[str],
        expand: str | None = None,
        validate: bool = True,
    ) -> Any:
        """`POST /rest/api/2/search` (Jira Data Center) with the keys of the Server
        `SearchRequest` only; the SDK's own POST sends `"expand": null`."""
        cache = self._fields_cache
        body = {
            "jql": jql,
            "startAt": start,
            "maxResults": size,
            "fields": [cache.get(f, f) for f in fields],
            "validateQuery": validate,
        }
        if expand:
            body["expand"] = expand.split(",")  # a list in the Server SearchRequest
        return self._get_json("search", params=body, use_post=True)


@dataclass(frozen=True, slots=True)
class _Run:
    """What a run reads once at its start."""

    client: _Jira
    server_time: datetime | None  # serverInfo.serverTime: checkpoints never pass it
    tz: ZoneInfo | None  # the user's profile zone, in which Jira reads JQL date literals
    fields: FieldIds


@dataclass(frozen=True, slots=True)
class _Changelog:
    """An issue's changelog read by pages, and what it cost."""

    histories: list[Any] | None
    requests: int


class _Progress:
    """What one run of `changes` has yielded, and the checkpoint it has handed out."""

    def __init__(self, connector: JiraConnector, run: _Run, scope: str) -> None:
        self._connector = connector
        self._run = run
        self._scope = scope
        self._yielded: dict[str, datetime] = {}  # external_id -> the version already yielded
        self._rejected: set[str] = set()  # external_ids of the results rejected so far
        self.mark: datetime | None = None

    def page(self, answer: Answer, *, advance: bool) -> Page:
        """The page of an answer: issues not yielded yet (in this version), and the ones that
        cannot be mapped, each named once a run. The checkpoint moves to the answer's newest
        `updated` (never past the server's clock) only with `advance`; it may pass a rejected
        issue."""
        fresh: list[WorkItem] = []
        rejected: list[Rejected] = []
        for raw in answer.raws:
            item = self._connector._map(raw, self._run.fields)
            if isinstance(item, Rejected):
                if item.external_id not in self._rejected:
                    self._rejected.add(item.external_id)
                    rejected.append(item)
            elif self._yielded.get(item.external_id) != item.updated_at:
                self._yielded[item.external_id] = item.updated_at
                item = self._connector._with_history(item, raw, self._run.fields)
                fresh.append(replace(item, scope=self._scope))
        newest = answer.newest
        if advance and newest is not None:
            if self._run.server_time is not None:
                newest = min(newest, self._run.server_time)
            self.mark = newest if self.mark is None else max(self.mark, newest)
        return Page(fresh, {} if self.mark is None else {self._scope: self.mark}, rejected)


class JiraConnector:
    """Jira Cloud or Data Center issues in the configured projects or JQL, oldest change
    first."""

    source: ClassVar[str] = "jira"
    config_model: ClassVar[type[ConnectorConfig]] = JiraConfig
    overlap: ClassVar[timedelta] = timedelta(minutes=5)

    def __init__(self, config: JiraConfig, ctx: ConnectorContext) -> None:
        self.config = config
        self._ctx = ctx
        self._site = site_of(config.url)
        self._scope = scope_jql(config)
        self._scopes = scope_conditions(config)
        self._client: _Jira | None = None
        self._fields: FieldIds | None = None
        self._server: bool | None = None  # Jira Data Center / Server (from serverInfo)
        # status name (folded) -> its category key, learnt from issues and `GET status` (read at
        # most once a run, when a changelog names a status no issue showed)
        self._categories: dict[str, str | None] = {}
        self._statuses_listed = False
        # Data Center Epic Link keys -> the epic's issue id (None: resolves to no issue), learnt
        # from the issues read and one batched `key in (…)` search per page for the others
        self._epic_ids: dict[str, str | None] = {}
        self._epic_cache_read = False
        # OAuth 2.0 (3LO): the access token (renewed through the vault), the site's cloudId
        # (found once), and the bearer the SDK client sends now
        self._tokens: AtlassianTokens | None = None
        self._token_client: httpx.AsyncClient | None = None
        self._cloud_id: str | None = None
        self._bearer: str | None = None
        if config.oauth is not None:
            # Atlassian's token endpoint and accessible-resources: no Authorization by default
            self._token_client = httpx.AsyncClient(
                timeout=httpx.Timeout(config.request_timeout),
                headers={"User-Agent": "claude-nine-sync (jira connector)"},
                follow_redirects=False,
                verify=config.tls_verify(),
            )
            self._tokens = AtlassianTokens(config.oauth, ctx, self._token_client)

    # -- the contract -------------------------------------------------------------------------
    async def check(self) -> None:
        """Credentials and the deployment they fit, user, configured fields and the scope JQL
        (every project browsable) all work."""
        run = await self._run_start()
        await self._search(run.client, search_jql(self._scope, None), None, 1, ["id"])

    async def scopes(self) -> list[str]:
        return list(self._scopes)

    async def changes(self, since: Mapping[str, datetime]) -> AsyncIterator[Page]:
        """Per scope (project, or the admin's JQL), pages of issues updated at or after
        `since[scope]` (everything when absent).

        Keyset paging: when a page ends in a later minute than the query's `updated >=` literal,
        the search starts again at that minute instead of following nextPageToken. The token is
        an offset: an issue edited mid-run jumps to the end of the results and every later one
        shifts back a slot, so one could fall onto a page already read and be lost for good (its
        old time lies behind the cursor). Issues of the boundary minute come again and are dropped
        here; within one minute the token is followed, and the minute is then read again until a
        walk of it is proven complete (module docstring)."""
        run = await self._run_start()
        for scope, condition in self._scopes.items():
            try:
                async for page in self._scope_changes(run, scope, condition, since.get(scope)):
                    yield page
            except ProjectNotFound as exc:  # lost: the other scopes go on, the run fails
                yield Page([], {}, lost={scope: exc.reason})

    async def _scope_changes(
        self, run: _Run, scope: str, condition: str, cursor: datetime | None
    ) -> AsyncIterator[Page]:
        progress = _Progress(self, run, scope)
        fields = run.fields.search_fields()
        walk = self._keyset(
            run, condition, cursor, self.config.page_size, GROUP_PAGE, fields, CHANGELOG
        )
        async for answer, advance in walk:
            await self._learn_statuses(run.client, answer.raws)
            await self._learn_epics(run, answer.raws)
            yield progress.page(answer, advance=advance)

    async def _keyset(
        self,
        run: _Run,
        condition: str,
        cursor: datetime | None,
        size: int,
        group_size: int,
        fields: list[str],
        expand: str | None = None,
    ) -> AsyncIterator[tuple[Answer, bool]]:
        """The answers of the keyset walk over `condition` from `cursor`, each with whether the
        checkpoint may move to its newest `updated` (module docstring: keyset by minute, minute
        groups). The same walk for Cloud's tokens and DC's startAt."""
        minute = minute_of(cursor) if cursor is not None else None
        literal = jql_time_literal(cursor, run.tz) if cursor is not None else None
        while True:
            jql = search_jql(condition, literal)
            first = await self._answer(run, jql, None, size, fields, expand)
            if first.raws:
                yield first, True
            if first.token is None:
                return
            if not first.beyond(minute):
                # Nothing past `minute` on a page that promises more: walk the minute by token,
                # then read it again until a walk can be trusted; the checkpoint waits.
                walk = [first]
                async for answer in self._walk(run, jql, size, walk, minute, fields, expand):
                    yield answer, False
                for _ in range(MAX_GROUP_WALKS):
                    again: list[Answer] = []
                    again_walk = self._walk(run, jql, group_size, again, minute, fields, expand)
                    async for answer in again_walk:
                        yield answer, False
                    if len(again) == 1:  # one answer: a snapshot of the whole minute
                        walk = again
                        break
                    if group_members(again, minute) == group_members(walk, minute):
                        break  # `walk` skipped nobody
                    walk = again
                else:
                    raise RetriableError(
                        f"Jira issues updated in the minute from {minute} kept changing while "
                        "they were read; will retry"
                    )
                first = walk[-1]
                yield first, True  # the minute is read whole
                if first.token is None:
                    return
            newest = first.newest
            assert newest is not None  # it holds an issue of a later minute
            minute, literal = minute_of(newest), jql_time_literal(newest, run.tz)

    async def _walk(
        self,
        run: _Run,
        jql: str,
        size: int,
        walk: list[Answer],
        minute: datetime | None,
        fields: list[str],
        expand: str | None = None,
    ) -> AsyncIterator[Answer]:
        """Follow the tokens of `jql` (from its first page when `walk` is empty), appending each
        answer to `walk`, until one holds a later minute or the results end. The checkpoint does
        not move."""
        seen: set[str] = set()
        while not walk or (walk[-1].token is not None and not walk[-1].beyond(minute)):
            token = walk[-1].token if walk else None
            if token is not None:
                if token in seen:
                    raise ConnectorError("Jira repeated a nextPageToken: stopping to avoid a loop")
                seen.add(token)
            answer = await self._answer(run, jql, token, size, fields, expand)
            walk.append(answer)
            if answer.raws:
                yield answer

    async def _answer(
        self,
        run: _Run,
        jql: str,
        token: str | None,
        size: int,
        fields: list[str],
        expand: str | None = None,
    ) -> Answer:
        """One search page, its issues' times read and its promise of more taken."""
        return Answer.of(await self._search(run.client, jql, token, size, fields, expand))

    async def all_ids(self) -> AsyncIterator[ScopeIds]:
        """Every issue id in scope (no time filter), a page at a time. On Data Center the listing
        is the keyset walk by `updated` (ids and times only): offset paging by key would stop at
        the result window."""
        client, _ = await self._connect()
        run = await self._run_start() if self._server else None
        await self._field_ids(client)
        for scope, condition in self._scopes.items():
            try:
                if run is not None:
                    parts = self._keyset_ids(run, condition)
                else:
                    jql = search_jql(condition, None, order="key ASC")
                    parts = self._pages(client, jql, ["id"], IDS_PAGE_SIZE)
                async for issues in parts:
                    ids = [f"{self._site}/{self._issue_id(raw)}" for raw in issues]
                    yield ScopeIds(scope, ids)
            except ProjectNotFound as exc:  # lost, never an empty listing taken for deletions
                yield ScopeIds(scope, [], lost=exc.reason)

    async def _keyset_ids(self, run: _Run, condition: str) -> AsyncIterator[list[Any]]:
        """The issues of `condition` (id and updated only), each once, by the keyset walk."""
        listed: set[str] = set()
        size = min(IDS_PAGE_SIZE, self.config.max_result_window)
        walk = self._keyset(run, condition, None, size, size, ["id", "updated"])
        async for answer, _ in walk:
            fresh = []
            for raw in answer.raws:
                issue_id = self._issue_id(raw)
                if issue_id not in listed:
                    listed.add(issue_id)
                    fresh.append(raw)
            if fresh:
                yield fresh

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
        token_client, self._token_client = self._token_client, None
        if token_client is not None:
            await token_client.aclose()

    # -- history (connectors/jira_history.py, docs/trackers/jira.md#history) -----------------
    def feed_scopes(self) -> list[str]:
        """None: Jira's history comes with the issues, or by issue id."""
        return []

    async def history(self, todo: HistoryTodo) -> AsyncIterator[HistoryPage]:
        """The whole changelog of each issue in `todo.items` (its search answer held only the
        most recent histories), one page per issue, within `todo.budget` requests:
        `GET issue/{id}?fields=created,status,resolution&expand=changelog` (whole on Data
        Center), then on Cloud, when that is cut too, `GET issue/{id}/changelog` from the start,
        100 a page. An issue that is gone (404) is complete with no entries. An issue whose
        pages do not fit what is left of the budget waits for the next run (it comes first
        then); one that would not fit a whole run's budget keeps its most recent histories only
        (docs/trackers/jira.md#history)."""
        spent = 0
        client: _Jira | None = None
        fields = FieldIds()
        for external_id in todo.items:
            if spent >= todo.budget:
                return
            site, _, issue_id = external_id.rpartition("/")
            if site != self._site or issue_id_of({"id": issue_id}) is None:
                yield HistoryPage({}, complete=[external_id], requests=0)  # not this site's
                continue
            if client is None:
                client, fields = await self._history_client()
            raw = await self._issue_with_changelog(client, issue_id)
            spent += 1
            if raw is None:
                yield HistoryPage({}, complete=[external_id], requests=1)
                continue
            changelog = changelog_of(raw)
            histories = histories_of(changelog)
            whole = bool(self._server) or not changelog_cut(changelog)
            complete = whole
            requests = 1
            if not whole:
                total = changelog.get("total") if changelog is not None else None
                pages = -(-total // CHANGELOG_PAGE) if isinstance(total, int) else 1
                if 1 + pages > todo.budget:
                    complete = True  # never fits a run: the most recent histories will do
                    log_event(
                        log,
                        "jira_changelog_too_long",
                        logging.WARNING,
                        issue=issue_id,
                        histories=total,
                        budget=todo.budget,
                    )
                elif pages > todo.budget - spent:
                    yield HistoryPage({}, requests=1)  # the next run starts with it
                    return
                else:
                    read = await self._whole_changelog(client, issue_id, todo.budget - spent)
                    spent += read.requests
                    requests += read.requests
                    if read.histories is not None:
                        histories, whole = read.histories, True
                        complete = True
            await self._learn_statuses(client, [raw, {"changelog": {"histories": histories}}])
            entries = self._entries(raw, histories, fields, whole=whole)
            yield HistoryPage(
                {external_id: entries},
                complete=[external_id] if complete else [],
                requests=requests,
            )

    async def _history_client(self) -> tuple[_Jira, FieldIds]:
        """The run's client and fields (the item pages connected already): no request more."""
        client = self._client
        if client is None or self._server is None:
            client, _ = await self._connect()
        return client, await self._field_ids(client)

    async def _whole_changelog(self, client: _Jira, issue_id: str, budget: int) -> _Changelog:
        """Cloud's `GET issue/{id}/changelog` from the start to its last page, within `budget`
        requests (histories None when it did not reach the end)."""
        histories: list[Any] = []
        requests = 0
        while requests < budget:
            page = await self._changelog_page(client, issue_id, len(histories))
            requests += 1
            if page is None:
                break
            values = histories_of(page, "values")
            histories.extend(values)
            total = page.get("total")
            if (
                page.get("isLast") is True
                or not values
                or (isinstance(total, int) and len(histories) >= total)
            ):
                return _Changelog(histories, requests)
        return _Changelog(None, requests)

    async def _issue_with_changelog(self, client: _Jira, issue_id: str) -> Any:
        """`GET issue/{id}?fields=created,status,resolution&expand=changelog`; None when 404."""
        params = {"fields": "created,status,resolution", "expand": CHANGELOG}
        path = f"issue/{issue_id}"
        return await self._call(
            "reading an issue's changelog", lambda: _unless_gone(client, path, params)
        )

    async def _changelog_page(self, client: _Jira, issue_id: str, start: int) -> Any:
        """Cloud's `GET issue/{id}/changelog?startAt=&maxResults=` (oldest first)."""
        params = {"startAt": start, "maxResults": CHANGELOG_PAGE}
        return await self._call(
            "reading an issue's changelog",
            lambda: _unless_gone(client, f"issue/{issue_id}/changelog", params),
        )

    def _with_history(self, item: WorkItem, raw: Any, fields: FieldIds) -> WorkItem:
        """The item with the history its search answer carried; pending when that was cut."""
        changelog = changelog_of(raw)
        whole = not changelog_cut(changelog)
        entries = self._entries(raw, histories_of(changelog), fields, whole=whole)
        # the changelog stays out of external_data: its authors carry e-mail addresses
        kept = {k: v for k, v in item.raw.items() if k != "changelog"}
        return replace(item, raw=kept, history=entries, history_pending=not whole)

    def _entries(
        self, raw: Any, histories: list[Any], fields: FieldIds, *, whole: bool
    ) -> list[HistoryEntry]:
        f = raw.get("fields") if isinstance(raw, Mapping) else None
        f = f if isinstance(f, Mapping) else {}
        status = f.get("status")
        status = status if isinstance(status, Mapping) else {}
        return history_entries(
            histories,
            fields=fields.tracked(),
            status_of=self._status_of,
            whole=whole,
            created=parse_time(f.get("created")),
            current_status=status.get("name") if isinstance(status.get("name"), str) else None,
        )

    async def _learn_epics(self, run: _Run, raws: Sequence[Any]) -> None:
        """Know the issue id of every epic key these issues' Epic Link names (Data Center).
        Known without a request: epics read this run (this page's too), and keys resolved
        before (a file in cache_dir: Jira never gives a key to another issue, a moved or
        renamed one keeps answering to its old key). The others are asked in ONE search,
        `key in (…)` with `validateQuery=false` (a key since deleted is then left out instead of
        failing the query with a 400). A key that resolves to no issue (the epic was deleted,
        or this account cannot browse it) is remembered for the run, not on disk: its children
        land without a parent, a warning names it once, and the next run asks again. A search
        Jira refuses all the same (400) is a warning too, never a failed run: this run's
        children of those keys land without their parent, the next run asks again."""
        if run.fields.epic_link is None:
            return
        if not self._epic_cache_read:
            self._epic_cache_read = True
            self._epic_ids.update(self._cached_epics())
        learnt = self._know_epics(raws)
        wanted = epic_keys(raws, run.fields.epic_link) - self._epic_ids.keys()
        if not wanted:
            if learnt:
                self._cache_epics()
            return
        asked = sorted(wanted)
        jql = f"key in ({', '.join(jql_quote(k) for k in asked)})"
        window = self.config.max_result_window
        refused: list[str] = []

        def lookup() -> SearchPage | None:
            try:
                return server_page(
                    run.client, jql, None, len(asked), ["key"], window=window, validate=False
                )
            except JIRAError as exc:
                if exc.status_code != 400:
                    raise
                refused.append(_jira_said(exc))  # the parents wait; the items still land
                return None

        page = await self._call("resolving Epic Link keys", lookup)
        if page is not None:
            self._know_epics(page.issues, every=True)
        else:
            self._ctx.on_warning(
                "epic_link_lookup_refused",
                f"Jira refused the search for the epics' keys ({refused[0][:300]}); the"
                " children of those epics stay without a parent until they change",
            )
        gone = [k for k in asked if k not in self._epic_ids]
        for key in gone:
            self._epic_ids[key] = None
        if gone:
            self._ctx.on_warning(
                "epic_link_unresolved",
                f"Epic Link names issues that do not exist (any more): {', '.join(gone[:20])};"
                " their children stay without a parent",
            )
        self._cache_epics()

    def _know_epics(self, raws: Sequence[Any], *, every: bool = False) -> bool:
        """Remember the key -> id of these issues that are epics (of all of them with
        `every`: the answer of the key search); whether one was new."""
        learnt = False
        for raw in raws:
            key = raw.get("key") if isinstance(raw, Mapping) else None
            issue_id = issue_id_of(raw)
            if not isinstance(key, str) or issue_id is None:
                continue
            f = raw.get("fields")
            kind = item_type_of(f.get("issuetype"))[0] if isinstance(f, Mapping) else None
            if (every or kind == "epic") and self._epic_ids.get(key.upper()) != issue_id:
                self._epic_ids[key.upper()] = issue_id
                learnt = True
        return learnt

    def _epic_cache(self) -> Path:
        digest = hashlib.sha256(self._site.encode()).hexdigest()[:16]
        return self._ctx.cache_dir / f"epic-keys-{digest}.json"

    def _cached_epics(self) -> dict[str, str]:
        try:
            loaded = json.loads(self._epic_cache().read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(loaded, dict):
            return {}
        return {
            k: v
            for k, v in loaded.items()
            if epic_key_of(k) == k and isinstance(v, str) and issue_id_of({"id": v}) == v
        }

    def _cache_epics(self) -> None:
        known = {k: v for k, v in self._epic_ids.items() if v is not None}
        try:
            self._epic_cache().write_text(json.dumps(known))
        except OSError as exc:  # a cache only: the next run asks again
            log_event(log, "jira_epic_cache_unwritable", logging.WARNING, error=exc.strerror)

    def _status_of(self, name: str | None, resolution: str | None) -> Status:
        """A status name of a changelog through the connector's mapping (its category from the
        issues seen and `GET status`)."""
        category = self._categories.get((name or "").casefold())
        return jira_status(name, category, resolution, overrides=self.config.status_map)

    async def _learn_statuses(self, client: _Jira, raws: Sequence[Any]) -> None:
        """Know the category of every status these issues and their changelogs name: from the
        issues' own status, else `GET status`, read at most once a run."""
        wanted: set[str] = set()
        for raw in raws:
            f = raw.get("fields") if isinstance(raw, Mapping) else None
            status = f.get("status") if isinstance(f, Mapping) else None
            if isinstance(status, Mapping) and isinstance(status.get("name"), str):
                category = status.get("statusCategory")
                key = category.get("key") if isinstance(category, Mapping) else None
                self._categories[status["name"].casefold()] = key if isinstance(key, str) else None
            wanted |= status_names(histories_of(changelog_of(raw)))
        if self._statuses_listed or all(n.casefold() in self._categories for n in wanted):
            return
        cached = self._cached_statuses()
        for name, key in cached.items():
            self._categories.setdefault(name, key)
        if all(n.casefold() in self._categories for n in wanted):
            return
        self._statuses_listed = True
        listed = await self._call("listing statuses", lambda: client._get_json("status"))
        for status in listed if isinstance(listed, list) else []:
            if isinstance(status, Mapping) and isinstance(status.get("name"), str):
                category = status.get("statusCategory")
                key = category.get("key") if isinstance(category, Mapping) else None
                self._categories[status["name"].casefold()] = key if isinstance(key, str) else None
        for name in wanted:  # a status deleted since: no category (cached too, not asked again)
            self._categories.setdefault(name.casefold(), None)
        self._cache_statuses()

    def _status_cache(self) -> Path:
        digest = hashlib.sha256(self._site.encode()).hexdigest()[:16]
        return self._ctx.cache_dir / f"statuses-{digest}.json"

    def _cached_statuses(self) -> dict[str, str | None]:
        """The categories `GET status` gave within STATUS_CACHE_AGE (a no-op run that re-reads
        an issue's changelog asks nothing), else nothing."""
        path = self._status_cache()
        try:
            age = datetime.now(UTC).timestamp() - path.stat().st_mtime
            if age > STATUS_CACHE_AGE.total_seconds():
                return {}
            loaded = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(loaded, dict):
            return {}
        known = {k: v for k, v in loaded.items() if isinstance(k, str)}
        return {k: v if isinstance(v, str) else None for k, v in known.items()}

    def _cache_statuses(self) -> None:
        try:
            self._status_cache().write_text(json.dumps(self._categories))
        except OSError as exc:  # a cache only: the next run asks again
            log_event(log, "jira_status_cache_unwritable", logging.WARNING, error=exc.strerror)

    # -- run start ----------------------------------------------------------------------------
    async def _run_start(self) -> _Run:
        """serverInfo (clock, deployment), myself (time zone), the site's fields: once per run."""
        client, info = await self._connect()
        self._statuses_listed = False
        me = await self._call("reading the user's profile (myself)", client.myself)
        tz_name = me.get("timeZone") if isinstance(me, Mapping) else None
        tz = user_time_zone(tz_name)
        if tz is None:
            log_event(log, "jira_unknown_time_zone", logging.WARNING, time_zone=str(tz_name))
        fields = await self._field_ids(client)
        server_time = parse_time(info.get("serverTime"))
        if server_time is None:
            log_event(log, "jira_no_server_time", logging.WARNING, server_time="unreadable")
        return _Run(client, server_time, tz, fields)

    async def _connect(self) -> tuple[_Jira, Mapping[str, Any]]:
        """The client (its constructor reads serverInfo) and a fresh serverInfo, whose
        `deploymentType` says Cloud or Data Center ("Cloud" is Cloud, anything else is DC); the
        config's way of signing in must be one that deployment takes."""
        if self._client is None:
            if self._tokens is not None and self._cloud_id is None:
                self._cloud_id = await self._find_cloud_id()
            try:
                self._client = await self._call(CONNECTING, self._new_client)
            except CredentialsRejected:
                # Refused before serverInfo was read: when the site says, anonymously, that it
                # is the other deployment, that is the cause worth telling.
                self._check_sign_in(await self._anonymous_deployment())
                raise
            info = self._client.last_server_info
        else:
            info = await self._call("reading serverInfo", self._client.server_info)
        kind = info.get("deploymentType") if isinstance(info, Mapping) else None
        if not isinstance(kind, str) or not kind:
            raise FatalError(
                f"{self.config.url}: serverInfo has no deploymentType; check that url is a Jira "
                "site"
            )
        self._check_sign_in(kind)
        if self._server is None:
            log_event(log, "jira_deployment", deployment=kind, auth=self.config.auth)
        self._server = kind != "Cloud"
        return self._client, info

    def _check_sign_in(self, kind: str | None) -> None:
        """FatalError when the config signs in a way deployment `kind` does not take."""
        if kind is None:
            return
        server = kind != "Cloud"
        if server and self.config.auth == "oauth":
            raise FatalError(
                f"{self.config.url} answers as Jira Data Center/Server (deploymentType={kind!r})"
                " through Atlassian's API gateway: OAuth 2.0 (3LO) apps are Jira Cloud's; for"
                " Data Center give a personal access token in token instead of oauth"
            )
        if server and self.config.auth == "cloud":
            raise FatalError(
                f"{self.config.url} is Jira Data Center/Server (deploymentType={kind!r}), where "
                "email + API token do not sign in: give a personal access token in token "
                "without email, or username with the password in token"
            )
        if not server and self.config.auth not in ("cloud", "oauth"):
            raise FatalError(
                f"{self.config.url} is Jira Cloud: give email with an API token (personal "
                "access tokens and username + password are Jira Data Center's)"
            )

    async def _anonymous_deployment(self) -> str | None:
        """`deploymentType` of the anonymous `GET /rest/api/2/serverInfo` (both deployments
        answer it without credentials), or None when that cannot be read."""
        url = f"{self.config.url}/rest/api/2/serverInfo"

        def probe() -> str | None:
            try:
                answer = requests.get(
                    url, timeout=self.config.request_timeout, verify=self.config.tls_verify()
                )
                kind = answer.json().get("deploymentType") if answer.ok else None
            except (requests.RequestException, ValueError, AttributeError):
                return None
            return kind if isinstance(kind, str) and kind else None

        return await asyncio.to_thread(probe)

    async def _find_cloud_id(self) -> str:
        """The site's cloudId (config `oauth.cloud_id`, else accessible-resources): once per
        connector."""
        assert self._tokens is not None and self._token_client is not None
        assert self.config.oauth is not None
        oauth, client, url = self.config.oauth, self._token_client, self.config.url
        try:
            return await find_cloud_id(client, oauth, await self._tokens.bearer(), url)
        except TokenRefused:
            pass  # revoked or replaced: one newer token, one more try
        try:
            return await find_cloud_id(client, oauth, await self._tokens.bearer(refused=True), url)
        except TokenRefused as exc:
            raise FatalError(
                f"{exc} right after it was renewed: the grant may have been revoked; "
                + REAUTHORIZE.format(id=self._ctx.integration_id)
            ) from None

    def _new_client(self) -> _Jira:
        auth: dict[str, Any]
        server = self.config.url
        if self.config.oauth is not None:
            # 3LO: Bearer through the gateway, whose /ex/jira/{cloudId} prefix the SDK keeps
            assert self._cloud_id is not None and self._bearer is not None
            server = gateway_url(self.config.oauth, self._cloud_id)
            auth = {"token_auth": self._bearer.removeprefix("Bearer ")}
        elif self.config.auth == "pat":
            secret = self._ctx.bearer().get_secret_value()
            auth = {"token_auth": secret}  # Authorization: Bearer <PAT>
        else:
            secret = self._ctx.bearer().get_secret_value()
            user = self.config.email if self.config.auth == "cloud" else self.config.username
            auth = {"basic_auth": (user, secret)}
        try:
            return _Jira(
                server=server,
                options={
                    "rest_api_version": self.config.api_version,
                    "check_update": False,
                    "verify": self.config.tls_verify(),  # a corporate CA, or explicitly off
                },
                max_retries=0,  # the SDK would sleep up to 60 s per retry: connectors.retry does it
                timeout=self.config.request_timeout,
                logging=False,  # the SDK logs response bodies at error level; we report errors
                **auth,
            )
        except (KeyError, TypeError) as exc:  # serverInfo without versionNumbers
            raise ConnectorError(
                f"Jira's serverInfo has an unexpected shape ({type(exc).__name__}): check url"
            ) from None

    async def _field_ids(self, client: _Jira) -> FieldIds:
        """Resolve the configured custom fields (id or name) once per connector via GET /field."""
        if self._fields is not None:
            return self._fields
        listed = await self._call("listing fields", client.fields)
        if not isinstance(listed, list):
            raise RetriableError("Jira's field list is not a list")
        site_fields = [f for f in listed if isinstance(f, Mapping) and "id" in f]
        points = self._configured_field(site_fields, "story_points_field")
        self._fields = FieldIds(
            story_points=points,
            acceptance_criteria=self._configured_field(site_fields, "acceptance_criteria_field"),
            flagged=resolve_field(site_fields, "Flagged"),
            story_points_name=next(
                (str(f.get("name")) for f in site_fields if points and f["id"] == points), None
            ),
            sprint=field_by_schema(site_fields, SPRINT_SCHEMA, "Sprint"),
            # Cloud's `parent` covers epics' children too; Data Center's children name the epic
            epic_link=field_by_schema(site_fields, EPIC_LINK_SCHEMA, "Epic Link")
            if self._server
            else None,
            extra=self._extra_fields(site_fields),
        )
        # The SDK fetches GET /field again on its first search to translate field names; hand it
        # the same list so a run costs one request (the mapping it builds, from clauseNames).
        client._fields_cache_value = {
            str(name): str(f["id"]) for f in site_fields for name in f.get("clauseNames") or ()
        }
        return self._fields

    def _extra_fields(
        self, site_fields: Sequence[Mapping[str, Any]]
    ) -> tuple[tuple[str, str], ...]:
        """extra_fields as (the admin's name, field id). One that names no field of the site is
        a warning (`sync_warning`) and the sync goes on without it: a field renamed or deleted
        by a Jira admin must not stop it."""
        found: list[tuple[str, str]] = []
        for name in self.config.extra_fields:
            field_id = resolve_field(site_fields, name)
            if field_id is None:
                self._ctx.on_warning(
                    "extra_field_unknown",
                    f"extra_fields: {name[:100]!r} names no field of this site (by id or name as"
                    " GET /field lists it); it is left out of work_items.fields",
                )
            else:
                found.append((name, field_id))
        return tuple(found)

    def _configured_field(self, site_fields: Sequence[Mapping[str, Any]], key: str) -> str | None:
        wanted = getattr(self.config, key)
        if wanted is None:
            return None
        found = resolve_field(site_fields, wanted)
        if found is None:
            raise ConfigError(
                f"{key}: no field {wanted!r} on this Jira site; give its id (e.g. "
                "customfield_10016) or its exact name as listed by GET /rest/api/<version>/field"
            )
        return found

    # -- search -------------------------------------------------------------------------------
    async def _pages(
        self, client: _Jira, jql: str, fields: list[str], size: int
    ) -> AsyncIterator[list[Mapping[str, Any]]]:
        """One list of raw issues per search/jql page, following nextPageToken to the end (an
        empty page that promises more fails in `_search`: the sweep marks every issue it is not
        given as deleted)."""
        token: str | None = None
        seen: set[str] = set()
        while True:
            page = await self._search(client, jql, token, size, fields)
            yield page.issues
            token = page.next
            if token is None:
                return
            if token in seen:
                raise ConnectorError("Jira repeated a nextPageToken: stopping to avoid a loop")
            seen.add(token)

    async def _search(
        self,
        client: _Jira,
        jql: str,
        token: str | None,
        size: int,
        fields: list[str],
        expand: str | None = None,
    ) -> SearchPage:
        """One search page through the deployment's search (connectors.jira_search). Checked
        where the request is made, so a broken answer is a RetriableError that sends the same
        request again."""
        if self._server:
            window = self.config.max_result_window
            return await self._call(
                "searching issues",
                lambda: server_page(client, jql, token, size, fields, window=window, expand=expand),
            )
        return await self._call(
            "searching issues", lambda: cloud_page(client, jql, token, size, fields, expand)
        )

    async def _call(self, what: str, call: Callable[[], T]) -> T:
        """A blocking SDK call through the shared guard, its exceptions converted. With OAuth
        the access token is renewed here, before the call (the SDK has no refresh hook), and
        once more when Jira refuses it (revoked, or replaced by another replica's refresh)."""
        if self._tokens is None:
            return await self._sdk_call(what, call)
        self._authorize(await self._tokens.bearer())
        try:
            return await self._sdk_call(what, call)
        except CredentialsRejected:
            pass  # raised outside the handler: nothing chained
        self._authorize(await self._tokens.bearer(refused=True))
        try:
            return await self._sdk_call(what, call)
        except CredentialsRejected:
            pass
        raise CredentialsRejected(
            f"Jira refused the OAuth access token through Atlassian's gateway while {what} (401)"
            " right after it was renewed: the grant may have been revoked, or the app lost its"
            " Jira scopes; " + REAUTHORIZE.format(id=self._ctx.integration_id)
        )

    def _authorize(self, bearer: str) -> None:
        """Have the SDK client send `bearer` from now on (python-jira's TokenAuth holds a fixed
        string: a renewed token replaces it on the session)."""
        if bearer == self._bearer:
            return
        self._bearer = bearer
        if self._client is not None:
            self._client._session.auth = TokenAuth(bearer.removeprefix("Bearer "))

    async def _sdk_call(self, what: str, call: Callable[[], T]) -> T:
        return await call_sdk(
            self._ctx, what, call, partial(convert_error, what=what, auth=self.config.auth)
        )

    # -- mapping ------------------------------------------------------------------------------
    def _map(self, raw: Any, fields: FieldIds) -> WorkItem | Rejected:
        """The WorkItem of a search result, or a Rejected naming it and why when it cannot be
        mapped: one malformed issue is set aside on its own, the rest of its page still lands."""
        problem = shape_problem(raw)
        if problem is None:
            try:
                return map_issue(
                    raw,
                    site=self._site,
                    base_url=self.config.url,
                    fields=fields,
                    overrides=self.config.status_map,
                    epic_ids=self._epic_ids,
                )
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
                problem = f"{type(exc).__name__}: {exc}"  # a shape shape_problem does not know
        return self._rejection(raw, problem)

    def _rejection(self, raw: Any, reason: str) -> Rejected:
        """Name a result by its id when readable, else its key."""
        key = raw.get("key") if isinstance(raw, Mapping) else None
        key = key if isinstance(key, str) and key else None
        issue_id = issue_id_of(raw)
        if issue_id is not None:
            named = f"{self._site}/{issue_id}"
        else:
            named = key or f"{self._site}: an issue without id or key"
        return Rejected(named, reason[:200], key)

    def _issue_id(self, raw: Any) -> str:
        """The id of a listed issue. The sweep marks every row it is not given, so an issue whose
        id cannot be read fails the listing (named) rather than leave a gap."""
        issue_id = issue_id_of(raw)
        if issue_id is None:
            key = raw.get("key") if isinstance(raw, Mapping) else None
            raise RetriableError(
                f"Jira listed {key or 'an issue'} without a readable id "
                f"({_shown(raw.get('id') if isinstance(raw, Mapping) else raw)}); the deletion "
                "sweep needs every id, will retry"
            )
        return issue_id

    # -- remap (offline, `c9-sync remap`; docs/trackers/jira.md#remap) ------------------------
    def mapping_context(self) -> dict[str, Any] | None:
        """The custom field ids this connector resolved (`GET /field`) and the config values
        they were resolved from: what mapping a stored issue needs besides its JSON."""
        if self._fields is None:
            return None
        keys = ("story_points_field", "acceptance_criteria_field")
        return {
            "fields": {f: getattr(self._fields, f) for f in FieldIds.__dataclass_fields__},
            "resolved_from": {k: getattr(self.config, k) for k in keys},
        }

    @classmethod
    def map_stored(
        cls,
        config: JiraConfig,
        raw: Mapping[str, Any],
        *,
        scope: str,
        context: Mapping[str, Any],
    ) -> WorkItem:
        """A stored issue (its search result, changelog left out) mapped again with `config`
        through `map_issue`, the field ids from `mapping_context`: no request."""
        keys = ("story_points_field", "acceptance_criteria_field")
        if context.get("resolved_from") != {k: getattr(config, k) for k in keys}:
            raise ConfigError(
                "story_points_field / acceptance_criteria_field are not resolved to field ids"
                " for this config yet: run a sync of the integration first"
            )
        problem = shape_problem(raw)
        if problem is not None:
            raise ValueError(problem)
        item = map_issue(
            raw,
            site=site_of(config.url),
            base_url=config.url,
            fields=FieldIds(**context["fields"]),
            overrides=config.status_map,
        )
        return replace(item, scope=scope)

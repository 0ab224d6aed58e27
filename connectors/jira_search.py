"""The two search flavours of Jira, behind one page shape, and the paging state the keyset uses.

Jira Cloud searches through the enhanced search (`/search/jql`: `nextPageToken`, `isLast`);
Jira Data Center / Server has only the Server search (`/rest/api/2/search`: `startAt`,
`maxResults`, `total`). Both answer one `SearchPage`: its issues and what to send for the next
page (`next`: the Cloud token, or on DC the next `startAt` as text; None when the results end), so
the connector's keyset-by-minute walk (connectors/jira.py) is written once for both.

DC limits (docs/trackers/jira.md#jira-data-center): the server clamps `maxResults`
(`jira.search.views.default.max`, default 1000) and echoes the cap it applied, so the next
`startAt` is counted from the issues received, never from what was asked; and
`startAt + maxResults` past `jira.search.platform.max.result.window` (default 10,000) is a 500
"Search limit exceeded". The keyset restarts the search at every new minute, so `startAt` only
grows inside one minute of updates; a page is shrunk to end at the window, and a minute with more
issues than the window can hold is a FatalError saying what to change.

Broken promises are RetriableErrors (the same request is sent again), never the end of a walk: an
empty page that promises more (a token, or `startAt < total`), `isLast: false` without a token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from connectors.base import FatalError, RetriableError, utc
from connectors.http import parse_time

LONG_JQL = 1500  # longer queries go in a POST body rather than the URL
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One search answer: its raw issues and what to send for the next page (None: the last)."""

    issues: list[Any]
    next: str | None


class SearchClient(Protocol):
    """What the flavours call on the SDK client (connectors.jira._Jira)."""

    def enhanced_search_issues(self, *args: Any, **kwargs: Any) -> Any: ...
    def search_issues(self, *args: Any, **kwargs: Any) -> Any: ...
    def search_jql_post(
        self, jql: str, token: str | None, size: int, fields: Sequence[str], expand: str | None
    ) -> Any: ...
    def search_post(
        self,
        jql: str,
        start: int,
        size: int,
        fields: Sequence[str],
        expand: str | None,
        validate: bool = True,
    ) -> Any: ...


def cloud_page(
    client: SearchClient,
    jql: str,
    token: str | None,
    size: int,
    fields: Sequence[str],
    expand: str | None = None,
) -> SearchPage:
    """One page of Cloud's enhanced search (blocking); `expand="changelog"` adds each issue's
    changelog (its most recent histories: connectors/jira_history.py)."""
    if len(jql) > LONG_JQL:  # too long for a URL: a POST body, schema-clean
        body = client.search_jql_post(jql, token, size, fields, expand)
    else:
        body = client.enhanced_search_issues(
            jql,
            nextPageToken=token,
            maxResults=size,
            fields=list(fields),  # the SDK rewrites the list in place
            expand=expand,
            json_result=True,  # the raw page: no Resource objects, and it keeps isLast
        )
    if body is None:  # the SDK's @cloud_api answer for a non-Cloud server
        raise FatalError("this Jira is not Jira Cloud: enhanced search unavailable")
    issues = _issues(body)
    following = body.get("nextPageToken")
    if body.get("isLast") is False and not following:
        raise RetriableError(
            "Jira's search answer says isLast: false but has no nextPageToken to follow; will retry"
        )
    more = bool(following) and body.get("isLast") is not True
    if not issues and more:
        raise RetriableError(
            "Jira promised more issues (nextPageToken) after an empty page; will retry"
        )
    return SearchPage(issues, str(following) if more else None)


def server_page(
    client: SearchClient,
    jql: str,
    token: str | None,
    size: int,
    fields: Sequence[str],
    *,
    window: int,
    expand: str | None = None,
    validate: bool = True,
) -> SearchPage:
    """One page of the Server search, `GET|POST /rest/api/2/search` (blocking). `token` is the
    `startAt` to ask for; the page is shrunk so that it ends at the result `window`. `validate`
    False sends `validateQuery=false`: a value naming nothing (an issue key since deleted) is
    then no 400."""
    start = int(token) if token else 0
    room = window - start
    if room <= 0:
        raise FatalError(
            f"Jira's search reached its result window (startAt {start}, max_result_window "
            f"{window}) inside one minute of updates: more issues of this scope changed within "
            "one minute than Jira lets a search page through; raise "
            "jira.search.platform.max.result.window on the server and max_result_window in the "
            "config, or narrow the scope"
        )
    size = min(size, room)
    if len(jql) > LONG_JQL:
        body = client.search_post(jql, start, size, fields, expand, validate)
    else:
        body = client.search_issues(
            jql,
            startAt=start,
            maxResults=size,
            validate_query=validate,
            fields=list(fields),  # the SDK rewrites the list in place
            expand=expand,
            json_result=True,  # one raw page, with startAt/maxResults/total
        )
    issues = _issues(body)
    total = body.get("total")
    if not isinstance(total, int) or isinstance(total, bool):
        raise RetriableError("Jira's search answer has no total; will retry")
    end = start + len(issues)  # the server may clamp maxResults: count what came
    if end >= total:
        return SearchPage(issues, None)
    if not issues:
        raise RetriableError(
            f"Jira promised more issues (total {total}) after an empty page at startAt {start}; "
            "will retry"
        )
    return SearchPage(issues, str(end))


def _issues(body: object) -> list[Any]:
    if not isinstance(body, Mapping) or not isinstance(body.get("issues"), list):
        raise RetriableError("Jira's search answer has no issues list")
    return list(body["issues"])


# ---------------------------------------------------------------------------------------------
# Paging state (connectors/jira.py docstring: keyset by minute, minute groups)
# ---------------------------------------------------------------------------------------------
def minute_of(at: datetime) -> datetime:
    """The UTC minute `at` falls in (every zone in use today is offset by whole minutes, so it is
    also the minute of the user's zone that JQL literals name)."""
    return utc(at).replace(second=0, microsecond=0)


def updated_of(raw: object) -> datetime | None:
    """An issue's `fields.updated`, when it is there and readable."""
    fields = raw.get("fields") if isinstance(raw, Mapping) else None
    return parse_time(fields.get("updated")) if isinstance(fields, Mapping) else None


@dataclass(frozen=True, slots=True)
class Answer:
    """One search answer: its issues, each one's `updated` when readable, and what to send for
    the next page (None when the answer is the last)."""

    raws: list[Any]
    times: list[datetime | None]
    token: str | None

    @classmethod
    def of(cls, page: SearchPage) -> Answer:
        return cls(page.issues, [updated_of(raw) for raw in page.issues], page.next)

    @property
    def newest(self) -> datetime | None:
        known = [t for t in self.times if t is not None]
        return max(known) if known else None

    def beyond(self, minute: datetime | None) -> bool:
        """Whether it holds an issue of a later minute than `minute` (any dated one for None)."""
        return any(t is not None and (minute is None or t >= minute + MINUTE) for t in self.times)


def _identity(raw: object, position: int) -> str:
    """What tells one listed issue from another, even a malformed one."""
    if isinstance(raw, Mapping):
        for key in ("id", "key"):
            value = raw.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
                return f"{key}:{value}"
    return f"position:{position}"


def group_members(walk: list[Answer], minute: datetime | None) -> set[str]:
    """Every issue a walk listed before its first issue of a later minute than `minute`."""
    members: set[str] = set()
    position = 0
    for answer in walk:
        for raw, at in zip(answer.raws, answer.times, strict=True):
            if at is not None and (minute is None or at >= minute + MINUTE):
                return members
            members.add(_identity(raw, position))
            position += 1
    return members

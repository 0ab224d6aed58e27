"""Repository patterns of the GitHub connector: `acme/*` (or `acme/svc-*`) is every repository of
owner `acme` whose name matches and which the credential can read, listed again each run
(docs/trackers/github.md#repository-patterns).

Listings: an app lists its installation's repositories (`GET /installation/repositories`, with
`total_count`); a token lists the organization's (`GET /orgs/{org}/repos?type=all`) or, when the
owner is no organization, the user's (`GET /users/{u}/repos?type=owner`). A listing is complete or
an error, never cut short: a repository missing from it would be marked out of scope. So every
page is followed to the end of `Link`, a page that comes back short while `Link` promises more is
retried, and an app listing must add up to its `total_count`. Repositories with issues switched
off are left out (their issues answer 410).

Blocking functions: the connector runs them in worker threads (`connectors.http.call_sdk`).
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from typing import Any

from github import GithubException
from github.Requester import Requester

from connectors.base import FatalError, RetriableError
from connectors.http import header

_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="([^"]+)"')


def is_pattern(entry: str) -> bool:
    """Whether a `repos` entry names repositories by pattern (`*` or `?` in the name part)."""
    return any(c in entry.partition("/")[2] for c in "*?")


def matches(full_name: str, pattern: str) -> bool:
    """`owner/name` matches `owner/glob` (case-insensitive, as GitHub names are)."""
    owner, _, name = full_name.casefold().partition("/")
    want_owner, _, glob = pattern.casefold().partition("/")
    return owner == want_owner and fnmatchcase(name, glob)


def _next(headers: dict[str, Any] | None) -> str | None:
    for url, rel in _LINK.findall(header(headers, "link") or ""):
        if rel == "next":
            return str(url)
    return None


def _names(repos: Any, what: str) -> list[str]:
    """The full names of a listing page's repositories with issues on, checked for shape."""
    if not isinstance(repos, list) or not all(isinstance(r, dict) for r in repos):
        raise RetriableError(f"GitHub sent a {what} that is not a list of repositories; will retry")
    names = []
    for repo in repos:
        name = repo.get("full_name")
        if not isinstance(name, str) or "/" not in name:
            raise RetriableError(f"GitHub listed a repository without full_name in {what}")
        if repo.get("has_issues") is not False:
            names.append(name)
    return names


def _pages(
    requester: Requester, url: str, params: dict[str, Any], per_page: int, what: str
) -> list[tuple[dict[str, Any], Any]]:
    """Every page of a list endpoint (headers, body), following `Link: next` to its end."""
    pages = []
    next_url: str | None = url
    query: dict[str, Any] = {**params, "per_page": per_page}
    while next_url is not None:
        headers, body = requester.requestJsonAndCheck("GET", next_url, parameters=query)
        items = body.get("repositories") if isinstance(body, dict) else body
        more = _next(headers)
        if more is not None and (not isinstance(items, list) or len(items) < per_page):
            raise RetriableError(
                f"GitHub promised a next page after a short page of {what}; will retry"
            )
        pages.append((headers, body))
        next_url, query = more, {}  # the next URL carries every parameter
    return pages


def installation_repos(requester: Requester, per_page: int) -> list[str]:
    """Every repository an installation token can read: `GET /installation/repositories`, all
    pages, adding up to the `total_count` GitHub announces."""
    what = "the installation's repositories"
    names: list[str] = []
    listed = 0
    total: Any = None
    for _, body in _pages(requester, "/installation/repositories", {}, per_page, what):
        if not isinstance(body, dict) or not isinstance(body.get("total_count"), int):
            raise RetriableError(f"GitHub sent {what} without total_count; will retry")
        total = body["total_count"]
        repos = body.get("repositories")
        names.extend(_names(repos, what))
        listed += len(repos) if isinstance(repos, list) else 0
    if total is not None and listed != total:
        raise RetriableError(
            f"GitHub listed {listed} of the {total} repositories of the installation (it changed "
            "while being listed?); will retry"
        )
    return names


def owner_repos(requester: Requester, owner: str, per_page: int) -> list[str]:
    """Every repository of `owner` a token can read: the organization's, else (404: not an
    organization) the user's own."""
    what = f"the repositories of {owner}"
    try:
        pages = _pages(requester, f"/orgs/{owner}/repos", {"type": "all"}, per_page, what)
    except GithubException as exc:
        if exc.status != 404:
            raise
        try:
            pages = _pages(requester, f"/users/{owner}/repos", {"type": "owner"}, per_page, what)
        except GithubException as again:
            if again.status != 404:
                raise
            raise FatalError(
                f"repos: {owner}/*: no organization or user {owner!r} is visible to this token "
                "(404); check the owner's name in `repos`"
            ) from None
    return [name for _, body in pages for name in _names(body, what)]

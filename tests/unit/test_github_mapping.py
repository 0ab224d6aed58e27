"""Pure mapping and error translation of the GitHub connector."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from github import GithubException

from connectors.base import FatalError, RetriableError, Status
from connectors.github import (
    GitHubConfig,
    RepositoryLost,
    RepositoryNotFound,
    default_status,
    error_for,
    error_for_status,
    issue_list,
    item_status,
    map_issue,
    next_link,
    priority_of,
    rate_limit_wait,
    status_names,
    story_points_of,
)

NOW = 1_746_000_000.0


def issue(**fields: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": 101,
        "number": 42,
        "title": "Crash on save",
        "state": "open",
        "state_reason": None,
        "labels": [],
        "assignees": [],
        "assignee": None,
        "html_url": "https://github.com/o/r/issues/42",
        "created_at": "2025-04-30T09:00:00Z",
        "updated_at": "2025-05-01T12:34:56Z",
        "closed_at": None,
    }
    labels = fields.pop("labels", [])
    raw["labels"] = [{"id": n, "name": name} for n, name in enumerate(labels)]
    raw.update(fields)
    return raw


def pr(merged_at: str | None = None, **fields: Any) -> dict[str, Any]:
    return issue(
        html_url="https://github.com/o/r/pull/42",
        pull_request={"url": "x", "merged_at": merged_at},
        draft=fields.pop("draft", False),
        **fields,
    )


def legacy_pr(**fields: Any) -> dict[str, Any]:
    """A PR list item as older GitHub Enterprise Server answers: `pull_request` without
    `merged_at` (and no `state_reason` unless given)."""
    raw = pr(**fields)
    del raw["pull_request"]["merged_at"]
    if "state_reason" not in fields:
        del raw["state_reason"]
    return raw


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Pull requests
        (pr(merged_at="2025-05-01T12:00:00Z", state="closed"), Status.COMPLETED),
        (pr(state="closed"), Status.CANCELLED),
        (pr(draft=True), Status.IN_PROGRESS),
        (pr(), Status.PR_READY),
        (pr(labels=["blocked"]), Status.PR_READY),  # PR state wins over issue labels
        # No `merged_at` key (optional in GitHub's OpenAPI `issue` schema; older GHES): a
        # closed PR is cancelled only when state_reason says so, never for being merged.
        (legacy_pr(state="closed"), Status.COMPLETED),
        (legacy_pr(state="closed", state_reason="completed"), Status.COMPLETED),
        (legacy_pr(state="closed", state_reason="not_planned"), Status.CANCELLED),
        (legacy_pr(state="closed", state_reason="duplicate"), Status.CANCELLED),
        (legacy_pr(), Status.PR_READY),
        (legacy_pr(draft=True), Status.IN_PROGRESS),
        # Open issues
        (issue(labels=["blocked"]), Status.BLOCKED),
        (issue(labels=["status: Blocked"], assignees=[{"login": "u"}]), Status.BLOCKED),
        (issue(assignees=[{"login": "u"}]), Status.IN_PROGRESS),
        (issue(labels=["In Progress"]), Status.IN_PROGRESS),
        (issue(labels=["in-progress"]), Status.IN_PROGRESS),
        (issue(labels=["bug"]), Status.QUEUED),
        (issue(state_reason="reopened"), Status.QUEUED),
        (issue(), Status.QUEUED),
        # Closed issues
        (issue(state="closed", state_reason="completed"), Status.COMPLETED),
        (issue(state="closed", state_reason=None), Status.COMPLETED),
        (issue(state="closed", state_reason="not_planned"), Status.CANCELLED),
        (issue(state="closed", state_reason="duplicate"), Status.CANCELLED),
        (issue(state="closed", labels=["blocked"]), Status.COMPLETED),
    ],
)
def test_default_status(raw: dict[str, Any], expected: Status) -> None:
    assert default_status(raw) is expected


def test_status_names() -> None:
    assert status_names(issue(labels=["bug", "needs review"])) == ["bug", "needs review", "open"]
    assert status_names(issue(state="closed", state_reason="not_planned")) == [
        "not_planned",
        "closed",
    ]
    assert status_names(issue(state="closed")) == ["completed", "closed"]
    assert status_names(pr(draft=True, labels=["x"])) == ["x", "pr_draft"]
    assert status_names(pr()) == ["pr_open"]
    assert status_names(pr(merged_at="2025-05-01T12:00:00Z", state="closed")) == ["pr_merged"]
    assert status_names(pr(state="closed")) == ["pr_closed"]
    assert status_names(legacy_pr(state="closed")) == ["pr_closed_unknown"]
    assert status_names(legacy_pr(state="closed", state_reason="not_planned")) == ["pr_not_planned"]
    assert status_names(legacy_pr()) == ["pr_open"]


def test_status_map_overrides_first_name_found() -> None:
    overrides = {"needs review": Status.PR_READY, "open": Status.BLOCKED}
    assert item_status(issue(labels=["needs review"]), overrides) is Status.PR_READY
    assert item_status(issue(labels=["bug"]), overrides) is Status.BLOCKED
    assert item_status(issue(state="closed"), overrides) is Status.COMPLETED
    closed = {"closed": Status.CANCELLED}
    assert item_status(issue(state="closed"), closed) is Status.CANCELLED
    assert item_status(pr(), {"pr_open": Status.IN_PROGRESS}) is Status.IN_PROGRESS


def test_priority_and_points() -> None:
    levels = {"p1": 3, "bug": 1, "p0": 4}
    assert priority_of(issue(labels=["bug", "P1"]), levels) == 3
    assert priority_of(issue(labels=["docs"]), levels) == 0
    assert priority_of(issue(labels=["P0", "bug"]), levels) == 4
    assert story_points_of(issue(labels=["points: 3"])) == 3
    assert story_points_of(issue(labels=["SP:5"])) == 5
    assert story_points_of(issue(labels=["estimate=2.6"])) == 3
    assert story_points_of(issue(labels=["story points: 8"])) == 8
    assert story_points_of(issue(labels=["pointless"])) is None


def test_map_issue_fields() -> None:
    config = GitHubConfig(repos=["o/r"], status_map={"not_planned": "completed"})
    item = map_issue(
        issue(state="closed", state_reason="not_planned", closed_at="2025-05-01T12:34:56Z"),
        repo="o/r",
        prefix="",
        config=config,
    )
    assert item.external_id == "101"
    assert item.external_key == "o/r#42"
    assert item.status is Status.COMPLETED
    assert item.completed_at == datetime(2025, 5, 1, 12, 34, 56, tzinfo=UTC)
    assert item.updated_at == datetime(2025, 5, 1, 12, 34, 56, tzinfo=UTC)
    assert item.started_at is None
    assert item.scope == "o/r"
    ghe = map_issue(pr(), repo="o/r", prefix="ghe.example.com/", config=config)
    assert ghe.external_id == "ghe.example.com/101"
    assert ghe.started_at == datetime(2025, 4, 30, 9, tzinfo=UTC)
    assert ghe.completed_at is None


def test_map_issue_rejects_items_without_id_or_time() -> None:
    config = GitHubConfig(repos=["o/r"])
    with pytest.raises(RetriableError):
        map_issue(issue(updated_at=None), repo="o/r", prefix="", config=config)
    with pytest.raises(RetriableError):
        map_issue(issue(id="x"), repo="o/r", prefix="", config=config)


@pytest.mark.parametrize(
    ("status", "headers", "message", "expected"),
    [
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 30)}, "", 31.0),
        (429, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) - 5)}, "", 1.0),
        (403, {"Retry-After": "7", "x-ratelimit-remaining": "0"}, "", 7.0),
        (429, {"retry-after": "2"}, "", 2.0),
        (403, {}, "You have exceeded a secondary rate limit", 60.0),
        (429, {}, "", 60.0),
        (403, {"x-ratelimit-remaining": "12"}, "Resource not accessible by integration", None),
        (500, {"retry-after": "1"}, "", None),
    ],
)
def test_rate_limit_wait(
    status: int, headers: dict[str, str], message: str, expected: float | None
) -> None:
    assert rate_limit_wait(status, headers, message, NOW) == expected


def test_error_for_status() -> None:
    unauthorized = error_for_status(401, {}, "Bad credentials", "o/r", NOW)
    assert isinstance(unauthorized, FatalError) and "401" in str(unauthorized)
    missing = error_for_status(404, {}, "Not Found", "o/nope", NOW)
    assert isinstance(missing, RepositoryNotFound) and "'o/nope'" in str(missing)
    limited = error_for_status(403, {"retry-after": "3"}, "", "o/r", NOW)
    assert isinstance(limited, RetriableError) and limited.retry_after == 3.0
    forbidden = error_for_status(403, {}, "Must have admin rights", "o/r", NOW)
    assert isinstance(forbidden, RepositoryLost) and "admin rights" in str(forbidden)
    assert forbidden.repo == "o/r" and "403" in forbidden.reason
    assert not isinstance(error_for_status(403, {}, "Forbidden", None, NOW), RepositoryLost)
    assert isinstance(error_for_status(502, {}, "", "o/r", NOW), RetriableError)
    assert isinstance(error_for_status(410, {}, "Issues are disabled", "o/r", NOW), FatalError)
    assert isinstance(error_for_status(422, {}, "Validation Failed", "o/r", NOW), FatalError)


def test_error_for_exceptions() -> None:
    sdk = GithubException(503, {"message": "unavailable"}, {})
    assert isinstance(error_for(sdk, repo="o/r", timeout=15), RetriableError)
    for exc in (
        requests.exceptions.RetryError("too many 500"),
        requests.exceptions.ReadTimeout("read timed out"),
        requests.exceptions.ConnectionError("refused"),
        json.JSONDecodeError("Expecting value", "{x", 1),
    ):
        assert isinstance(error_for(exc, repo="o/r", timeout=15), RetriableError), exc
    assert error_for(KeyError("bug"), repo="o/r", timeout=15) is None


def test_next_link() -> None:
    header = (
        '<http://h:1/repos/o/r/issues?state=all&page=2>; rel="next", '
        '<http://h:1/repos/o/r/issues?state=all&page=9>; rel="last"'
    )
    assert next_link({"link": header}) == "http://h:1/repos/o/r/issues?state=all&page=2"
    assert next_link({"Link": header.split(", ")[1]}) is None
    assert next_link({}) is None


def test_issue_list_shape() -> None:
    assert issue_list([{"id": 1}]) == [{"id": 1}]
    assert issue_list([]) == []
    for bad in ({"message": "x"}, [1], "text", None):
        with pytest.raises(RetriableError):
            issue_list(bad)

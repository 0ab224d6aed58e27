"""The GitHub connector against the GitHub sandbox, with the real PyGithub client."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from connectors.base import (
    ConnectorContext,
    FatalError,
    Page,
    Person,
    RetriableError,
    Status,
)
from connectors.github import GitHubConfig, GitHubConnector
from connectors.sandbox.github import GitHubSandbox
from tests.conformance import checker
from tests.integration.connectors.contract import (
    PLANTED_TOKEN,
    T0,
    ConnectorContract,
    ModelTraits,
    collect,
    items_of,
)

REPO = "octo/alpha"
OTHER = "octo/beta"
PER_ISSUE = re.compile(r"/repos/[^/]+/[^/]+/issues/\d+$")


class GitHubHarness:
    """The contract's `Harness`: a started sandbox and connectors pointed at it."""

    page_size = 4
    model = ModelTraits(sprint_starts=False)  # a milestone has a due date, no start

    def __init__(self, sandbox: GitHubSandbox, tmp_path: Path) -> None:
        self.sandbox = sandbox
        self.tmp_path = tmp_path
        self.waits: list[tuple[str, float]] = []
        self.milestones: dict[str, str] = {}  # the connector's sprint id -> milestone title

    def external_id(self, issue_id: int) -> str:
        # Not api.github.com, so ids are qualified by the API host.
        return f"127.0.0.1:{self.sandbox.port}/{issue_id}"

    def seed(self, count: int, *, start: datetime, step: timedelta) -> list[str]:
        return [
            self.external_id(
                self.sandbox.add_issue(REPO, f"Issue {n}", updated_at=start + step * n).id
            )
            for n in range(count)
        ]

    def update(
        self, external_id: str, *, at: datetime, title: str | None = None, done: bool | None = None
    ) -> None:
        changes: dict[str, Any] = {}
        if title is not None:
            changes["title"] = title
        if done is not None:
            changes["state"] = "closed" if done else "open"
        self.sandbox.update(self.issue_id(external_id), at=at, **changes)

    def issue_id(self, external_id: str) -> int:
        return int(external_id.rsplit("/", 1)[1])

    def add_sprint(self, name: str, state: str) -> str:
        now = datetime.now(UTC)
        due = now - timedelta(days=14) if state == "closed" else now + timedelta(days=7)
        milestone = self.sandbox.add_milestone(
            REPO, name, state="closed" if state == "closed" else "open", due_on=due
        )
        sprint = f"127.0.0.1:{self.sandbox.port}/milestones/{milestone.id}"
        self.milestones[sprint] = name
        return sprint

    def add_epic(self, title: str, *, at: datetime) -> str:
        return self.external_id(self.sandbox.add_issue(REPO, title, updated_at=at, type="Epic").id)

    def add_child(
        self,
        parent: str,
        *,
        at: datetime,
        kind: str,
        sprint: str,
        labels: Sequence[str],
        assignee: str | None,
    ) -> str:
        if assignee is not None:
            self.sandbox.public_emails[assignee] = f"{assignee}@example.com"
        issue = self.sandbox.add_issue(
            REPO, f"A {kind}", updated_at=at, type=kind.title(), labels=labels,
            assignees=[assignee] if assignee else [], milestone=self.milestones[sprint],
            parent=self.issue_id(parent),
        )  # fmt: skip
        return self.external_id(issue.id)

    def move(self, child: str, *, at: datetime, parent: str, sprint: str) -> None:
        self.sandbox.set_parent(self.issue_id(child), self.issue_id(parent), at=at)
        self.sandbox.update(self.issue_id(child), at=at, milestone=self.milestones[sprint])

    def person(self, handle: str) -> Person:
        return Person(handle, str(self.sandbox._person(handle)["id"]))

    def listings(self) -> int:
        # (Enterprise Server's paths have the /api/v3 prefix)
        return len([r for r in self.sandbox.requests if r.path.endswith(f"/repos/{REPO}/issues")])

    def connector(self, *, token: str = PLANTED_TOKEN, **config: Any) -> GitHubConnector:
        settings: dict[str, Any] = {
            "repos": [REPO],
            "base_url": self.sandbox.url,
            "per_page": self.page_size,
            "seconds_between_requests": 0,
            "timeout": 1,
            **config,
        }
        ctx = ConnectorContext(
            integration_id="test",
            token=SecretStr(token),
            cache_dir=self.tmp_path,
            max_retries=3,
            sleep_cap=5.0,
            on_wait=lambda what, seconds: self.waits.append((what, seconds)),
        )
        return GitHubConnector(GitHubConfig(**settings), ctx)


#: GitHub's published REST API, for the endpoints the connector calls
#: (tests/conformance/github.json): every request of every test here is checked against it.
GITHUB_API = checker.load("github")


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[GitHubHarness]:
    """A harness whose sandbox's request log must conform to the published API when the test
    ends, and whose successful answers must have the shapes the description gives them."""
    answers: list[checker.Violation] = []
    sandbox = GitHubSandbox(token=PLANTED_TOKEN, repos=[REPO])
    sandbox.timeout_stall = 2.0
    sandbox.response_hook = lambda request, response: answers.extend(
        checker.check_response(GITHUB_API, request, response.status, response.body)
    )
    sandbox.start()
    try:
        yield GitHubHarness(sandbox, tmp_path)
    finally:
        sandbox.stop()
    checker.assert_conforms(GITHUB_API, sandbox.requests)
    assert not answers, "sandbox answers off the published shape:\n" + "\n".join(
        str(v) for v in answers[:20]
    )


@pytest.fixture
def off_spec_harness(tmp_path: Path) -> Iterator[GitHubHarness]:
    """For tests that send, or make the sandbox answer, what the published API does not allow
    on purpose (malformed items, per-issue GETs): not checked."""
    sandbox = GitHubSandbox(token=PLANTED_TOKEN, repos=[REPO])
    sandbox.timeout_stall = 2.0
    sandbox.start()
    try:
        yield GitHubHarness(sandbox, tmp_path)
    finally:
        sandbox.stop()


class TestGitHubContract(ConnectorContract):
    pass


def _issue_requests(sandbox: GitHubSandbox) -> list[str]:
    return [r.url for r in sandbox.requests_to("/issues")]


def _seed_prs(sandbox: GitHubSandbox) -> dict[str, int]:
    """One plain issue and one PR in each PR state; returns title -> id."""
    at = T0
    made = {
        "plain": sandbox.add_issue(REPO, "plain", updated_at=at),
        "open pr": sandbox.add_issue(
            REPO, "open pr", updated_at=at + timedelta(minutes=1), is_pr=True
        ),
        "draft pr": sandbox.add_issue(
            REPO, "draft pr", updated_at=at + timedelta(minutes=2), is_pr=True, draft=True
        ),
        "merged pr": sandbox.add_issue(
            REPO,
            "merged pr",
            updated_at=at + timedelta(minutes=3),
            is_pr=True,
            state="closed",
            merged_at=at + timedelta(minutes=3),
        ),
        "closed pr": sandbox.add_issue(
            REPO, "closed pr", updated_at=at + timedelta(minutes=4), is_pr=True, state="closed"
        ),
    }
    return {title: issue.id for title, issue in made.items()}


async def test_pull_requests_are_left_out_by_default(harness: GitHubHarness) -> None:
    _seed_prs(harness.sandbox)
    connector = harness.connector()
    try:
        got = items_of(await collect(connector))
        ids = [i async for batch in connector.all_ids() for i in batch]
    finally:
        await connector.aclose()
    assert [i.title for i in got] == ["plain"]
    assert len(ids) == 1


async def test_pull_requests_on_request_with_their_statuses(harness: GitHubHarness) -> None:
    ids = _seed_prs(harness.sandbox)
    connector = harness.connector(include_pull_requests=True)
    try:
        got = {i.title: i for i in items_of(await collect(connector))}
        all_ids = [i async for batch in connector.all_ids() for i in batch]
    finally:
        await connector.aclose()
    assert {t: i.status for t, i in got.items()} == {
        "plain": Status.QUEUED,
        "open pr": Status.PR_READY,
        "draft pr": Status.IN_PROGRESS,
        "merged pr": Status.COMPLETED,
        "closed pr": Status.CANCELLED,
    }
    assert sorted(all_ids) == sorted(harness.external_id(n) for n in ids.values())
    merged = got["merged pr"]
    assert merged.completed_at == T0 + timedelta(minutes=3)
    assert merged.external_url is not None and "/pull/" in merged.external_url
    assert got["open pr"].started_at == T0 + timedelta(minutes=1)
    assert got["plain"].started_at is None


async def test_a_merged_pull_request_without_merged_at_is_not_cancelled(
    harness: GitHubHarness,
) -> None:
    """Older GitHub Enterprise Server lists PRs without `pull_request.merged_at` (optional in
    GitHub's OpenAPI `issue` schema): a merged PR must not map to cancelled; a closed one is
    cancelled only when `state_reason` says so."""
    ids = _seed_prs(harness.sandbox)
    harness.sandbox.update(
        ids["closed pr"], at=T0 + timedelta(minutes=5), state_reason="not_planned"
    )
    harness.sandbox.legacy_pull_requests = True
    connector = harness.connector(include_pull_requests=True)
    try:
        pages = await collect(connector)
    finally:
        await connector.aclose()
    got = {i.title: i for i in items_of(pages)}
    assert all("merged_at" not in i.raw["pull_request"] for i in got.values() if "pr" in i.title)
    assert {t: i.status for t, i in got.items()} == {
        "plain": Status.QUEUED,
        "open pr": Status.PR_READY,
        "draft pr": Status.IN_PROGRESS,
        "merged pr": Status.COMPLETED,
        "closed pr": Status.CANCELLED,
    }
    assert got["merged pr"].completed_at == T0 + timedelta(minutes=3)  # its closed_at


async def test_no_request_per_issue(harness: GitHubHarness) -> None:
    """Items are read from the list JSON only: `issue.pull_request` / `issue.raw_data` on a
    list item would each cost a GET /repos/o/r/issues/N, and the sandbox logs those."""
    _seed_prs(harness.sandbox)
    harness.seed(9, start=T0 + timedelta(hours=1), step=timedelta(minutes=1))
    for include in (False, True):
        connector = harness.connector(include_pull_requests=include)
        try:
            harness.sandbox.clear_requests()
            pages = await collect(connector)
            [i async for batch in connector.all_ids() for i in batch]
        finally:
            await connector.aclose()
        urls = [r.path for r in harness.sandbox.requests]
        assert not [u for u in urls if PER_ISSUE.search(u)], urls
        # 14 items at 4 a page: 5 list requests for changes (each after the first starts again
        # at the last second read, which it reads once more), 4 for all_ids, nothing else.
        assert len([p for p in pages if p.items or p.checkpoint]) == 5
        assert len(urls) == 9, urls


async def test_sandbox_would_catch_a_per_issue_get(off_spec_harness: GitHubHarness) -> None:
    """Guard for the test above: reading the PyGithub property does hit the sandbox."""
    harness = off_spec_harness
    from github import Auth, Github

    harness.sandbox.add_issue(REPO, "plain", updated_at=T0)
    gh = Github(
        base_url=harness.sandbox.url,
        auth=Auth.Token(PLANTED_TOKEN),
        retry=None,
        seconds_between_requests=None,
    )
    try:
        issue = next(iter(gh.get_repo(REPO).get_issues(state="all")))
        harness.sandbox.clear_requests()
        assert issue.pull_request is None
    finally:
        gh.close()
    assert [r.path for r in harness.sandbox.requests] == [f"/repos/{REPO}/issues/1"]


async def test_primary_rate_limit_waits_until_reset(harness: GitHubHarness) -> None:
    harness.seed(3, start=T0, step=timedelta(minutes=1))
    connector = harness.connector()
    try:
        harness.sandbox.fail_next("403_rate_limit", retry_after=1, path_contains="/issues")
        started = time.monotonic()
        got = items_of(await collect(connector))
        elapsed = time.monotonic() - started
    finally:
        await connector.aclose()
    assert len(got) == 3
    assert elapsed >= 1.0, "must wait until x-ratelimit-reset"
    assert len(harness.waits) == 1 and 1.0 <= harness.waits[0][1] <= 3.0, harness.waits
    assert len(_issue_requests(harness.sandbox)) == 2  # the limited one and the retry


async def test_primary_rate_limit_far_away_is_not_slept_in_a_thread(
    harness: GitHubHarness,
) -> None:
    harness.seed(1, start=T0, step=timedelta(minutes=1))
    connector = harness.connector()
    try:
        harness.sandbox.fail_next("403_rate_limit", retry_after=3600)
        started = time.monotonic()
        with pytest.raises(RetriableError) as info:
            await collect(connector)
    finally:
        await connector.aclose()
    assert time.monotonic() - started < 3
    assert info.value.retry_after is not None and 3500 < info.value.retry_after <= 3602


async def test_secondary_rate_limit_honours_retry_after(harness: GitHubHarness) -> None:
    harness.seed(2, start=T0, step=timedelta(minutes=1))
    connector = harness.connector()
    try:
        harness.sandbox.fail_next(
            "403_rate_limit",
            retry_after=1,
            body={"message": "You have exceeded a secondary rate limit. Please wait."},
        )
        started = time.monotonic()
        got = items_of(await collect(connector))
    finally:
        await connector.aclose()
    assert len(got) == 2
    assert time.monotonic() - started >= 0.9
    assert harness.waits and harness.waits[0][1] == 1.0


async def test_plain_403_loses_the_repository_and_is_not_retried(harness: GitHubHarness) -> None:
    harness.seed(1, start=T0, step=timedelta(minutes=1))
    harness.sandbox.add_issue(OTHER, "other", updated_at=T0)
    connector = harness.connector(repos=[REPO, OTHER])
    try:
        harness.sandbox.fail_next(
            "403_rate_limit",
            retry_after=None,
            body={"message": "Resource not accessible by personal access token"},
        )
        pages = await collect(connector)
    finally:
        await connector.aclose()
    [lost] = [p.lost for p in pages if p.lost]
    assert list(lost) == [REPO] and re.search(r"403.*Resource not accessible", lost[REPO])
    assert [i.title for i in items_of(pages)] == ["other"]  # the other repository goes on
    assert len(harness.sandbox.requests_to(f"/repos/{REPO}/")) == 1, "a 403 is not retried"


async def test_401_message_says_what_to_do(harness: GitHubHarness) -> None:
    connector = harness.connector(token="wrong-token")
    try:
        with pytest.raises(FatalError, match=r"rejected the token \(401\).*token_env"):
            await connector.check()
    finally:
        await connector.aclose()


async def test_two_repositories_two_scopes(harness: GitHubHarness) -> None:
    for n in range(6):
        harness.sandbox.add_issue(REPO, f"a{n}", updated_at=T0 + timedelta(minutes=n))
        harness.sandbox.add_issue(OTHER, f"b{n}", updated_at=T0 + timedelta(hours=2, minutes=n))
    connector = harness.connector(repos=[REPO, OTHER])
    try:
        pages = await collect(connector)
        # Incremental: alpha from its checkpoint, beta missing from `since` -> read in full.
        harness.sandbox.clear_requests()
        again = items_of(await collect(connector, {REPO: T0 + timedelta(minutes=5)}))
    finally:
        await connector.aclose()
    final = {s: t for p in pages for s, t in p.checkpoint.items()}
    assert final == {REPO: T0 + timedelta(minutes=5), OTHER: T0 + timedelta(hours=2, minutes=5)}
    for page in pages:  # a page belongs to one repository and checkpoints only that one
        assert len(page.checkpoint) == 1
        assert {i.scope for i in page.items} <= set(page.checkpoint)
    by_scope = {i.scope for i in items_of(pages)}
    assert by_scope == {REPO, OTHER}
    assert sorted(i.title for i in again) == ["a5", "b0", "b1", "b2", "b3", "b4", "b5"]
    keys = {i.external_key for i in items_of(pages)}
    assert f"{OTHER}#1" in keys and f"{REPO}#6" in keys
    since_sent = [r.query.get("since") for r in harness.sandbox.requests_to("/issues")]
    # alpha from its checkpoint (one request: a5 only); beta from the very start
    assert since_sent[0] == ["2025-05-01T08:05:00Z"] and since_sent[1] is None


async def test_missing_repository_fails_check_and_is_lost_while_syncing(
    harness: GitHubHarness,
) -> None:
    """check() names every missing repository (an admin setting up); changes() reports each as
    lost and goes on with the others (the worker fails the run naming them)."""
    [first] = harness.seed(1, start=T0, step=timedelta(minutes=1))
    connector = harness.connector(repos=["octo/nope", REPO, "ghost/gone"])
    try:
        with pytest.raises(FatalError) as checked:
            await connector.check()
        pages = await collect(connector)
    finally:
        await connector.aclose()
    assert "octo/nope" in str(checked.value) and "ghost/gone" in str(checked.value)
    assert REPO + "," not in str(checked.value)
    lost = [p.lost for p in pages if p.lost]
    assert [list(x) for x in lost] == [["octo/nope"], ["ghost/gone"]]
    assert all("404" in why for x in lost for why in x.values())
    assert [p for p in pages if p.lost and (p.items or p.checkpoint)] == []
    assert [i.external_id for i in items_of(pages)] == [first]


async def test_check_reads_each_repository(harness: GitHubHarness) -> None:
    harness.sandbox.add_repo(OTHER)
    connector = harness.connector(repos=[REPO, OTHER])
    try:
        await connector.check()
    finally:
        await connector.aclose()
    assert [r.path for r in harness.sandbox.requests] == [f"/repos/{REPO}", f"/repos/{OTHER}"]


async def test_since_is_sent_as_utc_z(harness: GitHubHarness) -> None:
    harness.seed(3, start=T0, step=timedelta(minutes=10))
    connector = harness.connector()
    plus_two = timezone(timedelta(hours=2))
    try:
        since = datetime(2025, 5, 1, 10, 10, 30, 999, tzinfo=plus_two)  # 08:10:30 UTC
        got = items_of(await collect(connector, {REPO: since}))
    finally:
        await connector.aclose()
    (request,) = harness.sandbox.requests_to("/issues")
    assert request.query["since"] == ["2025-05-01T08:10:30Z"]
    assert request.query["sort"] == ["updated"] and request.query["direction"] == ["asc"]
    assert request.query["state"] == ["all"]
    assert [i.title for i in got] == ["Issue 2"]


async def test_timeout_is_retried(harness: GitHubHarness) -> None:
    harness.seed(2, start=T0, step=timedelta(minutes=1))
    connector = harness.connector()
    try:
        harness.sandbox.fail_next("timeout", path_contains="/issues")
        got = items_of(await collect(connector))
    finally:
        await connector.aclose()
    assert len(got) == 2
    assert len(_issue_requests(harness.sandbox)) == 2


async def test_malformed_body_is_retriable(harness: GitHubHarness) -> None:
    harness.seed(2, start=T0, step=timedelta(minutes=1))
    connector = harness.connector()
    try:
        harness.sandbox.fail_next("malformed", count=10)
        with pytest.raises(RetriableError, match="not valid JSON"):
            await collect(connector)
    finally:
        await connector.aclose()


async def test_a_page_orjson_refuses_is_read_as_json_reads_it(harness: GitHubHarness) -> None:
    # The sandbox writes a lone surrogate as json does, as the escape `\ud800`: orjson refuses
    # the page; json takes it, as PyGithub would.
    ids = harness.seed(2, start=T0, step=timedelta(minutes=1))
    harness.update(ids[1], at=T0 + timedelta(hours=1), title="half \ud800 a pair")
    connector = harness.connector()
    try:
        got = items_of(await collect(connector))
    finally:
        await connector.aclose()
    assert {i.external_id: i.title for i in got} == {
        ids[0]: "Issue 0",
        ids[1]: "half \ud800 a pair",
    }


@pytest.mark.parametrize(
    "body", [b"<html><body>502 Bad Gateway</body></html>", {"message": "hi"}, [1, 2]]
)
async def test_wrong_shaped_list_is_retriable(harness: GitHubHarness, body: Any) -> None:
    harness.seed(2, start=T0, step=timedelta(minutes=1))
    connector = harness.connector()
    try:
        harness.sandbox.fail_next("malformed", count=10, body=body)
        with pytest.raises(RetriableError, match="not a JSON array of objects"):
            await collect(connector)
    finally:
        await connector.aclose()
    assert len(_issue_requests(harness.sandbox)) == 3, "retried up to ctx.max_retries"


async def test_a_bad_page_is_fetched_again_with_the_same_url(harness: GitHubHarness) -> None:
    ids = harness.seed(10, start=T0, step=timedelta(minutes=1))
    connector = harness.connector()
    seen: list[str] = []
    try:
        pages = connector.changes({})
        first = await anext(pages)
        seen += [i.external_id for i in first.items]
        # The second page comes back as a proxy's HTML once; the retry must ask for it again.
        harness.sandbox.fail_next("malformed", body=b"<html>502 Bad Gateway</html>")
        async for page in pages:
            seen += [i.external_id for i in page.items]
    finally:
        await connector.aclose()
    assert seen == ids
    urls = _issue_requests(harness.sandbox)
    assert len(urls) == 4 and urls[1] == urls[2] and "since=" in urls[1], urls


async def test_mapping_of_a_rich_issue(harness: GitHubHarness) -> None:
    issue = harness.sandbox.add_issue(
        REPO,
        "Crash on save",
        created_at=T0 - timedelta(days=1),
        updated_at=T0,
        body="Steps:\n1. save",
        state="closed",
        state_reason="not_planned",
        labels=["bug", "P1", "points: 3"],
        assignees=["mira"],
    )
    connector = harness.connector(priority_labels={"p1": 3, "bug": 1})
    try:
        (item,) = items_of(await collect(connector))
    finally:
        await connector.aclose()
    assert item.external_id == harness.external_id(issue.id)
    assert item.external_key == f"{REPO}#1"
    assert item.external_url == f"https://github.com/{REPO}/issues/1"
    assert item.status is Status.CANCELLED
    assert item.completed_at == T0
    assert item.priority == 3
    assert item.story_points == 3
    assert item.description == "Steps:\n1. save"
    assert item.raw["id"] == issue.id and item.raw["state_reason"] == "not_planned"
    assert item.scope == REPO


async def test_status_map_override(harness: GitHubHarness) -> None:
    harness.sandbox.add_issue(REPO, "review me", updated_at=T0, labels=["needs review"])
    harness.sandbox.add_issue(
        REPO, "wontfix", updated_at=T0, state="closed", state_reason="not_planned"
    )
    connector = harness.connector(
        status_map={"Needs Review": "pr_ready", "not_planned": "completed"}
    )
    try:
        got = {i.title: i.status for i in items_of(await collect(connector))}
    finally:
        await connector.aclose()
    assert got == {"review me": Status.PR_READY, "wontfix": Status.COMPLETED}


def test_public_github_ids_are_plain(tmp_path: Path) -> None:
    from connectors.github import site_prefix

    assert site_prefix("https://api.github.com") == ""
    assert site_prefix("https://api.github.com/") == ""
    assert site_prefix("https://ghe.example.com/api/v3") == "ghe.example.com/"


@pytest.mark.parametrize(
    "bad",
    [
        {"repos": []},
        {"repos": ["no-slash"]},
        {"repos": ["a/b/c"]},
        {"repos": ["o/r"], "per_page": 101},
        {"repos": ["o/r"], "per_page": 0},
        {"repos": ["o/r"], "priority_labels": {"P0": 5}},
        {"repos": ["o/r"], "priority_labels": {"P0": -1}},
        {"repos": ["o/r"], "base_url": "ftp://example.com"},
        {"repos": ["o/r"], "unknown_key": 1},
    ],
)
def test_config_rejects(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        GitHubConfig(**bad)


def test_config_normalises() -> None:
    config = GitHubConfig(
        repos=[" octo/alpha ", "Octo/Alpha", "octo/beta"],
        base_url="https://ghe.example.com/api/v3/",
        priority_labels={" P1 ": 3},
    )
    assert config.repos == ["octo/alpha", "octo/beta"]
    assert config.base_url == "https://ghe.example.com/api/v3"
    assert config.priority_labels == {"p1": 3}


async def test_demo_seed_and_config_sync(tmp_path: Path) -> None:
    sandbox = GitHubSandbox(token="demo-token")
    sandbox.start()
    try:
        sandbox.seed_demo()
        config = GitHubConfig(**sandbox.demo_config())
        ctx = ConnectorContext("demo", SecretStr("demo-token"), tmp_path, max_retries=1)
        connector = GitHubConnector(config, ctx)
        try:
            await connector.check()
            got = items_of(await collect(connector))
        finally:
            await connector.aclose()
    finally:
        sandbox.stop()
    assert len(got) >= 30
    assert {i.status for i in got} == set(Status)
    assert any(i.priority == 4 for i in got) and any(i.story_points for i in got)
    # the richer model: epics with sub-issues, two sprints, types, labels, assignees
    epics = {i.external_id for i in got if i.item_type == "epic"}
    assert len(epics) == 2
    assert sum(1 for i in got if i.parent_external_id in epics) >= 6
    assert {s.state for i in got for s in i.sprints} == {"active", "closed"}
    assert {i.item_type for i in got} >= {"epic", "bug", "feature", "task", "pull_request"}
    assert all(i.labels for i in got if i.item_type == "epic")
    assert sum(1 for i in got if i.assignees) >= 20


def _get(sandbox: GitHubSandbox, path: str, token: str = PLANTED_TOKEN) -> tuple[int, Any, Any]:
    request = urllib.request.Request(
        sandbox.url + path, headers={"Authorization": f"token {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read())


def test_sandbox_rate_limit_headers_and_error_shapes(harness: GitHubHarness) -> None:
    sandbox = harness.sandbox
    sandbox.fail_next("403_rate_limit", retry_after=1)
    sandbox.fail_next("429", retry_after=2)
    sandbox.fail_next("5xx", retry_after=None)
    answers = [_get(sandbox, f"/repos/{REPO}") for _ in range(4)]
    answers.append(_get(sandbox, f"/repos/{REPO}", token="wrong"))
    answers.append(_get(sandbox, "/repos/octo/missing"))
    assert [status for status, _, _ in answers] == [403, 429, 503, 200, 401, 404]
    for _, headers, _ in answers:
        for name in ("limit", "remaining", "used", "reset", "resource"):
            assert headers.get(f"x-ratelimit-{name}"), (name, dict(headers))
    primary, secondary = answers[0], answers[1]
    assert primary[1]["x-ratelimit-remaining"] == "0" and "Retry-After" not in primary[1]
    assert 0 < int(primary[1]["x-ratelimit-reset"]) - time.time() <= 2
    assert primary[2]["message"].startswith("API rate limit exceeded")
    assert secondary[1]["Retry-After"] == "2"
    assert answers[4][2]["message"] == "Bad credentials"


# The keys GitHub's OpenAPI description requires (github/rest-api-description,
# descriptions/api.github.com/api.github.com.yaml, components/schemas/…/required).
SIMPLE_USER_REQUIRED = (
    "avatar_url events_url followers_url following_url gists_url gravatar_id html_url id node_id "
    "login organizations_url received_events_url repos_url site_admin starred_url "
    "subscriptions_url type url"
).split()
REPOSITORY_REQUIRED = (
    "archive_url assignees_url blobs_url branches_url collaborators_url comments_url commits_url "
    "compare_url contents_url contributors_url deployments_url description downloads_url "
    "events_url fork forks_url full_name git_commits_url git_refs_url git_tags_url hooks_url "
    "html_url id node_id issue_comment_url issue_events_url issues_url keys_url labels_url "
    "languages_url merges_url milestones_url name notifications_url owner private pulls_url "
    "releases_url stargazers_url statuses_url subscribers_url subscription_url tags_url "
    "teams_url trees_url url clone_url default_branch forks forks_count git_url has_downloads "
    "has_issues has_projects has_wiki has_pages homepage language archived disabled mirror_url "
    "open_issues open_issues_count license pushed_at size ssh_url stargazers_count svn_url "
    "watchers watchers_count created_at updated_at"
).split()
ISSUE_REQUIRED = (
    "assignee closed_at comments comments_url events_url html_url id node_id labels labels_url "
    "milestone number repository_url state locked title url user created_at updated_at"
).split()
LABEL_REQUIRED = "id node_id url name description color default".split()
PULL_REQUEST_REQUIRED = "diff_url html_url patch_url url".split()


def test_sandbox_bodies_carry_every_key_the_api_always_sends(harness: GitHubHarness) -> None:
    sandbox = harness.sandbox
    sandbox.add_issue(REPO, "one", updated_at=T0, labels=["bug"], assignees=["mira"])
    sandbox.add_issue(REPO, "pr", updated_at=T0, is_pr=True, state="closed", merged_at=T0)
    status, _, repo = _get(sandbox, f"/repos/{REPO}")
    assert status == 200
    assert [k for k in REPOSITORY_REQUIRED if k not in repo] == []
    assert [k for k in SIMPLE_USER_REQUIRED if k not in repo["owner"]] == []
    status, _, issues = _get(sandbox, f"/repos/{REPO}/issues?state=all")
    assert status == 200 and len(issues) == 2
    for item in issues:
        assert [k for k in ISSUE_REQUIRED if k not in item] == []
        for user in [item["user"], *item["assignees"]]:
            assert [k for k in SIMPLE_USER_REQUIRED if k not in user] == []
            assert isinstance(user["site_admin"], bool) and isinstance(user["id"], int)
        for label in item["labels"]:
            assert [k for k in LABEL_REQUIRED if k not in label] == []
    [pull] = [item["pull_request"] for item in issues if "pull_request" in item]
    assert [k for k in PULL_REQUEST_REQUIRED if k not in pull] == []


def test_sandbox_link_header_carries_every_parameter(harness: GitHubHarness) -> None:
    harness.seed(10, start=T0, step=timedelta(minutes=1))
    query = "state=all&sort=updated&direction=asc&since=2025-05-01T08%3A01%3A00Z&per_page=3"
    status, headers, body = _get(harness.sandbox, f"/repos/{REPO}/issues?{query}&page=2")
    assert status == 200
    assert [i["title"] for i in body] == ["Issue 4", "Issue 5", "Issue 6"]
    links = dict((rel, url) for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', headers["Link"]))
    assert set(links) == {"next", "last", "prev", "first"}
    for rel, url in links.items():
        split = urllib.parse.urlsplit(url)
        assert f"{split.scheme}://{split.netloc}" == harness.sandbox.url
        params = urllib.parse.parse_qs(split.query)
        assert params["since"] == ["2025-05-01T08:01:00Z"] and params["per_page"] == ["3"]
        assert params["state"] == ["all"] and params["sort"] == ["updated"], rel
        assert params["direction"] == ["asc"]
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(links["last"]).query)["page"] == ["3"]
    assert all("pull_request" not in item for item in body)
    assert body[0]["url"].startswith(harness.sandbox.url + "/repos/")


async def test_issues_sharing_one_second_across_pages_are_read_once(harness: GitHubHarness) -> None:
    """A bulk edit gives many issues the same `updated_at`: keyset pagination cannot move on by
    time, so it moves on by page number within that second, and never loops."""
    ids = [
        harness.external_id(harness.sandbox.add_issue(REPO, f"bulk {n}", updated_at=T0).id)
        for n in range(10)
    ]
    later = harness.seed(3, start=T0 + timedelta(minutes=1), step=timedelta(minutes=1))
    connector = harness.connector()
    try:
        seen = [i.external_id for i in items_of(await collect(connector))]
    finally:
        await connector.aclose()
    assert sorted(seen) == sorted(ids + later) and len(seen) == len(set(seen))
    assert len(_issue_requests(harness.sandbox)) <= 6


# ---------------------------------------------------------------------------------------------
# No silent gaps: tie groups, malformed items, short listings
# ---------------------------------------------------------------------------------------------
def _numeric_id(external_id: str) -> int:
    return int(external_id.rsplit("/", 1)[1])


def _change(harness: GitHubHarness, external_id: str, change: str, at: datetime) -> None:
    """Edit (the item jumps to the newest end of the list) or delete an item upstream."""
    if change == "edit":
        harness.update(external_id, at=at, title="edited mid-walk")
    else:
        harness.sandbox.delete(_numeric_id(external_id))


def _assert_group_read_whole(
    pages: list[Page], group: list[str], later: list[str], gone: set[str], second: datetime
) -> None:
    """Every item that still exists was yielded, and no checkpoint passed the group's second
    before every member of the group had been yielded."""
    yielded: set[str] = set()
    members = set(group) - gone
    for n, page in enumerate(pages):
        yielded |= {i.external_id for i in page.items}
        mark = page.checkpoint.get(REPO)
        if mark is not None and mark > second:
            missing = members - yielded
            assert not missing, f"page {n} checkpoints {mark} with {len(missing)} unread"
    missing = (members | set(later)) - yielded
    assert not missing, f"{len(missing)} item(s) never read: {sorted(missing)[:5]}"


@pytest.mark.parametrize("change", ["edit", "delete"])
async def test_a_tie_group_longer_than_a_page_is_read_whole_when_a_read_member_changes(
    harness: GitHubHarness, change: str
) -> None:
    """More issues than a page share one `updated_at` second; a member already read is edited
    (it jumps to the newest end) or deleted between two page requests. With page numbers every
    later member shifts back a slot and one is never read while the checkpoint moves past the
    second, for good once the second is older than the overlap."""
    group = [
        harness.external_id(harness.sandbox.add_issue(REPO, f"bulk {n}", updated_at=T0).id)
        for n in range(harness.page_size * 3)
    ]
    later = harness.seed(3, start=T0 + timedelta(minutes=1), step=timedelta(minutes=1))
    connector = harness.connector()
    pages: list[Page] = []
    try:
        async for page in connector.changes({}):
            pages.append(page)
            if len(pages) == 2:  # between two page requests, within the group
                _change(harness, group[1], change, T0 + timedelta(days=1))
    finally:
        await connector.aclose()
    gone = {group[1]} if change == "delete" else set()
    _assert_group_read_whole(pages, group, later, gone, T0)
    if change == "edit":
        assert "edited mid-walk" in [i.title for i in items_of(pages)]


@pytest.mark.parametrize("change", ["edit", "delete"])
async def test_a_tie_group_of_several_full_pages_survives_changes_during_each_walk(
    harness: GitHubHarness, change: str
) -> None:
    """A group longer than GitHub's largest page (100) is walked by page number more than once;
    members already read change during the first walk and again during the re-read that checks
    it: the group is still read whole, and the checkpoint waits for it."""
    group = [
        harness.external_id(harness.sandbox.add_issue(REPO, f"bulk {n}", updated_at=T0).id)
        for n in range(250)
    ]
    later = harness.seed(3, start=T0 + timedelta(minutes=1), step=timedelta(minutes=1))
    connector = harness.connector(per_page=100)
    pages: list[Page] = []
    changed: set[str] = set()
    try:
        async for page in connector.changes({}):
            pages.append(page)
            if len(pages) in (2, 5, 7):  # read members change between page requests
                victim = group[len(pages)]
                _change(harness, victim, change, T0 + timedelta(days=1, seconds=len(pages)))
                changed.add(victim)
    finally:
        await connector.aclose()
    gone = changed if change == "delete" else set()
    _assert_group_read_whole(pages, group, later, gone, T0)


@pytest.mark.parametrize(
    ("junk", "named"),
    [
        ({"updated_at": "last Tuesday"}, "updated_at"),
        ({"updated_at": ...}, "updated_at"),
        ({"labels": 5}, "labels"),
        ({"id": None}, "id"),
        ({"id": "I_kw123"}, "id"),
    ],
)
async def test_one_malformed_issue_is_rejected_and_every_other_one_lands(
    off_spec_harness: GitHubHarness, junk: dict[str, Any], named: str
) -> None:
    harness = off_spec_harness
    ids = harness.seed(10, start=T0, step=timedelta(minutes=1))
    bad = 5  # the middle of the second page (pages of 4: 0-3, then 3-6 from the newest second)
    harness.sandbox.corrupt(_numeric_id(ids[bad]), **junk)
    connector = harness.connector()
    try:
        pages = await collect(connector)
    finally:
        await connector.aclose()
    got = [i.external_id for i in items_of(pages)]
    assert sorted(set(got)) == sorted(set(ids) - {ids[bad]})
    (rejected,) = [r for page in pages for r in page.rejected]
    assert rejected.external_key == f"{REPO}#{bad + 1}"
    if "id" not in junk:
        assert rejected.external_id == ids[bad]
    else:
        assert f"{REPO}#{bad + 1}" in rejected.external_id
    assert named in rejected.reason and PLANTED_TOKEN not in rejected.reason
    assert len(rejected.reason) <= 200
    final = [p.checkpoint[REPO] for p in pages if p.checkpoint]
    assert final[-1] == T0 + timedelta(minutes=9), "the checkpoint may pass the rejected item"


async def test_an_issue_without_id_or_number_is_rejected_by_what_identifies_it(
    off_spec_harness: GitHubHarness,
) -> None:
    harness = off_spec_harness
    ids = harness.seed(3, start=T0, step=timedelta(minutes=1))
    harness.sandbox.corrupt(_numeric_id(ids[1]), id=..., number=...)
    connector = harness.connector()
    try:
        pages = await collect(connector)
    finally:
        await connector.aclose()
    assert [i.external_id for i in items_of(pages)] == [ids[0], ids[2]]
    (rejected,) = [r for page in pages for r in page.rejected]
    assert rejected.external_id == f"https://github.com/{REPO}/issues/2"
    assert "id" in rejected.reason


async def test_all_ids_names_an_issue_without_id_and_lists_no_gap(
    off_spec_harness: GitHubHarness,
) -> None:
    """The sweep marks every row it is not given: a listing that skipped an unreadable id would
    report an existing issue deleted. It fails, naming the issue."""
    harness = off_spec_harness
    ids = harness.seed(3, start=T0, step=timedelta(minutes=1))
    harness.sandbox.corrupt(_numeric_id(ids[1]), id="I_kw1")
    connector = harness.connector()
    try:
        with pytest.raises(RetriableError, match=f"{REPO}#2 without a numeric id"):
            [i async for batch in connector.all_ids() for i in batch]
    finally:
        await connector.aclose()


@pytest.mark.parametrize("keep", [0, 2])
async def test_all_ids_fails_rather_than_end_early_on_a_page_that_promises_more(
    harness: GitHubHarness, keep: int
) -> None:
    """An empty or short page whose `Link` still says `next`: stopping there would make the
    sweep mark every later issue deleted."""
    harness.seed(10, start=T0, step=timedelta(minutes=1))
    harness.sandbox.answer_short(keep, skip=1, count=50)  # page 2, and every retry of it
    connector = harness.connector()
    try:
        with pytest.raises(RetriableError, match="promised"):
            [i async for batch in connector.all_ids() for i in batch]
    finally:
        await connector.aclose()


async def test_all_ids_retries_a_one_off_empty_page(harness: GitHubHarness) -> None:
    ids = harness.seed(10, start=T0, step=timedelta(minutes=1))
    harness.sandbox.answer_short(0, skip=1)
    connector = harness.connector()
    try:
        seen = [i async for batch in connector.all_ids() for i in batch]
    finally:
        await connector.aclose()
    assert sorted(seen) == sorted(ids)


@pytest.mark.parametrize("keep", [0, 2])
async def test_changes_fails_rather_than_end_ok_on_a_page_that_promises_more(
    harness: GitHubHarness, keep: int
) -> None:
    ids = harness.seed(10, start=T0, step=timedelta(minutes=1))
    harness.sandbox.answer_short(keep, skip=1, count=50)
    connector = harness.connector()
    pages: list[Page] = []
    try:
        with pytest.raises(RetriableError, match="promised"):
            async for page in connector.changes({}):
                pages.append(page)
    finally:
        await connector.aclose()
    # Nothing past what was yielded is checkpointed: the next run resumes from there.
    read = {i.external_id for i in items_of(pages)}
    marks = [p.checkpoint[REPO] for p in pages if p.checkpoint]
    assert read == set(ids[:4]) and marks == [T0 + timedelta(minutes=3)]


async def test_all_ids_of_a_missing_repository_is_lost_not_empty(harness: GitHubHarness) -> None:
    """Never an empty listing the sweep would take for deletions; the others are listed."""
    [first] = harness.seed(1, start=T0, step=timedelta(minutes=1))
    connector = harness.connector(repos=["octo/nope", REPO])
    try:
        parts = [part async for part in connector.all_ids()]
    finally:
        await connector.aclose()
    assert [(p.scope, list(p.ids), p.lost is not None) for p in parts] == [
        ("octo/nope", [], True),
        (REPO, [first], False),
    ]
    assert parts[0].lost is not None and "404" in parts[0].lost


async def test_a_malformed_pull_request_left_out_is_not_rejected(
    off_spec_harness: GitHubHarness,
) -> None:
    """Pull requests are not kept without include_pull_requests: one that is malformed is no item
    of ours, so it is not reported as one we failed to store."""
    harness = off_spec_harness
    made = _seed_prs(harness.sandbox)
    harness.sandbox.corrupt(made["open pr"], labels=5)
    connector = harness.connector()
    try:
        pages = await collect(connector)
    finally:
        await connector.aclose()
    assert [i.title for i in items_of(pages)] == ["plain"]
    assert not [r for page in pages for r in page.rejected]


async def test_pull_requests_switched_on_are_read_in_full(harness: GitHubHarness) -> None:
    """Found by the model test (tests/model). Pull requests left out still move the repository's
    cursor; switched on later, the ones older than it were never read (the census counted them
    missing for good). They are a scope of their own (`owner/name:pulls`), read in full when the
    option is switched on, and out of scope, not deleted, when it is switched off."""
    harness.sandbox.add_issue(REPO, "old issue", updated_at=T0)
    pr = harness.sandbox.add_issue(
        REPO, "old pr", updated_at=T0 + timedelta(minutes=10), is_pr=True
    )
    harness.sandbox.add_issue(REPO, "new issue", updated_at=T0 + timedelta(minutes=20))
    issues_only = harness.connector()
    with_prs = harness.connector(include_pull_requests=True)
    try:
        assert await issues_only.scopes() == [REPO]
        pages = await collect(issues_only)
        cursor = {s: t for p in pages for s, t in p.checkpoint.items()}
        assert cursor == {REPO: T0 + timedelta(minutes=20)}
        assert [i.title for i in items_of(pages)] == ["old issue", "new issue"]

        assert await with_prs.scopes() == [REPO, f"{REPO}:pulls"]
        pages = await collect(with_prs, cursor)  # the pulls scope has no mark: read in full
        got = {i.title: i.scope for i in items_of(pages)}
        assert got == {"old issue": REPO, "old pr": f"{REPO}:pulls", "new issue": REPO}
        assert pages[-1].checkpoint == {REPO: cursor[REPO], f"{REPO}:pulls": cursor[REPO]}
        listing: dict[str, set[str]] = {}
        async for part in with_prs.all_ids():
            listing.setdefault(part.scope, set()).update(part.ids)
        assert listing[f"{REPO}:pulls"] == {harness.external_id(pr.id)}
        assert len(listing[REPO]) == 2
    finally:
        await issues_only.aclose()
        await with_prs.aclose()

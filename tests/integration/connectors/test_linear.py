"""The Linear connector against the Linear sandbox: the shared contract plus Linear's own rules
(RATELIMITED as HTTP 400 with epoch-ms resets, trash vs archive, priority scale, team keys,
variables-only GraphQL, backward pagination that keeps pages oldest first)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from connectors.base import ConnectorContext, FatalError, Page, Person, RetriableError, Status
from connectors.linear import (
    CHANGES_QUERY,
    CHECK_QUERY,
    COMPLEXITY_CEILING,
    IDS_QUERY,
    LinearConfig,
    LinearConnector,
)
from connectors.sandbox import graphql as sandbox_graphql
from connectors.sandbox.base import Request
from connectors.sandbox.linear import LinearSandbox
from tests.helpers import make_integration, make_team
from tests.integration.connectors.contract import (
    PLANTED_TOKEN,
    T0,
    ConnectorContract,
    ModelTraits,
    collect,
    items_of,
)
from worker import sync
from worker.settings import Settings
from worker.sync import RunOptions


@dataclass
class LinearHarness:
    sandbox: LinearSandbox
    tmp_path: Path
    page_size: int = 5
    waits: list[tuple[str, float]] = field(default_factory=list)
    users: dict[str, str] = field(default_factory=dict)  # handle -> user id
    model: ClassVar[ModelTraits] = ModelTraits(item_types=False)  # issues have no type

    def seed(self, count: int, *, start: datetime, step: timedelta) -> list[str]:
        return [
            self.sandbox.add_issue(
                "ENG",
                title=f"Issue {n}",
                created_at=start + n * step - timedelta(hours=1),
                updated_at=start + n * step,
                priority=n % 5,
                estimate=n % 4 or None,
            )["id"]
            for n in range(count)
        ]

    def update(
        self, external_id: str, *, at: datetime, title: str | None = None, done: bool | None = None
    ) -> None:
        changes: dict[str, Any] = {}
        if title is not None:
            changes["title"] = title
        if done is not None:
            changes["state"] = "Done" if done else "Todo"
        self.sandbox.update_issue(external_id, at=at, **changes)

    def add_sprint(self, name: str, state: str) -> str:
        now = datetime.now(UTC)
        start, end = (now - timedelta(days=28), now - timedelta(days=14))
        if state == "active":
            start, end = (now - timedelta(days=7), now + timedelta(days=7))
        number = 1 + len(self.sandbox._cycles)
        cycle = self.sandbox.add_cycle("ENG", number, starts_at=start, ends_at=end, name=name)
        if state == "closed":
            self.sandbox.complete_cycle(cycle, at=end)
        return cycle

    def add_epic(self, title: str, *, at: datetime) -> str:
        return str(self.sandbox.add_issue("ENG", title=title, updated_at=at)["id"])

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
        issue = self.sandbox.add_issue(
            "ENG", title=f"A {kind}", updated_at=at, parent=parent, cycle=sprint,
            labels=labels, assignee=self.user(assignee) if assignee else None,
        )  # fmt: skip
        return str(issue["id"])

    def move(self, child: str, *, at: datetime, parent: str, sprint: str) -> None:
        self.sandbox.update_issue(child, at=at, parent=parent, cycle=sprint)

    def user(self, handle: str) -> str:
        if handle not in self.users:
            self.users[handle] = self.sandbox.add_user(
                f"{handle.title()} Example", display_name=handle, email=f"{handle}@example.com"
            )
        return self.users[handle]

    def person(self, handle: str) -> Person:
        return Person(handle, self.user(handle))  # Linear's display name, its user id

    def listings(self) -> int:
        bodies = [r.json() for r in self.sandbox.requests_to("/graphql")]
        names = [sandbox_graphql.operation_name(b["query"]) for b in bodies]
        return names.count("SyncIssueChanges")

    def connector(self, *, token: str = PLANTED_TOKEN, **config: Any) -> LinearConnector:
        return self.build(token=token, config=config)

    def build(
        self, *, token: str = PLANTED_TOKEN, config: dict[str, Any] | None = None, **ctx: Any
    ) -> LinearConnector:
        values = {"team_keys": ["ENG"], "page_size": self.page_size, "timeout": 2.0}
        values.update(config or {})
        if "api_url" not in values:
            values["api_url"] = f"{self.sandbox.url}/graphql"
        settings: dict[str, Any] = {"max_retries": 3, "sleep_cap": 5.0, **ctx}
        context = ConnectorContext(
            integration_id="test",
            token=SecretStr(token),
            cache_dir=self.tmp_path,
            on_wait=lambda reason, seconds: self.waits.append((reason, seconds)),
            **settings,
        )
        return LinearConnector(LinearConfig.model_validate(values), context)


@pytest.fixture
def sandbox() -> Iterator[LinearSandbox]:
    server = LinearSandbox(token=PLANTED_TOKEN)
    server.timeout_stall = 3.0  # longer than the connector's 2 s timeout in these tests
    with server:
        yield server


@pytest.fixture
def harness(sandbox: LinearSandbox, tmp_path: Path) -> LinearHarness:
    return LinearHarness(sandbox, tmp_path)


class TestLinearContract(ConnectorContract):
    pass


def graphql_bodies(sandbox: LinearSandbox) -> list[dict[str, Any]]:
    return [r.json() for r in sandbox.requests_to("/graphql", "POST")]


# ---------------------------------------------------------------------------------------------
# Rate limits
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [400, 429])
async def test_ratelimited_then_success_waits_for_the_reset(
    harness: LinearHarness, status: int
) -> None:
    harness.seed(3, start=T0, step=timedelta(minutes=1))
    connector = harness.connector()
    try:
        await connector.check()
        harness.sandbox.rate_limit_next(reset_in=1.5, status=status)
        started = time.monotonic()
        got = items_of(await collect(connector))
    finally:
        await connector.aclose()
    elapsed = time.monotonic() - started
    assert len(got) == 3
    assert elapsed >= 1.4, f"the reset (1.5 s ahead, epoch ms) was not waited out: {elapsed:.2f}"
    assert elapsed < 4.5, "waited far longer than the reset header said"
    assert len(harness.waits) == 1 and 1.2 <= harness.waits[0][1] <= 1.5, harness.waits
    assert len(harness.sandbox.requests_to("/graphql")) == 3  # check, limited page, the retry


async def test_rate_limit_reset_beyond_the_cap_gives_up_with_the_wait(
    harness: LinearHarness,
) -> None:
    harness.seed(2, start=T0, step=timedelta(minutes=1))
    connector = harness.connector()
    try:
        harness.sandbox.rate_limit_next(reset_in=60)
        started = time.monotonic()
        with pytest.raises(RetriableError) as info:
            await collect(connector)
    finally:
        await connector.aclose()
    assert time.monotonic() - started < 2, "must not sleep past sleep_cap"
    assert info.value.retry_after is not None and 55 <= info.value.retry_after <= 60
    assert "rate limit" in str(info.value)


@pytest.mark.parametrize("pace", [True, False])
async def test_a_small_budget_is_paced_or_waited_out_from_live_headers(
    tmp_path: Path, pace: bool
) -> None:
    # No injection: the sandbox's own budget (3 requests per 1.5 s window) runs low.
    with LinearSandbox(token=PLANTED_TOKEN, requests_limit=3, rate_window=1.5) as sandbox:
        harness = LinearHarness(sandbox, tmp_path, page_size=2)
        harness.seed(7, start=T0, step=timedelta(minutes=1))  # 4 pages
        connector = harness.connector()
        if not pace:
            connector.pace_below = 0
        started = time.monotonic()
        try:
            got = items_of(await collect(connector))
        finally:
            await connector.aclose()
        elapsed = time.monotonic() - started
        sent = len(sandbox.requests_to("/graphql"))
    assert [i.title for i in got] == [f"Issue {n}" for n in range(7)]
    assert elapsed >= 0.5, "the budget's reset must have been waited for"
    reasons = {reason for reason, _ in harness.waits}
    assert sent == 4, "no request is sent into a spent budget, so none is refused"
    assert reasons == {"linear request budget low"}
    if not pace:
        # Without spreading, the connector still waits for the spent budget's reset before the
        # next request. (This used to expect 5 requests: one sent into the spent budget, refused
        # with RATELIMITED, and retried after the reset, the hammering this fix removes.)
        assert len(harness.waits) == 1


def ratelimited_answers(sandbox: LinearSandbox) -> int:
    """How many requests the sandbox refused with RATELIMITED."""
    return sandbox.ratelimited


async def test_a_complexity_budget_too_small_for_the_next_page_is_waited_out_not_hit(
    tmp_path: Path,
) -> None:
    # A page of 5 issues costs 142 points (28.4 each); 300 points a 1.5 s window hold two pages.
    with LinearSandbox(token=PLANTED_TOKEN, complexity_limit=300, rate_window=1.5) as sandbox:
        harness = LinearHarness(sandbox, tmp_path, page_size=5)
        harness.seed(18, start=T0, step=timedelta(minutes=1))  # 4 pages
        connector = harness.connector()
        connector.pace_below = 0  # no spreading: only the spent budget makes it wait
        try:
            got = items_of(await collect(connector))
        finally:
            await connector.aclose()
        sent = len(sandbox.requests_to("/graphql"))
        refused = ratelimited_answers(sandbox)
    assert [i.title for i in got] == [f"Issue {n}" for n in range(18)]
    assert (sent, refused) == (4, 0), "no page is sent into a complexity budget it cannot fit"
    assert {reason for reason, _ in harness.waits} == {"linear complexity budget low"}


@pytest.mark.parametrize("endpoint_headers", ["always", "when_limited"])
async def test_an_endpoint_specific_limit_is_waited_for_not_the_hourly_reset(
    tmp_path: Path, endpoint_headers: str
) -> None:
    # `issues` allows 2 requests a second of its own; the global budgets (an hour) are plenty.
    with LinearSandbox(
        token=PLANTED_TOKEN,
        endpoint_limits={"issues": (2, 1.0)},
        endpoint_headers=endpoint_headers,
    ) as sandbox:
        harness = LinearHarness(sandbox, tmp_path, page_size=2)
        harness.seed(7, start=T0, step=timedelta(minutes=1))  # 4 pages
        connector = harness.connector()
        started = time.monotonic()
        try:
            got = items_of(await collect(connector))
        finally:
            await connector.aclose()
        elapsed = time.monotonic() - started
        refused = ratelimited_answers(sandbox)
    assert [i.title for i in got] == [f"Issue {n}" for n in range(7)]
    assert 0.8 <= elapsed < 4, elapsed
    if endpoint_headers == "always":  # the headers said it before the limit was hit
        assert refused == 0
        assert {reason for reason, _ in harness.waits} == {"linear issues endpoint budget low"}
    else:  # they come only with the refusal: one RATELIMITED, then the endpoint's reset
        assert refused == 1
        assert [reason for reason, _ in harness.waits] == ["linear issues of team ENG"]
        assert harness.waits[0][1] <= 1.0


async def test_a_spent_budget_with_a_distant_reset_ends_the_run_before_sending(
    tmp_path: Path,
) -> None:
    # Two requests a minute: after two pages the budget is spent for about a minute, longer
    # than the run may sleep (sleep_cap 5 s). Nothing is sent to be refused and nothing sleeps;
    # the error carries the reset, which the worker honours before the next run.
    with LinearSandbox(token=PLANTED_TOKEN, requests_limit=2, rate_window=60) as sandbox:
        harness = LinearHarness(sandbox, tmp_path, page_size=2)
        harness.seed(7, start=T0, step=timedelta(minutes=1))
        connector = harness.connector()
        connector.pace_below = 0
        pages: list[Page] = []
        started = time.monotonic()
        try:
            with pytest.raises(RetriableError) as info:
                async for page in connector.changes({}):
                    pages.append(page)
        finally:
            await connector.aclose()
        sent = len(sandbox.requests_to("/graphql"))
    assert time.monotonic() - started < 2, "must not sleep towards a reset past the cap"
    assert sent == 2 and len(pages) == 2, "the two pages that fit land, checkpointed"
    assert info.value.retry_after is not None and 55 <= info.value.retry_after <= 60
    assert "request budget is spent" in str(info.value)


async def test_budget_waits_never_pass_the_runs_deadline(tmp_path: Path) -> None:
    # The budget resets in 3 s and the sleep cap would allow it, but the run must end in 1 s.
    with LinearSandbox(token=PLANTED_TOKEN, requests_limit=2, rate_window=3) as sandbox:
        harness = LinearHarness(sandbox, tmp_path, page_size=2)
        harness.seed(7, start=T0, step=timedelta(minutes=1))
        deadline = time.monotonic() + 1.0
        connector = harness.build(deadline=deadline)
        try:
            with pytest.raises(RetriableError):
                await collect(connector)
            ended = time.monotonic()  # (closing and the sandbox's stop are not the run's wait)
        finally:
            await connector.aclose()
        sent = len(sandbox.requests_to("/graphql"))
    # Sleeping until the budget's reset would end 2 s past the deadline; a loaded machine's
    # scheduling is allowed a second.
    assert ended <= deadline + 1.0, "slept past the run's deadline"
    assert sent == 2


# ---------------------------------------------------------------------------------------------
# Complexity: every query within Linear's 10,000 points, labels read in full
# ---------------------------------------------------------------------------------------------
async def test_the_largest_page_stays_within_linears_complexity_and_every_label_is_read(
    harness: LinearHarness,
) -> None:
    ids = harness.seed(260, start=T0, step=timedelta(minutes=1))  # two pages of 250
    twelve = [f"Label {n}" for n in range(11)] + ["Blocked"]  # "Blocked" is the 12th
    many = [f"Tag {n:03d}" for n in range(205)]  # three pages of the labels query
    harness.sandbox.update_issue(ids[3], at=T0 + timedelta(days=1), labels=twelve)
    harness.sandbox.update_issue(ids[7], at=T0 + timedelta(days=1, minutes=1), labels=many)
    connector = harness.connector(page_size=250)
    try:
        got = {i.external_id: i for i in items_of(await collect(connector))}
    finally:
        await connector.aclose()
    assert len(got) == 260
    assert got[ids[3]].status is Status.BLOCKED
    assert [n["name"] for n in got[ids[3]].raw["labels"]["nodes"]] == twelve
    assert [n["name"] for n in got[ids[7]].raw["labels"]["nodes"]] == many
    bodies = graphql_bodies(harness.sandbox)
    names = [sandbox_graphql.operation_name(b["query"]) for b in bodies]
    assert names.count("SyncIssueLabels") == 1 + 3  # one page for the 12, three for the 205
    assert {b["variables"]["id"] for b in bodies if "SyncIssueLabels" in b["query"]} == {
        ids[3],
        ids[7],
    }
    for body in bodies:  # what Linear would charge each request, far from its maximum
        points = sandbox_graphql.prepare(body["query"], body["variables"]).complexity
        assert points < COMPLEXITY_CEILING, (body["query"][:40], points)


# ---------------------------------------------------------------------------------------------
# Mapping
# ---------------------------------------------------------------------------------------------
async def test_trashed_is_removed_and_archived_stays(harness: LinearHarness) -> None:
    keep, archived, trashed = harness.seed(3, start=T0, step=timedelta(minutes=1))
    harness.sandbox.archive_issue(archived, at=T0 + timedelta(hours=1))
    harness.sandbox.trash_issue(trashed, at=T0 + timedelta(hours=2))
    connector = harness.connector()
    try:
        got = {i.external_id: i for i in items_of(await collect(connector))}
        ids = [i async for batch in connector.all_ids() for i in batch]
    finally:
        await connector.aclose()
    assert got[trashed].removed is True
    assert got[archived].removed is False and got[archived].raw["archivedAt"] is not None
    assert got[keep].removed is False
    # The sweep's listing agrees with `changes`: archived issues exist, trashed ones do not.
    assert sorted(ids) == sorted([keep, archived])


async def test_priority_estimate_and_fields_are_mapped(harness: LinearHarness) -> None:
    ids = {
        linear: harness.sandbox.add_issue(
            title=f"p{linear}",
            updated_at=T0 + timedelta(minutes=linear),
            priority=linear,
            estimate=2.6 if linear == 2 else None,
            description="**markdown** stays",
        )["id"]
        for linear in range(5)
    }
    connector = harness.connector()
    try:
        got = {i.external_id: i for i in items_of(await collect(connector))}
    finally:
        await connector.aclose()
    ours = {linear: got[ids[linear]].priority for linear in range(5)}
    assert ours == {0: 0, 1: 4, 2: 3, 3: 2, 4: 1}
    assert got[ids[2]].story_points == 3 and got[ids[2]].raw["estimate"] == 2.6
    assert got[ids[0]].story_points is None
    item = got[ids[1]]
    node = harness.sandbox.issue(ids[1])
    assert item.external_key == node["identifier"] == "ENG-2"
    assert item.external_url == node["url"] and "/issue/ENG-2/" in item.external_url
    assert item.description == "**markdown** stays"
    assert item.raw["id"] == ids[1] and item.raw["team"]["key"] == "ENG"


async def test_timestamps_are_mapped(harness: LinearHarness) -> None:
    sb = harness.sandbox
    done = sb.add_issue(title="done", updated_at=T0)["id"]
    sb.update_issue(done, at=T0 + timedelta(hours=1), state="In Progress")
    sb.update_issue(done, at=T0 + timedelta(hours=5), state="Done")
    cancelled = sb.add_issue(title="cancelled", updated_at=T0)["id"]
    sb.update_issue(cancelled, at=T0 + timedelta(hours=2), state="Canceled")
    open_ = sb.add_issue(title="open", updated_at=T0 + timedelta(hours=3))["id"]
    connector = harness.connector()
    try:
        got = {i.external_id: i for i in items_of(await collect(connector))}
    finally:
        await connector.aclose()
    assert got[done].started_at == T0 + timedelta(hours=1)
    assert got[done].completed_at == T0 + timedelta(hours=5)
    assert got[done].status is Status.COMPLETED
    assert got[cancelled].completed_at == T0 + timedelta(hours=2)  # canceledAt
    assert got[cancelled].started_at is None
    assert got[cancelled].status is Status.CANCELLED
    assert got[open_].started_at is None and got[open_].completed_at is None
    assert got[done].updated_at == T0 + timedelta(hours=5)
    assert got[done].updated_at.tzinfo is not None


async def test_status_mapping_with_labels_and_overrides(harness: LinearHarness) -> None:
    sb = harness.sandbox
    cases = {
        ("Triage", ()): Status.QUEUED,
        ("Backlog", ()): Status.QUEUED,
        ("Todo", ()): Status.QUEUED,
        ("In Progress", ()): Status.IN_PROGRESS,
        ("In Review", ()): Status.PR_READY,
        ("Done", ()): Status.COMPLETED,
        ("Canceled", ()): Status.CANCELLED,
        ("Duplicate", ()): Status.CANCELLED,
        ("In Progress", ("Blocked",)): Status.BLOCKED,
        ("Todo", ("blocked", "Bug")): Status.BLOCKED,
        ("Done", ("Blocked",)): Status.COMPLETED,
    }
    ids = {
        case: sb.add_issue(
            title=str(case), updated_at=T0 + timedelta(minutes=n), state=case[0], labels=case[1]
        )["id"]
        for n, case in enumerate(cases)
    }
    connector = harness.connector()
    overridden = harness.connector(status_map={"in review": "in_progress", "Triage": "blocked"})
    try:
        got = {i.external_id: i.status for i in items_of(await collect(connector))}
        admin = {i.external_id: i.status for i in items_of(await collect(overridden))}
    finally:
        await connector.aclose()
        await overridden.aclose()
    assert {case: got[ids[case]] for case in cases} == cases
    assert admin[ids[("In Review", ())]] is Status.IN_PROGRESS
    assert admin[ids[("Triage", ())]] is Status.BLOCKED
    assert admin[ids[("Done", ())]] is Status.COMPLETED


async def test_malformed_issues_are_rejected_one_by_one(harness: LinearHarness) -> None:
    ids = harness.seed(12, start=T0, step=timedelta(minutes=1))
    sb = harness.sandbox
    sb.garble_issue(ids[2], updatedAt="yesterday")
    sb.garble_issue(ids[5], description={"type": "doc", "content": []})  # rich text, not a String
    sb.garble_issue(ids[7], title=42)
    sb.garble_issue(ids[9], state={"id": "s", "name": ["Done"], "type": "completed"})
    sb.garble_issue(ids[10], completedAt="soon")
    connector = harness.connector()
    try:
        pages = await collect(connector)
        again = await collect(connector, {"ENG": T0 + timedelta(minutes=5)})  # a later run
    finally:
        await connector.aclose()
    bad = {2, 5, 7, 9, 10}
    assert [i.external_id for i in items_of(pages)] == [
        x for n, x in enumerate(ids) if n not in bad
    ]
    rejected = [r for p in pages for r in p.rejected]
    assert [r.external_key for r in rejected] == ["ENG-3", "ENG-6", "ENG-8", "ENG-10", "ENG-11"]
    assert [r.external_id for r in rejected] == [ids[n] for n in sorted(bad)]
    reasons = [r.reason for r in rejected]
    assert "updatedAt" in reasons[0] and "yesterday" in reasons[0]
    assert "description" in reasons[1] and "dict" in reasons[1]
    assert "title" in reasons[2] and "int" in reasons[2]
    assert "state.name" in reasons[3] and "list" in reasons[3]
    assert "completedAt" in reasons[4]
    # Rejected issues count as read: the checkpoint reaches the newest issue.
    assert {s: t for p in pages for s, t in p.checkpoint.items()} == {
        "ENG": T0 + timedelta(minutes=11)
    }
    assert [r.external_key for p in again for r in p.rejected] == [
        "ENG-6",
        "ENG-8",
        "ENG-10",
        "ENG-11",
    ]


async def test_a_rejected_issue_counts_as_read(harness: LinearHarness) -> None:
    ids = harness.seed(7, start=T0, step=timedelta(minutes=1))
    harness.sandbox.garble_issue(ids[-1], title={"text": "newest, malformed"})
    connector = harness.connector()
    try:
        pages = await collect(connector)
    finally:
        await connector.aclose()
    assert [r.external_id for p in pages for r in p.rejected] == [ids[-1]]
    # The checkpoint passes it, so the next run does not read (and reject) it again.
    assert pages[-1].checkpoint == {"ENG": T0 + timedelta(minutes=6)}


async def test_non_finite_numbers_do_not_crash_the_mapping(harness: LinearHarness) -> None:
    ids = harness.seed(2, start=T0, step=timedelta(minutes=1))
    harness.sandbox.garble_issue(ids[0], priority=float("inf"), estimate=float("nan"))
    harness.sandbox.garble_issue(ids[1], estimate=float("-inf"))
    connector = harness.connector()
    try:
        got = items_of(await collect(connector))
    finally:
        await connector.aclose()
    assert [(i.priority, i.story_points) for i in got] == [(0, None), (harness_priority(1), None)]


def harness_priority(n: int) -> int:
    """Our priority for the seed's Linear priority n % 5."""
    return {0: 0, 1: 4, 2: 3, 3: 2, 4: 1}[n % 5]


# ---------------------------------------------------------------------------------------------
# Teams, variables, injection
# ---------------------------------------------------------------------------------------------
async def test_unknown_team_key_is_fatal_and_named(harness: LinearHarness) -> None:
    connector = harness.connector(team_keys=["ENG", "NOPE"])
    try:
        with pytest.raises(FatalError) as info:
            await connector.check()
    finally:
        await connector.aclose()
    assert "'NOPE'" in str(info.value)
    assert "'ENG'" not in str(info.value)


@pytest.mark.parametrize("call", ["check", "changes", "all_ids"])
async def test_a_team_key_that_does_not_exist_is_fatal_and_named(
    harness: LinearHarness, call: str
) -> None:
    harness.seed(3, start=T0, step=timedelta(minutes=1))
    connector = harness.connector(team_keys=["ENG", "NOPE"])
    try:
        if call == "check":  # setting it up: an error naming it
            with pytest.raises(FatalError, match="no team with key 'NOPE'"):
                await connector.check()
        elif call == "changes":  # syncing: lost (the run fails naming it), ENG still synced
            pages = await collect(connector)
            [lost] = [p.lost for p in pages if p.lost]
            assert list(lost) == ["NOPE"] and lost["NOPE"].startswith("no team with this key")
            assert len(items_of(pages)) == 3
        else:  # listing: lost, never an empty listing the sweep would take for deletions
            parts = [part async for part in connector.all_ids()]
            lost_parts = [part for part in parts if part.lost]
            assert [(p.scope, list(p.ids)) for p in lost_parts] == [("NOPE", [])]
            assert sum(len(p) for p in parts if p.scope == "ENG") == 3
    finally:
        await connector.aclose()


async def test_a_quiet_team_is_checked_once_not_every_run(harness: LinearHarness) -> None:
    harness.seed(2, start=T0, step=timedelta(minutes=1))
    connector = harness.connector()
    later = {"ENG": T0 + timedelta(days=1)}  # nothing changed since: an empty first page
    try:
        assert items_of(await collect(connector, later)) == []
        assert items_of(await collect(connector, later)) == []
    finally:
        await connector.aclose()
    names = [r.json()["query"].split("(")[0].split()[-1] for r in harness.sandbox.requests]
    assert names == ["SyncIssueChanges", "SyncCheck", "SyncIssueChanges"]


def test_sandbox_lists_no_team_for_an_unknown_key(harness: LinearHarness) -> None:
    query = 'query { teams(filter: {key: {eq: "NOPE"}}) { nodes { id key } } }'
    status, body = post(harness.sandbox, query)
    assert status == 200 and body == {"data": {"teams": {"nodes": []}}}
    status, body = post(harness.sandbox, query.replace("NOPE", "ENG"))
    assert [t["key"] for t in body["data"]["teams"]["nodes"]] == ["ENG"]


async def test_request_log_shows_values_only_in_variables(harness: LinearHarness) -> None:
    harness.seed(7, start=T0, step=timedelta(minutes=3))
    since = T0 + timedelta(minutes=1)
    connector = harness.connector()
    try:
        await connector.check()
        got = items_of(await collect(connector, {"ENG": since}))
        ids = [i async for batch in connector.all_ids() for i in batch]
    finally:
        await connector.aclose()
    assert len(got) == 6 and len(ids) == 7
    bodies = graphql_bodies(harness.sandbox)
    assert {b["query"] for b in bodies} == {CHECK_QUERY, CHANGES_QUERY, IDS_QUERY}  # constant
    for body in bodies:
        assert "ENG" not in body["query"] and "2025" not in body["query"]
    pages = [b["variables"] for b in bodies if b["query"] == CHANGES_QUERY]
    assert pages[0] == {
        "filter": {
            "team": {"key": {"eq": "ENG"}},
            "updatedAt": {"gte": "2025-05-01T08:01:00.000Z"},
        },
        "last": 5,
        "before": None,
    }
    # The next page by keyset, never `before:` a cursor (which names an issue that may move):
    # issues changed after the newest one read, or at that instant and not read yet.
    assert pages[1] == {
        "filter": {
            "team": {"key": {"eq": "ENG"}},
            "or": [
                {"updatedAt": {"gt": "2025-05-01T08:15:00.000Z"}},
                {
                    "updatedAt": {"eq": "2025-05-01T08:15:00.000Z"},
                    "id": {"nin": [got[4].external_id]},
                },
            ],
        },
        "last": 5,
        "before": None,
    }
    check = next(b["variables"] for b in bodies if b["query"] == CHECK_QUERY)
    assert check["keys"] == ["ENG"]


async def test_injection_attempt_in_team_keys_is_inert(harness: LinearHarness) -> None:
    harness.seed(3, start=T0, step=timedelta(minutes=1))
    hostile = 'ENG" } } }) { nodes { id title } } #'
    connector = harness.connector(team_keys=[hostile])
    try:
        with pytest.raises(FatalError) as info:
            await connector.check()
        # The changes query carrying it matched nothing (a widened query would have listed ENG's
        # issues), and a team key that matches nothing is a lost scope, not "no issues" (the
        # assertion here used to be `pages == [] and ids == []`).
        pages = await collect(connector)
        parts = [part async for part in connector.all_ids()]
    finally:
        await connector.aclose()
    assert repr(hostile) in str(info.value)
    assert items_of(pages) == [] and [list(p.lost) for p in pages if p.lost] == [[hostile]]
    assert [(p.scope, list(p.ids), bool(p.lost)) for p in parts] == [(hostile, [], True)]
    assert CHANGES_QUERY in [body["query"] for body in graphql_bodies(harness.sandbox)]
    for body in graphql_bodies(harness.sandbox):
        assert hostile not in body["query"]
    assert any(hostile in str(body["variables"]) for body in graphql_bodies(harness.sandbox))
    assert len(harness.sandbox.issue_ids()) == 3


async def test_each_team_is_its_own_scope(harness: LinearHarness) -> None:
    harness.sandbox.add_team("OPS", "Platform Ops")
    eng = harness.seed(4, start=T0, step=timedelta(minutes=1))
    ops = [
        harness.sandbox.add_issue("OPS", title=f"ops {n}", updated_at=T0 + timedelta(minutes=n))[
            "id"
        ]
        for n in range(3)
    ]
    connector = harness.connector(team_keys=["ENG", "OPS"])
    try:
        pages = await collect(connector, {"ENG": T0 + timedelta(minutes=2)})
    finally:
        await connector.aclose()
    got = items_of(pages)
    assert [i.external_id for i in got] == eng[2:] + ops  # ENG from its cursor, OPS in full
    assert {i.scope for i in got} == {"ENG", "OPS"}
    final = {s: t for p in pages for s, t in p.checkpoint.items()}
    assert final == {"ENG": T0 + timedelta(minutes=3), "OPS": T0 + timedelta(minutes=2)}


# ---------------------------------------------------------------------------------------------
# Ordering under concurrent change
# ---------------------------------------------------------------------------------------------
async def test_changes_during_the_walk_keep_order_and_checkpoints_honest(
    harness: LinearHarness,
) -> None:
    ids = harness.seed(12, start=T0, step=timedelta(minutes=1))
    later = T0 + timedelta(hours=1)
    connector = harness.connector()
    pages: list[Page] = []
    try:
        async for page in connector.changes({}):
            pages.append(page)
            if len(pages) == 1:
                harness.update(ids[0], at=later, title="read, then changed")
                harness.update(ids[8], at=later + timedelta(seconds=1), title="changed, unread")
    finally:
        await connector.aclose()
    got = items_of(pages)
    times = [i.updated_at for i in got]
    assert times == sorted(times)
    assert [i.title for i in got if i.external_id == ids[0]] == ["Issue 0", "read, then changed"]
    assert [i.title for i in got if i.external_id == ids[8]] == ["changed, unread"]
    assert {i.external_id for i in got} == set(ids)
    marks = [p.checkpoint["ENG"] for p in pages if p.checkpoint]
    assert marks == sorted(marks) and marks[-1] == later + timedelta(seconds=1)


async def test_the_newest_issue_of_a_page_edited_during_the_walk_skips_nothing(
    harness: LinearHarness,
) -> None:
    """Linear's page cursors name an issue, resolved at its current `updatedAt`: walking on
    `before:` the newest issue of a page that was edited meanwhile would resume from its new
    place and skip every issue between (found by the model test: a bulk edit while a run paged;
    the checkpoint then passed them and no later run read them)."""
    ids = harness.seed(12, start=T0, step=timedelta(minutes=1))
    later = T0 + timedelta(hours=2)
    connector = harness.connector()
    pages: list[Page] = []
    try:
        async for page in connector.changes({}):
            pages.append(page)
            if len(pages) == 1:
                harness.update(ids[4], at=later, title="the page's newest, edited")
                harness.update(ids[9], at=later + timedelta(seconds=1), title="edited after it")
    finally:
        await connector.aclose()
    got = items_of(pages)
    assert {i.external_id for i in got} == set(ids), "an issue was skipped"
    assert [i.title for i in got if i.external_id == ids[4]] == [
        "Issue 4",
        "the page's newest, edited",
    ]
    times = [i.updated_at for i in got]
    assert times == sorted(times)
    marks = [p.checkpoint["ENG"] for p in pages if p.checkpoint]
    assert marks == sorted(marks) and marks[-1] == later + timedelta(seconds=1)


async def test_a_bulk_edit_while_a_run_pages_leaves_no_issue_without_its_row(
    harness: LinearHarness, pool: asyncpg.Pool
) -> None:
    """The model test's failure (long profile, seed 11), end to end: twelve issues created at one
    instant (more than a page), then, while the next run pages through them, a bulk edit of the
    first four by id, among them the issue the next page's cursor names. Each run commits its
    pages and checkpoints in PostgreSQL; after the next incremental run and its sweep every
    issue has its row, at its newest version."""
    sandbox = harness.sandbox
    harness.seed(6, start=T0, step=timedelta(minutes=1))
    team = await make_team(pool, f"Team-{uuid.uuid4().hex[:6]}")
    config = {"api_url": f"{sandbox.url}/graphql", "token": PLANTED_TOKEN, "team_keys": ["ENG"]}
    integration = await make_integration(pool, team, "linear", {**config, "page_size": 4})
    settings = Settings(home=harness.tmp_path / "home", sweep_every_runs=0)

    async def run(sweep: bool = False) -> sync.RunResult:
        chosen = settings.model_copy(update={"sweep_every_runs": 1}) if sweep else settings
        result = await sync.run_integration(
            pool, integration, chosen, environ={}, options=RunOptions(force=True)
        )
        assert result.outcome == "succeeded", result.summary()
        return result

    await run()
    bulk = T0 + timedelta(hours=1)
    for n in range(12):
        sandbox.add_issue("ENG", title=f"bulk {n}", updated_at=bulk)
    tied = sorted(
        i for i in sandbox.issue_ids() if sandbox.issue(i)["updatedAt"] == bulk_text(bulk)
    )
    requests = 0

    def edit_while_paging(request: Request) -> None:
        nonlocal requests
        requests += 1
        if requests == 2:  # after the first page, before the second is answered
            for issue_id in tied[:4]:
                sandbox.update_issue(issue_id, at=bulk + timedelta(minutes=10), title="edited")

    sandbox.between_requests = edit_while_paging
    try:
        await run()
    finally:
        sandbox.between_requests = None
    await run(sweep=True)
    rows = {
        r["external_id"]: r
        for r in await pool.fetch("SELECT * FROM work_items WHERE integration_id = $1", integration)
    }
    for issue_id in sandbox.issue_ids():
        issue = sandbox.issue(issue_id)
        row = rows.get(issue_id)
        assert row is not None, f"{issue['identifier']} has no row"
        assert (row["title"], bulk_text(row["source_updated_at"])) == (
            issue["title"],
            issue["updatedAt"],
        ), issue["identifier"]
        assert row["removed_upstream_at"] is None


def bulk_text(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# Listings are complete or fail: a page that promises more than it holds is asked again
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [0, 2], ids=["empty", "short"])
async def test_a_hollow_changes_page_is_asked_again_not_skipped(
    harness: LinearHarness, keep: int
) -> None:
    ids = harness.seed(12, start=T0, step=timedelta(minutes=1))
    harness.sandbox.hollow_pages_next(keep=keep)  # the oldest page: hasPreviousPage, few nodes
    connector = harness.connector()
    try:
        pages = await collect(connector)
    finally:
        await connector.aclose()
    assert [i.external_id for i in items_of(pages)] == ids


async def test_changes_pages_that_stay_hollow_fail_the_run(harness: LinearHarness) -> None:
    harness.seed(12, start=T0, step=timedelta(minutes=1))
    harness.sandbox.hollow_pages_next(count=50, cursors=False)
    connector = harness.connector()
    pages: list[Page] = []
    try:
        with pytest.raises(RetriableError, match="hasPreviousPage"):
            async for page in connector.changes({}):
                pages.append(page)
    finally:
        await connector.aclose()
    assert pages == []


@pytest.mark.parametrize("cursors", [True, False], ids=["cursors", "no_cursors"])
async def test_a_hollow_ids_page_is_asked_again_not_cut_short(
    harness: LinearHarness, cursors: bool
) -> None:
    connector = harness.connector()
    connector.ids_page_size = 4
    ids = harness.seed(10, start=T0, step=timedelta(minutes=1))
    harness.sandbox.hollow_pages_next(keep=1, cursors=cursors)
    try:
        await connector.check()
        listed = [i async for batch in connector.all_ids() for i in batch]
    finally:
        await connector.aclose()
    assert sorted(listed) == sorted(ids)


async def test_an_ids_listing_that_stays_incomplete_fails(harness: LinearHarness) -> None:
    connector = harness.connector()
    connector.ids_page_size = 4
    harness.seed(10, start=T0, step=timedelta(minutes=1))
    try:
        await connector.check()
        harness.sandbox.hollow_pages_next(count=50, cursors=False)
        with pytest.raises(RetriableError, match="hasNextPage"):
            [i async for batch in connector.all_ids() for i in batch]
    finally:
        await connector.aclose()


async def test_an_issue_listed_without_an_id_fails_the_listing(harness: LinearHarness) -> None:
    ids = harness.seed(3, start=T0, step=timedelta(minutes=1))
    harness.sandbox.garble_issue(ids[1], id=None)
    connector = harness.connector()
    try:
        with pytest.raises(RetriableError, match="without an id"):
            [i async for batch in connector.all_ids() for i in batch]
        with pytest.raises(RetriableError, match="without an id"):
            await collect(connector)
    finally:
        await connector.aclose()


class ForwardOnlySandbox(LinearSandbox):
    """A server that reads `last` as `first` (the failure the connector must not trust)."""

    def _page(self, ordered: Any, args: Any, *rest: Any, **kw: Any) -> Any:
        args = {**args, "first": args.get("last"), "last": None, "before": None}
        return super()._page(ordered, args, *rest, **kw)


async def test_a_server_that_ignores_backward_paging_is_refused(tmp_path: Path) -> None:
    with ForwardOnlySandbox(token=PLANTED_TOKEN) as sandbox:
        harness = LinearHarness(sandbox, tmp_path)
        harness.seed(12, start=T0, step=timedelta(minutes=1))
        connector = harness.connector()
        pages: list[Page] = []
        try:
            with pytest.raises(FatalError, match="did not page backwards"):
                async for page in connector.changes({}):
                    pages.append(page)
        finally:
            await connector.aclose()
    assert pages == [], "nothing may be yielded (or checkpointed) from such a walk"


class LooseHasNextPageSandbox(LinearSandbox):
    """Pages backwards correctly but always says hasNextPage (allowed for `before`, not spec for
    a first `last:` page): the connector must check, not give up."""

    def _page(self, *args: Any, **kw: Any) -> Any:
        answer = super()._page(*args, **kw)
        answer["pageInfo"]["hasNextPage"] = True
        return answer


async def test_a_loose_has_next_page_is_probed_not_trusted(tmp_path: Path) -> None:
    with LooseHasNextPageSandbox(token=PLANTED_TOKEN) as sandbox:
        harness = LinearHarness(sandbox, tmp_path)
        ids = harness.seed(12, start=T0, step=timedelta(minutes=1))
        connector = harness.connector()
        try:
            got = items_of(await collect(connector))
        finally:
            await connector.aclose()
        names = [r.json()["query"].split("(")[0].split()[-1] for r in sandbox.requests]
    assert [i.external_id for i in got] == ids
    assert names == ["SyncIssueChanges", "SyncIssueProbe", "SyncIssueChanges", "SyncIssueChanges"]


# ---------------------------------------------------------------------------------------------
# Auth and transport errors
# ---------------------------------------------------------------------------------------------
async def test_wrong_api_key_is_fatal_with_linears_message(harness: LinearHarness) -> None:
    connector = harness.connector(token="lin_api_wrong-key-123")
    try:
        with pytest.raises(FatalError) as info:
            await connector.check()
    finally:
        await connector.aclose()
    assert str(info.value).startswith("Linear rejected the API key")
    assert "You need to authenticate" in str(info.value)
    assert "lin_api_wrong-key-123" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None  # nothing chained
    assert harness.sandbox.requests[-1].headers["authorization"] == "lin_api_wrong-key-123"


async def test_oauth_scheme_sends_bearer(tmp_path: Path) -> None:
    with LinearSandbox(token="lin_api_x", oauth_token="oauth-abc") as sandbox:
        harness = LinearHarness(sandbox, tmp_path)
        harness.seed(1, start=T0, step=timedelta(minutes=1))
        oauth = harness.connector(token="oauth-abc", auth_scheme="oauth")
        raw = harness.connector(token="oauth-abc")
        try:
            await oauth.check()
            assert len(items_of(await collect(oauth))) == 1
            with pytest.raises(FatalError):
                await raw.check()
        finally:
            await oauth.aclose()
            await raw.aclose()
        sent = [r.headers["authorization"] for r in sandbox.requests]
    assert sent[0] == "Bearer oauth-abc" and sent[-1] == "oauth-abc"


async def test_timeout_is_retried(harness: LinearHarness) -> None:
    harness.seed(2, start=T0, step=timedelta(minutes=1))
    connector = harness.connector()
    try:
        harness.sandbox.fail_next("timeout")
        got = items_of(await collect(connector))
    finally:
        await connector.aclose()
    assert len(got) == 2
    assert len(harness.sandbox.requests) == 2


async def test_graphql_validation_error_is_fatal(harness: LinearHarness) -> None:
    connector = harness.connector()
    try:
        harness.sandbox.fail_next("400_json")
        with pytest.raises(FatalError) as info:
            await collect(connector)
    finally:
        await connector.aclose()
    assert 'Cannot query field "bogus"' in str(info.value)
    assert len(harness.sandbox.requests) == 1, "validation errors are not retried"


async def test_connection_refused_is_retriable(tmp_path: Path) -> None:
    with LinearSandbox(token=PLANTED_TOKEN) as sandbox:
        harness = LinearHarness(sandbox, tmp_path)
        url = sandbox.url
    connector = harness.build(config={"api_url": f"{url}/graphql"}, max_retries=1)
    try:
        with pytest.raises(RetriableError) as info:
            await connector.check()
    finally:
        await connector.aclose()
    assert "cannot reach Linear" in str(info.value)
    assert PLANTED_TOKEN not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


# ---------------------------------------------------------------------------------------------
# The sandbox answers as Linear does (what the connector's design relies on)
# ---------------------------------------------------------------------------------------------
def post(sandbox: LinearSandbox, query: str, variables: dict[str, Any] | None = None) -> Any:
    response = httpx.post(
        f"{sandbox.url}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": PLANTED_TOKEN},
    )
    assert "X-RateLimit-Requests-Reset" in response.headers
    return response.status_code, response.json()


def test_sandbox_orders_newest_first_and_hides_archived_by_default(
    harness: LinearHarness,
) -> None:
    ids = harness.seed(4, start=T0, step=timedelta(minutes=1))
    harness.sandbox.archive_issue(ids[1], at=T0 + timedelta(minutes=30))
    harness.sandbox.trash_issue(ids[2], at=T0 + timedelta(minutes=31))
    query = """query Q($a: Boolean) {
      issues(orderBy: updatedAt, includeArchived: $a) { nodes { id } }
    }"""
    _, shown = post(harness.sandbox, query, {"a": False})
    _, everything = post(harness.sandbox, query, {"a": True})
    assert [n["id"] for n in shown["data"]["issues"]["nodes"]] == [ids[3], ids[0]]
    assert [n["id"] for n in everything["data"]["issues"]["nodes"]] == [
        ids[2],
        ids[1],
        ids[3],
        ids[0],
    ]
    status, last = post(
        harness.sandbox,
        "{ issues(orderBy: updatedAt, last: 1) { nodes { id } pageInfo { hasPreviousPage } } }",
    )
    assert status == 200 and last["data"]["issues"] == {
        "nodes": [{"id": ids[0]}],
        "pageInfo": {"hasPreviousPage": True},
    }


def test_sandbox_rejects_what_linear_rejects(harness: LinearHarness) -> None:
    status, body = post(harness.sandbox, "{ issues(bogus: []) { nodes { id } } }")
    assert status == 400 and "Unknown argument" in body["errors"][0]["message"]
    # `sort` is Linear's ([INTERNAL]): refused as not served, not as unknown (this asserted
    # "Unknown argument" for it, which Linear never says about `sort`).
    status, body = post(harness.sandbox, "{ issues(sort: []) { nodes { id } } }")
    assert status == 400 and "does not serve the argument" in body["errors"][0]["message"]
    status, body = post(harness.sandbox, "{ issues(first: 251) { nodes { id } } }")
    assert status == 400 and body["errors"][0]["extensions"]["type"] == "invalid input"
    status, body = post(harness.sandbox, "{ issues(filter: {label: {}}) { nodes { id } } }")
    assert status == 400 and "IssueFilter" in body["errors"][0]["message"]
    # (This used to select `{ x }`: Linear validates the document before it reads variables, so
    # that query is refused for `x`, as below, and never gets to the missing variable.)
    query = "query Q($f: IssueFilter!) { issues(filter: $f) { nodes { id } } }"
    status, body = post(harness.sandbox, query)
    assert status == 400 and "was not provided" in body["errors"][0]["message"]
    status, body = post(harness.sandbox, "{ issues { nodes { nope } } }")
    assert status == 400 and 'Cannot query field "nope"' in body["errors"][0]["message"]
    response = httpx.post(f"{harness.sandbox.url}/graphql", json={"query": "{ viewer { id } }"})
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "AUTHENTICATION_ERROR"


@pytest.mark.parametrize(
    ("query", "variables", "code", "message"),
    [
        (  # an unknown argument on a nested field
            "{ issues { nodes { labels(bogus: 1) { nodes { name } } } } }",
            {},
            "GRAPHQL_VALIDATION_FAILED",
            'Unknown argument "bogus" on field "Issue.labels".',
        ),
        (  # a variable declared with the wrong type
            "query($n: String) { issues(last: $n) { nodes { id } } }",
            {"n": "5"},
            "GRAPHQL_VALIDATION_FAILED",
            'Variable "$n" of type "String" used in position expecting type "Int".',
        ),
        (  # a value of the wrong type for its variable
            "query($n: Int) { issues(last: $n) { nodes { id } } }",
            {"n": "5"},
            "BAD_USER_INPUT",
            'Variable "$n" got invalid value "5"; Int cannot represent non-integer value: "5"',
        ),
        (  # a number for a String
            "{ teams(filter: {key: {eq: 5}}) { nodes { id } } }",
            {},
            "GRAPHQL_VALIDATION_FAILED",
            "String cannot represent a non string value: 5",
        ),
        (  # eqIgnoreCase on an id comparator, written in the document
            '{ issues(filter: {id: {eqIgnoreCase: "x"}}) { nodes { id } } }',
            {},
            "GRAPHQL_VALIDATION_FAILED",
            'Field "eqIgnoreCase" is not defined by type "IssueIDComparator".',
        ),
        (  # … and sent in a variable
            "query($f: IssueFilter) { issues(filter: $f) { nodes { id } } }",
            {"f": {"id": {"eqIgnoreCase": "x"}}},
            "BAD_USER_INPUT",
            'Variable "$f" got invalid value {"eqIgnoreCase": "x"} at "f.id"; Field "eqIgnoreCase"'
            ' is not defined by type "IssueIDComparator".',
        ),
        (  # above Linear's 10,000 points: 250 x (Issue 1 + 50 labels x 1.1) = 14,000
            "{ issues(first: 250) { nodes { labels { nodes { name } } } } }",
            {},
            "INPUT_ERROR",
            "Query too complex",
        ),
    ],
)
def test_sandbox_refuses_what_linear_refuses_with_linears_errors(
    harness: LinearHarness, query: str, variables: dict[str, Any], code: str, message: str
) -> None:
    harness.seed(2, start=T0, step=timedelta(minutes=1))
    status, body = post(harness.sandbox, query, variables)
    assert status == 400 and body["data"] is None
    assert body["errors"][0]["message"] == message
    assert body["errors"][0]["extensions"]["code"] == code
    if code == "INPUT_ERROR":
        assert body["errors"][0]["extensions"]["userPresentableMessage"] == (
            "The query is too complex. Complexity: 14000. Maximum allowed complexity: 10000."
        )


def test_sandbox_reports_complexity_as_linear_scores_it(harness: LinearHarness) -> None:
    harness.seed(3, start=T0, step=timedelta(minutes=1))
    query = "{ issues(last: 7) { nodes { id title labels(first: 2) { nodes { name } } } } }"
    first = httpx.post(
        f"{harness.sandbox.url}/graphql",
        json={"query": query},
        headers={"Authorization": PLANTED_TOKEN},
    )
    second = httpx.post(
        f"{harness.sandbox.url}/graphql",
        json={"query": query},
        headers={"Authorization": PLANTED_TOKEN},
    )
    # 7 x (Issue 1 + id, title 0.2 + 2 x (IssueLabel 1 + name 0.1)) = 23.8, rounded up
    assert first.status_code == 200 and first.headers["X-Complexity"] == "24"
    spent = int(first.headers["X-RateLimit-Complexity-Remaining"]) - int(
        second.headers["X-RateLimit-Complexity-Remaining"]
    )
    assert spent == 24


def test_sandbox_pages_labels_and_finds_an_issue_by_id_or_identifier(
    harness: LinearHarness,
) -> None:
    names = [f"L{n}" for n in range(5)]
    issue = harness.sandbox.add_issue(title="many labels", updated_at=T0, labels=names)
    query = """query Q($id: String!, $after: String) {
      issue(id: $id) {
        identifier
        labels(first: 2, after: $after) { nodes { name } pageInfo { hasNextPage endCursor } }
      }
    }"""
    seen: list[str] = []
    after = None
    for key in (issue["id"], "ENG-1", "ENG-1"):
        status, body = post(harness.sandbox, query, {"id": key, "after": after})
        assert status == 200 and body["data"]["issue"]["identifier"] == "ENG-1"
        labels = body["data"]["issue"]["labels"]
        seen += [label["name"] for label in labels["nodes"]]
        after = labels["pageInfo"]["endCursor"]
        if not labels["pageInfo"]["hasNextPage"]:
            break
    assert seen == names
    status, body = post(harness.sandbox, query, {"id": "ENG-404"})
    assert status == 400 and body["errors"][0]["message"] == "Entity not found: Issue"


def test_sandbox_demo_seed_and_config(tmp_path: Path) -> None:
    with LinearSandbox(token="demo-token") as sandbox:
        sandbox.seed_demo()
        config = LinearConfig.model_validate(sandbox.demo_config())
        nodes = [sandbox.issue(i) for i in sandbox.issue_ids()]
    assert config.team_keys == ["ENG", "OPS"] and config.token is not None
    assert config.token.get_secret_value() == "demo-token"
    assert len(nodes) >= 30
    assert {n["state"]["type"] for n in nodes} >= {"started", "completed", "canceled", "backlog"}
    assert any(n["trashed"] for n in nodes) and any(n["archivedAt"] for n in nodes)
    assert any(label["name"] == "Blocked" for n in nodes for label in n["labels"]["nodes"])
    assert any(n["state"]["name"] == "In Review" for n in nodes)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        LinearConfig.model_validate({"team_keys": []})
    with pytest.raises(ValueError):
        LinearConfig.model_validate({"team_keys": ["ENG"], "page_size": 251})
    with pytest.raises(ValueError):
        LinearConfig.model_validate({"team_keys": ["ENG"], "unknown": 1})
    config = LinearConfig.model_validate({"team_keys": [" ENG ", "ENG", "OPS"]})
    assert config.team_keys == ["ENG", "OPS"]
    assert config.api_url == "https://api.linear.app/graphql" and config.auth_scheme == "api_key"

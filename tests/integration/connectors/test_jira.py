"""The Jira connector against the Jira sandbox, with the real python-jira client.

The shared contract, then what is Jira's own: the JQL cursor in the user's time zone, JQL
injection through `projects`, status mapping, ADF, fields by name, Retry-After on 503 and
token pagination.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import SecretStr, ValidationError

from connectors.base import (
    ConfigError,
    ConnectorContext,
    FatalError,
    Page,
    Person,
    RetriableError,
    Status,
)
from connectors.jira import JiraConfig, JiraConnector, jql_quote
from connectors.sandbox.base import Request, Response
from connectors.sandbox.jira import (
    JiraDataCenterSandbox,
    JiraSandbox,
    JqlError,
    _stable_id,
    search_body_problem,
)
from connectors.sandbox.jql import UNBOUNDED
from tests.conformance import checker
from tests.integration.connectors.contract import (
    PLANTED_TOKEN,
    T0,
    ConnectorContract,
    ModelTraits,
    collect,
    items_of,
)

PAGE_SIZE = 5
#: Both deployments, and Data Center's two ways of signing in.
MODES = ["cloud", "dc-pat", "dc-basic"]


class JiraHarness:
    """The contract's Harness for Jira: project ABC in the sandbox, Jira Cloud (email + API
    token) or, for a `JiraDataCenterSandbox`, Data Center (a personal access token, or
    `username` + password when `basic`)."""

    page_size = PAGE_SIZE
    model = ModelTraits()

    def __init__(self, sandbox: JiraSandbox, tmp_path: Path, *, basic: bool = False) -> None:
        self.sandbox = sandbox
        self.tmp_path = tmp_path
        self.basic = basic
        self.sprints: dict[str, str] = {}  # the connector's sprint id -> the sprint's name

    @property
    def dc(self) -> bool:
        return isinstance(self.sandbox, JiraDataCenterSandbox)

    def seed(self, count: int, *, start: datetime, step: timedelta) -> list[str]:
        issues = [
            self.sandbox.add_issue("ABC", f"Issue {n}", updated=start + n * step)
            for n in range(count)
        ]
        return [self.sandbox.external_id(i) for i in issues]

    def update(
        self, external_id: str, *, at: datetime, title: str | None = None, done: bool | None = None
    ) -> None:
        changes: dict[str, Any] = {}
        if title is not None:
            changes["summary"] = title
        if done is not None:
            changes["status"] = "Done" if done else "To Do"
        self.sandbox.update_issue(external_id.rsplit("/", 1)[1], at=at, **changes)

    def key(self, external_id: str) -> str:
        return self.sandbox.issue(external_id.rsplit("/", 1)[1]).key

    def add_sprint(self, name: str, state: str) -> str:
        now = datetime.now(UTC).replace(microsecond=0)
        start, end = (now - timedelta(days=28), now - timedelta(days=14))
        if state == "active":
            start, end = (now - timedelta(days=7), now + timedelta(days=7))
        sprint = self.sandbox.add_sprint(name, state, start=start, end=end)
        external_id = f"{self.sandbox.site}/sprint/{sprint.id}"
        self.sprints[external_id] = name
        return external_id

    def add_epic(self, title: str, *, at: datetime) -> str:
        issue = self.sandbox.add_issue("ABC", title, issuetype="Epic", updated=at)
        return self.sandbox.external_id(issue)

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
            "ABC", f"A {kind}", issuetype=kind.title(), labels=list(labels),
            assignee=self.display_name(assignee) if assignee else None,
            sprint=self.sprints[sprint], parent=self.key(parent), updated=at,
        )  # fmt: skip
        return self.sandbox.external_id(issue)

    def move(self, child: str, *, at: datetime, parent: str, sprint: str) -> None:
        self.sandbox.update_issue(
            child.rsplit("/", 1)[1], at=at, parent=self.key(parent), sprint=self.sprints[sprint]
        )

    @staticmethod
    def display_name(handle: str) -> str:
        return f"{handle.title()} Example"  # the sandbox gives every user an e-mail address

    def person(self, handle: str) -> Person:
        name = self.display_name(handle)
        return Person(name, f"JIRAUSER{_stable_id(name)}" if self.dc else _stable_id(name))

    def listings(self) -> int:
        return len(self.sandbox.requests_to("/search"))

    def connector(self, *, token: str = PLANTED_TOKEN, **config: Any) -> JiraConnector:
        values: dict[str, Any] = {
            "url": self.sandbox.url,
            "projects": ["ABC"],
            "page_size": PAGE_SIZE,
            "request_timeout": 2.0,
        }
        if isinstance(self.sandbox, JiraDataCenterSandbox):
            if self.basic:
                values["username"] = self.sandbox.username
        else:
            values["email"] = self.sandbox.email
        values.update(config)
        if "jql" in config:
            values.pop("projects", None)
        ctx = ConnectorContext(
            integration_id="test",
            token=SecretStr(token),
            cache_dir=self.tmp_path,
            max_retries=3,
            sleep_cap=5.0,
        )
        return JiraConnector(JiraConfig.model_validate(values), ctx)


#: Jira Cloud's and Jira Data Center's published APIs, for the endpoints the connector calls
#: (tests/conformance/jira.json, jira_dc.json): every request of every test here is checked.
JIRA_API = checker.load("jira")
JIRA_DC_API = checker.load("jira_dc")


@contextmanager
def checked(server: JiraSandbox) -> Iterator[JiraSandbox]:
    """A started sandbox whose request log must conform to its deployment's published API when
    the test ends, and whose successful answers must have the shapes the description gives."""
    api = JIRA_DC_API if isinstance(server, JiraDataCenterSandbox) else JIRA_API
    with server, checker.conforming(api, server):
        server.timeout_stall = 1.5
        server.add_project("ABC", "Alpha")
        yield server


@pytest.fixture
def sandbox() -> Iterator[JiraSandbox]:
    """A Jira Cloud sandbox, checked against Cloud's published API."""
    with checked(JiraSandbox(token=PLANTED_TOKEN)) as server:
        yield server


@pytest.fixture
def harness(sandbox: JiraSandbox, tmp_path: Path) -> JiraHarness:
    return JiraHarness(sandbox, tmp_path)


@pytest.fixture(params=MODES)
def any_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JiraHarness]:
    """The harness in each mode: Jira Cloud, Data Center with a PAT, Data Center with basic."""
    mode = request.param
    if mode == "cloud":
        server: JiraSandbox = JiraSandbox(token=PLANTED_TOKEN)
    else:
        server = JiraDataCenterSandbox(token=PLANTED_TOKEN, password=PLANTED_TOKEN)
    with checked(server) as started:
        yield JiraHarness(started, tmp_path, basic=mode == "dc-basic")


@pytest.fixture
def off_spec_sandbox() -> Iterator[JiraSandbox]:
    """A sandbox for tests that send, or make it answer, what the published API does not allow
    on purpose (malformed issues, refused bodies): not checked."""
    with JiraSandbox(token=PLANTED_TOKEN) as server:
        server.timeout_stall = 1.5
        server.add_project("ABC", "Alpha")
        yield server


@pytest.fixture(params=MODES)
def off_spec_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JiraHarness]:
    """`off_spec_sandbox` in each mode (Cloud, DC with a PAT, DC with basic)."""
    mode = request.param
    if mode == "cloud":
        server: JiraSandbox = JiraSandbox(token=PLANTED_TOKEN)
    else:
        server = JiraDataCenterSandbox(token=PLANTED_TOKEN, password=PLANTED_TOKEN)
    with server:
        server.timeout_stall = 1.5
        server.add_project("ABC", "Alpha")
        yield JiraHarness(server, tmp_path, basic=mode == "dc-basic")


class TestJiraContract(ConnectorContract):
    """The shared contract suite, against Jira Cloud and Jira Data Center (PAT and basic)."""

    @pytest.fixture
    def harness(self, any_harness: JiraHarness) -> JiraHarness:
        return any_harness


def searches(sandbox: JiraSandbox, method: str | None = None) -> list[Request]:
    """The search requests, whichever the deployment's search is (`search/jql`, `search`)."""
    return sandbox.requests_to("/search", method)


async def run(connector: JiraConnector, since: dict[str, datetime] | None = None) -> list[Any]:
    try:
        return items_of(await collect(connector, since))
    finally:
        await connector.aclose()


# ---------------------------------------------------------------------------------------------
# Time zones: the JQL literal is read in the user's zone at minute granularity
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("zone", ["Australia/Sydney", "America/Los_Angeles", "Asia/Kolkata"])
async def test_no_update_near_the_cursor_is_lost_in_the_users_time_zone(
    any_harness: JiraHarness, zone: str
) -> None:
    harness = any_harness
    sandbox = harness.sandbox
    sandbox.time_zone = zone
    since = datetime(2025, 5, 1, 8, 7, 20, tzinfo=UTC)
    offsets = {
        "2 min before": -timedelta(minutes=2),
        "1 s before": -timedelta(seconds=1),
        "at": timedelta(0),
        "30 s after": timedelta(seconds=30),
        "next minute boundary": timedelta(seconds=40),  # 08:08:00 exactly
        "59.9 s after": timedelta(seconds=59, milliseconds=900),
        "an hour after": timedelta(hours=1),
    }
    keys = {
        label: sandbox.add_issue("ABC", label, updated=since + delta).key
        for label, delta in offsets.items()
    }
    got = {i.external_key for i in await run(harness.connector(), {"ABC": since})}
    must = {keys[k] for k in offsets if offsets[k] >= timedelta(0)}
    assert must <= got, f"lost {must - got} in {zone}"
    # The literal is floored to the minute in the user's zone, not shifted by hours: an issue
    # two minutes before the cursor is not re-read (it would be if the zone were ignored).
    assert keys["2 min before"] not in got
    search = sandbox.requests_to("/search")[0].query["jql"][0]
    local = since.astimezone(sandbox.zone()).strftime("%Y-%m-%d %H:%M")
    assert f'updated >= "{local}"' in search


async def test_cursor_flows_across_runs_in_a_non_utc_zone(any_harness: JiraHarness) -> None:
    harness = any_harness
    sandbox = harness.sandbox
    sandbox.time_zone = "America/Los_Angeles"
    ids = harness.seed(7, start=T0, step=timedelta(minutes=3))
    connector = harness.connector()
    try:
        pages = await collect(connector)
        checkpoint = pages[-1].checkpoint["ABC"]
        assert checkpoint == T0 + timedelta(minutes=18)
        # A change lands 30 s after the committed high-water mark.
        late = sandbox.add_issue("ABC", "late", updated=checkpoint + timedelta(seconds=30))
        since = {"ABC": checkpoint - connector.overlap}
        again = items_of(await collect(connector, since))
    finally:
        await connector.aclose()
    keys = [i.external_key for i in again]
    assert late.key in keys
    assert len(keys) < len(ids), "only the overlap window and the change"


async def test_checkpoint_never_passes_the_server_clock(any_harness: JiraHarness) -> None:
    harness = any_harness
    harness.sandbox.set_clock(T0 + timedelta(minutes=10))
    harness.seed(3, start=T0, step=timedelta(minutes=8))  # the last one is "in the future"
    pages = await collect_and_close(harness.connector())
    assert pages[-1].checkpoint["ABC"] == T0 + timedelta(minutes=10)


async def collect_and_close(connector: JiraConnector) -> list[Any]:
    try:
        return await collect(connector)
    finally:
        await connector.aclose()


# ---------------------------------------------------------------------------------------------
# JQL injection through `projects`, and the admin's JQL kept intact
# ---------------------------------------------------------------------------------------------
INJECTIONS = [
    'ABC" OR project != "ABC',
    'ABC") OR project not in ("ABC',
    'ABC" OR project = "XYZ',
    "ABC\\",
]


@pytest.mark.parametrize("hostile", INJECTIONS)
async def test_jql_injection_in_projects_is_inert(any_harness: JiraHarness, hostile: str) -> None:
    harness = any_harness
    sandbox = harness.sandbox
    sandbox.add_project("XYZ", "Secret")
    mine = sandbox.add_issue("ABC", "mine", updated=T0)
    sandbox.add_issue("XYZ", "other project's", updated=T0)
    connector = harness.connector(projects=["ABC", hostile])
    try:
        pages = await collect(connector)
    finally:
        await connector.aclose()
    # Quoted, the hostile key is one (unknown) project value; Jira says so (the scope is lost)
    # and nothing leaks.
    assert [list(p.lost) for p in pages if p.lost] == [[hostile]]
    assert [i.external_key for i in items_of(pages)] == [mine.key]
    sent = sandbox.requests_to("/search")[-1].query["jql"][0]
    assert sent.startswith(f"project = {jql_quote(hostile)} ")  # each project is its own scope
    # The sandbox really holds both projects, so a leak would have shown.
    assert {i.key for i in sandbox.evaluate('project in ("ABC", "XYZ")')} >= {mine.key}
    assert len(sandbox.evaluate('project in ("ABC", "XYZ")')) == 2


def test_the_sandbox_would_show_an_unquoted_injection(sandbox: JiraSandbox) -> None:
    """Guard for the test above: built naively, the same value changes the query's meaning."""
    sandbox.add_project("XYZ", "Secret")
    sandbox.add_issue("ABC", "mine", updated=T0)
    sandbox.add_issue("XYZ", "other", updated=T0)
    naive = 'project in ("ABC") OR project not in ("ABC") ORDER BY key ASC'
    assert {i.project for i in sandbox.evaluate(naive)} == {"ABC", "XYZ"}
    with pytest.raises(JqlError):
        sandbox.evaluate('project in ("ABC" OR project != "ABC")')


async def test_a_project_name_with_quotes_stays_one_literal(any_harness: JiraHarness) -> None:
    harness = any_harness
    sandbox = harness.sandbox
    sandbox.add_project("QT", 'Team "Q" \\ Tools')
    sandbox.add_project("XYZ", "Secret")
    quoted = sandbox.add_issue("QT", "quoted project", updated=T0)
    sandbox.add_issue("XYZ", "other", updated=T0)
    got = await run(harness.connector(projects=['Team "Q" \\ Tools']))
    assert [i.external_key for i in got] == [quoted.key]


@pytest.mark.parametrize("bad", ["ABC\nOR project = XYZ", "ABC\x00", "AB\rC", " "])
def test_control_characters_in_projects_are_a_config_error(bad: str) -> None:
    with pytest.raises(ValidationError):
        JiraConfig(url="https://x.atlassian.net", email="a@b.c", projects=[bad])


async def test_admin_jql_is_wrapped_and_its_order_by_dropped(any_harness: JiraHarness) -> None:
    harness = any_harness
    sandbox = harness.sandbox
    sandbox.add_project("XYZ", "Other")
    sandbox.add_issue("ABC", "old abc", updated=T0)
    sandbox.add_issue("XYZ", "old xyz", updated=T0)
    new = sandbox.add_issue("XYZ", "new xyz", updated=T0 + timedelta(hours=2))
    connector = harness.connector(jql="project = ABC OR project = XYZ ORDER BY created DESC")
    [scope] = await connector.scopes()  # one scope for an admin's JQL, keyed by its digest
    assert scope.startswith("jql:")
    got = await run(connector, {scope: T0 + timedelta(hours=1)})
    # Without the parentheses `… OR project = XYZ AND updated >= …` would return all of ABC.
    assert [i.external_key for i in got] == [new.key]
    sent = sandbox.requests_to("/search")[-1].query["jql"][0]
    assert sent.startswith("(project = ABC OR project = XYZ) AND updated >= ")
    assert sent.endswith("ORDER BY updated ASC, key ASC")


async def test_bad_jql_is_fatal_and_quotes_jira(any_harness: JiraHarness) -> None:
    harness = any_harness
    connector = harness.connector(jql="project = ABC AND updated >=")
    try:
        with pytest.raises(FatalError) as info:
            await connector.check()
    finally:
        await connector.aclose()
    assert "Jira rejected the query (400)" in str(info.value)
    assert "Error in the JQL Query" in str(info.value)
    assert PLANTED_TOKEN not in str(info.value)


async def test_long_jql_goes_in_a_post_body(harness: JiraHarness) -> None:
    harness.seed(7, start=T0, step=timedelta(minutes=1))
    long_jql = "project = ABC AND summary !~ " + jql_quote("x" * 1600)
    got = await run(harness.connector(jql=long_jql))
    assert len(got) == 7
    posts = harness.sandbox.requests_to("/search/jql", method="POST")
    assert len(posts) == 2 and not harness.sandbox.requests_to("/search/jql", method="GET")
    # The second page is a new search from the newest minute read (keyset paging), also a POST.
    assert "nextPageToken" not in posts[0].json() and "updated >=" in posts[1].json()["jql"]
    # Only what SearchAndReconcileRequestBean allows, nothing null (the SDK sends
    # "expand": null, "properties": null, which the sandbox, like the schema, refuses).
    # Plus the changelog the item search asks for (a string in this bean).
    for post in posts:
        assert set(post.json()) == {"jql", "fields", "maxResults", "expand"}
        assert post.json()["expand"] == "changelog"
        assert search_body_problem(post.json()) is None


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"jql": "project = ABC", "expand": None}, "'expand': expected str, got null"),
        ({"jql": "project = ABC", "properties": None}, "'properties': expected list"),
        ({"jql": "project = ABC", "failFast": True}, 'Unrecognized field "failFast"'),
        ({"jql": "project = ABC", "fields": ["id", 3]}, "'fields': expected list"),
        ({"jql": "project = ABC", "maxResults": True}, "'maxResults': expected int"),
    ],
)
def test_the_sandbox_refuses_a_search_body_the_schema_does_not_allow(
    off_spec_sandbox: JiraSandbox, body: dict[str, Any], problem: str
) -> None:
    sandbox = off_spec_sandbox
    answer = requests.post(
        f"{sandbox.url}/rest/api/3/search/jql",
        json=body,
        auth=(sandbox.email, PLANTED_TOKEN),
        timeout=5,
    )
    assert answer.status_code == 400 and problem in answer.json()["errorMessages"][0]
    allowed = {"jql": "project = ABC", "fields": ["id"], "maxResults": 5, "fieldsByKeys": False}
    ok = requests.post(
        f"{sandbox.url}/rest/api/3/search/jql",
        json=allowed,
        auth=(sandbox.email, PLANTED_TOKEN),
        timeout=5,
    )
    assert ok.status_code == 200


@pytest.mark.parametrize("jql", ["", "ORDER BY key DESC", "order by updated"])
def test_the_sandbox_refuses_an_unbounded_query_as_jira_cloud_does(
    off_spec_sandbox: JiraSandbox, jql: str
) -> None:
    sandbox = off_spec_sandbox
    answer = requests.get(
        f"{sandbox.url}/rest/api/3/search/jql",
        params={"jql": jql},
        auth=(sandbox.email, PLANTED_TOKEN),
        timeout=5,
    )
    assert answer.status_code == 400
    assert answer.json()["errorMessages"] == [UNBOUNDED]


# ---------------------------------------------------------------------------------------------
# Mapping through the real client
# ---------------------------------------------------------------------------------------------
STATUS_CASES = [
    ("To Do", None, False, Status.QUEUED),
    ("In Progress", None, False, Status.IN_PROGRESS),
    ("In Progress", None, True, Status.BLOCKED),  # flagged
    ("In Review", None, False, Status.PR_READY),
    ("Code Review", None, False, Status.PR_READY),
    ("Blocked", None, False, Status.BLOCKED),
    ("On Hold", None, False, Status.BLOCKED),
    ("Done", "Done", False, Status.COMPLETED),
    ("Done", "Won't Do", False, Status.CANCELLED),
    ("Done", "Won't Fix", False, Status.CANCELLED),
    ("Closed", "Duplicate", False, Status.CANCELLED),
    ("Done", "Declined", False, Status.CANCELLED),
    ("Done", "Cannot Reproduce", False, Status.CANCELLED),
    ("Cancelled", "Done", False, Status.CANCELLED),
]


async def test_status_mapping_through_the_sandbox(any_harness: JiraHarness) -> None:
    harness = any_harness
    sandbox = harness.sandbox
    keys = []
    for n, (status, resolution, flagged, _) in enumerate(STATUS_CASES):
        issue = sandbox.add_issue(
            "ABC",
            f"{status} {resolution}",
            updated=T0 + timedelta(minutes=n),
            status=status,
            resolution=resolution,
            flagged=flagged,
        )
        keys.append(issue.key)
    got = {i.external_key: i for i in await run(harness.connector())}
    assert [got[k].status for k in keys] == [case[3] for case in STATUS_CASES]
    done = got[keys[7]]
    assert done.completed_at == T0 + timedelta(minutes=7)
    assert got[keys[1]].completed_at is None and got[keys[8]].completed_at is None


async def test_status_map_override_by_name(any_harness: JiraHarness) -> None:
    harness = any_harness
    harness.sandbox.add_issue("ABC", "qa", updated=T0, status="QA")
    harness.sandbox.add_issue("ABC", "review", updated=T0, status="In Review")
    got = await run(harness.connector(status_map={"qa": "pr_ready", "In Review": "in_progress"}))
    assert [i.status for i in got] == [Status.PR_READY, Status.IN_PROGRESS]


@pytest.mark.parametrize("version", ["2", "3"])
async def test_descriptions_are_readable_text_in_both_api_versions(
    harness: JiraHarness, version: str
) -> None:
    sandbox = harness.sandbox
    adf = {
        "type": "doc",
        "version": 1,
        "content": [
            {
                "type": "heading",
                "attrs": {"level": 2},
                "content": [{"type": "text", "text": "Why"}],
            },
            {
                "type": "paragraph",
                "content": [
                    {"type": "text", "text": "Ask "},
                    {"type": "mention", "attrs": {"id": "abc", "text": "@Ana"}},
                    {"type": "hardBreak"},
                    {"type": "text", "text": "then ship", "marks": [{"type": "strong"}]},
                ],
            },
            {
                "type": "bulletList",
                "content": [
                    {
                        "type": "listItem",
                        "content": [
                            {"type": "paragraph", "content": [{"type": "text", "text": "one"}]}
                        ],
                    },
                    {
                        "type": "listItem",
                        "content": [
                            {"type": "paragraph", "content": [{"type": "text", "text": "two"}]}
                        ],
                    },
                ],
            },
        ],
    }
    text = "Why\n\nAsk @Ana\nthen ship\n\n- one\n- two"
    sandbox.add_issue(
        "ABC",
        "rich",
        updated=T0,
        description=text,
        description_adf=adf,
        acceptance_criteria="Given a\nThen b",
    )
    connector = harness.connector(
        rest_api_version=version, acceptance_criteria_field="Acceptance Criteria"
    )
    (item,) = await run(connector)
    assert item.description == text
    assert item.acceptance_criteria == "Given a\nThen b"
    raw_description = item.raw["fields"]["description"]
    assert isinstance(raw_description, dict if version == "3" else str)
    assert all(r.path.startswith(f"/rest/api/{version}/") for r in sandbox.requests)


async def test_story_points_field_by_name_is_resolved_via_field(any_harness: JiraHarness) -> None:
    harness = any_harness
    sandbox = harness.sandbox
    for n, points in enumerate([2.5, 0.5, None, 8.0]):
        sandbox.add_issue("ABC", f"sp {n}", updated=T0 + timedelta(minutes=n), story_points=points)
    got = await run(harness.connector(story_points_field="Story point estimate"))
    assert [i.story_points for i in got] == [3, 1, None, 8]
    assert got[0].raw["fields"]["customfield_10016"] == 2.5
    search = sandbox.requests_to("/search")[0]
    assert "customfield_10016" in search.query["fields"]
    # We read GET /field once and hand the list to the SDK, which would fetch it again.
    assert len(sandbox.requests_to("/field")) == 1


async def test_unknown_story_points_field_is_a_config_error(any_harness: JiraHarness) -> None:
    harness = any_harness
    connector = harness.connector(story_points_field="Story Pointz")
    try:
        with pytest.raises(ConfigError) as info:
            await connector.check()
    finally:
        await connector.aclose()
    assert "Story Pointz" in str(info.value)


async def test_mapping_of_ids_keys_urls_and_priorities(any_harness: JiraHarness) -> None:
    harness = any_harness
    sandbox = harness.sandbox
    sandbox.add_project("NEW", "New home")
    names = ["Highest", "High", "Medium", "Low", "Lowest", None]
    for n, name in enumerate(names):
        sandbox.add_issue("ABC", f"p {name}", updated=T0 + timedelta(minutes=n), priority=name)
    moved = sandbox.issue("ABC-1")
    got = await run(harness.connector(projects=["ABC", "NEW"]))
    assert [i.priority for i in got] == [4, 3, 2, 1, 1, 0]
    first = got[0]
    assert first.external_id == f"127.0.0.1:{sandbox.port}/{moved.id}"
    assert first.external_key == "ABC-1"
    assert first.external_url == f"{sandbox.url}/browse/ABC-1"
    assert first.updated_at.tzinfo is UTC
    # Moved to another project: new key, same identity.
    sandbox.move_issue("ABC-1", "NEW", at=T0 + timedelta(hours=1))
    again = await run(
        harness.connector(projects=["ABC", "NEW"]), {"ABC": T0 + timedelta(minutes=30)}
    )
    assert [(i.external_id, i.external_key) for i in again] == [(first.external_id, "NEW-1")]


# ---------------------------------------------------------------------------------------------
# Errors, retries, pagination
# ---------------------------------------------------------------------------------------------
async def test_503_with_retry_after_is_retried(any_harness: JiraHarness) -> None:
    harness = any_harness
    harness.seed(3, start=T0, step=timedelta(minutes=1))
    connector = harness.connector()
    try:
        await connector.check()
        harness.sandbox.fail_next("5xx", retry_after=1, path_contains="/search")
        started = time.monotonic()
        got = items_of(await collect(connector))
    finally:
        await connector.aclose()
    assert len(got) == 3
    assert time.monotonic() - started >= 0.9
    searches = harness.sandbox.requests_to("/search")
    assert len(searches) == 3  # check's probe, the 503, the retry


async def test_persistent_429_gives_up_with_retriable_error(any_harness: JiraHarness) -> None:
    harness = any_harness
    harness.seed(1, start=T0, step=timedelta(minutes=1))
    connector = harness.connector()
    try:
        await connector.check()
        harness.sandbox.fail_next("429", count=10, retry_after=30)  # over the 5 s sleep cap
        started = time.monotonic()
        with pytest.raises(RetriableError) as info:
            await collect(connector)
    finally:
        await connector.aclose()
    assert info.value.retry_after == 30
    assert time.monotonic() - started < 2, "the SDK must not sleep on its own"


async def test_timeout_is_retried(any_harness: JiraHarness) -> None:
    harness = any_harness
    harness.seed(2, start=T0, step=timedelta(minutes=1))
    connector = harness.connector(request_timeout=0.5)
    try:
        await connector.check()
        harness.sandbox.fail_next("timeout", path_contains="/search")
        got = items_of(await collect(connector))
    finally:
        await connector.aclose()
    assert len(got) == 2


async def test_persistent_timeouts_raise_retriable_error(any_harness: JiraHarness) -> None:
    harness = any_harness
    connector = harness.connector(request_timeout=0.3)
    harness.sandbox.fail_next("timeout", count=10)
    try:
        with pytest.raises(RetriableError) as info:
            await connector.check()
    finally:
        await connector.aclose()
    assert "in time" in str(info.value)


async def test_wrong_token_is_fatal(harness: JiraHarness) -> None:
    connector = harness.connector(token="not-the-token")
    try:
        with pytest.raises(FatalError) as info:
            await connector.check()
    finally:
        await connector.aclose()
    assert str(info.value) == "Jira rejected the credentials (401): check email and token"


async def test_paging_restarts_at_the_newest_minute_without_start_at(harness: JiraHarness) -> None:
    ids = harness.seed(PAGE_SIZE * 3 + 1, start=T0, step=timedelta(minutes=1))
    pages = await collect_and_close(harness.connector())
    # Each search after the first starts at the newest minute read, which it reads once more
    # (dropped): 5, then 4 new, 4 new, 3 new.
    assert [len(p.items) for p in pages] == [5, 4, 4, 3]
    assert sorted(i.external_id for p in pages for i in p.items) == sorted(ids)
    searches = harness.sandbox.requests_to("/search/jql", method="GET")
    assert len(searches) == 4
    literals = [re.findall(r'updated >= "([^"]+)"', s.query["jql"][0]) for s in searches]
    assert literals[0] == [] and literals[1:] == [
        ["2025-05-01 08:04"],
        ["2025-05-01 08:08"],
        ["2025-05-01 08:12"],
    ]
    for s in searches:
        assert "startAt" not in s.query and "nextPageToken" not in s.query
        assert s.query["maxResults"] == [str(PAGE_SIZE)]
    assert not [r for r in harness.sandbox.requests if r.path.endswith("/search")]
    # Checkpoints rise page by page to the newest update seen.
    marks = [p.checkpoint["ABC"] for p in pages]
    assert marks == sorted(marks) and marks[-1] == T0 + timedelta(minutes=PAGE_SIZE * 3)


async def test_issues_sharing_one_minute_are_paged_by_token(harness: JiraHarness) -> None:
    """JQL cannot name a time finer than a minute: within one, nextPageToken is followed."""
    ids = harness.seed(PAGE_SIZE * 2 + 2, start=T0, step=timedelta(seconds=2))
    pages = await collect_and_close(harness.connector())
    seen = [i.external_id for p in pages for i in p.items]
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    searches = harness.sandbox.requests_to("/search/jql", method="GET")
    tokens = [s.query["nextPageToken"][0] for s in searches if "nextPageToken" in s.query]
    assert len(tokens) == 2 and len(set(tokens)) == 2
    assert all("startAt" not in s.query for s in searches)


async def test_all_ids_asks_for_ids_only_without_a_time_filter(harness: JiraHarness) -> None:
    ids = harness.seed(12, start=T0, step=timedelta(days=1))
    connector = harness.connector()
    try:
        seen = [i async for batch in connector.all_ids() for i in batch]
    finally:
        await connector.aclose()
    assert sorted(seen) == sorted(ids)
    (search,) = harness.sandbox.requests_to("/search")
    assert "updated" not in search.query["jql"][0]
    assert set(search.query["fields"]) <= {"id", "issuekey"}


# ---------------------------------------------------------------------------------------------
# No silent gaps: minute groups, malformed issues, short listings, unknown projects
# ---------------------------------------------------------------------------------------------
def _change(harness: JiraHarness, issue: Any, change: str, at: datetime) -> None:
    """Edit (the issue jumps to the newest end of the results) or delete an issue upstream."""
    if change == "edit":
        harness.sandbox.update_issue(issue.id, at=at, summary="edited mid-walk")
    else:
        harness.sandbox.delete_issue(issue.id)


def _assert_minute_read_whole(
    pages: list[Page], group: list[str], later: list[str], gone: set[str], minute: datetime
) -> None:
    """Every issue that still exists was yielded, and no checkpoint left the group's minute
    before every member of the group had been yielded."""
    yielded: set[str] = set()
    members = set(group) - gone
    for n, page in enumerate(pages):
        yielded |= {i.external_id for i in page.items}
        mark = page.checkpoint.get("ABC")  # the scope of `projects: [ABC]`
        if mark is not None and mark >= minute + timedelta(minutes=1):
            missing = members - yielded
            assert not missing, f"page {n} checkpoints {mark} with {len(missing)} unread"
    missing = (members | set(later)) - yielded
    assert not missing, f"{len(missing)} issue(s) never read: {sorted(missing)[:5]}"


def _minute_group(harness: JiraHarness, count: int) -> tuple[list[Any], list[str]]:
    """`count` issues updated within the minute T0 (a bulk edit), then three later ones."""
    step = timedelta(seconds=50) / count
    group = [
        harness.sandbox.add_issue("ABC", f"bulk {n}", updated=T0 + n * step) for n in range(count)
    ]
    later = harness.seed(3, start=T0 + timedelta(minutes=2), step=timedelta(minutes=1))
    return group, later


@pytest.mark.parametrize("change", ["edit", "delete"])
async def test_a_minute_group_longer_than_a_page_is_read_whole_when_a_read_member_changes(
    any_harness: JiraHarness, change: str
) -> None:
    """More issues than a page updated within one minute; a member already read is edited (it
    jumps to the end of the results) or deleted between two page requests. Following the token
    (an offset) every later member shifts back a slot and one is never read while the checkpoint
    leaves the minute, for good once the minute is older than the overlap."""
    harness = any_harness
    group, later = _minute_group(harness, PAGE_SIZE * 3)
    connector = harness.connector()
    pages: list[Page] = []
    try:
        async for page in connector.changes({}):
            pages.append(page)
            if len(pages) == 2:  # between two page requests, within the minute
                _change(harness, group[1], change, T0 + timedelta(days=1))
    finally:
        await connector.aclose()
    ids = [harness.sandbox.external_id(i) for i in group]
    gone = {ids[1]} if change == "delete" else set()
    _assert_minute_read_whole(pages, ids, later, gone, T0)
    if change == "edit":
        assert "edited mid-walk" in [i.title for i in items_of(pages)]


@pytest.mark.parametrize("change", ["edit", "delete"])
async def test_a_minute_group_survives_changes_during_each_walk_when_jira_pages_small(
    any_harness: JiraHarness, change: str
) -> None:
    """Jira may answer fewer issues than asked: here never more than a page of 5, so every re-read
    of the group is paged too, and read members change during each walk."""
    harness = any_harness
    harness.sandbox.page_cap = PAGE_SIZE
    group, later = _minute_group(harness, PAGE_SIZE * 3)
    connector = harness.connector()
    pages: list[Page] = []
    changed: set[str] = set()
    try:
        async for page in connector.changes({}):
            pages.append(page)
            if len(pages) in (2, 5, 8):  # members read on the first page change
                victim = group[{2: 1, 5: 3, 8: 4}[len(pages)]]
                _change(harness, victim, change, T0 + timedelta(days=1, seconds=len(pages)))
                changed.add(harness.sandbox.external_id(victim))
    finally:
        await connector.aclose()
    ids = [harness.sandbox.external_id(i) for i in group]
    _assert_minute_read_whole(pages, ids, later, changed if change == "delete" else set(), T0)


@pytest.mark.parametrize(
    ("junk", "named"),
    [
        ({"updated": "yesterday"}, "updated"),
        ({"updated": ...}, "updated"),
        ({"status": "Done"}, "status"),
        ({"id": None}, "id"),
        ({"fields": None}, "fields"),
    ],
)
async def test_one_malformed_issue_is_rejected_and_every_other_one_lands(
    off_spec_harness: JiraHarness, junk: dict[str, Any], named: str
) -> None:
    harness = off_spec_harness
    ids = harness.seed(12, start=T0, step=timedelta(minutes=1))
    bad = 6  # the middle of the second page (pages of 5: 0-4, then 4-8 from the newest minute)
    issue = harness.sandbox.issue(ids[bad].rsplit("/", 1)[1])
    harness.sandbox.corrupt_issue(issue.id, **junk)
    connector = harness.connector()
    try:
        pages = await collect(connector)
    finally:
        await connector.aclose()
    got = [i.external_id for i in items_of(pages)]
    assert sorted(set(got)) == sorted(set(ids) - {ids[bad]})
    assert len(got) == len(set(got))
    (rejected,) = [r for page in pages for r in page.rejected]
    assert rejected.external_key == issue.key
    if "id" in junk:
        assert issue.key in rejected.external_id
    else:
        assert rejected.external_id == ids[bad]
    assert named in rejected.reason and PLANTED_TOKEN not in rejected.reason
    assert len(rejected.reason) <= 200
    final = [p.checkpoint["ABC"] for p in pages if p.checkpoint]
    assert final[-1] == T0 + timedelta(minutes=11), "the checkpoint may pass the rejected issue"


async def test_all_ids_names_an_issue_without_id_and_lists_no_gap(
    off_spec_harness: JiraHarness,
) -> None:
    """The sweep marks every row it is not given: a listing that skipped an unreadable id would
    report an existing issue deleted. It fails, naming the issue."""
    harness = off_spec_harness
    ids = harness.seed(3, start=T0, step=timedelta(minutes=1))
    harness.sandbox.corrupt_issue(ids[1].rsplit("/", 1)[1], id=None)
    connector = harness.connector()
    try:
        with pytest.raises(RetriableError, match="ABC-2 without a readable id"):
            [i async for batch in connector.all_ids() for i in batch]
    finally:
        await connector.aclose()


async def test_all_ids_fails_rather_than_end_early_on_an_empty_page_that_promises_more(
    any_harness: JiraHarness,
) -> None:
    """An empty page whose nextPageToken (and isLast: false) promise more: going on or stopping
    there would make the sweep mark existing issues deleted."""
    harness = any_harness
    harness.sandbox.page_cap = PAGE_SIZE
    harness.seed(12, start=T0, step=timedelta(minutes=1))
    harness.sandbox.answer_short(0, skip=1, count=50)  # page 2, and every retry of it
    connector = harness.connector()
    try:
        with pytest.raises(RetriableError, match="promised"):
            [i async for batch in connector.all_ids() for i in batch]
    finally:
        await connector.aclose()


async def test_all_ids_retries_a_one_off_empty_page(any_harness: JiraHarness) -> None:
    harness = any_harness
    harness.sandbox.page_cap = PAGE_SIZE
    ids = harness.seed(12, start=T0, step=timedelta(minutes=1))
    harness.sandbox.answer_short(0, skip=1)
    connector = harness.connector()
    try:
        seen = [i async for batch in connector.all_ids() for i in batch]
    finally:
        await connector.aclose()
    assert sorted(seen) == sorted(ids)


async def test_changes_fails_rather_than_go_on_past_an_empty_page_that_promises_more(
    any_harness: JiraHarness,
) -> None:
    harness = any_harness
    ids = harness.seed(12, start=T0, step=timedelta(minutes=1))
    harness.sandbox.answer_short(0, skip=1, count=50)
    connector = harness.connector()
    pages: list[Page] = []
    try:
        with pytest.raises(RetriableError, match="promised"):
            async for page in connector.changes({}):
                pages.append(page)
    finally:
        await connector.aclose()
    assert {i.external_id for i in items_of(pages)} == set(ids[:5])
    assert [p.checkpoint["ABC"] for p in pages] == [T0 + timedelta(minutes=4)]


async def test_is_last_false_without_a_token_is_not_the_end(
    harness: JiraHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`isLast: false` promises more; without a nextPageToken to follow, stopping would end the
    listing early."""
    harness.sandbox.page_cap = PAGE_SIZE
    harness.seed(12, start=T0, step=timedelta(minutes=1))
    handle = harness.sandbox.handle

    def without_token(request: Request) -> Response:
        response = handle(request)
        if isinstance(response.body, dict):
            response.body.pop("nextPageToken", None)
        return response

    monkeypatch.setattr(harness.sandbox, "handle", without_token)
    connector = harness.connector()
    try:
        with pytest.raises(RetriableError, match="isLast"):
            [i async for batch in connector.all_ids() for i in batch]
        with pytest.raises(RetriableError, match="isLast"):
            await collect(connector)
    finally:
        await connector.aclose()


@pytest.mark.parametrize(
    "scope", [{"projects": ["NOPE", "ABC"]}, {"jql": "project = NOPE OR project = ABC"}]
)
async def test_a_project_that_does_not_exist_fails_check_and_is_lost_while_syncing(
    any_harness: JiraHarness, scope: dict[str, Any]
) -> None:
    """Jira answers 400 to JQL naming an unknown project (or one the account cannot browse).
    check() is a FatalError quoting Jira, which names the key (an admin setting up); while
    syncing the scope is lost, never "ok, 0 issues" nor an empty listing the sweep would take
    for deletions, and the other scopes go on."""
    harness = any_harness
    ids = harness.seed(2, start=T0, step=timedelta(minutes=1))
    connector = harness.connector(**scope)
    try:
        with pytest.raises(FatalError, match="'NOPE' does not exist for the field 'project'"):
            await connector.check()
        pages = await collect(connector)
        parts = [part async for part in connector.all_ids()]
    finally:
        await connector.aclose()
    [scope_key, *others] = await connector.scopes()
    lost = [p.lost for p in pages if p.lost]
    assert [list(x) for x in lost] == [[scope_key]] and "'NOPE'" in lost[0][scope_key]
    assert [p for p in pages if p.lost and (p.items or p.checkpoint)] == []
    assert [(p.scope, list(p.ids), p.lost is not None) for p in parts] == [
        (scope_key, [], True),
        *[(other, ids, False) for other in others],
    ]
    assert sorted(i.external_id for i in items_of(pages)) == (ids if others else [])


async def test_each_project_is_a_scope_so_a_project_added_is_read_in_full(
    any_harness: JiraHarness,
) -> None:
    harness = any_harness
    sandbox = harness.sandbox
    sandbox.add_project("NEW", "New")
    for n in range(3):
        sandbox.add_issue("ABC", f"abc {n}", updated=T0 + timedelta(hours=n))
    old = [sandbox.add_issue("NEW", f"new {n}", updated=T0 - timedelta(days=3)) for n in range(2)]
    first = harness.connector(projects=["ABC"])
    pages = await collect(first)
    await first.aclose()
    mark = pages[-1].checkpoint["ABC"]
    widened = harness.connector(projects=["ABC", "NEW"])
    assert await widened.scopes() == ["ABC", "NEW"]
    sandbox.clear_requests()
    got = await run(widened, {"ABC": mark})
    assert {i.external_key for i in got if i.scope == "NEW"} == {i.key for i in old}
    assert all(i.scope in ("ABC", "NEW") for i in got)
    sent = [r.query["jql"][0] for r in sandbox.requests_to("/search")]
    assert any(q.startswith('project = "ABC" AND updated >= ') for q in sent)
    assert any(q.startswith('project = "NEW" ORDER BY') for q in sent)  # in full

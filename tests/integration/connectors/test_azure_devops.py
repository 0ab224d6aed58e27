"""Azure DevOps connector against its sandbox, through the real azure-devops SDK: the shared
contract plus what is particular to ADO (WIQL windows past the 20,000 cap, POST retries, batch
size, state categories, WIQL escaping)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from connectors.azure_devops import AzureDevOpsConfig, AzureDevOpsConnector, _work_items_batch
from connectors.base import ConnectorContext, FatalError, Page, Person, RetriableError, Status
from connectors.sandbox.azure_devops import AzureDevOpsSandbox, identity
from tests.conformance import checker
from tests.integration.connectors.contract import (
    PLANTED_TOKEN,
    ConnectorContract,
    ModelTraits,
    collect,
    items_of,
)
from tests.integration.connectors.sync_helpers import ado_sandbox

#: The endpoints the connector may call, as Microsoft's published spec describes them
#: (tests/conformance/azure_devops.json): every request of every test here is checked against it.
ADO_API = checker.load("azure_devops")
PAGE = 5  # batch_size in tests: "several pages" with a handful of items
TOP = 7  # wiql_top in tests: the contract's larger seeds need more than one WIQL window


class AdoHarness:
    """The contract's Harness for Azure DevOps."""

    page_size = PAGE
    model = ModelTraits()

    def __init__(self, sandbox: AzureDevOpsSandbox, cache_dir: Path) -> None:
        self.sandbox = sandbox
        self.cache_dir = cache_dir
        self.ids: dict[str, int] = {}
        self.iterations: dict[str, str] = {}  # the connector's sprint id -> iteration path

    def seed(self, count: int, *, start: datetime, step: timedelta) -> list[str]:
        out = []
        for n in range(count):
            item_id = self.sandbox.add_item(
                f"Story {n}",
                changed=start + step * n,
                fields={"Microsoft.VSTS.Common.Priority": 2},
            )
            external_id = self.sandbox.external_id(item_id)
            self.ids[external_id] = item_id
            out.append(external_id)
        return out

    def update(
        self, external_id: str, *, at: datetime, title: str | None = None, done: bool | None = None
    ) -> None:
        changes: dict[str, Any] = {}
        if title is not None:
            changes["title"] = title
        if done is not None:
            changes["state"] = "Closed" if done else "Active"
        self.sandbox.update_item(self.ids[external_id], changed=at, **changes)

    def add_sprint(self, name: str, state: str) -> str:
        # Azure DevOps keeps no state: the connector derives it from the dates and today.
        now = datetime.now(UTC)
        start, end = (now - timedelta(days=28), now - timedelta(days=14))
        if state == "active":
            start, end = (now - timedelta(days=7), now + timedelta(days=7))
        path = f"{self.sandbox.project}\\{name}"
        node = self.sandbox.add_iteration(path, start, end)
        site = self.sandbox.external_id(0).rsplit("/", 1)[0]
        sprint = f"{site}/iterations/{node}"
        self.iterations[sprint] = path
        return sprint

    def add_epic(self, title: str, *, at: datetime) -> str:
        return self._added(self.sandbox.add_item(title, changed=at, work_item_type="Epic"))

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
        fields = {
            "System.Parent": self.ids[parent],
            "System.IterationPath": self.iterations[sprint],
            "System.Tags": "; ".join(labels),
            "System.AssignedTo": self.identity(assignee) if assignee else None,
        }
        item = self.sandbox.add_item(
            f"A {kind}", changed=at, work_item_type=kind.title(), fields=fields
        )
        return self._added(item)

    def move(self, child: str, *, at: datetime, parent: str, sprint: str) -> None:
        self.sandbox.update_item(
            self.ids[child],
            changed=at,
            parent=self.ids[parent],
            iteration_path=self.iterations[sprint],
        )

    @staticmethod
    def identity(handle: str) -> str:
        """A user as System.AssignedTo takes it: its unique name is an e-mail address."""
        return f"{handle.title()} Example <{handle}@example.com>"

    def person(self, handle: str) -> Person:
        ref = self.sandbox.identity_ref(identity(self.identity(handle)))
        assert isinstance(ref, dict)
        return Person(ref["displayName"], ref["id"])

    def listings(self) -> int:
        return len(self.sandbox.requests_to("/_apis/wit/wiql", "POST"))

    def _added(self, item_id: int) -> str:
        external_id = self.sandbox.external_id(item_id)
        self.ids[external_id] = item_id
        return external_id

    def connector(self, *, token: str = PLANTED_TOKEN, **config: Any) -> AzureDevOpsConnector:
        values: dict[str, Any] = {
            "organization_url": self.sandbox.organization_url,
            "project": self.sandbox.project,
            "batch_size": PAGE,
            "wiql_top": TOP,
            "request_timeout": 2.0,
            **config,
        }
        ctx = ConnectorContext(
            integration_id="test",
            token=SecretStr(token),
            cache_dir=self.cache_dir,
            max_retries=3,
            sleep_cap=5.0,
        )
        return AzureDevOpsConnector(AzureDevOpsConfig.model_validate(values), ctx)


# A sandbox on a port an earlier one used gets its API locations from the SDK's process-wide
# cache (Client._locations_cache) and skips OPTIONS: harmless, every sandbox serves the same
# route table, and no test counts OPTIONS requests. The disk cache lives under the first test's
# tmp_path (AZURE_DEVOPS_CACHE_DIR is read once, at the SDK's import).
@pytest.fixture
def sandbox() -> Iterator[AzureDevOpsSandbox]:
    """Checked against the published API (sync_helpers.ado_sandbox), feeds paged as the sandbox
    pages them."""
    yield from ado_sandbox(reporting_page_cap=None)


@pytest.fixture
def off_spec_sandbox() -> Iterator[AzureDevOpsSandbox]:
    """A sandbox for tests that send what the service refuses on purpose (not checked)."""
    with AzureDevOpsSandbox(token=PLANTED_TOKEN) as server:
        assert isinstance(server, AzureDevOpsSandbox)
        yield server


@pytest.fixture
def harness(sandbox: AzureDevOpsSandbox, tmp_path: Path) -> AdoHarness:
    return AdoHarness(sandbox, tmp_path)


class TestAzureDevOpsContract(ConnectorContract):
    pass


# ---------------------------------------------------------------------------------------------
# Azure DevOps specifics
# ---------------------------------------------------------------------------------------------
DAY = datetime(2025, 5, 1, tzinfo=UTC)
ALL = "My Project/*/*"  # the one scope of a config that names no area path and no types


async def sync(
    connector: AzureDevOpsConnector, since: dict[str, datetime] | None = None
) -> list[Page]:
    try:
        return await collect(connector, since)
    finally:
        await connector.aclose()


def wiql_texts(sandbox: AzureDevOpsSandbox) -> list[str]:
    return [r.json()["query"] for r in sandbox.requests_to("/_apis/wit/wiql", "POST")]


def batch_sizes(sandbox: AzureDevOpsSandbox) -> list[int]:
    return [len(r.json()["ids"]) for r in sandbox.requests_to("/workItemsBatch", "POST")]


async def test_45000_items_changed_in_one_day_sync_completely(harness: AdoHarness) -> None:
    # 45,000 items over one day, 750 sharing each of 60 ChangedDate values (to the millisecond):
    # WIQL windows of 19,000 end in the middle of a tie, so the (ChangedDate, Id) continuation
    # must carry on inside it. Real SDK, default batch size (200) and $top (19,000).
    sandbox = harness.sandbox
    stamps = [DAY + timedelta(minutes=23 * k, milliseconds=417) for k in range(60)]
    ids = sandbox.add_items_fast((f"Item {n}", stamps[n % 60]) for n in range(45_000))
    connector = harness.connector(batch_size=200, wiql_top=19_000)
    pages = await sync(connector)
    got = items_of(pages)
    assert len(got) == 45_000
    assert {i.external_id for i in got} == {sandbox.external_id(i) for i in ids}
    keys = [(i.updated_at, int(i.external_key or 0)) for i in got]
    assert keys == sorted(keys), "(ChangedDate, Id) order across windows"
    assert len(wiql_texts(sandbox)) == 3  # 19,000 + 19,000 + 7,000: no 400, no retry
    assert sandbox.wiql_refusals == 0
    sizes = batch_sizes(sandbox)
    assert max(sizes) == 200 and sum(sizes) == 45_000
    assert pages[-1].checkpoint[ALL] >= stamps[-1]


async def test_server_refusing_big_windows_even_with_top_is_bisected(harness: AdoHarness) -> None:
    # A server that counts matches before applying $top answers VS402337 anyway: the connector
    # narrows the (ChangedDate, Id) window, down to id ranges inside one instant.
    sandbox = harness.sandbox
    sandbox.cap_ignores_top, sandbox.wiql_cap = True, 40
    same = DAY + timedelta(hours=9)
    ids = sandbox.add_items_fast([(f"Tie {n}", same) for n in range(150)])
    ids += sandbox.add_items_fast([(f"Spread {n}", DAY + timedelta(minutes=n)) for n in range(120)])
    pages = await sync(harness.connector(batch_size=50, wiql_top=30))
    got = [i.external_id for i in items_of(pages)]
    assert sandbox.wiql_refusals > 0, "the fallback must have been exercised"
    assert sorted(got) == sorted(sandbox.external_id(i) for i in ids)
    assert len(got) == len(set(got))


async def test_429_on_wiql_post_is_retried_after_retry_after(harness: AdoHarness) -> None:
    harness.seed(4, start=DAY, step=timedelta(minutes=1))
    waits: list[tuple[str, float]] = []
    connector = harness.connector()
    connector.ctx = replace(connector.ctx, on_wait=lambda what, s: waits.append((what, s)))
    harness.sandbox.fail_next("429", path_contains="/wiql", retry_after=1)
    started = time.monotonic()
    got = items_of(await sync(connector))
    assert len(got) == 4
    assert time.monotonic() - started >= 0.9
    assert waits and waits[0] == ("WIQL query", 1.0)
    assert len(wiql_texts(harness.sandbox)) == 2  # the refused POST and its retry


async def test_5xx_on_batch_post_is_retried(harness: AdoHarness) -> None:
    harness.seed(4, start=DAY, step=timedelta(minutes=1))
    harness.sandbox.fail_next("5xx", count=2, path_contains="/workItemsBatch", retry_after=None)
    got = items_of(await sync(harness.connector()))
    assert len(got) == 4
    assert len(harness.sandbox.requests_to("/workItemsBatch")) == 3


async def test_retry_after_on_a_successful_response_slows_down(harness: AdoHarness) -> None:
    harness.seed(2, start=DAY, step=timedelta(minutes=1))
    waits: list[tuple[str, float]] = []
    connector = harness.connector()
    connector.ctx = replace(connector.ctx, on_wait=lambda what, s: waits.append((what, s)))
    await connector.check()
    harness.sandbox.throttle_next(1, retry_after=1)
    started = time.monotonic()
    assert len(items_of(await sync(connector))) == 2
    assert time.monotonic() - started >= 0.9
    assert waits == [("WIQL query", 1.0)]


async def test_timeout_is_retried(harness: AdoHarness) -> None:
    harness.seed(2, start=DAY, step=timedelta(minutes=1))
    connector = harness.connector(request_timeout=0.5)
    await connector.check()
    harness.sandbox.fail_next("timeout", path_contains="/workItemsBatch")
    assert len(items_of(await sync(connector))) == 2
    assert len(harness.sandbox.requests_to("/workItemsBatch")) == 2  # timed out, then again


async def test_batches_never_exceed_200_ids(harness: AdoHarness) -> None:
    harness.sandbox.add_items_fast((f"I {n}", DAY + timedelta(seconds=n)) for n in range(650))
    got = items_of(await sync(harness.connector(batch_size=200, wiql_top=19_000)))
    assert len(got) == 650
    assert batch_sizes(harness.sandbox) == [200, 200, 200, 50]
    with pytest.raises(ValidationError):
        harness.connector(batch_size=201)
    with pytest.raises(ValidationError):
        harness.connector(wiql_top=20_000)


async def test_states_fetched_once_per_type(harness: AdoHarness) -> None:
    sandbox = harness.sandbox
    for n in range(12):
        sandbox.add_item(
            f"W {n}",
            changed=DAY + timedelta(minutes=n),
            work_item_type=("User Story", "Bug", "Task")[n % 3],
            state="Active",
        )
    connector = harness.connector()
    try:
        first = items_of(await collect(connector))
        sandbox.update_item(1, changed=DAY + timedelta(hours=2), state="Closed")
        again = items_of(await collect(connector, {ALL: DAY + timedelta(hours=1)}))
    finally:
        await connector.aclose()
    assert len(first) == 12 and [i.status for i in again] == [Status.COMPLETED]
    states = [r.path for r in sandbox.requests_to("/states", "GET")]
    assert sorted(states) == sorted(
        f"/myorg/My%20Project/_apis/wit/workitemtypes/{t}/states"
        for t in ("User%20Story", "Bug", "Task")
    )


async def test_status_mapping_through_the_sandbox(harness: AdoHarness) -> None:
    sandbox = harness.sandbox
    sandbox.set_states("Requirement", [("Proposed", "Proposed"), ("Active", "InProgress")])
    cases = {
        ("User Story", "New", ""): Status.QUEUED,
        ("User Story", "Active", ""): Status.IN_PROGRESS,
        ("User Story", "Active", "backend; Blocked"): Status.BLOCKED,
        ("User Story", "In Review", ""): Status.PR_READY,
        ("User Story", "Resolved", ""): Status.PR_READY,
        ("User Story", "Closed", ""): Status.COMPLETED,
        ("User Story", "Removed", ""): Status.CANCELLED,
        ("Product Backlog Item", "Committed", ""): Status.IN_PROGRESS,
        ("Product Backlog Item", "Done", ""): Status.COMPLETED,
        ("Issue", "Doing", ""): Status.IN_PROGRESS,
        ("Issue", "To Do", ""): Status.QUEUED,
    }
    expected = {}
    for n, ((kind, state, tags), status) in enumerate(cases.items()):
        item = sandbox.add_item(
            f"{kind} {state}", changed=DAY + timedelta(minutes=n), work_item_type=kind
        )
        sandbox.update_item(
            item, changed=DAY + timedelta(minutes=n, seconds=30), state=state, tags=tags
        )
        expected[sandbox.external_id(item)] = status
    blocked = sandbox.add_item(
        "CMMI blocked",
        changed=DAY + timedelta(hours=5),
        work_item_type="Requirement",
        state="Active",
        fields={"Microsoft.VSTS.CMMI.Blocked": "Yes"},
    )
    expected[sandbox.external_id(blocked)] = Status.BLOCKED
    got = {i.external_id: i.status for i in items_of(await sync(harness.connector()))}
    assert got == expected
    # The admin's status_map (by state name) wins.
    sandbox.clear_requests()
    over = harness.connector(status_map={"Resolved": "completed", "in review": "in_progress"})
    got = {i.title: i.status for i in items_of(await sync(over))}
    assert got["User Story Resolved"] is Status.COMPLETED
    assert got["User Story In Review"] is Status.IN_PROGRESS


async def test_mapping_of_a_full_item(harness: AdoHarness) -> None:
    sandbox = harness.sandbox
    item = sandbox.add_item(
        "Checkout flow",
        changed=DAY,
        fields={
            "Microsoft.VSTS.Common.Priority": 1,
            "Microsoft.VSTS.Scheduling.StoryPoints": 4.5,
            "System.Description": "<div>Pay <b>fast</b>&nbsp;&amp; safely<br>twice</div>",
            "Microsoft.VSTS.Common.AcceptanceCriteria": "<ul><li>card</li><li>PayPal</li></ul>",
        },
    )
    sandbox.update_item(item, changed=DAY + timedelta(hours=1), state="Active")
    sandbox.update_item(item, changed=DAY + timedelta(hours=3), state="Closed")
    (got,) = items_of(await sync(harness.connector()))
    assert got.external_id == f"127.0.0.1:{sandbox.port}/myorg/{item}"
    assert got.external_key == str(item)
    assert got.external_url == f"{sandbox.organization_url}/My%20Project/_workitems/edit/{item}"
    assert got.title == "Checkout flow"
    assert got.status is Status.COMPLETED
    assert got.priority == 4 and got.story_points == 5
    assert got.description == "Pay fast & safely\ntwice"
    assert got.acceptance_criteria == "- card\n- PayPal"
    assert got.updated_at == DAY + timedelta(hours=3)
    assert got.started_at == DAY + timedelta(hours=1)
    assert got.completed_at == DAY + timedelta(hours=3)
    assert got.raw["id"] == item and got.raw["rev"] == 3
    assert got.raw["fields"]["Microsoft.VSTS.Scheduling.StoryPoints"] == 4.5
    # Empty fields are left out upstream and come back as None here.
    assert "System.Tags" not in got.raw["fields"]


async def test_scope_area_path_and_types(harness: AdoHarness) -> None:
    sandbox = harness.sandbox
    sandbox.add_project("Other")
    web = sandbox.add_item("web story", changed=DAY, area_path="My Project\\Web")
    deep = sandbox.add_item(
        "web bug", changed=DAY, work_item_type="Bug", area_path="My Project\\Web\\UI"
    )
    sandbox.add_item("web task", changed=DAY, work_item_type="Task", area_path="My Project\\Web")
    sandbox.add_item("mobile story", changed=DAY, area_path="My Project\\Mobile")
    sandbox.add_item("webby sibling", changed=DAY, area_path="My Project\\Webby")
    sandbox.add_item("other project", changed=DAY, project="Other")
    connector = harness.connector(
        area_path="My Project\\Web", work_item_types=["User Story", "Bug"]
    )
    got = sorted(i.external_id for i in items_of(await sync(connector)))
    assert got == sorted(sandbox.external_id(i) for i in (web, deep))


async def test_each_work_item_type_is_a_scope_so_a_type_added_is_read_in_full(
    harness: AdoHarness,
) -> None:
    sandbox = harness.sandbox
    stories = [sandbox.add_item(f"story {n}", changed=DAY + timedelta(hours=n)) for n in range(3)]
    bugs = [
        sandbox.add_item(f"bug {n}", changed=DAY - timedelta(days=5), work_item_type="Bug")
        for n in range(2)
    ]
    first = harness.connector(work_item_types=["User Story"])
    assert await first.scopes() == ["My Project/*/User Story"]
    pages = await sync(first)
    assert {i.scope for i in items_of(pages)} == {"My Project/*/User Story"}
    mark = pages[-1].checkpoint["My Project/*/User Story"]

    # Bug added: its scope has no mark and is read in full (its items are older than the
    # stories' mark), while the stories' scope is read from its own mark.
    widened = harness.connector(work_item_types=["User Story", "Bug"])
    assert await widened.scopes() == ["My Project/*/User Story", "My Project/*/Bug"]
    sandbox.clear_requests()
    got = items_of(await sync(widened, {"My Project/*/User Story": mark}))
    by_scope = {i.scope: set() for i in got}
    for i in got:
        by_scope[i.scope].add(i.external_id)
    assert by_scope["My Project/*/Bug"] == {sandbox.external_id(b) for b in bugs}
    assert by_scope.get("My Project/*/User Story", set()) <= {
        sandbox.external_id(s) for s in stories
    }
    queries = wiql_texts(sandbox)
    story_q = [q for q in queries if "= 'User Story'" in q]
    bug_q = [q for q in queries if "= 'Bug'" in q]
    assert story_q and all("[System.ChangedDate] >=" in q for q in story_q)
    assert bug_q and all("[System.ChangedDate] >=" not in q for q in bug_q)


async def test_wiql_injection_in_names_is_inert(harness: AdoHarness) -> None:
    sandbox = harness.sandbox
    quoted = sandbox.add_item("O'Brien's area", changed=DAY, area_path="My Project\\O'Brien")
    sandbox.add_item("elsewhere", changed=DAY, area_path="My Project\\Web")
    # A quote in a real name is matched literally...
    got = items_of(await sync(harness.connector(area_path="My Project\\O'Brien")))
    assert [i.external_id for i in got] == [sandbox.external_id(quoted)]
    # ...and one that tries to widen the query is one (missing) area path, not WIQL.
    hostile = "My Project\\x' OR [System.Id] > '0"
    connector = harness.connector(area_path=hostile)
    with pytest.raises(FatalError, match="area_path"):
        await sync(connector)
    assert "UNDER 'My Project\\x'' OR [System.Id] > ''0'" in wiql_texts(sandbox)[-1]
    # A type by that name exists (a type that does not is an error): the literal must match
    # only its items, none, not every item.
    sandbox.set_states("Bug') OR ([System.Id] > 0", [("New", "Proposed")])
    typed = harness.connector(work_item_types=["Bug') OR ([System.Id] > 0"])
    assert items_of(await sync(typed)) == []
    # A project name goes into the URL, never into the WIQL text.
    with pytest.raises(FatalError, match=r"project .*not found"):
        await sync(harness.connector(project="My Project' OR 1=1 --"))


async def test_unknown_project_is_fatal_and_named(harness: AdoHarness) -> None:
    connector = harness.connector(project="Nope")
    try:
        with pytest.raises(FatalError, match="'Nope' not found"):
            await connector.check()
    finally:
        await connector.aclose()


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"project": "Nope"}, r"project 'Nope' not found"),
        ({"area_path": "My Project\\Nowhere"}, r"area_path 'My Project\\\\Nowhere'"),
        ({"work_item_types": ["User Story", "Storey"]}, r"work item type 'Storey'"),
    ],
    ids=["project", "area_path", "work_item_type"],
)
@pytest.mark.parametrize("call", ["check", "changes", "all_ids"])
async def test_a_scope_target_that_does_not_exist_is_fatal_and_named(
    harness: AdoHarness, config: dict[str, Any], named: str, call: str
) -> None:
    harness.seed(3, start=DAY, step=timedelta(minutes=1))
    connector = harness.connector(**config)
    try:
        if "work_item_types" in config and call != "check":
            await _a_missing_type_is_a_lost_scope(connector, call)
            return
        with pytest.raises(FatalError, match=named):
            if call == "check":
                await connector.check()
            elif call == "changes":
                await collect(connector)
            else:
                [i async for batch in connector.all_ids() for i in batch]
    finally:
        await connector.aclose()


async def _a_missing_type_is_a_lost_scope(connector: AzureDevOpsConnector, call: str) -> None:
    """While syncing, a type that does not exist (any more) is a lost scope: the other types
    are read, the sweep never takes it for deletions, and the run fails naming it."""
    story, storey = "My Project/*/User Story", "My Project/*/Storey"
    if call == "changes":
        pages = await collect(connector)
        assert [dict(p.lost) for p in pages if p.lost] == [
            {storey: "project 'My Project' has no work item type 'Storey' (any more):"
             " fix work_item_types"}
        ]  # fmt: skip
        assert len(items_of(pages)) == 3 and {i.scope for i in items_of(pages)} == {story}
    else:
        parts = [part async for part in connector.all_ids()]
        assert [(p.scope, list(p.ids)) for p in parts if p.lost] == [(storey, [])]
        assert sum(len(p) for p in parts if p.scope == story) == 3


async def test_check_passes_on_a_project_too_big_for_one_query(harness: AdoHarness) -> None:
    # A server that counts matches before $top refuses check()'s $top=1 query (VS402337) on a
    # big project: the query ran, so the PAT, the project and the area path are fine.
    sandbox = harness.sandbox
    sandbox.cap_ignores_top, sandbox.wiql_cap = True, 3
    harness.seed(5, start=DAY, step=timedelta(minutes=1))
    connector = harness.connector(work_item_types=["User Story"])
    try:
        await connector.check()
    finally:
        await connector.aclose()
    assert sandbox.wiql_refusals == 1


async def test_401_says_the_pat_was_rejected(harness: AdoHarness) -> None:
    connector = harness.connector(token="wrong-pat")
    try:
        with pytest.raises(FatalError, match=r"rejected the PAT \(401\)"):
            await connector.check()
    finally:
        await connector.aclose()


async def test_item_changed_mid_run_leaves_no_gap(harness: AdoHarness) -> None:
    # The 7th item (last id of the first WIQL window) changes between the WIQL query and its
    # batch: its new ChangedDate is past the window, so the continuation must come from the
    # 6th item, or the items after it in the old order would be skipped.
    ids = harness.seed(16, start=DAY, step=timedelta(minutes=1))
    connector = harness.connector()
    pages: list[Page] = []
    try:
        async for page in connector.changes({}):
            pages.append(page)
            if len(pages) == 1:
                harness.update(ids[6], at=datetime.now(UTC), title="moved")
    finally:
        await connector.aclose()
    got = [i.external_id for i in items_of(pages)]
    assert set(got) == set(ids)
    assert "moved" in [i.title for i in items_of(pages)]
    checkpoints = [p.checkpoint[ALL] for p in pages if p.checkpoint]
    assert checkpoints == sorted(checkpoints)
    assert all(c <= datetime.now(UTC) for c in checkpoints)


async def test_item_deleted_mid_run_is_skipped(harness: AdoHarness) -> None:
    ids = harness.seed(8, start=DAY, step=timedelta(minutes=1))
    connector = harness.connector()
    pages: list[Page] = []
    try:
        async for page in connector.changes({}):
            pages.append(page)
            if len(pages) == 1:
                harness.sandbox.delete_item(harness.ids[ids[5]])
    finally:
        await connector.aclose()
    got = [i.external_id for i in items_of(pages)]
    assert sorted(got) == sorted(ids[:5] + ids[6:])


# ---------------------------------------------------------------------------------------------
# No silent gaps: a batch answer that leaves ids out is asked again, never skipped
# ---------------------------------------------------------------------------------------------
async def test_an_empty_batch_answer_is_asked_again_not_skipped(harness: AdoHarness) -> None:
    ids = harness.seed(8, start=DAY, step=timedelta(minutes=1))
    harness.sandbox.short_batch_next()  # the first batch answer: `value: []` for 5 ids asked
    pages = await sync(harness.connector())
    assert [i.external_id for i in items_of(pages)] == ids
    # The five ids it left out were asked for again, alone, before anything was yielded.
    assert batch_sizes(harness.sandbox) == [5, 5, 2, 1]


async def test_ids_missing_from_a_batch_are_asked_again_alone(harness: AdoHarness) -> None:
    ids = harness.seed(8, start=DAY, step=timedelta(minutes=1))
    harness.sandbox.short_batch_next(drop=[2, 4])
    pages = await sync(harness.connector())
    assert [i.external_id for i in items_of(pages)] == ids
    asked = [r.json()["ids"] for r in harness.sandbox.requests_to("/workItemsBatch")]
    assert asked == [[1, 2, 3, 4, 5], [2, 4], [6, 7], [8]]


async def test_ids_a_batch_keeps_leaving_out_fail_the_run(harness: AdoHarness) -> None:
    ids = harness.seed(8, start=DAY, step=timedelta(minutes=1))
    harness.sandbox.short_batch_next(count=50, drop=[3])
    connector = harness.connector()
    pages: list[Page] = []
    try:
        with pytest.raises(RetriableError, match=r"left out .*\b3\b"):
            async for page in connector.changes({}):
                pages.append(page)
    finally:
        await connector.aclose()
    # Nothing was checkpointed at or past the item it never got.
    assert all(t < DAY + timedelta(minutes=2) for p in pages for t in p.checkpoint.values())
    assert ids[2] not in [i.external_id for i in items_of(pages)]


async def test_clearing_faults_drops_edits_and_throttles_not_taken_yet(harness: AdoHarness) -> None:
    # Found by the long model run: short answers injected for a run that failed early were
    # still pending, and the next clean run (no fault of its own) failed on them.
    ids = harness.seed(8, start=DAY, step=timedelta(minutes=1))
    harness.sandbox.short_batch_next(count=6)
    harness.sandbox.throttle_next(3, retry_after=30)
    harness.sandbox.clear_faults()
    pages = await sync(harness.connector())
    assert [i.external_id for i in items_of(pages)] == ids
    assert batch_sizes(harness.sandbox) == [5, 2, 1]  # as without any fault: nothing re-asked


async def test_an_id_deleted_before_it_is_asked_again_is_skipped(harness: AdoHarness) -> None:
    # The first answer leaves item 3 out; before the re-ask it is deleted, so the re-ask
    # answers `null` for it (errorPolicy=omit): the service says it cannot be read.
    sandbox = harness.sandbox
    ids = harness.seed(8, start=DAY, step=timedelta(minutes=1))

    def leave_out_and_delete(body: dict[str, Any]) -> None:
        body["value"] = [w for w in body["value"] if w is None or w["id"] != 3]
        body["count"] = len(body["value"])
        sandbox.delete_item(3)

    sandbox.edit_next_answer("/workItemsBatch", leave_out_and_delete)
    pages = await sync(harness.connector())
    assert [i.external_id for i in items_of(pages)] == ids[:2] + ids[3:]
    assert batch_sizes(sandbox) == [5, 1, 2, 1]


async def test_a_wiql_answer_without_work_items_is_not_an_empty_one(
    harness: AdoHarness,
) -> None:
    ids = harness.seed(3, start=DAY, step=timedelta(minutes=1))
    connector = harness.connector()
    try:
        harness.sandbox.edit_next_answer("/wiql", lambda body: body.pop("workItems"))
        assert [i.external_id for i in items_of(await collect(connector))] == ids
        harness.sandbox.edit_next_answer("/wiql", lambda body: body.pop("workItems"))
        assert [i async for batch in connector.all_ids() for i in batch] == ids
        harness.sandbox.edit_next_answer("/wiql", lambda body: body.pop("workItems"), count=50)
        with pytest.raises(RetriableError, match="without workItems"):
            await collect(connector)
    finally:
        await connector.aclose()


# ---------------------------------------------------------------------------------------------
# One malformed work item is rejected on its own, named; the page and later pages still land
# ---------------------------------------------------------------------------------------------
async def test_malformed_work_items_are_rejected_one_by_one(harness: AdoHarness) -> None:
    sandbox = harness.sandbox
    ids = harness.seed(12, start=DAY, step=timedelta(minutes=1))
    sandbox.garble(3, "System.ChangedDate", "yesterday")  # and no usable CreatedDate either
    sandbox.garble(3, "System.CreatedDate", "last week")
    sandbox.garble(5, "System.Title", 42)
    sandbox.garble(7, "System.ChangedDate", {"date": "2025-05-01"})  # CreatedDate is fine
    sandbox.garble(9, "System.Description", {"html": "<p>rich</p>"})
    connector = harness.connector()
    try:
        pages = await collect(connector)
        again = await collect(connector, {ALL: DAY - timedelta(minutes=2)})  # the next run
    finally:
        await connector.aclose()
    bad = {3, 5, 7, 9}
    good = [x for n, x in enumerate(ids, start=1) if n not in bad]
    assert [i.external_id for i in items_of(pages)] == good
    assert [r.external_key for p in pages for r in p.rejected] == ["3", "5", "7", "9"]
    rejected = {r.external_key: r for p in pages for r in p.rejected}
    assert all(r.external_id == sandbox.external_id(int(k)) for k, r in rejected.items())
    assert "System.ChangedDate" in rejected["3"].reason
    assert "System.Title" in rejected["5"].reason and "int" in rejected["5"].reason
    assert "System.ChangedDate" in rejected["7"].reason
    assert "System.Description" in rejected["9"].reason
    # Rejected items count as read: the run ends with its checkpoint, and the next run too.
    assert pages[-1].checkpoint[ALL] >= DAY + timedelta(minutes=11)
    assert [i.external_id for i in items_of(again)] == good
    assert [r.external_key for p in again for r in p.rejected] == ["3", "5", "7", "9"]


async def test_non_finite_numbers_do_not_crash_the_mapping(harness: AdoHarness) -> None:
    sandbox = harness.sandbox
    ids = harness.seed(3, start=DAY, step=timedelta(minutes=1))
    sandbox.garble(2, "Microsoft.VSTS.Common.Priority", float("nan"))
    sandbox.garble(3, "Microsoft.VSTS.Scheduling.StoryPoints", float("inf"))
    got = items_of(await sync(harness.connector()))
    assert [i.external_id for i in got] == ids
    assert got[1].priority == 0 and got[2].story_points is None


async def test_checkpoint_is_clamped_to_wiql_as_of(harness: AdoHarness) -> None:
    as_of = DAY + timedelta(hours=12)
    harness.sandbox.now = lambda: as_of
    harness.seed(3, start=as_of - timedelta(minutes=1), step=timedelta(minutes=1))
    pages = await sync(harness.connector())
    assert [p.checkpoint[ALL] for p in pages] == [as_of]
    assert max(i.updated_at for i in items_of(pages)) > as_of


async def test_empty_run_still_advances_to_as_of(harness: AdoHarness) -> None:
    as_of = DAY + timedelta(hours=12)
    harness.sandbox.now = lambda: as_of
    harness.seed(2, start=DAY, step=timedelta(minutes=1))
    pages = await sync(harness.connector(), {ALL: DAY + timedelta(hours=1)})
    assert [(len(p.items), p.checkpoint) for p in pages] == [(0, {ALL: as_of})]


async def test_wiql_sent_is_the_documented_shape(harness: AdoHarness) -> None:
    harness.seed(2, start=DAY, step=timedelta(minutes=1))
    since = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    await sync(harness.connector(), {ALL: since})
    (request,) = harness.sandbox.requests_to("/_apis/wit/wiql", "POST")
    assert request.query == {"timePrecision": ["true"], "$top": [str(TOP)]}
    assert request.json()["query"] == (
        "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project "
        "AND [System.ChangedDate] >= '2025-05-01T12:00:00Z' "
        "ORDER BY [System.ChangedDate] ASC, [System.Id] ASC"
    )
    assert request.headers["accept"] == "application/json;api-version=7.0"
    expected = "Basic " + base64.b64encode(f":{PLANTED_TOKEN}".encode()).decode()
    assert request.headers["authorization"] == expected


async def test_field_the_organization_lacks_is_dropped(harness: AdoHarness) -> None:
    harness.sandbox.known_fields.discard("Microsoft.VSTS.CMMI.Blocked")
    harness.seed(3, start=DAY, step=timedelta(minutes=1))
    got = items_of(await sync(harness.connector()))
    assert len(got) == 3
    asked = [r.json()["fields"] for r in harness.sandbox.requests_to("/workItemsBatch")]
    assert "Microsoft.VSTS.CMMI.Blocked" in asked[0]
    assert all("Microsoft.VSTS.CMMI.Blocked" not in f for f in asked[1:]) and len(asked) == 2


async def test_all_ids_windows_past_top(harness: AdoHarness) -> None:
    ids = harness.seed(20, start=DAY, step=timedelta(minutes=1))
    connector = harness.connector()
    try:
        batches = [b async for b in connector.all_ids()]
    finally:
        await connector.aclose()
    assert [len(b) for b in batches] == [7, 7, 6]
    assert [i for b in batches for i in b] == ids
    queries = wiql_texts(harness.sandbox)
    assert queries[1].endswith("AND [System.Id] > 7 ORDER BY [System.Id] ASC")


async def test_all_ids_window_adapts_after_a_refusal(harness: AdoHarness) -> None:
    # A server that counts matches before $top, with a cap of 25: the listing must narrow its
    # id window once and then carry on from the size that fitted (growing it again), not
    # bisect down from 2^31 after every refusal (that made 189 refused queries here).
    sandbox = harness.sandbox
    sandbox.cap_ignores_top, sandbox.wiql_cap = True, 25
    ids = sandbox.add_items_fast((f"I {n}", DAY + timedelta(minutes=n)) for n in range(130))
    connector = harness.connector(wiql_top=20)
    try:
        listed = [i async for batch in connector.all_ids() for i in batch]
    finally:
        await connector.aclose()
    assert listed == [sandbox.external_id(i) for i in ids]
    # The whole range, refused, drops to a window of $top ids (it cannot match more than
    # $top items); each window that fits is followed by one twice as wide, refused while
    # the ids are this dense: (20,60], (40,80], (60,100], (80,120], (100,140]. Then (120,160]
    # fits (10 ids), (160,240] is empty and the open-ended rest ends the listing.
    assert sandbox.wiql_refusals == 6
    assert len(wiql_texts(sandbox)) == 6 + 9


async def test_all_ids_window_grows_through_sparse_ids(harness: AdoHarness) -> None:
    # The scope's items are a few among many of another project (ids are per organization):
    # after the first refusal the id window doubles while it fits, so a sparse scope takes a
    # handful of queries, not one per $top ids; past the last id, the open-ended rest ends it.
    sandbox = harness.sandbox
    sandbox.add_project("Other")
    sandbox.cap_ignores_top, sandbox.wiql_cap = True, 25
    ours: list[int] = []
    for n in range(2_000):
        if n % 50 == 0:
            ours.append(sandbox.add_item(f"ours {n}", changed=DAY))
        else:
            sandbox.add_item(f"theirs {n}", changed=DAY, project="Other")
    connector = harness.connector(wiql_top=20)
    try:
        listed = [i async for batch in connector.all_ids() for i in batch]
    finally:
        await connector.aclose()
    assert listed == [sandbox.external_id(i) for i in ours]
    # 40 of ours: the open-ended query is refused once; windows of 20, 40, ... 1,280 ids fit
    # (at most 14 of ours each), the next one is empty, the open-ended rest is empty too.
    assert sandbox.wiql_refusals == 1
    assert len(wiql_texts(sandbox)) == 1 + 7 + 1 + 1


async def test_requests_conform_to_the_published_api(harness: AdoHarness) -> None:
    # Every endpoint the connector uses, with area path and types, windows and a refusal: the
    # log is checked against tests/conformance/azure_devops.json (the fixture checks it again).
    sandbox = harness.sandbox
    sandbox.add_area("My Project\\Web")
    sandbox.cap_ignores_top, sandbox.wiql_cap = True, 4
    for n in range(12):
        sandbox.add_item(
            f"W {n}",
            changed=DAY + timedelta(minutes=n),
            work_item_type=("User Story", "Bug")[n % 2],
            area_path="My Project\\Web",
        )
    connector = harness.connector(
        area_path="My Project\\Web", work_item_types=["User Story", "Bug"]
    )
    try:
        await connector.check()
        assert len(items_of(await collect(connector))) == 12
        assert sum([len(p) async for p in connector.all_ids()]) == 12
    finally:
        await connector.aclose()
    log = list(sandbox.requests)
    assert {checker.operation(ADO_API, r) for r in log} >= {
        "Wiql_Query By Wiql",
        "Work Items_Get Work Items Batch",
        "Work Item Type States_List",
    }
    checker.assert_conforms(ADO_API, log)
    assert sandbox.wiql_refusals > 0
    # The same log with one body field the spec does not have is refused, naming it.
    batch = next(r for r in log if r.path.endswith("/workItemsBatch"))
    body = {**batch.json(), "top": 5}
    drifted = replace(batch, body=json.dumps(body).encode())
    with pytest.raises(AssertionError, match=r"body\.top: a field the description does not have"):
        checker.assert_conforms(ADO_API, [*log, drifted])


def test_demo_seed_and_config(tmp_path: Path) -> None:
    with AzureDevOpsSandbox(token="demo-token") as sandbox:
        assert isinstance(sandbox, AzureDevOpsSandbox)
        sandbox.seed_demo()
        config = AzureDevOpsConfig.model_validate(sandbox.demo_config())
        assert len(sandbox.items) >= 24
        assert config.token is not None and config.token.get_secret_value() == "demo-token"
        ctx = ConnectorContext(
            integration_id="demo", token=config.token, cache_dir=tmp_path, max_retries=1
        )
        got = items_of(asyncio.run(collect(AzureDevOpsConnector(config, ctx))))
    checker.assert_conforms(ADO_API, sandbox.requests)
    statuses = {i.status for i in got}
    assert len(got) == len(sandbox.items)
    assert statuses == set(Status)


# ---------------------------------------------------------------------------------------------
# The sandbox itself answers like ADO (raw HTTP, so its refusals are visible as such)
# ---------------------------------------------------------------------------------------------
def _post(sandbox: AzureDevOpsSandbox, path: str, body: Any, token: str = PLANTED_TOKEN) -> Any:
    auth = base64.b64encode(f"user:{token}".encode()).decode()
    request = urllib.request.Request(
        f"{sandbox.organization_url}/My%20Project/_apis/wit/{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Basic {auth}",
            "Accept": "application/json;api-version=7.0",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw.startswith(b"{") else raw.decode()


def test_sandbox_refuses_what_ado_refuses(off_spec_sandbox: AzureDevOpsSandbox) -> None:
    sandbox = off_spec_sandbox
    sandbox.wiql_cap = 3
    for n in range(5):
        sandbox.add_item(f"S {n}", changed=DAY + timedelta(minutes=n))
    select = "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project"
    status, body = _post(sandbox, "wiql?timePrecision=true&$top=2", {"query": select})
    assert status == 200 and [w["id"] for w in body["workItems"]] == [1, 2]
    status, body = _post(sandbox, "wiql?timePrecision=true", {"query": select})
    assert status == 400 and body["message"].startswith("VS402337")
    status, body = _post(
        sandbox, "wiql", {"query": select + " AND [System.ChangedDate] >= '2025-05-01T00:03:00Z'"}
    )
    assert status == 400 and "timePrecision" in body["message"]
    status, body = _post(sandbox, "wiql?timePrecision=true", {"query": select + " AND ("})
    assert status == 400 and body["message"].startswith("TF51006")
    status, body = _post(sandbox, "wiql", {"query": select + " AND [No.Such] = 1"})
    assert status == 400 and body["message"].startswith("TF51005")
    query = (
        select + " AND [System.ChangedDate] > '2025-05-01T00:01:00Z' AND [System.Id] <> 4 "
        "ORDER BY [System.ChangedDate] DESC"
    )
    status, body = _post(sandbox, "wiql?timePrecision=true", {"query": query})
    assert status == 200 and [w["id"] for w in body["workItems"]] == [5, 3]
    status, body = _post(sandbox, "workItemsBatch", {"ids": list(range(1, 202))})
    assert status == 400 and body["message"].startswith("VS403474")
    status, body = _post(
        sandbox,
        "workItemsBatch",
        {"ids": [1, 99], "fields": ["System.Title"], "errorPolicy": "omit"},
    )
    assert status == 200 and body["value"][1] is None
    assert body["value"][0]["fields"] == {"System.Title": "S 0"}
    status, body = _post(sandbox, "workItemsBatch", {"ids": [1]}, token="wrong")
    assert status == 401


IDENTITY_REF_KEYS = {"displayName", "url", "_links", "id", "uniqueName", "imageUrl", "descriptor"}


def test_sandbox_wiql_answer_has_the_published_shape(sandbox: AzureDevOpsSandbox) -> None:
    # WorkItemQueryResult (wit 7.0/7.1 workItemTracking.json) and its example
    # (httpExamples/wiql/GET__wit_get_id_workitems.json): the columns are the SELECT list and
    # the sortColumns the ORDER BY, each a WorkItemFieldReference (referenceName, name, url).
    sandbox.now = lambda: DAY + timedelta(hours=12, milliseconds=617)
    for n in range(3):
        sandbox.add_item(f"S {n}", changed=DAY + timedelta(minutes=n))
    query = (
        "SELECT [System.Id], [System.Title], [State] FROM WorkItems "
        "WHERE [System.TeamProject] = @project "
        "ORDER BY [System.ChangedDate] DESC, [System.Id] ASC"
    )
    status, body = _post(sandbox, "wiql?timePrecision=true&$top=2", {"query": query})
    assert status == 200
    fields = f"{sandbox.organization_url}/_apis/wit/fields"
    assert body == {
        "queryType": "flat",
        "queryResultType": "workItem",
        "asOf": "2025-05-01T12:00:00.617Z",
        "columns": [
            {"referenceName": "System.Id", "name": "ID", "url": f"{fields}/System.Id"},
            {"referenceName": "System.Title", "name": "Title", "url": f"{fields}/System.Title"},
            {"referenceName": "System.State", "name": "State", "url": f"{fields}/System.State"},
        ],
        "sortColumns": [
            {
                "field": {
                    "referenceName": "System.ChangedDate",
                    "name": "Changed Date",
                    "url": f"{fields}/System.ChangedDate",
                },
                "descending": True,
            },
            {
                "field": {"referenceName": "System.Id", "name": "ID", "url": f"{fields}/System.Id"},
                "descending": False,
            },
        ],
        "workItems": [
            {"id": i, "url": f"{sandbox.organization_url}/_apis/wit/workItems/{i}"} for i in (3, 2)
        ],
    }
    # Without ORDER BY there is nothing to sort by: no sortColumns (as a real answer quoted on
    # Microsoft's Tech Community shows; the spec marks no property required).
    status, body = _post(sandbox, "wiql", {"query": "SELECT [System.Id] FROM WorkItems"})
    assert status == 200 and "sortColumns" not in body and len(body["workItems"]) == 3


def test_sandbox_identity_fields_are_identity_refs(sandbox: AzureDevOpsSandbox) -> None:
    # System.AssignedTo / CreatedBy / ChangedBy are IdentityRef objects (wit 7.1
    # httpExamples/workItems/GET__wit_WorkItems_id.json); every item has a creator and a last
    # changer; an unassigned item has no AssignedTo at all.
    assigned = sandbox.add_item(
        "mine",
        changed=DAY,
        fields={"System.AssignedTo": "Jamal Hartnett <fabrikamfiber4@hotmail.com>"},
    )
    unassigned = sandbox.add_item("nobody's", changed=DAY + timedelta(minutes=1))
    sandbox.update_item(
        unassigned,
        changed=DAY + timedelta(minutes=2),
        state="Active",
        fields={"System.ChangedBy": "Christie Church <fabrikamfiber1@hotmail.com>"},
    )
    status, body = _post(sandbox, "workItemsBatch", {"ids": [assigned, unassigned]})
    assert status == 200
    first, second = (w["fields"] for w in body["value"])
    assert first["System.Rev"] == body["value"][0]["rev"] == 1
    jamal = first["System.AssignedTo"]
    assert set(jamal) == IDENTITY_REF_KEYS
    assert jamal["displayName"] == "Jamal Hartnett"
    assert jamal["uniqueName"] == "fabrikamfiber4@hotmail.com"
    assert jamal["_links"] == {"avatar": {"href": jamal["_links"]["avatar"]["href"]}}
    assert jamal["descriptor"] in jamal["_links"]["avatar"]["href"]
    assert jamal["id"] in jamal["url"] and jamal["id"] in jamal["imageUrl"]
    for fields in (first, second):
        assert set(fields["System.CreatedBy"]) == IDENTITY_REF_KEYS
        assert set(fields["System.ChangedBy"]) == IDENTITY_REF_KEYS
    assert "System.AssignedTo" not in second
    assert second["System.ChangedBy"]["displayName"] == "Christie Church"
    assert second["System.CreatedBy"] == first["System.CreatedBy"]  # the sandbox's own user
    # WIQL compares an identity with its display name, its unique name or both.
    select = "SELECT [System.Id] FROM WorkItems WHERE [System.AssignedTo] = "
    for who in ("Jamal Hartnett", "fabrikamfiber4@hotmail.com"):
        status, body = _post(sandbox, "wiql", {"query": f"{select}'{who}'"})
        assert [w["id"] for w in body["workItems"]] == [assigned]
    # An older server (TFS 2018, api-version 4.1 examples) sends "Name <unique name>" text.
    sandbox.identities_as_strings = True
    status, body = _post(
        sandbox, "workItemsBatch", {"ids": [assigned], "fields": ["System.AssignedTo"]}
    )
    assert body["value"][0]["fields"] == {
        "System.AssignedTo": "Jamal Hartnett <fabrikamfiber4@hotmail.com>"
    }


@pytest.mark.parametrize("as_strings", [False, True], ids=["IdentityRef", "text"])
async def test_identity_fields_are_read_as_objects_or_text(
    harness: AdoHarness, as_strings: bool
) -> None:
    # The connector maps no identity field to a column: an IdentityRef (or an older server's
    # text) changes nothing but the raw item it keeps.
    sandbox = harness.sandbox
    sandbox.identities_as_strings = as_strings
    mine = sandbox.add_item(
        "mine",
        changed=DAY,
        fields={
            "System.AssignedTo": "Jamal Hartnett <fabrikamfiber4@hotmail.com>",
            "Microsoft.VSTS.Common.Priority": 1,
        },
    )
    sandbox.update_item(mine, changed=DAY + timedelta(hours=1), state="Active", tags="Blocked")
    other = sandbox.add_item(
        "other", changed=DAY + timedelta(hours=2), fields={"Microsoft.VSTS.Common.Priority": 3}
    )
    got = {i.external_key: i for i in items_of(await sync(harness.connector()))}
    assert got[str(mine)].status is Status.BLOCKED and got[str(mine)].priority == 4
    assert got[str(other)].status is Status.QUEUED and got[str(other)].priority == 2
    assigned = got[str(mine)].raw["fields"]["System.AssignedTo"]
    # kept in external_data without the unique name (an e-mail address)
    if as_strings:
        assert assigned == "Jamal Hartnett"
    else:
        assert set(assigned) == IDENTITY_REF_KEYS - {"uniqueName"}
        assert assigned["displayName"] == "Jamal Hartnett"
        assert assigned["_links"]["avatar"]["href"].startswith(sandbox.organization_url)
    assert "System.AssignedTo" not in got[str(other)].raw["fields"]


async def test_a_batch_is_the_sdks_request_and_reads_as_the_sdks_answer(
    harness: AdoHarness,
) -> None:
    """The connector sends workItemsBatch through the SDK's client and reads the answer as JSON
    (`_work_items_batch`): the request is the one the SDK's own get_work_items_batch sends, and
    the entries are what its models held, `null` (an id it cannot read) included."""
    from azure.devops.v7_0.work_item_tracking.models import WorkItemBatchGetRequest

    sandbox = harness.sandbox
    ids = [
        sandbox.add_item(
            f"Story ünïcode {n}",
            changed=DAY + timedelta(minutes=n),
            fields={"System.Tags": "a; b", "Microsoft.VSTS.Common.Priority": n},
        )
        for n in range(3)
    ]
    request = WorkItemBatchGetRequest(
        ids=[*ids, max(ids) + 100],
        fields=["System.Id", "System.Title", "System.Tags", "Microsoft.VSTS.Common.Priority"],
        error_policy="omit",
    )
    connector = harness.connector()
    try:
        wit = await asyncio.to_thread(connector._wit)
        sandbox.clear_requests()
        models = await asyncio.to_thread(wit.get_work_items_batch, request, sandbox.project)
        ours = await asyncio.to_thread(_work_items_batch, wit, request, sandbox.project)
    finally:
        await connector.aclose()
    sdk_sent, we_sent = sandbox.requests_to("/workItemsBatch")
    assert (we_sent.method, we_sent.url, we_sent.json()) == (
        sdk_sent.method, sdk_sent.url, sdk_sent.json()
    )  # fmt: skip
    assert we_sent.headers["accept"] == sdk_sent.headers["accept"]
    assert we_sent.headers["content-type"] == sdk_sent.headers["content-type"]
    assert ours == [
        None if w is None else {"id": w.id, "rev": w.rev, "fields": w.fields, "url": w.url}
        for w in models
    ]
    assert ours[-1] is None and [w["id"] for w in ours[:-1] if w] == ids

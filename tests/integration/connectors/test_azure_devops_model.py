"""The richer model of Azure DevOps work items through the sync run (the real SDK, the sandbox
over HTTP, every request and answer checked against Microsoft's published spec, real
PostgreSQL): parents (System.Parent), item types, tags, assignees, iterations as sprints with
the dates of the project's iteration tree, `extra_fields`; moves between parents and sprints
with their history; malformed values; what each costs in requests."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from connectors.azure_devops import AzureDevOpsConfig, AzureDevOpsConnector
from connectors.azure_devops_model import (
    IterationTree,
    KnownField,
    item_kind,
    iteration_path,
    resolve_extra_fields,
    sprint_of,
    sprint_state,
)
from connectors.base import ConnectorContext
from connectors.sandbox.azure_devops import AzureDevOpsSandbox
from tests.conformance import checker
from tests.helpers import succeeded_run
from tests.integration.connectors.contract import PLANTED_TOKEN, collect, items_of
from tests.integration.connectors.sync_helpers import (
    ADO_API,
    ado_integration,
    ado_sandbox,
    memberships,
    model_rows,
)
from worker import sync
from worker.settings import Settings

NOW = datetime.now(UTC)
# Upstream changes in the recent past: the item cursor follows the sandbox's clock (WIQL asOf).
T0 = (NOW - timedelta(days=10)).replace(hour=8, minute=0, second=0, microsecond=0)
H = timedelta(hours=1)
DAY = timedelta(days=1)
ADA = "Ada Lovelace <ada.lovelace@example.com>"
LUKAS = "Lukas Novak <lukas.novak@example.com>"


@pytest.fixture
def sandbox() -> Iterator[AzureDevOpsSandbox]:
    yield from ado_sandbox()


async def integration_for(
    pool: asyncpg.Pool, sandbox: AzureDevOpsSandbox, **config: Any
) -> uuid.UUID:
    # a page per item: the order across pages is the order of changes
    return await ado_integration(pool, sandbox, **{"batch_size": 1, **config})


async def run(pool: asyncpg.Pool, integration: uuid.UUID, settings: Settings) -> sync.RunResult:
    return await succeeded_run(pool, integration, settings, AzureDevOpsConnector)


def tree_requests(sandbox: AzureDevOpsSandbox) -> int:
    return len(sandbox.requests_to("/_apis/wit/classificationNodes/", "GET"))


def sprints_of_project(sandbox: AzureDevOpsSandbox) -> tuple[int, int, int]:
    """Sprint 1 (closed), Sprint 2 (active), Sprint 3 (future): their node ids."""
    return (
        sandbox.add_iteration("My Project\\Sprint 1", NOW - 20 * DAY, NOW - 8 * DAY),
        sandbox.add_iteration("My Project\\Sprint 2", NOW - 7 * DAY, NOW + 7 * DAY),
        sandbox.add_iteration("My Project\\Release 2\\Sprint 3", NOW + 8 * DAY, NOW + 21 * DAY),
    )


def epic_with_children(sandbox: AzureDevOpsSandbox, children_first: bool) -> dict[str, int]:
    """An epic over a story, a bug and a task, across Sprint 1 and Sprint 2."""
    epic_at, kids_at = (T0 + 5 * H, T0) if children_first else (T0, T0 + H)
    epic = sandbox.add_item(
        "Checkout revamp", changed=epic_at, work_item_type="Epic", fields={"System.Tags": "roadmap"}
    )
    s1, s2 = "My Project\\Sprint 1", "My Project\\Sprint 2"
    kids = [
        ("Saved cards", "User Story", s1, "backend; payments", ADA),
        ("Totals off by a cent", "Bug", s2, "payments", LUKAS),
        ("Write the migration", "Task", s2, "", None),
    ]
    ids = {"epic": epic}
    for n, (title, kind, sprint, tags, who) in enumerate(kids):
        ids[kind] = sandbox.add_item(
            title,
            changed=kids_at + n * H,
            work_item_type=kind,
            fields={
                "System.Parent": epic,
                "System.IterationPath": sprint,
                "System.Tags": tags,
                "System.AssignedTo": who,
                "Microsoft.VSTS.Scheduling.StoryPoints": float(n + 2),
            },
        )
    return ids


async def memberships_of(pool: asyncpg.Pool, external_id: str) -> dict[str, bool]:
    """Sprint name -> whether the item is still in it."""
    return {
        name: now
        for (item, name), now in (await memberships(pool, "name")).items()
        if item == external_id
    }


async def no_email_in_the_model(pool: asyncpg.Pool) -> None:
    dumped = await pool.fetchval(
        "SELECT string_agg(concat_ws(' ', labels::text, assignees::text, fields::text,"
        " external_data::text, item_type_name, parent_external_id), ' ') FROM work_items"
    )
    sprints = await pool.fetchval("SELECT string_agg(s::text, ' ') FROM sprints s")
    for text in (dumped, sprints or ""):
        assert "@" not in text and "example.com" not in text


# ---------------------------------------------------------------------------------------------
# An epic, its children, two sprints
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("children_first", [True, False], ids=["children-first", "epic-first"])
async def test_an_epic_with_three_children_across_two_sprints(
    pool: asyncpg.Pool, sandbox: AzureDevOpsSandbox, settings: Settings, children_first: bool
) -> None:
    sprints_of_project(sandbox)
    ids = epic_with_children(sandbox, children_first)
    integration = await integration_for(pool, sandbox)

    first = await run(pool, integration, settings)
    assert first.created == 4
    ext = {k: sandbox.external_id(v) for k, v in ids.items()}
    rows = await model_rows(pool)
    assert {k: rows[e]["parent"] for k, e in ext.items()} == {
        "epic": None, "User Story": ext["epic"], "Bug": ext["epic"], "Task": ext["epic"],
    }  # fmt: skip
    # What the connector reports of each item (types, tags, assignees, iterations as sprints) is
    # the contract's (contract.py); here: the links and memberships in the store.
    assert await memberships_of(pool, ext["User Story"]) == {"Sprint 1": True}
    assert await memberships_of(pool, ext["Task"]) == {"Sprint 2": True}
    assert await memberships_of(pool, ext["epic"]) == {}
    rollup = await pool.fetchrow("SELECT children, points FROM v_epic_rollup")
    assert (rollup["children"], rollup["points"]) == (3, 2 + 3 + 4)
    # four pages, one iteration tree (read once, when the first page named an iteration)
    assert tree_requests(sandbox) == 1
    await no_email_in_the_model(pool)

    before = await pool.fetchval("SELECT count(*) FROM activity_logs WHERE event_type <> 'sync'")
    again = await run(pool, integration, settings)
    assert (again.created, again.updated) == (0, 0)
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM activity_logs WHERE event_type = 'work_item_updated'"
        )
        == 0
    )
    assert await model_rows(pool) == rows
    # a quiet run reads no item, so no tree either
    assert tree_requests(sandbox) == 1
    items_read = [r for r in sandbox.requests_to("/workItemsBatch") if "asOf" not in r.json()]
    assert len(items_read) == 4  # the first run's four pages; the quiet run read none
    after = await pool.fetchval("SELECT count(*) FROM activity_logs WHERE event_type <> 'sync'")
    assert after == before  # a run that changes nothing writes no row (worker/runlog.py)


async def test_moving_a_child_to_another_parent_and_sprint(
    pool: asyncpg.Pool, sandbox: AzureDevOpsSandbox, settings: Settings
) -> None:
    sprints_of_project(sandbox)
    ids = epic_with_children(sandbox, children_first=True)
    other = sandbox.add_item("Wallet", changed=T0 + 6 * H, work_item_type="Epic")
    integration = await integration_for(pool, sandbox)
    await run(pool, integration, settings)
    child = sandbox.external_id(ids["Task"])
    assert await memberships_of(pool, child) == {"Sprint 2": True}

    # moved in the board: a new revision (ChangedDate now) names another parent and iteration
    sandbox.update_item(
        ids["Task"],
        changed=datetime.now(UTC),
        parent=other,
        iteration_path="My Project\\Release 2\\Sprint 3",
    )
    moved = await run(pool, integration, settings)
    assert moved.updated == 1
    rows = await model_rows(pool)
    assert rows[child]["parent"] == sandbox.external_id(other)
    assert await memberships_of(pool, child) == {"Sprint 2": False, "Sprint 3": True}
    assert await pool.fetchval("SELECT state FROM sprints WHERE name = 'Sprint 3'") == "future"
    updated = await pool.fetchrow(
        "SELECT metadata FROM activity_logs WHERE event_type = 'work_item_updated'"
    )
    assert "parent_external_id" in updated["metadata"]["fields"]
    history = {
        r["field"]: (r["change_id"], r["from_value"], r["to_value"])
        for r in await pool.fetch(
            "SELECT h.field, h.change_id, h.from_value, h.to_value FROM work_item_history h"
            " JOIN work_items w ON w.id = h.work_item_id"
            " WHERE w.external_id = $1 AND h.field IN ('parent', 'sprint') AND h.from_value"
            " IS NOT NULL",
            child,
        )
    }
    revision = f"{ids['Task']}.2"
    assert history == {
        "parent": (revision, sandbox.external_id(ids["epic"]), sandbox.external_id(other)),
        "sprint": (revision, "My Project\\Sprint 2", "My Project\\Release 2\\Sprint 3"),
    }
    creation = await pool.fetch(
        "SELECT h.field, h.to_value FROM work_item_history h JOIN work_items w"
        " ON w.id = h.work_item_id WHERE w.external_id = $1 AND h.change_id = $2"
        " AND h.field IN ('parent', 'sprint') ORDER BY 1",
        child,
        f"{ids['Task']}.1",
    )
    assert [tuple(r) for r in creation] == [
        ("parent", sandbox.external_id(ids["epic"])),
        ("sprint", "My Project\\Sprint 2"),
    ]

    quiet = await run(pool, integration, settings)
    assert (quiet.created, quiet.updated) == (0, 0)
    assert await memberships_of(pool, child) == {"Sprint 2": False, "Sprint 3": True}


async def test_items_at_the_project_root_cost_no_iteration_request(
    pool: asyncpg.Pool, sandbox: AzureDevOpsSandbox, settings: Settings
) -> None:
    sprints_of_project(sandbox)  # the project has sprints, its items are in none
    for n in range(3):
        sandbox.add_item(f"Story {n}", changed=T0 + n * H)
    integration = await integration_for(pool, sandbox)
    await run(pool, integration, settings)
    assert tree_requests(sandbox) == 0
    assert await pool.fetchval("SELECT count(*) FROM sprints") == 0
    assert await pool.fetchval("SELECT count(*) FROM work_items WHERE item_type = 'story'") == 3


async def test_a_server_without_parent_and_iteration_id_fields(
    pool: asyncpg.Pool, sandbox: AzureDevOpsSandbox, settings: Settings
) -> None:
    # An older collection: the batch refuses System.Parent and System.IterationId (TF51535);
    # they are dropped, the items land, sprints are found by path in the tree.
    sandbox.known_fields -= {"System.Parent", "System.IterationId"}
    s1, _, _ = sprints_of_project(sandbox)
    epic = sandbox.add_item("Epic", changed=T0, work_item_type="Epic")
    story = sandbox.add_item(
        "Story",
        changed=T0 + H,
        fields={"System.Parent": epic, "System.IterationPath": "my project\\sprint 1"},
    )
    integration = await integration_for(pool, sandbox)
    await run(pool, integration, settings)
    rows = await model_rows(pool)
    assert rows[sandbox.external_id(story)]["parent_external_id"] is None
    site = sandbox.external_id(0).rsplit("/", 1)[0]
    assert await pool.fetchval("SELECT external_id FROM sprints") == f"{site}/iterations/{s1}"
    assert await memberships_of(pool, sandbox.external_id(story)) == {"Sprint 1": True}
    asked = sandbox.requests_to("/workItemsBatch")[-1].json()["fields"]
    assert "System.Parent" not in asked and "System.IterationId" not in asked


# ---------------------------------------------------------------------------------------------
# Malformed values and e-mail addresses
# ---------------------------------------------------------------------------------------------
async def test_malformed_model_values_do_not_fail_the_page(
    pool: asyncpg.Pool, sandbox: AzureDevOpsSandbox, settings: Settings
) -> None:
    sprints_of_project(sandbox)
    epic = sandbox.add_item("Epic", changed=T0, work_item_type="Epic")
    a = sandbox.add_item("parent as text", changed=T0 + H, fields={"System.Parent": epic})
    sandbox.garble(a, "System.Parent", "12")
    b = sandbox.add_item("iteration of the wrong type", changed=T0 + 2 * H)
    sandbox.garble(b, "System.IterationPath", 42)
    sandbox.garble(b, "System.IterationId", "x")
    c = sandbox.add_item(
        "long and NUL labels",
        changed=T0 + 3 * H,
        fields={"System.Tags": "ok; " + "z" * 600 + "; nul\x00byte", "System.AssignedTo": ADA},
    )
    sandbox.garble(c, "System.AssignedTo", "Eve Example <eve@example.com>")  # the text form
    d = sandbox.add_item("an iteration the tree lacks", changed=T0 + 4 * H)
    sandbox.garble(d, "System.IterationPath", "My Project\\Gone")
    sandbox.garble(d, "System.IterationId", 99999)
    e = sandbox.add_item("a type of its own", changed=T0 + 5 * H, work_item_type="Spike")
    sandbox.set_states("Spike", [("New", "Proposed")])
    sandbox.garble(e, "System.Parent", {"id": epic})  # a parent of another shape
    integration = await integration_for(pool, sandbox, batch_size=200)  # one page of them all

    result = await run(pool, integration, settings)
    assert result.created == 6
    assert not await pool.fetchval(
        "SELECT count(*) FROM activity_logs WHERE event_type = 'work_item_rejected'"
    )
    rows = await model_rows(pool)
    got = {sandbox.external_id(i): rows[sandbox.external_id(i)] for i in (a, b, c, d, e)}
    assert [got[sandbox.external_id(i)]["parent_external_id"] for i in (a, e)] == [None, None]
    labels = got[sandbox.external_id(c)]["labels"]
    assert labels[0] == "ok" and labels[2] == "nulbyte" and labels[1].startswith("zzz")
    assert got[sandbox.external_id(c)]["assignees"] == [{"name": "Eve Example", "account_id": None}]
    assert got[sandbox.external_id(e)]["item_type"] == "other"
    assert got[sandbox.external_id(e)]["item_type_name"] == "Spike"
    assert await memberships_of(pool, sandbox.external_id(b)) == {}
    # an iteration the tree does not hold keeps its id and name, without dates or state
    site = sandbox.external_id(0).rsplit("/", 1)[0]
    gone = await pool.fetchrow(
        "SELECT name, state, starts_at FROM sprints WHERE external_id = $1",
        f"{site}/iterations/99999",
    )
    assert tuple(gone) == ("Gone", None, None)
    await no_email_in_the_model(pool)


# ---------------------------------------------------------------------------------------------
# extra_fields
# ---------------------------------------------------------------------------------------------
async def test_extra_fields_by_display_or_reference_name(
    pool: asyncpg.Pool,
    sandbox: AzureDevOpsSandbox,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    sandbox.add_field("Custom.Team", "Team")
    sandbox.add_field("Custom.Reviewer", "Reviewer", identity=True)
    full = sandbox.add_item(
        "Bug with extras",
        changed=T0,
        work_item_type="Bug",
        fields={
            "Microsoft.VSTS.Common.Severity": "2 - High",
            "Custom.Team": "Core",
            "Custom.Reviewer": "Rita Reviewer <rita.reviewer@example.com>",
        },
    )
    bare = sandbox.add_item("Story without them", changed=T0 + H)
    integration = await integration_for(
        pool,
        sandbox,
        extra_fields=["Severity", "Custom.Team", "reviewer", "No Such Field"],
    )
    await run(pool, integration, settings)
    rows = await model_rows(pool)
    assert rows[sandbox.external_id(full)]["fields"] == {
        "Severity": "2 - High", "Custom.Team": "Core", "reviewer": "Rita Reviewer",
    }  # fmt: skip
    assert rows[sandbox.external_id(bare)]["fields"] == {
        "Severity": None, "Custom.Team": None, "reviewer": None,
    }  # fmt: skip
    # resolved once a run (two pages), through the organization's field list
    assert len(sandbox.requests_to("/_apis/wit/fields", "GET")) == 1
    asked = sandbox.requests_to("/workItemsBatch")[0].json()["fields"]
    assert {"Microsoft.VSTS.Common.Severity", "Custom.Team", "Custom.Reviewer"} <= set(asked)
    # the name that resolves to nothing: a warning in the log and one activity row a day
    warned = [r for r in caplog.records if r.getMessage() == "sync_warning"]
    assert [r.fields["code"] for r in warned] == ["extra_field_unknown"]  # type: ignore[attr-defined]
    await run(pool, integration, settings)
    rows = await pool.fetch(
        "SELECT message, metadata->>'code' AS code, metadata->>'integration_id' AS integration"
        " FROM activity_logs WHERE event_type = 'sync_warning'"
    )
    assert [(r["code"], r["integration"]) for r in rows] == [
        ("extra_field_unknown", str(integration))
    ]
    assert "'No Such Field'" in rows[0]["message"]
    await no_email_in_the_model(pool)


async def test_no_extra_fields_cost_no_field_list(
    pool: asyncpg.Pool, sandbox: AzureDevOpsSandbox, settings: Settings
) -> None:
    sandbox.add_item("Story", changed=T0)
    integration = await integration_for(pool, sandbox)
    await run(pool, integration, settings)
    assert sandbox.requests_to("/_apis/wit/fields") == []
    assert await pool.fetchval("SELECT fields FROM work_items") == {}


# ---------------------------------------------------------------------------------------------
# The sandbox refuses what the service refuses; the demo fills the new columns
# ---------------------------------------------------------------------------------------------
def _get(sandbox: AzureDevOpsSandbox, path: str) -> tuple[int, Any]:
    auth = base64.b64encode(f"user:{PLANTED_TOKEN}".encode()).decode()
    request = urllib.request.Request(
        f"{sandbox.organization_url}/{path}",
        headers={"Authorization": f"Basic {auth}", "Accept": "application/json;api-version=7.0"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_sandbox_iteration_tree_and_its_refusals() -> None:
    with AzureDevOpsSandbox(token=PLANTED_TOKEN) as sandbox:
        assert isinstance(sandbox, AzureDevOpsSandbox)
        sandbox.add_iteration("My Project\\Release 1\\Sprint 1", NOW, NOW + 13 * DAY)
        base = "My%20Project/_apis/wit/classificationNodes"
        status, root = _get(sandbox, f"{base}/iterations?$depth=2")
        assert status == 200
        assert root["path"] == "\\My Project\\Iteration" and root["hasChildren"] is True
        [release] = root["children"]
        [sprint] = release["children"]
        assert sprint["path"] == "\\My Project\\Iteration\\Release 1\\Sprint 1"
        assert sprint["attributes"]["startDate"].endswith("T00:00:00Z")
        status, shallow = _get(sandbox, f"{base}/iterations")  # $depth defaults to 0
        assert status == 200 and "children" not in shallow
        status, node = _get(sandbox, f"{base}/iterations/Release%201")
        assert (status, node["name"]) == (200, "Release 1")
        for bad in ("?$depth=-1", "?$depth=two"):
            status, body = _get(sandbox, f"{base}/iterations{bad}")
            assert status == 400 and "depth" in body["message"]
        status, body = _get(sandbox, f"{base}/iterations/Nowhere")
        assert status == 404 and body["message"].startswith("VS402485")
    checker.assert_conforms(
        ADO_API, [r for r in sandbox.requests if r.query.get("$depth", ["0"])[0] in ("0", "2")]
    )


def test_demo_seed_fills_the_new_columns(tmp_path: Path) -> None:
    with AzureDevOpsSandbox(token="demo-token") as sandbox:
        assert isinstance(sandbox, AzureDevOpsSandbox)
        sandbox.seed_demo()
        config = AzureDevOpsConfig.model_validate(sandbox.demo_config())
        ctx = ConnectorContext(
            integration_id="demo", token=config.token, cache_dir=tmp_path, max_retries=1
        )
        got = items_of(asyncio.run(collect(AzureDevOpsConnector(config, ctx))))
    checker.assert_conforms(ADO_API, sandbox.requests)
    epics = {i.external_id for i in got if i.item_type == "epic"}
    assert len(epics) == 2
    assert sum(1 for i in got if i.parent_external_id in epics) >= 10
    assert {(s.name, s.state) for i in got for s in i.sprints} == {
        ("Sprint 1", "closed"),
        ("Sprint 2", "active"),
    }
    assert {"task", "bug", "story", "epic"} <= {i.item_type for i in got}
    assert any(i.labels for i in got) and any(i.assignees for i in got)


# ---------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------
def test_item_kinds() -> None:
    names = [
        "Epic", "Feature", "User Story", "Product Backlog Item", "requirement", "Task", "Bug",
        "Issue", "Impediment", "Test Case",
    ]  # fmt: skip
    assert [item_kind(n)[0] for n in names] == [
        "epic", "feature", "story", "story", "story", "task", "bug", "issue", "issue", "other",
    ]  # fmt: skip
    assert item_kind(" Bug ") == ("bug", "Bug") and item_kind(None) == (None, None)


def test_sprint_state_and_paths() -> None:
    start = datetime(2025, 5, 1, tzinfo=UTC)
    end = datetime(2025, 5, 14, tzinfo=UTC)  # the last day of the sprint
    assert sprint_state(start, end, start - timedelta(seconds=1)) == "future"
    assert sprint_state(start, end, start) == "active"
    assert sprint_state(start, end, end + timedelta(hours=23)) == "active"  # all its last day
    assert sprint_state(start, end, end + DAY) == "closed"
    assert sprint_state(None, end, start) is None and sprint_state(start, None, start) is None
    assert iteration_path("\\P\\Iteration\\R1\\S1") == "P\\R1\\S1"
    assert iteration_path("\\P\\Iteration") == "P"
    # the root iteration is no sprint; an unnamed one without id neither
    empty = IterationTree()
    assert sprint_of({"System.IterationPath": "P"}, empty, "site", start) is None
    assert sprint_of({"System.IterationPath": "P\\S"}, empty, "site", start) is None
    found = sprint_of(
        {"System.IterationPath": "P\\S", "System.IterationId": 7}, None, "site", start
    )
    assert found is not None and (found.external_id, found.name) == ("site/iterations/7", "S")


def test_extra_fields_resolve_by_reference_name_first() -> None:
    known = [
        KnownField("Custom.Severity", "Severity"),  # a custom field named like another's ref
        KnownField("Microsoft.VSTS.Common.Severity", "Severity (common)"),
        KnownField("Custom.Owner", "Owner", identity=True),
    ]
    resolved, unknown = resolve_extra_fields(
        ["microsoft.vsts.common.severity", "severity", "OWNER", "nope"], known
    )
    assert [(x.label, x.reference, x.identity) for x in resolved] == [
        ("microsoft.vsts.common.severity", "Microsoft.VSTS.Common.Severity", False),
        ("severity", "Custom.Severity", False),
        ("OWNER", "Custom.Owner", True),
    ]
    assert unknown == ["nope"]

"""The richer model of Jira issues through a real sync run: the sandbox over HTTP (Cloud and Data
Center, every request checked against the published API), the real SDK, real PostgreSQL.

An epic with three children across two sprints lands with its parent links (whichever side is
synced first; on Data Center through the Epic Link key, resolved with one batched search),
sprint membership, labels, assignees and item types; moving a child to another parent and
sprint updates the rows and the history; a second sync writes nothing. Malformed values do not
fail the page; extra_fields are simplified, an unknown one is a warning; no e-mail address is
stored anywhere.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import requests

from connectors.base import Sprint
from connectors.jira_model import (
    epic_key_of,
    item_type_of,
    parent_id_of,
    parse_sprint_string,
    simple_value,
    sprints_of,
)
from connectors.sandbox.base import Request
from connectors.sandbox.jira import (
    EPIC_LINK_FIELD,
    SPRINT_FIELD,
    JiraDataCenterSandbox,
    JiraSandbox,
    SandboxIssue,
    _stable_id,
)
from tests.helpers import succeeded_run
from tests.integration.connectors import test_jira_oauth as oauth
from tests.integration.connectors.contract import PLANTED_TOKEN, T0
from tests.integration.connectors.sync_helpers import (
    is_dc,
    jira_integration,
    jira_sandbox,
    memberships,
    model_rows,
)
from tests.integration.connectors.test_jira import checked
from worker import sync
from worker.settings import Settings

H = timedelta(hours=1)
M = timedelta(minutes=1)
ADA, GRACE = "Ada Lovelace", "Grace Hopper"


@pytest.fixture(params=["cloud", "dc"])
def jira(request: pytest.FixtureRequest) -> Iterator[JiraSandbox]:
    yield from jira_sandbox(request.param)


def account(jira: JiraSandbox, name: str) -> str:
    """The account id the sandbox gives a user: Cloud accountId, Data Center key."""
    return f"JIRAUSER{_stable_id(name)}" if is_dc(jira) else _stable_id(name)


async def integration_of(pool: asyncpg.Pool, jira: JiraSandbox, **extra: Any) -> uuid.UUID:
    # children and their epic on different pages
    return await jira_integration(pool, jira, **{"page_size": 2, **extra})


async def run(pool: asyncpg.Pool, integration: uuid.UUID, settings: Settings) -> sync.RunResult:
    return await succeeded_run(pool, integration, settings)


def key_searches(jira: JiraSandbox) -> list[Any]:
    """The searches that resolve Epic Link keys (`key in (…)`)."""
    found = []
    for request in jira.requests_to("/search"):
        jql = (request.query.get("jql") or [""])[0] if request.method == "GET" else ""
        if request.method == "POST":
            jql = (request.json() or {}).get("jql", "")
        if jql.startswith("key in"):
            found.append(request)
    return found


def epic_and_children(jira: JiraSandbox, *, children_first: bool) -> list[SandboxIssue]:
    """An epic and three children (Story, Bug, Task) in two sprints. With `children_first` the
    children were updated before the epic, so they are synced (on an earlier page) first."""
    sprint_1 = jira.add_sprint("Sprint 1", "closed", start=T0 - 14 * 24 * H, end=T0, goal="a, b")
    jira.add_sprint("Sprint 2", "active", start=T0, end=T0 + 14 * 24 * H)
    assert sprint_1.id == 1
    epic = jira.add_issue(
        "ABC", "The epic", issuetype="Epic", updated=T0 + (H if children_first else 0 * H)
    )
    kids = [
        ("Story", ["backend"], ADA, "Sprint 1"),
        ("Bug", ["backend", "api"], GRACE, "Sprint 1"),
        ("Task", [], None, "Sprint 2"),
    ]
    children = [
        jira.add_issue(
            "ABC",
            f"Child {n}",
            issuetype=kind,
            labels=labels,
            assignee=who,
            sprint=sprint,
            parent=epic.key,
            story_points=n + 1,
            updated=T0 + 10 * M + n * M,
        )
        for n, (kind, labels, who, sprint) in enumerate(kids)
    ]
    return [epic, *children]


async def assert_no_email(pool: asyncpg.Pool) -> None:
    stored = await pool.fetchval(
        "SELECT string_agg(concat_ws(' ', external_data::text, assignees::text, fields::text,"
        " array_to_string(labels, ' '), item_type_name, parent_external_id), ' ')"
        " FROM work_items"
    )
    assert "@example.com" not in (stored or "")
    assert not await pool.fetchval(
        "SELECT count(*) FROM work_item_history"
        " WHERE concat_ws(' ', from_value, to_value, actor_name, actor_id) LIKE '%@%'"
    )


@pytest.mark.parametrize("children_first", [True, False], ids=["children-first", "epic-first"])
async def test_an_epic_with_three_children_across_two_sprints_lands_linked(
    pool: asyncpg.Pool, jira: JiraSandbox, settings: Settings, children_first: bool
) -> None:
    epic, *children = epic_and_children(jira, children_first=children_first)
    ids = [jira.external_id(i) for i in (epic, *children)]
    integration = await integration_of(pool, jira)

    first = await run(pool, integration, settings)

    assert first.created == 4
    rows = await model_rows(pool)
    assert {i: rows[i]["parent"] for i in ids} == {ids[0]: None, **dict.fromkeys(ids[1:], ids[0])}
    # What the connector reports of each item (types, labels, assignees, sprints) is the
    # contract's (contract.py); here: the links and memberships in the store.
    s1, s2 = (f"{jira.site}/sprint/{n}" for n in (1, 2))
    assert await memberships(pool) == {(ids[1], s1): True, (ids[2], s1): True, (ids[3], s2): True}
    rollup = await pool.fetchrow("SELECT children, points FROM v_epic_rollup")
    assert (rollup["children"], rollup["points"]) == (3, 6)
    # Data Center names the epic by key: one batched search when the children come first (on
    # an earlier page than their epic), none when the epic was read already; Cloud never.
    lookups = key_searches(jira)
    assert len(lookups) == (1 if is_dc(jira) and children_first else 0)
    if lookups:
        assert lookups[0].query["validateQuery"] == ["False"]
    await assert_no_email(pool)

    before = await model_rows(pool), await memberships(pool)
    activity = await pool.fetchval("SELECT count(*) FROM activity_logs")
    again = await run(pool, integration, settings)
    assert (again.created, again.updated) == (0, 0)
    assert (await model_rows(pool), await memberships(pool)) == before
    assert not await pool.fetchval(
        "SELECT count(*) FROM activity_logs WHERE event_type = 'work_item_updated'"
    )
    # a run that changes nothing writes no row (the sync state counts it: worker/runlog.py)
    assert await pool.fetchval("SELECT count(*) FROM activity_logs") == activity
    assert len(key_searches(jira)) == len(lookups)  # the key is known (cache_dir) next run


async def test_moving_a_child_to_another_parent_and_sprint_updates_rows_and_history(
    pool: asyncpg.Pool, jira: JiraSandbox, settings: Settings
) -> None:
    epic, first_child, *_ = epic_and_children(jira, children_first=False)
    other = jira.add_issue("ABC", "Another epic", issuetype="Epic", updated=T0 + 20 * M)
    integration = await integration_of(pool, jira)
    await run(pool, integration, settings)
    child = jira.external_id(first_child)

    jira.update_issue(first_child.id, at=T0 + 2 * H, by=ADA, parent=other.key, sprint="Sprint 2")
    result = await run(pool, integration, settings)

    assert result.updated == 1
    assert (await model_rows(pool))[child]["parent"] == jira.external_id(other)
    s1, s2 = (f"{jira.site}/sprint/{n}" for n in (1, 2))
    member = {k[1]: now for k, now in (await memberships(pool)).items() if k[0] == child}
    assert member == {s1: False, s2: True}  # left Sprint 1 (removed_at set), kept as history
    history = await pool.fetch(
        "SELECT h.field, h.from_value, h.to_value, h.actor_name FROM work_item_history h"
        " JOIN work_items w ON w.id = h.work_item_id"
        " WHERE w.external_id = $1 AND h.field IN ('parent', 'sprint') ORDER BY h.field",
        child,
    )
    assert [tuple(r) for r in history] == [
        ("parent", epic.key, other.key, ADA),
        ("sprint", "Sprint 1", "Sprint 2", ADA),
    ]
    await assert_no_email(pool)

    again = await run(pool, integration, settings)
    assert (again.created, again.updated) == (0, 0)


async def test_malformed_values_are_handled_without_failing_the_page(
    pool: asyncpg.Pool, jira: JiraSandbox, settings: Settings
) -> None:
    good = jira.add_issue("ABC", "Fine", updated=T0, labels=["ok"])
    odd = jira.add_issue("ABC", "Odd", updated=T0 + M)
    jira.corrupt_issue(
        odd.id,
        labels=["x" * 600, "nul\x00byte", 7, None, "  "],
        issuetype="Story",  # a string, not an object
        assignee="someone@example.com",  # not a user object, and an address
        parent={"id": "not-a-number", "key": "ABC-1"},
        **{SPRINT_FIELD: ["com.atlassian.greenhopper.service.sprint.Sprint@1[garbage", {"x": 1}]},
    )
    if is_dc(jira):
        jira.corrupt_issue(odd.id, **{EPIC_LINK_FIELD: {"key": "ABC-1"}})  # not a key string
    integration = await integration_of(pool, jira)

    result = await run(pool, integration, settings)

    assert result.created == 2
    rows = await model_rows(pool)
    row = rows[jira.external_id(odd)]
    assert (row["parent_external_id"], row["item_type"], row["assignees"]) == (None, None, [])
    assert row["labels"] == ["x" * 254 + "…", "nulbyte"]  # cut to the column, NUL dropped
    assert rows[jira.external_id(good)]["labels"] == ["ok"]
    assert await memberships(pool) == {}
    await assert_no_email(pool)


async def test_extra_fields_are_simplified_and_an_unknown_name_is_a_warning(
    pool: asyncpg.Pool, jira: JiraSandbox, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    option = "com.atlassian.jira.plugin.system.customfieldtypes:select"
    jira.add_field("customfield_10042", "Team", {"type": "option", "custom": option})
    jira.add_field("customfield_10043", "Reviewer", {"type": "user"})
    jira.add_field("customfield_10044", "Effort", {"type": "number"})
    jira.add_field("customfield_10045", "Areas", {"type": "array", "items": "option"})
    jira.add_field("customfield_10046", "Contact", {"type": "string"})
    reviewer = {
        "self": f"{jira.url}/rest/api/2/user?accountId=5b10",
        "accountId": "5b10",
        "name": "grace",
        "displayName": GRACE,
        "emailAddress": "grace@example.com",
    }
    issue = jira.add_issue(
        "ABC",
        "With custom fields",
        updated=T0,
        custom={
            "customfield_10042": {"self": "x", "value": "Payments", "id": "10100"},
            "customfield_10043": reviewer,
            "customfield_10044": 2.5,
            "customfield_10045": [{"value": "API", "id": "1"}, {"value": "Web", "id": "2"}],
            "customfield_10046": "ops@example.com",
        },
    )
    jira.add_issue("ABC", "Without", updated=T0 + M)
    names = ["Team", "customfield_10043", "effort", "Areas", "Contact", "No Such Field"]
    integration = await integration_of(pool, jira, extra_fields=names)

    with caplog.at_level(logging.DEBUG):
        await run(pool, integration, settings)

    rows = await model_rows(pool)
    assert rows[jira.external_id(issue)]["fields"] == {
        "Team": "Payments",
        "customfield_10043": GRACE,
        "effort": 2.5,
        "Areas": ["API", "Web"],
        "Contact": None,  # an e-mail address is never kept
    }
    assert rows[jira.external_id(jira.issue("ABC-2"))]["fields"] == dict.fromkeys(
        ["Team", "customfield_10043", "effort", "Areas", "Contact"]
    )
    (warned,) = await pool.fetch(
        "SELECT message, metadata->>'code' AS code FROM activity_logs"
        " WHERE event_type = 'sync_warning'"
    )
    assert warned["code"] == "extra_field_unknown" and "'No Such Field'" in warned["message"]
    logged = caplog.text + " ".join(str(getattr(r, "fields", "")) for r in caplog.records)
    assert PLANTED_TOKEN not in logged and "@example.com" not in logged
    for search in jira.requests_to("/search"):  # the listing asked for them, by id
        if search.method == "GET" and "key in" not in search.query["jql"][0]:
            asked = {f for v in search.query.get("fields", []) for f in v.split(",")}
            assert {f"customfield_1004{n}" for n in range(2, 7)} <= asked
    await assert_no_email(pool)


async def test_an_epic_link_that_resolves_to_nothing_leaves_the_child_without_parent(
    pool: asyncpg.Pool, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with checked(JiraDataCenterSandbox(token=PLANTED_TOKEN)) as jira:
        epic = jira.add_issue("ABC", "Epic", issuetype="Epic", updated=T0 + H)
        child = jira.add_issue("ABC", "Orphan", parent=epic.key, updated=T0)
        linked = jira.add_issue("ABC", "Linked", parent=epic.key, updated=T0 + M)
        jira.corrupt_issue(child.id, **{EPIC_LINK_FIELD: "ABC-999"})  # deleted since
        integration = await integration_of(pool, jira)

        with caplog.at_level(logging.WARNING):
            await run(pool, integration, settings)

        rows = await model_rows(pool)
        assert rows[jira.external_id(child)]["parent_external_id"] is None
        assert rows[jira.external_id(linked)]["parent"] == jira.external_id(epic)
        (lookup,) = key_searches(jira)  # both keys in one search
        assert lookup.query["jql"] == ['key in ("ABC-1", "ABC-999")']
        warned = [r.fields for r in caplog.records if r.getMessage() == "sync_warning"]  # type: ignore[attr-defined]
        assert [w["code"] for w in warned] == ["epic_link_unresolved"]
        assert warned[0]["warning"].startswith(
            "Epic Link names issues that do not exist (any more): ABC-999;"
        )


async def test_a_sub_task_names_its_parent_in_the_parent_field_on_both_deployments(
    pool: asyncpg.Pool, jira: JiraSandbox, settings: Settings
) -> None:
    story = jira.add_issue("ABC", "Story", updated=T0)
    sub = jira.add_issue("ABC", "Sub", issuetype="Sub-task", parent=story.key, updated=T0 + M)
    integration = await integration_of(pool, jira)

    await run(pool, integration, settings)

    row = (await model_rows(pool))[jira.external_id(sub)]
    assert (row["parent"], row["item_type"], row["item_type_name"]) == (
        jira.external_id(story),
        "sub_task",
        "Sub-task",
    )
    assert not key_searches(jira)  # an id, no key to resolve


async def test_a_long_jql_sent_as_a_post_body_asks_for_the_same_fields(
    pool: asyncpg.Pool, jira: JiraSandbox, settings: Settings
) -> None:
    epic, *children = epic_and_children(jira, children_first=True)
    long_jql = 'project = ABC AND summary !~ "' + "x" * 1600 + '"'
    integration = await integration_of(pool, jira, jql=long_jql, projects=None)

    await run(pool, integration, settings)

    posts = [r for r in jira.requests_to("/search", "POST") if "summary !~" in r.json()["jql"]]
    assert posts and not [r for r in jira.requests_to("/search", "GET") if "!~" in str(r.query)]
    wanted = {"parent", SPRINT_FIELD, "issuetype", "labels", "assignee"}
    if is_dc(jira):
        wanted.add(EPIC_LINK_FIELD)
    assert all(wanted <= set(r.json()["fields"]) for r in posts)
    rows = await model_rows(pool)
    assert {rows[jira.external_id(c)]["parent"] for c in children} == {jira.external_id(epic)}
    assert len(await memberships(pool)) == 3


async def test_oauth_through_the_gateway_carries_the_richer_model(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    with oauth.gateway({oauth.CLIENT_ID: oauth.SECRET}) as (jira, auth):
        epic, *children = epic_and_children(jira, children_first=True)
        integration = await oauth.jira_integration(pool, jira, auth)

        result = await oauth.run(pool, integration, tmp_path)

        assert result.outcome == "succeeded", result.reason
        rows = await model_rows(pool)
        assert {rows[jira.external_id(c)]["parent"] for c in children} == {jira.external_id(epic)}
        assert rows[jira.external_id(children[0])]["assignees"] == [
            {"name": ADA, "account_id": account(jira, ADA)}
        ]
        assert len(await memberships(pool)) == 3
        searches = jira.requests_to("/search/jql")
        assert searches and all(r.path.startswith("/ex/jira/") for r in searches)
        assert all({"parent", SPRINT_FIELD} <= set(r.query["fields"]) for r in searches)
        await assert_no_email(pool)


async def test_a_key_search_jira_refuses_is_a_warning_and_the_items_still_land(
    pool: asyncpg.Pool, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with checked(JiraDataCenterSandbox(token=PLANTED_TOKEN)) as jira:
        epic, *children = epic_and_children(jira, children_first=True)
        said = "An issue with key 'ABC-1' does not exist for field 'key'."

        def refuse_key_searches(request: Request) -> None:
            if "key in" in str(request.query.get("jql")):
                jira.fail_next("400_json", body={"errorMessages": [said], "errors": {}})

        jira.between_requests = refuse_key_searches
        integration = await integration_of(pool, jira)

        with caplog.at_level(logging.WARNING):
            first = await run(pool, integration, settings)

        assert first.created == 4
        rows = await model_rows(pool)
        assert {rows[jira.external_id(c)]["parent_external_id"] for c in children} == {None}
        warned = [r.fields for r in caplog.records if r.getMessage() == "sync_warning"]  # type: ignore[attr-defined]
        # the refusal, then the keys it left without an epic
        assert [w["code"] for w in warned] == ["epic_link_lookup_refused", "epic_link_unresolved"]
        assert said in warned[0]["warning"]

        jira.between_requests = None
        jira.update_issue(children[0].id, at=T0 + 2 * H, summary="touched")
        await run(pool, integration, settings)  # the epic is known by now: linked, no search
        rows = await model_rows(pool)
        assert rows[jira.external_id(children[0])]["parent"] == jira.external_id(epic)
        assert len(key_searches(jira)) == 1


def test_the_sandbox_refuses_a_key_that_names_nothing_unless_validation_is_off() -> None:
    with JiraDataCenterSandbox(token=PLANTED_TOKEN) as jira:
        jira.add_project("ABC")
        jira.add_issue("ABC", "One", updated=T0)

        def search(validate: str) -> requests.Response:
            return requests.get(
                f"{jira.url}/rest/api/2/search",
                params={"jql": 'key in ("ABC-1", "ABC-9")', "validateQuery": validate},
                headers={"Authorization": f"Bearer {PLANTED_TOKEN}"},
                timeout=5,
            )

        refused = search("True")
        assert refused.status_code == 400
        assert refused.json()["errorMessages"] == [
            "An issue with key 'ABC-9' does not exist for field 'key'."
        ]
        allowed = search("False")
        assert allowed.status_code == 200
        assert [i["key"] for i in allowed.json()["issues"]] == ["ABC-1"]


# ---------------------------------------------------------------------------------------------
# The mapping of what Jira sends (pure)
# ---------------------------------------------------------------------------------------------
def test_a_data_center_sprint_string_is_split_on_known_keys_only() -> None:
    value = (
        "com.atlassian.greenhopper.service.sprint.Sprint@6f2[id=266,rapidViewId=174,"
        "state=CLOSED,name=Sprint 7, the big one,startDate=2025-05-01T10:00:00.000+10:00,"
        "endDate=2025-05-15T10:00:00.000+10:00,completeDate=<null>,sequence=266,"
        "goal=Ship it, then rest,name=x=y]"
    )
    assert parse_sprint_string(value) == {
        "id": "266", "rapidViewId": "174", "state": "CLOSED", "name": "Sprint 7, the big one",
        "startDate": "2025-05-01T10:00:00.000+10:00", "endDate": "2025-05-15T10:00:00.000+10:00",
        "completeDate": None, "sequence": "266", "goal": "Ship it, then rest",
    }  # fmt: skip
    (sprint,) = sprints_of([value, "Sprint@[nonsense]", 42, None], "jira.corp")
    assert sprint == Sprint(
        "jira.corp/sprint/266",
        "Sprint 7, the big one",
        "closed",
        datetime(2025, 5, 1, 0, 0, tzinfo=UTC),
        datetime(2025, 5, 15, 0, 0, tzinfo=UTC),
    )


def test_item_types_by_hierarchy_level_subtask_flag_and_name() -> None:
    assert item_type_of({"name": "Initiative", "hierarchyLevel": 1}) == ("epic", "Initiative")
    assert item_type_of({"name": "Sub-bug", "subtask": True}) == ("sub_task", "Sub-bug")
    assert item_type_of({"name": "Subtask", "hierarchyLevel": -1}) == ("sub_task", "Subtask")
    assert item_type_of({"name": "Epic"}) == ("epic", "Epic")  # DC: no hierarchyLevel
    assert item_type_of({"name": "Spike", "hierarchyLevel": 0}) == ("other", "Spike")
    assert item_type_of("Story") == (None, None)


def test_custom_values_never_keep_an_address() -> None:
    user = {"displayName": "a@b.example", "accountId": "x", "emailAddress": "a@b.example"}
    assert simple_value(user) is None  # a display name that is an address is dropped
    assert simple_value("ops@example.com") is None
    assert simple_value({"value": "A", "child": {"value": "B"}}) == "A / B"
    assert simple_value({"name": "1.0", "self": "u", "released": True}) == "1.0"  # a version
    nested = {"team": {"emailAddress": "v@w.example", "displayName": "V"}, "n": 1, "self": "u"}
    assert simple_value(nested) == {"team": "V", "n": 1}  # a user inside: its name


def test_a_parent_or_epic_link_of_another_shape_is_no_parent() -> None:
    assert parent_id_of({"id": "10001", "key": "ABC-1"}) == "10001"
    assert parent_id_of({"id": 10001}) == "10001"
    for odd in ({"id": "10001\n"}, {"id": "-1"}, {"id": True}, {"key": "ABC-1"}, "10001", None):
        assert parent_id_of(odd) is None, odd
    assert epic_key_of(" abc-12 ") == "ABC-12"
    for odd in ("ABC-12\n-3", "12", "ABC", {"key": "ABC-1"}, "ABC-1 OR project = X"):
        assert epic_key_of(odd) is None, odd

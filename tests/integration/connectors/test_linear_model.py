"""Linear's richer model end to end (docs/trackers/linear.md#richer-model): the Linear sandbox
serves sub-issues (`parent`), assignees and cycles in Linear's shape; a real sync run
(`worker.sync.run_integration`) stores parent links, kinds, labels, assignees, cycles and their
memberships in a real PostgreSQL, and the issue history's parent and cycle changes."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from connectors.base import ConfigError
from connectors.linear import LinearConnector
from connectors.sandbox.graphql import operation_name
from connectors.sandbox.linear import LinearSandbox
from tests.helpers import make_integration, make_team, succeeded_run
from tests.integration.connectors.contract import T0
from tests.integration.connectors.sync_helpers import (
    linear_integration,
    memberships,
    model_rows,
)
from worker import sync
from worker.connecting import validate_config
from worker.settings import Settings

H = timedelta(hours=1)
DAY = timedelta(days=1)
MAYA_EMAIL = "maya.chen@planted.example"
JONAS_EMAIL = "jonas.berg@planted.example"


@pytest.fixture
def linear() -> Iterator[LinearSandbox]:
    with LinearSandbox() as sb:
        yield sb  # type: ignore[misc]


integration_for = linear_integration


async def run(pool: asyncpg.Pool, integration: uuid.UUID, settings: Settings) -> sync.RunResult:
    return await succeeded_run(pool, integration, settings)


def operations(sandbox: LinearSandbox) -> list[str]:
    return [operation_name(r.json()["query"]) or "" for r in sandbox.requests_to("/graphql")]


class Epic:
    """An epic (a parent issue) with three sub-issues across two cycles of team ENG: the last
    cycle (completed) and the current one; a third cycle is still ahead."""

    def __init__(self, sb: LinearSandbox, *, children_first: bool) -> None:
        self.maya = sb.add_user("Maya Chen", display_name="maya", email=MAYA_EMAIL)
        self.jonas = sb.add_user("Jonas Berg", display_name="jonas", email=JONAS_EMAIL)
        now = datetime.now(UTC)
        self.last = sb.add_cycle("ENG", 7, starts_at=now - 21 * DAY, ends_at=now - 7 * DAY)
        sb.complete_cycle(self.last, at=now - 7 * DAY)
        self.current = sb.add_cycle(
            "ENG", 8, starts_at=now - 7 * DAY, ends_at=now + 7 * DAY, name="Hardening"
        )
        self.next = sb.add_cycle("ENG", 9, starts_at=now + 7 * DAY, ends_at=now + 21 * DAY)
        # the epic's updatedAt is the newest or the oldest: it is synced after or before them
        epic_at = T0 + (10 * H if children_first else 0 * H)
        self.epic = sb.add_issue(
            "ENG", title="Enterprise readiness", created_at=T0 - H, updated_at=epic_at
        )["id"]
        self.children = [
            sb.add_issue(
                "ENG",
                title=f"Child {n}",
                created_at=T0,
                updated_at=T0 + (n + 1) * H,
                parent=self.epic,
                cycle=cycle,
                assignee=who,
                labels=labels,
                estimate=points,
                state=state,
            )["id"]
            for n, (cycle, who, labels, points, state) in enumerate(
                [
                    (self.last, self.maya, ("Backend",), 3, "Done"),
                    (self.current, self.jonas, ("Backend", "API"), 5, "In Progress"),
                    (self.current, None, (), 2, "Todo"),
                ]
            )
        ]


@pytest.mark.parametrize("children_first", [True, False], ids=["children-first", "epic-first"])
async def test_an_epic_with_three_sub_issues_across_two_cycles(
    pool, linear, settings, children_first: bool
) -> None:
    up = Epic(linear, children_first=children_first)
    integration = await integration_for(pool, linear, page_size=2)
    await run(pool, integration, settings)

    rows = await model_rows(pool)
    c1, c2, c3 = up.children
    assert {k: r["parent"] for k, r in rows.items()} == {
        c1: up.epic,
        c2: up.epic,
        c3: up.epic,
        up.epic: None,
    }
    assert {r["parent_external_id"] for k, r in rows.items() if k != up.epic} == {up.epic}
    assert (rows[up.epic]["item_type"], rows[up.epic]["item_type_name"]) == ("issue", "Issue")
    assert {(r["item_type"], r["item_type_name"]) for k, r in rows.items() if k != up.epic} == {
        ("sub_task", "Sub-issue")
    }
    # What the connector reports of each issue (labels, assignees, cycles as sprints) is the
    # contract's (contract.py); here: the links, memberships and views in the store.
    assert await memberships(pool) == {
        (c1, up.last): True,
        (c2, up.current): True,
        (c3, up.current): True,
    }
    progress = {
        r["name"]: (r["scope_items"], r["done_items"], r["scope_points"], r["done_points"])
        for r in await pool.fetch("SELECT * FROM v_sprint_progress")
    }
    assert progress == {"Cycle 7": (1, 1, 3, 3), "Hardening": (2, 0, 7, 0)}
    rollup = await pool.fetchrow("SELECT * FROM v_epic_rollup")
    assert (rollup["children"], rollup["completed"], rollup["in_progress"], rollup["queued"]) == (
        3,
        1,
        1,
        1,
    )

    # A second sync writes nothing (what it costs in requests is the contract's).
    before = await pool.fetchval(
        "SELECT count(*) FROM activity_logs WHERE event_type = 'work_item_updated'"
    )
    again = await run(pool, integration, settings)
    assert (again.created, again.updated) == (0, 0)
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM activity_logs WHERE event_type = 'work_item_updated'"
        )
        == before
    )
    assert await model_rows(pool) == rows


async def test_moving_a_sub_issue_to_another_parent_and_cycle(pool, linear, settings) -> None:
    up = Epic(linear, children_first=True)
    other = linear.add_issue("ENG", title="Import and export", updated_at=T0 + 11 * H)["id"]
    integration = await integration_for(pool, linear)
    await run(pool, integration, settings)
    c3 = up.children[2]

    linear.update_issue(c3, at=T0 + 20 * H, actor=up.maya, parent=other, cycle=up.next)
    result = await run(pool, integration, settings)
    assert result.updated == 1

    rows = await model_rows(pool)
    assert (rows[c3]["parent"], rows[c3]["parent_external_id"]) == (other, other)
    member = {s: now for (item, s), now in (await memberships(pool)).items() if item == c3}
    assert member == {up.current: False, up.next: True}  # left the current cycle, kept as history
    state = await pool.fetchval("SELECT state FROM sprints WHERE external_id = $1", up.next)
    assert state == "future"
    fields = await pool.fetch(
        "SELECT a.metadata->'fields' AS fields FROM activity_logs a JOIN work_items w"
        " ON w.id = a.work_item_id WHERE a.event_type = 'work_item_updated' AND w.external_id = $1",
        c3,
    )
    assert any("parent_external_id" in r["fields"] for r in fields), fields

    history = await pool.fetch(
        "SELECT h.field, h.from_value, h.to_value, h.actor_name FROM work_item_history h"
        " JOIN work_items w ON w.id = h.work_item_id WHERE w.external_id = $1"
        " AND h.field IN ('parent', 'sprint') ORDER BY h.changed_at, h.field",
        c3,
    )
    epic_key, other_key = rows[up.epic]["external_key"], rows[other]["external_key"]
    assert [tuple(r) for r in history] == [
        ("parent", None, epic_key, "Sandbox Admin"),  # at creation
        ("sprint", None, "Hardening", "Sandbox Admin"),
        ("parent", epic_key, other_key, "Maya Chen"),
        ("sprint", "Hardening", "Cycle 9", "Maya Chen"),
    ]

    # A third sync changes nothing.
    rows_before = await model_rows(pool)
    history_count = await pool.fetchval("SELECT count(*) FROM work_item_history")
    again = await run(pool, integration, settings)
    assert (again.created, again.updated) == (0, 0)
    assert await model_rows(pool) == rows_before
    assert await pool.fetchval("SELECT count(*) FROM work_item_history") == history_count


async def test_a_cycle_that_completes_is_closed_when_one_of_its_issues_is_read_again(
    pool, linear, settings
) -> None:
    up = Epic(linear, children_first=True)
    integration = await integration_for(pool, linear)
    await run(pool, integration, settings)
    linear.complete_cycle(up.current, at=datetime.now(UTC))
    await run(pool, integration, settings)  # no issue changed: Linear tells nothing yet
    state = "SELECT state FROM sprints WHERE external_id = $1"
    assert await pool.fetchval(state, up.current) == "active"
    linear.update_issue(up.children[1], at=T0 + 30 * H, state="Done")
    await run(pool, integration, settings)
    assert await pool.fetchval(state, up.current) == "closed"


async def test_every_label_lands_past_the_first_page_of_labels(pool, linear, settings) -> None:
    names = [f"label-{n:02}" for n in range(12)]  # more than LABELS_PER_ISSUE
    issue = linear.add_issue("ENG", title="Many labels", updated_at=T0, labels=names)["id"]
    integration = await integration_for(pool, linear)
    await run(pool, integration, settings)
    labels = await pool.fetchval("SELECT labels FROM work_items WHERE external_id = $1", issue)
    assert labels == names
    assert operations(linear).count("SyncIssueLabels") == 1  # the rest, one request


async def test_malformed_values_are_left_out_and_the_issues_kept(
    pool, linear, settings, caplog
) -> None:
    up = Epic(linear, children_first=True)
    c1, c2, c3 = up.children
    odd = linear.add_issue(
        "ENG", title="Odd labels", updated_at=T0 + 5 * H, labels=("x" * 600, "nul\x00byte")
    )["id"]
    linear.garble_issue(c1, parent="ENG-1")  # a parent of another shape: an identifier
    cycle = {"id": up.current, "number": 8, "name": None, "startsAt": "next tuesday",
             "endsAt": "2026-13-45", "completedAt": None}  # fmt: skip
    linear.garble_issue(c2, cycle=cycle, assignee="jonas")
    linear.garble_issue(c3, cycle={"number": 8}, labels={"nodes": [{"name": 7}, {"name": "ok"}]})
    integration = await integration_for(pool, linear)
    caplog.set_level(logging.WARNING)
    result = await run(pool, integration, settings)

    assert result.created == 5
    rejected = "SELECT count(*) FROM activity_logs WHERE event_type = 'work_item_rejected'"
    assert await pool.fetchval(rejected) == 0
    rows = await model_rows(pool)
    # the parent cannot be read: no link, but Linear says it has one, so it is a sub-issue
    assert (rows[c1]["parent_external_id"], rows[c1]["item_type"]) == (None, "sub_task")
    assert rows[c2]["assignees"] == [] and rows[c2]["parent"] == up.epic
    sprint = await pool.fetchrow("SELECT * FROM sprints WHERE external_id = $1", up.current)
    assert (sprint["name"], sprint["state"], sprint["starts_at"], sprint["ends_at"]) == (
        "Cycle 8",
        None,
        None,
        None,
    )
    assert (c3, up.current) not in await memberships(pool)  # a cycle without an id: none
    assert rows[c3]["labels"] == ["ok"]
    assert [len(x) for x in rows[odd]["labels"]] == [255, 7]
    assert rows[odd]["labels"][1] == "nulbyte"
    unreadable = [r.fields["detail"] for r in caplog.records if r.msg == "linear.field_unreadable"]
    assert "parent is not an object with an id" in unreadable
    assert "cycle.startsAt is not an ISO 8601 time" in unreadable
    assert "assignee is not an object" in unreadable
    assert "a label has no text name" in unreadable


async def test_no_email_address_lands_anywhere(pool, linear, settings, caplog) -> None:
    up = Epic(linear, children_first=True)
    # a user whose names are e-mail addresses (as an invited user's can be)
    invited = linear.add_user(
        "ana@planted.example", display_name="ana@planted.example", email="ana@planted.example"
    )
    issue = linear.add_issue("ENG", title="Invited", updated_at=T0 + 6 * H, assignee=invited)["id"]
    linear.update_issue(up.children[2], at=T0 + 7 * H, assignee=invited, actor=invited)
    integration = await integration_for(pool, linear)
    caplog.set_level(logging.DEBUG)
    await run(pool, integration, settings)

    assignees = await pool.fetchval(
        "SELECT assignees FROM work_items WHERE external_id = $1", issue
    )
    assert assignees == [{"name": None, "account_id": invited}]
    dumps = [
        await pool.fetchval(f"SELECT coalesce(string_agg(t::text, ' '), '') FROM {table} t")
        for table in ("work_items", "sprints", "work_item_history", "activity_logs")
    ]
    for text in [*dumps, caplog.text]:
        assert "@planted.example" not in text
        assert MAYA_EMAIL not in text and JONAS_EMAIL not in text
    assert "maya" in dumps[0]  # the dump does hold the assignees


def test_extra_fields_is_refused_by_name() -> None:
    config = {"team_keys": ["ENG"], "token": "lin_api_secret_planted", "extra_fields": {"S": "x"}}
    with pytest.raises(ConfigError) as refused:
        validate_config(LinearConnector, config)
    message = str(refused.value)
    assert "extra_fields" in message and "Linear issues have no custom fields" in message
    assert "\n" not in message and "lin_api_secret_planted" not in message


def graphql_post(sandbox: LinearSandbox, query: str, variables: dict[str, Any]) -> Any:
    response = httpx.post(
        f"{sandbox.url}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": sandbox.token},
    )
    return response.status_code, response.json()


def test_the_sandbox_serves_parent_assignee_and_cycle_in_linears_shape(linear) -> None:
    up = Epic(linear, children_first=True)
    query = """query Q($id: String!) { issue(id: $id) {
      parent { id identifier } assignee { id name displayName email }
      cycle { id number name startsAt endsAt completedAt } } }"""
    status, body = graphql_post(linear, query, {"id": up.children[0]})
    assert status == 200
    issue = body["data"]["issue"]
    epic_key = linear.issue(up.epic)["identifier"]
    assert issue["parent"] == {"id": up.epic, "identifier": epic_key}
    # Linear serves the address to whoever selects it: the connector never does
    assert issue["assignee"] == {
        "id": up.maya, "name": "Maya Chen", "displayName": "maya", "email": MAYA_EMAIL,
    }  # fmt: skip
    assert issue["cycle"]["id"] == up.last and issue["cycle"]["number"] == 7
    assert issue["cycle"]["name"] is None and issue["cycle"]["completedAt"] is not None
    status, body = graphql_post(linear, query, {"id": up.epic})
    assert body["data"]["issue"] == {"parent": None, "assignee": None, "cycle": None}
    # what Linear refuses: an argument the field does not take, a field the type does not have
    for bad, words in [
        ("{ issues { nodes { cycle(first: 1) { id } } } }", 'Unknown argument "first"'),
        ("{ issues { nodes { parent { bogus } } } }", 'Cannot query field "bogus" on type "Issue"'),
        ("{ issues { nodes { assignee } } }", 'Field "assignee" of type "User" must have'),
    ]:
        status, body = graphql_post(linear, bad, {})
        assert status == 400 and words in body["errors"][0]["message"], body
        assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


def test_the_sandbox_refuses_a_hierarchy_loop_and_another_teams_cycle(linear) -> None:
    linear.add_team("OPS", "Platform Ops")
    up = Epic(linear, children_first=True)
    with pytest.raises(ValueError, match="its own ancestor"):
        linear.update_issue(up.epic, at=T0 + 30 * H, parent=up.children[0])
    ops_cycle = linear.add_cycle("OPS", 1, starts_at=T0, ends_at=T0 + 14 * DAY)
    with pytest.raises(ValueError, match="another team"):
        linear.update_issue(up.children[0], at=T0 + 30 * H, cycle=ops_cycle)
    # a move to another team leaves the cycle, recorded as Linear records it
    linear.update_issue(up.children[1], at=T0 + 31 * H, team_key="OPS")
    last = linear.history_of(up.children[1])[-1]
    assert (last["fromCycleId"], last["toCycleId"]) == (up.current, None)


async def test_the_demo_fills_the_richer_model(pool, settings) -> None:
    with LinearSandbox(token="demo-token") as sandbox:
        sandbox.seed_demo()
        team = await make_team(pool, "Demo")
        integration = await make_integration(pool, team, "linear", sandbox.demo_config())
        await run(pool, integration, settings)
    counts = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE parent_id IS NOT NULL) AS linked,"
        " count(*) FILTER (WHERE item_type = 'sub_task') AS sub_issues,"
        " count(*) FILTER (WHERE cardinality(labels) > 0) AS labelled,"
        " count(*) FILTER (WHERE jsonb_array_length(assignees) > 0) AS assigned"
        " FROM work_items"
    )
    assert counts["linked"] == counts["sub_issues"] == 10
    assert counts["labelled"] >= 20 and counts["assigned"] >= 20
    sprints = await pool.fetch("SELECT name, state FROM sprints ORDER BY name")
    states = sorted({r["state"] for r in sprints})
    assert len(sprints) >= 4 and states == ["active", "closed", "future"]
    assert await pool.fetchval("SELECT count(*) FROM v_epic_rollup") == 3

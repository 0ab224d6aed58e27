"""What the per-tracker sync tests (the history tests and the richer-model tests) share: a sandbox
checked against the tracker's published API, the integration row that points at it, and one
forced run through the worker. Each test module adds its own settings (page sizes, status maps)
through the `**config` of the integration factories."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any, Literal

import asyncpg

from connectors.sandbox.azure_devops import AzureDevOpsSandbox
from connectors.sandbox.github import GitHubSandbox
from connectors.sandbox.jira import JiraDataCenterSandbox, JiraSandbox
from connectors.sandbox.linear import LinearSandbox
from tests.conformance import checker
from tests.helpers import make_integration, make_team
from tests.integration.connectors.contract import PLANTED_TOKEN
from tests.integration.connectors.test_jira import checked

ADO_API = checker.load("azure_devops")
GITHUB_API = checker.load("github")
GITHUB_REPO = "octo/alpha"


# --- Azure DevOps -----------------------------------------------------------------------------
def ado_sandbox(reporting_page_cap: int | None = 4) -> Iterator[AzureDevOpsSandbox]:
    """A sandbox whose request log must conform to the published API when the test ends (a
    method, path, query parameter or body field the description does not allow fails it), and
    whose answers must have the shapes the description gives them. `reporting_page_cap`: the
    revisions a reporting feed's page holds at most (4: every feed pages; None: the sandbox's)."""
    server = AzureDevOpsSandbox(token=PLANTED_TOKEN)
    if reporting_page_cap is not None:
        server.reporting_page_cap = reporting_page_cap
    with server, checker.conforming(ADO_API, server):
        yield server


async def ado_integration(
    pool: asyncpg.Pool, sandbox: AzureDevOpsSandbox, **config: Any
) -> uuid.UUID:
    team = await make_team(pool, "Boards")
    values = {
        "organization_url": sandbox.organization_url,
        "project": sandbox.project,
        "token": PLANTED_TOKEN,
        "history_page_size": 4,
        "request_timeout": 5.0,
        **config,
    }
    return await make_integration(pool, team, "azure_devops", values, interval=60)


# --- GitHub -----------------------------------------------------------------------------------
def github_sandbox(*, conform: bool = True) -> Iterator[GitHubSandbox]:
    """A sandbox serving GITHUB_REPO. With `conform` its requests and answers must conform to
    GitHub's published description; without, for values that description does not allow."""
    box = GitHubSandbox(token=PLANTED_TOKEN, repos=[GITHUB_REPO])
    with box, checker.conforming(GITHUB_API, box) if conform else nullcontext():
        yield box


async def github_integration(pool: asyncpg.Pool, box: GitHubSandbox, **config: Any) -> uuid.UUID:
    team = await make_team(pool, "Alpha")
    settings = {
        "token": PLANTED_TOKEN,
        "base_url": box.url,
        "repos": [GITHUB_REPO],
        "seconds_between_requests": 0,
        **config,
    }
    return await make_integration(pool, team, "github", settings)


# --- Jira -------------------------------------------------------------------------------------
def jira_sandbox(deployment: str) -> Iterator[JiraSandbox]:
    """A checked Cloud ("cloud") or Data Center ("dc") sandbox with project ABC."""
    server = (
        JiraSandbox(token=PLANTED_TOKEN)
        if deployment == "cloud"
        else JiraDataCenterSandbox(token=PLANTED_TOKEN)
    )
    with checked(server) as started:
        yield started


def is_dc(jira: JiraSandbox) -> bool:
    return isinstance(jira, JiraDataCenterSandbox)


async def jira_integration(pool: asyncpg.Pool, jira: JiraSandbox, **extra: Any) -> uuid.UUID:
    config: dict[str, Any] = {
        "url": jira.url,
        "token": PLANTED_TOKEN,
        "projects": ["ABC"],
        "story_points_field": "Story point estimate",
        **extra,
    }
    if not is_dc(jira):
        config["email"] = jira.email
    team = await make_team(pool, f"Team {uuid.uuid4().hex[:6]}")
    return await make_integration(pool, team, "jira", config, interval=60)


# --- Linear -----------------------------------------------------------------------------------
async def linear_integration(
    pool: asyncpg.Pool, sandbox: LinearSandbox, **config: Any
) -> uuid.UUID:
    team = await make_team(pool, f"Team-{uuid.uuid4().hex[:6]}")
    base = {"api_url": f"{sandbox.url}/graphql", "team_keys": ["ENG"], "token": sandbox.token}
    return await make_integration(pool, team, "linear", {**base, "timeout": 5, **config})


# --- The richer model's rows ------------------------------------------------------------------
async def model_rows(pool: asyncpg.Pool) -> dict[str, asyncpg.Record]:
    """Every stored item's richer-model columns by external_id; `parent` is the external_id of
    the row `parent_id` links to (None while the parent is not stored)."""
    return {
        r["external_id"]: r
        for r in await pool.fetch(
            "SELECT w.external_id, w.external_key, w.parent_external_id, p.external_id AS parent,"
            "       w.item_type, w.item_type_name, w.labels, w.assignees, w.fields"
            " FROM work_items w LEFT JOIN work_items p ON p.id = w.parent_id"
        )
    }


async def memberships(
    pool: asyncpg.Pool, sprint: Literal["external_id", "name"] = "external_id"
) -> dict[tuple[str, str], bool]:
    """(item external_id, sprint external_id or name) -> whether the item is in it now."""
    return {
        (r["item"], r["sprint"]): r["removed_at"] is None
        for r in await pool.fetch(
            f"SELECT w.external_id AS item, s.{sprint} AS sprint, ws.removed_at"
            " FROM work_item_sprints ws JOIN sprints s ON s.id = ws.sprint_id"
            " JOIN work_items w ON w.id = ws.work_item_id"
        )
    }

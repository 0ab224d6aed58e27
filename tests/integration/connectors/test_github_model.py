"""The richer model from GitHub, end to end: sub-issues linked to their parents (whichever is
listed first), organization issue types, labels, assignees and milestones as sprints, through
the sandbox and PyGithub into PostgreSQL with a real sync run; moving a sub-issue to another
parent or milestone; what it costs in requests; malformed values and planted e-mail addresses."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from connectors.base import ConfigError, ConnectorContext
from connectors.github import GitHubConfig, GitHubConnector
from connectors.sandbox.github import GitHubSandbox, SandboxIssue
from tests.helpers import make_integration, make_team, succeeded_run
from tests.integration.connectors.contract import PLANTED_TOKEN, T0, collect, items_of
from tests.integration.connectors.sync_helpers import GITHUB_REPO as REPO
from tests.integration.connectors.sync_helpers import (
    github_integration,
    github_sandbox,
    memberships,
    model_rows,
)
from tests.integration.connectors.test_github_app import APP_ID, KEY_ENV, key_lines, make_key
from worker import sync
from worker.connecting import validate_config
from worker.settings import Settings

OTHER = "octo/beta"
M = timedelta(minutes=1)
H = timedelta(hours=1)
ISSUE_GET = re.compile(r"/repos/[^/]+/[^/]+/issues/\d+$")


@pytest.fixture
def sandbox() -> Iterator[GitHubSandbox]:
    """Requests and answers must conform to GitHub's published description."""
    yield from github_sandbox()


@pytest.fixture
def off_spec() -> Iterator[GitHubSandbox]:
    """For values GitHub's description does not allow (malformed on purpose): not checked."""
    yield from github_sandbox(conform=False)


async def integration_for(pool: asyncpg.Pool, box: GitHubSandbox, **config: Any) -> uuid.UUID:
    return await github_integration(pool, box, **{"per_page": 2, **config})


async def run(pool: asyncpg.Pool, integration: uuid.UUID, settings: Settings) -> sync.RunResult:
    return await succeeded_run(pool, integration, settings, GitHubConnector)


def host(box: GitHubSandbox) -> str:
    return f"127.0.0.1:{box.port}"


def ext(box: GitHubSandbox, issue: SandboxIssue | int) -> str:
    """The external_id of a sandbox issue (ids qualified by the API host off github.com)."""
    return f"{host(box)}/{issue if isinstance(issue, int) else issue.id}"


def epic_with_children(box: GitHubSandbox, *, children_first: bool) -> dict[str, SandboxIssue]:
    """An epic with three sub-issues across two milestones (one closed, one running). With
    `children_first` the sub-issues were updated before the epic, so they are listed first."""
    box.add_milestone(REPO, "Sprint 1", state="closed", due_on=T0 + 14 * 24 * H)
    box.add_milestone(REPO, "Sprint 2", due_on=T0 + 28 * 24 * H)
    epic_at = T0 + H if children_first else T0
    base = T0 + 2 * H if not children_first else T0
    epic = box.add_issue(
        REPO, "The epic", updated_at=epic_at, created_at=T0 - H, type="Epic", labels=["roadmap"]
    )
    kids = {
        "bug": box.add_issue(
            REPO, "A bug", updated_at=base + M, type="Bug", labels=["backend", "P1"],
            assignees=["ada"], milestone="Sprint 1", parent=epic.id, state="closed",
        ),
        "task": box.add_issue(
            REPO, "A task", updated_at=base + 2 * M, type="Task", labels=["backend", "api"],
            assignees=["ada", "lin"], milestone="Sprint 2", parent=epic.id,
        ),
        "spike": box.add_issue(
            REPO, "A spike", updated_at=base + 3 * M, type="Spike", milestone="Sprint 2",
            parent=epic.id,
        ),
    }  # fmt: skip
    return {"epic": epic, **kids}


@pytest.mark.parametrize("children_first", [True, False], ids=["children-first", "epic-first"])
async def test_an_epic_with_three_sub_issues_across_two_milestones_lands_linked(
    pool: asyncpg.Pool, sandbox: GitHubSandbox, settings: Settings, children_first: bool
) -> None:
    made = epic_with_children(sandbox, children_first=children_first)
    integration = await integration_for(pool, sandbox)
    await run(pool, integration, settings)

    # What the connector reports of each item (types, labels, assignees, the milestones as
    # sprints) is the contract's (contract.py); here: the links and memberships in the store.
    rows = await model_rows(pool)
    epic = ext(sandbox, made["epic"])
    assert {k: r["parent"] for k, r in rows.items()} == {
        epic: None,
        **{ext(sandbox, made[k]): epic for k in ("bug", "task", "spike")},
    }
    assert await memberships(pool, "name") == {
        (ext(sandbox, made["bug"]), "Sprint 1"): True,
        (ext(sandbox, made["task"]), "Sprint 2"): True,
        (ext(sandbox, made["spike"]), "Sprint 2"): True,
    }
    rollup = await pool.fetchrow("SELECT * FROM v_epic_rollup")
    assert (rollup["children"], rollup["completed"]) == (3, 1)

    # The parent's id: learned from the listing when the epic came first; one GET of the epic
    # (for all three children) when they came before it.
    lookups = [r for r in sandbox.requests if ISSUE_GET.search(r.path)]
    assert [r.path for r in lookups] == (
        [f"/repos/{REPO}/issues/{made['epic'].number}"] if children_first else []
    )


async def test_moving_a_sub_issue_to_another_parent_and_milestone(
    pool: asyncpg.Pool, sandbox: GitHubSandbox, settings: Settings
) -> None:
    made = epic_with_children(sandbox, children_first=False)
    other = sandbox.add_issue(REPO, "Another epic", updated_at=T0 + M, type="Epic")
    integration = await integration_for(pool, sandbox)
    await run(pool, integration, settings)

    task = made["task"]
    sandbox.set_parent(task.id, other.id, at=T0 + 5 * H, actor="lead")
    sandbox.update(task.id, at=T0 + 6 * H, milestone="Sprint 1", actor="lead")
    result = await run(pool, integration, settings)
    assert result.updated == 1

    rows = await model_rows(pool)
    assert rows[ext(sandbox, task)]["parent"] == ext(sandbox, other)
    member = await memberships(pool, "name")
    assert member[(ext(sandbox, task), "Sprint 2")] is False  # left it: removed_at set
    assert member[(ext(sandbox, task), "Sprint 1")] is True
    history = [
        (r["field"], r["from_value"], r["to_value"], r["actor_name"])
        for r in await pool.fetch(
            "SELECT h.field, h.from_value, h.to_value, h.actor_name FROM work_item_history h"
            " JOIN work_items w ON w.id = h.work_item_id"
            " WHERE w.external_id = $1 AND h.field IN ('parent', 'sprint')"
            " ORDER BY h.changed_at, h.change_id",
            ext(sandbox, task),
        )
    ]
    epic_key, other_key = f"{REPO}#{made['epic'].number}", f"{REPO}#{other.number}"
    assert history == [
        ("sprint", None, "Sprint 2", "octocat"),
        ("parent", None, epic_key, "octocat"),
        ("parent", epic_key, None, "lead"),
        ("parent", None, other_key, "lead"),
        # GitHub records a milestone change as `demilestoned` then `milestoned`
        ("sprint", "Sprint 2", None, "lead"),
        ("sprint", None, "Sprint 1", "lead"),
    ]

    # A third run finds nothing changed: no row written, one listing, no lookup.
    before = await pool.fetchval("SELECT count(*) FROM activity_logs")
    snapshot = await pool.fetch("SELECT * FROM work_items ORDER BY external_id")
    sandbox.requests.clear()
    again = await run(pool, integration, settings)
    assert (again.created, again.updated) == (0, 0)
    assert await pool.fetchval("SELECT count(*) FROM activity_logs") == before  # (worker/runlog.py)
    assert await pool.fetch("SELECT * FROM work_items ORDER BY external_id") == snapshot
    assert [r.path for r in sandbox.requests_to("/issues")] == [f"/repos/{REPO}/issues"]


async def test_a_parent_in_another_repository_is_looked_up_once_a_run(
    pool: asyncpg.Pool, sandbox: GitHubSandbox, settings: Settings
) -> None:
    """Sub-issues may sit in another repository of the owner: the parent is fetched by the URL
    GitHub gives, once for all its children in a run; the link waits until it is synced."""
    parent = sandbox.add_issue(OTHER, "Cross-repo epic", updated_at=T0, type="Epic")
    kids = [
        sandbox.add_issue(REPO, f"kid {n}", updated_at=T0 + n * M, parent=parent.id)
        for n in range(3)
    ]
    integration = await integration_for(pool, sandbox)
    await run(pool, integration, settings)
    rows = await model_rows(pool)
    assert {rows[ext(sandbox, k)]["parent_external_id"] for k in kids} == {ext(sandbox, parent)}
    assert {rows[ext(sandbox, k)]["parent"] for k in kids} == {None}  # not synced: waiting
    assert [r.path for r in sandbox.requests if ISSUE_GET.search(r.path)] == [
        f"/repos/{OTHER}/issues/{parent.number}"
    ]

    await pool.execute(
        "UPDATE integrations SET config = config || $1::jsonb WHERE id = $2",
        {"repos": [REPO, OTHER]},
        integration,
    )
    await run(pool, integration, settings)
    rows = await model_rows(pool)
    assert {rows[ext(sandbox, k)]["parent"] for k in kids} == {ext(sandbox, parent)}


async def test_parent_lookups_are_bounded_and_the_repository_goes_on_next_run(
    sandbox: GitHubSandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each unlisted parent costs one GET; when a run's lookups are spent the repository stops
    before the page that needs one more, at a checkpoint the next run resumes from."""
    parents = [sandbox.add_issue(OTHER, f"parent {n}", updated_at=T0) for n in range(3)]
    kids = [
        sandbox.add_issue(REPO, f"kid {n}", updated_at=T0 + n * M, parent=p.id)
        for n, p in enumerate(parents)
    ]
    warned: list[tuple[str, str]] = []

    def connector() -> GitHubConnector:
        config = GitHubConfig(
            repos=[REPO], base_url=sandbox.url, per_page=2, seconds_between_requests=0
        )
        ctx = ConnectorContext(
            "test",
            SecretStr(PLANTED_TOKEN),
            tmp_path,
            max_retries=1,
            on_warning=lambda code, message: warned.append((code, message)),
        )
        made = GitHubConnector(config, ctx)
        made._parents.budget = 2
        return made

    first = connector()
    pages = await collect(first)
    await first.aclose()
    got = items_of(pages)
    assert [i.external_id for i in got] == [ext(sandbox, k) for k in kids[:2]]
    assert [i.parent_external_id for i in got] == [ext(sandbox, p) for p in parents[:2]]
    assert first._parents.lookups == 2
    assert [code for code, _ in warned] == ["parent_lookups_spent"]
    assert warned[0][1].startswith(f"{REPO}: the run's 2 parent lookups are spent")
    assert PLANTED_TOKEN not in caplog.text
    checkpoint = pages[-1].checkpoint[REPO]
    assert checkpoint == kids[1].updated_at

    second = connector()
    rest = items_of(await collect(second, {REPO: checkpoint}))
    await second.aclose()
    assert [(i.external_id, i.parent_external_id) for i in rest][-1] == (
        ext(sandbox, kids[2]),
        ext(sandbox, parents[2]),
    )
    assert second._parents.lookups == 1  # the parents the first run learned are cached

    # The cache is only a cache: unreadable, every parent is looked up again.
    assert spoil_parent_caches(tmp_path) == 1
    third = connector()
    again = items_of(await collect(third))
    await third.aclose()
    assert [i.parent_external_id for i in again] == [ext(sandbox, p) for p in parents[:2]]
    assert third._parents.lookups == 2


def spoil_parent_caches(where: Path) -> int:
    caches = list(where.glob("github-parents-*.json"))
    for cache in caches:
        cache.write_text("{not json")
    return len(caches)


async def test_malformed_values_and_planted_emails_never_fail_the_page(
    pool: asyncpg.Pool, off_spec: GitHubSandbox, settings: Settings
) -> None:
    box = off_spec
    box.public_emails = {"ada": "ada@example.com", "lin": "lin@corp.example"}
    epic = box.add_issue(REPO, "epic", updated_at=T0, type="Epic")
    odd = [
        # a parent URL of another shape, a milestone that is a string, a type that is a list
        box.add_issue(REPO, "odd parent", updated_at=T0 + M, parent=epic.id, assignees=["ada"]),
        box.add_issue(REPO, "odd sprint", updated_at=T0 + 2 * M, milestone="S", assignees=["lin"]),
        box.add_issue(REPO, "odd type", updated_at=T0 + 3 * M, type="Bug"),
        # a 600-character label, a NUL byte in a label and in the type's name, due_on garbage
        box.add_issue(
            REPO, "odd text", updated_at=T0 + 4 * M, labels=["x" * 600, "a\x00b"],
            type="Ta\x00sk", milestone="Due garbage",
        ),
    ]  # fmt: skip
    box.corrupt(odd[0].id, parent_issue_url="https://ghe.invalid/not/an/issue")
    box.corrupt(odd[1].id, milestone="Sprint 1")
    box.corrupt(odd[2].id, type=["Bug"])
    served = box._milestone_json(REPO, "Due garbage")
    assert served is not None
    box.corrupt(odd[3].id, milestone={**served, "due_on": "next Tuesday"})
    integration = await integration_for(pool, box)
    await run(pool, integration, settings)

    assert (
        await pool.fetchval(
            "SELECT count(*) FROM activity_logs WHERE event_type = 'work_item_rejected'"
        )
        == 0
    )
    rows = await model_rows(pool)
    assert len(rows) == 5
    assert rows[ext(box, odd[0])]["parent_external_id"] is None
    assert rows[ext(box, odd[2])]["item_type"] == "issue"
    text = rows[ext(box, odd[3])]
    assert text["item_type"] == "other" and "\x00" not in text["item_type_name"]
    assert len(text["labels"]) == 2 and all("\x00" not in label for label in text["labels"])
    assert max(len(label) for label in text["labels"]) < 600
    sprints = await pool.fetch("SELECT name, ends_at FROM sprints")
    assert [(r["name"], r["ends_at"]) for r in sprints] == [("Due garbage", None)]

    # No e-mail address anywhere: not in the assignees, not in external_data, not in activity.
    assert rows[ext(box, odd[0])]["assignees"][0]["name"] == "ada"
    dump = await pool.fetchval(
        "SELECT string_agg(w::text, ' ') FROM work_items w"
    ) + await pool.fetchval("SELECT coalesce(string_agg(a::text, ' '), '') FROM activity_logs a")
    assert "example.com" not in dump and "corp.example" not in dump and "@" not in dump


async def test_pull_requests_and_plain_issues_have_their_kind(
    sandbox: GitHubSandbox, tmp_path: Path
) -> None:
    sandbox.add_issue(REPO, "plain", updated_at=T0)
    sandbox.add_issue(REPO, "pr", updated_at=T0 + M, is_pr=True, milestone="Sprint 9")
    config = GitHubConfig(
        repos=[REPO], base_url=sandbox.url, include_pull_requests=True, seconds_between_requests=0
    )
    connector = GitHubConnector(
        config, ConnectorContext("test", SecretStr(PLANTED_TOKEN), tmp_path, max_retries=1)
    )
    try:
        got = {i.title: i for i in items_of(await collect(connector))}
    finally:
        await connector.aclose()
    assert (got["plain"].item_type, got["plain"].item_type_name) == ("issue", "Issue")
    assert (got["pr"].item_type, got["pr"].item_type_name) == ("pull_request", "Pull request")
    assert [s.name for s in got["pr"].sprints] == ["Sprint 9"]
    assert got["plain"].parent_external_id is None and got["plain"].sprints == []


def test_extra_fields_is_refused_by_name() -> None:
    config = {"token": PLANTED_TOKEN, "repos": [REPO], "extra_fields": {"Team": "tok-zz-9"}}
    with pytest.raises(ConfigError) as caught:
        validate_config(GitHubConnector, config)
    message = str(caught.value)
    assert "extra_fields" in message and "Jira and Azure DevOps" in message
    assert "tok-zz-9" not in message and PLANTED_TOKEN not in message


async def test_an_app_reads_parents_where_it_is_installed_and_only_there(
    pool: asyncpg.Pool, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Through a GitHub App on Enterprise Server paths: a parent in another repository of an
    owner the app is installed on is looked up with the installation's token; a parent where it
    is not installed is no parent (the run succeeds); no key or minted token is logged."""
    caplog.set_level(logging.DEBUG)
    key = make_key()
    with GitHubSandbox(token=PLANTED_TOKEN, repos=["acme/web"]) as box:
        assert isinstance(box, GitHubSandbox)
        box.add_app(APP_ID, key.public_pem)
        box.install(APP_ID, "acme")
        near = box.add_issue("acme/api", "epic next door", updated_at=T0, type="Epic")
        far = box.add_issue("elsewhere/epics", "epic out of reach", updated_at=T0, type="Epic")
        kids = [
            box.add_issue("acme/web", "near kid", updated_at=T0 + M, parent=near.id),
            box.add_issue("acme/web", "far kid", updated_at=T0 + 2 * M, parent=far.id),
        ]
        team = await make_team(pool, "Alpha")
        config = {
            "repos": ["acme/web"],
            "app_id": str(APP_ID),
            "private_key_env": KEY_ENV,
            "base_url": box.url + "/api/v3",
            "seconds_between_requests": 0,
        }
        integration = await make_integration(pool, team, "github", config)
        result = await sync.run_integration(
            pool, integration, settings, environ={KEY_ENV: key.pem},
            options=sync.RunOptions(force=True), loader=lambda source: GitHubConnector,
        )  # fmt: skip
        assert result.outcome == "succeeded", result.reason
        looked_up = [r.path for r in box.requests if ISSUE_GET.search(r.path)]
        assert looked_up == [f"/api/v3/repos/acme/api/issues/{near.number}"]
        rows = await model_rows(pool)
        assert [rows[ext(box, k)]["parent_external_id"] for k in kids] == [
            ext(box, near),
            None,
        ]
        secrets = [*key_lines(key.pem), *box.installation_tokens]
        assert box.installation_tokens
    activities = await pool.fetch("SELECT message, metadata::text AS m FROM activity_logs")
    text = caplog.text + "".join(f"{a['message']} {a['m']}" for a in activities)
    assert not [s[:12] for s in secrets if s in text]

"""`c9-sync remap` as a subprocess, as an admin runs it after editing a status_map: its help,
an unknown target, a line per integration with counts, a refused one, and no secret anywhere
in what it prints."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import asyncpg
import pytest

from connectors.sandbox.github import GitHubSandbox
from tests.acceptance.cli import start_cli
from tests.acceptance.test_admin_cli import (
    T0,
    TOKEN,
    assert_refused,
    c9,
    env_for,
)
from tests.acceptance.test_daemon import stop, wait_for
from tests.helpers import make_integration, make_team

PLANTED = "ghp_PLANTEDremapNeverShown0042"  # a literal token an admin stored in a config


@pytest.fixture
def github() -> Iterator[GitHubSandbox]:
    with GitHubSandbox(token=TOKEN) as sandbox:
        for n in range(2):
            issue = sandbox.add_issue(
                "acme/web", f"Web {n}", updated_at=T0 + n * timedelta(hours=1)
            )
            sandbox.update(issue.id, at=T0 + timedelta(hours=3 + n), labels=["doing"])
        yield sandbox  # type: ignore[misc]


def test_help_names_the_target_and_the_wait(db_url: str) -> None:
    result = c9(env_for(db_url), "remap", "--help")
    assert result.returncode == 0, result.stderr
    for needle in ("--integration", "ID|TEAM/TYPE[/NAME]", "--wait", "status_map"):
        assert needle in result.stdout


async def test_an_unknown_integration_is_a_one_line_usage_error(db_url: str) -> None:
    result = c9(env_for(db_url), "remap", "--integration", "Nobody/github")
    assert_refused(result, 2, "no integration 'Nobody/github'")


async def test_a_line_per_integration_with_counts_and_no_secret(
    db_url: str, pool: asyncpg.Pool, github: GitHubSandbox
) -> None:
    alpha = await make_team(pool, "Alpha")
    config = {"token_env": "C9_TEST_GH_TOKEN", "base_url": github.url, "repos": ["acme/web"]}
    web = await make_integration(pool, alpha, "github", config)
    # never synced, its secret stored inline: refused (no context), the secret never shown
    jira = {"url": "https://acme.atlassian.net", "email": "ops@acme.example", "token": PLANTED}
    await make_integration(pool, alpha, "jira", {**jira, "projects": ["ABC"]})
    env = env_for(db_url)
    synced = c9(env, "sync", "--integration", "Alpha/github")
    assert synced.returncode == 0, synced.stderr
    assert await pool.fetchval("SELECT count(*) FROM work_items WHERE status = 'queued'") == 2

    await pool.execute(
        "UPDATE integrations SET config = config || $2::jsonb WHERE id = $1",
        web,
        {"status_map": {"doing": "in_progress"}},
    )
    github.clear_requests()
    result = c9(env, "remap")
    assert result.returncode == 1, result.stderr  # one integration refused
    lines = [line for line in result.stdout.splitlines() if line.startswith("Alpha/")]
    # (no history row names "doing": GitHub's history holds a label only when it moved the
    # status under the map in force when it was read)
    assert lines == [
        "Alpha/github: remapped 2 items: changed=2 unchanged=0 rejected=0 history_rows=0"
        " history_kept=0 metrics_rows=0",
        "Alpha/jira: REFUSED: no run has kept what mapping its items offline needs (schema"
        " 0014): run a sync of it first",
    ]
    assert not github.requests
    assert await pool.fetchval("SELECT count(*) FROM work_items WHERE status = 'in_progress'") == 2
    for text in (result.stdout, result.stderr):
        assert PLANTED not in text and TOKEN not in text

    again = c9(env, "remap", "--integration", "Alpha/github")
    assert again.returncode == 0, again.stderr
    assert "Alpha/github: remapped 2 items: changed=0 unchanged=2" in again.stdout


async def test_the_daemon_remaps_after_the_run_that_finds_the_status_map_edited(
    db_url: str, pool: asyncpg.Pool, github: GitHubSandbox
) -> None:
    """Nothing changed upstream: the run after the edit reads nothing new, and the rows it did
    not read are mapped again after it, by the daemon itself."""
    alpha = await make_team(pool, "Alpha")
    config = {"token_env": "C9_TEST_GH_TOKEN", "base_url": github.url, "repos": ["acme/web"]}
    proc = start_cli("run", env=env_for(db_url, C9_SYNC_RECONCILE_SECONDS="30"))
    try:
        web = await make_integration(pool, alpha, "github", config, interval=3600)
        await wait_for(pool, "SELECT count(*) FROM work_items", lambda n: n == 2, 20)
        assert not await pool.fetchval(
            "SELECT count(*) FROM activity_logs WHERE event_type = 'integration_remapped'"
        )  # the first run maps with the map as it is: nothing to remap
        await pool.execute(
            "UPDATE integrations SET config = config || $2::jsonb WHERE id = $1",
            web,
            {"status_map": {"doing": "in_progress"}},
        )  # an edited config makes a run due at once (interval aside)
        await wait_for(
            pool,
            "SELECT count(*) FROM work_items WHERE status = 'in_progress'",
            lambda n: n == 2,
            20,
        )
        summary = await wait_for(
            pool,
            "SELECT metadata FROM activity_logs WHERE event_type = 'integration_remapped'",
            lambda m: m is not None,
            5,
        )
        # the run itself maps what it re-reads (its overlap window) with the new map; the remap
        # after it, the rest: one status change each, from one or the other
        assert summary["items"] == 2 and summary["changed"] >= 1
        assert (
            await pool.fetchval(
                "SELECT count(DISTINCT work_item_id) FROM activity_logs"
                " WHERE event_type = 'work_item_status_changed'"
                "   AND metadata ->> 'new_status' = 'in_progress'"
            )
            == 2
        )
    finally:
        err = stop(proc)
    assert proc.returncode == 0, err[-2000:]
    assert '"remap_after_run"' in err and TOKEN not in err

"""Several integrations of one tracker on one team (schema/0008): every admin command as a
subprocess against a real database and the GitHub sandbox, with two GitHub integrations of team
Alpha (issues in two organisations), named `acme` and `globex`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import timedelta

import asyncpg
import pytest

from connectors.sandbox.github import GitHubSandbox
from tests.acceptance.test_admin_cli import (
    T0,
    TOKEN,
    assert_refused,
    c9,
    config,
    env_for,
)
from tests.helpers import make_integration, make_team

PLANTED = "ghp_PLANTEDteamNamesNeverShown7"  # a literal token some admin stored in a config


@pytest.fixture
def github() -> Iterator[GitHubSandbox]:
    with GitHubSandbox(token=TOKEN) as sandbox:
        for n in range(3):
            sandbox.add_issue("acme/web", f"Web {n}", updated_at=T0 + timedelta(minutes=n))
        for n in range(2):
            sandbox.add_issue("globex/api", f"API {n}", updated_at=T0 + timedelta(minutes=n))
        yield sandbox  # type: ignore[misc]


def add(
    env: dict[str, str], sandbox: GitHubSandbox, repo: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return c9(env, "integrations", "add", "--team", "Alpha", "--type", "github",
              "--config", json.dumps(config(sandbox, repos=[repo])), *extra)  # fmt: skip


def table_rows(result: subprocess.CompletedProcess[str], column: int) -> dict[str, str]:
    """A rich table's lines by the text of one column."""
    return {
        line.split("│")[column].strip(): line
        for line in result.stdout.splitlines()
        if line.count("│") > 3
    }


async def ids_by_name(pool: asyncpg.Pool) -> dict[str, str]:
    rows = await pool.fetch("SELECT name, id FROM integrations")
    return {r["name"]: str(r["id"]) for r in rows}


async def test_two_of_one_type_are_added_listed_checked_and_named(db_url, pool, github) -> None:
    await make_team(pool, "Alpha")
    env = env_for(db_url)
    first = add(env, github, "acme/web", "--name", "acme")
    assert first.returncode == 0, first.stderr
    # Alone of its type, it is still Alpha/github: nothing changes for a team with one.
    assert "added Alpha/github " in first.stdout
    second = add(env, github, "globex/api", "--name", "globex")
    assert second.returncode == 0, second.stderr
    assert "added Alpha/github/globex " in second.stdout
    ids = await ids_by_name(pool)
    assert set(ids) == {"acme", "globex"}

    taken = add(env, github, "globex/api", "--name", "acme")
    assert_refused(taken, 2, "already has a github integration named 'acme'", ids["acme"])
    blank = add(env, github, "globex/api", "--name", "  ")
    assert blank.returncode == 2 and "--name: must not be blank" in blank.stderr
    assert await pool.fetchval("SELECT count(*) FROM integrations") == 2

    listed = c9(env, "integrations", "list")
    assert listed.returncode == 0, listed.stderr
    by_name = table_rows(listed, 4)
    assert ids["acme"] in by_name["acme"] and ids["globex"] in by_name["globex"]
    as_json = json.loads(c9(env, "integrations", "list", "--json").stdout)
    assert sorted((e["team"], e["type"], e["name"], e["target"]) for e in as_json) == [
        ("Alpha", "github", "acme", "Alpha/github/acme"),
        ("Alpha", "github", "globex", "Alpha/github/globex"),
    ]

    checked = c9(env, "integrations", "test", "Alpha/github/globex")
    assert checked.returncode == 0, checked.stderr
    assert "Alpha/github/globex: ok, credentials and scope work" in checked.stdout
    assert github.requests_to("/repos/globex/api")
    by_id = c9(env, "integrations", "check", ids["acme"])
    assert by_id.returncode == 0 and "Alpha/github/acme: ok" in by_id.stdout
    assert_refused(
        c9(env, "integrations", "test", "Alpha/github/initech"),
        2,
        "no integration 'Alpha/github/initech'",
    )


async def test_an_ambiguous_team_type_target_is_a_one_line_usage_error(
    db_url, pool, github
) -> None:
    env = env_for(db_url)
    team = await make_team(pool, "Alpha")
    acme = await make_integration(
        pool, team, "github", config(github, token_env=None, token=PLANTED), name="acme"
    )
    globex = await make_integration(pool, team, "github", config(github), name="globex")
    before = await pool.fetch("SELECT * FROM integrations ORDER BY id")
    for args in (
        ("test", "Alpha/github"),
        ("enable", "Alpha/github"),
        ("disable", "Alpha/github"),
        ("set-interval", "Alpha/github", "60"),
        ("sync-now", "Alpha/github"),
        ("reset", "Alpha/github"),
        ("census", "Alpha/github"),
        ("remove", "Alpha/github", "--yes"),
    ):
        result = c9(env, "integrations", *args)
        assert_refused(
            result,
            2,
            "'Alpha/github' is ambiguous",
            "2 github integrations",
            f"Alpha/github/acme ({acme})",
            f"Alpha/github/globex ({globex})",
            "TEAM/TYPE/NAME",
        )
        assert len([x for x in result.stderr.splitlines() if not x.startswith("{")]) == 1, args
        assert PLANTED not in result.stdout + result.stderr
    ambiguous_sync = c9(env, "sync", "--integration", "Alpha/github")
    assert_refused(ambiguous_sync, 2, "is ambiguous", str(acme), str(globex))
    assert await pool.fetch("SELECT * FROM integrations ORDER BY id") == before  # nothing done

    # With one of them gone, TEAM/TYPE names the other again.
    removed = c9(env, "integrations", "remove", "Alpha/github/acme", "--yes")
    assert removed.returncode == 0 and "removed Alpha/github/acme" in removed.stdout
    off = c9(env, "integrations", "disable", "Alpha/github")
    assert off.returncode == 0 and "Alpha/github disabled" in off.stdout
    assert await pool.fetchval("SELECT is_active FROM integrations WHERE id = $1", globex) is False

    # A name may contain '/': a target is compared whole.
    eu = await make_integration(pool, team, "github", config(github), name="acme/eu")
    on = c9(env, "integrations", "disable", "Alpha/github/acme/eu")
    assert on.returncode == 0 and "Alpha/github/acme/eu disabled" in on.stdout
    assert await pool.fetchval("SELECT is_active FROM integrations WHERE id = $1", eu) is False


async def test_sync_status_reset_and_census_keep_two_of_one_type_apart(
    db_url, pool, github
) -> None:
    env = env_for(db_url)
    team = await make_team(pool, "Alpha")
    acme = await make_integration(pool, team, "github", config(github, repos=["acme/web"]),
                                  name="acme")  # fmt: skip
    globex = await make_integration(pool, team, "github", config(github, repos=["globex/api"]),
                                    name="globex")  # fmt: skip

    ran = c9(env, "sync")
    assert ran.returncode == 0, ran.stderr
    assert "Alpha/github/acme: ok created=3 " in ran.stdout, ran.stdout
    assert "Alpha/github/globex: ok created=2 " in ran.stdout, ran.stdout
    held = {
        r["integration_id"]: r["n"]
        for r in await pool.fetch(
            "SELECT integration_id, count(*) AS n FROM work_items GROUP BY integration_id"
        )
    }
    assert held == {acme: 3, globex: 2}

    # Per integration in the new view; summed per team and source in the old one, each item once.
    per_integration = {
        (r["integration_name"], r["status"]): r["items"]
        for r in await pool.fetch("SELECT * FROM v_integration_status_counts")
    }
    assert per_integration == {("acme", "queued"): 3, ("globex", "queued"): 2}
    assert (
        await pool.fetchval(
            "SELECT items FROM v_team_status_counts WHERE source = 'github' AND status = 'queued'"
        )
        == 5
    )
    health = {
        r["name"]: r["items"]
        for r in await pool.fetch("SELECT name, items FROM v_integration_health")
    }
    assert health == {"acme": 3, "globex": 2}

    status = c9(env, "status")
    assert status.returncode == 0, status.stderr
    rows = table_rows(status, 1)
    assert " ok " in rows["Alpha/github/acme"] and " ok " in rows["Alpha/github/globex"]
    as_json = json.loads(c9(env, "status", "--json").stdout)
    assert sorted(e["target"] for e in as_json) == ["Alpha/github/acme", "Alpha/github/globex"]

    census = c9(env, "integrations", "census", "Alpha/github/globex")
    assert census.returncode == 0, census.stderr
    assert "census of Alpha/github/globex" in census.stdout
    lines = table_rows(census, 1)
    assert set(lines) == {"globex/api"}, census.stdout
    assert [c.strip() for c in lines["globex/api"].split("│")[2:6]] == ["2", "2", "0", "0"]
    rows = table_rows(c9(env, "status"), 1)
    assert rows["Alpha/github/globex"].split("│")[8].strip() == "2/2"

    cursors = {
        r["integration_id"]: r["cursor"]
        for r in await pool.fetch("SELECT integration_id, cursor FROM integration_sync_state")
    }
    assert set(cursors[acme]) == {"acme/web"} and set(cursors[globex]) == {"globex/api"}
    reset = c9(env, "integrations", "reset", "Alpha/github/acme")
    assert reset.returncode == 0, reset.stderr
    assert "Alpha/github/acme: cursor of every scope forgotten" in reset.stdout
    assert "sync-now Alpha/github/acme" in reset.stdout  # a target that names it alone
    after = {
        r["integration_id"]: r["cursor"]
        for r in await pool.fetch("SELECT integration_id, cursor FROM integration_sync_state")
    }
    assert after == {acme: {}, globex: cursors[globex]}

    only = c9(env, "sync", "--integration", "Alpha/github/acme", "--force")
    assert only.returncode == 0, only.stderr
    assert "Alpha/github/acme: ok created=0 updated=0 unchanged=3 " in only.stdout
    assert "globex" not in only.stdout


async def test_two_of_one_team_reading_the_same_repository_are_told_of_the_overlap(
    db_url, pool, github
) -> None:
    env = env_for(db_url)
    team = await make_team(pool, "Alpha")
    first = await make_integration(pool, team, "github", config(github), name="first")
    other = await make_integration(pool, team, "github", config(github), name="second")
    assert c9(env, "sync", "--integration", "Alpha/github/first").returncode == 0
    second = c9(env, "sync", "--integration", "Alpha/github/second")
    assert second.returncode == 0, second.stderr
    [overlap] = await pool.fetch(
        "SELECT team_id, metadata FROM activity_logs WHERE event_type = 'scope_overlap'"
    )
    assert overlap["team_id"] == team
    metadata = overlap["metadata"]
    assert metadata["count"] == 3 and metadata["other_integrations"] == [str(first)]
    # The second took the items (as it would from another team), each a row saying so.
    assert (
        await pool.fetchval("SELECT count(*) FROM work_items WHERE integration_id = $1", other) == 3
    )
    moved = await pool.fetch(
        "SELECT metadata FROM activity_logs WHERE event_type = 'work_item_updated'"
    )
    assert [m["metadata"]["fields"] for m in moved] == [["integration_id"]] * 3

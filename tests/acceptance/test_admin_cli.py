"""Every admin command (`c9-sync integrations …`, `c9-sync status`) as a subprocess, on good and on
bad input, against a real database and the GitHub sandbox (checks use the real PyGithub client)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from connectors.sandbox.github import GitHubSandbox
from tests.acceptance.cli import C9_SYNC, cli_env, run_cli
from tests.helpers import make_integration, make_team, make_work_item

T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)
TOKEN = "sandbox-token-5a1f"
PLANTED = "ghp_PLANTEDsecretNeverShown42"  # a literal token some admin stored in a config


@pytest.fixture
def github() -> Iterator[GitHubSandbox]:
    with GitHubSandbox(token=TOKEN) as sandbox:
        for n in range(3):
            sandbox.add_issue("acme/web", f"Issue {n}", updated_at=T0 + timedelta(minutes=n))
        yield sandbox  # type: ignore[misc]


def env_for(db_url: str, **extra: str) -> dict[str, str]:
    # A wide console so tables are not wrapped; the token reachable through token_env.
    return cli_env(db_url, COLUMNS="250", C9_TEST_GH_TOKEN=TOKEN, **extra)


def config(sandbox: GitHubSandbox, **overrides: object) -> dict[str, object]:
    return {
        "token_env": "C9_TEST_GH_TOKEN",
        "base_url": sandbox.url,
        "repos": ["acme/web"],
        **overrides,
    }


def c9(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run with standard input closed (no terminal to prompt on), as in CI and cron."""
    return subprocess.run(
        [C9_SYNC, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused command prints (JSON log lines aside)."""
    lines = [
        line for line in result.stderr.splitlines() if line.strip() and not line.startswith("{")
    ]
    assert len(lines) >= 1, result.stderr
    return lines[-1]


def assert_refused(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    line = error_line(result)
    for needle in needles:
        assert needle in line, line


# ---------------------------------------------------------------------------------------------
# add
# ---------------------------------------------------------------------------------------------
async def test_add_checks_credentials_then_saves(db_url, pool, github, tmp_path) -> None:
    await make_team(pool, "Alpha")
    env = env_for(db_url)
    good = c9(env, "integrations", "add", "--team", "Alpha", "--type", "github",
              "--config", json.dumps(config(github)), "--interval", "120", "--name", "Web")  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert "check passed" in good.stdout and "added Alpha/github" in good.stdout
    row = await pool.fetchrow("SELECT * FROM integrations")
    assert row["config"] == config(github)  # stored as given: the token stays in the environment
    assert (row["sync_interval"], row["name"], row["is_active"]) == (120, "Web", True)
    assert str(row["id"]) in good.stdout
    assert github.requests_to("/repos/acme/web"), "the check called the tracker"

    again = c9(env, "integrations", "add", "--team", "Alpha", "--type", "github",
               "--config", json.dumps(config(github)), "--name", "Web")  # fmt: skip
    assert_refused(again, 2, "already has a github integration named 'Web'", str(row["id"]))

    # @FILE, --inactive, --create-team
    path = tmp_path / "beta.json"
    path.write_text(json.dumps(config(github)))
    beta = c9(env, "integrations", "add", "--team", "Beta", "--type", "github",
              "--config", f"@{path}", "--inactive", "--create-team")  # fmt: skip
    assert beta.returncode == 0, beta.stderr
    assert "created team 'Beta'" in beta.stdout and "inactive" in beta.stdout
    assert await pool.fetchval(
        "SELECT NOT i.is_active FROM integrations i JOIN teams t ON t.id = i.team_id"
        " WHERE t.name = 'Beta'"
    )
    assert await pool.fetchval("SELECT count(*) FROM integrations") == 2


async def test_add_refuses_bad_input_without_saving_or_echoing(
    db_url, pool, github, tmp_path
) -> None:
    await make_team(pool, "Alpha")
    env = env_for(db_url)

    def add(
        *extra: str, team: str = "Alpha", type_: str = "github"
    ) -> subprocess.CompletedProcess[str]:
        return c9(env, "integrations", "add", "--team", team, "--type", type_, *extra)

    assert_refused(
        add("--config", "{}", type_="trello"), 2, "unknown integration type 'trello'", "github"
    )
    not_json = add("--config", '{"token": "' + PLANTED)
    assert_refused(not_json, 2, "--config: not valid JSON")
    assert PLANTED not in not_json.stdout + not_json.stderr
    assert_refused(add("--config", '["acme/web"]'), 2, "must be a JSON object")
    invalid = add("--config", json.dumps({"token": PLANTED, "repos": "acme/web", "colour": "red"}))
    assert_refused(invalid, 2, "invalid integrations.config", "repos", "colour")
    assert PLANTED not in invalid.stdout + invalid.stderr
    assert_refused(
        add("--config", json.dumps(config(github)), team="Nobody"),
        2,
        "no team named 'Nobody'",
        "--create-team",
    )
    assert_refused(add("--config", f"@{tmp_path / 'missing.json'}"), 2, "cannot read")
    short = add("--config", json.dumps(config(github)), "--interval", "3")
    assert short.returncode == 2 and "at least 5 seconds" in short.stderr
    assert add("--config", "{}", "--interval", "often").returncode == 2

    # The check fails: nothing is saved, exit 1, the token never printed.
    wrong = add("--config", json.dumps(config(github, token_env=None, token=PLANTED)))
    assert_refused(
        wrong, 1, "check failed, nothing saved", "rejected the token (401)", "--no-check"
    )
    assert PLANTED not in wrong.stdout + wrong.stderr
    missing_repo = add("--config", json.dumps(config(github, repos=["acme/nope"])))
    assert_refused(missing_repo, 1, "acme/nope")
    unset = add("--config", json.dumps(config(github, token_env="C9_TEST_UNSET_VAR")))
    assert_refused(unset, 1, "'C9_TEST_UNSET_VAR' is not set", "its own")
    assert await pool.fetchval("SELECT count(*) FROM integrations") == 0

    # --no-check saves what the check would refuse (the worker's environment may differ).
    saved = add("--config", json.dumps(config(github, token_env=None, token=PLANTED)), "--no-check")
    assert saved.returncode == 0, saved.stderr
    assert "check skipped" in saved.stdout and "prefer token_env" in saved.stdout
    assert PLANTED not in saved.stdout + saved.stderr
    assert await pool.fetchval("SELECT count(*) FROM integrations") == 1


# ---------------------------------------------------------------------------------------------
# list / test
# ---------------------------------------------------------------------------------------------
async def test_list_shows_health_and_never_a_token(db_url, pool, github) -> None:
    env = env_for(db_url)
    empty = c9(env, "integrations", "list")
    assert empty.returncode == 0 and "no integrations" in empty.stdout
    alpha, beta = await make_team(pool, "Alpha"), await make_team(pool, "Beta")
    ok = await make_integration(
        pool, alpha, "github", config(github, token_env=None, token=PLANTED), interval=600
    )
    failing = await make_integration(
        pool, beta, "jira", {"token": PLANTED, "url": "https://x"}, active=False
    )
    await pool.execute(
        "INSERT INTO integration_sync_state (integration_id, last_success_at) VALUES ($1, now() - interval '5 minutes')",
        ok,
    )
    await pool.execute(
        "INSERT INTO integration_sync_state (integration_id, last_error_at, last_error_class,"
        " last_error, consecutive_failures) VALUES ($1, now(), 'FatalError', 'Jira rejected the token', 3)",
        failing,
    )
    table = c9(env, "integrations", "list")
    assert table.returncode == 0, table.stderr
    lines = {
        line.split("│")[2].strip(): line
        for line in table.stdout.splitlines()
        if line.count("│") > 8
    }
    assert set(lines) == {"Alpha", "Beta"}, table.stdout
    assert str(ok) in lines["Alpha"] and "5m ago" in lines["Alpha"] and "600s" in lines["Alpha"]
    assert " ok " in lines["Alpha"] and " yes " in lines["Alpha"]
    assert (
        "failed: FatalError" in lines["Beta"] and " 3 " in lines["Beta"] and " no " in lines["Beta"]
    )
    assert "never" in lines["Beta"]
    as_json = c9(env, "integrations", "list", "--json")
    entries = {e["team"]: e for e in json.loads(as_json.stdout)}
    assert entries["Alpha"]["last_result"] == "ok" and entries["Alpha"]["interval_s"] == 600
    assert entries["Alpha"]["target"] == "Alpha/github"  # alone of its type: TEAM/TYPE
    assert entries["Beta"]["consecutive_failures"] == 3 and entries["Beta"]["active"] is False
    assert all("config" not in e and "token_env" not in json.dumps(e) for e in entries.values())
    only_beta = c9(env, "integrations", "list", "--team", "Beta", "--json")
    assert [e["team"] for e in json.loads(only_beta.stdout)] == ["Beta"]
    for result in (table, as_json, only_beta):
        assert PLANTED not in result.stdout + result.stderr


async def test_test_says_plainly_whether_credentials_and_scope_work(db_url, pool, github) -> None:
    env = env_for(db_url)
    alpha, beta, gamma = [await make_team(pool, n) for n in ("Alpha", "Beta", "Gamma/Ops")]
    good = await make_integration(pool, alpha, "github", config(github))
    await make_integration(pool, beta, "github", config(github, token_env=None, token=PLANTED))
    await make_integration(pool, gamma, "github", config(github, repos=["acme/web", "acme/gone"]))
    await make_integration(pool, gamma, "jira", {"url": "https://jira.example", "tokn": "x"})

    by_id = c9(env, "integrations", "test", str(good))
    assert by_id.returncode == 0, by_id.stderr
    assert "Alpha/github: ok, credentials and scope work" in by_id.stdout
    by_name = c9(env, "integrations", "check", "Alpha/github")
    assert by_name.returncode == 0 and "credentials and scope work" in by_name.stdout

    bad_token = c9(env, "integrations", "test", "Beta/github")
    assert_refused(bad_token, 1, "Beta/github: check FAILED", "rejected the token (401)")
    assert PLANTED not in bad_token.stdout + bad_token.stderr
    # A team name may contain '/': the type is what follows the last one.
    bad_scope = c9(env, "integrations", "test", "Gamma/Ops/github")
    assert_refused(bad_scope, 1, "Gamma/Ops/github: check FAILED", "acme/gone")
    bad_config = c9(env, "integrations", "test", "Gamma/Ops/jira")
    assert_refused(bad_config, 1, "check FAILED", "invalid integrations.config", "tokn")
    github.response_delay = 3.0
    slow = c9(env, "integrations", "test", "Alpha/github", "--timeout", "1")
    assert_refused(slow, 1, "check FAILED")
    github.response_delay = 0.0

    assert_refused(c9(env, "integrations", "test", str(uuid.uuid4())), 2, "no integration")
    assert_refused(c9(env, "integrations", "test", "Alpha/jira"), 2, "no integration 'Alpha/jira'")
    assert_refused(c9(env, "integrations", "test", "github"), 2, "neither an integration id")


# ---------------------------------------------------------------------------------------------
# enable / disable / set-interval / remove
# ---------------------------------------------------------------------------------------------
async def test_enable_disable_set_interval(db_url, pool, github) -> None:
    env = env_for(db_url)
    team = await make_team(pool, "Alpha")
    integration = await make_integration(pool, team, "github", config(github), interval=300)

    async def row() -> asyncpg.Record:
        return await pool.fetchrow(
            "SELECT is_active, sync_interval FROM integrations WHERE id = $1", integration
        )

    off = c9(env, "integrations", "disable", "Alpha/github")
    assert off.returncode == 0 and "Alpha/github disabled" in off.stdout
    assert (await row())["is_active"] is False
    again = c9(env, "integrations", "disable", str(integration))
    assert again.returncode == 0 and "already disabled" in again.stdout
    on = c9(env, "integrations", "enable", str(integration))
    assert on.returncode == 0 and "Alpha/github enabled" in on.stdout
    assert (await row())["is_active"] is True

    interval = c9(env, "integrations", "set-interval", "Alpha/github", "60")
    assert interval.returncode == 0 and "300s -> 60s" in interval.stdout
    assert (await row())["sync_interval"] == 60
    too_short = c9(env, "integrations", "set-interval", "Alpha/github", "4")
    assert too_short.returncode == 2 and "at least 5 seconds" in too_short.stderr
    assert c9(env, "integrations", "set-interval", "Alpha/github", "soon").returncode == 2
    assert (await row())["sync_interval"] == 60

    for action in ("enable", "disable"):
        assert_refused(
            c9(env, "integrations", action, "Zeta/github"), 2, "no integration 'Zeta/github'"
        )
    assert_refused(
        c9(env, "integrations", "set-interval", "nope", "60"), 2, "neither an integration id"
    )


async def test_remove_keeps_synced_items(db_url, pool, github) -> None:
    env = env_for(db_url)
    team = await make_team(pool, "Alpha")
    integration = await make_integration(pool, team, "github", config(github))
    item = await make_work_item(pool, team, "gh-1", source="github", integration_id=integration)

    unconfirmed = c9(env, "integrations", "remove", "Alpha/github")
    assert_refused(unconfirmed, 2, "needs --yes")
    assert await pool.fetchval("SELECT count(*) FROM integrations") == 1
    removed = c9(env, "integrations", "remove", "Alpha/github", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert "removed Alpha/github" in removed.stdout and "1 work item(s)" in removed.stdout
    assert await pool.fetchval("SELECT count(*) FROM integrations") == 0
    assert await pool.fetchval("SELECT integration_id FROM work_items WHERE id = $1", item) is None
    assert_refused(
        c9(env, "integrations", "remove", str(integration), "--yes"), 2, "no integration"
    )


# ---------------------------------------------------------------------------------------------
# sync-now
# ---------------------------------------------------------------------------------------------
async def test_sync_now_clears_backoff_and_notifies_workers(db_url, pool, github) -> None:
    env = env_for(db_url)
    team = await make_team(pool, "Alpha")
    integration = await make_integration(pool, team, "github", config(github), interval=300)
    await pool.execute(
        "INSERT INTO integration_sync_state (integration_id, last_error_at, last_error_class,"
        " last_error, consecutive_failures, next_attempt_at)"
        " VALUES ($1, now(), 'RetriableError', 'GitHub answered 502', 4, now() + interval '1 hour')",
        integration,
    )
    backing_off = c9(env, "sync")
    assert backing_off.returncode == 0 and "backing off" in backing_off.stdout

    listener = await asyncpg.connect(db_url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("c9_sync_integrations", lambda *a: heard.put_nowait(a[-1]))
    try:
        now = await asyncio.to_thread(c9, env, "integrations", "sync-now", "Alpha/github")
        assert now.returncode == 0, now.stderr
        assert "sync requested" in now.stdout
        payload = json.loads(await asyncio.wait_for(heard.get(), 5))
        assert {k: payload[k] for k in ("op", "id")} == {"op": "sync_now", "id": str(integration)}
        assert datetime.fromisoformat(payload["at"]).tzinfo is not None  # the database's clock
    finally:
        await listener.close()
    state = await pool.fetchrow("SELECT * FROM integration_sync_state")
    assert state["next_attempt_at"] is None
    assert state["consecutive_failures"] == 4  # the history stays visible until a run succeeds
    # The next tick (a burst here) runs it instead of backing off.
    ran = c9(env, "sync")
    assert ran.returncode == 0 and "Alpha/github: ok created=3" in ran.stdout, ran.stdout

    await pool.execute("UPDATE integrations SET is_active = false")
    assert_refused(
        c9(env, "integrations", "sync-now", str(integration)), 2, "disabled: enable it first"
    )
    assert_refused(c9(env, "integrations", "sync-now", "Beta/github"), 2, "no integration")


# ---------------------------------------------------------------------------------------------
# reset
# ---------------------------------------------------------------------------------------------
async def test_reset_forgets_the_cursor_so_the_next_run_reads_in_full(db_url, pool, github) -> None:
    env = env_for(db_url)
    team = await make_team(pool, "Alpha")
    await make_integration(pool, team, "github", config(github, repos=["acme/web", "acme/api"]))
    github.add_issue("acme/api", "API issue", updated_at=T0)
    assert c9(env, "sync").returncode == 0
    cursor = await pool.fetchval("SELECT cursor FROM integration_sync_state")
    assert set(cursor) == {"acme/web", "acme/api"}

    assert_refused(
        c9(env, "integrations", "reset", "Alpha/github", "--scope", "acme/nope"),
        2,
        "has: acme/api, acme/web",
    )
    one = c9(env, "integrations", "reset", "Alpha/github", "--scope", "acme/api")
    assert one.returncode == 0, one.stderr
    assert "scope 'acme/api' forgotten" in one.stdout and "sync-now" in one.stdout
    assert set(await pool.fetchval("SELECT cursor FROM integration_sync_state")) == {"acme/web"}
    every = c9(env, "integrations", "reset", "Alpha/github")
    assert every.returncode == 0 and "every scope" in every.stdout
    assert await pool.fetchval("SELECT cursor FROM integration_sync_state") == {}
    items = await pool.fetchval("SELECT count(*) FROM work_items")
    assert items == 4  # nothing deleted

    # The next run reads everything again (from the start: since is absent in each request)
    # and rewrites nothing that did not change.
    github.clear_requests()
    ran = c9(env, "sync", "--force")
    assert ran.returncode == 0 and "created=0 updated=0 unchanged=4" in ran.stdout, ran.stdout
    lists = [r for r in github.requests if r.path.endswith("/issues")]
    assert lists and all("since" not in r.query for r in lists)


# ---------------------------------------------------------------------------------------------
# status
# ---------------------------------------------------------------------------------------------
async def test_status_health_next_run_and_stalled_runs(db_url, pool, github) -> None:
    env = env_for(db_url)
    healthy_only = c9(env, "status")
    assert healthy_only.returncode == 0 and "no integrations" in healthy_only.stdout
    ids = {}
    for name, type_ in (("Ok", "github"), ("Failing", "github"), ("Stalled", "github"),
                        ("Running", "github"), ("Paused", "github"), ("New", "github")):  # fmt: skip
        team = await make_team(pool, name)
        ids[name] = await make_integration(
            pool, team, type_, config(github), interval=600, active=name != "Paused"
        )
    state = (
        "INSERT INTO integration_sync_state (integration_id, last_started_at, last_success_at,"
        " last_error_at, last_error_class, last_error, consecutive_failures, next_attempt_at,"
        " last_duration_s) VALUES ($1, now() - $2::text::interval, now() - $3::text::interval,"
        " now() - $4::text::interval, $5, $6, $7, now() + $8::text::interval, $9)"
    )
    await pool.execute(state, ids["Ok"], "2 minutes", "2 minutes", None, None, None, 0, None, 4.0)
    await pool.execute(state, ids["Failing"], "1 minute", "3 hours", "1 minute", "FatalError",
                       "GitHub rejected the token (401)", 2, "10 minutes", 1.0)  # fmt: skip
    await pool.execute(
        state, ids["Stalled"], "10 minutes", "1 hour", None, None, None, 0, None, 5.0
    )
    await pool.execute(
        state, ids["Running"], "20 seconds", "1 hour", None, None, None, 0, None, 30.0
    )
    # A run in progress holds its integration's advisory lock (as worker.sync does).
    holder = await asyncpg.connect(db_url)
    try:
        for name in ("Stalled", "Running"):
            assert await holder.fetchval(
                "SELECT pg_try_advisory_lock($1, hashtext($2::uuid::text))", 0x6339, ids[name]
            )
        table = c9(env, "status")
        as_json = c9(env, "status", "--json")
        lenient = c9(env, "status", "--json", "--stalled-factor", "1000")
    finally:
        await holder.close()

    assert table.returncode == 1, table.stderr  # something active is unhealthy
    rows = {
        line.split("│")[1].strip(): line
        for line in table.stdout.splitlines()
        if line.count("│") > 6
    }
    assert (
        "FAILING" in rows["Failing/github"]
        and "FatalError: GitHub rejected" in rows["Failing/github"]
    )
    assert "in 10m" in rows["Failing/github"]  # next run: when the backoff ends
    assert "STALLED" in rows["Stalled/github"] and "10m (usually 5s)" in rows["Stalled/github"]
    assert "running" in rows["Running/github"] and "(usually 30s)" in rows["Running/github"]
    assert (
        " ok " in rows["Ok/github"]
        and "2m ago" in rows["Ok/github"]
        and "in 8m" in rows["Ok/github"]
    )
    assert "disabled" in rows["Paused/github"]
    assert "never synced" in rows["New/github"] and "due" in rows["New/github"]
    assert "5 active, 1 failing, 1 stalled" in table.stdout
    assert PLANTED not in table.stdout + as_json.stdout

    assert as_json.returncode == 1
    states = {e["team"]: e["state"] for e in json.loads(as_json.stdout)}
    assert states == {"Ok": "ok", "Failing": "failing", "Stalled": "stalled", "Running": "running",
                      "Paused": "disabled", "New": "never synced"}  # fmt: skip
    assert {e["team"]: e["state"] for e in json.loads(lenient.stdout)}["Stalled"] == "running"

    # Lock released (the run ended without recording a result): interrupted, not running.
    after = {e["team"]: e for e in json.loads(c9(env, "status", "--json").stdout)}
    assert after["Stalled"]["state"] == "interrupted" and after["Stalled"]["running_for_s"] is None

    await pool.execute("DELETE FROM integrations WHERE id = $1", ids["Failing"])
    assert c9(env, "status").returncode == 0
    assert c9(env, "status", "--stalled-factor", "0").returncode == 2
    assert c9(env, "status", "--stalled-min-seconds", "x").returncode == 2


async def test_admin_commands_refuse_an_unmigrated_database(empty_db_url) -> None:
    env = env_for(empty_db_url)
    for args in (("integrations", "list"), ("status",), ("integrations", "enable", "A/github")):
        assert_refused(c9(env, *args), 1, "run `c9-sync migrate` first")


def test_help_lists_every_admin_command() -> None:
    result = run_cli("integrations", "--help", env=cli_env(None))
    assert result.returncode == 0
    for action in (
        "list",
        "add",
        "test",
        "check",
        "enable",
        "disable",
        "set-interval",
        "sync-now",
        "reset",
        "remove",
    ):
        assert action in result.stdout
    add = run_cli("integrations", "add", "--help", env=cli_env(None))
    assert "start_date" in add.stdout
    missing = run_cli("integrations", env=cli_env(None))
    assert missing.returncode == 2 and "ACTION" in missing.stderr

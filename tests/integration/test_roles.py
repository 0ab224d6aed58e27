"""deploy/postgres/roles.sql on a migrated database: the dashboard role reads everything but
`integrations.config` and writes nothing; the worker role runs real syncs (and the daemon) against
the GitHub sandbox and can do nothing else. Roles are cluster-wide: login roles get unique names
and are dropped after each test."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from connectors.base import HistoryEntry, Status, WorkItem
from connectors.sandbox.github import GitHubSandbox
from tests.acceptance.cli import cli_env, run_cli, start_cli
from tests.helpers import make_agent, make_integration, make_team, make_work_item
from worker import db, remap
from worker.settings import Settings
from worker.store import sync as store

ROLES_SQL = (Path(__file__).parents[2] / "deploy" / "postgres" / "roles.sql").read_text()
PLANTED = "ghp_PLANTEDsecretForRoles77"
T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)
DENIED = asyncpg.InsufficientPrivilegeError


def url_as(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


@dataclass(frozen=True)
class Logins:
    dashboard: str
    worker: str


@pytest.fixture
async def logins(db_url: str, pg_url: str) -> AsyncIterator[Logins]:
    owner = await asyncpg.connect(db_url)
    suffix = uuid.uuid4().hex[:10]
    names = {"dashboard": f"c9t_dash_{suffix}", "worker": f"c9t_worker_{suffix}"}
    try:
        await owner.execute(ROLES_SQL)
        await owner.execute(ROLES_SQL)  # re-runnable
        await owner.execute(
            f"CREATE ROLE {names['dashboard']} LOGIN PASSWORD 'pw' IN ROLE c9_dashboard"
        )
        await owner.execute(
            f"CREATE ROLE {names['worker']} LOGIN PASSWORD 'pw' IN ROLE c9_sync_worker"
        )
    finally:
        await owner.close()
    yield Logins(url_as(db_url, names["dashboard"], "pw"), url_as(db_url, names["worker"], "pw"))
    await drop_logins(pg_url, *names.values())


async def drop_logins(pg_url: str, *names: str) -> None:
    admin = await asyncpg.connect(pg_url)
    try:
        for name in names:
            # Their sessions (a killed subprocess' pool) must be gone before DROP ROLE.
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name
            )
            for _ in range(50):
                try:
                    await admin.execute(f"DROP ROLE IF EXISTS {name}")
                    break
                except asyncpg.DependentObjectsStillReferencedError:
                    await asyncio.sleep(0.1)
    finally:
        await admin.close()


@pytest.fixture
def github() -> Iterator[GitHubSandbox]:
    with GitHubSandbox(token="sandbox-token") as sandbox:
        for n in range(25):
            closed = n % 5 == 0
            sandbox.add_issue(
                "acme/web",
                f"Issue {n}",
                created_at=T0 - timedelta(days=1),
                updated_at=T0 + timedelta(minutes=n),
                state="closed" if closed else "open",
            )
        yield sandbox  # type: ignore[misc]


async def seed(pool: asyncpg.Pool) -> uuid.UUID:
    """One of everything dashboards read, as the owner."""
    team = await make_team(pool, "Alpha")
    await make_agent(pool, team, "dev-1", status="working")
    integration = await make_integration(pool, team, "github", {"token": PLANTED, "repos": ["a/b"]})
    item = await make_work_item(pool, team, "gh-1", source="github", integration_id=integration)
    await pool.execute(
        "INSERT INTO activity_logs (team_id, work_item_id, event_type, message) VALUES ($1, $2, 'sync_completed', 'ok')",
        team,
        item,
    )
    await pool.execute(
        "INSERT INTO metrics (team_id, metric_date, stories_completed) VALUES ($1, current_date, 1)",
        team,
    )
    await pool.execute(
        "INSERT INTO integration_sync_state (integration_id, last_success_at) VALUES ($1, now())",
        integration,
    )
    return integration


async def relations(pool: asyncpg.Pool) -> list[str]:
    """Every table and view in schema public."""
    rows = await pool.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p') ORDER BY 1"
    )
    return [r["relname"] for r in rows]


# ---------------------------------------------------------------------------------------------
# Dashboards
# ---------------------------------------------------------------------------------------------
async def test_dashboard_reads_every_table_and_view_but_never_config(pool, logins) -> None:
    await seed(pool)
    names = await relations(pool)
    assert {"v_integration_health", "v_team_work_queue", "work_items", "metrics"} <= set(names)
    dash = await asyncpg.connect(logins.dashboard)
    try:
        for name in names:
            if name in ("integrations", "oauth_grants"):  # never readable: see below
                continue
            rows = await dash.fetch(f'SELECT * FROM public."{name}"')
            assert PLANTED not in repr(rows), f"{name} exposes a token"
        health = await dash.fetchrow("SELECT * FROM v_integration_health")
        assert health["team_name"] == "Alpha" and health["health"] == "ok"
        assert await dash.fetchval("SELECT count(*) FROM work_items") == 1

        allowed = await dash.fetch(
            "SELECT id, team_id, type, name, is_active, last_sync, sync_interval, created_at,"
            " updated_at FROM integrations"
        )
        assert len(allowed) == 1 and allowed[0]["type"] == "github"
        for sql in (
            "SELECT config FROM integrations",
            "SELECT * FROM integrations",
            "SELECT id FROM integrations WHERE config ? 'token'",
            "SELECT i.config->>'token' FROM integrations i JOIN teams t ON t.id = i.team_id",
        ):
            with pytest.raises(DENIED, match="permission denied"):
                await dash.fetch(sql)
    finally:
        await dash.close()


async def test_dashboard_writes_nothing(pool, logins) -> None:
    integration = await seed(pool)
    dash = await asyncpg.connect(logins.dashboard)
    try:
        for sql in (
            "INSERT INTO teams (name, product, repo_path) VALUES ('x', 'x', 'x')",
            "UPDATE teams SET status = 'paused'",
            "DELETE FROM agents",
            "UPDATE work_items SET title = 'x'",
            "DELETE FROM work_items",
            "INSERT INTO activity_logs (event_type, message) VALUES ('x', 'x')",
            "DELETE FROM activity_logs",
            "UPDATE metrics SET stories_completed = 0",
            "TRUNCATE metrics",
            f"UPDATE integrations SET is_active = false WHERE id = '{integration}'",
            "UPDATE integrations SET config = '{}'",
            "DELETE FROM integrations",
            "UPDATE integration_sync_state SET consecutive_failures = 0",
            "DELETE FROM schema_migrations",
            "CREATE TABLE public.planted (x int)",
            "DROP VIEW v_integration_health",
            "ALTER TABLE work_items ADD COLUMN x int",
        ):
            with pytest.raises(DENIED):
                await dash.execute(sql)
    finally:
        await dash.close()
    assert await pool.fetchval("SELECT count(*) FROM work_items") == 1


async def test_status_and_list_work_with_the_dashboard_role(pool, logins) -> None:
    await seed(pool)
    env = cli_env(logins.dashboard, COLUMNS="200")
    status = run_cli("status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    assert '"team": "Alpha"' in status.stdout and PLANTED not in status.stdout
    listed = run_cli("integrations", "list", env=env)
    assert listed.returncode == 0 and "Alpha" in listed.stdout
    refused = run_cli("integrations", "disable", "Alpha/github", env=env)
    assert refused.returncode != 0 and "permission denied" in refused.stderr


# ---------------------------------------------------------------------------------------------
# The worker
# ---------------------------------------------------------------------------------------------
async def test_worker_role_runs_real_syncs_and_the_daemon(pool, logins, github) -> None:
    alpha, beta = await make_team(pool, "Alpha"), await make_team(pool, "Beta")
    config = {
        "token": "sandbox-token",
        "base_url": github.url,
        "repos": ["acme/web"],
        "per_page": 10,
    }
    good = await make_integration(pool, alpha, "github", config)
    await make_integration(pool, beta, "github", {**config, "token": "wrong-token"})
    env = cli_env(logins.worker, C9_SYNC_AUTO_MIGRATE="false")

    first = run_cli("sync", env=env)
    assert first.returncode == 1, first.stderr  # Beta fails (bad token): recorded, not a crash
    assert "Alpha/github: ok created=25" in first.stdout, first.stdout + first.stderr
    assert "Beta/github: FAILED FatalError" in first.stdout
    assert "permission denied" not in first.stderr
    assert await pool.fetchval("SELECT count(*) FROM work_items") == 25
    assert await pool.fetchval("SELECT last_sync IS NOT NULL FROM integrations WHERE id = $1", good)
    failed = await pool.fetchrow(
        "SELECT consecutive_failures, next_attempt_at FROM integration_sync_state s"
        " JOIN integrations i ON i.id = s.integration_id WHERE i.team_id = $1",
        beta,
    )
    assert failed["consecutive_failures"] == 1 and failed["next_attempt_at"] is not None
    assert await pool.fetchval("SELECT sum(stories_completed) FROM metrics") == 5

    github.update(github.issues["acme/web"][1].id, at=T0 + timedelta(hours=2), state="closed")
    full = run_cli("sync", "--team", "Alpha", "--full", env=env)  # cursor reset + deletion sweep
    assert full.returncode == 0, full.stderr
    # updated twice: by its page, then its started_at by its history (the closed event)
    assert "created=0 updated=2 unchanged=24" in full.stdout, full.stdout
    assert await pool.fetchval("SELECT sum(stories_completed) FROM metrics") == 6

    # The daemon: schema check, scheduler, LISTEN, a run on insert, SIGTERM.
    await pool.execute("DELETE FROM integrations WHERE team_id = $1", beta)
    gamma = await make_team(pool, "Gamma")
    proc = start_cli("run", env=env)
    try:
        await asyncio.sleep(1.5)
        await make_integration(
            pool, gamma, "github", {**config, "repos": ["acme/web"]}, interval=300
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done = await pool.fetchval(
                "SELECT count(*) FROM activity_logs a WHERE a.team_id = $1 AND event_type = 'sync_completed'",
                gamma,
            )
            if done:
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("the daemon, as the worker role, did not sync the new integration")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert "permission denied" not in err


async def test_worker_role_can_do_nothing_else(pool, logins) -> None:
    integration = await seed(pool)
    worker = await db.connect(logins.worker)
    try:
        # What it needs: read the config (tokens), stamp last_sync.
        assert PLANTED in str(await worker.fetchval("SELECT config FROM integrations"))
        await worker.execute("UPDATE integrations SET last_sync = now() WHERE id = $1", integration)
        for sql in (
            "INSERT INTO teams (name, product, repo_path) VALUES ('x', 'x', 'x')",
            "UPDATE teams SET status = 'paused'",
            "SELECT * FROM agents",
            "INSERT INTO integrations (team_id, type, config) SELECT team_id, 'jira', '{}' FROM integrations",
            "UPDATE integrations SET config = '{}'",
            "UPDATE integrations SET is_active = false",
            "UPDATE integrations SET sync_interval = 5",
            "DELETE FROM integrations",
            "DELETE FROM work_items",
            "DELETE FROM activity_logs",
            "UPDATE activity_logs SET message = 'x'",
            "DELETE FROM integration_sync_state",
            "INSERT INTO schema_migrations (migration_set, version, name, checksum) VALUES ('core', 99, 'x', 'x')",
            "TRUNCATE work_items",
            "DROP TABLE work_items",
            "CREATE TABLE public.planted (x int)",
            "ALTER TABLE integrations DISABLE TRIGGER integrations_notify",
        ):
            with pytest.raises(DENIED):
                await worker.execute(sql)
    finally:
        await worker.close()


async def test_oauth_grants_are_the_workers_alone(pool, logins, db_url) -> None:
    """The encrypted OAuth grants (schema/0009): the worker reads, locks and rewrites them; the
    dashboard role cannot read a column, even when the migration runs after roles.sql (whose
    default privileges would otherwise hand it every new table)."""
    integration = await seed(pool)
    await pool.execute(
        "INSERT INTO oauth_grants (integration_id, refresh_token) VALUES ($1, $2)",
        integration,
        b"ciphertext",
    )
    migration = (Path(__file__).parents[2] / "schema" / "0009_oauth_grants.sql").read_text()
    for migrated_after_roles in (False, True):
        if migrated_after_roles:
            owner = await asyncpg.connect(db_url)
            try:
                await owner.execute("DROP TABLE oauth_grants")
                await owner.execute(migration)
                await owner.execute(
                    "INSERT INTO oauth_grants (integration_id, refresh_token) VALUES ($1, $2)",
                    integration,
                    b"ciphertext",
                )
            finally:
                await owner.close()
        dash = await asyncpg.connect(logins.dashboard)
        worker = await asyncpg.connect(logins.worker)
        try:
            for sql in (
                "SELECT * FROM oauth_grants",
                "SELECT count(*) FROM oauth_grants",
                "SELECT integration_id, access_expires_at FROM oauth_grants",
                "UPDATE oauth_grants SET refreshes = 0",
                "DELETE FROM oauth_grants",
            ):
                with pytest.raises(DENIED):
                    await dash.execute(sql)
            async with worker.transaction():
                locked = await worker.fetchval(
                    "SELECT refresh_token FROM oauth_grants WHERE integration_id = $1 FOR UPDATE",
                    integration,
                )
                assert locked == b"ciphertext"
                await worker.execute(
                    "UPDATE oauth_grants SET access_token = $2, access_expires_at = now(),"
                    " refresh_token = $2 WHERE integration_id = $1",
                    integration,
                    b"rotated",
                )
            with pytest.raises(DENIED):
                await worker.execute("DELETE FROM oauth_grants")  # only with its integration
        finally:
            await dash.close()
            await worker.close()
    await pool.execute("DELETE FROM integrations WHERE id = $1", integration)
    assert await pool.fetchval("SELECT count(*) FROM oauth_grants") == 0  # cascades


async def test_migrations_are_refused_to_the_worker(pool, logins) -> None:
    """On a schema that is behind, the worker role cannot migrate: it refuses to start."""
    await pool.execute("DELETE FROM schema_migrations WHERE migration_set = 'core' AND version = 4")
    told = run_cli("sync", env=cli_env(logins.worker, C9_SYNC_AUTO_MIGRATE="false"))
    assert told.returncode != 0 and "run `c9-sync migrate` first" in told.stderr, told.stderr
    tried = run_cli("sync", env=cli_env(logins.worker))  # auto-migrate: needs the owner's rights
    assert tried.returncode != 0 and "permission denied" in tried.stderr, tried.stderr
    assert await pool.fetchval("SELECT count(*) FROM schema_migrations WHERE version = 4") == 0


# ---------------------------------------------------------------------------------------------
# Later migrations, re-runs
# ---------------------------------------------------------------------------------------------
async def test_later_tables_and_reruns(pool, logins, db_url) -> None:
    await seed(pool)
    # A later migration (run as the owner) adds a table and a view.
    await pool.execute("CREATE TABLE later_table (id int); INSERT INTO later_table VALUES (1)")
    await pool.execute("CREATE VIEW v_later AS SELECT count(*) AS n FROM work_items")
    dash = await asyncpg.connect(logins.dashboard)
    worker = await db.connect(logins.worker)
    try:
        assert await dash.fetchval("SELECT id FROM later_table") == 1
        assert await dash.fetchval("SELECT n FROM v_later") == 1
        with pytest.raises(DENIED):
            await worker.fetchval("SELECT id FROM later_table")  # least privilege: not granted
        # Drift by hand is taken back by a re-run.
        await pool.execute("GRANT INSERT ON teams TO c9_dashboard")
        await pool.execute("GRANT SELECT (config) ON integrations TO c9_dashboard")
        await pool.execute("GRANT DELETE ON work_items TO c9_sync_worker")
        await dash.execute("SELECT config FROM integrations")  # the drift is real
        owner = await asyncpg.connect(db_url)
        try:
            await owner.execute(ROLES_SQL)
        finally:
            await owner.close()
        with pytest.raises(DENIED):
            await dash.execute("SELECT config FROM integrations")
        with pytest.raises(DENIED):
            await dash.execute(
                "INSERT INTO teams (name, product, repo_path) VALUES ('x', 'x', 'x')"
            )
        with pytest.raises(DENIED):
            await worker.execute("DELETE FROM work_items")
        assert await dash.fetchval("SELECT id FROM later_table") == 1
    finally:
        await dash.close()
        await worker.close()


async def test_worker_role_records_history_and_derives_times(pool, logins) -> None:
    team = await make_team(pool, "Alpha")
    integration = await make_integration(pool, team, "github", {"token": "x" * 8})
    entries = (
        HistoryEntry("1", "status", T0, None, "open", None, Status.QUEUED),
        HistoryEntry("2", "status", T0 + timedelta(hours=3), "open", "closed",
                     Status.QUEUED, Status.COMPLETED),
    )  # fmt: skip
    item = WorkItem("R-1", "t", Status.COMPLETED, T0 + timedelta(hours=3), history=entries)
    worker = await db.connect(logins.worker)
    try:
        async with worker.transaction():
            await store.upsert_items(
                worker, source="github", team_id=team, integration_id=integration, items=[item]
            )
    finally:
        await worker.close()
    assert await pool.fetchval("SELECT count(*) FROM work_item_history") == 2
    row = await pool.fetchrow("SELECT started_at, completed_at, time_basis FROM work_items")
    assert tuple(row) == (T0 + timedelta(hours=3), T0 + timedelta(hours=3), "history")


async def test_worker_role_remaps_history_statuses_and_nothing_else_of_them(
    pool, logins, tmp_path
) -> None:
    team = await make_team(pool, "Alpha")
    config = {"token": "x" * 8, "repos": ["o/r"]}
    integration = await make_integration(pool, team, "github", config)
    entries = (
        HistoryEntry("1", "status", T0, None, "open", None, Status.QUEUED),
        HistoryEntry("2", "status", T0 + timedelta(hours=3), "open", "closed",
                     Status.QUEUED, Status.COMPLETED),
    )  # fmt: skip
    item = WorkItem("R-1", "t", Status.COMPLETED, T0 + timedelta(hours=3), history=entries)
    async with pool.acquire() as owner, owner.transaction():
        await store.upsert_items(
            owner, source="github", team_id=team, integration_id=integration, items=[item]
        )
    await pool.execute(
        'UPDATE integrations SET config = config || \'{"status_map": {"closed": "cancelled"}}\''
    )
    worker = await db.create_pool(logins.worker, max_size=2)
    try:
        result = await remap.remap_integration(
            worker, integration, Settings(home=tmp_path / "home")
        )
        assert (result.outcome, result.history_rows) == ("remapped", 1), result.reason
        assert result.rejected == 1  # no stored JSON to map: left as it is
        with pytest.raises(DENIED):
            await worker.execute("UPDATE work_item_history SET to_value = 'x'")
    finally:
        await worker.close()
    assert (
        await pool.fetchval("SELECT to_status FROM work_item_history WHERE change_id = '2'")
        == "cancelled"
    )


async def test_replicas_under_one_login_share_the_ticks_and_under_two_each_ticks_all(
    pool, logins, db_url, pg_url, tmp_path
) -> None:
    """Replicas see each other through their sessions, whose times PostgreSQL shows only to the
    session's own role: under the one login docs/operations.md creates, they share the ticks;
    under two logins of the worker role neither sees the other, and each ticks every integration
    (no sharing, never a gap)."""
    from worker.scheduler import Scheduler

    ids = []
    for n in range(12):
        team = await make_team(pool, f"Team {n}")
        ids.append(await make_integration(pool, team, "github", {"repos": ["o/r"]}, interval=600))
    second = f"c9t_worker2_{uuid.uuid4().hex[:10]}"
    await pool.execute(f"CREATE ROLE {second} LOGIN PASSWORD 'pw' IN ROLE c9_sync_worker")
    urls = {
        "one": [logins.worker, logins.worker],
        "two": [logins.worker, url_as(db_url, second, "pw")],
    }

    async def nothing(*_: object) -> None:
        return None

    try:
        for case, (url_a, url_b) in urls.items():
            pools = [await db.create_pool(u, max_size=3) for u in (url_a, url_b)]
            settings = Settings(home=tmp_path / case, reconcile_seconds=60, jitter_seconds=0)
            replicas = [
                Scheduler(p, u, settings, nothing)
                for p, u in zip(pools, (url_a, url_b), strict=True)
            ]
            try:
                for r in replicas:
                    await r.start()
                deadline = time.monotonic() + 10
                while True:  # both LISTEN connections up (the owner sees every session)
                    listening = await pool.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND starts_with(application_name, 'c9-sync replica ')"
                    )
                    shares = [set(r.jobs()) for r in replicas]
                    settled = (
                        sum(map(len, shares)) == len(ids)
                        if case == "one"
                        else all(s == set(ids) for s in shares)
                    )
                    if listening == 2 and settled:
                        break
                    assert time.monotonic() < deadline, (case, [len(s) for s in shares])
                    await asyncio.sleep(0.05)
                await asyncio.sleep(2.5)  # a look at the replicas later, still so
                shares = [set(r.jobs()) for r in replicas]
                assert set().union(*shares) == set(ids), case
                if case == "one":
                    assert not shares[0] & shares[1] and all(shares), [len(s) for s in shares]
                else:
                    assert shares[0] == shares[1] == set(ids)
            finally:
                for r in replicas:
                    await r.stop(grace=1)
                for p in pools:
                    await p.close()
    finally:
        await drop_logins(pg_url, second)

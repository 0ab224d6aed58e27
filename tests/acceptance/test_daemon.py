"""The daemon and the burst command as subprocesses, syncing the GitHub sandbox with the real SDK."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from connectors.sandbox.github import GitHubSandbox
from tests.acceptance.cli import cli_env, run_cli, start_cli
from tests.helpers import (
    ENDED_AS,
    RUNS_ENDED,
    creations,
    make_integration,
    make_team,
    runs_ended,
)

T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def github() -> Iterator[GitHubSandbox]:
    with GitHubSandbox(token="sandbox-token") as sandbox:
        for n in range(45):
            sandbox.add_issue("acme/web", f"Issue {n}", updated_at=T0 + timedelta(minutes=n))
        yield sandbox  # type: ignore[misc]


def github_config(sandbox: GitHubSandbox) -> dict[str, object]:
    return {
        "token": "sandbox-token",
        "base_url": sandbox.url,
        "repos": ["acme/web"],
        "per_page": 20,
    }


async def wait_for(pool: asyncpg.Pool, sql: str, predicate, within: float, *args: object) -> object:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    value = None
    while time.monotonic() < deadline:
        value = await pool.fetchval(sql, *args)
        if predicate(value):
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {within}s; last value {value!r} for {sql}")


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 30) -> str:
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise
    return err


async def test_daemon_follows_inserts_pauses_and_stops_on_sigterm(db_url, pool, github) -> None:
    proc = start_cli("run", env=cli_env(db_url, C9_SYNC_RECONCILE_SECONDS="30"))
    try:
        team = await make_team(pool, "Alpha")
        await asyncio.sleep(1.0)  # the daemon is up and listening before the insert
        inserted = time.monotonic()
        integration = await make_integration(
            pool, team, "github", github_config(github), interval=5
        )
        await wait_for(pool, "SELECT count(*) FROM work_items", lambda n: n == 45, 10)
        assert time.monotonic() - inserted < 5, "an inserted row is synced within 5 s"
        # It runs again on its interval (changing nothing: counted in the sync state)…
        await wait_for(pool, RUNS_ENDED, lambda n: n >= 2, 12, ENDED_AS)
        # …until paused: no run starts (the state holds the last one's id).
        await pool.execute("UPDATE integrations SET is_active = false WHERE id = $1", integration)
        await asyncio.sleep(1.0)
        last_run = "SELECT last_run_id FROM integration_sync_state"
        runs, last = await runs_ended(pool), await pool.fetchval(last_run)
        await asyncio.sleep(7)
        assert (await runs_ended(pool), await pool.fetchval(last_run)) == (runs, last)
    finally:
        err = stop(proc)
    assert proc.returncode == 0, err[-2000:]
    assert '"worker_stopped"' in err


async def test_sigterm_during_a_slow_run_exits_0_after_the_page_commits(
    db_url, pool, github
) -> None:
    team = await make_team(pool, "Alpha")
    await make_integration(pool, team, "github", github_config(github), interval=300)
    github.response_delay = 1.0
    proc = start_cli("run", env=cli_env(db_url, C9_SYNC_GRACE_SECONDS="20"))
    try:
        await wait_for(  # the run has started (its sync_started row waits for its first page)
            pool,
            "SELECT count(*) FROM integration_sync_state WHERE last_run_id IS NOT NULL",
            lambda n: n == 1,
            15,
        )
        await asyncio.sleep(0.5)  # mid-page: the first issues request is in flight
    finally:
        err = stop(proc)
    assert proc.returncode == 0, err[-2000:]
    committed = await pool.fetchval("SELECT count(*) FROM work_items")
    assert committed in (20, 40), "only whole pages are committed"
    [interrupted] = await pool.fetch(
        "SELECT metadata FROM activity_logs WHERE event_type = 'sync_interrupted'"
    )
    assert interrupted["metadata"]["pages"] * 20 == committed
    cursor = await pool.fetchval("SELECT cursor FROM integration_sync_state")
    assert cursor, "the cursor of the committed page is saved"


async def test_config_edit_takes_effect_without_restart(db_url, pool, github) -> None:
    team = await make_team(pool, "Alpha")
    config = github_config(github)
    integration = await make_integration(
        pool, team, "github", {**config, "token": "wrong"}, interval=300
    )
    proc = start_cli("run", env=cli_env(db_url))
    try:
        await wait_for(
            pool,
            "SELECT count(*) FROM activity_logs WHERE event_type = 'sync_failed'",
            lambda n: n == 1,
            15,
        )
        await pool.execute("UPDATE integrations SET config = $2 WHERE id = $1", integration, config)
        await wait_for(pool, "SELECT count(*) FROM work_items", lambda n: n == 45, 5)
        await pool.execute("DELETE FROM integrations WHERE id = $1", integration)
        await asyncio.sleep(1)
    finally:
        err = stop(proc)
    assert proc.returncode == 0
    assert any(
        json.loads(line).get("event") == "job_removed"
        for line in err.splitlines()
        if line.startswith("{")
    )
    assert "wrong" not in await pool.fetchval(
        "SELECT string_agg(message || metadata::text, ' ') FROM activity_logs"
    )


async def test_two_sync_processes_at_once_one_runs_one_skips(db_url, pool, github) -> None:
    team = await make_team(pool, "Alpha")
    await make_integration(pool, team, "github", github_config(github), interval=300)
    github.response_delay = 0.3
    env = cli_env(db_url)
    procs = [start_cli("sync", env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 0], outputs
    text = " ".join(out for out, _ in outputs)
    assert text.count(": ok ") == 1 and text.count("skipped") == 1, text
    created = await creations(pool)
    assert len(created) == 45 and set(created.values()) == {1}
    assert (
        await pool.fetchval("SELECT count(*) FROM activity_logs WHERE event_type = 'sync_started'")
        == 1
    )


async def test_sync_exit_code_and_summary(db_url, pool, github) -> None:
    alpha, beta = await make_team(pool, "Alpha"), await make_team(pool, "Beta")
    await make_integration(pool, alpha, "github", github_config(github))
    await make_integration(pool, beta, "github", {**github_config(github), "token": "bad-token"})
    env = cli_env(db_url)
    result = run_cli("sync", env=env)
    assert result.returncode == 1
    assert "Alpha/github: ok created=45" in result.stdout
    assert "Beta/github: FAILED FatalError" in result.stdout
    # Incremental: only the 5-minute overlap before the cursor is read again (6 issues), no-ops.
    only_alpha = run_cli("sync", "--team", "Alpha", "--force", env=env)
    assert only_alpha.returncode == 0 and "created=0 updated=0 unchanged=6 " in only_alpha.stdout
    assert "Beta" not in only_alpha.stdout
    full = run_cli("sync", "--team", "Alpha", "--full", env=env)
    assert full.returncode == 0 and "created=0 updated=0 unchanged=45 " in full.stdout
    unknown = run_cli("sync", "--integration", str(uuid.uuid4()), env=env)
    assert unknown.returncode == 2 and "no active integration" in unknown.stderr
    bad_id = run_cli("sync", "--integration", "nope", env=env)
    assert bad_id.returncode == 2 and "UUID" in bad_id.stderr


async def test_daemon_survives_lost_database_connections(db_url, pool, github) -> None:
    """Every connection of the worker is killed (a database restart or failover): the listener
    reconnects and the next admin edit is still picked up; the daemon keeps running."""
    proc = start_cli("run", env=cli_env(db_url, C9_SYNC_RECONCILE_SECONDS="30"))
    try:
        team = await make_team(pool, "Alpha")
        # (the daemon is a new process: on a loaded machine it takes a while to connect)
        await wait_for(
            pool,
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database()"
            "   AND starts_with(application_name, 'c9-sync replica ')",  # (its LISTEN connection)
            lambda n: n >= 1,
            60,
        )
        killed = await pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert killed >= 1
        await asyncio.sleep(2.5)  # the listener notices and reconnects
        await make_integration(pool, team, "github", github_config(github), interval=300)
        await wait_for(pool, "SELECT count(*) FROM work_items", lambda n: n == 45, 10)
        assert proc.poll() is None, "the daemon must still be running"
    finally:
        err = stop(proc)
    assert proc.returncode == 0, err[-2000:]
    assert '"listener_lost"' in err


async def test_sync_now_runs_at_once_and_only_once_across_two_workers(db_url, pool, github) -> None:
    team = await make_team(pool, "Alpha")
    await make_integration(pool, team, "github", github_config(github), interval=300)
    env = cli_env(db_url)
    workers = [start_cli("run", env=env) for _ in range(2)]
    try:
        await wait_for(
            pool,
            "SELECT count(*) FROM activity_logs WHERE event_type = 'sync_completed'",
            lambda n: n == 1,
            15,
        )
        await asyncio.sleep(1)  # both workers have their job; the next tick is 300 s away
        result = run_cli("integrations", "sync-now", "Alpha/github", env=env)
        assert result.returncode == 0, result.stderr
        # (a second run that changes nothing writes no row: runs_ended counts it all the same)
        await wait_for(pool, RUNS_ENDED, lambda n: n == 2, 5, ENDED_AS)
        await asyncio.sleep(2)  # the other worker heard it too, and must have skipped
        assert await runs_ended(pool) == 2
    finally:
        errs = [stop(w) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], errs
    assert sum('"sync_now_requested"' in e for e in errs) == 2


class Forwarder:
    """A TCP port that forwards to the test PostgreSQL (TCP or its unix socket), opened on
    demand: until `open()`, connecting to it is refused, as to a database that is down."""

    def __init__(self, db_url: str) -> None:
        parts = urlsplit(db_url)
        socket_dir = parse_qs(parts.query).get("host", [None])[0]
        if socket_dir:
            self._target: tuple[str, int] | str = f"{socket_dir}/.s.PGSQL.{parts.port or 5432}"
        else:
            self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        with socket.socket() as probe:  # a free port for later
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = urlunsplit(
            parts._replace(
                netloc=f"{parts.username or 'postgres'}:{parts.password or ''}@127.0.0.1:{self.port}",
                query="",
            )
        )
        self._server: asyncio.Server | None = None

    async def open(self) -> None:
        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if isinstance(self._target, str):
                up_reader, up_writer = await asyncio.open_unix_connection(self._target)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self._target)
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        self._server = await asyncio.start_server(handle, "127.0.0.1", self.port)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


async def test_daemon_waits_for_a_database_that_is_down_at_start(db_url, pool, github) -> None:
    forwarder = Forwarder(db_url)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        http_port = probe.getsockname()[1]
    env = cli_env(forwarder.url, C9_SYNC_HTTP_PORT=str(http_port), C9_SYNC_RECONCILE_SECONDS="30")
    team = await make_team(pool, "Alpha")
    await make_integration(pool, team, "github", github_config(github), interval=60)
    proc = start_cli("run", env=env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as client:

            async def get(path: str) -> httpx.Response | None:
                try:
                    return await client.get(path, timeout=2)
                except httpx.TransportError:
                    return None

            answer = None
            for _ in range(75):  # the HTTP endpoint comes up within seconds
                answer = await get("/readyz")
                if answer is not None:
                    break
                await asyncio.sleep(0.2)
            # Up, alive, not ready, and still waiting rather than exiting.
            assert answer is not None and answer.status_code == 503
            assert "not connected" in answer.text
            assert (await get("/healthz")).status_code == 200  # type: ignore[union-attr]
            await asyncio.sleep(2.5)
            assert proc.poll() is None
            await forwarder.open()  # the database comes up
            await wait_for(pool, "SELECT count(*) FROM work_items", lambda n: n == 45, 40)
            ready = await get("/readyz")
            assert ready is not None and ready.status_code == 200
        err = await asyncio.to_thread(stop, proc)  # the forwarder runs on this loop meanwhile
        assert proc.returncode == 0, err
        assert '"database_unavailable"' in err and '"worker_started"' in err
    finally:
        forwarder.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


async def test_sigterm_with_10000_runs_queued_starts_none_and_exits_within_the_grace(
    db_url, pool, github
) -> None:
    """10,000 integrations due at once against a tracker that answers after 3 s: 24 runs
    (C9_SYNC_MAX_PER_TRACKER's default) wait on it, the rest queue. On SIGTERM no queued run
    starts, dropping them is no error, and the process is gone within the grace + 1 s."""
    team = await make_team(pool, "Alpha")
    await pool.execute(
        "INSERT INTO integrations (team_id, type, name, config, sync_interval)"
        " SELECT $1, 'github', 'gh' || n, $2::jsonb, 300 FROM generate_series(1, 10000) n",
        team,
        github_config(github),
    )
    # All due at once, 40 s from now: after the daemon has scheduled them (already due at its
    # start, their first ticks would be spread over the interval).
    await pool.execute(
        "INSERT INTO integration_sync_state (integration_id, last_started_at, last_success_at)"
        " SELECT id, now() - interval '260 s', now() - interval '260 s' FROM integrations"
    )
    due = time.monotonic() + 40
    github.response_delay = 3.0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        http_port = probe.getsockname()[1]
    grace = 2.0
    env = cli_env(
        db_url,
        C9_SYNC_GRACE_SECONDS=str(grace),
        C9_SYNC_HTTP_PORT=str(http_port),
    )
    proc = start_cli("run", env=env)
    try:
        # runs started: each records its id in the state (its sync_started row waits for the
        # first page, 3 s away)
        started = "SELECT count(*) FROM integration_sync_state WHERE last_run_id IS NOT NULL"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as client:

            async def gauge(name: str) -> float:
                try:
                    page = await client.get("/metrics", timeout=10)
                except httpx.TransportError:
                    return -1.0
                return sum(
                    float(line.split()[-1])
                    for line in page.text.splitlines()
                    if line.startswith(name + " ")
                )

            while await gauge("c9_sync_scheduled_integrations") != 10_000:
                assert time.monotonic() < due - 5, "the daemon did not schedule them in time"
                await asyncio.sleep(0.5)
            await wait_for(pool, started, lambda n: n == 24, 90)
            while await gauge("c9_sync_queued_runs") < 10_000 - 24:
                assert time.monotonic() < due + 30, "not every run was queued"
                await asyncio.sleep(0.2)
        before = await pool.fetchval(started)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(proc.communicate, timeout=30)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert took <= grace + 1.0, (
        f"exited {took:.2f}s after SIGTERM with a {grace}s grace" + err[-6000:]
    )
    assert await pool.fetchval(started) == before == 24, "no queued run started"
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert not [r for r in lines if r.get("level") in ("error", "critical")], err[-2000:]
    assert "Traceback" not in err
    dropped = [r["count"] for r in lines if r.get("event") == "queued_runs_dropped"]
    assert dropped == [10_000 - 24], "the queued runs are dropped, in one line"

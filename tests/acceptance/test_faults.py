"""Faults across processes: replicas killed mid-run, PostgreSQL restarted mid-run.

Every `c9-sync run` here is a real subprocess syncing the GitHub sandbox through the real SDK, and
every assertion is on what an operator or a dashboard sees: `activity_logs`,
`integration_sync_state`, `work_items`, `c9-sync status --json`, `/readyz` and the daemons' logs.
Waits poll with deadlines; fixed sleeps only pace the faults.

Runs are read from the daemons' logs: every run logs `sync_started` and its end, with its run_id,
while a run that changed nothing writes no activity row (worker/runlog.py). The rows the runs did
write are checked against the logs (`assert_rows_match`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from connectors.sandbox.github import GitHubSandbox
from tests.acceptance.cli import C9_SYNC, cli_env, run_cli
from tests.helpers import creations, make_integration, make_team
from worker import db, migrate
from worker.sync import TICK_SERVED_WITHIN

T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)
END_EVENTS = ("sync_completed", "sync_failed", "sync_interrupted")
INTERVAL = 5  # seconds: every integration here, the schema's minimum


# ---------------------------------------------------------------------------------------------
# Daemons as subprocesses, each process with a log file of its own
# ---------------------------------------------------------------------------------------------
@dataclass
class Incarnation:
    """One `c9-sync run` process: its log, and when it was killed (database clock), if it was."""

    proc: subprocess.Popen[bytes]
    log: Path
    killed_at: datetime | None = None

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):  # the last line of a killed process
                    out.append(json.loads(line))
        return out

    def run_ids(self, *events: str) -> set[str]:
        return {e["run_id"] for e in self.events() if e.get("event") in events and "run_id" in e}

    def in_flight(self) -> set[str]:
        """Runs this process has started and not ended, as far as its log says."""
        return self.run_ids("sync_started") - self.run_ids(*END_EVENTS)


@dataclass
class Daemon:
    """One replica: a process at a time, started again after a kill."""

    name: str
    env: dict[str, str]
    logdir: Path
    incarnations: list[Incarnation] = field(default_factory=list)

    @property
    def current(self) -> Incarnation:
        return self.incarnations[-1]

    def start(self) -> None:
        log = self.logdir / f"{self.name}-{len(self.incarnations)}.log"
        # A file, not a pipe: nothing reads while the test runs, and a full pipe blocks the child.
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [C9_SYNC, "run"], env=self.env, stdout=subprocess.DEVNULL, stderr=sink
            )
        self.incarnations.append(Incarnation(proc, log))

    async def kill(self, clock: asyncpg.Pool) -> None:
        # Read before the signal: no other replica can take its locks before it is dead.
        self.current.killed_at = await clock.fetchval("SELECT clock_timestamp()")
        self.current.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self.current.proc.wait, 10)

    def terminate(self) -> None:
        self.current.proc.send_signal(signal.SIGTERM)

    async def exit_code(self, within: float) -> int:
        return await asyncio.to_thread(self.current.proc.wait, within)

    def kill_leftovers(self) -> None:
        for inc in self.incarnations:
            if inc.proc.poll() is None:
                inc.proc.kill()
                inc.proc.wait()


async def mid_run(daemons: list[Daemon], k: int) -> Daemon:
    """The k-th replica in turn when it has a run in progress within a few seconds, else the
    first other one that has: every replica ticks an integration at the same instants and the
    first to take its lock runs it, so for a few seconds one replica may win no race."""
    turn = daemons[k % len(daemons)]
    with contextlib.suppress(AssertionError):
        await poll(f"a run in progress on {turn.name}", turn.current.in_flight, 3, 0.02)
        return turn
    return await poll(
        "a run in progress on any replica",
        lambda: next((d for d in daemons if d.current.in_flight()), None),
        10,
        0.02,
    )


async def poll(what: str, check: Callable[[], Any], within: float, every: float = 0.1) -> Any:
    """Call `check()` (awaiting it if need be) until it returns something truthy; fail after
    `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}; last: {value!r}")
        await asyncio.sleep(every)


# ---------------------------------------------------------------------------------------------
# Runs, as the daemons' logs record them
# ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    run_id: str
    integration_id: uuid.UUID
    started: datetime
    ended: datetime | None = None
    outcome: str | None = None  # its end event, or "killed"


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["ts"])


def runs_by_integration(incarnations: list[Incarnation]) -> dict[uuid.UUID, list[Run]]:
    """Every run from its `sync_started` log line and its end line (if any), by integration, in
    order of start. A run starts at the time its state recorded (`started_at`, the database's
    clock, which the due-check measures from) and ends at its end line's time (the host's clock,
    the database's here: one host). It logs its end before it releases the integration's lock,
    and the next run records its start after it took the lock, so two runs of one integration
    at once would overlap here."""
    runs: dict[str, Run] = {}
    for inc in incarnations:
        for e in inc.events():
            if e.get("event") == "sync_started":
                assert e["run_id"] not in runs, f"run {e['run_id']} started twice"
                started = datetime.fromisoformat(e["started_at"])
                runs[e["run_id"]] = Run(e["run_id"], uuid.UUID(e["integration_id"]), started)
            elif e.get("event") in END_EVENTS and "run_id" in e:
                run = runs[e["run_id"]]
                assert run.ended is None, f"run {run.run_id} ended twice"
                run.ended, run.outcome = _at(e), e["event"]
    out: dict[uuid.UUID, list[Run]] = defaultdict(list)
    for run in sorted(runs.values(), key=lambda run: run.started):
        out[run.integration_id].append(run)
    return out


async def assert_rows_match(
    conn: asyncpg.Pool | asyncpg.Connection, runs: dict[uuid.UUID, list[Run]]
) -> int:
    """The run rows in activity_logs belong to logged runs of their integration and agree with
    the logs: each run's start row once, at the start its line says; its end row once, the end
    its line says. Returns how many runs wrote rows."""
    by_id = {run.run_id: run for of_one in runs.values() for run in of_one}
    rows = await conn.fetch(
        "SELECT event_type, metadata, created_at FROM activity_logs"
        " WHERE event_type = ANY($1::text[])",
        ["sync_started", *END_EVENTS],
    )
    seen: Counter[tuple[str, str]] = Counter()
    for r in rows:
        meta = r["metadata"]
        run = by_id.get(meta["run_id"])
        assert run is not None, f"a {r['event_type']} row of a run no log started: {meta}"
        assert str(run.integration_id) == meta["integration_id"]
        kind = "start" if r["event_type"] == "sync_started" else "end"
        seen[(run.run_id, kind)] += 1
        if kind == "start":  # dated at the start the run recorded, as its log line says
            assert r["created_at"] == run.started, (run, r["created_at"])
        if kind == "end" and run.outcome is not None:  # (killed after its row, before its line)
            assert r["event_type"] == run.outcome, (run, r["event_type"])
    assert not [key for key, n in seen.items() if n > 1], "a run with two start or end rows"
    return len({run_id for run_id, _ in seen})


def sandbox_items(sandbox: GitHubSandbox) -> dict[str, tuple[str, str]]:
    """What the sandbox holds, as the connector maps it: external_id -> (external_key, title)."""
    prefix = f"127.0.0.1:{sandbox.port}/"
    return {
        f"{prefix}{i.id}": (f"{i.repo}#{i.number}", i.title)
        for issues in sandbox.issues.values()
        for i in issues
    }


async def assert_stored_once(
    conn: asyncpg.Pool | asyncpg.Connection, sandbox: GitHubSandbox
) -> int:
    """`work_items` is the sandbox: every issue one row, its latest title, created once."""
    upstream = sandbox_items(sandbox)
    rows = await conn.fetch(
        "SELECT external_id, external_key, title, removed_upstream_at FROM work_items"
    )
    stored = {r["external_id"]: (r["external_key"], r["title"]) for r in rows}
    assert len(rows) == len(stored) == len(upstream)
    assert stored == upstream
    assert all(r["removed_upstream_at"] is None for r in rows)
    assert await creations(conn) == dict.fromkeys(upstream, 1)
    return len(rows)


# ---------------------------------------------------------------------------------------------
# 1. Three replicas, fifty integrations, one replica killed at a time
# ---------------------------------------------------------------------------------------------
N_INTEGRATIONS = 50
ISSUES_PER_REPO = 3
KILLS_AT = (5.0, 13.0, 21.0)  # seconds into the faults; each victim restarts a second later
EDITS_FOR = 24.0  # seconds of upstream edits, from the start of the faults
#: How late after its tick a start may come. Without jitter, a replica's ticks for all fifty
#: integrations fall at one instant and it works through them four at a time (about a second
#: on these two cores), so a start lags its tick by up to one such burst; and the due-check
#: measures the interval from the previous start, which may have come early in its own burst, so
#: a tick that comes too soon after it is skipped. Two intervals are one tick missed; beyond
#: two intervals and this slack, a second one was.
GAP_SLACK = 3.0


@pytest.fixture
def fifty_repos() -> Iterator[GitHubSandbox]:
    with GitHubSandbox(token="sandbox-token") as sandbox:
        for r in range(N_INTEGRATIONS):
            for n in range(ISSUES_PER_REPO):
                sandbox.add_issue(
                    f"acme/repo-{r:02}", f"Issue {n}", updated_at=T0 + timedelta(minutes=n)
                )
        yield sandbox  # type: ignore[misc]


async def edit_upstream(sandbox: GitHubSandbox, stop: asyncio.Event) -> int:
    """The trackers keep changing while replicas die: every 0.4 s a new issue in one repository
    and a new title for an issue of another. Returns the number of changes."""
    rng = random.Random(7)
    edits = 0
    while not stop.is_set():
        now = datetime.now(UTC)
        sandbox.add_issue(f"acme/repo-{rng.randrange(N_INTEGRATIONS):02}", "New", updated_at=now)
        victim = rng.choice(sandbox.issues[f"acme/repo-{rng.randrange(N_INTEGRATIONS):02}"])
        sandbox.update(victim.id, at=now, title=f"{victim.title} (edit {edits})")
        edits += 2
        await asyncio.sleep(0.4)
    return edits


async def test_three_replicas_fifty_integrations_one_killed_at_a_time(
    db_url, pool, fifty_repos, tmp_path
) -> None:
    sandbox = fifty_repos
    sandbox.response_delay = 0.05  # a run takes a little while: kills land mid-run
    repo_of: dict[uuid.UUID, str] = {}
    for r in range(N_INTEGRATIONS):
        team = await make_team(pool, f"Team {r:02}")
        repo = f"acme/repo-{r:02}"
        config = {"token": "sandbox-token", "base_url": sandbox.url, "repos": [repo]}
        repo_of[await make_integration(pool, team, "github", config, interval=INTERVAL)] = repo
    env = cli_env(
        db_url,
        C9_SYNC_JITTER_SECONDS="0",
        C9_SYNC_RECONCILE_SECONDS="30",
        C9_SYNC_GRACE_SECONDS="10",
    )
    daemons = [Daemon(f"d{i}", env, tmp_path) for i in range(3)]
    stop_edits = asyncio.Event()
    editor: asyncio.Task[int] | None = None

    def integrations_completed_since(since: datetime | None) -> bool:
        runs = runs_by_integration([inc for d in daemons for inc in d.incarnations])
        completed = {
            integration_id
            for integration_id, of_one in runs.items()
            if any(
                run.outcome == "sync_completed" and (since is None or run.started > since)
                for run in of_one
            )
        }
        return len(completed) == N_INTEGRATIONS

    try:
        for d in daemons:
            d.start()
        await poll("every integration's first run", lambda: integrations_completed_since(None), 30)
        editor = asyncio.create_task(edit_upstream(sandbox, stop_edits))
        faults_from = time.monotonic()
        for k, at in enumerate(KILLS_AT):
            await asyncio.sleep(max(0.0, faults_from + at - time.monotonic()))
            victim = await mid_run(daemons, k)
            await victim.kill(pool)
            await asyncio.sleep(1.0)  # the others carry on alone for a moment
            victim.start()
        await asyncio.sleep(max(0.0, faults_from + EDITS_FOR - time.monotonic()))
        stop_edits.set()
        edits = await editor
        edits_done: datetime = await pool.fetchval("SELECT clock_timestamp()")
        # Every integration has read the trackers since their last change, then SIGTERM.
        await poll(
            "a completed run of every integration after the last edit",
            lambda: integrations_completed_since(edits_done),
            2 * INTERVAL + GAP_SLACK + 10,
        )
        stopped_at: datetime = await pool.fetchval("SELECT clock_timestamp()")
        for d in daemons:
            d.terminate()
        codes = [await d.exit_code(within=30) for d in daemons]
    finally:
        stop_edits.set()
        if editor is not None and not editor.done():
            await editor
        for d in daemons:
            d.kill_leftovers()
    incarnations = [inc for d in daemons for inc in d.incarnations]
    assert codes == [0, 0, 0], {inc.log.name: inc.log.read_text()[-3000:] for inc in incarnations}
    errors = [e for inc in incarnations for e in inc.events() if e["level"] == "error"]
    assert not errors, errors[:3]
    # the replicas share the work: each one ran integrations
    assert all(inc.run_ids("sync_started") for d in daemons for inc in d.incarnations[:1])

    # -- every run ended, or died with its process --------------------------------------------
    by_integration = runs_by_integration(incarnations)
    assert set(by_integration) == set(repo_of)
    wrote_rows = await assert_rows_match(pool, by_integration)
    all_runs = [run for runs in by_integration.values() for run in runs]
    assert not [run for run in all_runs if run.outcome == "sync_failed"]
    killed = sorted(
        ((inc.killed_at, inc.run_ids("sync_started")) for inc in incarnations if inc.killed_at),
        key=lambda kill: kill[0],
    )
    assert len(killed) == len(KILLS_AT)
    started_by_survivors = set().union(
        *(inc.run_ids("sync_started") for inc in incarnations if inc.killed_at is None)
    )
    killed_runs = 0
    for run in all_runs:
        if run.ended is not None:
            continue
        # A start with no end died with a killed process: a live one always writes the end
        # (completed, failed, or interrupted by SIGTERM).
        assert run.run_id not in started_by_survivors, f"run {run.run_id} lost its end row"
        kill_times = [at for at, started in killed if run.run_id in started]
        assert kill_times, f"run {run.run_id} has no end, and no kill came after its start"
        # Its end is the kill; one started in the milliseconds between reading the clock and
        # the signal ends where it started.
        run.ended, run.outcome = max(run.started, kill_times[0]), "killed"
        killed_runs += 1
    assert killed_runs >= len(KILLS_AT), "each kill cut at least one run"

    # -- one run at a time, on its interval, no tick missed twice ---------------------------------
    # At most one replica is down at any moment, so every gap is measured with two alive.
    limit = 2 * INTERVAL + GAP_SLACK
    gaps: list[float] = []
    for integration_id, runs in by_integration.items():
        for prev, run in itertools.pairwise(runs):
            assert prev.ended is not None
            assert run.started >= prev.ended, f"{integration_id}: {prev} overlaps {run}"
            gap = (run.started - prev.started).total_seconds()
            gaps.append(gap)
            if prev.outcome != "killed":
                # A killed run is retried by a live replica at its next tick (the due-check
                # measures from the last success). Any other start serves its own tick: a run
                # that started late does not take the next tick, due on time, from it (so two
                # starts may be less than an interval apart), and a tick is served already by a
                # run started less than half an interval before it (sync.TICK_SERVED_WITHIN).
                assert gap >= TICK_SERVED_WITHIN * INTERVAL, (
                    f"{integration_id}: started again after {gap}s"
                )
            assert gap <= limit, f"{integration_id}: {gap:.1f}s between starts"
        tail = (stopped_at - runs[-1].started).total_seconds()
        assert tail <= limit, f"{integration_id}: no start in the last {tail:.1f}s"

    # -- the state rows say the same -------------------------------------------------------------
    for s in await pool.fetch(
        "SELECT integration_id, last_run_id, last_started_at FROM integration_sync_state"
    ):
        last = by_integration[s["integration_id"]][-1]
        assert (str(s["last_run_id"]), s["last_started_at"]) == (last.run_id, last.started)

    # -- nothing lost, nothing duplicated, each item with its own integration --------------------
    items = await assert_stored_once(pool, sandbox)
    for r in await pool.fetch("SELECT external_key, integration_id FROM work_items"):
        assert r["external_key"].split("#")[0] == repo_of[r["integration_id"]]

    # -- c9-sync status tells the truth ------------------------------------------------------------
    status = await asyncio.to_thread(run_cli, "status", "--json", env=cli_env(db_url))
    health = {uuid.UUID(h["id"]): h for h in json.loads(status.stdout)}
    assert set(health) == set(repo_of)
    for integration_id, h in health.items():
        # What its last run says: completed -> ok; cut by the SIGTERM after its page -> interrupted.
        last = by_integration[integration_id][-1]
        expected = {"sync_completed": "ok", "sync_interrupted": "interrupted"}[last.outcome or ""]
        assert (h["state"], h["running_for_s"], h["consecutive_failures"]) == (expected, None, 0)
    assert status.returncode == 0, status.stdout

    print(
        f"\nruns={len(all_runs)} with_rows={wrote_rows} killed_runs={killed_runs}"
        f" kills={len(killed)}"
        f" processes={len(incarnations)} upstream_edits={edits} items={items}"
        f" gaps: min={min(gaps):.2f}s max={max(gaps):.2f}s limit={limit}s"
        f" over_1.5x={sum(g > 1.5 * INTERVAL for g in gaps)}"
        f" status={dict(Counter(h['state'] for h in health.values()))}"
    )


# ---------------------------------------------------------------------------------------------
# 2. PostgreSQL restarted under a running daemon
# ---------------------------------------------------------------------------------------------
@dataclass
class OwnPostgres:
    """An embedded PostgreSQL for one test alone, to stop and start under a daemon."""

    pgdata: Path
    url: str

    def pg_ctl(self, *args: str) -> None:
        spec = importlib.util.find_spec("pgserver")
        assert spec is not None and spec.submodule_search_locations
        binary = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / "pg_ctl"
        # As root, pgserver runs the server as its `pgserver` user; pg_ctl must be that user too.
        user = "pgserver" if os.geteuid() == 0 else None
        with tempfile.TemporaryFile() as out:  # not a pipe: a server it starts inherits it
            done = subprocess.run(
                [str(binary), "-D", str(self.pgdata), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                user=user,
                timeout=60,
                check=False,
            )
            out.seek(0)
            assert done.returncode == 0, out.read().decode(errors="replace")

    # A restart in two steps (what `pg_ctl restart` does): its own `restart` is down for a
    # fraction of a second, too short to see `/readyz` answer 503 without racing it.
    def stop(self, mode: str) -> None:
        self.pg_ctl("-w", "-m", mode, "stop")

    def start(self) -> None:
        """With the options pgserver starts it with (`restart` would reuse them from
        postmaster.opts): no TCP, the same socket directory, the same log."""
        socket_dir = parse_qs(urlsplit(self.url).query)["host"][0]
        self.pg_ctl(
            "-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(self.pgdata / "log"), "start"
        )


@pytest.fixture
async def own_postgres() -> AsyncIterator[OwnPostgres]:
    # Not under pytest's tmp_path, which the `pgserver` user cannot traverse (see conftest).
    home = Path(tempfile.mkdtemp(prefix="c9-sync-test-own-pg-"))
    try:
        with db.embedded_postgres(home / "pgdata") as url:
            own = OwnPostgres(home / "pgdata", url)
            try:
                conn = await db.connect(url)
                try:
                    await migrate.apply(conn, ("core",))
                finally:
                    await conn.close()
                yield own
            finally:
                # pgserver stops the server process it started; one started again is ours to stop.
                with contextlib.suppress(AssertionError):
                    own.pg_ctl("-w", "-m", "fast", "stop")
    finally:
        shutil.rmtree(home, ignore_errors=True)


SLOW_REPOS = 4  # all synced at once (fewer than C9_SYNC_MAX_CONCURRENCY)
SLOW_ISSUES = 40
PER_PAGE = 10


@pytest.fixture
def slow_repos() -> Iterator[GitHubSandbox]:
    with GitHubSandbox(token="sandbox-token") as sandbox:
        for r in range(SLOW_REPOS):
            for n in range(SLOW_ISSUES):
                sandbox.add_issue(
                    f"acme/slow-{r}", f"Issue {n}", updated_at=T0 + timedelta(minutes=n)
                )
        sandbox.response_delay = 0.3  # a first run reads four pages in about 1.5 s
        yield sandbox  # type: ignore[misc]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """One query on a connection of its own: a pool would keep connections the restart kills."""
    conn = await db.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


#: What PostgreSQL logs when it starts after each kind of stop.
RECOVERY = {
    "fast": "database system was shut down at",
    "immediate": "database system was not properly shut down; automatic recovery in progress",
}


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_postgres_restarted_mid_run(own_postgres, slow_repos, tmp_path, mode) -> None:
    pg, sandbox = own_postgres, slow_repos
    conn = await db.connect(pg.url)
    try:
        for r in range(SLOW_REPOS):
            team = await make_team(conn, f"Team {r}")
            config = {
                "token": "sandbox-token",
                "base_url": sandbox.url,
                "repos": [f"acme/slow-{r}"],
                "per_page": PER_PAGE,
            }
            await make_integration(conn, team, "github", config, interval=INTERVAL)
    finally:
        await conn.close()
    http_port = free_port()
    env = cli_env(
        pg.url,
        C9_SYNC_HTTP_PORT=str(http_port),
        C9_SYNC_JITTER_SECONDS="0",
        C9_SYNC_RECONCILE_SECONDS="30",
    )
    daemon = Daemon("d", env, tmp_path)

    def database_failures() -> list[dict[str, Any]]:
        return [e for e in daemon.current.events() if e.get("event") == "run_failed_database"]

    def completed_twice_since(since: datetime) -> bool:
        runs = runs_by_integration(daemon.incarnations)
        done = [
            sum(run.outcome == "sync_completed" and run.started > since for run in of_one)
            for of_one in runs.values()
        ]
        return len(done) == SLOW_REPOS and all(n >= 2 for n in done)

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=5) as client:

        async def readyz_is(status: int) -> bool:
            try:
                return (await client.get("/readyz")).status_code == status
            except httpx.TransportError:
                return False

        try:
            daemon.start()
            await poll("/readyz 200 at start", lambda: readyz_is(200), 20)
            # Mid-run: some integration has some of its pages committed, not all.
            partial = await poll(
                "a run half-way",
                lambda: fetch(
                    pg.url,
                    "SELECT integration_id FROM work_items GROUP BY 1"
                    " HAVING count(*) BETWEEN 1 AND $1",
                    SLOW_ISSUES - 1,
                ),
                20,
                every=0.05,
            )
            [before] = await fetch(pg.url, "SELECT pg_postmaster_start_time() AS t")
            await asyncio.to_thread(pg.stop, mode)
            down_from = time.monotonic()
            in_flight = daemon.current.in_flight()  # no run starts or ends while it is down

            # Down: alive (/healthz), not ready (/readyz 503 naming the database), running.
            await poll("/readyz 503 while down", lambda: readyz_is(503), 10)
            assert "database" in (await client.get("/readyz")).text
            assert (await client.get("/healthz")).status_code == 200
            # Each cut run is reported, and so is one a tick started while it was down.
            await poll(
                "the cut runs and a tick while down reported",
                lambda: len(database_failures()) > len(in_flight),
                3 * INTERVAL,
            )
            assert daemon.current.proc.poll() is None, "the daemon outlives its database"
            await asyncio.to_thread(pg.start)
            down_for = time.monotonic() - down_from
            [back] = await fetch(
                pg.url, "SELECT clock_timestamp() AS t, pg_postmaster_start_time() AS s"
            )
            assert back["s"] > before["t"], "a new server"
            # Its log says how it went down: a clean shutdown, or recovery after a crash.
            server_log = (pg.pgdata / "log").read_text(errors="replace")
            assert RECOVERY[mode] in server_log.rsplit("database system is ready", 2)[-2]
            await poll("/readyz 200 after the restart", lambda: readyz_is(200), 15)
            ready_after = time.monotonic() - down_from - down_for
            # It resumes: two completed runs of each integration after the restart (the one
            # that finishes the cut run's work, then one on the interval).
            await poll(
                "two completed runs of each integration after the restart",
                lambda: completed_twice_since(back["t"]),
                6 * INTERVAL,
            )
            await poll(
                "the LISTEN connection back",
                lambda: sum(e.get("event") == "listening" for e in daemon.current.events()) >= 2,
                20,
            )
            assert daemon.current.proc.poll() is None
            daemon.terminate()
            code = await daemon.exit_code(within=30)
        finally:
            daemon.kill_leftovers()
    events = daemon.current.events()
    assert code == 0, daemon.current.log.read_text()[-3000:]
    unexpected = [
        e for e in events if e["level"] == "error" and e["event"] != "run_failed_database"
    ]
    assert not unexpected, [e.get("exception", e) for e in unexpected[:2]]

    # Every issue stored exactly once, and created once.
    conn = await db.connect(pg.url)
    try:
        items = await assert_stored_once(conn, sandbox)
        runs = runs_by_integration(daemon.incarnations)
        await assert_rows_match(conn, runs)
        failures = await conn.fetch("SELECT consecutive_failures FROM integration_sync_state")
    finally:
        await conn.close()
    # The restart cut the runs in progress: a start, no end, and a run_failed_database line.
    cut = [run for of_one in runs.values() for run in of_one if run.ended is None]
    assert cut and {run.run_id for run in cut} <= in_flight
    assert {r["integration_id"] for r in partial} <= {run.integration_id for run in cut}
    reported = {e["integration_id"] for e in database_failures()}
    assert {str(run.integration_id) for run in cut} <= reported
    # Each names what happened to the database, not asyncpg's note about its detached proxy.
    assert not [
        e["error"] for e in database_failures() if "released back to the pool" in e["error"]
    ]
    # Nothing was recorded as failed: the tracker never failed. The runs after succeed (the
    # last may be cut by the SIGTERM after its page).
    assert all(run.outcome != "sync_failed" for of_one in runs.values() for run in of_one)
    for of_one in runs.values():
        after = [run.outcome for run in of_one if run.started > back["t"]]
        assert after[:2] == ["sync_completed", "sync_completed"], after
        assert set(after[:-1]) == {"sync_completed"}, after
        assert after[-1] in ("sync_completed", "sync_interrupted"), after
    assert [r["consecutive_failures"] for r in failures] == [0] * SLOW_REPOS

    print(
        f"\n{mode}: down {down_for:.1f}s, ready {ready_after:.1f}s after the start;"
        f" runs={sum(len(of_one) for of_one in runs.values())} cut={len(cut)}"
        f" (half-synced integrations: {len(partial)})"
        f" run_failed_database lines={len(database_failures())} items={items}"
    )

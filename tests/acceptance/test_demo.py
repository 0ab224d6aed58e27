"""`c9-sync demo` as a newcomer runs it, against a fresh database: live (the daemon keeping the
database in step while a team works in the sandboxes), stopped by `--for` or Ctrl-C, and
`--once`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import re
import signal
import subprocess
import time
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tests.acceptance.cli import C9_SYNC, cli_env, run_cli, start_cli

SOURCES = {"github", "jira", "azure_devops", "linear"}
# A password in the database URL: trust authentication ignores it; the output must not show it.
PLANTED = "Planted-Db-Secret-4711"
# The plain lines the demo prints when stdout is no terminal: "21:41:14 team    linear   …".
LINE = re.compile(r"^\d\d:\d\d:\d\d (team|synced|daemon) +(\S+) +(.*)$", re.MULTILINE)


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


def lines(stdout: str, kind: str) -> list[tuple[str, str]]:
    """(tracker, text) of the plain lines of one kind."""
    return [(source, text) for k, source, text in LINE.findall(stdout) if k == kind]


async def counts(pool: asyncpg.Pool) -> dict[str, int]:
    return {
        r["source"]: r["n"]
        for r in await pool.fetch("SELECT source, count(*) AS n FROM work_items GROUP BY source")
    }


async def test_live_demo_keeps_the_database_in_step_and_a_second_start_picks_up(
    db_url: str, pool: asyncpg.Pool
) -> None:
    env = cli_env(with_password(db_url, PLANTED))
    started = await pool.fetchval("SELECT now()")
    first = run_cli("demo", "--for", "25", "--interval", "5", env=env, timeout=120)
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout
    assert "\x1b[" not in out, "no terminal: plain lines, no ANSI codes"
    assert PLANTED not in out + first.stderr
    assert "demo stopped after" in out
    # the sandboxes' signed webhooks reached the daemon's listener (each asks for a run at once)
    taken = re.search(r"\((\d+) webhook deliveries taken by the daemon\)", out)
    assert taken and int(taken[1]) >= 1, out[-2000:]
    assert 'psql "' in out and "v_integration_health" in out

    # The daemon imported every sandbox…
    per_source = await counts(pool)
    assert set(per_source) == SOURCES and all(n >= 20 for n in per_source.values()), per_source
    # …and then followed the team: what the demo says landed is in the database, written after
    # the change by a run of the daemon.
    team, synced = lines(out, "team"), lines(out, "synced")
    assert len(team) >= 3, out
    assert synced, out
    for source, text in synced:
        key = text.split()[0]
        row = await pool.fetchrow(
            "SELECT source_updated_at, updated_at FROM work_items"
            " WHERE source = $1 AND external_key = $2",
            source,
            key,
        )
        assert row is not None, (source, key)
        # held as of a change made during the demo, written by the daemon after it
        assert row["source_updated_at"] > started - timedelta(seconds=1), (source, key)
        assert row["updated_at"] > started, (source, key)
    # The story is seeded: its first change is always this one, a status the seed never set.
    assert team[0] == ("linear", "Priya Nair moved OPS-3 In Progress → In Review"), out
    state = await pool.fetchval(
        "SELECT external_data->'state'->>'name' FROM work_items"
        " WHERE source = 'linear' AND external_key = 'OPS-3'"
    )
    assert state == "In Review", out
    # Stopped: the sandboxes are gone, so their rows are paused.
    assert await pool.fetchval("SELECT count(*) FROM integrations WHERE is_active") == 0
    assert await pool.fetchval("SELECT count(*) FROM integrations") == 4

    # A second start picks up where the first left: the cursors stand (no item is new to the
    # daemon) and the same story replays on the same items (same ids), so nothing is duplicated.
    again_from = await pool.fetchval("SELECT now()")
    second = run_cli("demo", "--for", "15", env=env, timeout=120)
    assert second.returncode == 0, second.stderr[-3000:]
    assert await counts(pool) == per_source, second.stdout
    created = await pool.fetchval(
        "SELECT coalesce(sum((metadata->>'created')::int), 0) FROM activity_logs"
        " WHERE event_type = 'sync_completed' AND created_at > $1",
        again_from,
    )
    runs = await pool.fetchval(
        "SELECT count(*) FROM activity_logs WHERE event_type = 'sync_completed'"
        " AND created_at > $1",
        again_from,
    )
    # (the rows are due 10 s after their last run: under load only some may run again)
    assert runs >= 1 and created == 0, (runs, created, second.stdout)
    assert lines(second.stdout, "team")[0] == team[0]
    assert await pool.fetchval("SELECT count(*) FROM teams") == 1
    assert await pool.fetchval("SELECT count(*) FROM integrations WHERE is_active") == 0


def test_on_a_terminal_the_demo_draws_its_live_view(db_url: str) -> None:
    """stdout on a pseudo-terminal: the rich.live tables, redrawn, and the same goodbye."""
    primary, secondary = pty.openpty()
    env = cli_env(db_url, COLUMNS="140", LINES="60", TERM="xterm-256color")
    proc = subprocess.Popen(
        [C9_SYNC, "demo", "--for", "10"], env=env, stdout=secondary, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    os.close(secondary)
    chunks = []
    with contextlib.suppress(OSError):  # EIO once the demo has exited and closed its side
        while chunk := os.read(primary, 65536):
            chunks.append(chunk)
    os.close(primary)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    screen = b"".join(chunks).decode(errors="replace")
    assert "\x1b[" in screen, "a terminal gets the live display"
    for title in ("the daemon, per integration", "the team, in its trackers", "work queue"):
        assert title in screen
    assert screen.count("the daemon, per integration") >= 3, "the view is redrawn"
    assert "demo stopped after" in screen


async def test_ctrl_c_stops_the_live_demo_cleanly_and_pauses_its_integrations(
    db_url: str, pool: asyncpg.Pool
) -> None:
    proc = start_cli("demo", env=cli_env(db_url))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the daemon's first runs are done
            done = await pool.fetchval(
                "SELECT count(*) FROM integration_sync_state WHERE last_success_at IS NOT NULL"
            )
            if done == 4 or proc.poll() is not None:
                break
            await asyncio.sleep(0.2)
        assert done == 4, "the daemon synced every sandbox"
        assert await pool.fetchval("SELECT count(*) FROM integrations WHERE is_active") == 4
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err[-3000:]
    assert "demo stopped after" in out
    assert "Traceback" not in err
    assert await pool.fetchval("SELECT count(*) FROM integrations WHERE is_active") == 0


async def test_ctrl_c_while_the_demo_starts_leaves_nothing_running(
    db_url: str, pool: asyncpg.Pool
) -> None:
    proc = start_cli("demo", env=cli_env(db_url))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the rows are in, the daemon's first runs are not
            if await pool.fetchval("SELECT count(*) FROM integrations") == 4:
                break
            await asyncio.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert "demo stopped after" in out
    assert await pool.fetchval("SELECT count(*) FROM integrations WHERE is_active") == 0


async def test_demo_once_syncs_every_sandbox_and_runs_again_without_duplicates(
    db_url: str, pool: asyncpg.Pool
) -> None:
    env = cli_env(db_url)
    first = run_cli("demo", "--once", env=env, timeout=120)
    assert first.returncode == 0, first.stderr[-3000:]
    for source in SOURCES:
        assert f"Demo Team/{source}: ok created=" in first.stdout
    assert "work queue" in first.stdout
    per_source = await counts(pool)
    assert set(per_source) == SOURCES
    assert all(n >= 20 for n in per_source.values()), per_source
    assert await pool.fetchval("SELECT count(*) FROM agents") == 2
    assert await pool.fetchval("SELECT count(*) FROM integrations WHERE is_active") == 0

    second = run_cli("demo", "--once", env=env, timeout=120)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "created=0" in second.stdout
    assert await counts(pool) == per_source
    assert await pool.fetchval("SELECT count(*) FROM teams") == 1

"""The CLI as a subprocess: help, migrate, database selection, signals, bad input."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.acceptance.cli import cli_env, run_cli, start_cli
from worker import migrate


def events(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_help_lists_every_command() -> None:
    result = run_cli("--help", env=cli_env(None))
    assert result.returncode == 0
    for command in ("migrate", "run"):
        assert command in result.stdout


async def test_migrate_then_status_on_database_url(empty_db_url: str) -> None:
    env = cli_env(empty_db_url)
    first = run_cli("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert f"{len(migrate.discover('core'))} migration(s) applied" in first.stdout
    assert run_cli("migrate", env=env).stdout.strip() == "schema is up to date"
    status = run_cli("migrate", "--status", env=env)
    assert status.returncode == 0 and "pending" not in status.stdout
    assert status.stdout.count("applied") >= 3
    assert "work-tracking" not in status.stdout


async def test_optional_sets_by_flag_or_setting(empty_db_url: str, pg_url: str) -> None:
    env = cli_env(empty_db_url, C9_SYNC_WITH="work-tracking")
    result = run_cli("migrate", env=env)
    assert result.returncode == 0, result.stderr
    core, extra = (len(migrate.discover(s)) for s in ("core", "work-tracking"))
    assert f"{core + extra} migration(s) applied" in result.stdout
    status = run_cli("migrate", "--status", env=cli_env(empty_db_url))
    assert "work-tracking" not in status.stdout  # without the setting only core is listed
    with_flag = run_cli("migrate", "--status", "--with", "work-tracking", env=cli_env(empty_db_url))
    assert "work-tracking" in with_flag.stdout and "pending" not in with_flag.stdout


def test_unknown_optional_set_is_refused() -> None:
    result = run_cli("migrate", env=cli_env(None, C9_SYNC_WITH="bogus"))
    assert result.returncode == 2 and "bogus" in result.stderr
    assert "invalid setting C9_SYNC_WITH:" in result.stderr


def test_embedded_database_is_used_when_database_url_is_unset(tmp_path: Path) -> None:
    env = cli_env(None, C9_SYNC_HOME=str(tmp_path / "home"))
    result = run_cli("migrate", env=env)
    assert result.returncode == 0, result.stderr
    db_events = [e for e in events(result.stderr) if e["event"] == "database"]
    assert db_events and db_events[0]["kind"] == "embedded"
    assert (tmp_path / "home" / "pgdata" / "PG_VERSION").exists()


async def test_run_stops_cleanly_on_sigterm(db_url: str) -> None:
    proc = start_cli("run", env=cli_env(db_url))
    try:
        deadline = time.monotonic() + 20
        assert proc.stderr is not None
        seen = []
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            seen.append(line)
            if '"worker_started"' in line:
                break
        assert any('"worker_started"' in line for line in seen), seen
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
        assert proc.returncode == 0, rest
        assert '"worker_stopped"' in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_dead_database_is_one_clear_line_without_the_password() -> None:
    env = cli_env("postgresql://c9:hunter2-PASSWORD@127.0.0.1:9/nowhere")
    result = run_cli("migrate", env=env)
    assert result.returncode == 3
    assert "database unavailable" in result.stderr
    assert "hunter2-PASSWORD" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_invalid_setting_is_refused_with_its_name() -> None:
    result = run_cli("migrate", env=cli_env(None, C9_SYNC_METRICS_TZ="Mars/Olympus"))
    assert result.returncode == 2
    assert "C9_SYNC_METRICS_TZ" in result.stderr
    assert "Mars/Olympus" in result.stderr and "Traceback" not in result.stderr

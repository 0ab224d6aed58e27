"""Structured logs: JSON lines off a terminal (or on demand), readable lines on a terminal, one event
per line with integration_id/source/run_id, the level from the setting, and never a secret."""

from __future__ import annotations

import io
import json
import logging
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from connectors.sandbox.github import GitHubSandbox
from tests.acceptance.cli import cli_env, run_cli
from tests.helpers import make_integration, make_team
from worker import logs, redact

SECRET = "ghp_PLANTEDlogSecret0123456789"


class Stream(io.StringIO):
    """What logs.configure writes to (it logs to sys.stderr as it is when configured)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__()
        self._monkeypatch = monkeypatch

    def configure(self, level: str, fmt: str) -> None:
        # Set here, in the test's call phase: pytest's capture swaps sys.stderr between phases.
        self._monkeypatch.setattr("sys.stderr", self)
        logs.configure(level, fmt)


@pytest.fixture
def stream(monkeypatch) -> Iterator[Stream]:
    """A captured stderr for logs.configure, and the root logger restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield Stream(monkeypatch)
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def emit(run_id: str) -> None:
    log = logs.get_logger("worker.sync")
    fields = {"integration_id": "5f0c", "source": "github", "run_id": run_id}
    log.info("sync_started", **fields, full=False)
    log.warning(
        "sync_failed",
        **fields,
        error=f"GitHub rejected token {SECRET}",
        when=datetime(2025, 1, 2, tzinfo=UTC),
    )
    try:
        raise RuntimeError(f"boom with {SECRET}")
    except RuntimeError:
        log.exception("sync_crashed", **fields)


def test_json_lines_parse_carry_context_and_no_secret(stream) -> None:
    redact.register(SECRET)
    stream.configure("INFO", "json")
    run_id = str(uuid.uuid4())
    emit(run_id)
    lines = stream.getvalue().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert [r["event"] for r in records] == ["sync_started", "sync_failed", "sync_crashed"]
    for r in records:
        assert (r["integration_id"], r["source"], r["run_id"]) == ("5f0c", "github", run_id)
        assert r["logger"] == "worker.sync" and r["ts"].endswith("+00:00")
    assert [r["level"] for r in records] == ["info", "warning", "error"]
    assert records[1]["error"] == "GitHub rejected token ***"
    assert records[1]["when"] == "2025-01-02T00:00:00+00:00"
    assert "Traceback" in records[2]["exc"] and "boom with ***" in records[2]["exc"]
    assert SECRET not in stream.getvalue()


def test_level_comes_from_the_setting(stream) -> None:
    stream.configure("WARNING", "json")
    emit("r1")
    assert [json.loads(x)["event"] for x in stream.getvalue().splitlines()] == [
        "sync_failed",
        "sync_crashed",
    ]
    stream.truncate(0)
    stream.seek(0)
    stream.configure("DEBUG", "json")  # configure again: still one handler
    logs.get_logger("worker.scheduler").debug("integrations_changed", op="update")
    [line] = stream.getvalue().splitlines()
    assert json.loads(line)["event"] == "integrations_changed"
    assert logging.getLogger("apscheduler").level == logging.WARNING  # libraries stay quiet


def test_text_format_on_demand(stream) -> None:
    redact.register(SECRET)
    stream.configure("INFO", "text")
    emit("r2")
    lines = [
        x
        for x in stream.getvalue().splitlines()
        if not x.startswith((" ", "Traceback", "RuntimeError"))
    ]
    assert len(lines) == 3
    first = lines[0]
    with pytest.raises(ValueError):
        json.loads(first)
    # time, level, event, then the context fields first
    assert first.split()[1:6] == [
        "INFO",
        "sync_started",
        "integration_id=5f0c",
        "run_id=r2",
        "source=github",
    ]
    assert 'error="GitHub rejected token ***"' in lines[1]
    assert SECRET not in stream.getvalue()


def test_auto_is_text_on_a_terminal_and_json_otherwise(stream, monkeypatch) -> None:
    stream.configure("INFO", "auto")  # a StringIO is not a terminal
    logs.get_logger("t").info("piped", integration_id="a")
    assert json.loads(stream.getvalue())["event"] == "piped"

    primary, secondary = os.openpty()  # a real terminal
    terminal = os.fdopen(secondary, "w", buffering=1)
    try:
        monkeypatch.setattr("sys.stderr", terminal)
        logs.configure("INFO", "auto")
        logs.get_logger("t").info("on_tty", integration_id="a")
        terminal.flush()
        text = os.read(primary, 4096).decode()
    finally:
        terminal.close()
        os.close(primary)
    assert "on_tty integration_id=a" in text and not text.lstrip().startswith("{")


async def test_cli_logs_are_json_lines_without_the_token(db_url, pool) -> None:
    """End to end: a real sync that fails on a planted token, logged by the CLI off a terminal."""
    with GitHubSandbox(token="the-right-token") as github:
        github.add_issue("acme/web", "One", updated_at=datetime(2025, 5, 1, tzinfo=UTC))
        team = await make_team(pool, "Alpha")
        config = {"token": SECRET, "base_url": github.url, "repos": ["acme/web"]}
        integration = await make_integration(pool, team, "github", config)
        env = cli_env(db_url)
        env.pop("C9_SYNC_LOG_FORMAT")  # auto: stderr is a pipe here, so JSON
        result = run_cli("sync", env=env)
        quiet = run_cli("sync", "--force", env={**env, "C9_SYNC_LOG_LEVEL": "ERROR"})
        text = run_cli("sync", "--force", env={**env, "C9_SYNC_LOG_FORMAT": "text"})
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stderr.splitlines()]
    by_event = {r["event"]: r for r in records}
    for event in ("sync_started", "sync_failed"):
        r = by_event[event]
        assert r["integration_id"] == str(integration) and r["source"] == "github" and r["run_id"]
    assert by_event["sync_started"]["run_id"] == by_event["sync_failed"]["run_id"]
    assert SECRET not in result.stderr + result.stdout
    assert {json.loads(line)["level"] for line in quiet.stderr.splitlines()} == {"error"}
    assert SECRET not in quiet.stderr + text.stderr
    assert "sync_failed" in text.stderr and not text.stderr.lstrip().startswith("{")

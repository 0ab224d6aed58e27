"""A long first import shows how far it has come: after each committed page the run's items so
far and where its cursor stands, on a terminal (`c9-sync sync`) and in `/metrics`; a finished
run leaves no progress series behind."""

from __future__ import annotations

import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import REGISTRY
from rich.console import Console

from tests.fake_connector import Upstream, fake_connector_class
from tests.helpers import make_integration, make_team
from worker import db, health, progress, sync
from worker.settings import Settings
from worker.sync import RunOptions, RunResult

TOKEN = "tok-PLANTED-progress-91c2"


def gauge(name: str, integration_id: uuid.UUID) -> float | None:
    return REGISTRY.get_sample_value(
        name, {"integration_id": str(integration_id), "source": "github"}
    )


@pytest.mark.usefixtures("a_transaction_a_page")
async def test_each_page_reports_items_so_far_and_how_far_behind_the_cursor_is(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    team = await make_team(pool, "Alpha")
    integration = await make_integration(pool, team, "github", {"token": TOKEN}, interval=60)
    upstream = Upstream(page_size=10)
    now = datetime.now(UTC)
    # 30 items updated over the last 30 days, oldest first: three pages a backfill walks
    upstream.add(30, start=now - timedelta(days=30), step=timedelta(days=1))
    seen: list[tuple[int, int, float | None, float | None, str]] = []

    def on_page(result: RunResult) -> None:
        assert result.cursor_at is not None
        seen.append(
            (
                result.pages,
                result.items,
                gauge("c9_sync_run_items", integration),
                gauge("c9_sync_run_cursor_lag_seconds", integration),
                progress.describe(result, elapsed_s=2.0, now=now),
            )
        )

    result = await sync.run_integration(
        pool, integration, Settings(home=tmp_path), environ={},
        options=RunOptions(force=True, on_page=on_page),
        loader=lambda source: fake_connector_class(upstream),
    )  # fmt: skip
    assert result.outcome == "succeeded"
    assert [(pages, items, metric) for pages, items, metric, _, _ in seen] == [
        (1, 10, 10.0), (2, 20, 20.0), (3, 30, 30.0),
    ]  # fmt: skip
    lags = [lag for _, _, _, lag, _ in seen]
    assert lags[0] is not None and lags[2] is not None
    # the first page reached the 10th item (21 days ago), the last one the newest (a day ago)
    assert 20 * 86_400 < lags[0] < 22 * 86_400
    assert 0 < lags[2] < 2 * 86_400
    assert seen[0][4].startswith("page 1: 10 items (10 created, 0 updated) at 5/s;")
    assert "(21.0d behind)" in seen[0][4]
    assert "(24.0h behind)" in seen[2][4]
    # the run is over: its progress series are gone from /metrics
    assert gauge("c9_sync_run_items", integration) is None
    assert gauge("c9_sync_run_cursor_lag_seconds", integration) is None


async def test_the_terminal_shows_one_live_line_per_integration_and_nothing_off_a_terminal(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    team = await make_team(pool, "Alpha")
    integration = await make_integration(pool, team, "github", {"token": TOKEN}, interval=60)
    upstream = Upstream(page_size=5)
    upstream.add(12, start=datetime.now(UTC) - timedelta(hours=6), step=timedelta(minutes=10))
    loader = lambda source: fake_connector_class(upstream)  # noqa: E731
    terminal = io.StringIO()
    console = Console(file=terminal, force_terminal=True, width=200)
    with progress.shown(console, {integration: "Alpha/github"}) as on_page_for:
        result = await sync.run_integration(
            pool, integration, Settings(home=tmp_path), environ={},
            options=RunOptions(force=True, on_page=on_page_for(integration)), loader=loader,
        )  # fmt: skip
    assert result.outcome == "succeeded" and result.pages == 3
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal.getvalue())
    assert "Alpha/github page 3: 12 items (12 created, 0 updated)" in screen
    assert TOKEN not in screen

    piped = io.StringIO()
    with progress.shown(Console(file=piped), {integration: "Alpha/github"}) as on_page_for:
        on_page_for(integration)(result)
    assert piped.getvalue() == ""


async def test_a_short_run_stores_no_progress(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that ends within PROGRESS_FIRST_S (an unchanged integration's: most runs) writes
    no progress row: nobody could see it."""
    monkeypatch.setattr(sync, "PROGRESS_FIRST_S", 30.0)  # (however slow this machine is)
    team = await make_team(pool, "Alpha")
    integration = await make_integration(pool, team, "github", {"token": TOKEN}, interval=60)
    upstream = Upstream(page_size=10)
    upstream.add(25)
    result = await sync.run_integration(
        pool, integration, Settings(home=tmp_path), environ={},
        options=RunOptions(force=True), loader=lambda source: fake_connector_class(upstream),
    )  # fmt: skip
    assert result.outcome == "succeeded" and result.pages == 3
    assert await pool.fetchval("SELECT run_progress FROM integration_sync_state") is None


@pytest.mark.usefixtures("a_transaction_a_page")
async def test_status_on_another_connection_shows_the_running_runs_progress(
    pool: asyncpg.Pool, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `c9-sync status` reads (health.overview): while the run holds its lock, the items
    and cursor of its last stored progress; nothing once it has ended."""
    monkeypatch.setattr(sync, "PROGRESS_FIRST_S", 0.0)  # (a long run's, at once)
    team = await make_team(pool, "Alpha")
    integration = await make_integration(pool, team, "github", {"token": TOKEN}, interval=60)
    upstream = Upstream(page_size=10)
    now = datetime.now(UTC)
    upstream.add(25, start=now - timedelta(days=10), step=timedelta(hours=6))
    shown: list[str] = []

    async def look(page: int) -> None:  # after each yielded page, while the run goes on
        conn = await db.connect(db_url)
        try:
            [row] = await health.overview(conn, integration_id=integration)
        finally:
            await conn.close()
        assert row.state == "running"
        shown.append(health.progress_text(row.progress, datetime.now(UTC)))

    upstream.between_pages = look
    result = await sync.run_integration(
        pool, integration, Settings(home=tmp_path), environ={},
        options=RunOptions(force=True), loader=lambda source: fake_connector_class(upstream),
    )  # fmt: skip
    assert result.outcome == "succeeded" and result.pages == 3
    # stored after the first page, then not again within 5 s: every look sees page 1 at most
    # (the first look may come before it: the next page is fetched while a page commits)
    assert shown[-1] == "10 items, page 1, cursor 7.8d behind"
    assert set(shown) <= {"", "10 items, page 1, cursor 7.8d behind"}
    conn = await db.connect(db_url)
    try:
        [row] = await health.overview(conn, integration_id=integration)
    finally:
        await conn.close()
    assert row.state == "ok" and row.progress is None

"""`c9-sync metrics rollup` as a subprocess: ranges, teams, zeros, time zone, bad input."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import asyncpg
import pytest

from tests.acceptance.cli import cli_env, run_cli
from tests.helpers import make_team, make_work_item


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
async def data(conn: asyncpg.Connection) -> dict[str, uuid.UUID]:
    """Alpha: two completions on 2025-03-01, one at 23:30Z on 2025-03-10, a commit on the 2nd.
    Beta: one completion on 2025-03-05. Gamma: nothing."""
    alpha = await make_team(conn, "Alpha")
    beta = await make_team(conn, "Beta")
    gamma = await make_team(conn, "Gamma")
    for ext, done, start in (
        ("A1", "2025-03-01 09:00", "2025-03-01 07:00"),
        ("A2", "2025-03-01 10:00", "2025-03-01 06:00"),
        ("A3", "2025-03-10 23:30", None),
    ):
        await make_work_item(
            conn,
            alpha,
            ext,
            "completed",
            completed_at=at(done),
            started_at=at(start) if start else None,
        )
    await make_work_item(conn, beta, "B1", "completed", completed_at=at("2025-03-05 12:00"))
    await conn.execute(
        "INSERT INTO activity_logs (team_id, event_type, message, created_at)"
        " VALUES ($1, 'commit_created', 'c', '2025-03-02 08:00Z')",
        alpha,
    )
    return {"Alpha": alpha, "Beta": beta, "Gamma": gamma}


async def rows(conn: asyncpg.Connection) -> list[tuple[object, ...]]:
    found = await conn.fetch(
        "SELECT team_name, metric_date, stories_completed, commits_count,"
        "       avg_completion_time_hours::text FROM v_team_metrics ORDER BY 1, 2"
    )
    return [tuple(r.values()) for r in found]


async def test_rollup_backfills_every_team_and_is_idempotent(
    db_url: str, conn: asyncpg.Connection, data: dict[str, uuid.UUID]
) -> None:
    env = cli_env(db_url)
    first = run_cli("metrics", "rollup", env=env)
    assert first.returncode == 0, first.stderr
    assert await rows(conn) == [
        ("Alpha", date(2025, 3, 1), 2, 0, "3.00"),
        ("Alpha", date(2025, 3, 2), 0, 1, None),
        ("Alpha", date(2025, 3, 10), 1, 0, None),
        ("Beta", date(2025, 3, 5), 1, 0, None),
    ]
    summary = first.stdout.strip().splitlines()
    assert len(summary) == 1 and "3 team(s)" in summary[0], first.stdout
    assert "4 row(s) written, 0 deleted" in summary[0]

    again = run_cli("metrics", "rollup", env=env)
    assert again.returncode == 0, again.stderr
    assert "0 row(s) written, 0 deleted" in again.stdout


async def test_range_team_and_fill_zeros(
    db_url: str, conn: asyncpg.Connection, data: dict[str, uuid.UUID]
) -> None:
    env = cli_env(db_url)
    result = run_cli(
        "metrics", "rollup", "--team", "Gamma", "--since", "2025-03-01", "--until", "2025-03-03",
        "--fill-zeros", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1 team(s), 3 day(s) recomputed, 3 row(s) written" in result.stdout
    assert await rows(conn) == [("Gamma", date(2025, 3, d), 0, 0, None) for d in (1, 2, 3)]

    # Only Alpha, only up to the 2nd: its completion of the 10th is not in range.
    result = run_cli("metrics", "rollup", "--team", "Alpha", "--until", "2025-03-02", env=env)
    assert result.returncode == 0, result.stderr
    assert [r[:2] for r in await rows(conn) if r[0] == "Alpha"] == [
        ("Alpha", date(2025, 3, 1)),
        ("Alpha", date(2025, 3, 2)),
    ]


async def test_time_zone_setting_moves_the_late_completion(
    db_url: str, conn: asyncpg.Connection, data: dict[str, uuid.UUID]
) -> None:
    assert run_cli("metrics", "rollup", env=cli_env(db_url)).returncode == 0
    tokyo = run_cli("metrics", "rollup", env=cli_env(db_url, C9_SYNC_METRICS_TZ="Asia/Tokyo"))
    assert tokyo.returncode == 0, tokyo.stderr
    assert "Asia/Tokyo" in tokyo.stdout
    # 23:30Z on the 10th is 08:30 on the 11th in Tokyo; the UTC row of the 10th is gone.
    alpha = [r[1:3] for r in await rows(conn) if r[0] == "Alpha"]
    assert alpha == [(date(2025, 3, 1), 2), (date(2025, 3, 2), 0), (date(2025, 3, 11), 1)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--team", "Nobody"), "no team named 'Nobody'"),
        (("--since", "2025-02-30"), "--since: not a date: '2025-02-30'"),
        (("--until", "last tuesday"), "--until: not a date"),
        (("--since", "2025-03-05", "--until", "2025-03-01"), "--since 2025-03-05 is after"),
        (("--since", "0202-01-01"), "longer than"),
    ],
)
async def test_bad_input_is_one_clear_line_and_exit_2(
    db_url: str, conn: asyncpg.Connection, args: tuple[str, ...], message: str
) -> None:
    await make_team(conn, "Alpha")
    result = run_cli("metrics", "rollup", *args, env=cli_env(db_url))
    assert result.returncode == 2, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert await conn.fetchval("SELECT count(*) FROM metrics") == 0


def test_help_lists_rollup_and_its_options() -> None:
    top = run_cli("metrics", "--help", env=cli_env(None))
    assert top.returncode == 0 and "rollup" in top.stdout
    sub = run_cli("metrics", "rollup", "--help", env=cli_env(None))
    assert sub.returncode == 0
    for option in ("--since", "--until", "--team", "--fill-zeros"):
        assert option in sub.stdout

"""`c9-sync demo` as a newcomer runs it: twice, against a fresh database."""

from __future__ import annotations

import asyncpg

from tests.acceptance.cli import cli_env, run_cli


async def test_demo_syncs_every_sandbox_and_runs_again_without_duplicates(
    db_url: str, pool: asyncpg.Pool
) -> None:
    env = cli_env(db_url)
    first = run_cli("demo", env=env, timeout=120)
    assert first.returncode == 0, first.stderr[-3000:]
    for source in ("github", "jira", "azure_devops", "linear"):
        assert f"Demo Team/{source}: ok created=" in first.stdout
    assert "work queue" in first.stdout
    per_source = {
        r["source"]: r["n"]
        for r in await pool.fetch("SELECT source, count(*) AS n FROM work_items GROUP BY source")
    }
    assert set(per_source) == {"github", "jira", "azure_devops", "linear"}
    assert all(n >= 20 for n in per_source.values()), per_source
    assert await pool.fetchval("SELECT count(*) FROM agents") == 2
    assert await pool.fetchval("SELECT count(*) FROM integrations WHERE is_active") == 0

    second = run_cli("demo", env=env, timeout=120)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "created=0" in second.stdout
    again = {
        r["source"]: r["n"]
        for r in await pool.fetch("SELECT source, count(*) AS n FROM work_items GROUP BY source")
    }
    assert again == per_source
    assert await pool.fetchval("SELECT count(*) FROM teams") == 1

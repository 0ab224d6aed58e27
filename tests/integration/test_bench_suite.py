"""The benchmark suite (tests/bench, not collected) still runs: its entry point at a tiny size,
one import scenario end to end, and the figures it prints are there and plausible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.bench import delay_proxy
from worker import db

ROOT = Path(__file__).resolve().parents[2]
FIELDS = (
    "name", "items", "seconds", "items_per_s", "requests", "worker_cpu_s", "pg_cpu_s",
    "peak_rss_mb", "ratio_to_ceiling", "upstream_capacity_rps", "upstream_misses",
)  # fmt: skip


def bench_rows(*args: str) -> dict[str, dict[str, Any]]:
    """`python -m tests.bench ARGS` on its own embedded server: the rows it printed, by name."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # its own server
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=580,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {r["name"]: r for r in map(json.loads, done.stdout.splitlines())}


@pytest.mark.timeout(600)
def test_the_suite_prints_one_plausible_row_per_phase() -> None:
    rows = bench_rows("--items", "150", "--scenario", "github")
    assert set(rows) == {"github-full", "github-noop", "github-changed"}
    for row in rows.values():
        assert all(field in row for field in FIELDS), row
        assert row["items"] == 150
        assert row["upstream_misses"] == 0  # every request was one the priming run made
        assert 0 < row["worker_cpu_s"] < row["seconds"] * 2  # 2 cores at most
        assert row["pg_cpu_s"] > 0
        assert 20 < row["peak_rss_mb"] < 2000
        # the upstream serves far faster than the worker asks: it is not what is measured
        assert row["upstream_capacity_rps"] > 2 * row["requests"] / row["seconds"]

    full, noop, changed = rows["github-full"], rows["github-noop"], rows["github-changed"]
    assert full["created"] == 150 and full["rows_rewritten"] == 150
    assert full["items_per_s"] == pytest.approx(150 / full["seconds"], rel=0.01)
    assert 0 < full["ratio_to_ceiling"] < 1 and full["ceiling_rows"] == 150
    assert noop["created"] == noop["updated"] == noop["rows_rewritten"] == 0
    assert noop["activity_rows"] == 0  # a run that changed nothing writes no row (within the hour)
    assert 0 < noop["requests"] <= full["requests"]
    assert changed["changed_upstream"] == 2  # 1%, at least one per 100 items
    assert changed["updated"] == changed["rows_rewritten"] == 2


@pytest.mark.timeout(600)
def test_the_write_path_and_overlap_scenarios_print_their_figures() -> None:
    """write-path: the run's commits against COPY of the same rows; overlap: a full import with
    a delayed upstream against fetching alone and writing alone."""
    rows = bench_rows(
        "--items", "200", "--latency", "0.02", "--scenario", "write-path", "overlap"
    )  # fmt: skip
    assert set(rows) == {"write-path", "overlap-linear"}
    write = rows["write-path"]
    assert write["created"] == write["ceiling_rows"] == 200
    assert 0 < write["ratio_to_ceiling"] < 5 and write["pg_cpu_s"] > 0
    overlap = rows["overlap-linear"]
    assert overlap["created"] == 200 and overlap["upstream_misses"] == 0
    # every answer waited: fetching alone takes at least the latency of its requests
    assert overlap["fetch_alone_s"] >= 0.02 * overlap["requests"]
    assert overlap["write_alone_s"] > 0
    assert overlap["sum_s"] == pytest.approx(
        overlap["fetch_alone_s"] + overlap["write_alone_s"], abs=0.002
    )
    assert overlap["of_sum"] == pytest.approx(overlap["run_seconds"] / overlap["sum_s"], rel=0.05)


async def test_the_delay_proxy_holds_each_way_of_a_round_trip(db_url: str) -> None:
    with delay_proxy.delayed(db_url, 0.05) as far:
        conn = await db.connect(far)  # (its start-up's round trips are held too)
        try:
            started = time.perf_counter()
            assert await conn.fetchval("SELECT $1::int + 1", 41) == 42
            assert time.perf_counter() - started >= 0.1
        finally:
            await conn.close()


@pytest.mark.timeout(600)
def test_the_far_database_scenario_runs_the_worker_through_the_proxy() -> None:
    rows = bench_rows("--items", "120", "--db-latency", "0.002", "--scenario", "github-far-db")
    assert set(rows) == {"github-far-db-full", "github-far-db-noop", "github-far-db-changed"}
    assert all(row["db_latency_s"] == 0.002 for row in rows.values())
    assert rows["github-far-db-full"]["created"] == 120
    assert rows["github-far-db-noop"]["rows_rewritten"] == 0
    assert rows["github-far-db-changed"]["rows_rewritten"] == 2

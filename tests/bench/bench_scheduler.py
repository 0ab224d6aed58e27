"""The daemon at scale: N integrations at `sync_interval` 60 s, two `c9-sync run` processes on one
PostgreSQL (embedded, or DATABASE_URL), the GitHub sandbox (in a process of its own) answering
every request after an injected latency. After a warm-up, for a measured window: the start lag
(a tick's due time → its run's start, from the daemons' /metrics histograms), the gaps between
an integration's consecutive starts (from the daemons' `sync_started` log lines: a run that
changes nothing writes no activity row), missed ticks, runs started per second against the rate
needed, the activity rows written per run, and the CPU of the daemons, PostgreSQL and the
sandbox.

    python tests/bench/bench_scheduler.py [--integrations 1000] [--latency 0.05]
        [--warmup 90] [--seconds 180] [--daemons 2]

Prints one JSON object. Outside CI: the figures depend on the machine (and who shares it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

from worker import db, migrate

ROOT = Path(__file__).resolve().parents[2]
TICK = os.sysconf("SC_CLK_TCK")
INTERVAL = 60


def serve_github(repos: int, latency: float, pipe: Connection) -> None:
    """The child: one issue in each of `repos` repositories, every answer `latency` late."""
    from datetime import UTC

    from connectors.sandbox.github import GitHubSandbox

    with GitHubSandbox(token="bench") as gh:
        for n in range(repos):
            gh.add_issue(f"acme/r{n}", "An issue", updated_at=datetime(2025, 1, 1, tzinfo=UTC))
        gh.response_delay = latency
        gh.clear_requests()
        pipe.send(gh.url)
        pipe.recv()
        pipe.send(len(gh.requests))


def cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == parent:
                found.append(int(entry.name))
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def histogram(text: str, name: str) -> dict[float, float]:
    """le -> cumulative count of one Prometheus histogram in an exposition page."""
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float("inf") if le == "+Inf" else float(le)] = float(line.split()[-1])
    return out


def counter(text: str, name: str, *labels: str) -> float:
    """The sum of a counter's series whose labels include each of `labels` (`key="value"`)."""
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(label in line for label in labels)
    )


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """The q-quantile of a cumulative histogram, linear within its bucket."""
    total = buckets.get(float("inf"), 0.0)
    if not total:
        return None
    rank, low, below = q * total, 0.0, 0.0
    for le in sorted(buckets):
        if buckets[le] >= rank:
            if le == float("inf"):
                return low
            share = (rank - below) / max(buckets[le] - below, 1e-9)
            return round(low + (le - low) * share, 3)
        low, below = le, buckets[le]
    return None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


async def scrape(ports: list[int]) -> list[str]:
    async with httpx.AsyncClient() as client:
        pages = []
        for port in ports:
            answer = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
            pages.append(answer.text)
        return pages


def merged(pages: list[str], name: str) -> dict[float, float]:
    total: dict[float, float] = {}
    for page in pages:
        for le, n in histogram(page, name).items():
            total[le] = total.get(le, 0.0) + n
    return total


def start_daemon(
    n: int, url: str, port: int, home: Path, log: Path, extra: list[str]
) -> subprocess.Popen[bytes]:
    """`c9-sync run` from this checkout, logging (JSON, INFO: each run's start) to `log`."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("C9_SYNC_")},
        "DATABASE_URL": url,
        "PYTHONPATH": str(ROOT),
        "C9_SYNC_HOME": str(home / f"home-{n}"),
        "C9_SYNC_HTTP_PORT": str(port),
        "C9_SYNC_LOG_FORMAT": "json",
        "C9_SYNC_LOG_LEVEL": "INFO",
        **dict(kv.split("=", 1) for kv in extra),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "run"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )


async def bench(url: str, args: argparse.Namespace, github_url: str, home: Path) -> dict[str, Any]:
    conn = await db.connect(url)
    await migrate.apply(conn)
    team = await conn.fetchval(
        "INSERT INTO teams (name, product, repo_path) VALUES ('bench', 'p', '/r') RETURNING id"
    )
    await conn.execute(
        "INSERT INTO integrations (team_id, type, name, config, sync_interval)"
        " SELECT $1, 'github', 'r' || n,"
        "        jsonb_build_object('token', 'bench', 'base_url', $2::text,"
        "                           'repos', jsonb_build_array('acme/r' || n)), $3"
        " FROM generate_series(0, $4 - 1) n",
        team,
        github_url,
        INTERVAL,
        args.integrations,
    )
    max_connections = await conn.fetchval("SHOW max_connections")
    data_dir = await conn.fetchval("SHOW data_directory")
    postmaster = int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
    ports = [free_port() for _ in range(args.daemons)]
    logs = [home / f"daemon-{n}.log" for n in range(args.daemons)]
    daemons = [start_daemon(n, url, port, home, logs[n], args.env) for n, port in enumerate(ports)]
    try:
        await asyncio.sleep(args.warmup)
        pg_pids = [postmaster, *children(postmaster)]
        before = await scrape(ports)
        t0_db = await conn.fetchval("SELECT now()")
        cpu0 = [cpu_s(d.pid) for d in daemons]
        pg0 = sum(cpu_s(p) for p in pg_pids)
        wall0 = time.monotonic()
        await asyncio.sleep(args.seconds)
        wall = time.monotonic() - wall0
        cpu1 = [cpu_s(d.pid) for d in daemons]
        pg1 = sum(cpu_s(p) for p in [postmaster, *children(postmaster)])
        after = await scrape(ports)
        t1_db = await conn.fetchval("SELECT now()")
        outcomes = await conn.fetch(
            "SELECT event_type, count(*) FROM activity_logs WHERE created_at >= $1"
            " AND created_at < $2 GROUP BY 1",
            t0_db,
            t1_db,
        )
    finally:
        for d in daemons:
            d.terminate()
        for d in daemons:
            try:
                d.wait(60)
            except subprocess.TimeoutExpired:
                d.kill()
        await conn.close()
    lag_hist = {
        le: merged(after, "c9_sync_start_lag_seconds")[le]
        - merged(before, "c9_sync_start_lag_seconds").get(le, 0.0)
        for le in merged(after, "c9_sync_start_lag_seconds")
    }
    durations = {
        le: merged(after, "c9_sync_run_duration_seconds")[le]
        - merged(before, "c9_sync_run_duration_seconds").get(le, 0.0)
        for le in merged(after, "c9_sync_run_duration_seconds")
    }
    runs = {
        outcome: sum(
            counter(a, "c9_sync_runs_total", f'outcome="{outcome}"')
            - counter(b, "c9_sync_runs_total", f'outcome="{outcome}"')
            for a, b in zip(after, before, strict=True)
        )
        for outcome in ("succeeded", "skipped", "failed", "interrupted")
    }
    missed = {
        reason: sum(
            counter(a, "c9_sync_missed_ticks_total", f'reason="{reason}"')
            - counter(b, "c9_sync_missed_ticks_total", f'reason="{reason}"')
            for a, b in zip(after, before, strict=True)
        )
        for reason in ("busy", "late")
    }
    warnings = 0
    apscheduler_warnings = 0
    starts: list[tuple[str, datetime]] = []  # (integration, start), from every daemon's log
    for log in logs:
        for line in log.read_text().splitlines():
            if '"level": "warning"' in line or '"level": "error"' in line:
                warnings += 1
            if "maximum number of running instances" in line or "was missed by" in line:
                apscheduler_warnings += 1
            if '"sync_started"' in line:
                event = json.loads(line)
                at = datetime.fromisoformat(event["ts"])
                if t0_db - timedelta(seconds=70) <= at < t1_db:
                    starts.append((event["integration_id"], at))
    gaps: list[float] = []
    previous: dict[str, Any] = {}
    in_window = 0
    for integration_id, at in sorted(starts):
        if at >= t0_db:
            in_window += 1
            if integration_id in previous:
                gaps.append((at - previous[integration_id]).total_seconds())
        previous[integration_id] = at
    return {
        "name": "scheduler",
        "integrations": args.integrations,
        "daemons": args.daemons,
        "latency_s": args.latency,
        "interval_s": INTERVAL,
        "window_s": round(wall, 1),
        "runs_started": in_window,
        "runs_per_s": round(in_window / wall, 2),
        "runs_per_s_needed": round(args.integrations / INTERVAL, 2),
        "outcome_rows": {
            r["event_type"]: r["count"] for r in outcomes if r["event_type"].startswith("sync_")
        },
        "activity_rows_per_run": round(sum(r["count"] for r in outcomes) / max(in_window, 1), 3),
        "runs_by_outcome": runs,
        "run_duration_p50_s": quantile(durations, 0.5),
        "run_duration_p99_s": quantile(durations, 0.99),
        "start_lag_p50_s": quantile(lag_hist, 0.5),
        "start_lag_p99_s": quantile(lag_hist, 0.99),
        "start_lag_observed": lag_hist.get(float("inf"), 0),
        "start_gap_p50_s": percentile(gaps, 0.5),
        "start_gap_p99_s": percentile(gaps, 0.99),
        "start_gap_max_s": max(gaps) if gaps else None,
        "missed_ticks": missed,
        "warning_lines": warnings,
        "apscheduler_warnings": apscheduler_warnings,
        "daemon_cpu_s": [round(b - a, 1) for a, b in zip(cpu0, cpu1, strict=True)],
        "daemon_cpu_ms_per_run": round(
            sum(b - a for a, b in zip(cpu0, cpu1, strict=True)) * 1000 / max(in_window, 1), 2
        ),
        "pg_cpu_s": round(pg1 - pg0, 1),
        "pg_cpu_ms_per_run": round((pg1 - pg0) * 1000 / max(in_window, 1), 2),
        "pg_max_connections": int(max_connections),
        "cores": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--integrations", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per answer")
    parser.add_argument("--warmup", type=float, default=90.0)
    parser.add_argument("--seconds", type=float, default=180.0, help="the measured window")
    parser.add_argument("--daemons", type=int, default=2)
    parser.add_argument(
        "--env", action="append", default=[], help="NAME=VALUE for the daemons (repeatable)"
    )
    args = parser.parse_args()
    ours, theirs = multiprocessing.Pipe()
    sandbox = multiprocessing.get_context("fork").Process(
        target=serve_github, args=(args.integrations, args.latency, theirs), daemon=True
    )
    sandbox.start()
    github_url = ours.recv()
    sandbox_cpu0 = cpu_s(sandbox.pid or 0)
    home = Path(tempfile.mkdtemp(prefix="c9-bench-sched-"))
    os.chmod(home, 0o755)  # embedded PostgreSQL runs as another user when we are root
    try:
        external = os.environ.get("DATABASE_URL")
        if external:
            out = asyncio.run(bench(external, args, github_url, home))
        else:
            with db.embedded_postgres(home / "pgdata") as url:
                out = asyncio.run(bench(url, args, github_url, home))
        out["sandbox_cpu_s_whole_bench"] = round(cpu_s(sandbox.pid or 0) - sandbox_cpu0, 1)
        ours.send("stop")
        out["sandbox_requests"] = ours.recv()
    finally:
        sandbox.terminate()
        shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()

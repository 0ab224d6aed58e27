"""The scenarios. Each is an async generator of result rows (one JSON object each), given the
bench, the item count and the options; `SCENARIOS` names them for `--scenario`."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors import registry
from connectors.base import Page
from tests.bench import delay_proxy
from tests.bench.harness import Bench, add_integration, copy_ceiling, measured_sync
from tests.bench.measure import Process, run_module, worker_env
from tests.bench.trackers import TRACKERS, Tracker
from tests.bench.upstream import Upstream
from worker import connecting, db, metrics, runlog
from worker import sync as worker_sync
from worker.settings import Settings
from worker.store.integrations import get_integration

Rows = AsyncIterator[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Options:
    items: int
    integrations: int
    rss_sizes: tuple[int, ...]
    latency: float = 0.05  # seconds each upstream answer waits (the overlap scenario)
    dlt_python: str | None = None  # a Python with dlt[postgres] (the dlt-github scenario)
    rss_tracker: str = "linear"  # whose import the rss scenario measures
    db_latency: float = 0.0005  # seconds each way to the database (the github-far-db scenario)


Scenario = Callable[[Bench, Options], Rows]

PHASES = ("full", "noop", "changed")


@dataclass
class Primed:
    """A tracker's sandbox seeded, its answers recorded for every phase, the sandbox stopped."""

    upstream: Upstream
    capacity: dict[str, float]
    touched: int


async def prime(
    bench: Bench, tracker: Tracker, n: int, phases: tuple[str, ...], **config: Any
) -> Primed:
    """Seed the sandbox; run the real worker against it into a scratch database once per phase
    (the 1% edit before "changed"), recording every answer; measure the upstream's capacity.
    `config`: keys over the tracker's."""
    sandbox = tracker.sandbox()
    upstream = Upstream().start()
    touched = 0
    with sandbox:
        ids = tracker.seed(sandbox, n)
        async with bench.database(f"prime-{tracker.type}") as url:
            integration = await add_integration(
                url, tracker.type, {**tracker.config(sandbox.url), **config}
            )
            for phase in phases:
                if phase == "changed":
                    touched = tracker.touch(sandbox, ids)
                upstream.record_from(sandbox, phase)
                bench.worker(url, "sync", "--integration", str(integration), "--force")
    capacity = await asyncio.to_thread(upstream.capacity, phases[0])
    return Primed(upstream, capacity, touched)


def _import(tracker: Tracker, label: str = "", far: bool = False, **config: Any) -> Scenario:
    """Full import, no-op and 1%-changed incremental runs; `config`: keys over the tracker's
    (rows named `label`, default the tracker's type). `far`: the worker reaches the database
    through `delay_proxy`, `--db-latency` away each way."""

    async def scenario(bench: Bench, options: Options) -> Rows:
        n = options.items
        primed = await prime(bench, tracker, n, PHASES, **config)
        try:
            async with AsyncExitStack() as stack:
                url = await stack.enter_async_context(bench.database(tracker.type))
                worker_url = (
                    stack.enter_context(delay_proxy.delayed(url, options.db_latency))
                    if far
                    else url
                )
                integration = await add_integration(
                    url, tracker.type, {**tracker.config(primed.upstream.url), **config}
                )
                for phase in PHASES:
                    row = await measured_sync(
                        bench, primed.upstream, phase, url, integration, worker_url
                    )
                    extra: dict[str, Any] = {"ratio_to_ceiling": None}
                    if phase == "full":
                        extra = await copy_ceiling(url, bench.pg_cpu)
                        extra["ratio_to_ceiling"] = round(
                            row["items_per_s"] / extra["ceiling_rows_per_s"], 3
                        )
                    if phase == "changed":
                        extra["changed_upstream"] = primed.touched
                    if far:
                        extra["db_latency_s"] = options.db_latency
                    yield {
                        "name": f"{label or tracker.type}-{phase}",
                        "items": n,
                        **row,
                        **extra,
                        "upstream_capacity_rps": primed.capacity["rps"],
                        "upstream_mb_per_s": primed.capacity["mb_per_s"],
                    }
        finally:
            primed.upstream.stop()

    return scenario


async def dlt_github(bench: Bench, options: Options) -> Rows:
    """dlt's rest_api source (merge on `id`, tests/bench/dlt_github.py) and c9-sync (GitHub's
    request spacing off: dlt has none), each importing the same N issues into a fresh database
    of the same server from the same upstream. Each replays its own recorded requests (dlt
    follows the Link header's pages, the connector asks again `since` the last issue read)."""
    if not options.dlt_python:
        raise SystemExit(
            "dlt-github needs --dlt-python: a Python with dlt (python -m venv D &&"
            ' D/bin/pip install "dlt[postgres]"; then --dlt-python D/bin/python)'
        )
    tracker = TRACKERS["github"]
    config = {"seconds_between_requests": 0}
    repos = tracker.config("")["repos"]
    sandbox = tracker.sandbox()
    upstream = Upstream().start()
    try:
        with sandbox:
            tracker.seed(sandbox, options.items)
            async with bench.database("prime-dlt") as url:
                upstream.record_from(sandbox, "dlt")
                _dlt(options.dlt_python, sandbox.url, url, repos)
                integration = await add_integration(
                    url, tracker.type, {**tracker.config(sandbox.url), **config}
                )
                upstream.record_from(sandbox, "full")
                bench.worker(url, "sync", "--integration", str(integration), "--force")
        async with bench.database("dlt") as url:
            upstream.phase, upstream.requests = "dlt", 0
            pg0 = bench.pg_cpu.seconds()
            proc, loaded = _dlt(options.dlt_python, upstream.url, url, repos)
            dlt_row = {
                "name": "dlt-github-full",
                "items": options.items,
                "seconds": round(proc.seconds, 3),
                "items_per_s": round(loaded["rows"] / proc.seconds, 1),
                "requests": upstream.requests,
                "worker_cpu_s": round(proc.cpu_s, 3),
                "pg_cpu_s": round(bench.pg_cpu.seconds() - pg0, 3),
                "peak_rss_mb": round(proc.peak_rss_mb, 1),
                "run_seconds": loaded["run_seconds"],
                "rows": loaded["rows"],
                "upstream_misses": len(upstream.misses),
            }
        yield dlt_row
        async with bench.database("dlt-c9") as url:
            integration = await add_integration(
                url, tracker.type, {**tracker.config(upstream.url), **config}
            )
            row = await measured_sync(bench, upstream, "full", url, integration)
        yield {
            "name": "c9-github-full-vs-dlt",
            "items": options.items,
            **row,
            "ratio_to_dlt": round(row["items_per_s"] / dlt_row["items_per_s"], 2),
        }
    finally:
        upstream.stop()


def _dlt(python: str, base_url: str, url: str, repos: list[str]) -> tuple[Process, Any]:
    proc = run_module("tests.bench.dlt_github", [base_url, url, *repos], {**os.environ}, python)
    if proc.returncode != 0:
        raise RuntimeError(f"dlt exited {proc.returncode}:\n{proc.output[-3000:]}")
    return proc, json.loads(proc.output.strip().splitlines()[-1])


async def overlap(bench: Bench, options: Options) -> Rows:
    """Fetch and write overlap: Linear's full import with every upstream answer delayed by
    `--latency`, against fetching alone (every page read, none written) and writing alone (the
    same pages committed, no HTTP). Reading the next page while one commits, the run's pages
    take about max(fetch, write), not their sum (`of_sum`, `of_max`: the page loop's time over
    each)."""
    tracker = TRACKERS["linear"]
    primed = await prime(bench, tracker, options.items, ("full",))
    primed.upstream.latency = options.latency
    try:
        config = tracker.config(primed.upstream.url)
        primed.upstream.phase = "full"
        started = time.perf_counter()
        pages = await _pages(tracker, config)
        fetch_s = time.perf_counter() - started
        async with bench.database("overlap-write") as url:
            write_s = (await _write(url, tracker.type, config, pages, bench)).seconds
        async with bench.database("overlap") as url:
            integration = await add_integration(url, tracker.type, config)
            row = await measured_sync(bench, primed.upstream, "full", url, integration)
    finally:
        primed.upstream.stop()
    # the run's own time (sync_completed's duration: no process start), its pages' loop nearly
    # all of it (no history, no sweep: history_budget 0, a first run)
    run_s = row["run_seconds"]
    yield {
        "name": "overlap-linear",
        "items": options.items,
        **row,
        "latency_s": options.latency,
        "fetch_alone_s": round(fetch_s, 3),
        "write_alone_s": round(write_s, 3),
        "sum_s": round(fetch_s + write_s, 3),
        "max_s": round(max(fetch_s, write_s), 3),
        "of_sum": round(run_s / (fetch_s + write_s), 3),
        "of_max": round(run_s / max(fetch_s, write_s), 3),
        "ratio_to_ceiling": None,
    }


@dataclass
class Written:
    seconds: float
    cpu_s: float  # this process's
    pg_cpu_s: float
    result: worker_sync.RunResult


async def _write(
    url: str, source: str, config: dict[str, Any], pages: list[Page], bench: Bench
) -> Written:
    """The run's own page loop (`write_pages`: the next page made safe to write while one
    commits; one transaction a page) over `pages` into a fresh integration, without HTTP: its
    first run, every scope read for the first time."""
    integration_id = await add_integration(url, source, config)
    conn = await db.connect(url)
    try:
        integration = await get_integration(conn, integration_id)
        assert integration is not None
        result = worker_sync.RunResult(integration_id, "succeeded")
        ceiling = datetime.now(UTC)
        fields = {"integration_id": str(integration_id), "source": source}
        pg0, cpu0 = bench.pg_cpu.seconds(), time.process_time()
        started = time.perf_counter()
        # the run's log as a run has it (its start row goes out with the first page's rows)
        log = runlog.RunLog(
            integration.team_id, runlog.opening(source, fields, ceiling, full=False)
        )
        await worker_sync.write_pages(
            conn, integration, _served(pages), {}, ceiling, result, fields, {}, log,
            first_reads=frozenset(i.scope for page in pages for i in page.items),
        )  # fmt: skip
        seconds = time.perf_counter() - started
        return Written(seconds, time.process_time() - cpu0, bench.pg_cpu.seconds() - pg0, result)
    finally:
        await conn.close()


async def _served(pages: list[Page]) -> AsyncIterator[Page]:
    """Pages held in memory, handed out as a connector hands them."""
    for page in pages:
        yield page


async def write_path(bench: Bench, options: Options) -> Rows:
    """The run's page loop (upsert, activity rows, cursor: one transaction a page, the next page
    made safe to write meanwhile, as a run does) over N GitHub items held in memory, without
    HTTP, vs COPY of the same rows into the same indexes."""
    tracker = TRACKERS["github"]
    sandbox = tracker.sandbox()
    with sandbox:
        tracker.seed(sandbox, options.items)
        config = tracker.config(sandbox.url)
        pages = await _pages(tracker, config)
    async with bench.database("write-path") as url:
        written = await _write(url, tracker.type, config, pages, bench)
        ceiling_row = await copy_ceiling(url, bench.pg_cpu)
    seconds, result = written.seconds, written.result
    rate = result.created / seconds
    yield {
        "name": "write-path",
        "items": options.items,
        "seconds": round(seconds, 3),
        "items_per_s": round(rate, 1),
        "requests": 0,
        "worker_cpu_s": round(written.cpu_s, 3),
        "pg_cpu_s": round(written.pg_cpu_s, 3),
        "peak_rss_mb": None,
        "pages": len(pages),
        "created": result.created,
        **ceiling_row,
        "ratio_to_ceiling": round(rate / ceiling_row["ceiling_rows_per_s"], 3),
    }


async def _pages(tracker: Tracker, config: dict[str, Any]) -> list[Page]:
    """Every page of a full read, through the connector the worker would build."""
    cls = registry.load(tracker.type)
    connector = connecting.build(
        cls,
        connecting.validate_config(cls, config),
        uuid.uuid4(),
        Settings(),
        {},
        deadline=time.monotonic() + 3600,
    )
    try:
        return [page async for page in connector.changes({})]
    finally:
        await connector.aclose()


async def rss(bench: Bench, options: Options) -> Rows:
    """Peak RSS of the worker's full import at each size (`--rss-sizes`), of Linear or of
    GitHub (`--rss-tracker`; GitHub's request spacing off: a million issues are 10,000
    requests, 17 minutes at its default spacing)."""
    tracker = TRACKERS[options.rss_tracker]
    config: dict[str, Any] = {"seconds_between_requests": 0} if tracker.type == "github" else {}
    peaks: dict[int, float] = {}
    for n in options.rss_sizes:
        primed = await prime(bench, tracker, n, ("full",), **config)
        try:
            async with bench.database("rss") as url:
                integration = await add_integration(
                    url, tracker.type, {**tracker.config(primed.upstream.url), **config}
                )
                row = await measured_sync(bench, primed.upstream, "full", url, integration)
        finally:
            primed.upstream.stop()
        peaks[n] = row["peak_rss_mb"]
        yield {"name": f"rss-{tracker.type}-{n}", "items": n, **row, "ratio_to_ceiling": None}
    smallest, largest = min(peaks), max(peaks)
    yield {
        "name": "rss",
        "items": largest,
        "peak_rss_mb": peaks[largest],
        "rss_by_items": {str(k): v for k, v in sorted(peaks.items())},
        "rss_ratio": round(peaks[largest] / peaks[smallest], 3),
    }


async def metrics_rollup(bench: Bench, options: Options) -> Rows:
    """`c9-sync metrics rollup` over N items of 50 teams spread over a year (rows generated by
    SQL), first and again (idempotent); then one run's recompute of a touched day."""
    async with bench.database("metrics") as url:
        conn = await db.connect(url)
        try:
            await _metrics_data(conn, 50, options.items)
        finally:
            await conn.close()
        for label in ("first", "again"):
            pg0 = bench.pg_cpu.seconds()
            proc = bench.worker(url, "metrics", "rollup")
            yield {
                "name": f"metrics-rollup-{label}",
                "items": options.items,
                "seconds": round(proc.seconds, 3),
                "items_per_s": round(options.items / proc.seconds, 1),
                "requests": 0,
                "worker_cpu_s": round(proc.cpu_s, 3),
                "pg_cpu_s": round(bench.pg_cpu.seconds() - pg0, 3),
                "peak_rss_mb": round(proc.peak_rss_mb, 1),
                "ratio_to_ceiling": None,
                "output": proc.output.strip().splitlines()[-1:],
            }
        conn = await db.connect(url)
        try:
            team = await conn.fetchval("SELECT id FROM teams ORDER BY name LIMIT 1")
            stamp, calls = datetime(2025, 6, 15, 12, tzinfo=UTC), 50
            pg0, started = bench.pg_cpu.seconds(), time.perf_counter()
            for _ in range(calls):
                await metrics.recompute_touched(conn, team, [stamp], "UTC")
            seconds = time.perf_counter() - started
            yield {
                "name": "metrics-recompute-one-day",
                "items": options.items,
                "seconds": round(seconds / calls, 5),
                "requests": 0,
                "pg_cpu_s": round((bench.pg_cpu.seconds() - pg0) / calls, 5),
                "ratio_to_ceiling": None,
                "note": "per call: what a sync run pays for a touched day (+ today, yesterday)",
            }
        finally:
            await conn.close()


async def _metrics_data(conn: Any, teams: int, items: int) -> None:
    """Items round-robin over the teams, created over 2025; 70% completed 1-200 h after their
    start, 20% in progress, 10% queued; 1 in 47 completed ones removed upstream. One sync
    activity row per item, and agents' commits (40%) and conflicts (4%)."""
    await conn.execute(
        "INSERT INTO teams (name, product, repo_path) SELECT 'team-' || lpad(g::text, 3, '0'),"
        " 'bench', '/repo' FROM generate_series(1, $1) g",
        teams,
    )
    await conn.execute(
        """
        WITH t AS (SELECT array_agg(id ORDER BY name) AS ids FROM teams)
        INSERT INTO work_items (team_id, external_id, source, title, status, started_at,
                                completed_at, removed_upstream_at)
        SELECT t.ids[1 + g % cardinality(t.ids)], 'B-' || g, 'jira', 'bench item ' || g,
               CASE WHEN k % 10 < 7 THEN 'completed'
                    WHEN k % 10 < 9 THEN 'in_progress' ELSE 'queued' END,
               CASE WHEN k % 10 < 9 THEN s END,
               CASE WHEN k % 10 < 7 THEN s + make_interval(hours => 1 + g % 200) END,
               CASE WHEN k % 47 = 0 AND k % 10 < 7 THEN s + interval '300 hours' END
        FROM t, generate_series(1, $1) g,
             LATERAL (SELECT g / cardinality(t.ids),
                             '2025-01-01'::timestamptz
                             + make_interval(secs => (g::float8 * 31536000 / $1))) AS x(k, s)
        """,
        items,
    )
    await conn.execute(
        """
        INSERT INTO activity_logs (team_id, work_item_id, event_type, message, created_at)
        SELECT team_id, id,
               CASE WHEN n % 25 = 0 THEN 'conflict_detected'
                    WHEN n % 25 < 11 THEN 'commit_created' ELSE 'work_item_updated' END,
               'bench', COALESCE(completed_at, started_at, created_at) - interval '1 hour'
        FROM (SELECT w.*, abs(hashtext(w.external_id)) AS n FROM work_items w) w
        """
    )
    for table in ("work_items", "activity_logs", "teams"):
        await conn.execute(f"VACUUM ANALYZE {table}")


def script(
    name: str, module: str, size_flag: str | None = "--items", integrations: bool = False
) -> Scenario:
    """A benchmark script of its own (`python -m tests.bench.MODULE`), run against a fresh
    database of the suite's server (DATABASE_URL): every line it prints that is a JSON object is
    a row (its `name` defaulting to NAME); then one row named NAME with its wall time, CPU, peak RSS, the
    server's CPU, its exit code and its other output lines."""

    async def scenario(bench: Bench, options: Options) -> Rows:
        args = [size_flag, str(options.items)] if size_flag else []
        if integrations:
            args += ["--integrations", str(options.integrations)]
        async with bench.database(module) as url:
            env = worker_env(url, bench.home)
            env.pop("C9_SYNC_LOG_LEVEL")
            pg0 = bench.pg_cpu.seconds()
            proc = await asyncio.to_thread(run_module, f"tests.bench.{module}", args, env)
            pg_cpu = bench.pg_cpu.seconds() - pg0
        text: list[str] = []
        for line in proc.output.splitlines():
            try:
                row = json.loads(line) if line.startswith("{") else None
            except ValueError:
                row = None
            if isinstance(row, dict):
                yield {"name": name, "items": options.items, **row}
            else:
                text.append(line)
        yield {
            "name": name,
            "items": options.items,
            "seconds": round(proc.seconds, 3),
            "worker_cpu_s": round(proc.cpu_s, 3),
            "pg_cpu_s": round(pg_cpu, 3),
            "peak_rss_mb": round(proc.peak_rss_mb, 1),
            "ratio_to_ceiling": None,
            "returncode": proc.returncode,
            "output": text[-40:],
        }

    return scenario


SCENARIOS: dict[str, Scenario] = {
    "github": _import(TRACKERS["github"]),
    # GitHub without its client-side request spacing (the config's 0): what the worker itself
    # reaches, beside dlt's rest_api source, which does not space its requests
    "github-unspaced": _import(TRACKERS["github"], "github-unspaced", seconds_between_requests=0),
    # The same with the database `--db-latency` away (a managed server's usual distance): what
    # a run's round trips cost, which committing the pages fetched meanwhile together saves
    "github-far-db": _import(
        TRACKERS["github"], "github-far-db", far=True, seconds_between_requests=0
    ),
    "linear": _import(TRACKERS["linear"]),
    "jira": _import(TRACKERS["jira"]),
    "azure_devops": _import(TRACKERS["azure_devops"]),
    "write-path": write_path,
    "dlt-github": dlt_github,
    "overlap": overlap,
    "rss": rss,
    "metrics-rollup": metrics_rollup,
    # Benchmarks with their own scripts (their upstream is the live sandbox, not replayed pages).
    "azure_devops-wiql-cap": script("azure_devops-wiql-cap", "bench_azure_devops"),
    "history-github": script("history-github", "bench_github_history"),
    "history-jira": script("history-jira", "bench_jira_history", "--n"),
    "history-linear": script("history-linear", "bench_linear_history", "--n"),
    "history-azure_devops": script("history-azure_devops", "bench_azure_devops_history"),
    "scheduler": script("scheduler", "bench_scheduler", None, integrations=True),
    "remap": script("remap", "bench_remap"),
}

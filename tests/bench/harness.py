"""The suite's shared machinery: one PostgreSQL server for every scenario, a migrated template
database each scenario copies, integrations, worker runs measured, and the COPY ceiling."""

from __future__ import annotations

import io
import itertools
import json
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tests.bench.measure import PostgresCpu, Process, run_worker, worker_env
from tests.bench.upstream import Upstream
from worker import db, migrate

TEMPLATE = "c9_bench_template"


def url_for(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


@dataclass
class Bench:
    """The server every scenario uses (`url` reaches its `postgres` database)."""

    url: str
    home: Path
    pg_cpu: PostgresCpu
    _names = itertools.count(1)

    async def make_template(self) -> None:
        admin = await asyncpg.connect(self.url)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
            await admin.execute(f"CREATE DATABASE {TEMPLATE}")
        finally:
            await admin.close()
        conn = await db.connect(url_for(self.url, TEMPLATE))
        try:
            await migrate.apply(conn)
        finally:
            await conn.close()

    @asynccontextmanager
    async def database(self, label: str) -> AsyncIterator[str]:
        """A fresh migrated database (a copy of the template), dropped afterwards."""
        name = f"c9_bench_{label.replace('-', '_')}_{next(self._names)}"
        admin = await asyncpg.connect(self.url)
        try:
            # (one a killed run left on a DATABASE_URL server would refuse the CREATE)
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        finally:
            await admin.close()
        try:
            yield url_for(self.url, name)
        finally:
            admin = await asyncpg.connect(self.url)
            try:
                await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            finally:
                await admin.close()

    def worker(self, url: str, *args: str) -> Process:
        return run_worker(list(args), worker_env(url, self.home))


async def add_integration(url: str, type_: str, config: dict[str, Any]) -> uuid.UUID:
    conn = await db.connect(url)
    try:
        team = await conn.fetchval(
            "INSERT INTO teams (name, product, repo_path) VALUES ($1, 'bench', '/r') RETURNING id",
            f"bench-{type_}",
        )
        integration: uuid.UUID = await conn.fetchval(
            "INSERT INTO integrations (team_id, type, config) VALUES ($1, $2, $3) RETURNING id",
            team,
            type_,
            config,
        )
        return integration
    finally:
        await conn.close()


# `c9-sync sync`'s line for a run (worker/sync.py RunResult.summary)
_SUMMARY = re.compile(
    r": ok created=(?P<created>\d+) updated=(?P<updated>\d+) unchanged=(?P<unchanged>\d+)"
    r" removed=(?P<removed>\d+) pages=(?P<pages>\d+) in "
)


async def measured_sync(
    bench: Bench,
    upstream: Upstream,
    phase: str,
    url: str,
    integration: uuid.UUID,
    worker_url: str | None = None,
) -> dict[str, Any]:
    """One `c9-sync sync` of the integration, the upstream replaying `phase`: its figures.
    `worker_url`: the database as the worker reaches it, when not as `url` (delay_proxy)."""
    conn = await db.connect(url)
    try:
        # Rows rewritten: those whose tuple changed (xmin), counted in the server.
        await conn.execute(
            "DROP TABLE IF EXISTS pg_temp.before;"
            " CREATE TEMP TABLE before AS SELECT id, xmin::text AS x FROM work_items"
        )
        activity = await conn.fetchval("SELECT count(*) FROM activity_logs")
        upstream.phase, upstream.requests, upstream.misses = phase, 0, []
        pg0, up0 = bench.pg_cpu.seconds(), time.process_time()
        try:
            proc = bench.worker(
                worker_url or url, "sync", "--integration", str(integration), "--force"
            )
        finally:
            for miss in upstream.misses[:3]:
                print(f"# {phase}: not recorded: {miss}", file=sys.stderr, flush=True)
        pg_cpu, upstream_cpu = bench.pg_cpu.seconds() - pg0, time.process_time() - up0
        rewritten = await conn.fetchval(
            "SELECT count(*) FROM work_items w LEFT JOIN before b USING (id)"
            " WHERE b.x IS DISTINCT FROM w.xmin::text"
        )
        # The run's counts from its summary line (a run that changed nothing writes no
        # sync_completed row), its duration from the sync state, as the run recorded it.
        summary = _SUMMARY.search(proc.output)
        if summary is None:
            raise RuntimeError(f"the {phase} run did not complete:\n{proc.output}")
        end: dict[str, Any] = {k: int(v) for k, v in summary.groupdict().items()}
        end["duration_s"] = round(
            await conn.fetchval(
                "SELECT last_duration_s FROM integration_sync_state WHERE integration_id = $1",
                integration,
            ),
            3,
        )
        activity = await conn.fetchval("SELECT count(*) FROM activity_logs") - activity
    finally:
        await conn.close()
    seen = end["created"] + end["updated"] + end["unchanged"]
    # A first import's rate is of the rows it created (its history phase also updates some).
    rate = (end["created"] or seen) / proc.seconds
    return {
        "seconds": round(proc.seconds, 3),
        "items_per_s": round(rate, 1),
        "requests": upstream.requests,
        "worker_cpu_s": round(proc.cpu_s, 3),
        "pg_cpu_s": round(pg_cpu, 3),
        "peak_rss_mb": round(proc.peak_rss_mb, 1),
        "run_seconds": end["duration_s"],
        "items_read": seen,
        "created": end["created"],
        "updated": end["updated"],
        "pages": end["pages"],
        "rows_rewritten": rewritten,
        "activity_rows": activity,
        "upstream_cpu_s": round(upstream_cpu, 3),
        "upstream_misses": len(upstream.misses),
    }


async def copy_ceiling(url: str, pg_cpu: PostgresCpu, where: str = "TRUE") -> dict[str, Any]:
    """Rows/s of `COPY` of the rows of `work_items` matching `where` into an empty copy of the
    table with the same indexes (LIKE … INCLUDING ALL: indexes, defaults, constraints; not its
    foreign keys nor its triggers, which only fire on UPDATE). The rows are read out first in
    COPY's binary format: only the server's COPY is timed. Its PostgreSQL CPU too: on a loaded
    machine, `pg_cpu_s` against `ceiling_pg_cpu_s` compares work, not waiting."""
    conn = await db.connect(url)
    try:
        await conn.execute(
            "DROP TABLE IF EXISTS work_items_ceiling;"
            " CREATE TABLE work_items_ceiling (LIKE work_items INCLUDING ALL)"
        )
        columns = [
            r["attname"]
            for r in await conn.fetch(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'work_items'::regclass"
                " AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum"
            )
        ]
        data = io.BytesIO()
        await conn.copy_from_query(
            f"SELECT {', '.join(columns)} FROM work_items WHERE {where}",
            output=data,
            format="binary",
        )
        rows = await conn.fetchval(f"SELECT count(*) FROM work_items WHERE {where}")
        data.seek(0)
        pg0, started = pg_cpu.seconds(), time.perf_counter()
        await conn.copy_to_table(
            "work_items_ceiling", source=data, columns=columns, format="binary"
        )
        seconds = time.perf_counter() - started
        cpu = pg_cpu.seconds() - pg0
        await conn.execute("DROP TABLE work_items_ceiling")
    finally:
        await conn.close()
    return {
        "ceiling_rows": rows,
        "ceiling_rows_per_s": round(rows / seconds, 1),
        "ceiling_pg_cpu_s": round(cpu, 3),
    }


def emit(row: dict[str, Any]) -> None:
    print(json.dumps(row), flush=True)

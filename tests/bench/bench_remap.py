"""Benchmark: `c9-sync remap` of one GitHub integration holding N issues with history.

    python tests/bench/bench_remap.py [--items 10000] [--keep]

Uses DATABASE_URL when set (a database `c9_bench_remap` is created on that server and dropped
after), else an embedded PostgreSQL under /tmp. Items are generated inside the server: a third
labelled `doing`, a third closed, each with a creation row and one status change in its history.
Prints the wall time of a remap after a status_map edit (the two thirds still open change:
`doing` -> in_progress, `open` -> blocked), of a second remap (nothing to write), and the
counts each reported.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from worker import db, migrate, remap
from worker.settings import Settings

DB_NAME = "c9_bench_remap"


def url_for(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


async def build(url: str, items: int) -> object:
    conn = await db.connect(url)
    try:
        await migrate.apply(conn, ("core",))
        team = await conn.fetchval(
            "INSERT INTO teams (name, product, repo_path) VALUES ('bench', 'bench', '/r')"
            " RETURNING id"
        )
        integration = await conn.fetchval(
            "INSERT INTO integrations (team_id, type, config) VALUES ($1, 'github',"
            ' \'{"token": "x", "repos": ["o/r"]}\'::jsonb) RETURNING id',
            team,
        )
        await conn.execute(
            """
            INSERT INTO work_items (team_id, integration_id, source, external_id, external_key,
                                    title, status, priority, sync_scope, external_data,
                                    source_updated_at, started_at, completed_at, time_basis)
            SELECT $1, $2, 'github', g::text, 'o/r#' || g, 'Issue ' || g,
                   CASE g % 3 WHEN 0 THEN 'completed' ELSE 'queued' END, 0, 'o/r',
                   jsonb_build_object(
                       'id', g, 'number', g, 'title', 'Issue ' || g,
                       'state', CASE g % 3 WHEN 0 THEN 'closed' ELSE 'open' END,
                       'state_reason', CASE g % 3 WHEN 0 THEN 'completed' END,
                       'labels', CASE g % 3 WHEN 1 THEN '[{"name": "doing"}]'::jsonb
                                 ELSE '[]'::jsonb END,
                       'assignees', '[]'::jsonb,
                       'created_at', '2025-01-01T00:00:00Z',
                       'updated_at', '2025-02-01T00:00:00Z',
                       'closed_at', CASE g % 3 WHEN 0 THEN '2025-01-20T00:00:00Z' END),
                   '2025-02-01T00:00:00Z',
                   CASE g % 3 WHEN 0 THEN '2025-01-20T00:00:00Z'::timestamptz END,
                   CASE g % 3 WHEN 0 THEN '2025-01-20T00:00:00Z'::timestamptz END,
                   CASE g % 3 WHEN 0 THEN 'history' END
            FROM generate_series(1, $3) g
            """,
            team,
            integration,
            items,
        )
        await conn.execute(
            """
            INSERT INTO work_item_history (work_item_id, change_id, field, changed_at,
                from_value, to_value, from_status, to_status, from_default, to_default)
            SELECT id, 'created:' || external_id, 'status', '2025-01-01T00:00:00Z'::timestamptz, NULL, 'open',
                   NULL, 'queued', NULL, 'queued' FROM work_items
            UNION ALL
            SELECT id, 'e' || external_id, 'status', '2025-01-20T00:00:00Z'::timestamptz, 'open', 'completed',
                   'queued', 'completed', 'queued', 'completed'
            FROM work_items WHERE status = 'completed'
            """
        )
        await conn.execute(
            "UPDATE integrations SET config = config"
            ' || \'{"status_map": {"doing": "in_progress", "open": "blocked"}}\''
        )
        return integration
    finally:
        await conn.close()


async def run(server_url: str, items: int, keep: bool) -> None:
    admin = await db.connect(server_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {DB_NAME}")
    finally:
        await admin.close()
    url = url_for(server_url, DB_NAME)
    try:
        integration = await build(url, items)
        pool = await db.create_pool(url, max_size=2)
        settings = Settings(home=Path(tempfile.mkdtemp(prefix="c9-bench-remap-home-")))
        try:
            for label in ("remap after the edit", "second remap"):
                t0 = time.perf_counter()
                result = await remap.remap_integration(pool, integration, settings)  # type: ignore[arg-type]
                print(f"{label}: {time.perf_counter() - t0:.2f} s  {result.summary()}")
        finally:
            await pool.close()
    finally:
        if not keep:
            admin = await db.connect(server_url)
            try:
                await admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
            finally:
                await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    with ExitStack() as stack:
        server_url = os.environ.get("DATABASE_URL")
        if not server_url:
            home = Path(tempfile.mkdtemp(prefix="c9-bench-remap-"))
            stack.callback(shutil.rmtree, home, ignore_errors=True)
            server_url = stack.enter_context(db.embedded_postgres(home / "pgdata"))
        asyncio.run(run(server_url, args.items, args.keep))


if __name__ == "__main__":
    main()

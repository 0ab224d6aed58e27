"""The benchmark suite: one JSON object per scenario row on stdout (progress on stderr).

    python -m tests.bench [--items 10000|100000|1000000] [--scenario NAME ...]
                          [--integrations N] [--rss-sizes 10000,100000]

Every scenario runs against one PostgreSQL server: DATABASE_URL's when set (a database is created
per scenario and dropped after; the server must be local, its CPU is read from its processes),
else an embedded one in a temporary directory. See docs/operations.md, "Benchmarks".
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import connectors
import worker
from tests.bench.harness import Bench, emit
from tests.bench.measure import PostgresCpu
from tests.bench.scenarios import SCENARIOS, Options
from worker import db

DEFAULT = ["github", "linear", "jira", "azure_devops", "write-path", "metrics-rollup"]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--items", type=int, default=10_000, help="items per scenario (10000)")
    parser.add_argument(
        "--scenario",
        nargs="+",
        choices=sorted(SCENARIOS),
        metavar="NAME",
        help=f"scenarios to run (default: {' '.join(DEFAULT)}; also: "
        + " ".join(sorted(set(SCENARIOS) - set(DEFAULT)))
        + ")",
    )
    parser.add_argument(
        "--integrations", type=int, default=1_000, help="integrations (scheduler scenario)"
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.05,
        help="seconds each upstream answer waits in the overlap scenario (0.05)",
    )
    parser.add_argument(
        "--db-latency",
        type=float,
        default=0.0005,
        help="seconds each way between the worker and the database in github-far-db (0.0005)",
    )
    parser.add_argument(
        "--rss-sizes",
        help="comma-separated item counts the rss scenario compares (default: N and 10*N)",
    )
    parser.add_argument(
        "--rss-tracker",
        choices=["linear", "github"],
        default="linear",
        help="whose full import the rss scenario measures (linear)",
    )
    parser.add_argument(
        "--dlt-python",
        help="a Python that has dlt[postgres] (the dlt-github scenario: dlt is not a dependency)",
    )
    return parser.parse_args(argv)


async def run(url: str, home: Path, names: list[str], options: Options) -> None:
    conn = await db.connect(url)
    try:  # (the backend exists while the connection is open)
        pg_cpu = PostgresCpu(await conn.fetchval("SELECT pg_backend_pid()"))
    finally:
        await conn.close()
    bench = Bench(url=url, home=home, pg_cpu=pg_cpu)
    await bench.make_template()
    for name in names:
        started = time.perf_counter()
        print(f"# {name}: running", file=sys.stderr, flush=True)
        async for row in SCENARIOS[name](bench, options):
            emit(row)
        print(f"# {name}: {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)


def compile_project() -> None:
    """Byte-compile the project's packages, as an installed wheel's are: a checkout run with
    PYTHONDONTWRITEBYTECODE (as this machine sets it) would otherwise compile every module of
    the worker in every measured process (~0.1 s of a run), which a deployed worker does not,
    nor do the installed packages a yardstick such as dlt runs from."""
    for package in (worker, connectors):
        compileall.compile_dir(Path(package.__file__).parent, quiet=1)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    compile_project()
    sizes = (
        tuple(int(s) for s in args.rss_sizes.split(","))
        if args.rss_sizes
        else (args.items, 10 * args.items)
    )
    options = Options(
        items=args.items,
        integrations=args.integrations,
        rss_sizes=sizes,
        latency=args.latency,
        db_latency=args.db_latency,
        dlt_python=args.dlt_python,
        rss_tracker=args.rss_tracker,
    )
    with ExitStack() as stack:
        # Directly under /tmp: the embedded server may run as the `pgserver` user, who must be
        # able to reach its data directory.
        home = Path(tempfile.mkdtemp(prefix="c9-bench-"))
        stack.callback(shutil.rmtree, home, ignore_errors=True)
        url = os.environ.get("DATABASE_URL") or stack.enter_context(
            db.embedded_postgres(home / "pgdata")
        )
        asyncio.run(run(url, home, args.scenario or DEFAULT, options))


if __name__ == "__main__":
    main()

"""Session-wide test setup: one PostgreSQL per test session (embedded pgserver, or DATABASE_URL
when set), a template database with every migration applied, and a fresh database per test."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from worker import db, migrate, sync

pytest.register_assert_rewrite("tests.integration.connectors.contract", "tests.helpers")

ALL_SETS = tuple(migrate.SETS)


def url_for(url: str, database: str) -> str:
    """The same server, another database."""
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The server's maintenance URL."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    # Not under pytest's tmp_path: pytest keeps /tmp/pytest-of-<user> at mode 0700, and when run
    # as root pgserver starts PostgreSQL as the `pgserver` user, who must traverse the path.
    home = Path(tempfile.mkdtemp(prefix="c9-sync-test-pg-"))
    try:
        with db.embedded_postgres(home / "pgdata") as url:
            yield url
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_url: str) -> Iterator[str]:
    """A database with every migration set applied; tests clone it (fast and isolated)."""
    name = f"c9_template_{os.getpid()}"

    async def build() -> None:
        await _admin(pg_url, f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
        conn = await db.connect(url_for(pg_url, name))
        try:
            await migrate.apply(conn, ALL_SETS)
        finally:
            await conn.close()

    asyncio.run(build())
    yield name
    asyncio.run(_admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _fresh_database(pg_url: str, template: str | None) -> str:
    name = f"c9_test_{uuid.uuid4().hex[:12]}"
    source = f' TEMPLATE "{template}"' if template else ""
    await _admin(pg_url, f'CREATE DATABASE "{name}"{source}')
    return name


@pytest.fixture
async def db_url(pg_url: str, template_db: str) -> AsyncIterator[str]:
    """URL of a fresh, fully migrated database for this test only."""
    name = await _fresh_database(pg_url, template_db)
    yield url_for(pg_url, name)
    await _admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def empty_db_url(pg_url: str) -> AsyncIterator[str]:
    """URL of a fresh database with no schema at all."""
    name = await _fresh_database(pg_url, None)
    yield url_for(pg_url, name)
    await _admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(db_url, max_size=6)
    yield p
    await p.close()


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await db.connect(db_url)
    yield c
    await c.close()


@pytest.fixture
def a_transaction_a_page(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs commit their pages one by one (one page read ahead), for tests that follow a run
    page by page: the fake tracker answers at once, so a transaction would otherwise take
    every page fetched meanwhile (worker.sync.PAGES_AHEAD)."""
    monkeypatch.setattr(sync, "PAGES_AHEAD", 1)

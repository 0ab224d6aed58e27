"""The work-tracking migration set (seed 000, schema `claude`): fresh install, upgrade of a
pre-Phase-1 schema (and its refusal on bad rows), foreign keys, status registry, short codes."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from worker import db, migrate

WT = ("work-tracking",)

# A claude schema as it was before Phase 1: the four tables with their ids, project_id nullable on
# features/feedback, feature_id on build_tasks/requirements, varchar statuses, no foreign keys,
# short codes or session columns; some tables have a title, some do not. projects and sessions
# exist (shaped like the ones the migration creates when absent, so the catalogs can be compared).
PRE_PHASE_1 = """
CREATE SCHEMA claude;
CREATE TABLE claude.projects (
    project_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE claude.sessions (
    session_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    started_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE claude.features (
    feature_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id UUID,
    title VARCHAR(200),
    status VARCHAR(50) DEFAULT 'draft',
    created_at TIMESTAMPTZ DEFAULT now());
CREATE TABLE claude.feedback (
    feedback_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id UUID,
    description TEXT,
    status VARCHAR(50) DEFAULT 'new',
    created_at TIMESTAMPTZ DEFAULT now());
CREATE TABLE claude.build_tasks (
    task_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    feature_id UUID,
    title TEXT,
    status VARCHAR(50) DEFAULT 'pending',
    created_at TIMESTAMPTZ DEFAULT now());
CREATE TABLE claude.requirements (
    requirement_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    feature_id UUID,
    description TEXT,
    created_at TIMESTAMPTZ DEFAULT now());
"""

# The seed's own "Phase 1" script, verbatim: a user may have run it already.
SEED_PHASE_1 = """
-- Phase 1: FK Constraints for Work Tracking
-- Run against claude schema

-- 1. FEATURES
ALTER TABLE claude.features
  ALTER COLUMN project_id SET NOT NULL,
  ADD COLUMN IF NOT EXISTS created_session_id UUID,
  ADD COLUMN IF NOT EXISTS short_code SERIAL;

ALTER TABLE claude.features
  ADD CONSTRAINT fk_features_project
    FOREIGN KEY (project_id)
    REFERENCES claude.projects(project_id) ON DELETE RESTRICT,
  ADD CONSTRAINT fk_features_session
    FOREIGN KEY (created_session_id)
    REFERENCES claude.sessions(session_id) ON DELETE SET NULL;

-- 2. FEEDBACK
ALTER TABLE claude.feedback
  ALTER COLUMN project_id SET NOT NULL,
  ADD COLUMN IF NOT EXISTS created_session_id UUID,
  ADD COLUMN IF NOT EXISTS short_code SERIAL;

ALTER TABLE claude.feedback
  ADD CONSTRAINT fk_feedback_project
    FOREIGN KEY (project_id)
    REFERENCES claude.projects(project_id) ON DELETE RESTRICT,
  ADD CONSTRAINT fk_feedback_session
    FOREIGN KEY (created_session_id)
    REFERENCES claude.sessions(session_id) ON DELETE SET NULL;

-- 3. BUILD_TASKS
ALTER TABLE claude.build_tasks
  ADD COLUMN IF NOT EXISTS project_id UUID,
  ADD COLUMN IF NOT EXISTS created_session_id UUID,
  ADD COLUMN IF NOT EXISTS short_code SERIAL;

ALTER TABLE claude.build_tasks
  ADD CONSTRAINT fk_build_tasks_feature
    FOREIGN KEY (feature_id)
    REFERENCES claude.features(feature_id) ON DELETE RESTRICT,
  ADD CONSTRAINT fk_build_tasks_project
    FOREIGN KEY (project_id)
    REFERENCES claude.projects(project_id) ON DELETE RESTRICT,
  ADD CONSTRAINT fk_build_tasks_session
    FOREIGN KEY (created_session_id)
    REFERENCES claude.sessions(session_id) ON DELETE SET NULL;

-- 4. REQUIREMENTS
ALTER TABLE claude.requirements
  ADD COLUMN IF NOT EXISTS project_id UUID,
  ADD COLUMN IF NOT EXISTS created_session_id UUID;

ALTER TABLE claude.requirements
  ADD CONSTRAINT fk_requirements_feature
    FOREIGN KEY (feature_id)
    REFERENCES claude.features(feature_id) ON DELETE RESTRICT,
  ADD CONSTRAINT fk_requirements_project
    FOREIGN KEY (project_id)
    REFERENCES claude.projects(project_id) ON DELETE RESTRICT;

-- 5. INDEXES
CREATE INDEX IF NOT EXISTS idx_features_project ON claude.features(project_id);
CREATE INDEX IF NOT EXISTS idx_features_status ON claude.features(status);
CREATE INDEX IF NOT EXISTS idx_feedback_project ON claude.feedback(project_id);
CREATE INDEX IF NOT EXISTS idx_feedback_status ON claude.feedback(status);
CREATE INDEX IF NOT EXISTS idx_build_tasks_feature ON claude.build_tasks(feature_id);
CREATE INDEX IF NOT EXISTS idx_build_tasks_project ON claude.build_tasks(project_id);
"""

SEED_CONSTRAINTS = {
    ("features", "fk_features_project"),
    ("features", "fk_features_session"),
    ("feedback", "fk_feedback_project"),
    ("feedback", "fk_feedback_session"),
    ("build_tasks", "fk_build_tasks_feature"),
    ("build_tasks", "fk_build_tasks_project"),
    ("build_tasks", "fk_build_tasks_session"),
    ("requirements", "fk_requirements_feature"),
    ("requirements", "fk_requirements_project"),
}
SEED_INDEXES = {
    "idx_features_project",
    "idx_features_status",
    "idx_feedback_project",
    "idx_feedback_status",
    "idx_build_tasks_feature",
    "idx_build_tasks_project",
}
SEED_STATUSES = {
    "features": ["draft", "planned", "in_progress", "blocked", "completed", "cancelled"],
    "feedback": ["new", "triaged", "in_progress", "resolved", "wont_fix", "duplicate"],
    "build_tasks": ["pending", "in_progress", "blocked", "completed", "cancelled"],
}

# Everything the catalogs say about schema `claude`, and the migration records: what "the same
# state" means. Data is compared separately.
FINGERPRINT = {
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
               col_description(c.oid, a.attnum)
        FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
        LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'claude'::regnamespace AND c.relkind = 'r'
          AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY 1, 2""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE connamespace = 'claude'::regnamespace ORDER BY 1, 2""",
    "indexes": """
        SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'claude' ORDER BY 1""",
    "triggers": """
        SELECT tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c
        ON c.oid = t.tgrelid WHERE c.relnamespace = 'claude'::regnamespace AND NOT t.tgisinternal
        ORDER BY 1""",
    "functions": """
        SELECT proname, pg_get_functiondef(oid) FROM pg_proc
        WHERE pronamespace = 'claude'::regnamespace ORDER BY 1""",
    "relations": """
        SELECT relname, relkind, obj_description(oid, 'pg_class') FROM pg_class
        WHERE relnamespace = 'claude'::regnamespace ORDER BY 1""",
    "registry": "SELECT * FROM claude.column_registry ORDER BY 1, 2",
    "migrations": """
        SELECT migration_set, version, name, checksum FROM public.schema_migrations
        WHERE migration_set = 'work-tracking' ORDER BY 1, 2""",
}

DATA = {
    "projects": "SELECT * FROM claude.projects ORDER BY project_id",
    "sessions": "SELECT * FROM claude.sessions ORDER BY session_id",
    "features": "SELECT * FROM claude.features ORDER BY feature_id",
    "feedback": "SELECT * FROM claude.feedback ORDER BY feedback_id",
    "build_tasks": "SELECT * FROM claude.build_tasks ORDER BY task_id",
    "requirements": "SELECT * FROM claude.requirements ORDER BY requirement_id",
}


async def fingerprint(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {name: [tuple(r) for r in await conn.fetch(sql)] for name, sql in FINGERPRINT.items()}


async def snapshot(conn: asyncpg.Connection) -> dict[str, Any]:
    """Catalog and data of a pre-Phase-1 database (no registry or migration table yet)."""
    out: dict[str, Any] = {}
    for name in ("columns", "constraints", "indexes", "triggers", "functions", "relations"):
        out[name] = [tuple(r) for r in await conn.fetch(FINGERPRINT[name])]
    for name, sql in DATA.items():
        out[name] = [tuple(r) for r in await conn.fetch(sql)]
    exists = await conn.fetchval("SELECT to_regclass('public.schema_migrations') IS NOT NULL")
    out["migrations"] = (
        await conn.fetchval("SELECT count(*) FROM public.schema_migrations") if exists else -1
    )
    return out


@pytest.fixture
async def old(empty_db_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a database holding a pre-Phase-1 claude schema, without rows."""
    c = await db.connect(empty_db_url)
    await c.execute(PRE_PHASE_1)
    yield c
    await c.close()


async def project(conn: asyncpg.Connection, name: str = "p") -> uuid.UUID:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "INSERT INTO claude.projects (name) VALUES ($1) RETURNING project_id", name
    )


async def session(conn: asyncpg.Connection) -> uuid.UUID:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "INSERT INTO claude.sessions DEFAULT VALUES RETURNING session_id"
    )


async def feature(
    conn: asyncpg.Connection,
    project_id: uuid.UUID,
    title: str = "login",
    session_id: uuid.UUID | None = None,
) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO claude.features (project_id, title, created_session_id) VALUES ($1, $2, $3)"
        " RETURNING *",
        project_id,
        title,
        session_id,
    )


async def feedback(
    conn: asyncpg.Connection, project_id: uuid.UUID, session_id: uuid.UUID | None = None
) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO claude.feedback (project_id, feedback_type, title, created_session_id)"
        " VALUES ($1, 'bug', 'crash', $2) RETURNING *",
        project_id,
        session_id,
    )


async def task(
    conn: asyncpg.Connection, feature_id: uuid.UUID, session_id: uuid.UUID | None = None
) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO claude.build_tasks (feature_id, title, created_session_id)"
        " VALUES ($1, 'write it', $2) RETURNING *",
        feature_id,
        session_id,
    )


async def requirement(
    conn: asyncpg.Connection, feature_id: uuid.UUID, session_id: uuid.UUID | None = None
) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO claude.requirements (feature_id, title, created_session_id)"
        " VALUES ($1, 'it works', $2) RETURNING *",
        feature_id,
        session_id,
    )


# Fresh install ----------------------------------------------------------------------------------


async def test_fresh_install_creates_the_seed_schema(empty_db_url: str) -> None:
    conn = await db.connect(empty_db_url)
    try:
        applied = await migrate.apply(conn, WT)
        assert [m.name for m in applied] == [m.name for m in migrate.discover("work-tracking")]
        tables = {
            r[0]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'claude'")
        }
        assert tables == {
            "projects",
            "sessions",
            "features",
            "feedback",
            "build_tasks",
            "requirements",
            "column_registry",
        }
        constraints = {
            (r[0], r[1])
            for r in await conn.fetch(
                "SELECT conrelid::regclass::text, conname FROM pg_constraint"
                " WHERE connamespace = 'claude'::regnamespace"
            )
        }
        assert {(f"claude.{t}", n) for t, n in SEED_CONSTRAINTS} <= constraints
        assert {
            ("claude.requirements", "fk_requirements_session"),
            ("claude.features", "features_short_code_key"),
            ("claude.feedback", "feedback_short_code_key"),
            ("claude.build_tasks", "build_tasks_short_code_key"),
        } <= constraints
        indexes = {
            r[0]
            for r in await conn.fetch(
                "SELECT indexname FROM pg_indexes WHERE schemaname = 'claude'"
            )
        }
        assert indexes >= SEED_INDEXES
        fks = {
            r["conname"]: r["def"]
            for r in await conn.fetch(
                "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint"
                " WHERE connamespace = 'claude'::regnamespace AND contype = 'f'"
            )
        }
        assert "ON DELETE RESTRICT" in fks["fk_features_project"]
        assert "ON DELETE SET NULL" in fks["fk_features_session"]
        assert "ON DELETE RESTRICT" in fks["fk_build_tasks_feature"]
        assert "ON DELETE SET NULL" in fks["fk_requirements_session"]
        not_null = {
            (r[0], r[1])
            for r in await conn.fetch(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = 'claude' AND is_nullable = 'NO'"
            )
        }
        for table in ("features", "feedback", "build_tasks", "requirements"):
            assert (table, "project_id") in not_null
            assert (table, "created_session_id") not in not_null
        registry = {
            (r["table_name"], r["column_name"]): r["valid_values"]
            for r in await conn.fetch("SELECT * FROM claude.column_registry")
        }
        for table, values in SEED_STATUSES.items():
            assert registry[(table, "status")] == values
        assert await migrate.apply(conn, WT) == []
    finally:
        await conn.close()


async def test_work_tracking_is_not_installed_without_being_asked(empty_db_url: str) -> None:
    conn = await db.connect(empty_db_url)
    try:
        await migrate.apply(conn)  # the default: core only
        assert await conn.fetchval("SELECT to_regnamespace('claude')") is None
        assert [m.migration_set for m in await migrate.pending(conn, ("core", *WT))] == [
            "work-tracking"
        ] * len(migrate.discover("work-tracking"))
    finally:
        await conn.close()


async def test_registry_defaults_are_the_columns_defaults(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        "SELECT r.table_name, r.column_name, r.default_value, c.column_default"
        " FROM claude.column_registry r JOIN information_schema.columns c"
        " ON c.table_schema = 'claude' AND c.table_name = r.table_name"
        " AND c.column_name = r.column_name ORDER BY 1, 2"
    )
    assert len(rows) == 4
    for r in rows:
        expected = None if r["default_value"] is None else f"'{r['default_value']}'::text"
        assert r["column_default"] == expected, (r["table_name"], r["column_name"])


# Upgrade of a pre-Phase-1 schema ------------------------------------------------------------------


async def test_upgrade_ends_in_the_same_state_as_a_fresh_install(
    old: asyncpg.Connection, db_url: str
) -> None:
    p = await project(old)
    f = await old.fetchval(
        "INSERT INTO claude.features (project_id, title, status) VALUES ($1, 'x', 'planned')"
        " RETURNING feature_id",
        p,
    )
    await old.execute("INSERT INTO claude.build_tasks (feature_id, title) VALUES ($1, 't')", f)
    await migrate.apply(old, WT)
    upgraded = await fingerprint(old)

    fresh = await db.connect(db_url)  # the template: every migration set, from scratch
    try:
        installed = await fingerprint(fresh)
    finally:
        await fresh.close()

    assert len(installed["columns"]) > 50
    assert len(installed["triggers"]) >= 10
    for part in FINGERPRINT:
        assert upgraded[part] == installed[part], part


async def test_upgrade_after_the_seeds_own_script_ends_in_the_same_state(
    old: asyncpg.Connection, db_url: str
) -> None:
    p = await project(old)
    f = await old.fetchval(
        "INSERT INTO claude.features (project_id, title) VALUES ($1, 'x') RETURNING feature_id", p
    )
    await old.execute("INSERT INTO claude.build_tasks (feature_id, title) VALUES ($1, 't')", f)
    await old.execute(SEED_PHASE_1)
    await migrate.apply(old, WT)
    upgraded = await fingerprint(old)
    fresh = await db.connect(db_url)
    try:
        installed = await fingerprint(fresh)
    finally:
        await fresh.close()
    for part in FINGERPRINT:
        assert upgraded[part] == installed[part], part
    assert await old.fetchval("SELECT code FROM claude.build_tasks") == "BT1"


async def test_upgrade_keeps_rows_backfills_projects_and_numbers_in_creation_order(
    old: asyncpg.Connection,
) -> None:
    p1, p2 = await project(old, "one"), await project(old, "two")
    # Inserted (so stored) in an order that is not their creation order.
    features = {}
    for title, day, proj in (("c", 3, p1), ("a", 1, p2), ("b", 2, p1), ("d", 4, p2)):
        features[title] = await old.fetchval(
            "INSERT INTO claude.features (project_id, title, status, created_at)"
            " VALUES ($1, $2, 'in_progress', '2025-01-01'::timestamptz + $3 * interval '1 day')"
            " RETURNING feature_id",
            proj,
            title,
            day,
        )
    # Two feedback rows created at the same instant: the id breaks the tie.
    ids = sorted([uuid.uuid4(), uuid.uuid4()])
    for fid in reversed(ids):
        await old.execute(
            "INSERT INTO claude.feedback (feedback_id, project_id, description, status, created_at)"
            " VALUES ($1, $2, 'it broke', 'triaged', '2025-02-01')",
            fid,
            p2,
        )
    t_late = await old.fetchval(
        "INSERT INTO claude.build_tasks (feature_id, title, created_at)"
        " VALUES ($1, 'late', '2025-03-02') RETURNING task_id",
        features["a"],
    )
    t_early = await old.fetchval(
        "INSERT INTO claude.build_tasks (feature_id, title, status, created_at)"
        " VALUES ($1, 'early', 'blocked', '2025-03-01') RETURNING task_id",
        features["b"],
    )
    r = await old.fetchval(
        "INSERT INTO claude.requirements (feature_id, description) VALUES ($1, 'must log in')"
        " RETURNING requirement_id",
        features["d"],
    )

    await migrate.apply(old, WT)

    rows = await old.fetch(
        "SELECT title, code, short_code, status FROM claude.features ORDER BY short_code"
    )
    assert [(x["title"], x["code"]) for x in rows] == [
        ("a", "F1"),
        ("b", "F2"),
        ("c", "F3"),
        ("d", "F4"),
    ]
    assert {x["status"] for x in rows} == {"in_progress"}
    fb = await old.fetch(
        "SELECT feedback_id, code, title, feedback_type, status FROM claude.feedback"
    )
    assert sorted((x["feedback_id"], x["code"]) for x in fb) == [(ids[0], "FB1"), (ids[1], "FB2")]
    assert {(x["title"], x["feedback_type"], x["status"]) for x in fb} == {
        ("(untitled)", "other", "triaged")
    }
    tasks = {
        x["task_id"]: x
        for x in await old.fetch("SELECT task_id, code, project_id, status FROM claude.build_tasks")
    }
    assert (tasks[t_early]["code"], tasks[t_late]["code"]) == ("BT1", "BT2")
    assert tasks[t_early]["project_id"] == p1  # from feature b
    assert tasks[t_late]["project_id"] == p2  # from feature a
    assert (tasks[t_early]["status"], tasks[t_late]["status"]) == ("blocked", "pending")
    req = await old.fetchrow("SELECT * FROM claude.requirements WHERE requirement_id = $1", r)
    assert (req["project_id"], req["title"], req["description"]) == (
        p2,
        "(untitled)",
        "must log in",
    )
    # The varchar statuses became text; new rows continue the numbering.
    assert (
        await old.fetchval(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = 'claude'"
            " AND table_name = 'features' AND column_name = 'status'"
        )
        == "text"
    )
    assert (await feature(old, p1, "e"))["code"] == "F5"
    assert (await feedback(old, p1))["code"] == "FB3"
    assert (await task(old, features["c"]))["code"] == "BT3"


async def test_upgrade_continues_after_codes_the_seeds_serial_handed_out(
    old: asyncpg.Connection,
) -> None:
    # The seed's own script ran halfway: short_code SERIAL, and the rows with the highest codes
    # were deleted since. Their codes are in old branch names: they must not come back.
    await old.execute("ALTER TABLE claude.features ADD COLUMN short_code SERIAL")
    p = await project(old)
    for title in ("a", "b", "c", "d"):
        await old.execute(
            "INSERT INTO claude.features (project_id, title) VALUES ($1, $2)", p, title
        )
    await old.execute("DELETE FROM claude.features WHERE title IN ('c', 'd')")

    await migrate.apply(old, WT)

    codes = [r[0] for r in await old.fetch("SELECT code FROM claude.features ORDER BY short_code")]
    assert codes == ["F1", "F2"]
    assert (await feature(old, p, "e"))["code"] == "F5"
    assert (
        await old.fetchval(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'claude'::regnamespace"
            " AND relkind = 'S' AND relname LIKE 'features%'"
        )
        == 1
    )


BAD_ROWS = {
    # kind: (setup, SQL making one bad row and returning its id, its line after "claude.")
    "feature without project": (
        None,
        "INSERT INTO claude.features (title) VALUES ('orphan') RETURNING feature_id",
        "features {id}: project_id is NULL",
    ),
    "feedback without project": (
        None,
        "INSERT INTO claude.feedback (description) VALUES ('x') RETURNING feedback_id",
        "feedback {id}: project_id is NULL",
    ),
    "feature of a missing project": (
        None,
        "INSERT INTO claude.features (project_id, title)"
        " VALUES ('00000000-0000-0000-0000-000000000001', 'x') RETURNING feature_id",
        "features {id}: project_id 00000000-0000-0000-0000-000000000001 is not in claude.projects",
    ),
    "build task of a missing feature": (
        None,
        "INSERT INTO claude.build_tasks (feature_id, title)"
        " VALUES ('00000000-0000-0000-0000-000000000002', 'x') RETURNING task_id",
        "build_tasks {id}: feature_id 00000000-0000-0000-0000-000000000002"
        " is not in claude.features",
    ),
    "build task without feature": (
        None,
        "INSERT INTO claude.build_tasks (title) VALUES ('x') RETURNING task_id",
        "build_tasks {id}: feature_id is NULL",
    ),
    "requirement of a missing feature": (
        None,
        "INSERT INTO claude.requirements (feature_id)"
        " VALUES ('00000000-0000-0000-0000-000000000003') RETURNING requirement_id",
        "requirements {id}: feature_id 00000000-0000-0000-0000-000000000003"
        " is not in claude.features",
    ),
    "invalid feature status": (
        None,
        "INSERT INTO claude.features (project_id, title, status)"
        " SELECT project_id, 'x', 'done' FROM claude.projects RETURNING feature_id",
        "features {id}: status 'done' is not one of: draft, planned, in_progress, blocked,"
        " completed, cancelled",
    ),
    "invalid feedback status": (
        None,
        "INSERT INTO claude.feedback (project_id, status)"
        " SELECT project_id, 'open' FROM claude.projects RETURNING feedback_id",
        "feedback {id}: status 'open' is not one of: new, triaged, in_progress, resolved,"
        " wont_fix, duplicate",
    ),
    "invalid build task status": (
        None,
        "INSERT INTO claude.build_tasks (feature_id, title, status)"
        " SELECT feature_id, 'x', 'Done' FROM claude.features RETURNING task_id",
        "build_tasks {id}: status 'Done' is not one of: pending, in_progress, blocked,"
        " completed, cancelled",
    ),
    # Columns the migration adds may already exist (partly upgraded schemas): checked as well.
    "task in another project than its feature's": (
        "ALTER TABLE claude.build_tasks ADD COLUMN project_id UUID;"
        "INSERT INTO claude.projects (project_id, name)"
        " VALUES ('00000000-0000-0000-0000-000000000004', 'other')",
        "INSERT INTO claude.build_tasks (feature_id, project_id, title)"
        " SELECT feature_id, '00000000-0000-0000-0000-000000000004', 'x' FROM claude.features"
        " RETURNING task_id",
        "build_tasks {id}: project_id 00000000-0000-0000-0000-000000000004 differs from its"
        " feature's project_id {project}",
    ),
    "link to a missing session": (
        "ALTER TABLE claude.requirements ADD COLUMN created_session_id UUID",
        "INSERT INTO claude.requirements (feature_id, created_session_id)"
        " SELECT feature_id, '00000000-0000-0000-0000-000000000005' FROM claude.features"
        " RETURNING requirement_id",
        "requirements {id}: created_session_id 00000000-0000-0000-0000-000000000005"
        " is not in claude.sessions",
    ),
    "empty title": (
        None,
        "INSERT INTO claude.features (project_id, title) SELECT project_id, '  '"
        " FROM claude.projects RETURNING feature_id",
        "features {id}: title is empty",
    ),
    "invalid feedback type": (
        "ALTER TABLE claude.feedback ADD COLUMN feedback_type TEXT",
        "INSERT INTO claude.feedback (project_id, feedback_type, status)"
        " SELECT project_id, 'rant', 'new' FROM claude.projects RETURNING feedback_id",
        "feedback {id}: feedback_type 'rant' is not one of: bug, idea, improvement, question,"
        " other",
    ),
    "NULL build task status": (
        None,
        "INSERT INTO claude.build_tasks (feature_id, title, status)"
        " SELECT feature_id, 'x', NULL FROM claude.features RETURNING task_id",
        "build_tasks {id}: status is NULL",
    ),
}


@pytest.mark.parametrize("kind", list(BAD_ROWS))
async def test_upgrade_is_refused_on_a_bad_row_and_changes_nothing(
    old: asyncpg.Connection, kind: str
) -> None:
    p = await project(old)
    f = await old.fetchval(
        "INSERT INTO claude.features (project_id, title) VALUES ($1, 'good') RETURNING feature_id",
        p,
    )
    await old.execute("INSERT INTO claude.build_tasks (feature_id, title) VALUES ($1, 'good')", f)
    setup, sql, line = BAD_ROWS[kind]
    if setup:
        await old.execute(setup)
    bad_id = await old.fetchval(sql)
    before = await snapshot(old)

    with pytest.raises(migrate.MigrationError) as caught:
        await migrate.apply(old, WT)

    message = str(caught.value)
    assert "0001_work_tracking.sql failed: work-tracking refused" in message
    assert "1 problem(s)" in message
    assert "claude." + line.format(id=bad_id, project=p) in message
    assert "nothing was changed" in message
    after = await snapshot(old)
    assert after.pop("migrations") == 0  # the table exists (the runner made it), no row in it
    assert before.pop("migrations") == -1
    assert after == before
    assert await old.fetchval("SELECT to_regclass('claude.column_registry')") is None


async def test_refusal_lists_twenty_rows_and_counts_the_rest(old: asyncpg.Connection) -> None:
    await old.execute(
        "INSERT INTO claude.features (title, created_at)"
        " SELECT 'f' || i, '2025-01-01'::timestamptz + i * interval '1 hour'"
        " FROM generate_series(1, 23) i"
    )
    await old.execute("INSERT INTO claude.feedback (status) VALUES ('open')")  # 24 + 1 problems

    with pytest.raises(migrate.MigrationError) as caught:
        await migrate.apply(old, WT)

    message = str(caught.value)
    assert "25 problem(s)" in message
    # Each line names one row; 20 distinct rows are listed (the runner may repeat the detail).
    listed = set(re.findall(r"claude\.features [0-9a-f-]{36}: project_id is NULL", message))
    assert len(listed) == 20
    assert "... and 5 more" in message
    assert "claude.feedback" not in message  # 21st to 25th: not listed


async def test_refusal_names_a_column_of_another_type(old: asyncpg.Connection) -> None:
    await old.execute("ALTER TABLE claude.features ADD COLUMN priority TEXT")
    with pytest.raises(
        migrate.MigrationError,
        match=r"claude\.features: column priority has type text; expected integer",
    ):
        await migrate.apply(old, WT)
    assert await old.fetchval("SELECT to_regclass('claude.column_registry')") is None


async def test_upgrade_on_an_empty_pre_phase_1_schema(old: asyncpg.Connection) -> None:
    await migrate.apply(old, WT)
    p = await project(old)
    assert (await feature(old, p))["code"] == "F1"


# Foreign keys -----------------------------------------------------------------------------------


async def test_deleting_a_project_with_work_is_refused(conn: asyncpg.Connection) -> None:
    p1, p2, p3 = await project(conn), await project(conn), await project(conn)
    await feature(conn, p1)
    await feedback(conn, p2)
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="fk_features_project"):
        await conn.execute("DELETE FROM claude.projects WHERE project_id = $1", p1)
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="fk_feedback_project"):
        await conn.execute("DELETE FROM claude.projects WHERE project_id = $1", p2)
    assert await conn.fetchval("SELECT count(*) FROM claude.projects") == 3
    assert await conn.execute("DELETE FROM claude.projects WHERE project_id = $1", p3) == "DELETE 1"


async def test_deleting_a_feature_with_tasks_or_requirements_is_refused(
    conn: asyncpg.Connection,
) -> None:
    p = await project(conn)
    f1, f2 = (await feature(conn, p))["feature_id"], (await feature(conn, p))["feature_id"]
    await task(conn, f1)
    await requirement(conn, f2)
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="build_tasks"):
        await conn.execute("DELETE FROM claude.features WHERE feature_id = $1", f1)
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="requirements"):
        await conn.execute("DELETE FROM claude.features WHERE feature_id = $1", f2)


async def test_deleting_a_session_nulls_the_links(conn: asyncpg.Connection) -> None:
    p, s, keep = await project(conn), await session(conn), await session(conn)
    f = await feature(conn, p, session_id=s)
    fb = await feedback(conn, p, session_id=s)
    t = await task(conn, f["feature_id"], session_id=s)
    r = await requirement(conn, f["feature_id"], session_id=s)
    other = await feature(conn, p, session_id=keep)

    assert await conn.execute("DELETE FROM claude.sessions WHERE session_id = $1", s) == "DELETE 1"

    for table, key, row in (
        ("features", "feature_id", f),
        ("feedback", "feedback_id", fb),
        ("build_tasks", "task_id", t),
        ("requirements", "requirement_id", r),
    ):
        after = await conn.fetchrow(f"SELECT * FROM claude.{table} WHERE {key} = $1", row[key])
        assert after is not None, table
        assert after["created_session_id"] is None, table
    assert (
        await conn.fetchval(
            "SELECT created_session_id FROM claude.features WHERE feature_id = $1",
            other["feature_id"],
        )
        == keep
    )


async def test_a_task_belongs_to_its_features_project(conn: asyncpg.Connection) -> None:
    p1, p2 = await project(conn), await project(conn)
    f1, f2 = await feature(conn, p1), await feature(conn, p2)
    t = await task(conn, f1["feature_id"])
    r = await requirement(conn, f1["feature_id"])
    assert (t["project_id"], r["project_id"]) == (p1, p1)

    with pytest.raises(asyncpg.ForeignKeyViolationError, match="fk_build_tasks_feature_project"):
        await conn.execute(
            "INSERT INTO claude.build_tasks (feature_id, project_id, title) VALUES ($1, $2, 'x')",
            f1["feature_id"],
            p2,
        )
    with pytest.raises(asyncpg.ForeignKeyViolationError, match=r"is not in claude\.features"):
        await conn.execute(
            "INSERT INTO claude.build_tasks (feature_id, title) VALUES ($1, 'x')", uuid.uuid4()
        )
    # Moving the task to another feature moves it to that feature's project.
    await conn.execute(
        "UPDATE claude.build_tasks SET feature_id = $2 WHERE task_id = $1",
        t["task_id"],
        f2["feature_id"],
    )
    assert (
        await conn.fetchval(
            "SELECT project_id FROM claude.build_tasks WHERE task_id = $1", t["task_id"]
        )
        == p2
    )
    # Moving a feature to another project moves its requirements with it.
    await conn.execute(
        "UPDATE claude.features SET project_id = $2 WHERE feature_id = $1", f1["feature_id"], p2
    )
    assert (
        await conn.fetchval(
            "SELECT project_id FROM claude.requirements WHERE requirement_id = $1",
            r["requirement_id"],
        )
        == p2
    )


# Status registry --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "column", "bad"),
    [
        ("features", "status", "done"),
        ("feedback", "status", "closed"),
        ("build_tasks", "status", "COMPLETED"),
        ("feedback", "feedback_type", "complaint"),
    ],
)
async def test_an_invalid_value_is_refused_and_the_error_lists_the_valid_ones(
    conn: asyncpg.Connection, table: str, column: str, bad: str
) -> None:
    p = await project(conn)
    f = await feature(conn, p)
    rows = {
        "features": f,
        "feedback": await feedback(conn, p),
        "build_tasks": await task(conn, f["feature_id"]),
    }
    key = {"features": "feature_id", "feedback": "feedback_id", "build_tasks": "task_id"}[table]
    valid = await conn.fetchval(
        "SELECT valid_values FROM claude.column_registry WHERE table_name = $1 AND column_name = $2",
        table,
        column,
    )
    before = await conn.fetchval(f"SELECT count(*) FROM claude.{table}")

    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await conn.execute(
            f"UPDATE claude.{table} SET {column} = $2 WHERE {key} = $1", rows[table][key], bad
        )
    assert caught.value.message == (
        f"invalid {column} '{bad}' for claude.{table}: valid values are {', '.join(valid)}"
    )
    assert (caught.value.table_name, caught.value.column_name) == (table, column)
    assert caught.value.hint == "The valid values are listed in claude.column_registry."

    parent = {"build_tasks": ("feature_id", f["feature_id"])}.get(table, ("project_id", p))
    defaults = {"feedback_type": "bug", "status": "new"} if table == "feedback" else {}
    values = {**defaults, column: bad}
    with pytest.raises(asyncpg.CheckViolationError, match="valid values are"):
        await conn.execute(
            f"INSERT INTO claude.{table} ({parent[0]}, title, {', '.join(values)})"
            f" VALUES ($1, 'x', {', '.join(f'${i}' for i in range(2, len(values) + 2))})",
            parent[1],
            *values.values(),
        )
    assert await conn.fetchval(f"SELECT count(*) FROM claude.{table}") == before
    for good in valid:
        await conn.execute(
            f"UPDATE claude.{table} SET {column} = $2 WHERE {key} = $1", rows[table][key], good
        )


async def test_the_registry_cannot_drift_from_the_data(conn: asyncpg.Connection) -> None:
    p = await project(conn)
    f = await feature(conn, p)
    await conn.execute(
        "UPDATE claude.features SET status = 'blocked' WHERE feature_id = $1", f["feature_id"]
    )
    with pytest.raises(asyncpg.CheckViolationError, match="has rows with blocked"):
        await conn.execute(
            "UPDATE claude.column_registry SET valid_values = array_remove(valid_values, 'blocked')"
            " WHERE table_name = 'features' AND column_name = 'status'"
        )
    with pytest.raises(asyncpg.RestrictViolationError, match="cannot be deleted"):
        await conn.execute(
            "DELETE FROM claude.column_registry WHERE table_name = 'features' AND column_name = 'status'"
        )
    # Adding a value is an UPDATE of the registry, and takes effect at once.
    await conn.execute(
        "UPDATE claude.column_registry SET valid_values = valid_values || 'review'::text"
        " WHERE table_name = 'features' AND column_name = 'status'"
    )
    await conn.execute(
        "UPDATE claude.features SET status = 'review' WHERE feature_id = $1", f["feature_id"]
    )
    assert (
        await conn.fetchval(
            "SELECT status FROM claude.features WHERE feature_id = $1", f["feature_id"]
        )
        == "review"
    )


# Short codes ------------------------------------------------------------------------------------


async def test_codes_are_unique_under_eight_concurrent_inserters(db_url: str) -> None:
    conns = [await db.connect(db_url) for _ in range(8)]
    try:
        p = await project(conns[0])
        f = await feature(conns[0], p)

        async def inserter(c: asyncpg.Connection) -> list[tuple[str, str]]:
            out = []
            for _ in range(25):
                async with c.transaction():
                    a = await c.fetchval(
                        "INSERT INTO claude.features (project_id, title) VALUES ($1, 'x') RETURNING code",
                        p,
                    )
                    await asyncio.sleep(0)
                    b = await c.fetchval(
                        "INSERT INTO claude.build_tasks (feature_id, title) VALUES ($1, 'x') RETURNING code",
                        f["feature_id"],
                    )
                out.append((a, b))
            return out

        results = await asyncio.gather(*(inserter(c) for c in conns))
        codes = [pair for result in results for pair in result]
        features = {a for a, _ in codes}
        tasks = {b for _, b in codes}
        assert len(features) == len(tasks) == 200
        assert features == {f"F{i}" for i in range(2, 202)}  # F1 is the feature made first
        assert tasks == {f"BT{i}" for i in range(1, 201)}
        assert await conns[0].fetchval(
            "SELECT count(DISTINCT code) = count(*) FROM claude.features"
        )
    finally:
        for c in conns:
            await c.close()


async def test_codes_are_never_reused_nor_written_by_clients(conn: asyncpg.Connection) -> None:
    p = await project(conn)
    f1, f2 = await feature(conn, p), await feature(conn, p)
    await conn.execute("DELETE FROM claude.features WHERE feature_id = $1", f2["feature_id"])
    assert (await feature(conn, p))["code"] == "F3"
    with pytest.raises(asyncpg.GeneratedAlwaysError):
        await conn.execute(
            "INSERT INTO claude.features (project_id, title, short_code) VALUES ($1, 'x', 2)", p
        )
    with pytest.raises(asyncpg.GeneratedAlwaysError):
        await conn.execute(
            "UPDATE claude.features SET short_code = 2 WHERE feature_id = $1", f1["feature_id"]
        )
    with pytest.raises(asyncpg.GeneratedAlwaysError):
        await conn.execute(
            "UPDATE claude.features SET code = 'F9' WHERE feature_id = $1", f1["feature_id"]
        )
    assert [r[0] for r in await conn.fetch("SELECT code FROM claude.features ORDER BY 1")] == [
        "F1",
        "F3",
    ]


async def test_lookup_by_code_or_branch_name(conn: asyncpg.Connection) -> None:
    p = await project(conn)
    features = [await feature(conn, p, f"f{i}") for i in range(12)]  # F1..F12
    fb = await feedback(conn, p)
    bt = await task(conn, features[0]["feature_id"])
    f12 = features[11]

    async def lookup(ref: str) -> list[tuple[str, uuid.UUID, str]]:
        rows = await conn.fetch("SELECT * FROM claude.lookup_code($1)", ref)
        return [(r["item_type"], r["item_id"], r["code"]) for r in rows]

    assert await lookup("F12") == [("features", f12["feature_id"], "F12")]
    assert await lookup("feature/F12-login") == [("features", f12["feature_id"], "F12")]
    assert await lookup("feature/f12_login") == [("features", f12["feature_id"], "F12")]
    assert await lookup("fix/FB1-crash") == [("feedback", fb["feedback_id"], "FB1")]
    assert await lookup("bt1") == [("build_tasks", bt["task_id"], "BT1")]
    assert await lookup("feature/F1") == [("features", features[0]["feature_id"], "F1")]
    row = await conn.fetchrow("SELECT * FROM claude.lookup_code('F12')")
    assert (row["project_id"], row["title"], row["status"]) == (p, "f11", "draft")
    for nothing in (
        "F13",
        "feature/F123-x",
        "feature/F12x",
        "xF12",
        "main",
        "release/1.2",
        "FB2",
        "",
    ):
        assert await lookup(nothing) == [], nothing
    assert await conn.fetchval("SELECT count(*) FROM claude.lookup_code(NULL)") == 0


async def test_updated_at_moves_only_on_a_real_change(conn: asyncpg.Connection) -> None:
    p = await project(conn)
    f = await feature(conn, p)
    async with conn.transaction():
        await conn.execute(
            "UPDATE claude.features SET title = title WHERE feature_id = $1", f["feature_id"]
        )
        same = await conn.fetchval(
            "SELECT updated_at FROM claude.features WHERE feature_id = $1", f["feature_id"]
        )
    assert same == f["updated_at"]
    await conn.execute(
        "UPDATE claude.features SET title = 'new' WHERE feature_id = $1", f["feature_id"]
    )
    moved = await conn.fetchval(
        "SELECT updated_at FROM claude.features WHERE feature_id = $1", f["feature_id"]
    )
    assert moved > f["updated_at"]

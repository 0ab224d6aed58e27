-- work-tracking 0001: the work-tracking schema of seed 000_2eb9b1f9cbbf7a28 ("Phase 1": foreign
-- keys, session links and short codes on features, feedback, build_tasks and requirements, plus the
-- status registry), in schema `claude`. Optional: installed by `c9-sync migrate --with work-tracking`.
--
-- Two starting points, one path. Users have either no `claude` schema at all, or one whose four
-- tables predate the constraints ("pre-Phase-1", below). Both must end in the same state, so there
-- is no separate "fresh" script: every table is created with its key only when absent
-- (CREATE TABLE IF NOT EXISTS), then brought to its final shape by the same guarded statements
-- (ADD COLUMN IF NOT EXISTS, SET DEFAULT, SET NOT NULL, constraints added only when absent:
-- PostgreSQL has no ADD CONSTRAINT IF NOT EXISTS). A fresh install runs exactly what an upgrade
-- runs; the tests compare the two catalogs.
--
-- Pre-Phase-1 means: claude.projects(project_id uuid PRIMARY KEY) and claude.sessions(session_id
-- uuid PRIMARY KEY) exist with whatever else they hold (they belong to the wider claude schema and
-- are only created, minimal, when absent); features(feature_id) and feedback(feedback_id) with a
-- nullable project_id; build_tasks(task_id) and requirements(requirement_id) with feature_id;
-- status columns (text or varchar) on features, feedback and build_tasks; usually created_at; no
-- foreign keys, short codes or session columns. Any of the columns this file adds may already be
-- there (for example from running the seed's own script): they are checked and kept.
--
-- Step 0 (preflight) runs before anything changes: it locks the tables, then lists every existing
-- row that the new constraints would refuse (NULL project_id, a feature_id or project_id that points
-- nowhere, a task whose project differs from its feature's, an invalid status, an empty title, ...)
-- and every column of an unexpected type. If there is any, it raises with the list (table, id,
-- problem; the first 20 and "and N more"). The whole file is one transaction, so a refusal leaves
-- the database exactly as it was. The operator fixes the rows and runs migrate again.
--
-- Changes from the seed, and why:
--  * short_code: the seed's `ADD COLUMN IF NOT EXISTS short_code SERIAL` numbers existing rows in
--    physical order (not creation order), is not unique (a SERIAL is only a default: an explicit
--    value or a reset sequence duplicates a code) and can be overwritten. Here it is an identity
--    column GENERATED ALWAYS (clients cannot write or change it, so a code once handed out is never
--    reused: the sequence only moves forward, also past deleted rows), existing rows are numbered
--    by (created_at, id) before the identity takes over at max + 1, and a UNIQUE constraint makes
--    uniqueness a fact rather than a hope. `code` ('F12', 'FB3', 'BT7') is a stored generated
--    column, so every reader sees the same text; claude.lookup_code() finds a row from a code or a
--    git branch name (feature/F12-login).
--  * build_tasks.feature_id and requirements.feature_id are NOT NULL: the seed gives these tables
--    their project only "via feature", so a row without a feature would have no project. Their
--    project_id is NOT NULL too, copied from the feature by a trigger when the client leaves it out,
--    and kept equal to the feature's by a second foreign key on (feature_id, project_id) (ON UPDATE
--    CASCADE: moving a feature to another project moves its tasks and requirements with it).
--  * requirements.created_session_id gets its foreign key (the seed added the column but forgot the
--    constraint, although its table says requirements link to sessions).
--  * Indexes beyond the seed's: every foreign-key column that a parent's DELETE must search
--    (requirements.feature_id and project_id; created_session_id everywhere, partial because most
--    rows have none), and build_tasks(status) like the seed's status indexes of the other tables.
--  * Valid statuses live in one table, claude.column_registry, that tools read, and a trigger on
--    each table enforces it for every client with an error naming the valid values (a CHECK
--    constraint could only say "violates check constraint"). A guard on the registry refuses an
--    edit that would make existing rows invalid, so the registry and the data cannot drift apart.
--  * Columns the seed leaves implicit (title, description, priority, feedback_type, created_at,
--    updated_at): see the COMMENTs at the end, which say why each exists.

-- ---------------------------------------------------------------------------------------------
-- Helpers for this file only (pg_temp: they vanish with the session, and with a rollback).
-- ---------------------------------------------------------------------------------------------

-- The registry's content, defined once: the preflight checks existing rows against it and step 5
-- writes it into claude.column_registry. Values are the seed's; feedback_type is ours.
CREATE FUNCTION pg_temp.wt_registry()
RETURNS TABLE (table_name text, column_name text, valid_values text[], default_value text,
               description text)
LANGUAGE sql IMMUTABLE AS $$
    VALUES
        ('features', 'status',
         ARRAY['draft', 'planned', 'in_progress', 'blocked', 'completed', 'cancelled'], 'draft',
         'Lifecycle of a feature'),
        ('feedback', 'status',
         ARRAY['new', 'triaged', 'in_progress', 'resolved', 'wont_fix', 'duplicate'], 'new',
         'Lifecycle of a feedback item'),
        ('feedback', 'feedback_type',
         ARRAY['bug', 'idea', 'improvement', 'question', 'other'], NULL,
         'Kind of feedback; no default: whoever reports it says what it is'),
        ('build_tasks', 'status',
         ARRAY['pending', 'in_progress', 'blocked', 'completed', 'cancelled'], 'pending',
         'Lifecycle of a build task')
$$;

-- Every column this file manages, with its final type (format_type spelling). The preflight
-- refuses an existing column of another type (varchar/char where text is expected is converted).
CREATE FUNCTION pg_temp.wt_columns()
RETURNS TABLE (table_name text, column_name text, type_name text)
LANGUAGE sql IMMUTABLE AS $$
    VALUES
        ('projects', 'project_id', 'uuid'),
        ('sessions', 'session_id', 'uuid'),
        ('features', 'feature_id', 'uuid'), ('features', 'project_id', 'uuid'),
        ('features', 'title', 'text'), ('features', 'description', 'text'),
        ('features', 'status', 'text'), ('features', 'priority', 'integer'),
        ('features', 'created_session_id', 'uuid'), ('features', 'short_code', 'integer'),
        ('features', 'code', 'text'),
        ('features', 'created_at', 'timestamp with time zone'),
        ('features', 'updated_at', 'timestamp with time zone'),
        ('feedback', 'feedback_id', 'uuid'), ('feedback', 'project_id', 'uuid'),
        ('feedback', 'feedback_type', 'text'),
        ('feedback', 'title', 'text'), ('feedback', 'description', 'text'),
        ('feedback', 'status', 'text'), ('feedback', 'priority', 'integer'),
        ('feedback', 'created_session_id', 'uuid'), ('feedback', 'short_code', 'integer'),
        ('feedback', 'code', 'text'),
        ('feedback', 'created_at', 'timestamp with time zone'),
        ('feedback', 'updated_at', 'timestamp with time zone'),
        ('build_tasks', 'task_id', 'uuid'), ('build_tasks', 'feature_id', 'uuid'),
        ('build_tasks', 'project_id', 'uuid'),
        ('build_tasks', 'title', 'text'), ('build_tasks', 'description', 'text'),
        ('build_tasks', 'status', 'text'), ('build_tasks', 'priority', 'integer'),
        ('build_tasks', 'created_session_id', 'uuid'), ('build_tasks', 'short_code', 'integer'),
        ('build_tasks', 'code', 'text'),
        ('build_tasks', 'created_at', 'timestamp with time zone'),
        ('build_tasks', 'updated_at', 'timestamp with time zone'),
        ('requirements', 'requirement_id', 'uuid'), ('requirements', 'feature_id', 'uuid'),
        ('requirements', 'project_id', 'uuid'),
        ('requirements', 'title', 'text'), ('requirements', 'description', 'text'),
        ('requirements', 'created_session_id', 'uuid'),
        ('requirements', 'created_at', 'timestamp with time zone'),
        ('requirements', 'updated_at', 'timestamp with time zone'),
        ('column_registry', 'table_name', 'text'), ('column_registry', 'column_name', 'text'),
        ('column_registry', 'valid_values', 'text[]'),
        ('column_registry', 'default_value', 'text'), ('column_registry', 'description', 'text')
$$;

-- The type of claude.<tbl>.<col>, or NULL when the table or the column does not exist.
CREATE FUNCTION pg_temp.wt_type(tbl text, col text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT format_type(a.atttypid, a.atttypmod)
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = to_regclass(format('claude.%I', tbl))
      AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped
$$;

-- Whether claude.<tbl>'s primary key is exactly `cols`.
CREATE FUNCTION pg_temp.wt_has_pk(tbl text, cols text[]) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT FROM pg_catalog.pg_constraint k
        WHERE k.conrelid = to_regclass(format('claude.%I', tbl)) AND k.contype = 'p'
          AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text)
               FROM unnest(k.conkey) AS n(attnum)
               JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = n.attnum)
              = (SELECT array_agg(c ORDER BY c) FROM unnest(cols) AS c))
$$;

-- Rows of claude.<tbl> (aliased x) matching `rest` (joins and WHERE), as (table, id, problem);
-- `problem` is an SQL expression over x.
CREATE FUNCTION pg_temp.wt_rows(tbl text, id_col text, problem text, rest text)
RETURNS TABLE (p_table text, p_id text, p_problem text)
LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT %L::text, x.%I::text, (%s)::text FROM claude.%I x %s ORDER BY 2',
        tbl, id_col, problem, tbl, rest);
END
$fn$;

-- Everything that would stop this file, or that a new constraint would refuse, in the existing
-- claude schema: (table, id or NULL for a structural problem, problem). Empty on a fresh install.
CREATE FUNCTION pg_temp.wt_problems()
RETURNS TABLE (p_table text, p_id text, p_problem text)
LANGUAGE plpgsql AS $fn$
DECLARE
    c record;
    actual text;
    t text;
    id_col text;
    col text;
    structural boolean := false;
BEGIN
    IF to_regnamespace('claude') IS NULL THEN
        RETURN;
    END IF;

    -- Structure first: rows cannot be checked against columns of the wrong type.
    FOR c IN SELECT * FROM pg_temp.wt_columns() LOOP
        actual := pg_temp.wt_type(c.table_name, c.column_name);
        IF actual IS NOT NULL AND actual <> c.type_name
           AND NOT (c.type_name = 'text' AND actual ~ '^character( varying)?(\(\d+\))?$') THEN
            p_table := c.table_name; p_id := NULL;
            p_problem := format('column %s has type %s; expected %s',
                                c.column_name, actual, c.type_name);
            structural := true;
            RETURN NEXT;
        END IF;
    END LOOP;
    FOR t, id_col IN
        SELECT * FROM (VALUES ('projects', 'project_id'), ('sessions', 'session_id'),
                              ('features', 'feature_id'), ('feedback', 'feedback_id'),
                              ('build_tasks', 'task_id'), ('requirements', 'requirement_id'),
                              ('column_registry', 'table_name, column_name')) AS v(a, b)
    LOOP
        CONTINUE WHEN to_regclass(format('claude.%I', t)) IS NULL;
        IF NOT pg_temp.wt_has_pk(t, string_to_array(id_col, ', ')) THEN
            p_table := t; p_id := NULL;
            p_problem := format('its primary key is not (%s)', id_col);
            structural := true;
            RETURN NEXT;
        END IF;
    END LOOP;
    FOREACH t IN ARRAY ARRAY['features', 'feedback', 'build_tasks'] LOOP
        IF EXISTS (SELECT FROM pg_catalog.pg_attribute a
                   WHERE a.attrelid = to_regclass(format('claude.%I', t)) AND a.attname = 'code'
                     AND NOT a.attisdropped AND a.attgenerated <> 's') THEN
            p_table := t; p_id := NULL;
            p_problem := 'column code exists and is not generated from short_code';
            structural := true;
            RETURN NEXT;
        END IF;
    END LOOP;
    IF structural THEN
        RETURN;
    END IF;

    -- Rows. A missing column counts as NULL in every row (it would be added empty).
    FOREACH t IN ARRAY ARRAY['features', 'feedback', 'build_tasks', 'requirements'] LOOP
        CONTINUE WHEN to_regclass(format('claude.%I', t)) IS NULL;
        id_col := CASE t WHEN 'features' THEN 'feature_id' WHEN 'feedback' THEN 'feedback_id'
                         WHEN 'build_tasks' THEN 'task_id' ELSE 'requirement_id' END;

        IF t IN ('features', 'feedback') THEN
            IF pg_temp.wt_type(t, 'project_id') IS NULL THEN
                RETURN QUERY SELECT * FROM pg_temp.wt_rows(t, id_col,
                    '''project_id is NULL (the column is missing)''', '');
            ELSE
                RETURN QUERY SELECT * FROM pg_temp.wt_rows(t, id_col,
                    '''project_id is NULL''', 'WHERE x.project_id IS NULL');
            END IF;
        ELSE
            IF pg_temp.wt_type(t, 'feature_id') IS NULL THEN
                RETURN QUERY SELECT * FROM pg_temp.wt_rows(t, id_col,
                    '''feature_id is NULL (the column is missing)''', '');
            ELSE
                RETURN QUERY SELECT * FROM pg_temp.wt_rows(t, id_col,
                    '''feature_id is NULL''', 'WHERE x.feature_id IS NULL');
                RETURN QUERY SELECT * FROM pg_temp.wt_rows(t, id_col,
                    'format(''feature_id %s is not in claude.features'', x.feature_id)',
                    CASE WHEN to_regclass('claude.features') IS NULL
                         THEN 'WHERE x.feature_id IS NOT NULL'
                         ELSE 'WHERE x.feature_id IS NOT NULL AND NOT EXISTS (SELECT FROM'
                              ' claude.features f WHERE f.feature_id = x.feature_id)' END);
                -- project_id will be copied from the feature: it must agree with it, and there
                -- must be one to copy. (A feature without project is listed on its own too.)
                IF pg_temp.wt_type('features', 'project_id') IS NOT NULL THEN
                    IF pg_temp.wt_type(t, 'project_id') IS NOT NULL THEN
                        RETURN QUERY SELECT * FROM pg_temp.wt_rows(t, id_col,
                            'format(''project_id %s differs from its feature''''s project_id %s'','
                            ' x.project_id, f.project_id)',
                            'JOIN claude.features f ON f.feature_id = x.feature_id'
                            ' WHERE x.project_id <> f.project_id');
                    END IF;
                    RETURN QUERY SELECT * FROM pg_temp.wt_rows(t, id_col,
                        '''project_id is NULL and its feature has none to copy''',
                        'JOIN claude.features f ON f.feature_id = x.feature_id'
                        ' WHERE f.project_id IS NULL'
                        || CASE WHEN pg_temp.wt_type(t, 'project_id') IS NULL THEN ''
                                ELSE ' AND x.project_id IS NULL' END);
                END IF;
            END IF;
        END IF;

        IF pg_temp.wt_type(t, 'project_id') IS NOT NULL THEN
            RETURN QUERY SELECT * FROM pg_temp.wt_rows(t, id_col,
                'format(''project_id %s is not in claude.projects'', x.project_id)',
                CASE WHEN to_regclass('claude.projects') IS NULL
                     THEN 'WHERE x.project_id IS NOT NULL'
                     ELSE 'WHERE x.project_id IS NOT NULL AND NOT EXISTS (SELECT FROM'
                          ' claude.projects p WHERE p.project_id = x.project_id)' END);
        END IF;
        IF pg_temp.wt_type(t, 'created_session_id') IS NOT NULL THEN
            RETURN QUERY SELECT * FROM pg_temp.wt_rows(t, id_col,
                'format(''created_session_id %s is not in claude.sessions'', x.created_session_id)',
                CASE WHEN to_regclass('claude.sessions') IS NULL
                     THEN 'WHERE x.created_session_id IS NOT NULL'
                     ELSE 'WHERE x.created_session_id IS NOT NULL AND NOT EXISTS (SELECT FROM'
                          ' claude.sessions s WHERE s.session_id = x.created_session_id)' END);
        END IF;
        IF pg_temp.wt_type(t, 'title') IS NOT NULL THEN
            RETURN QUERY SELECT * FROM pg_temp.wt_rows(t, id_col,
                '''title is empty''', 'WHERE coalesce(btrim(x.title), '''') = ''''');
        END IF;
        IF pg_temp.wt_type(t, 'priority') IS NOT NULL THEN
            RETURN QUERY SELECT * FROM pg_temp.wt_rows(t, id_col,
                'format(''priority %s is not between 1 and 5'', coalesce(x.priority::text, ''NULL''))',
                'WHERE x.priority IS NULL OR x.priority NOT BETWEEN 1 AND 5');
        END IF;
        FOREACH col IN ARRAY ARRAY['created_at', 'updated_at'] LOOP
            IF pg_temp.wt_type(t, col) IS NOT NULL THEN
                RETURN QUERY SELECT * FROM pg_temp.wt_rows(t, id_col,
                    format('%L', col || ' is NULL'), format('WHERE x.%I IS NULL', col));
            END IF;
        END LOOP;
        IF pg_temp.wt_type(t, 'short_code') IS NOT NULL THEN
            RETURN QUERY SELECT * FROM pg_temp.wt_rows(t, id_col,
                'format(''short_code %s is used by %s rows'', x.short_code, d.n)',
                format('JOIN (SELECT short_code, count(*) AS n FROM claude.%I GROUP BY 1'
                       ' HAVING count(*) > 1) d ON d.short_code = x.short_code', t));
        END IF;
    END LOOP;

    -- Registered columns (statuses, feedback_type) against the registry's values.
    FOR c IN SELECT * FROM pg_temp.wt_registry() LOOP
        CONTINUE WHEN pg_temp.wt_type(c.table_name, c.column_name) IS NULL;
        id_col := CASE c.table_name WHEN 'features' THEN 'feature_id'
                                    WHEN 'feedback' THEN 'feedback_id' ELSE 'task_id' END;
        RETURN QUERY SELECT * FROM pg_temp.wt_rows(c.table_name, id_col,
            format('CASE WHEN x.%1$I IS NULL THEN %2$L ELSE format(%3$L, x.%1$I) END',
                   c.column_name, c.column_name || ' is NULL',
                   c.column_name || ' %L is not one of: '
                   || array_to_string(c.valid_values, ', ')),
            format('WHERE x.%1$I IS NULL OR x.%1$I::text <> ALL (%2$L::text[])',
                   c.column_name, c.valid_values));
    END LOOP;
END
$fn$;

-- ALTER TABLE claude.<tbl> ADD CONSTRAINT <name> <def>, unless claude.<tbl> has one of that name.
CREATE FUNCTION pg_temp.wt_constraint(tbl text, p_name text, def text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_constraint
                   WHERE conrelid = to_regclass(format('claude.%I', tbl)) AND conname = p_name) THEN
        EXECUTE format('ALTER TABLE claude.%I ADD CONSTRAINT %I %s', tbl, p_name, def);
    END IF;
END
$fn$;

-- Number the rows without a short code in creation order (created_at, then id: deterministic;
-- a table that had no created_at got it in step 1, all equal, so its rows go by id), after every
-- code already given; then make short_code an identity GENERATED ALWAYS that
-- continues after the highest code ever handed out (including the seed's SERIAL, if it ran).
CREATE FUNCTION pg_temp.wt_short_code(tbl text, id_col text) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    ident "char";
    seq text;
    top bigint := 0;
BEGIN
    seq := pg_get_serial_sequence(format('claude.%I', tbl), 'short_code');
    IF seq IS NOT NULL THEN
        EXECUTE format('SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM %s', seq)
            INTO top;
    END IF;
    EXECUTE format(
        'UPDATE claude.%1$I x SET short_code = b.n'
        ' FROM (SELECT %2$I, row_number() OVER (ORDER BY created_at, %2$I)'
        '              + greatest((SELECT coalesce(max(short_code), 0) FROM claude.%1$I), $1) AS n'
        '       FROM claude.%1$I WHERE short_code IS NULL) b'
        ' WHERE x.%2$I = b.%2$I', tbl, id_col) USING top;

    SELECT a.attidentity INTO ident FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = to_regclass(format('claude.%I', tbl)) AND a.attname = 'short_code';
    IF ident = 'd' THEN
        EXECUTE format('ALTER TABLE claude.%I ALTER COLUMN short_code SET GENERATED ALWAYS', tbl);
    ELSIF ident = '' THEN
        EXECUTE format('ALTER TABLE claude.%I ALTER COLUMN short_code DROP DEFAULT', tbl);
        IF seq IS NOT NULL THEN
            EXECUTE format('DROP SEQUENCE %s', seq);
        END IF;
        EXECUTE format('ALTER TABLE claude.%I ALTER COLUMN short_code SET NOT NULL,'
                       ' ALTER COLUMN short_code ADD GENERATED ALWAYS AS IDENTITY', tbl);
    END IF;

    seq := pg_get_serial_sequence(format('claude.%I', tbl), 'short_code');
    EXECUTE format('SELECT greatest(coalesce(max(short_code), 0), $1) FROM claude.%I', tbl)
        INTO top USING top;
    PERFORM setval(seq::regclass, greatest(top, 1), top > 0);
END
$fn$;

-- ---------------------------------------------------------------------------------------------
-- 0. Preflight: lock, check, refuse with the list. Nothing has changed yet.
-- ---------------------------------------------------------------------------------------------
DO $$
DECLARE
    t text;
    total bigint;
    lines text[];
BEGIN
    -- Locks first, in one fixed order, at the strength the later steps need (no lock upgrade to
    -- deadlock on), so no client can write a row that the check has already passed over.
    -- projects/sessions only need to stay still (SHARE ROW EXCLUSIVE: readers go on).
    FOREACH t IN ARRAY ARRAY['projects', 'sessions'] LOOP
        IF to_regclass(format('claude.%I', t)) IS NOT NULL THEN
            EXECUTE format('LOCK TABLE claude.%I IN SHARE ROW EXCLUSIVE MODE', t);
        END IF;
    END LOOP;
    FOREACH t IN ARRAY ARRAY['features', 'feedback', 'build_tasks', 'requirements',
                             'column_registry'] LOOP
        IF to_regclass(format('claude.%I', t)) IS NOT NULL THEN
            EXECUTE format('LOCK TABLE claude.%I IN ACCESS EXCLUSIVE MODE', t);
        END IF;
    END LOOP;

    SELECT count(*),
           (array_agg(format('claude.%s%s: %s', p.p_table, ' ' || p.p_id, p.p_problem)
                      ORDER BY p.n))[1:20]
      INTO total, lines
      FROM pg_temp.wt_problems() WITH ORDINALITY AS p(p_table, p_id, p_problem, n);
    IF total > 0 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('work-tracking refused: the existing claude schema has %s problem(s)'
                             ' that the new constraints would reject, and nothing was changed;'
                             ' fix or delete these rows, then migrate again', total),
            DETAIL = array_to_string(lines, E'\n')
                     || CASE WHEN total > 20 THEN format(E'\n... and %s more', total - 20)
                             ELSE '' END;
    END IF;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- 1. Tables, created with their key only when absent; columns added when absent.
-- ---------------------------------------------------------------------------------------------
CREATE SCHEMA IF NOT EXISTS claude;

-- Minimal, for the foreign keys to have a target; an existing table is used as it is.
CREATE TABLE IF NOT EXISTS claude.projects (
    project_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS claude.sessions (
    session_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    started_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS claude.features (feature_id UUID PRIMARY KEY);
CREATE TABLE IF NOT EXISTS claude.feedback (feedback_id UUID PRIMARY KEY);
-- task_id (not build_task_id): the only task table in the schema, so the short name is unambiguous.
CREATE TABLE IF NOT EXISTS claude.build_tasks (task_id UUID PRIMARY KEY);
CREATE TABLE IF NOT EXISTS claude.requirements (requirement_id UUID PRIMARY KEY);

CREATE TABLE IF NOT EXISTS claude.column_registry (
    table_name TEXT NOT NULL,
    column_name TEXT NOT NULL,
    PRIMARY KEY (table_name, column_name)
);

-- Legacy varchar/char columns become text, the type everything here is compared and indexed as.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT * FROM pg_temp.wt_columns() LOOP
        IF c.type_name = 'text'
           AND pg_temp.wt_type(c.table_name, c.column_name) ~ '^character' THEN
            EXECUTE format('ALTER TABLE claude.%I ALTER COLUMN %I TYPE text',
                           c.table_name, c.column_name);
        END IF;
    END LOOP;
END
$$;

-- An added NOT NULL column fills the existing rows from its DEFAULT; the defaults that only serve
-- that purpose are dropped right after. A column that already existed was checked by the
-- preflight, so SET NOT NULL cannot fail on it.
-- Existing rows that never had a title get '(untitled)': honest, and easy to find and fix.
ALTER TABLE claude.features
    ADD COLUMN IF NOT EXISTS project_id UUID,
    ADD COLUMN IF NOT EXISTS title TEXT NOT NULL DEFAULT '(untitled)',
    ADD COLUMN IF NOT EXISTS description TEXT,
    ADD COLUMN IF NOT EXISTS status TEXT NOT NULL DEFAULT 'draft',
    ADD COLUMN IF NOT EXISTS priority INTEGER NOT NULL DEFAULT 3,
    ADD COLUMN IF NOT EXISTS created_session_id UUID,
    ADD COLUMN IF NOT EXISTS created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS short_code INTEGER;
ALTER TABLE claude.features
    ALTER COLUMN feature_id SET DEFAULT gen_random_uuid(),
    ALTER COLUMN project_id SET NOT NULL,
    ALTER COLUMN title DROP DEFAULT,
    ALTER COLUMN title SET NOT NULL,
    ALTER COLUMN status SET DEFAULT 'draft',
    ALTER COLUMN status SET NOT NULL,
    ALTER COLUMN priority SET DEFAULT 3,
    ALTER COLUMN priority SET NOT NULL,
    ALTER COLUMN created_at SET DEFAULT now(),
    ALTER COLUMN created_at SET NOT NULL,
    ALTER COLUMN updated_at SET DEFAULT now(),
    ALTER COLUMN updated_at SET NOT NULL;

-- Existing feedback without a type is 'other': we do not know what it was.
ALTER TABLE claude.feedback
    ADD COLUMN IF NOT EXISTS project_id UUID,
    ADD COLUMN IF NOT EXISTS feedback_type TEXT NOT NULL DEFAULT 'other',
    ADD COLUMN IF NOT EXISTS title TEXT NOT NULL DEFAULT '(untitled)',
    ADD COLUMN IF NOT EXISTS description TEXT,
    ADD COLUMN IF NOT EXISTS status TEXT NOT NULL DEFAULT 'new',
    ADD COLUMN IF NOT EXISTS priority INTEGER NOT NULL DEFAULT 3,
    ADD COLUMN IF NOT EXISTS created_session_id UUID,
    ADD COLUMN IF NOT EXISTS created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS short_code INTEGER;
ALTER TABLE claude.feedback
    ALTER COLUMN feedback_id SET DEFAULT gen_random_uuid(),
    ALTER COLUMN project_id SET NOT NULL,
    ALTER COLUMN feedback_type DROP DEFAULT,
    ALTER COLUMN feedback_type SET NOT NULL,
    ALTER COLUMN title DROP DEFAULT,
    ALTER COLUMN title SET NOT NULL,
    ALTER COLUMN status SET DEFAULT 'new',
    ALTER COLUMN status SET NOT NULL,
    ALTER COLUMN priority SET DEFAULT 3,
    ALTER COLUMN priority SET NOT NULL,
    ALTER COLUMN created_at SET DEFAULT now(),
    ALTER COLUMN created_at SET NOT NULL,
    ALTER COLUMN updated_at SET DEFAULT now(),
    ALTER COLUMN updated_at SET NOT NULL;

-- feature_id cannot be added to rows that exist (the preflight refused them); project_id is
-- backfilled from the feature below, before it becomes NOT NULL.
ALTER TABLE claude.build_tasks
    ADD COLUMN IF NOT EXISTS feature_id UUID,
    ADD COLUMN IF NOT EXISTS project_id UUID,
    ADD COLUMN IF NOT EXISTS title TEXT NOT NULL DEFAULT '(untitled)',
    ADD COLUMN IF NOT EXISTS description TEXT,
    ADD COLUMN IF NOT EXISTS status TEXT NOT NULL DEFAULT 'pending',
    ADD COLUMN IF NOT EXISTS priority INTEGER NOT NULL DEFAULT 3,
    ADD COLUMN IF NOT EXISTS created_session_id UUID,
    ADD COLUMN IF NOT EXISTS created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS short_code INTEGER;

ALTER TABLE claude.requirements
    ADD COLUMN IF NOT EXISTS feature_id UUID,
    ADD COLUMN IF NOT EXISTS project_id UUID,
    ADD COLUMN IF NOT EXISTS title TEXT NOT NULL DEFAULT '(untitled)',
    ADD COLUMN IF NOT EXISTS description TEXT,
    ADD COLUMN IF NOT EXISTS created_session_id UUID,
    ADD COLUMN IF NOT EXISTS created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS updated_at TIMESTAMPTZ NOT NULL DEFAULT now();

UPDATE claude.build_tasks x SET project_id = f.project_id
FROM claude.features f WHERE f.feature_id = x.feature_id AND x.project_id IS NULL;
UPDATE claude.requirements x SET project_id = f.project_id
FROM claude.features f WHERE f.feature_id = x.feature_id AND x.project_id IS NULL;

ALTER TABLE claude.build_tasks
    ALTER COLUMN task_id SET DEFAULT gen_random_uuid(),
    ALTER COLUMN feature_id SET NOT NULL,
    ALTER COLUMN project_id SET NOT NULL,
    ALTER COLUMN title DROP DEFAULT,
    ALTER COLUMN title SET NOT NULL,
    ALTER COLUMN status SET DEFAULT 'pending',
    ALTER COLUMN status SET NOT NULL,
    ALTER COLUMN priority SET DEFAULT 3,
    ALTER COLUMN priority SET NOT NULL,
    ALTER COLUMN created_at SET DEFAULT now(),
    ALTER COLUMN created_at SET NOT NULL,
    ALTER COLUMN updated_at SET DEFAULT now(),
    ALTER COLUMN updated_at SET NOT NULL;
ALTER TABLE claude.requirements
    ALTER COLUMN requirement_id SET DEFAULT gen_random_uuid(),
    ALTER COLUMN feature_id SET NOT NULL,
    ALTER COLUMN project_id SET NOT NULL,
    ALTER COLUMN title DROP DEFAULT,
    ALTER COLUMN title SET NOT NULL,
    ALTER COLUMN created_at SET DEFAULT now(),
    ALTER COLUMN created_at SET NOT NULL,
    ALTER COLUMN updated_at SET DEFAULT now(),
    ALTER COLUMN updated_at SET NOT NULL;

ALTER TABLE claude.column_registry
    ADD COLUMN IF NOT EXISTS valid_values TEXT[],
    ADD COLUMN IF NOT EXISTS default_value TEXT,
    ADD COLUMN IF NOT EXISTS description TEXT;

-- ---------------------------------------------------------------------------------------------
-- 2. Short codes: F1…, FB1…, BT1… (existing rows numbered in creation order), then `code`.
-- ---------------------------------------------------------------------------------------------
SELECT pg_temp.wt_short_code('features', 'feature_id');
SELECT pg_temp.wt_short_code('feedback', 'feedback_id');
SELECT pg_temp.wt_short_code('build_tasks', 'task_id');

ALTER TABLE claude.features
    ADD COLUMN IF NOT EXISTS code TEXT GENERATED ALWAYS AS ('F' || short_code::text) STORED;
ALTER TABLE claude.feedback
    ADD COLUMN IF NOT EXISTS code TEXT GENERATED ALWAYS AS ('FB' || short_code::text) STORED;
ALTER TABLE claude.build_tasks
    ADD COLUMN IF NOT EXISTS code TEXT GENERATED ALWAYS AS ('BT' || short_code::text) STORED;

-- ---------------------------------------------------------------------------------------------
-- 3. Constraints (each added only when the table has none of that name).
-- ---------------------------------------------------------------------------------------------
-- A project with work items cannot be deleted (RESTRICT, as the seed): archive it instead.
-- A session can: its links become NULL (SET NULL), the work it created stays.
SELECT pg_temp.wt_constraint('features', 'fk_features_project',
    'FOREIGN KEY (project_id) REFERENCES claude.projects(project_id) ON DELETE RESTRICT');
SELECT pg_temp.wt_constraint('features', 'fk_features_session',
    'FOREIGN KEY (created_session_id) REFERENCES claude.sessions(session_id) ON DELETE SET NULL');
SELECT pg_temp.wt_constraint('features', 'features_short_code_key', 'UNIQUE (short_code)');
-- Target of the (feature_id, project_id) foreign keys that keep tasks in their feature's project.
SELECT pg_temp.wt_constraint('features', 'features_feature_project_key',
    'UNIQUE (feature_id, project_id)');
SELECT pg_temp.wt_constraint('features', 'features_title_check', 'CHECK (btrim(title) <> '''')');
SELECT pg_temp.wt_constraint('features', 'features_priority_check',
    'CHECK (priority BETWEEN 1 AND 5)');

SELECT pg_temp.wt_constraint('feedback', 'fk_feedback_project',
    'FOREIGN KEY (project_id) REFERENCES claude.projects(project_id) ON DELETE RESTRICT');
SELECT pg_temp.wt_constraint('feedback', 'fk_feedback_session',
    'FOREIGN KEY (created_session_id) REFERENCES claude.sessions(session_id) ON DELETE SET NULL');
SELECT pg_temp.wt_constraint('feedback', 'feedback_short_code_key', 'UNIQUE (short_code)');
SELECT pg_temp.wt_constraint('feedback', 'feedback_title_check', 'CHECK (btrim(title) <> '''')');
SELECT pg_temp.wt_constraint('feedback', 'feedback_priority_check',
    'CHECK (priority BETWEEN 1 AND 5)');

SELECT pg_temp.wt_constraint('build_tasks', 'fk_build_tasks_feature',
    'FOREIGN KEY (feature_id) REFERENCES claude.features(feature_id) ON DELETE RESTRICT');
SELECT pg_temp.wt_constraint('build_tasks', 'fk_build_tasks_project',
    'FOREIGN KEY (project_id) REFERENCES claude.projects(project_id) ON DELETE RESTRICT');
SELECT pg_temp.wt_constraint('build_tasks', 'fk_build_tasks_session',
    'FOREIGN KEY (created_session_id) REFERENCES claude.sessions(session_id) ON DELETE SET NULL');
SELECT pg_temp.wt_constraint('build_tasks', 'fk_build_tasks_feature_project',
    'FOREIGN KEY (feature_id, project_id) REFERENCES claude.features(feature_id, project_id)'
    ' ON UPDATE CASCADE ON DELETE RESTRICT');
SELECT pg_temp.wt_constraint('build_tasks', 'build_tasks_short_code_key', 'UNIQUE (short_code)');
SELECT pg_temp.wt_constraint('build_tasks', 'build_tasks_title_check',
    'CHECK (btrim(title) <> '''')');
SELECT pg_temp.wt_constraint('build_tasks', 'build_tasks_priority_check',
    'CHECK (priority BETWEEN 1 AND 5)');

SELECT pg_temp.wt_constraint('requirements', 'fk_requirements_feature',
    'FOREIGN KEY (feature_id) REFERENCES claude.features(feature_id) ON DELETE RESTRICT');
SELECT pg_temp.wt_constraint('requirements', 'fk_requirements_project',
    'FOREIGN KEY (project_id) REFERENCES claude.projects(project_id) ON DELETE RESTRICT');
SELECT pg_temp.wt_constraint('requirements', 'fk_requirements_session',
    'FOREIGN KEY (created_session_id) REFERENCES claude.sessions(session_id) ON DELETE SET NULL');
SELECT pg_temp.wt_constraint('requirements', 'fk_requirements_feature_project',
    'FOREIGN KEY (feature_id, project_id) REFERENCES claude.features(feature_id, project_id)'
    ' ON UPDATE CASCADE ON DELETE RESTRICT');
SELECT pg_temp.wt_constraint('requirements', 'requirements_title_check',
    'CHECK (btrim(title) <> '''')');

SELECT pg_temp.wt_constraint('column_registry', 'column_registry_values_check',
    'CHECK (valid_values IS NOT NULL AND cardinality(valid_values) > 0)');
SELECT pg_temp.wt_constraint('column_registry', 'column_registry_default_check',
    'CHECK (default_value IS NULL OR default_value = ANY (valid_values))');

-- ---------------------------------------------------------------------------------------------
-- 4. Indexes: the seed's, plus one for every foreign-key column a parent's DELETE must search.
-- ---------------------------------------------------------------------------------------------
CREATE INDEX IF NOT EXISTS idx_features_project ON claude.features(project_id);
CREATE INDEX IF NOT EXISTS idx_features_status ON claude.features(status);
CREATE INDEX IF NOT EXISTS idx_feedback_project ON claude.feedback(project_id);
CREATE INDEX IF NOT EXISTS idx_feedback_status ON claude.feedback(status);
CREATE INDEX IF NOT EXISTS idx_build_tasks_feature ON claude.build_tasks(feature_id);
CREATE INDEX IF NOT EXISTS idx_build_tasks_project ON claude.build_tasks(project_id);
CREATE INDEX IF NOT EXISTS idx_build_tasks_status ON claude.build_tasks(status);
CREATE INDEX IF NOT EXISTS idx_requirements_feature ON claude.requirements(feature_id);
CREATE INDEX IF NOT EXISTS idx_requirements_project ON claude.requirements(project_id);
CREATE INDEX IF NOT EXISTS idx_features_session ON claude.features(created_session_id)
    WHERE created_session_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_feedback_session ON claude.feedback(created_session_id)
    WHERE created_session_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_build_tasks_session ON claude.build_tasks(created_session_id)
    WHERE created_session_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_requirements_session ON claude.requirements(created_session_id)
    WHERE created_session_id IS NOT NULL;

-- ---------------------------------------------------------------------------------------------
-- 5. Status registry and its enforcement.
-- ---------------------------------------------------------------------------------------------
-- The seed's values win over what an older registry said for these columns (the preflight
-- checked the data against them); rows for other columns are left alone.
INSERT INTO claude.column_registry (table_name, column_name, valid_values, default_value, description)
SELECT * FROM pg_temp.wt_registry()
ON CONFLICT (table_name, column_name) DO UPDATE
    SET valid_values = EXCLUDED.valid_values,
        default_value = EXCLUDED.default_value,
        description = EXCLUDED.description;
ALTER TABLE claude.column_registry ALTER COLUMN valid_values SET NOT NULL;

-- One trigger function for every table: a registry row is the rule, for every client (psql, the
-- worker, an ORM, COPY). BEFORE so the row never reaches the table; NULL is left to the column's
-- own NOT NULL. The error names the column, the bad value and the valid ones, and carries the
-- SQLSTATE (23514) and schema/table/column fields of a CHECK violation for clients that read them.
-- SECURITY DEFINER (with a fixed search_path) so a role that may write features but not read the
-- registry is still checked rather than failing; a trigger function cannot be called directly.
CREATE OR REPLACE FUNCTION claude.enforce_column_registry() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    v text;
    new_row jsonb := to_jsonb(NEW);
BEGIN
    FOR r IN SELECT c.column_name, c.valid_values FROM claude.column_registry c
             WHERE c.table_name = TG_TABLE_NAME LOOP
        v := new_row ->> r.column_name;
        IF v IS NOT NULL AND NOT v = ANY (r.valid_values) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'check_violation',
                MESSAGE = format('invalid %s %L for %I.%I: valid values are %s', r.column_name, v,
                                 TG_TABLE_SCHEMA, TG_TABLE_NAME,
                                 array_to_string(r.valid_values, ', ')),
                HINT = 'The valid values are listed in claude.column_registry.',
                SCHEMA = TG_TABLE_SCHEMA, TABLE = TG_TABLE_NAME, COLUMN = r.column_name;
        END IF;
    END LOOP;
    RETURN NEW;
END
$$;

-- The registry cannot drift from the data: a new list of values must still admit every value in
-- use, and a rule for a column that exists cannot be deleted while it is enforced.
CREATE OR REPLACE FUNCTION claude.guard_column_registry() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    rel regclass;
    bad text[];
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF EXISTS (SELECT FROM pg_catalog.pg_attribute a
                   WHERE a.attrelid = to_regclass(format('claude.%I', OLD.table_name))
                     AND a.attname = OLD.column_name AND NOT a.attisdropped) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'restrict_violation',
                MESSAGE = format('claude.column_registry: the rule for %s.%s cannot be deleted'
                                 ' while the column exists', OLD.table_name, OLD.column_name);
        END IF;
        RETURN OLD;
    END IF;
    rel := to_regclass(format('claude.%I', NEW.table_name));
    IF rel IS NOT NULL AND EXISTS (SELECT FROM pg_catalog.pg_attribute a
                                   WHERE a.attrelid = rel AND a.attname = NEW.column_name
                                     AND NOT a.attisdropped) THEN
        EXECUTE format('SELECT array_agg(DISTINCT x.%1$I::text ORDER BY x.%1$I::text)'
                       ' FROM claude.%2$I x WHERE x.%1$I::text <> ALL ($1)',
                       NEW.column_name, NEW.table_name)
            INTO bad USING NEW.valid_values;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION USING
                ERRCODE = 'check_violation',
                MESSAGE = format('claude.column_registry: %s.%s has rows with %s, which the new'
                                 ' valid values (%s) leave out; change those rows first',
                                 NEW.table_name, NEW.column_name, array_to_string(bad, ', '),
                                 array_to_string(NEW.valid_values, ', '));
        END IF;
    END IF;
    RETURN NEW;
END
$$;

-- updated_at moves only when the row really changed (a no-op UPDATE is not news to a dashboard).
-- `code` is left out of the comparison: generated columns are not computed yet in a BEFORE trigger.
CREATE OR REPLACE FUNCTION claude.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF to_jsonb(NEW) - 'code' IS DISTINCT FROM to_jsonb(OLD) - 'code' THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;

-- build_tasks/requirements: project_id is the feature's. Filled in when the client leaves it out,
-- and followed when the row moves to another feature; a project_id that disagrees with the
-- feature's is refused by the (feature_id, project_id) foreign key. SECURITY DEFINER as above.
CREATE OR REPLACE FUNCTION claude.fill_project_from_feature() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.feature_id IS NOT NULL
       AND (NEW.project_id IS NULL
            OR (TG_OP = 'UPDATE' AND NEW.feature_id IS DISTINCT FROM OLD.feature_id
                AND NEW.project_id IS NOT DISTINCT FROM OLD.project_id)) THEN
        SELECT f.project_id INTO NEW.project_id
        FROM claude.features f WHERE f.feature_id = NEW.feature_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING
                ERRCODE = 'foreign_key_violation',
                MESSAGE = format('feature_id %s is not in claude.features', NEW.feature_id),
                SCHEMA = TG_TABLE_SCHEMA, TABLE = TG_TABLE_NAME, COLUMN = 'feature_id';
        END IF;
    END IF;
    RETURN NEW;
END
$$;

-- BEFORE triggers fire in name order: *_fill_project, *_touch_updated_at, *_validate_registry.
CREATE OR REPLACE TRIGGER features_validate_registry BEFORE INSERT OR UPDATE ON claude.features
    FOR EACH ROW EXECUTE FUNCTION claude.enforce_column_registry();
CREATE OR REPLACE TRIGGER feedback_validate_registry BEFORE INSERT OR UPDATE ON claude.feedback
    FOR EACH ROW EXECUTE FUNCTION claude.enforce_column_registry();
CREATE OR REPLACE TRIGGER build_tasks_validate_registry
    BEFORE INSERT OR UPDATE ON claude.build_tasks
    FOR EACH ROW EXECUTE FUNCTION claude.enforce_column_registry();

CREATE OR REPLACE TRIGGER features_touch_updated_at BEFORE UPDATE ON claude.features
    FOR EACH ROW EXECUTE FUNCTION claude.touch_updated_at();
CREATE OR REPLACE TRIGGER feedback_touch_updated_at BEFORE UPDATE ON claude.feedback
    FOR EACH ROW EXECUTE FUNCTION claude.touch_updated_at();
CREATE OR REPLACE TRIGGER build_tasks_touch_updated_at BEFORE UPDATE ON claude.build_tasks
    FOR EACH ROW EXECUTE FUNCTION claude.touch_updated_at();
CREATE OR REPLACE TRIGGER requirements_touch_updated_at BEFORE UPDATE ON claude.requirements
    FOR EACH ROW EXECUTE FUNCTION claude.touch_updated_at();

CREATE OR REPLACE TRIGGER build_tasks_fill_project BEFORE INSERT OR UPDATE ON claude.build_tasks
    FOR EACH ROW EXECUTE FUNCTION claude.fill_project_from_feature();
CREATE OR REPLACE TRIGGER requirements_fill_project
    BEFORE INSERT OR UPDATE ON claude.requirements
    FOR EACH ROW EXECUTE FUNCTION claude.fill_project_from_feature();

CREATE OR REPLACE TRIGGER column_registry_guard
    AFTER INSERT OR UPDATE OR DELETE ON claude.column_registry
    FOR EACH ROW EXECUTE FUNCTION claude.guard_column_registry();

-- ---------------------------------------------------------------------------------------------
-- 6. Lookup by code, or by anything that contains one (a git branch name: feature/F12-login,
--    fix/FB3_crash, BT7). Case-insensitive; the code must stand alone (not inside a word or a
--    longer number: 'F12x' and 'F123' do not match F12). The first code in the text wins.
--    Goes through the short_code UNIQUE index of the one table the prefix names.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION claude.lookup_code(ref text)
RETURNS TABLE (item_type text, item_id uuid, code text, project_id uuid, title text,
               status text)
LANGUAGE sql STABLE STRICT AS $$
    WITH parsed AS (
        SELECT upper(m[1]) AS prefix, m[2]::bigint AS n
        FROM (SELECT regexp_match(ref, '(?<![[:alnum:]])(FB|BT|F)([0-9]{1,18})(?![[:alnum:]])',
                                  'i') AS m) s
        WHERE m IS NOT NULL
    )
    SELECT 'features', f.feature_id, f.code, f.project_id, f.title, f.status
    FROM parsed JOIN claude.features f ON f.short_code = parsed.n WHERE parsed.prefix = 'F'
    UNION ALL
    SELECT 'feedback', b.feedback_id, b.code, b.project_id, b.title, b.status
    FROM parsed JOIN claude.feedback b ON b.short_code = parsed.n WHERE parsed.prefix = 'FB'
    UNION ALL
    SELECT 'build_tasks', t.task_id, t.code, t.project_id, t.title, t.status
    FROM parsed JOIN claude.build_tasks t ON t.short_code = parsed.n WHERE parsed.prefix = 'BT'
$$;

-- ---------------------------------------------------------------------------------------------
-- 7. What each table and column is for (readable with \d+ and by tools).
-- ---------------------------------------------------------------------------------------------
COMMENT ON SCHEMA claude IS 'Work tracking: projects, sessions, features, feedback, build tasks, requirements';
COMMENT ON TABLE claude.features IS 'Features of a project; short code F<n>';
COMMENT ON TABLE claude.feedback IS 'Bugs, ideas and other feedback on a project; short code FB<n>';
COMMENT ON TABLE claude.build_tasks IS 'Implementation tasks of a feature; short code BT<n>';
COMMENT ON TABLE claude.requirements IS 'Acceptance criteria of a feature';
COMMENT ON TABLE claude.column_registry IS 'Valid values of registered columns (statuses, feedback_type), enforced by trigger on every write';
COMMENT ON FUNCTION claude.lookup_code(text) IS 'The feature, feedback or build task named by a code (F12, FB3, BT7) or a text containing one (feature/F12-login)';

COMMENT ON COLUMN claude.features.project_id IS 'Project the feature belongs to (required; a project with features cannot be deleted)';
COMMENT ON COLUMN claude.features.title IS 'Short name shown in lists and branch names; never empty';
COMMENT ON COLUMN claude.features.description IS 'What and why, free text';
COMMENT ON COLUMN claude.features.status IS 'See claude.column_registry (features.status)';
COMMENT ON COLUMN claude.features.priority IS '1 (highest) to 5 (lowest), default 3: sorts work queues';
COMMENT ON COLUMN claude.features.created_session_id IS 'Session that created it; NULL once that session is deleted';
COMMENT ON COLUMN claude.features.short_code IS 'Number of the short code, assigned by the database, unique, never reused';
COMMENT ON COLUMN claude.features.code IS 'Short code F<short_code> for branch names (feature/F12-login)';
COMMENT ON COLUMN claude.features.created_at IS 'When it was created; orders the short codes of pre-existing rows';
COMMENT ON COLUMN claude.features.updated_at IS 'Last real change (a trigger bumps it)';

COMMENT ON COLUMN claude.feedback.project_id IS 'Project the feedback is about (required; a project with feedback cannot be deleted)';
COMMENT ON COLUMN claude.feedback.feedback_type IS 'bug, idea, improvement, question or other (claude.column_registry): triage routes on it';
COMMENT ON COLUMN claude.feedback.title IS 'One-line summary; never empty';
COMMENT ON COLUMN claude.feedback.description IS 'Details, steps to reproduce, free text';
COMMENT ON COLUMN claude.feedback.status IS 'See claude.column_registry (feedback.status)';
COMMENT ON COLUMN claude.feedback.priority IS '1 (highest) to 5 (lowest), default 3: sorts the triage queue';
COMMENT ON COLUMN claude.feedback.created_session_id IS 'Session that reported it; NULL once that session is deleted';
COMMENT ON COLUMN claude.feedback.short_code IS 'Number of the short code, assigned by the database, unique, never reused';
COMMENT ON COLUMN claude.feedback.code IS 'Short code FB<short_code> for branch names (fix/FB3-crash)';
COMMENT ON COLUMN claude.feedback.created_at IS 'When it was reported; orders the short codes of pre-existing rows';
COMMENT ON COLUMN claude.feedback.updated_at IS 'Last real change (a trigger bumps it)';

COMMENT ON COLUMN claude.build_tasks.feature_id IS 'Feature this task implements (required: the task gets its project through it)';
COMMENT ON COLUMN claude.build_tasks.project_id IS 'The feature''s project, copied by trigger and kept equal by foreign key: filters tasks per project without a join';
COMMENT ON COLUMN claude.build_tasks.title IS 'What to do, in one line; never empty';
COMMENT ON COLUMN claude.build_tasks.description IS 'How, free text';
COMMENT ON COLUMN claude.build_tasks.status IS 'See claude.column_registry (build_tasks.status)';
COMMENT ON COLUMN claude.build_tasks.priority IS '1 (highest) to 5 (lowest), default 3: orders the tasks of a feature';
COMMENT ON COLUMN claude.build_tasks.created_session_id IS 'Session that created it; NULL once that session is deleted';
COMMENT ON COLUMN claude.build_tasks.short_code IS 'Number of the short code, assigned by the database, unique, never reused';
COMMENT ON COLUMN claude.build_tasks.code IS 'Short code BT<short_code> for branch and commit names';
COMMENT ON COLUMN claude.build_tasks.created_at IS 'When it was created; orders the short codes of pre-existing rows';
COMMENT ON COLUMN claude.build_tasks.updated_at IS 'Last real change (a trigger bumps it)';

COMMENT ON COLUMN claude.requirements.feature_id IS 'Feature whose acceptance criterion this is (required)';
COMMENT ON COLUMN claude.requirements.project_id IS 'The feature''s project, copied by trigger and kept equal by foreign key';
COMMENT ON COLUMN claude.requirements.title IS 'The criterion in one line; never empty';
COMMENT ON COLUMN claude.requirements.description IS 'Details, examples, free text';
COMMENT ON COLUMN claude.requirements.created_session_id IS 'Session that wrote it; NULL once that session is deleted';
COMMENT ON COLUMN claude.requirements.created_at IS 'When it was written';
COMMENT ON COLUMN claude.requirements.updated_at IS 'Last real change (a trigger bumps it)';

COMMENT ON COLUMN claude.column_registry.valid_values IS 'The only values the column accepts';
COMMENT ON COLUMN claude.column_registry.default_value IS 'The column''s DEFAULT, if it has one';

DROP FUNCTION pg_temp.wt_short_code(text, text), pg_temp.wt_constraint(text, text, text),
    pg_temp.wt_problems(), pg_temp.wt_rows(text, text, text, text),
    pg_temp.wt_has_pk(text, text[]), pg_temp.wt_type(text, text), pg_temp.wt_columns(),
    pg_temp.wt_registry();

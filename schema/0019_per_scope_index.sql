-- 0019: an unchanged integration's run costs the same at 100,000 items as at 100 (issue #17: "no-op
-- incremental of 100,000 items <= 100 ms database time", tests/bench/bench_noop_run.py --items).
--
-- Three statements of every run read all of an integration's rows through
-- idx_work_items_integration_id: the newest change held per scope (where each history feed
-- resumes), the history backlog count (items changed after their feed's read-through time), and
-- the scope narrowing (rows whose scope left the config). This index orders each scope's rows by
-- their change time, so the newest is one index probe per scope, the backlog a range scan over
-- the rows changed after the feed's time, and the scopes present one probe each (a skip scan
-- written as a recursive query: PostgreSQL 16 has none of its own).
--
-- Partial (rows in scope only): those three look at nothing else, and a scope that left the
-- config takes its rows out of the index as they are marked. An item write that changes
-- `source_updated_at` was never a HOT update (work_items_history_pending holds the column too),
-- so the extra index adds an index entry to such writes, not a heap rewrite.
--
-- (Built while the table is locked against writes: on a large table, run this migration
-- outside the sync window.)

CREATE INDEX work_items_scope_changed ON work_items (integration_id, sync_scope, source_updated_at)
    WHERE out_of_scope_at IS NULL;

"""Every SQL statement the worker runs (migrations aside), each behind one typed function.

- `sync`: one run's writes: the page upsert, activity rows, cursor and run state.
- `integrations`: integrations and teams as admins, `status`, the scheduler and the demo see them.
- `metrics`: the daily metrics rollup.
- `dashboard`: what the demo prints from the tables and views a dashboard reads.
- `notify`: the NOTIFY channel and its payloads, and the advisory-lock keys.

Every value is a parameter; no statement is built from input. Knows no tracker.
"""

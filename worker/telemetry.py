"""Prometheus metrics of the worker (served on /metrics by worker.http)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Protocol

from prometheus_client import Counter, Gauge, Histogram

RUNS = Counter("c9_sync_runs_total", "Sync runs by outcome", ["source", "outcome"])
ITEMS = Counter("c9_sync_items_total", "Work items written, by action", ["source", "action"])
RUN_DURATION = Histogram(
    "c9_sync_run_duration_seconds",
    "Duration of sync runs",
    ["source"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
LAST_SUCCESS = Gauge(
    "c9_sync_last_success_timestamp_seconds",
    "Unix time of the last successful run",
    ["integration_id", "source"],
)
CONSECUTIVE_FAILURES = Gauge(
    "c9_sync_consecutive_failures", "Failed runs in a row", ["integration_id", "source"]
)
RATE_LIMIT_WAITS = Counter(
    "c9_sync_rate_limit_wait_seconds_total",
    "Seconds spent waiting out rate limits and retries",
    ["source"],
)
RUNNING = Gauge("c9_sync_running_runs", "Sync runs in progress in this process")
CENSUS_MISSING = Gauge(
    "c9_sync_census_missing",
    "Items the tracker lists that no present row holds, per integration and scope (last census)",
    ["integration_id", "scope"],
)
CREDENTIAL_EXPIRY = Gauge(
    "c9_sync_credential_expiry_timestamp_seconds",
    "Unix time the credential of an integration expires, per kind, as its last run learned"
    " (renewable tokens too: they are renewed by the worker)",
    ["integration_id", "kind"],
)
HISTORY_BACKLOG = Gauge(
    "c9_sync_history_backlog",
    "Items whose history (the tracker's record of changes) is not read yet (last run's count)",
    ["integration_id"],
)
SCHEDULED = Gauge(
    "c9_sync_scheduled_integrations", "Active integrations this process ticks (its share)"
)
REPLICAS = Gauge(
    "c9_sync_replicas", "Live replicas this process shares the ticks with (itself included)"
)
QUEUED = Gauge("c9_sync_queued_runs", "Due runs waiting for a free slot in this process")
MISSED_TICKS = Counter(
    "c9_sync_missed_ticks_total",
    "Ticks that started no run: busy (the integration's previous run was still queued or"
    " running here, and serves it) or late (the process was too busy to fire it in time)",
    ["reason"],
)
START_LAG = Histogram(
    "c9_sync_start_lag_seconds",
    "From a tick's due time to its run's start (waiting for a free slot)",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RUN_ITEMS = Gauge(
    "c9_sync_run_items",
    "Items the run in progress has read so far, per integration (gone when it ends)",
    ["integration_id", "source"],
)
RUN_CURSOR_LAG = Gauge(
    "c9_sync_run_cursor_lag_seconds",
    "How far behind now the run in progress has committed its cursor (a backfill's distance to"
    " go; gone when it ends)",
    ["integration_id", "source"],
)
WEBHOOK_DELIVERIES = Counter(
    "c9_sync_webhook_deliveries_total",
    "Webhook deliveries by outcome: accepted (a run was requested), coalesced (into a run"
    " already requested, or deferred by the integration's backoff), rejected (by reason)",
    ["source", "outcome", "reason"],
)


class RunFigures(Protocol):
    """What a finished run reports (`worker.sync.RunResult`); a protocol so that this module,
    which the sync run imports, imports nothing back."""

    @property
    def integration_id(self) -> uuid.UUID: ...
    @property
    def source(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def duration_s(self) -> float: ...
    @property
    def created(self) -> int: ...
    @property
    def updated(self) -> int: ...
    @property
    def unchanged(self) -> int: ...
    @property
    def removed(self) -> int: ...
    @property
    def items(self) -> int: ...
    @property
    def cursor_at(self) -> datetime | None: ...


def observe_progress(result: RunFigures) -> None:
    """After each committed page of a run: items so far, and how old its cursor is."""
    labels = {"integration_id": str(result.integration_id), "source": result.source or "unknown"}
    RUN_ITEMS.labels(**labels).set(result.items)
    if result.cursor_at is not None:
        lag = (datetime.now(UTC) - result.cursor_at).total_seconds()
        RUN_CURSOR_LAG.labels(**labels).set(max(0.0, lag))


def observe_run(result: RunFigures) -> None:
    source = result.source or "unknown"
    for gauge in (RUN_ITEMS, RUN_CURSOR_LAG):  # the run is over: no progress to show
        with contextlib.suppress(KeyError):
            gauge.remove(str(result.integration_id), source)
    RUNS.labels(source=source, outcome=result.outcome).inc()
    if result.outcome == "skipped":
        return
    RUN_DURATION.labels(source=source).observe(result.duration_s)
    for action in ("created", "updated", "unchanged", "removed"):
        ITEMS.labels(source=source, action=action).inc(getattr(result, action))
    labels = {"integration_id": str(result.integration_id), "source": source}
    if result.outcome == "succeeded":
        LAST_SUCCESS.labels(**labels).set_to_current_time()
        CONSECUTIVE_FAILURES.labels(**labels).set(0)
    elif result.outcome == "failed":
        CONSECUTIVE_FAILURES.labels(**labels).inc()


_credential_kinds: dict[str, set[str]] = {}  # integration id -> kinds on the gauge


def show_credential_expiries(
    expiries: Iterable[tuple[uuid.UUID, str, datetime]], of: uuid.UUID | None = None
) -> None:
    """Replace the `c9_sync_credential_expiry_timestamp_seconds` series with these stored rows:
    every series (`of` None: all the table's rows, so every replica exports the same values and
    the series of a deleted integration or a dropped credential go away), or those of one
    integration (`of`: its rows, after its run)."""
    if of is None:
        CREDENTIAL_EXPIRY.clear()
        _credential_kinds.clear()
    else:
        for kind in _credential_kinds.pop(str(of), set()):
            with contextlib.suppress(KeyError):
                CREDENTIAL_EXPIRY.remove(str(of), kind)
    for integration_id, kind, expires_at in expiries:
        CREDENTIAL_EXPIRY.labels(integration_id=str(integration_id), kind=kind).set(
            expires_at.timestamp()
        )
        _credential_kinds.setdefault(str(integration_id), set()).add(kind)

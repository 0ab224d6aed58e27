"""Credential health, tracker-neutral: what connectors learn of their credential's expiry
(`ctx.on_credential`) and how a config verifies TLS, recorded at the end of every run.

- Stored per (integration, kind) in `integration_credentials` (schema/0010), failed runs included:
  a 401 after an expiry is exactly when the date matters.
- Exported as `c9_sync_credential_expiry_timestamp_seconds`, from the stored rows: an
  integration's after each of its runs, every integration's at the daemon's start and every
  `C9_SYNC_RECONCILE_SECONDS` (so replicas export the same values; reading every integration's
  rows after every run made a run's cost grow with the number of integrations).
- A non-renewable credential gets a `credential_expiring` activity row 14, 7 and 1 days ahead and a
  `credential_expired` row once past, each once per expiry date (marks in the row, claimed under
  its lock). Renewable ones (minted tokens the connector renews itself) feed the gauge only.
- `verify_tls: false` is logged (`tls_unverified`) at every run; the mode is stored for `status`.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from connectors.base import ConnectorConfig, CredentialExpiry, utc
from worker import db, telemetry
from worker.logs import get_logger
from worker.store import credentials as store
from worker.store import sync as sync_store
from worker.store.credentials import StoredCredential
from worker.store.integrations import Integration

log = get_logger(__name__)

WARN_DAYS = (14, 7, 1)  # days ahead of a non-renewable credential's expiry
EXPIRED = 0  # the mark of the `credential_expired` row
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def tls_verification(config: ConnectorConfig) -> str:
    """system (the trust store), custom_ca (`ca_bundle`) or unverified (`verify_tls: false`)."""
    if config.ca_bundle is not None:
        return "custom_ca"
    return "system" if config.verify_tls else "unverified"


@dataclass(slots=True)
class Collector:
    """The run's `on_credential`: the latest report per kind (a token renewed during the run
    replaces its earlier expiry), and the config's TLS mode once the config is known."""

    fields: Mapping[str, Any]
    reported: dict[str, CredentialExpiry] = field(default_factory=dict)
    tls: str | None = None

    def __call__(self, expiry: CredentialExpiry) -> None:
        if not _KIND.match(expiry.kind):  # a connector's bug: say so, never fail the run for it
            log.warning("credential_kind_invalid", **self.fields, kind=expiry.kind[:64])
            return
        self.reported[expiry.kind] = CredentialExpiry(
            expiry.kind, utc(expiry.expires_at), expiry.renewable
        )

    def saw(self, config: ConnectorConfig) -> None:
        """The run's validated config: remember its TLS mode, and warn when it verifies nothing
        (at every run, naming the integration; never the config)."""
        self.tls = tls_verification(config)
        if self.tls == "unverified":
            log.warning(
                "tls_unverified",
                **self.fields,
                what="verify_tls is false: the tracker's certificate is not checked; give"
                " ca_bundle for a corporate CA instead",
            )


def due_warning(expires_at: datetime, now: datetime, warned: tuple[int, ...]) -> int | None:
    """The warning to write now, if any: EXPIRED once past, else the nearest of WARN_DAYS whose
    day has come (a credential first seen 3 days ahead gets the 7-day one, not 14 and 7)."""
    left = expires_at - now
    if left <= timedelta(0):
        return None if EXPIRED in warned else EXPIRED
    reached = [d for d in WARN_DAYS if left <= timedelta(days=d)]
    if not reached or min(reached) in warned:
        return None
    return min(reached)


def describe_left(expires_at: datetime, now: datetime) -> str:
    """ "6 d", "5 h", "20 min"; "3 d ago" when past."""
    seconds = (expires_at - now).total_seconds()
    magnitude = abs(seconds)
    if magnitude >= 86400:
        text = f"{int(magnitude // 86400)} d"
    elif magnitude >= 3600:
        text = f"{int(magnitude // 3600)} h"
    else:
        text = f"{int(magnitude // 60)} min"
    return text if seconds > 0 else f"{text} ago"


def nearest(credentials: list[StoredCredential]) -> StoredCredential | None:
    """The credential people must act on first: the nearest non-renewable expiry, else the
    nearest renewable one (shown as renewed by the worker)."""
    for renewable in (False, True):
        found = [c for c in credentials if c.renewable == renewable]
        if found:
            return min(found, key=lambda c: c.expires_at)
    return None


async def record(
    conn: asyncpg.Connection,
    integration: Integration,
    collected: Collector,
    *,
    succeeded: bool,
    write: sync_store.ActivityWriter | None = None,
) -> None:
    """At the end of a run, whatever its outcome: store what it learned (a succeeded run's
    report is the whole truth: kinds it no longer reported are dropped), write the warnings now
    due (through `write`: the run's log), refresh the gauge from the table. A failure here is
    logged, never the run's failure."""
    fields = collected.fields
    learnt = _Learnt.of(collected)
    last = _recorded.get(integration.id)
    if last is not None and last.covers(learnt, succeeded):
        return  # the same as this process last stored, and no warning near: nothing to write
    _recorded.pop(integration.id, None)  # (until this write has stood)
    try:
        async with conn.transaction():
            await store.save(conn, integration.id, list(collected.reported.values()))
            if succeeded:
                await store.keep_only(conn, integration.id, list(collected.reported))
            if collected.tls is not None:
                await store.save_tls(conn, integration.id, collected.tls)
            activities = await _claim_warnings(conn, integration, fields)
            await (write or sync_store.team_writer(integration.team_id))(conn, activities)
        own = await store.latest(conn, integration.id)
    except asyncpg.PostgresError as exc:
        if isinstance(exc, asyncpg.PostgresConnectionError):
            raise  # the database is gone: the caller handles it as for every other write
        if isinstance(exc, asyncpg.ForeignKeyViolationError):
            return  # the integration was deleted during the run: its rows went with it
        log.warning("credential_record_failed", **fields, error=f"{type(exc).__name__}: {exc}")
        return
    _recorded[integration.id] = _Recorded(
        learnt, succeeded, tuple(own.get(integration.id, ())), time.monotonic()
    )
    _show(own, of=integration.id)


# A run learns the same as the last one nearly every time (a PAT's date, the TLS mode): what
# this process last stored per integration lets such a run write nothing (7 statements a run).
REWRITE_EVERY_S = 3600.0  # observed_at is refreshed at least this often all the same
WARNING_MARGIN = timedelta(hours=1)  # a warning this near is claimed under the row lock


@dataclass(frozen=True, slots=True)
class _Learnt:
    reported: tuple[tuple[str, datetime, bool], ...]
    tls: str | None

    @classmethod
    def of(cls, collected: Collector) -> _Learnt:
        reported = sorted((e.kind, e.expires_at, e.renewable) for e in collected.reported.values())
        return cls(tuple(reported), collected.tls)


@dataclass(frozen=True, slots=True)
class _Recorded:
    learnt: _Learnt
    kept: bool  # a succeeded run's report dropped the kinds it no longer had
    stored: tuple[StoredCredential, ...]  # the integration's rows after the write
    at: float  # monotonic

    def covers(self, learnt: _Learnt, succeeded: bool) -> bool:
        """Whether storing `learnt` would change nothing: the same report, rows of other kinds
        already dropped if this run would drop them, written within REWRITE_EVERY_S, and no
        warning due (by this machine's clock, WARNING_MARGIN early: the claim itself goes by
        the database's)."""
        if learnt != self.learnt or (succeeded and not self.kept):
            return False
        if time.monotonic() - self.at > REWRITE_EVERY_S:
            return False
        soon = datetime.now(UTC) + WARNING_MARGIN
        return all(
            c.renewable or due_warning(c.expires_at, soon, c.warned_days) is None
            for c in self.stored
        )


_recorded: dict[uuid.UUID, _Recorded] = {}  # integration id -> what this process last stored


def _show(stored: Mapping[uuid.UUID, list[StoredCredential]], of: uuid.UUID | None) -> None:
    telemetry.show_credential_expiries(
        ((integration_id, c.kind, c.expires_at) for integration_id, rows in stored.items()
         for c in rows),
        of=of,
    )  # fmt: skip


async def refresh_gauge(pool: asyncpg.Pool | asyncpg.Connection) -> None:
    """Every integration's stored expiries onto the gauge (what other replicas' runs stored
    too; a deleted integration's series go)."""
    _show(await store.latest(pool), of=None)


async def keep_gauge_current(pool: asyncpg.Pool, every_s: float) -> None:
    """The daemon's side task: `refresh_gauge` now and every `every_s`, until cancelled. A
    failure is logged and tried again next time: it never ends the task."""
    while True:
        try:
            await refresh_gauge(pool)
        except db.FAILURES as exc:
            log.warning("credential_gauge_not_refreshed", error=type(exc).__name__)
        await asyncio.sleep(every_s)


async def _claim_warnings(
    conn: asyncpg.Connection, integration: Integration, fields: Mapping[str, Any]
) -> list[sync_store.Activity]:
    """The warnings due now, each marked in its row (locked) in the caller's transaction."""
    now, rows = await store.lock_for_warnings(conn, integration.id)
    out = []
    for c in rows:
        due = due_warning(c.expires_at, now, c.warned_days)
        if due is None:
            continue
        # Every warning up to this one is done: a credential first seen 3 days ahead never
        # gets a late "14 days" row on the next run.
        done = [d for d in (*WARN_DAYS, EXPIRED) if d >= due]
        await store.mark_warned(conn, integration.id, c.kind, c.expires_at, done)
        when = c.expires_at.strftime("%Y-%m-%d %H:%M UTC")
        left = describe_left(c.expires_at, now)
        meta = {
            **fields,
            "kind": c.kind,
            "expires_at": c.expires_at.isoformat(),
            "days_ahead": due,
        }
        if due == EXPIRED:
            event = "credential_expired"
            message = (
                f"{integration.type} {c.kind} expired {when} ({left}): runs fail until the"
                " credential is replaced"
            )
        else:
            event = "credential_expiring"
            message = (
                f"{integration.type} {c.kind} expires {when} (in {left}): renew it and update"
                " the integration before then"
            )
        out.append(sync_store.Activity(event, message, meta))
        log.warning(event, **fields, kind=c.kind, expires_at=c.expires_at.isoformat(), left=left)
    return out

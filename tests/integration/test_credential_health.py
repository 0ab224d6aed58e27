"""Credential health against a real PostgreSQL, with the in-test connector reporting its
credential's expiry (`credential_expires_at` in its config) through `ctx.on_credential`.

Warnings are measured against the database's clock, which a test cannot move: "time passes" here
by moving the expiry closer by the same amount in the config and in the stored row at once (the
stored date stays the one reported, so nothing is re-armed), which is what the passing of time
looks like to the worker.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from prometheus_client import generate_latest

from connectors.base import CredentialExpiry, RetriableError
from tests.fake_connector import Upstream, fake_connector_class
from tests.helpers import forced_run, make_integration, make_team
from worker import connecting, credentials, sync, telemetry
from worker.logs import JsonFormatter
from worker.settings import Settings
from worker.store import credentials as credential_store
from worker.store.integrations import get_integration

TOKEN = "tok-PLANTED-credhealth-5e4d3c"
GAUGE = "c9_sync_credential_expiry_timestamp_seconds"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", backoff_base_seconds=60, sweep_every_runs=0)


@pytest.fixture
def upstream() -> Upstream:
    up = Upstream()
    up.add(3)
    return up


@pytest.fixture
async def team(pool: asyncpg.Pool) -> uuid.UUID:
    return await make_team(pool, "Alpha")


async def db_now(pool: asyncpg.Pool) -> datetime:
    now: datetime = await pool.fetchval("SELECT now()")
    return now


async def integration_expiring_in(
    pool: asyncpg.Pool, team: uuid.UUID, left: timedelta, **extra: Any
) -> uuid.UUID:
    at = await db_now(pool) + left
    config = {"token": TOKEN, "credential_expires_at": at.isoformat(), **extra}
    return await make_integration(pool, team, "github", config, interval=60)


async def run(
    pool: asyncpg.Pool, integration_id: uuid.UUID, settings: Settings, upstream: Upstream
) -> sync.RunResult:
    return await forced_run(pool, integration_id, settings, fake_connector_class(upstream))


async def let_time_pass(pool: asyncpg.Pool, integration_id: uuid.UUID, delta: timedelta) -> None:
    """The expiry moves `delta` closer, in the config (what the tracker reports) and in the
    stored row alike: to the worker, `delta` has passed."""
    config = dict(
        await pool.fetchval("SELECT config FROM integrations WHERE id = $1", integration_id)
    )
    moved = datetime.fromisoformat(config["credential_expires_at"]) - delta
    config["credential_expires_at"] = moved.isoformat()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE integrations SET config = $2::jsonb WHERE id = $1",
            integration_id,
            config,
        )
        await conn.execute(
            "UPDATE integration_credentials SET expires_at = expires_at - $2::interval"
            " WHERE integration_id = $1",
            integration_id,
            delta,
        )


async def warnings(pool: asyncpg.Pool) -> list[tuple[str, int]]:
    rows = await pool.fetch(
        "SELECT event_type, metadata FROM activity_logs"
        " WHERE event_type IN ('credential_expiring', 'credential_expired') ORDER BY created_at, id"
    )
    return [(r["event_type"], r["metadata"]["days_ahead"]) for r in rows]


async def stored(pool: asyncpg.Pool, integration_id: uuid.UUID) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT kind, expires_at, renewable, warned_days FROM integration_credentials"
        " WHERE integration_id = $1 ORDER BY kind",
        integration_id,
    )


def gauge(integration_id: uuid.UUID, kind: str) -> float | None:
    """The exported value, read from what /metrics serves."""
    wanted = f'{GAUGE}{{integration_id="{integration_id}",kind="{kind}"}} '
    for line in generate_latest().decode().splitlines():
        if line.startswith(wanted):
            return float(line[len(wanted) :])
    return None


# ---------------------------------------------------------------------------------------------
# Warnings ahead of an expiry
# ---------------------------------------------------------------------------------------------
async def test_warnings_14_7_1_days_ahead_then_expired_each_once(
    pool, team, settings, upstream
) -> None:
    integration = await integration_expiring_in(pool, team, timedelta(days=20))
    for _ in range(2):
        assert (await run(pool, integration, settings, upstream)).outcome == "succeeded"
    assert await warnings(pool) == []
    (row,) = await stored(pool, integration)
    assert (row["kind"], row["renewable"], row["warned_days"]) == ("pat", False, [])

    expected: list[tuple[str, int]] = []
    for passed, due in ((6.5, 14), (7, 7), (6, 1), (1, 0)):  # 13.5, 6.5, 0.5 days left, past
        await let_time_pass(pool, integration, timedelta(days=passed))
        for _ in range(3):  # repeated runs write it once
            await run(pool, integration, settings, upstream)
        expected.append(("credential_expired" if due == 0 else "credential_expiring", due))
        assert await warnings(pool) == expected
    (row,) = await stored(pool, integration)
    assert row["warned_days"] == [14, 7, 1, 0]

    rows = await pool.fetch(
        "SELECT message, metadata, team_id FROM activity_logs"
        " WHERE event_type LIKE 'credential_%' ORDER BY created_at, id"
    )
    assert all(r["team_id"] == team for r in rows)
    assert "github pat expires " in rows[0]["message"] and "(in 13 d)" in rows[0]["message"]
    assert "(in 11 h)" in rows[2]["message"]  # half a day, less the runs
    assert "github pat expired " in rows[3]["message"]
    meta = rows[0]["metadata"]
    assert meta["integration_id"] == str(integration) and meta["kind"] == "pat"
    assert datetime.fromisoformat(meta["expires_at"]) == row["expires_at"] + timedelta(days=14)


async def test_first_seen_close_to_expiry_gets_only_the_nearest_warning(
    pool, team, settings, upstream
) -> None:
    integration = await integration_expiring_in(pool, team, timedelta(days=3))
    await run(pool, integration, settings, upstream)
    await run(pool, integration, settings, upstream)
    assert await warnings(pool) == [("credential_expiring", 7)]  # not 14 as well
    await let_time_pass(pool, integration, timedelta(days=2.5))
    await run(pool, integration, settings, upstream)
    assert await warnings(pool) == [("credential_expiring", 7), ("credential_expiring", 1)]


async def test_two_replicas_recording_at_once_write_each_warning_once(
    pool, team, settings, upstream, db_url
) -> None:
    """The marks are claimed under the row's lock. Two workers finishing at once (failed runs
    that learned nothing new, so nothing else locks the row) are held, both inside their
    transaction, until both wait on a lock: only one writes the warning."""
    integration = await integration_expiring_in(pool, team, timedelta(days=20))
    await run(pool, integration, settings, upstream)
    await let_time_pass(pool, integration, timedelta(days=15))
    row = await get_integration(pool, integration)
    assert row is not None

    async def finish_a_failed_run() -> None:
        seen = credentials.Collector({"integration_id": str(integration)})
        async with pool.acquire() as conn:
            await credentials.record(conn, row, seen, succeeded=False)

    gate = await asyncpg.connect(db_url)  # holds activity_logs: each writer stops before it
    try:
        async with gate.transaction():
            await gate.execute("LOCK TABLE activity_logs IN EXCLUSIVE MODE")
            writers = [asyncio.create_task(finish_a_failed_run()) for _ in range(2)]
            for _ in range(200):
                waiting = await pool.fetchval(  # not `gate`: its transaction caches stats
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                if waiting == 2:
                    break
                await asyncio.sleep(0.02)
            assert waiting == 2
        await asyncio.gather(*writers)
    finally:
        await gate.close()
    assert await warnings(pool) == [("credential_expiring", 7)]


async def test_renewed_credential_replaces_the_old_expiry_and_rearms(
    pool, team, settings, upstream
) -> None:
    integration = await integration_expiring_in(pool, team, timedelta(days=5))
    await run(pool, integration, settings, upstream)
    assert await warnings(pool) == [("credential_expiring", 7)]
    old = (await stored(pool, integration))[0]["expires_at"]

    # The admin renews the PAT for a year: the tracker now reports the new date.
    renewed = await db_now(pool) + timedelta(days=365)
    await pool.execute(
        "UPDATE integrations SET config = config || jsonb_build_object('credential_expires_at',"
        " $2::text) WHERE id = $1",
        integration,
        renewed.isoformat(),
    )
    await run(pool, integration, settings, upstream)
    (row,) = await stored(pool, integration)
    assert row["expires_at"] == renewed and row["expires_at"] != old
    assert row["warned_days"] == []  # re-armed
    assert gauge(integration, "pat") == renewed.timestamp()
    assert await warnings(pool) == [("credential_expiring", 7)]

    # A year later the same credential warns again, 14 days ahead.
    await let_time_pass(pool, integration, timedelta(days=352))
    await run(pool, integration, settings, upstream)
    assert await warnings(pool) == [("credential_expiring", 7), ("credential_expiring", 14)]


async def test_renewable_tokens_feed_the_gauge_but_never_warn(
    pool, team, settings, upstream
) -> None:
    integration = await integration_expiring_in(
        pool,
        team,
        timedelta(minutes=30),
        credential_kind="app_installation_token",
        credential_renewable=True,
    )
    for _ in range(2):
        await run(pool, integration, settings, upstream)
    (row,) = await stored(pool, integration)
    assert (row["kind"], row["renewable"]) == ("app_installation_token", True)
    assert gauge(integration, "app_installation_token") == row["expires_at"].timestamp()
    await let_time_pass(pool, integration, timedelta(hours=1))  # even past: it is renewed
    await run(pool, integration, settings, upstream)
    assert await warnings(pool) == []


# ---------------------------------------------------------------------------------------------
# Failed runs, replaced credentials, the gauge
# ---------------------------------------------------------------------------------------------
async def test_a_failed_run_still_records_the_expiry(pool, team, settings, upstream) -> None:
    integration = await integration_expiring_in(pool, team, timedelta(days=6))
    upstream.fail_on_page = 1
    upstream.fail_with = RetriableError("upstream 503")
    result = await run(pool, integration, settings, upstream)
    assert result.outcome == "failed"
    (row,) = await stored(pool, integration)
    assert row["kind"] == "pat" and row["warned_days"] == [14, 7]
    assert await warnings(pool) == [("credential_expiring", 7)]
    assert gauge(integration, "pat") == row["expires_at"].timestamp()


async def test_an_expired_credential_refused_with_401_says_expired_once(
    pool, team, settings, upstream
) -> None:
    """The tracker stops answering (401) once the PAT is past its date: the date learned earlier
    is what tells the admin why."""
    integration = await integration_expiring_in(pool, team, timedelta(days=30))
    await run(pool, integration, settings, upstream)
    await let_time_pass(pool, integration, timedelta(days=31))
    await pool.execute(
        'UPDATE integrations SET config = \'{"token": "bad"}\'::jsonb WHERE id = $1',
        integration,
    )
    for _ in range(2):
        result = await run(pool, integration, settings, upstream)
        assert result.outcome == "failed" and "401" in result.reason
    assert await warnings(pool) == [("credential_expired", 0)]
    assert len(await stored(pool, integration)) == 1  # a failed run drops nothing


async def test_a_credential_no_longer_reported_is_dropped_by_a_succeeded_run(
    pool, team, settings, upstream
) -> None:
    integration = await integration_expiring_in(pool, team, timedelta(days=40))
    other = await integration_expiring_in(
        pool, await make_team(pool, "Beta"), timedelta(days=90), credential_kind="certificate"
    )
    await run(pool, integration, settings, upstream)
    await run(pool, other, settings, upstream)
    assert gauge(integration, "pat") is not None and gauge(other, "certificate") is not None

    # The admin switched to a credential that does not expire: nothing reported any more.
    await pool.execute(
        "UPDATE integrations SET config = config - 'credential_expires_at' WHERE id = $1",
        integration,
    )
    await run(pool, integration, settings, upstream)
    assert await stored(pool, integration) == []
    assert gauge(integration, "pat") is None  # its series is gone
    assert gauge(other, "certificate") is not None  # the other integration's stays

    # A deleted integration's rows and series go too (at the daemon's next refresh).
    await pool.execute("DELETE FROM integrations WHERE id = $1", other)
    assert await pool.fetchval("SELECT count(*) FROM integration_credentials") == 0
    await run(pool, integration, settings, upstream)
    assert gauge(other, "certificate") is not None  # a run refreshes its own series only
    await credentials.refresh_gauge(pool)
    assert gauge(other, "certificate") is None


async def test_the_gauge_comes_from_the_table_so_replicas_agree(
    pool, team, settings, upstream
) -> None:
    """What another replica stored is exported here at the daemon's next refresh (its start,
    then every C9_SYNC_RECONCILE_SECONDS); a run refreshes its own integration's series."""
    mine = await integration_expiring_in(pool, team, timedelta(days=40))
    theirs = await integration_expiring_in(pool, await make_team(pool, "Beta"), timedelta(days=9))
    at = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    await pool.execute(  # written by another replica's run
        "INSERT INTO integration_credentials (integration_id, kind, expires_at, renewable)"
        " VALUES ($1, 'entra_token', $2, true)",
        theirs,
        at,
    )
    telemetry.show_credential_expiries([])  # a fresh process
    await run(pool, mine, settings, upstream)
    (row,) = await stored(pool, mine)
    assert gauge(mine, "pat") == row["expires_at"].timestamp()
    # (reading every integration's rows after every run made a run's cost grow with them)
    assert gauge(theirs, "entra_token") is None
    await credentials.refresh_gauge(pool)
    assert gauge(theirs, "entra_token") == at.timestamp()
    assert gauge(mine, "pat") == row["expires_at"].timestamp()


# ---------------------------------------------------------------------------------------------
# TLS, secrets
# ---------------------------------------------------------------------------------------------
async def test_unverified_tls_is_logged_at_every_run_and_stored(
    pool, team, settings, upstream, caplog, tmp_path
) -> None:
    caplog.set_level(logging.INFO)
    unverified = await make_integration(
        pool, team, "github", {"token": TOKEN, "verify_tls": False}, interval=60
    )
    bundle = tmp_path / "corp-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    custom = await make_integration(
        pool,
        await make_team(pool, "Beta"),
        "github",
        {"token": TOKEN, "ca_bundle": str(bundle)},
        interval=60,
    )
    system = await make_integration(
        pool, await make_team(pool, "Gamma"), "github", {"token": TOKEN}, interval=60
    )
    for _ in range(3):
        for integration in (unverified, custom, system):
            await run(pool, integration, settings, upstream)
    warned = [r for r in caplog.records if r.getMessage() == "tls_unverified"]
    assert len(warned) == 3 and all(r.levelno == logging.WARNING for r in warned)
    assert {r.fields["integration_id"] for r in warned} == {str(unverified)}  # type: ignore[attr-defined]
    formatted = "\n".join(JsonFormatter().format(r) for r in warned)
    assert "verify_tls" in formatted and TOKEN not in formatted
    modes = await credential_store.tls_modes(pool)
    assert modes == {unverified: "unverified", custom: "custom_ca", system: "system"}


async def test_no_secret_in_the_table_activity_or_logs(
    pool, team, settings, upstream, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    integration = await integration_expiring_in(pool, team, timedelta(hours=5), verify_tls=False)
    await run(pool, integration, settings, upstream)
    await let_time_pass(pool, integration, timedelta(hours=6))
    await run(pool, integration, settings, upstream)
    assert await warnings(pool) == [("credential_expiring", 1), ("credential_expired", 0)]
    dumped = ""
    for table in ("integration_credentials", "integration_tls", "activity_logs"):
        dumped += "\n".join(str(dict(r)) for r in await pool.fetch(f"SELECT * FROM {table}"))
    formatted = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert "credential_expired" in formatted and "tls_unverified" in formatted
    assert TOKEN not in dumped and TOKEN not in formatted


async def test_integrations_check_hands_the_expiry_to_its_caller(settings, upstream) -> None:
    """`integrations add/test` build the connector as a run does: what `check()` learns of the
    credential reaches the caller's `on_credential` (to show it)."""
    at = datetime(2027, 1, 15, 9, 30, tzinfo=UTC)
    cls = fake_connector_class(upstream)
    config = connecting.validate_config(
        cls, {"token": TOKEN, "credential_expires_at": at.isoformat()}
    )
    seen = credentials.Collector({})
    problem = await connecting.check_connection(
        cls, config, uuid.uuid4(), settings, {}, 5.0, on_credential=seen
    )
    assert problem is None
    assert list(seen.reported.values()) == [CredentialExpiry("pat", at, False)]


async def test_a_run_that_learnt_the_same_writes_nothing(
    pool, team, settings, upstream, monkeypatch
) -> None:
    """Nearly every run learns what the last one did: it writes no credential or TLS row (7
    statements saved a run), until REWRITE_EVERY_S has passed or a warning comes near."""
    integration = await integration_expiring_in(pool, team, timedelta(days=40))
    versions = (
        "SELECT (SELECT xmin::text FROM integration_credentials WHERE integration_id = $1),"
        " (SELECT xmin::text FROM integration_tls WHERE integration_id = $1)"
    )
    await run(pool, integration, settings, upstream)
    first = tuple(await pool.fetchrow(versions, integration))
    assert None not in first
    await run(pool, integration, settings, upstream)
    assert tuple(await pool.fetchrow(versions, integration)) == first

    monkeypatch.setattr(credentials, "REWRITE_EVERY_S", 0.0)
    await run(pool, integration, settings, upstream)
    rewritten = tuple(await pool.fetchrow(versions, integration))
    assert rewritten[0] != first[0] and rewritten[1] != first[1]
    monkeypatch.undo()

    # A warning near (by this machine's clock, the margin early): the run goes to the rows and
    # claims it under their lock, by the database's clock (not due yet: none written).
    await run(pool, integration, settings, upstream)  # (the same again: nothing written)
    assert tuple(await pool.fetchrow(versions, integration)) == rewritten
    monkeypatch.setattr(credentials, "WARNING_MARGIN", timedelta(days=27))
    await run(pool, integration, settings, upstream)
    assert tuple(await pool.fetchrow(versions, integration)) != rewritten
    assert await warnings(pool) == []

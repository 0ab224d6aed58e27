"""`c9-sync status` (a subprocess) shows what runs learned of each credential's expiry and how
each config verifies TLS. The runs are made in-process with the in-test connector, which
reports the expiry its config names; the command only reads the database."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg

from tests.acceptance.cli import cli_env, run_cli
from tests.fake_connector import Upstream, fake_connector_class
from tests.helpers import make_integration, make_team, succeeded_run
from worker.settings import Settings

PLANTED = "tok-PLANTED-statuscred-91f0"


async def synced(
    pool: asyncpg.Pool, tmp_path: Path, team: str, config: dict[str, object]
) -> uuid.UUID:
    integration = await make_integration(
        pool, await make_team(pool, team), "github", {"token": PLANTED, **config}
    )
    upstream = Upstream()
    upstream.add(2)
    settings = Settings(home=tmp_path / "home", sweep_every_runs=0)
    await succeeded_run(pool, integration, settings, fake_connector_class(upstream))
    return integration


async def test_status_shows_the_nearest_expiry_and_tls(db_url, pool, tmp_path) -> None:
    now = await pool.fetchval("SELECT now()")
    soon = now + timedelta(days=6, hours=12)
    await synced(
        pool,
        tmp_path,
        "Soon",
        {"credential_expires_at": soon.isoformat(), "verify_tls": False},
    )
    bundle = tmp_path / "corp-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    await synced(
        pool,
        tmp_path,
        "Minted",
        {
            "credential_expires_at": (now + timedelta(minutes=50)).isoformat(),
            "credential_kind": "entra_token",
            "credential_renewable": True,
            "ca_bundle": str(bundle),
        },
    )
    cert_day = now + timedelta(days=200)
    both = await synced(
        pool, tmp_path, "Both", {"credential_expires_at": cert_day.isoformat()}
    )  # then, as another replica's run of another kind would have stored:
    await pool.execute(
        "INSERT INTO integration_credentials (integration_id, kind, expires_at, renewable)"
        " VALUES ($1, 'app_installation_token', now() + interval '40 minutes', true),"
        "        ($1, 'certificate', now() - interval '3 days', false)",
        both,
    )
    await synced(pool, tmp_path, "Plain", {})
    await make_integration(pool, await make_team(pool, "New"), "github", {"token": PLANTED})

    env = cli_env(db_url, COLUMNS="250")
    table = run_cli("status", env=env)
    as_json = run_cli("status", "--json", env=env)
    assert table.returncode == 0 and as_json.returncode == 0, table.stderr + as_json.stderr

    header = next(line for line in table.stdout.splitlines() if "integration" in line)
    assert "credential" in header and "tls" in header
    rows = {line.split("│")[1].strip(): line for line in table.stdout.splitlines() if "│" in line}
    assert f"pat expires {soon.date().isoformat()} (6 d)" in rows["Soon/github"]
    assert "NOT VERIFIED" in rows["Soon/github"]
    assert "entra_token renewed by the worker" in rows["Minted/github"]
    assert "verified (custom CA)" in rows["Minted/github"]
    # The nearest non-renewable credential wins over a renewable one expiring sooner.
    expired_day = (now - timedelta(days=3)).date().isoformat()
    assert f"certificate EXPIRED {expired_day} (3 d ago)" in rows["Both/github"]
    assert " verified " in rows["Plain/github"] and "expires" not in rows["Plain/github"]
    assert "verified" not in rows["New/github"] and "expires" not in rows["New/github"]
    assert PLANTED not in table.stdout + as_json.stdout + table.stderr + as_json.stderr

    entries = {e["team"]: e for e in json.loads(as_json.stdout)}
    (pat,) = entries["Soon"]["credentials"]
    assert pat["kind"] == "pat" and pat["renewable"] is False and pat["expired"] is False
    assert pat["expires_at"] == soon.replace(microsecond=0).isoformat()
    assert 6 * 86400 < pat["seconds_left"] <= 6.5 * 86400
    assert entries["Soon"]["tls"] == "unverified"
    assert entries["Minted"]["tls"] == "custom_ca"
    assert entries["Minted"]["credentials"][0]["renewable"] is True
    kinds = [(c["kind"], c["expired"]) for c in entries["Both"]["credentials"]]
    assert kinds == [("certificate", True), ("app_installation_token", False), ("pat", False)]
    assert entries["Plain"]["credentials"] == []
    assert entries["Plain"]["tls"] == "system"
    assert entries["New"]["credentials"] == [] and entries["New"]["tls"] is None

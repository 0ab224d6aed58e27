"""GitHub App integrations through the sync run (real PostgreSQL, the sandbox, PyGithub): a
pattern's repositories come and go between runs, a malformed key fails the run in one line, and
neither the key nor a minted token reaches a log line or an activity row."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from connectors.github import GitHubConnector
from connectors.sandbox.github import GitHubSandbox
from tests.helpers import make_integration, make_team
from tests.integration.connectors.contract import PLANTED_TOKEN, T0
from tests.integration.connectors.test_github_app import (
    APP_ID,
    KEY_ENV,
    AppKey,
    key_lines,
    make_key,
)
from worker import sync
from worker.connecting import check_connection, validate_config
from worker.settings import Settings


@pytest.fixture(scope="module")
def app_key() -> AppKey:
    return make_key()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", sweep_every_runs=0, metrics_tz="UTC")


async def _run(
    pool: asyncpg.Pool, integration: uuid.UUID, settings: Settings, environ: dict[str, str]
) -> sync.RunResult:
    return await sync.run_integration(
        pool,
        integration,
        settings,
        environ=environ,
        options=sync.RunOptions(force=True),
        loader=lambda source: GitHubConnector,
    )


async def test_pattern_repositories_come_and_go_between_runs(
    pool: asyncpg.Pool,
    settings: Settings,
    app_key: AppKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with GitHubSandbox(token=PLANTED_TOKEN, repos=["acme/web", "acme/api"]) as sandbox:
        assert isinstance(sandbox, GitHubSandbox)
        sandbox.add_app(APP_ID, app_key.public_pem)
        sandbox.install(APP_ID, "acme")
        sandbox.token_lifetime = 25  # renewed at every run's start (20 s margin)
        sandbox.add_issue("acme/web", "web issue", updated_at=T0)
        sandbox.add_issue("acme/api", "api issue", updated_at=T0 + timedelta(minutes=1))
        team = await make_team(pool, "Alpha")
        config = {
            "repos": ["acme/*"],
            "app_id": str(APP_ID),
            "private_key_env": KEY_ENV,
            "base_url": sandbox.url + "/api/v3",  # GitHub Enterprise Server's paths
            "seconds_between_requests": 0,
        }
        integration = await make_integration(pool, team, "github", config)
        environ = {KEY_ENV: app_key.pem}

        first = await _run(pool, integration, settings, environ)
        assert first.outcome == "succeeded", first.reason
        sandbox.remove_repo("acme/api")
        sandbox.add_repo("acme/new")
        sandbox.add_issue("acme/new", "new issue", updated_at=T0 + timedelta(minutes=2))
        second = await _run(pool, integration, settings, environ)
        assert second.outcome == "succeeded", second.reason

    rows = await pool.fetch(
        "SELECT title, sync_scope, out_of_scope_at IS NOT NULL AS out"
        " FROM work_items WHERE integration_id = $1 ORDER BY title",
        integration,
    )
    assert [(r["title"], r["sync_scope"], r["out"]) for r in rows] == [
        ("api issue", "acme/api", True),  # its repository left the pattern's listing
        ("new issue", "acme/new", False),
        ("web issue", "acme/web", False),
    ]
    activities = await pool.fetch(
        "SELECT event_type, message, metadata::text AS metadata FROM activity_logs"
    )
    assert "work_item_out_of_scope" in {a["event_type"] for a in activities}
    secrets = [*key_lines(app_key.pem), *sandbox.installation_tokens]
    assert len(sandbox.installation_tokens) >= 2
    text = caplog.text + "".join(f"{a['message']} {a['metadata']}" for a in activities)
    assert not [s[:12] for s in secrets if s in text]


async def test_a_malformed_key_fails_the_run_in_one_line(
    pool: asyncpg.Pool, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    planted = "-----BEGIN RSA PRIVATE KEY-----\nPLANTEDkeyMaterial0123456789\n-----END RSA..."
    team = await make_team(pool, "Alpha")
    config = {
        "repos": ["acme/web"],
        "app_id": "4242",
        "private_key_env": KEY_ENV,
        "base_url": "http://127.0.0.1:9/api/v3",
    }
    integration = await make_integration(pool, team, "github", config)
    result = await _run(pool, integration, settings, {KEY_ENV: planted})
    assert result.outcome == "failed"
    assert result.reason is not None and result.reason.startswith("private_key: not a readable")
    assert "\n" not in result.reason
    failed = await pool.fetch(
        "SELECT message, metadata::text AS metadata FROM activity_logs"
        " WHERE event_type = 'sync_failed'"
    )
    assert len(failed) == 1 and "private_key" in failed[0]["message"]
    assert "PLANTEDkeyMaterial" not in caplog.text + failed[0]["message"] + failed[0]["metadata"]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("ok", None),
        ("clock", "this machine's clock may be off"),
        ("not installed", "GitHub App 4242 is not installed on account 'acme'"),
        ("suspended", "is suspended (403)"),
        ("bad key", "private_key: not a readable PEM private key"),
    ],
)
async def test_integrations_test_explains_app_failures_in_one_line(
    settings: Settings, app_key: AppKey, case: str, expected: str | None
) -> None:
    """What `c9-sync integrations add/test` prints (worker.connecting.check_connection)."""
    with GitHubSandbox(token=PLANTED_TOKEN, repos=["acme/web"]) as sandbox:
        assert isinstance(sandbox, GitHubSandbox)
        sandbox.add_app(APP_ID, app_key.public_pem)
        if case != "not installed":
            installation = sandbox.install(APP_ID, "acme")
            if case == "suspended":
                sandbox.suspend(installation.id)
        if case == "clock":
            sandbox.clock_offset = 600.0
        config = validate_config(
            GitHubConnector,
            {
                "repos": ["acme/*"],
                "app_id": str(APP_ID),
                "private_key_env": KEY_ENV,
                "base_url": sandbox.url,
            },
        )
        pem = "PLANTED garbage" if case == "bad key" else app_key.pem
        said = await check_connection(
            GitHubConnector, config, uuid.uuid4(), settings, {KEY_ENV: pem}, within=20
        )
    if expected is None:
        assert said is None
    else:
        assert said is not None and expected in said and "\n" not in said
        assert "PLANTED" not in said and not [k for k in key_lines(app_key.pem) if k in said]
        assert not [t for t in sandbox.installation_tokens if t in said]

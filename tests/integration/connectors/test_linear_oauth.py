"""Linear over OAuth 2.0 with rotating refresh tokens, end to end: the Linear sandbox's token
endpoint (rotation, expiry, revocation, client authentication), the worker's grant vault on a real
PostgreSQL (encrypted rows, the row lock), sync runs in this process and in new ones (`python -m
worker.cli`, so this worktree's code runs), and greps of every output for the planted secrets."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from connectors.base import ConnectorContext, CredentialExpiry, FatalError
from connectors.linear import LinearConfig, LinearConnector
from connectors.sandbox.base import Request, Response
from connectors.sandbox.linear import LinearSandbox
from tests.helpers import make_integration, make_team
from tests.integration.connectors import test_linear as token_mode
from tests.integration.connectors.contract import PLANTED_TOKEN, T0, ConnectorContract
from worker import connecting, sync, vault
from worker.settings import Settings
from worker.store import grants
from worker.sync import RunOptions

ROOT = Path(__file__).resolve().parents[3]
CLIENT_ID = "c9-sync-linear-app"
CLIENT_SECRET = "lin_client_secret_PLANTED_7d1c4e"
SECRET_VAR = "C9_TEST_LINEAR_CLIENT_SECRET"
KEY1 = Fernet.generate_key().decode()
KEY2 = Fernet.generate_key().decode()
ISSUES = 23


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def linear() -> Iterator[LinearSandbox]:
    with LinearSandbox(
        token="lin_api_not_used_here", oauth_clients={CLIENT_ID: CLIENT_SECRET}
    ) as sb:
        for n in range(ISSUES):
            sb.add_issue("ENG", title=f"Issue {n}", updated_at=T0 + timedelta(minutes=n))
        yield sb  # type: ignore[misc]


def settings_for(tmp_path: Path, keys: str | None = KEY1) -> Settings:
    return Settings(
        home=tmp_path / "home",
        sweep_every_runs=0,
        secret_keys=SecretStr(keys) if keys is not None else None,
    )


ENVIRON = {SECRET_VAR: CLIENT_SECRET}


def oauth_config(sandbox: LinearSandbox, **oauth: Any) -> dict[str, Any]:
    return {
        "api_url": f"{sandbox.url}/graphql",
        "team_keys": ["ENG"],
        "page_size": 5,
        "timeout": 5,
        "oauth": {
            "client_id": CLIENT_ID,
            "client_secret_env": SECRET_VAR,
            "token_url": f"{sandbox.url}/oauth/token",
            **oauth,
        },
    }


async def linear_integration(
    pool: asyncpg.Pool,
    sandbox: LinearSandbox,
    *,
    page_size: int = 5,
    client_timeout: float = 5,
    **oauth: Any,
) -> uuid.UUID:
    team = await make_team(pool, f"Team-{uuid.uuid4().hex[:6]}")
    config = {**oauth_config(sandbox, **oauth), "page_size": page_size, "timeout": client_timeout}
    return await make_integration(pool, team, "linear", config)


async def store_consent(pool: asyncpg.Pool, integration: uuid.UUID, refresh_token: str) -> None:
    async with pool.acquire() as conn:
        await grants.save_consent(
            conn, integration, vault.seal(vault.keyring(SecretStr(KEY1)), refresh_token)
        )


async def stored_refresh_token(pool: asyncpg.Pool, integration: uuid.UUID, keys: str = KEY1) -> str:
    async with pool.acquire() as conn:
        row = await grants.get(conn, integration)
    assert row is not None and row.refresh_token is not None
    return vault.unseal(vault.keyring(SecretStr(keys)), row.refresh_token, "refresh token")


async def run(
    pool: asyncpg.Pool,
    integration: uuid.UUID,
    settings: Settings,
    environ: dict[str, str] = ENVIRON,
) -> sync.RunResult:
    return await sync.run_integration(
        pool, integration, settings, environ=environ, options=RunOptions(force=True)
    )


def statuses(sandbox: LinearSandbox) -> list[tuple[str, int]]:
    """(path, status) of every answer from now on."""
    seen: list[tuple[str, int]] = []

    def hook(request: Request, response: Response) -> None:
        seen.append((request.path, response.status))

    sandbox.response_hook = hook
    return seen


def cli(
    *args: str, db_url: str, keys: str | None = KEY1, **env: str
) -> subprocess.CompletedProcess[str]:
    """`c9-sync` in a new process, running this worktree's code."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("C9_SYNC_")}
    environ.update(DATABASE_URL=db_url, C9_SYNC_LOG_FORMAT="json", C9_SYNC_HTTP_PORT="0", **env)
    if keys is not None:
        environ["C9_SYNC_SECRET_KEYS"] = keys
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def activity_text(pool: asyncpg.Pool) -> str:
    rows = await pool.fetch("SELECT event_type, message, metadata::text FROM activity_logs")
    return repr([tuple(r) for r in rows])


def assert_no_secret(sandbox: LinearSandbox, *texts: str) -> None:
    planted = [CLIENT_SECRET, *sandbox.issued]
    assert len(planted) > 1
    for text in texts:
        for secret in planted:
            assert secret not in text


# ---------------------------------------------------------------------------------------------
# The shared connector contract, with OAuth: the planted "token" is the client secret, the
# access token comes from the vault on a real database and is renewed when refused.
# ---------------------------------------------------------------------------------------------
@dataclass
class OAuthHarness(token_mode.LinearHarness):
    pool: asyncpg.Pool | None = None
    integration: uuid.UUID | None = None

    def connector(self, *, token: str = PLANTED_TOKEN, **config: Any) -> LinearConnector:
        assert self.pool is not None and self.integration is not None
        values = {**oauth_config(self.sandbox), "page_size": self.page_size, "timeout": 2.0}
        values.update(config)
        ctx = ConnectorContext(
            integration_id=str(self.integration),
            token=None,
            cache_dir=self.tmp_path,
            environ={SECRET_VAR: token},
            max_retries=3,
            sleep_cap=5.0,
            on_wait=lambda reason, seconds: self.waits.append((reason, seconds)),
            vault=vault.DatabaseVault(
                self.pool.acquire, self.integration, SecretStr(KEY1), lambda s: None
            ),
        )
        return LinearConnector(LinearConfig.model_validate(values), ctx)


class TestLinearOAuthContract(ConnectorContract):
    @pytest.fixture
    async def harness(self, pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[OAuthHarness]:
        server = LinearSandbox(token="lin_api_unused", oauth_clients={CLIENT_ID: PLANTED_TOKEN})
        server.timeout_stall = 3.0
        with server:
            integration = await linear_integration(pool, server)
            await store_consent(pool, integration, server.consent(CLIENT_ID))
            yield OAuthHarness(server, tmp_path, pool=pool, integration=integration)


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------
async def test_a_sync_runs_across_access_token_expiries(pool, linear, tmp_path) -> None:
    linear.access_lifetime = 1.5
    linear.response_delay = 0.3  # well below the 0.6 s renewal margin; the run outlives 2 tokens
    integration = await linear_integration(pool, linear, page_size=3, renew_before_seconds=0.6)
    await store_consent(pool, integration, linear.consent(CLIENT_ID))
    seen = statuses(linear)
    started = time.monotonic()

    result = await run(pool, integration, settings_for(tmp_path))

    assert result.outcome == "succeeded", result.reason
    assert result.created == ISSUES
    assert time.monotonic() - started > 2 * linear.access_lifetime  # 8 pages + 3 tokens, 0.3 s each
    assert linear.refreshes >= 2  # renewed before each expiry, never refused on the way
    assert ("/graphql", 401) not in seen and all(status == 200 for _, status in seen)
    assert await stored_refresh_token(pool, integration) == linear.live_refresh_tokens()[0]
    assert len(linear.live_refresh_tokens()) == 1


async def test_an_access_token_refused_mid_run_is_renewed_once_and_the_run_goes_on(
    pool, linear, tmp_path
) -> None:
    integration = await linear_integration(pool, linear)
    await store_consent(pool, integration, linear.consent(CLIENT_ID))
    graphql_calls = [0]

    def expire_on_the_third(request: Request) -> None:
        if request.path == "/graphql":
            graphql_calls[0] += 1
            if graphql_calls[0] == 3:
                linear.expire_access_tokens()

    linear.between_requests = expire_on_the_third
    seen = statuses(linear)
    result = await run(pool, integration, settings_for(tmp_path))

    assert result.outcome == "succeeded", result.reason
    assert result.created == ISSUES
    assert seen.count(("/graphql", 401)) == 1  # the refused request, asked again once
    assert linear.refreshes == 2  # the first token, then the one after the refusal


async def test_the_rotated_refresh_token_survives_a_restart_in_a_new_process(
    pool, db_url, linear, tmp_path
) -> None:
    integration = await linear_integration(pool, linear)
    first_token = linear.consent(CLIENT_ID)
    await store_consent(pool, integration, first_token)
    assert (await run(pool, integration, settings_for(tmp_path))).outcome == "succeeded"
    rotated = await stored_refresh_token(pool, integration)
    assert rotated != first_token and linear.live_refresh_tokens() == [rotated]
    linear.expire_access_tokens()  # the stored access token is now refused: a refresh is needed
    linear.add_issue("ENG", title="After the restart", updated_at=T0 + timedelta(hours=2))

    done = cli("sync", "--integration", str(integration), "--force", db_url=db_url, **ENVIRON)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok created=1" in done.stdout, done.stdout
    assert linear.refreshes == 2  # the new process refreshed with the rotated token, not the seed
    assert await stored_refresh_token(pool, integration) == linear.live_refresh_tokens()[0]
    assert_no_secret(linear, done.stdout, done.stderr)


async def test_two_replicas_refreshing_at_once_rotate_once_and_both_succeed(
    db_url, pool, linear, tmp_path
) -> None:
    integration = await linear_integration(pool, linear)
    await store_consent(pool, integration, linear.consent(CLIENT_ID))

    def slow_token_endpoint(request: Request) -> None:
        if request.path == "/oauth/token":
            time.sleep(0.5)  # the second replica arrives while the first refreshes

    linear.between_requests = slow_token_endpoint
    pools = [await asyncpg.create_pool(db_url, min_size=1, max_size=2) for _ in range(2)]
    connectors = []
    expiries: list[CredentialExpiry] = []
    registered: list[str] = []
    try:
        for replica in pools:
            ctx = ConnectorContext(
                integration_id=str(integration),
                token=None,
                cache_dir=tmp_path,
                environ=ENVIRON,
                on_secret=registered.append,
                on_credential=expiries.append,
                vault=vault.DatabaseVault(
                    replica.acquire, integration, SecretStr(KEY1), registered.append
                ),
            )
            config = LinearConfig.model_validate(oauth_config(linear))
            connectors.append(LinearConnector(config, ctx))
        await asyncio.gather(*(c.check() for c in connectors))
    finally:
        for connector in connectors:
            await connector.aclose()
        for replica in pools:
            await replica.close()

    assert linear.refreshes == 1
    used = {r.headers["authorization"] for r in linear.requests_to("/graphql", "POST")}
    assert len(used) == 1  # the second replica used the token the first one stored
    access = used.pop().removeprefix("Bearer ")
    assert {CLIENT_SECRET, access, *linear.live_refresh_tokens()} <= set(registered)
    assert [(e.kind, e.renewable) for e in expiries] == [("oauth_access", True)] * 2
    assert abs((expiries[0].expires_at - expiries[1].expires_at).total_seconds()) < 1
    assert await stored_refresh_token(pool, integration) == linear.live_refresh_tokens()[0]


async def test_a_daemon_run_and_integrations_test_refreshing_at_once_lose_nothing(
    db_url, pool, linear, tmp_path
) -> None:
    # The first refresh is held until the other refresher (a new process: slow to start on a
    # loaded machine) is seen waiting on the row lock; the client's timeout must outlast the
    # hold, or the held answer is lost after rotating the token, as it would be in real life.
    integration = await linear_integration(pool, linear, client_timeout=90)
    await store_consent(pool, integration, linear.consent(CLIENT_ID))
    release = threading.Event()
    linear.between_requests = lambda r: release.wait(60) if r.path == "/oauth/token" else None
    waiters: list[int] = []
    done = asyncio.Event()

    async def watch_lock_waits() -> None:
        while not done.is_set():
            waiters.append(
                await pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE '%FROM oauth_grants%FOR UPDATE%'"
                )
            )
            if waiters[-1]:
                release.set()
            await asyncio.sleep(0.05)
        release.set()

    async def both() -> tuple[subprocess.CompletedProcess[str], sync.RunResult]:
        try:
            return await asyncio.gather(
                asyncio.to_thread(
                    cli, "integrations", "test", str(integration), db_url=db_url, **ENVIRON
                ),
                run(pool, integration, settings_for(tmp_path)),
            )
        finally:
            done.set()

    (checked, synced), _ = await asyncio.gather(both(), watch_lock_waits())

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert synced.outcome == "succeeded", synced.reason
    assert max(waiters) == 1  # the check waited on the row lock while the run refreshed
    assert linear.refreshes == 1 and len(linear.requests_to("/oauth/token")) == 1
    assert await stored_refresh_token(pool, integration) == linear.live_refresh_tokens()[0]
    assert_no_secret(linear, checked.stdout, checked.stderr)


async def test_a_revoked_grant_fails_the_run_clearly_and_keeps_what_was_synced(
    pool, linear, tmp_path, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    integration = await linear_integration(pool, linear)
    await store_consent(pool, integration, linear.consent(CLIENT_ID))
    assert (await run(pool, integration, settings_for(tmp_path))).outcome == "succeeded"
    before = await stored_refresh_token(pool, integration)
    linear.revoke_grants()

    result = await run(pool, integration, settings_for(tmp_path))

    assert result.outcome == "failed" and result.error_class == "FatalError"
    assert "invalid_grant" in result.reason and "c9-sync oauth grant" in result.reason
    assert "authorize the OAuth app in Linear again" in result.reason
    failed = await pool.fetchval(
        "SELECT message FROM activity_logs WHERE event_type = 'sync_failed'"
    )
    assert failed is not None and "c9-sync oauth grant" in failed
    assert await pool.fetchval("SELECT count(*) FROM work_items") == ISSUES
    assert await stored_refresh_token(pool, integration) == before  # nothing stored
    assert_no_secret(linear, result.reason, caplog.text, await activity_text(pool))


async def test_no_grant_and_no_seed_says_to_run_the_grant_command(pool, linear, tmp_path) -> None:
    integration = await linear_integration(pool, linear)
    result = await run(pool, integration, settings_for(tmp_path))
    assert result.outcome == "failed"
    assert f"c9-sync oauth grant {integration}" in result.reason
    assert (
        await pool.fetchval("SELECT count(*) FROM oauth_grants") == 0
    )  # the empty row rolled back


async def test_the_config_seed_starts_the_grant_and_is_never_read_again(
    pool, linear, tmp_path
) -> None:
    seed = linear.consent(CLIENT_ID)
    integration = await linear_integration(pool, linear, refresh_token_env="C9_TEST_SEED")
    environ = {**ENVIRON, "C9_TEST_SEED": seed}
    assert (await run(pool, integration, settings_for(tmp_path), environ)).outcome == "succeeded"
    assert seed not in linear.live_refresh_tokens()  # rotated away
    linear.expire_access_tokens()
    # The seed (now dead) is still in the environment: the stored, rotated token is used.
    again = await run(pool, integration, settings_for(tmp_path), environ)
    assert again.outcome == "succeeded", again.reason
    assert linear.refreshes == 2


async def test_client_credentials_are_requested_again_when_the_token_expires(
    pool, linear, tmp_path
) -> None:
    linear.client_credentials = True
    linear.access_lifetime = 0.8
    linear.response_delay = 0.15
    integration = await linear_integration(
        pool, linear, grant="client_credentials", renew_before_seconds=0.3
    )
    result = await run(pool, integration, settings_for(tmp_path))
    assert result.outcome == "succeeded", result.reason
    assert result.created == ISSUES
    assert linear.client_grants >= 2 and linear.refreshes == 0
    async with pool.acquire() as conn:
        row = await grants.get(conn, integration)
    assert row is not None and row.refresh_token is None and row.access_token is not None

    linear.client_credentials = False  # the app's toggle turned off
    linear.expire_access_tokens()
    refused = await run(pool, integration, settings_for(tmp_path))
    assert refused.outcome == "failed" and "enable client credentials" in refused.reason


# ---------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("keys", "said"),
    [
        (None, "C9_SYNC_SECRET_KEYS is not set"),
        ("not-a-fernet-key", "C9_SYNC_SECRET_KEYS: key 1 of 1 is not a Fernet key"),
        (f"{KEY1},", "C9_SYNC_SECRET_KEYS: key 2 of 2 is empty"),
    ],
    ids=["unset", "not-fernet", "empty-second"],  # stable: the keys are random per process
)
async def test_a_missing_or_bad_key_fails_that_run_only(pool, linear, tmp_path, keys, said) -> None:
    integration = await linear_integration(pool, linear)
    await store_consent(pool, integration, linear.consent(CLIENT_ID))
    result = await run(pool, integration, settings_for(tmp_path, keys))
    assert result.outcome == "failed" and said in result.reason  # recorded, not raised
    assert "not-a-fernet-key" not in result.reason or keys is None
    assert linear.refreshes == 0


async def test_keys_rotate_with_rekey_and_a_removed_key_is_a_clear_error(
    db_url, pool, linear, tmp_path
) -> None:
    integration = await linear_integration(pool, linear)
    await store_consent(pool, integration, linear.consent(CLIENT_ID))
    assert (await run(pool, integration, settings_for(tmp_path))).outcome == "succeeded"

    # The old key dropped before the rekey: a clear error naming the setting, nothing changed.
    early = await run(pool, integration, settings_for(tmp_path, KEY2))
    assert early.outcome == "failed" and early.error_class == "ConfigError"
    assert "cannot be decrypted with any key of C9_SYNC_SECRET_KEYS" in early.reason

    # Rotation: the new key first, the old one after it, `rekey`, then the old one goes.
    both = f"{KEY2},{KEY1}"
    rekeyed = cli("oauth", "rekey", db_url=db_url, keys=both)
    assert rekeyed.returncode == 0, rekeyed.stderr
    assert "re-encrypted 1 OAuth grant(s)" in rekeyed.stdout
    async with pool.acquire() as conn:
        row = await grants.get(conn, integration)
    assert row is not None and row.refresh_token is not None and row.access_token is not None
    for blob in (row.refresh_token, row.access_token):
        with pytest.raises(InvalidToken):
            Fernet(KEY1.encode()).decrypt(bytes(blob))
        Fernet(KEY2.encode()).decrypt(bytes(blob))
    linear.expire_access_tokens()
    only_new = await run(pool, integration, settings_for(tmp_path, KEY2))
    assert only_new.outcome == "succeeded", only_new.reason

    third = Fernet.generate_key().decode()
    refused = cli("oauth", "rekey", db_url=db_url, keys=third)
    assert refused.returncode == 2 and "nothing was re-encrypted" in refused.stderr
    assert await stored_refresh_token(pool, integration, KEY2) == linear.live_refresh_tokens()[0]
    assert_no_secret(linear, rekeyed.stdout, rekeyed.stderr, refused.stdout, refused.stderr)


# ---------------------------------------------------------------------------------------------
# The commands, and secrets in every output
# ---------------------------------------------------------------------------------------------
async def test_grant_list_and_test_commands_never_print_a_secret(
    db_url, pool, linear, tmp_path
) -> None:
    integration = await linear_integration(pool, linear)
    token_file = tmp_path / "refresh-token"
    token_file.write_text(linear.consent(CLIENT_ID) + "\n")

    granted = cli(
        "oauth", "grant", str(integration), "--refresh-token-file", str(token_file), db_url=db_url
    )
    assert granted.returncode == 0, granted.stderr
    assert "OAuth grant stored" in granted.stdout
    ciphertext = await pool.fetchval(
        "SELECT refresh_token FROM oauth_grants WHERE integration_id = $1", integration
    )
    assert token_file.read_text().strip().encode() not in bytes(ciphertext)  # encrypted at rest

    tested = cli("integrations", "test", str(integration), db_url=db_url, **ENVIRON)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    listed = cli("oauth", "list", db_url=db_url, COLUMNS="200")
    assert listed.returncode == 0 and str(integration) in listed.stdout
    assert "stored" in listed.stdout

    # A second consent replaces the grant; the env-var form.
    fresh = linear.consent(CLIENT_ID)
    regranted = cli(
        "oauth", "grant", str(integration), "--refresh-token-env", "C9_TEST_RT",
        db_url=db_url, C9_TEST_RT=fresh,
    )  # fmt: skip
    assert regranted.returncode == 0 and await stored_refresh_token(pool, integration) == fresh

    missing = cli(
        "oauth", "grant", str(integration), "--refresh-token-env", "C9_TEST_NOPE", db_url=db_url
    )
    assert missing.returncode == 2
    assert "--refresh-token-env: environment variable 'C9_TEST_NOPE' is not set" in missing.stderr
    nokey = cli(
        "oauth",
        "grant",
        str(integration),
        "--refresh-token-file",
        str(token_file),
        db_url=db_url,
        keys=None,
    )
    assert nokey.returncode == 2 and "C9_SYNC_SECRET_KEYS is not set" in nokey.stderr

    # The client secret is wrong in this shell: one line, naming the client, no value.
    wrong = cli("integrations", "test", str(integration), db_url=db_url, **{SECRET_VAR: "nope"})
    assert wrong.returncode == 1 and "Linear refused the OAuth client" in wrong.stderr
    outputs = [
        p.stdout + p.stderr for p in (granted, tested, listed, regranted, missing, nokey, wrong)
    ]
    assert_no_secret(linear, *outputs, await activity_text(pool))


async def test_integrations_add_explains_how_an_oauth_integration_is_checked(
    db_url, linear
) -> None:
    added = cli(
        "integrations", "add", "--team", "Gamma", "--type", "linear", "--create-team",
        "--config", json.dumps(oauth_config(linear)), db_url=db_url, **ENVIRON,
    )  # fmt: skip
    assert added.returncode == 1
    assert "--no-check" in added.stderr and "c9-sync oauth grant" in added.stderr
    assert linear.refreshes == 0


async def test_planted_secrets_stay_out_of_logs_exceptions_and_activity(
    pool, linear, tmp_path, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    integration = await linear_integration(pool, linear)
    await store_consent(pool, integration, linear.consent(CLIENT_ID))
    calls = [0]

    def expire_on_the_second(request: Request) -> None:
        calls[0] += request.path == "/graphql"
        if calls[0] == 2 and request.path == "/graphql":
            linear.expire_access_tokens()  # a refusal, a second refresh, a third access token

    linear.between_requests = expire_on_the_second
    ok = await run(pool, integration, settings_for(tmp_path))
    linear.revoke_grants()
    failed = await run(pool, integration, settings_for(tmp_path))
    assert ok.outcome == "succeeded" and failed.outcome == "failed"
    assert linear.refreshes >= 2
    assert_no_secret(linear, caplog.text, ok.reason, failed.reason, await activity_text(pool))


# ---------------------------------------------------------------------------------------------
# The connector alone: config and messages
# ---------------------------------------------------------------------------------------------
def test_oauth_config_validation() -> None:
    base = {"team_keys": ["ENG"], "oauth": {"client_id": "x", "client_secret_env": "S"}}
    assert LinearConfig.model_validate(base).uses_token() is False
    assert LinearConfig.model_validate({"team_keys": ["ENG"], "token": "t"}).uses_token() is True
    for bad, said in [
        ({**base, "token_env": "T"}, "give oauth or token_env, not both"),
        ({"team_keys": ["E"], "oauth": {"client_id": "x"}}, "exactly one of client_secret"),
        (
            {
                "team_keys": ["E"],
                "oauth": {"client_id": "x", "client_secret": "a", "client_secret_env": "b"},
            },
            "exactly one of client_secret",
        ),
        (
            {
                "team_keys": ["E"],
                "oauth": {**base["oauth"], "grant": "client_credentials", "refresh_token_env": "R"},
            },  # type: ignore[dict-item]
            "has no refresh token",
        ),
        (
            {"team_keys": ["E"], "oauth": {**base["oauth"], "token_url": "ftp://x"}},
            "oauth.token_url",
        ),  # type: ignore[dict-item]
        (
            {"team_keys": ["E"], "oauth": {**base["oauth"], "refresh_token": "inline"}},
            "Extra inputs",
        ),  # type: ignore[dict-item]
    ]:
        with pytest.raises(ValueError, match=said):
            LinearConfig.model_validate(bad)


async def test_a_missing_client_secret_is_a_config_error_naming_the_key(linear, tmp_path) -> None:
    config = LinearConfig.model_validate(oauth_config(linear))
    ctx = ConnectorContext(integration_id="x", token=None, cache_dir=tmp_path, environ={})
    with pytest.raises(
        FatalError, match=f"oauth.client_secret_env: environment variable '{SECRET_VAR}' is not set"
    ):
        LinearConnector(config, ctx)


async def test_check_connection_without_a_database_explains_itself(linear, tmp_path) -> None:
    cls = LinearConnector
    config = LinearConfig.model_validate(oauth_config(linear))
    problem = await connecting.check_connection(
        cls, config, uuid.uuid4(), settings_for(tmp_path), ENVIRON, 10
    )
    assert problem is not None and "checked once saved" in problem


# ---------------------------------------------------------------------------------------------
# The sandbox's token endpoint, as Linear's behaves
# ---------------------------------------------------------------------------------------------
def test_sandbox_token_endpoint_rotates_and_refuses_as_linear_does(linear) -> None:
    url = f"{linear.url}/oauth/token"
    first = linear.consent(CLIENT_ID)
    form = {"grant_type": "refresh_token", "refresh_token": first, "client_id": CLIENT_ID}
    with httpx.Client() as http:
        ok = http.post(url, data={**form, "client_secret": CLIENT_SECRET})
        assert ok.status_code == 200
        body = ok.json()
        assert body["token_type"] == "Bearer" and isinstance(body["expires_in"], int)
        assert body["refresh_token"] != first and body["access_token"]
        # The old refresh token is dead: rotation.
        reused = http.post(url, data={**form, "client_secret": CLIENT_SECRET})
        assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
        # HTTP Basic client authentication works too.
        basic = http.post(
            url,
            data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
        assert basic.status_code == 200
        wrong = http.post(url, data={**form, "client_secret": "nope"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
        as_json = http.post(url, json={**form, "client_secret": CLIENT_SECRET})
        assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
        unsupported = http.post(
            url, data={**form, "grant_type": "password", "client_secret": CLIENT_SECRET}
        )
        assert unsupported.json()["error"] == "unsupported_grant_type"
        creds = http.post(
            url,
            data={
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
        )
        assert creds.status_code == 400 and creds.json()["error"] == "unauthorized_client"

        # Access tokens: accepted while valid, then Linear's AUTHENTICATION_ERROR with 401.
        access = basic.json()["access_token"]
        query = {"query": "{ viewer { id } }"}
        good = http.post(
            f"{linear.url}/graphql", json=query, headers={"Authorization": f"Bearer {access}"}
        )
        assert good.status_code == 200 and good.json()["data"]["viewer"]["id"]
        linear.expire_access_tokens()
        late = http.post(
            f"{linear.url}/graphql", json=query, headers={"Authorization": f"Bearer {access}"}
        )
        assert late.status_code == 401
        assert late.json()["errors"][0]["extensions"]["code"] == "AUTHENTICATION_ERROR"
        raw = http.post(f"{linear.url}/graphql", json=query, headers={"Authorization": access})
        assert raw.status_code == 400  # an OAuth token without Bearer is no API key

"""Jira Cloud OAuth 2.0 (3LO): Atlassian's token endpoint (JSON bodies, rotation with a 10-minute
leeway, a revoked family), the grant kept by the real vault on a real database, the cloudId
found through accessible-resources, and the Jira connector (python-jira, Bearer) through the API
gateway `/ex/jira/{cloudId}`: the contract suite, sync runs across token expiries, a revoked grant,
a site outside the grant, and greps of every output for the planted secrets. The sandboxes
(connectors/sandbox/atlassian.py, the gateway of connectors/sandbox/jira.py) enforce what Atlassian
enforces."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from connectors.base import ConnectorContext, FatalError
from connectors.jira import JiraConfig, JiraConnector
from connectors.jira_oauth import AtlassianOAuth, AtlassianTokens, find_cloud_id, gateway_url
from connectors.sandbox.atlassian import AtlassianAuthSandbox
from connectors.sandbox.base import Request, Response
from connectors.sandbox.jira import JiraSandbox
from tests.conformance import checker
from tests.helpers import make_integration, make_team
from tests.integration.connectors.contract import PLANTED_TOKEN, T0, ConnectorContract
from tests.integration.connectors.test_jira import JiraHarness
from tests.integration.connectors.test_linear_oauth import cli
from worker import sync, vault
from worker.settings import Settings
from worker.store import grants
from worker.sync import RunOptions

CLIENT_ID = "atl-client-1"
SECRET = "atl-secret-PLANTED-3c2b1a"
SECRET_VAR = "C9_TEST_ATLASSIAN_SECRET"
KEY = Fernet.generate_key().decode()
SITE = {"id": "cloud-1234", "url": "https://acme.atlassian.net", "name": "acme", "scopes": []}


@pytest.fixture
def auth() -> Iterator[AtlassianAuthSandbox]:
    with AtlassianAuthSandbox(clients={CLIENT_ID: SECRET}, sites=[SITE]) as server:
        yield server


async def integration_with_consent(pool: asyncpg.Pool, refresh_token: str) -> uuid.UUID:
    team = await make_team(pool, f"T-{uuid.uuid4().hex[:6]}")
    integration = await make_integration(pool, team, "jira", {"url": SITE["url"]})
    async with pool.acquire() as conn:
        await grants.save_consent(
            conn, integration, vault.seal(vault.keyring(SecretStr(KEY)), refresh_token)
        )
    return integration


def tokens(
    auth: AtlassianAuthSandbox, pool: asyncpg.Pool, integration: uuid.UUID, tmp_path: Path,
    client: httpx.AsyncClient, seen: list[str],
) -> AtlassianTokens:  # fmt: skip
    oauth = AtlassianOAuth(
        client_id=CLIENT_ID,
        client_secret_env=SECRET_VAR,
        token_url=f"{auth.url}/oauth/token",
        api_url=auth.url,
    )
    ctx = ConnectorContext(
        integration_id=str(integration),
        token=None,
        cache_dir=tmp_path,
        environ={SECRET_VAR: SECRET},
        on_secret=seen.append,
        vault=vault.DatabaseVault(pool.acquire, integration, SecretStr(KEY), lambda s: None),
    )
    return AtlassianTokens(oauth, ctx, client)


async def test_refresh_rotates_and_the_new_refresh_token_is_stored(auth, pool, tmp_path) -> None:
    integration = await integration_with_consent(pool, auth.consent(CLIENT_ID))
    seen: list[str] = []
    async with httpx.AsyncClient() as client:
        held = tokens(auth, pool, integration, tmp_path, client, seen)
        bearer = await held.bearer()
        assert auth.valid(bearer.removeprefix("Bearer "))
        assert bearer.removeprefix("Bearer ") in seen  # registered before use
        # the cloudId of the configured site, through the gateway's site list
        cloud = await find_cloud_id(client, held._oauth, bearer, "https://ACME.atlassian.net/")  # type: ignore[arg-type]
        assert cloud == "cloud-1234"
        assert gateway_url(held._oauth, cloud) == f"{auth.url}/ex/jira/cloud-1234"  # type: ignore[arg-type]
        again = await held.bearer()  # still good: no second refresh
    assert again == bearer and auth.refreshes == 1
    [request] = auth.requests_to("/oauth/token", "POST")
    assert request.headers["content-type"].startswith("application/json")
    assert request.json()["grant_type"] == "refresh_token"


async def test_a_reused_refresh_token_after_the_leeway_revokes_the_grant(
    auth, pool, tmp_path
) -> None:
    first = auth.consent(CLIENT_ID)
    integration = await integration_with_consent(pool, first)
    auth.leeway = 0.0
    async with httpx.AsyncClient() as client:
        await tokens(auth, pool, integration, tmp_path, client, []).bearer()
        # someone restores a backup holding the old refresh token: Atlassian kills the family
        async with pool.acquire() as conn:
            await grants.save_consent(
                conn, integration, vault.seal(vault.keyring(SecretStr(KEY)), first)
            )
        await asyncio.sleep(0.01)
        with pytest.raises(FatalError, match="consent to the OAuth app again") as caught:
            await tokens(auth, pool, integration, tmp_path, client, []).bearer()
    assert SECRET not in str(caught.value) and first not in str(caught.value)


async def test_a_site_outside_the_grant_is_a_clear_error(auth, pool, tmp_path) -> None:
    integration = await integration_with_consent(pool, auth.consent(CLIENT_ID))
    async with httpx.AsyncClient() as client:
        held = tokens(auth, pool, integration, tmp_path, client, [])
        bearer = await held.bearer()
        with pytest.raises(FatalError, match=r"does not reach https://other.atlassian.net"):
            await find_cloud_id(client, held._oauth, bearer, "https://other.atlassian.net")  # type: ignore[arg-type]


async def test_wrong_client_secret_names_the_keys_not_the_value(
    auth, pool, tmp_path, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    integration = await integration_with_consent(pool, auth.consent(CLIENT_ID))
    auth.clients[CLIENT_ID] = "another-secret"
    async with httpx.AsyncClient() as client:
        with pytest.raises(FatalError, match=r"check oauth\.client_id and the client secret") as e:
            await tokens(auth, pool, integration, tmp_path, client, []).bearer()
    assert SECRET not in str(e.value) and SECRET not in caplog.text


async def test_an_expired_access_token_is_renewed_before_use(auth, pool, tmp_path) -> None:
    auth.access_lifetime = 1.0
    integration = await integration_with_consent(pool, auth.consent(CLIENT_ID))
    async with httpx.AsyncClient() as client:
        held = tokens(auth, pool, integration, tmp_path, client, [])
        first = await held.bearer()
        await asyncio.sleep(1.2)
        second = await held.bearer()
    assert first != second and auth.valid(second.removeprefix("Bearer "))
    assert not auth.valid(first.removeprefix("Bearer ")) and auth.refreshes == 2


# ---------------------------------------------------------------------------------------------
# The Jira connector through the gateway
# ---------------------------------------------------------------------------------------------
ISSUES = 13
JIRA_API = checker.load("jira")
GATEWAY = re.compile(r"/ex/jira/[^/]+(/.*)")


def through_gateway(request: Request) -> Request:
    """The request as the site's REST API sees it (the gateway's prefix dropped), for the
    conformance check of Jira Cloud's published API."""
    match = GATEWAY.fullmatch(request.path)
    return dataclasses.replace(request, path=match.group(1)) if match else request


@contextmanager
def gateway(clients: dict[str, str]) -> Iterator[tuple[JiraSandbox, AtlassianAuthSandbox]]:
    """A Jira Cloud site behind Atlassian's gateway, its authorization server, project ABC. Every
    request through the gateway must conform to Jira Cloud's published API (tests/conformance)."""
    answers: list[checker.Violation] = []
    with JiraSandbox(token="no-api-token-here") as jira:
        with AtlassianAuthSandbox(clients=clients, sites=[jira.site_resource()]) as auth:
            jira.oauth = auth
            jira.timeout_stall = 1.5
            jira.add_project("ABC", "Alpha")

            def check(request: Request, response: Response) -> None:
                if GATEWAY.fullmatch(request.path):
                    answers.extend(
                        checker.check_response(
                            JIRA_API, through_gateway(request), response.status, response.body
                        )
                    )

            jira.response_hook = check
            yield jira, auth
            served = [through_gateway(r) for r in jira.requests if GATEWAY.fullmatch(r.path)]
    checker.assert_conforms(JIRA_API, served)
    assert not answers, "\n".join(str(v) for v in answers[:20])


def jira_config(jira: JiraSandbox, auth: AtlassianAuthSandbox, **oauth: Any) -> dict[str, Any]:
    return {
        "url": jira.url,
        "projects": ["ABC"],
        "page_size": 5,
        "request_timeout": 5.0,
        "oauth": {
            "client_id": CLIENT_ID,
            "client_secret_env": SECRET_VAR,
            "token_url": f"{auth.url}/oauth/token",
            "api_url": jira.url,  # the sandbox plays api.atlassian.com too
            **oauth,
        },
    }


def vault_of(pool: asyncpg.Pool, integration: uuid.UUID) -> vault.DatabaseVault:
    return vault.DatabaseVault(pool.acquire, integration, SecretStr(KEY), lambda s: None)


@dataclasses.dataclass
class OAuthJiraHarness(JiraHarness):
    """The contract's harness in OAuth mode: the planted "token" is the client secret; the access
    token comes from the vault on a real database."""

    def __init__(
        self, jira: JiraSandbox, auth: AtlassianAuthSandbox, tmp_path: Path,
        pool: asyncpg.Pool, integration: uuid.UUID,
    ) -> None:  # fmt: skip
        super().__init__(jira, tmp_path)
        self.auth = auth
        self.pool = pool
        self.integration = integration

    def connector(self, *, token: str = PLANTED_TOKEN, **config: Any) -> JiraConnector:
        values = {**jira_config(self.sandbox, self.auth), "page_size": 5, "request_timeout": 2.0}
        values.update(config)
        if "jql" in config:
            values.pop("projects", None)
        ctx = ConnectorContext(
            integration_id=str(self.integration),
            token=None,
            cache_dir=self.tmp_path,
            environ={SECRET_VAR: token},
            max_retries=3,
            sleep_cap=5.0,
            vault=vault_of(self.pool, self.integration),
        )
        return JiraConnector(JiraConfig.model_validate(values), ctx)


class TestJiraOAuthContract(ConnectorContract):
    """The shared contract suite, Jira Cloud over OAuth 2.0 (3LO) through the gateway."""

    @pytest.fixture
    async def harness(self, pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[OAuthJiraHarness]:
        with gateway({CLIENT_ID: PLANTED_TOKEN}) as (jira, auth):
            integration = await integration_with_consent(pool, auth.consent(CLIENT_ID))
            yield OAuthJiraHarness(jira, auth, tmp_path, pool, integration)


@pytest.fixture
def site() -> Iterator[tuple[JiraSandbox, AtlassianAuthSandbox]]:
    with gateway({CLIENT_ID: SECRET}) as (jira, auth):
        for n in range(ISSUES):
            jira.add_issue("ABC", f"Issue {n}", updated=T0 + timedelta(minutes=n))
        yield jira, auth


ENVIRON = {SECRET_VAR: SECRET}


def settings_for(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", sweep_every_runs=0, secret_keys=SecretStr(KEY))


async def jira_integration(
    pool: asyncpg.Pool, jira: JiraSandbox, auth: AtlassianAuthSandbox, **oauth: Any
) -> uuid.UUID:
    team = await make_team(pool, f"T-{uuid.uuid4().hex[:6]}")
    integration = await make_integration(pool, team, "jira", jira_config(jira, auth, **oauth))
    async with pool.acquire() as conn:
        await grants.save_consent(
            conn, integration, vault.seal(vault.keyring(SecretStr(KEY)), auth.consent(CLIENT_ID))
        )
    return integration


async def run(pool: asyncpg.Pool, integration: uuid.UUID, tmp_path: Path) -> sync.RunResult:
    return await sync.run_integration(
        pool,
        integration,
        settings_for(tmp_path),
        environ={SECRET_VAR: SECRET},
        options=RunOptions(force=True),
    )


def statuses(jira: JiraSandbox) -> list[tuple[str, int]]:
    """(path, status) of every answer from now on (the conformance hook still runs)."""
    seen: list[tuple[str, int]] = []
    check = jira.response_hook

    def hook(request: Request, response: Response) -> None:
        seen.append((request.path, response.status))
        if check is not None:
            check(request, response)

    jira.response_hook = hook
    return seen


async def activity_text(pool: asyncpg.Pool) -> str:
    rows = await pool.fetch("SELECT event_type, message, metadata::text FROM activity_logs")
    return repr([tuple(r) for r in rows])


def issued(auth: AtlassianAuthSandbox) -> list[str]:
    """Every refresh and access token the authorization server ever handed out."""
    return [
        token for grant in auth._grants for token in (grant.live, *grant.rotated, *grant.access)
    ]


async def test_a_sync_runs_through_the_gateway_across_access_token_expiries(
    pool, site, tmp_path
) -> None:
    jira, auth = site
    auth.access_lifetime = 1.0
    jira.response_delay = 0.25  # below the 0.4 s renewal margin; the run outlives 2 tokens
    jira.page_cap = 3  # 5 search pages
    integration = await jira_integration(pool, jira, auth, renew_before_seconds=0.4)
    seen = statuses(jira)
    started = time.monotonic()

    result = await run(pool, integration, tmp_path)

    assert result.outcome == "succeeded", result.reason
    assert result.created == ISSUES
    assert time.monotonic() - started > 2 * auth.access_lifetime
    assert auth.refreshes >= 2  # renewed before each expiry
    assert all(status == 200 for _, status in seen), seen
    paths = [path for path, _ in seen]
    assert paths[0] == "/oauth/token/accessible-resources"
    assert all(p.startswith(f"/ex/jira/{jira.cloud_id}/rest/api/3/") for p in paths[1:])
    assert any(p.endswith("/search/jql") for p in paths)  # the enhanced search, via the gateway
    assert all(r.path.startswith("/ex/jira/") for r in jira.requests_to("/rest/api/"))
    bearers = {r.headers["authorization"] for r in jira.requests_to("/ex/jira/")}
    assert len(bearers) >= 2 and all(b.startswith("Bearer atl_at_") for b in bearers)
    urls = await pool.fetch("SELECT external_url FROM work_items")
    assert all(str(u[0]).startswith(f"{jira.url}/browse/ABC-") for u in urls)  # the site's


async def test_an_access_token_refused_mid_run_is_renewed_once_and_the_run_goes_on(
    pool, site, tmp_path
) -> None:
    jira, auth = site
    integration = await jira_integration(pool, jira, auth)
    calls = [0]

    def revoke_tokens_on_the_third(request: Request) -> None:
        if request.path.startswith("/ex/jira/"):
            calls[0] += 1
            if calls[0] == 3:
                for grant in auth._grants:
                    grant.access.clear()  # Atlassian dropped the access token early

    jira.between_requests = revoke_tokens_on_the_third
    seen = statuses(jira)
    result = await run(pool, integration, tmp_path)

    assert result.outcome == "succeeded", result.reason
    assert result.created == ISSUES
    assert [s for _, s in seen].count(401) == 1  # the refused call, asked again once
    assert auth.refreshes == 2


async def test_a_revoked_grant_fails_the_run_clearly_and_keeps_what_was_synced(
    pool, site, tmp_path, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    jira, auth = site
    integration = await jira_integration(pool, jira, auth)
    assert (await run(pool, integration, tmp_path)).outcome == "succeeded"
    auth.revoke_all()  # the user removed the app's access

    result = await run(pool, integration, tmp_path)

    assert result.outcome == "failed" and result.error_class == "FatalError"
    assert (
        "invalid_grant" in result.reason and f"c9-sync oauth grant {integration}" in result.reason
    )
    assert "consent to the OAuth app again" in result.reason
    failed = await pool.fetchval(
        "SELECT message FROM activity_logs WHERE event_type = 'sync_failed'"
    )
    assert failed is not None and "c9-sync oauth grant" in failed
    assert await pool.fetchval("SELECT count(*) FROM work_items") == ISSUES
    text = result.reason + caplog.text + await activity_text(pool)
    for secret in [SECRET, *issued(auth)]:
        assert secret not in text


async def test_a_site_outside_the_grant_fails_the_run_naming_it(pool, site, tmp_path) -> None:
    jira, auth = site
    auth.sites = [{**jira.site_resource(), "url": "https://other.atlassian.net", "id": "x-1"}]
    integration = await jira_integration(pool, jira, auth)

    result = await run(pool, integration, tmp_path)

    assert result.outcome == "failed" and result.error_class == "FatalError"
    assert f"does not reach {jira.url}" in result.reason
    assert "https://other.atlassian.net" in result.reason
    assert not jira.requests_to("/ex/jira/")


async def test_planted_secrets_stay_out_of_logs_exceptions_and_activity(
    pool, site, tmp_path, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    jira, auth = site
    auth.access_lifetime = 1.0
    jira.response_delay = 0.2
    jira.page_cap = 3
    integration = await jira_integration(pool, jira, auth, renew_before_seconds=0.3)
    ok = await run(pool, integration, tmp_path)
    auth.leeway = 0.0
    # an old refresh token restored from a backup: Atlassian revokes the whole family
    first = issued(auth)[1]
    async with pool.acquire() as conn:
        await grants.save_consent(
            conn, integration, vault.seal(vault.keyring(SecretStr(KEY)), first)
        )
    await asyncio.sleep(0.01)
    failed = await run(pool, integration, tmp_path)

    assert ok.outcome == "succeeded" and failed.outcome == "failed"
    assert auth.refreshes >= 2
    planted = [SECRET, *issued(auth)]
    assert len(planted) > 4
    for text in (ok.reason or "", failed.reason, caplog.text, await activity_text(pool)):
        for secret in planted:
            assert secret not in text


async def test_a_data_center_answer_through_the_gateway_is_a_clear_error(
    pool, site, tmp_path
) -> None:
    jira, auth = site
    jira.deployment_type = "Server"
    integration = await jira_integration(pool, jira, auth)
    result = await run(pool, integration, tmp_path)
    assert result.outcome == "failed" and result.error_class == "FatalError"
    assert "OAuth 2.0 (3LO) apps are Jira Cloud's" in result.reason


async def test_the_gateway_refuses_what_atlassian_refuses(site) -> None:
    jira, auth = site
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{auth.url}/oauth/token",
            json={
                "grant_type": "refresh_token",
                "client_id": CLIENT_ID,
                "client_secret": SECRET,
                "refresh_token": auth.consent(CLIENT_ID),
            },
        )
        token = answer.json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        base = f"{jira.url}/ex/jira/{jira.cloud_id}/rest/api/3"
        assert (await client.get(f"{base}/myself", headers=bearer)).status_code == 200
        # a 3LO token does not sign in at the site's own URL
        assert (
            await client.get(f"{jira.url}/rest/api/3/myself", headers=bearer)
        ).status_code == 401
        wrong = f"{jira.url}/ex/jira/not-this-site/rest/api/3/myself"
        assert (await client.get(wrong, headers=bearer)).status_code == 404
        unknown = {"Authorization": "Bearer atl_at_made_up"}
        assert (await client.get(f"{base}/myself", headers=unknown)).status_code == 401
        auth.revoke_all()
        assert (await client.get(f"{base}/myself", headers=bearer)).status_code == 401


def test_oauth_config_validation() -> None:
    oauth = {"client_id": "x", "client_secret_env": "S"}
    base = {"url": "https://acme.atlassian.net", "projects": ["ABC"], "oauth": oauth}
    config = JiraConfig.model_validate(base)
    assert config.uses_token() is False and config.auth == "oauth" and config.api_version == "3"
    assert JiraConfig.model_validate({**base, "oauth": None, "email": "a@b.c"}).uses_token()
    for key, value in [
        ("email", "a@b.c"),
        ("username", "bob"),
        ("token", "t"),
        ("token_env", "T"),
        ("token_file", "/t"),
    ]:
        with pytest.raises(ValueError, match=f"give oauth .* or {key}, not both"):
            JiraConfig.model_validate({**base, key: value})
    with pytest.raises(ValueError, match=r"oauth\.api_url"):
        JiraConfig.model_validate({**base, "oauth": {**oauth, "api_url": "ftp://x"}})


async def test_grant_and_test_commands_through_the_gateway_never_print_a_secret(
    db_url, pool, site, tmp_path
) -> None:
    jira, auth = site
    team = await make_team(pool, f"T-{uuid.uuid4().hex[:6]}")
    integration = await make_integration(pool, team, "jira", jira_config(jira, auth))
    consent = auth.consent(CLIENT_ID)

    granted = cli(
        "oauth", "grant", str(integration), "--refresh-token-env", "C9_TEST_RT",
        db_url=db_url, keys=KEY, C9_TEST_RT=consent,
    )  # fmt: skip
    assert granted.returncode == 0, granted.stderr
    tested = cli("integrations", "test", str(integration), db_url=db_url, keys=KEY, **ENVIRON)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert auth.refreshes == 1 and jira.requests_to(f"/ex/jira/{jira.cloud_id}/rest/api/3/")

    auth.revoke_all()
    refused = cli("integrations", "test", str(integration), db_url=db_url, keys=KEY, **ENVIRON)
    assert refused.returncode == 1
    assert "consent to the OAuth app again" in refused.stderr
    assert f"c9-sync oauth grant {integration}" in refused.stderr
    outputs = [p.stdout + p.stderr for p in (granted, tested, refused)]
    for text in [*outputs, await activity_text(pool)]:
        for secret in [SECRET, consent, *issued(auth)]:
            assert secret not in text


async def test_a_cut_changelog_is_read_through_the_gateway(pool, site, tmp_path) -> None:
    jira, auth = site
    jira.changelog_cap = 2  # the search carries only the two most recent histories
    issue = jira.add_issue("ABC", "Cycle me", created=T0, updated=T0)
    for hours, status in [(2, "In Progress"), (5, "In Review"), (9, "Done"), (12, "In Progress")]:
        jira.update_issue(issue.id, at=T0 + timedelta(hours=hours), status=status)
    auth.access_lifetime = 1.0
    jira.response_delay = 0.2  # the history reads come after a renewal
    integration = await jira_integration(pool, jira, auth, renew_before_seconds=0.4)

    result = await run(pool, integration, tmp_path)

    assert result.outcome == "succeeded", result.reason
    assert result.history_requests == 2
    base = f"/ex/jira/{jira.cloud_id}/rest/api/3"
    assert len(jira.requests_to(f"{base}/issue/{issue.id}/changelog")) == 1
    statuses = await pool.fetch(
        "SELECT h.to_status FROM work_item_history h JOIN work_items w ON w.id = h.work_item_id"
        " WHERE w.external_id = $1 AND h.field = 'status' ORDER BY h.changed_at",
        jira.external_id(issue),
    )
    # the whole changelog (from the status at creation), not the two the search carried
    assert [r[0] for r in statuses] == [
        "queued", "in_progress", "pr_ready", "completed", "in_progress",
    ]  # fmt: skip
    assert auth.refreshes >= 2

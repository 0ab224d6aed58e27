"""Jira Cloud OAuth 2.0 (3LO): Atlassian's token endpoint (JSON bodies, rotation with a 10-minute
leeway, a revoked family), the grant kept by the real vault on a real database, and the cloudId
found through accessible-resources. The sandbox (connectors/sandbox/atlassian.py) enforces what
Atlassian enforces; the connector's requests go through httpx."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from connectors.base import ConnectorContext, FatalError
from connectors.jira_oauth import AtlassianOAuth, AtlassianTokens, find_cloud_id, gateway_url
from connectors.sandbox.atlassian import AtlassianAuthSandbox
from tests.helpers import make_integration, make_team
from worker import vault
from worker.store import grants

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

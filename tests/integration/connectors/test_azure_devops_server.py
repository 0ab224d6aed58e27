"""Azure DevOps: several projects per integration, and Azure DevOps Server (on-premises
collection URLs, api-version negotiation, a private CA), against the sandbox through the real SDK
(docs/trackers/azure_devops.md#projects, #azure-devops-server)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from pydantic import SecretStr

from connectors.azure_devops import AzureDevOpsConfig, AzureDevOpsConnector
from connectors.base import ConnectorContext, FatalError
from connectors.sandbox.azure_devops import AzureDevOpsSandbox
from connectors.sandbox.tls import TestCA, shared_ca
from tests.conformance import checker
from tests.integration.connectors.contract import PLANTED_TOKEN, collect, items_of

ADO_API = checker.load("azure_devops")
DAY = datetime(2025, 5, 1, tzinfo=UTC)


def connector(sandbox: AzureDevOpsSandbox, tmp: Path, **config: Any) -> AzureDevOpsConnector:
    values: dict[str, Any] = {
        "organization_url": sandbox.organization_url,
        "batch_size": 5,
        "wiql_top": 7,
        "request_timeout": 2.0,
        **config,
    }
    if "projects" not in values:
        values.setdefault("project", sandbox.project)
    ctx = ConnectorContext(
        integration_id="t", token=SecretStr(PLANTED_TOKEN), cache_dir=tmp, max_retries=2
    )
    return AzureDevOpsConnector(AzureDevOpsConfig.model_validate(values), ctx)


@pytest.fixture
def sandbox() -> Iterator[AzureDevOpsSandbox]:
    with AzureDevOpsSandbox(token=PLANTED_TOKEN) as server:
        assert isinstance(server, AzureDevOpsSandbox)
        server.add_project("Mobile")
        yield server
    checker.assert_conforms(ADO_API, server.requests)


# ---------------------------------------------------------------------------------------------
# Several projects
# ---------------------------------------------------------------------------------------------
async def test_each_project_is_its_own_scope(sandbox: AzureDevOpsSandbox, tmp_path: Path) -> None:
    web = [sandbox.add_item(f"Web {n}", changed=DAY + timedelta(minutes=n)) for n in range(6)]
    mobile = [
        sandbox.add_item(f"Mobile {n}", changed=DAY + timedelta(minutes=n), project="Mobile")
        for n in range(4)
    ]
    c = connector(sandbox, tmp_path, projects=["My Project", "Mobile"], work_item_types=["Bug"])
    assert await c.scopes() == ["My Project/*/Bug", "Mobile/*/Bug"]
    c = connector(sandbox, tmp_path, projects=["My Project", "Mobile"])
    try:
        assert await c.scopes() == ["My Project/*/*", "Mobile/*/*"]
        await c.check()
        pages = await collect(c)
    finally:
        await c.aclose()
    by_scope: dict[str, set[str]] = {}
    for item in items_of(pages):
        by_scope.setdefault(item.scope, set()).add(item.external_id)
    assert by_scope == {
        "My Project/*/*": {sandbox.external_id(i) for i in web},
        "Mobile/*/*": {sandbox.external_id(i) for i in mobile},
    }
    checkpoints = {s for p in pages for s in p.checkpoint}
    assert checkpoints == {"My Project/*/*", "Mobile/*/*"}
    # each project is queried on its own route (WIQL's @project is that project)
    paths = {unquote(r.path) for r in sandbox.requests_to("/_apis/wit/wiql")}
    assert paths == {"/myorg/My Project/_apis/wit/wiql", "/myorg/Mobile/_apis/wit/wiql"}
    external = {i.external_id: i.external_url for i in items_of(pages)}
    assert external[sandbox.external_id(mobile[0])].endswith(f"/Mobile/_workitems/edit/{mobile[0]}")


async def test_a_project_gone_is_a_lost_scope_while_the_others_sync(
    sandbox: AzureDevOpsSandbox, tmp_path: Path
) -> None:
    sandbox.add_item("Web", changed=DAY)
    c = connector(sandbox, tmp_path, projects=["Gone", "My Project"])
    try:
        with pytest.raises(FatalError, match="'Gone' not found"):
            await c.check()
        pages = await collect(c)
        listing = [part async for part in c.all_ids()]
    finally:
        await c.aclose()
    lost = {s: why for p in pages for s, why in p.lost.items()}
    assert list(lost) == ["Gone/*/*"] and "not found" in lost["Gone/*/*"]
    assert [i.title for i in items_of(pages)] == ["Web"]
    assert [(part.scope, part.lost is not None, len(part)) for part in listing] == [
        ("Gone/*/*", True, 0),
        ("My Project/*/*", False, 1),
    ]


async def test_one_project_gone_stays_fatal(sandbox: AzureDevOpsSandbox, tmp_path: Path) -> None:
    c = connector(sandbox, tmp_path, project="Gone")
    try:
        with pytest.raises(FatalError, match="'Gone' not found"):
            await collect(c)
    finally:
        await c.aclose()


# ---------------------------------------------------------------------------------------------
# Azure DevOps Server
# ---------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _fresh_sdk_location_cache() -> Iterator[None]:
    """These tests play servers of other versions on reused ports: the SDK's process-wide
    location cache (keyed by URL) must not carry one server's route table to the next."""
    from azure.devops.client import Client

    Client._locations_cache.clear()
    yield
    Client._locations_cache.clear()


def api_versions(sandbox: AzureDevOpsSandbox) -> set[str]:
    return {
        r.headers.get("accept", "").partition("api-version=")[2]
        for r in sandbox.requests
        if "/_apis/wit/" in r.path
    }


@pytest.mark.parametrize(
    ("collection", "max_version", "released", "sent"),
    [
        ("tfs/DefaultCollection", "5.0", "5.0", "5.0"),  # Server 2019
        ("tfs/DefaultCollection", "6.0", "6.0", "6.0"),  # Server 2020
        ("DefaultCollection", "7.0", "7.0", "7.0"),  # Server 2022, installed without /tfs
        ("Fabrikam", "7.2", "7.1", "7.0"),  # newer than the client: it stays on 7.0
    ],
)
async def test_server_collection_urls_and_api_version_negotiation(
    collection: str, max_version: str, released: str, sent: str, tmp_path: Path
) -> None:
    with AzureDevOpsSandbox(
        token=PLANTED_TOKEN,
        organization=collection,
        tls=shared_ca(),
        max_api_version=max_version,
        released_version=released,
    ) as server:
        assert isinstance(server, AzureDevOpsSandbox)
        assert server.organization_url.startswith("https://")
        ids = [server.add_item(f"S{n}", changed=DAY + timedelta(minutes=n)) for n in range(3)]
        c = connector(server, tmp_path, ca_bundle=str(shared_ca().ca_file))
        try:
            got = items_of(await collect(c))
        finally:
            await c.aclose()
        assert got[0].external_id.startswith(f"127.0.0.1:{server.port}/{collection.lower()}/")
        assert {i.external_id for i in got} == {server.external_id(i) for i in ids}
        assert got[0].external_url == (
            f"{server.organization_url}/My%20Project/_workitems/edit/{ids[0]}"
        )
    assert api_versions(server) == {sent}
    wiql = server.requests_to("/_apis/wit/wiql")[0]
    assert unquote(wiql.path) == f"/{collection}/My Project/_apis/wit/wiql"


async def test_every_sdk_client_uses_the_ca_bundle(tmp_path: Path) -> None:
    # The location client the SDK builds on its own for ResourceAreas included: with the CA in
    # ca_bundle every request gets through; without it the first one is refused in one line.
    with AzureDevOpsSandbox(
        token=PLANTED_TOKEN, organization="tfs/DefaultCollection", tls=shared_ca()
    ) as server:
        assert isinstance(server, AzureDevOpsSandbox)
        server.add_item("S", changed=DAY)
        trusted = connector(server, tmp_path, ca_bundle=str(shared_ca().ca_file))
        untrusted = connector(server, tmp_path)
        stranger = connector(server, tmp_path, ca_bundle=str(TestCA.create(tmp_path).ca_file))
        try:
            await trusted.check()
            assert len(items_of(await collect(trusted))) == 1
            for refused in (untrusted, stranger):
                with pytest.raises(FatalError) as info:
                    await refused.check()
                assert "\n" not in str(info.value)
                assert "TLS verification of 127.0.0.1 failed: set ca_bundle" in str(info.value)
        finally:
            for c in (trusted, untrusted, stranger):
                await c.aclose()
    asked = {(r.method, r.path.casefold().rsplit("/_apis", 1)[-1]) for r in server.requests}
    assert {
        ("OPTIONS", ""),
        ("GET", "/resourceareas"),
        ("POST", "/wit/wiql"),
        ("POST", "/wit/workitemsbatch"),
    } <= asked


async def test_verify_tls_false_is_honoured_by_every_client(tmp_path: Path) -> None:
    with AzureDevOpsSandbox(token=PLANTED_TOKEN, tls=shared_ca()) as server:
        assert isinstance(server, AzureDevOpsSandbox)
        server.add_item("S", changed=DAY)
        c = connector(server, tmp_path, verify_tls=False)
        try:
            with pytest.warns(Warning, match="Unverified HTTPS request"):
                assert len(items_of(await collect(c))) == 1
        finally:
            await c.aclose()

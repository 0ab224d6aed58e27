"""GitHub Enterprise Server behind a corporate CA: the sandbox served over HTTPS with a
certificate of a CA made for the test; `ca_bundle` (or an explicit `verify_tls: false`) reaches
PyGithub's `verify`, for the token client and for the app's JWT and installation clients."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from urllib3.exceptions import InsecureRequestWarning

from connectors.base import ConnectorContext, FatalError
from connectors.github import GitHubConfig, GitHubConnector
from connectors.sandbox.github import GHES_PREFIX, GitHubSandbox
from connectors.sandbox.tls import TestCA
from tests.integration.connectors.contract import PLANTED_TOKEN, T0, collect, items_of
from tests.integration.connectors.test_github_app import APP_ID, KEY_ENV, make_key

REPO = "corp/tracker"


def make_ca_and_server(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signs for 127.0.0.1: (ca.pem, server.pem, server.key)."""
    ca = TestCA.create(directory)
    return ca.ca_file, ca.cert_file, ca.key_file


@pytest.fixture
def https(tmp_path: Path) -> Iterator[tuple[GitHubSandbox, str, Path]]:
    """The sandbox over HTTPS: (sandbox, its https GHES base_url, the CA bundle)."""
    ca, cert, key = make_ca_and_server(tmp_path)
    sandbox = GitHubSandbox(token=PLANTED_TOKEN, repos=[REPO])
    sandbox.add_issue(REPO, "behind the corporate CA", updated_at=T0)
    sandbox.start()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = sandbox._server
    assert server is not None
    # Same listening descriptor, now TLS: each accepted connection does the handshake.
    server.socket = context.wrap_socket(server.socket, server_side=True)
    try:
        yield sandbox, f"https://127.0.0.1:{sandbox.port}{GHES_PREFIX}", ca
    finally:
        sandbox.stop()


def _connector(base_url: str, tmp_path: Path, **config: Any) -> GitHubConnector:
    settings: dict[str, Any] = {
        "repos": [REPO],
        "base_url": base_url,
        "seconds_between_requests": 0,
        "timeout": 2,
        "token": PLANTED_TOKEN,
        **config,
    }
    ctx = ConnectorContext("tls", SecretStr(PLANTED_TOKEN), tmp_path, max_retries=1, sleep_cap=0.1)
    return GitHubConnector(GitHubConfig(**settings), ctx)


async def test_a_corporate_ca_bundle_is_used(
    https: tuple[GitHubSandbox, str, Path], tmp_path: Path
) -> None:
    sandbox, base_url, ca = https
    connector = _connector(base_url, tmp_path, ca_bundle=ca)
    try:
        await connector.check()
        got = items_of(await collect(connector))
    finally:
        await connector.aclose()
    assert [i.title for i in got] == ["behind the corporate CA"]
    assert got[0].external_id.startswith(f"127.0.0.1:{sandbox.port}/")
    assert all(r.path.startswith(GHES_PREFIX + "/") for r in sandbox.requests)


async def test_without_the_ca_the_server_is_not_trusted(
    https: tuple[GitHubSandbox, str, Path], tmp_path: Path
) -> None:
    _, base_url, _ = https
    connector = _connector(base_url, tmp_path)
    try:
        with pytest.raises(FatalError, match=r"not trusted.*set ca_bundle"):
            await connector.check()
    finally:
        await connector.aclose()
    connector = _connector(base_url, tmp_path, verify_tls=False)  # explicit, logged by the worker
    try:
        with pytest.warns(InsecureRequestWarning):  # really unverified
            await connector.check()
    finally:
        await connector.aclose()


async def test_the_app_clients_use_the_ca_bundle_too(
    https: tuple[GitHubSandbox, str, Path], tmp_path: Path
) -> None:
    sandbox, base_url, ca = https
    key = make_key()
    sandbox.add_app(APP_ID, key.public_pem)
    sandbox.install(APP_ID, "corp")
    settings: dict[str, Any] = {
        "repos": ["corp/*"],
        "base_url": base_url,
        "seconds_between_requests": 0,
        "timeout": 2,
        "app_id": str(APP_ID),
        "private_key_env": KEY_ENV,
        "ca_bundle": ca,
    }
    ctx = ConnectorContext("tls", None, tmp_path, max_retries=1, environ={KEY_ENV: key.pem})
    connector = GitHubConnector(GitHubConfig(**settings), ctx)
    try:
        got = items_of(await collect(connector))
    finally:
        await connector.aclose()
    assert [i.title for i in got] == ["behind the corporate CA"]
    assert [r.method for r in sandbox.requests[:2]] == ["GET", "POST"]  # lookup, mint: over TLS

"""The GitHub connector with GitHub App installation auth, on github.com and on GitHub Enterprise
Server paths (`/api/v3`), against the sandbox, with the real PyGithub client: the sandbox holds
only the app's PUBLIC key and verifies every JWT the connector signs."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from connectors.base import ConfigError, ConnectorContext, CredentialExpiry, FatalError, Page
from connectors.github import GitHubConfig, GitHubConnector
from connectors.sandbox.base import Request, Response
from connectors.sandbox.github import GHES_PREFIX, GitHubSandbox
from tests.conformance import checker
from tests.integration.connectors.contract import (
    PLANTED_TOKEN,
    T0,
    ConnectorContract,
    collect,
    items_of,
)
from tests.integration.connectors.test_github import OTHER, REPO, GitHubHarness

APP_ID = 4242
KEY_ENV = "GH_APP_PRIVATE_KEY"
GITHUB_API = checker.load("github")


@dataclass(frozen=True)
class AppKey:
    """An RSA key pair made for the test: the connector gets the private half, the sandbox the
    public one."""

    pem: str
    public_pem: bytes


def make_key() -> AppKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return AppKey(pem, public)


@pytest.fixture(scope="module")
def app_key() -> AppKey:
    return make_key()


def key_lines(pem: str) -> list[str]:
    """The body lines of a PEM: what a leak of the key would show."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


class AppHarness(GitHubHarness):
    """The contract's harness with the app's credential instead of a token."""

    def __init__(
        self, sandbox: GitHubSandbox, tmp_path: Path, key: AppKey, prefix: str = ""
    ) -> None:
        super().__init__(sandbox, tmp_path)
        self.key = key
        self.prefix = prefix  # GHES_PREFIX for GitHub Enterprise Server paths
        self.secrets: list[str] = []
        self.expiries: list[CredentialExpiry] = []
        self.installation = sandbox.install(APP_ID, "octo")

    def connector(self, *, token: str = PLANTED_TOKEN, **config: Any) -> GitHubConnector:
        settings: dict[str, Any] = {
            "repos": [REPO],
            "base_url": self.sandbox.url + self.prefix,
            "per_page": self.page_size,
            "seconds_between_requests": 0,
            "timeout": 1,
            "app_id": str(APP_ID),
            "private_key_env": KEY_ENV,
            **config,
        }
        ctx = ConnectorContext(
            integration_id="test",
            token=None,
            cache_dir=self.tmp_path,
            max_retries=3,
            sleep_cap=5.0,
            on_wait=lambda what, seconds: self.waits.append((what, seconds)),
            environ={KEY_ENV: self.key.pem},
            on_secret=self.secrets.append,
            on_credential=self.expiries.append,
        )
        return GitHubConnector(GitHubConfig(**settings), ctx)

    def minted(self) -> list[str]:
        """Every installation token the sandbox issued, in order."""
        return list(self.sandbox.installation_tokens)


def _unprefixed(request: Request) -> Request:
    return replace(request, path=request.path.removeprefix(GHES_PREFIX))


def _conforming_harness(tmp_path: Path, key: AppKey, prefix: str) -> Iterator[AppHarness]:
    """A harness whose requests and answers must conform to GitHub's published description
    (GHES serves the same routes under /api/v3)."""
    answers: list[checker.Violation] = []
    sandbox = GitHubSandbox(token=PLANTED_TOKEN, repos=[REPO])
    sandbox.add_app(APP_ID, key.public_pem)
    sandbox.timeout_stall = 2.0

    def hook(request: Request, response: Response) -> None:
        answers.extend(
            checker.check_response(GITHUB_API, _unprefixed(request), response.status, response.body)
        )

    sandbox.response_hook = hook
    sandbox.start()
    try:
        yield AppHarness(sandbox, tmp_path, key, prefix)
    finally:
        sandbox.stop()
    checker.assert_conforms(GITHUB_API, [_unprefixed(r) for r in sandbox.requests])
    assert not answers, "sandbox answers off the published shape:\n" + "\n".join(
        str(v) for v in answers[:20]
    )


@pytest.fixture
def harness(tmp_path: Path, app_key: AppKey) -> Iterator[AppHarness]:
    yield from _conforming_harness(tmp_path, app_key, "")


class TestGitHubAppContract(ConnectorContract):
    """The whole contract with app auth (the token contract is test_github.py's)."""


class TestGitHubEnterpriseAppContract(ConnectorContract):
    """The contract again on GitHub Enterprise Server paths: base_url https://HOST/api/v3."""

    @pytest.fixture
    def harness(self, tmp_path: Path, app_key: AppKey) -> Iterator[AppHarness]:
        yield from _conforming_harness(tmp_path, app_key, GHES_PREFIX)


def _auth(request: Request) -> tuple[str, str]:
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    return scheme, credential


# ---------------------------------------------------------------------------------------------
# The JWT and installation tokens
# ---------------------------------------------------------------------------------------------
async def test_tokens_are_minted_lazily_and_registered_before_use(harness: AppHarness) -> None:
    harness.seed(3, start=T0, step=timedelta(minutes=1))
    used_unregistered: list[str] = []

    def watch(request: Request) -> None:
        scheme, credential = _auth(request)
        if scheme == "token" and credential not in harness.secrets:
            used_unregistered.append(request.path)

    harness.sandbox.between_requests = watch
    connector = harness.connector()
    assert harness.sandbox.requests == [], "building the connector must not call GitHub"
    try:
        await connector.check()
        got = items_of(await collect(connector))
    finally:
        await connector.aclose()
    assert len(got) == 3 and not used_unregistered
    requests = harness.sandbox.requests
    assert [(r.method, r.path) for r in requests[:3]] == [
        ("GET", f"/repos/{REPO}/installation"),
        ("POST", f"/app/installations/{harness.installation.id}/access_tokens"),
        ("GET", f"/repos/{REPO}"),
    ]
    # The JWT: Bearer, RS256, iat 60 s back, exp at most 10 minutes ahead, iss the app id.
    scheme, token = _auth(requests[0])
    assert scheme == "Bearer"
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, options={"verify_signature": False})
    now = time.time()
    assert claims["iss"] == str(APP_ID)
    assert now - 75 <= claims["iat"] <= now - 45
    assert now < claims["exp"] <= claims["iat"] + 660
    # The installation token: `token` scheme, registered, one minted for the whole run.
    assert {_auth(r) for r in requests[2:]} == {("token", harness.minted()[0])}
    # The key when it was resolved, then the one token minted for the whole run.
    assert harness.secrets == [harness.key.pem.strip(), *harness.minted()]
    assert len(harness.minted()) == 1
    [expiry] = harness.expiries
    assert expiry.kind == "app_installation_token" and expiry.renewable
    assert timedelta(minutes=59) < expiry.expires_at - datetime.now(UTC) <= timedelta(hours=1)


async def test_a_sync_outlives_its_installation_tokens(harness: AppHarness) -> None:
    """Tokens that live 22 s are renewed 20 s before they expire (PyGithub's margin): a slow run
    goes through several, and never sends one that GitHub would refuse."""
    sandbox = harness.sandbox
    sandbox.token_lifetime = 22
    sandbox.response_delay = 0.6
    statuses: list[int] = []
    sandbox.response_hook = lambda request, response: statuses.append(response.status)
    ids = harness.seed(harness.page_size * 4, start=T0, step=timedelta(minutes=1))
    connector = harness.connector()
    started = time.monotonic()
    try:
        got = items_of(await collect(connector))
    finally:
        await connector.aclose()
    assert time.monotonic() - started > 3.5  # outlived the first token's usable seconds
    assert sorted(i.external_id for i in got) == sorted(ids)
    assert 401 not in statuses
    assert len(harness.minted()) >= 2
    assert harness.secrets[1:] == harness.minted()  # each registered
    assert [e.expires_at for e in harness.expiries] == sorted(
        e.expires_at for e in harness.expiries
    )
    issue_tokens = {_auth(r)[1] for r in sandbox.requests_to("/issues")}
    assert len(issue_tokens) >= 2, "the run should have switched tokens"


async def test_a_token_refused_before_its_expiry_is_renewed_not_fatal(harness: AppHarness) -> None:
    """GitHub answers 401 to a token whose `expires_at` has not come (revoked early, or GitHub's
    clock ahead): the connector drops it, mints another and goes on."""
    ids = harness.seed(harness.page_size + 2, start=T0, step=timedelta(minutes=1))
    connector = harness.connector()
    try:
        await connector.check()
        harness.sandbox.expire_tokens()
        got = items_of(await collect(connector))
    finally:
        await connector.aclose()
    assert sorted(i.external_id for i in got) == sorted(ids)
    assert len(harness.minted()) == 2


async def test_a_removed_installation_is_fatal_and_says_so(harness: AppHarness) -> None:
    harness.seed(2, start=T0, step=timedelta(minutes=1))
    connector = harness.connector()
    try:
        await connector.check()
        harness.sandbox.uninstall(harness.installation.id)
        with pytest.raises(FatalError) as info:
            await collect(connector)
    finally:
        await connector.aclose()
    message = str(info.value)
    assert "not found (404)" in message and "install the app again" in message
    assert "\n" not in message


async def test_a_suspended_installation_is_fatal_and_says_so(harness: AppHarness) -> None:
    harness.sandbox.suspend(harness.installation.id)
    connector = harness.connector()
    try:
        with pytest.raises(FatalError, match=r"is suspended \(403\).*unsuspend") as info:
            await connector.check()
    finally:
        await connector.aclose()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("server_ahead", [-150.0, 400.0])
async def test_clock_skew_is_named(harness: AppHarness, server_ahead: float) -> None:
    """Our clock ahead of GitHub's puts `iat` in its future; behind it, `exp` in its past."""
    harness.sandbox.clock_offset = server_ahead
    connector = harness.connector()
    try:
        with pytest.raises(FatalError, match="clock may be off") as info:
            await connector.check()
    finally:
        await connector.aclose()
    assert "(401: '" in str(info.value)  # GitHub's own words follow
    assert harness.minted() == []


async def test_a_jwt_signed_with_another_key_is_refused(harness: AppHarness) -> None:
    harness.key = make_key()  # not the key the sandbox holds
    connector = harness.connector()
    try:
        with pytest.raises(FatalError, match=r"could not be decoded.*check app_id"):
            await connector.check()
    finally:
        await connector.aclose()


async def test_the_client_id_works_as_issuer(harness: AppHarness) -> None:
    client_id = harness.sandbox.apps[APP_ID].client_id
    harness.seed(2, start=T0, step=timedelta(minutes=1))
    connector = harness.connector(app_id=client_id)
    try:
        got = items_of(await collect(connector))
    finally:
        await connector.aclose()
    assert len(got) == 2
    token = _auth(harness.sandbox.requests[0])[1]
    assert jwt.decode(token, options={"verify_signature": False})["iss"] == client_id


async def test_a_configured_installation_id_skips_discovery(harness: AppHarness) -> None:
    harness.seed(2, start=T0, step=timedelta(minutes=1))
    connector = harness.connector(installation_id=harness.installation.id)
    try:
        got = items_of(await collect(connector))
    finally:
        await connector.aclose()
    assert len(got) == 2
    paths = [r.path for r in harness.sandbox.requests]
    assert paths[0] == f"/app/installations/{harness.installation.id}/access_tokens"
    assert not [p for p in paths if p.endswith("/installation")]


async def test_an_app_not_installed_on_a_repository_loses_only_that_one(
    harness: AppHarness,
) -> None:
    """The app installed on `octo` for one selected repository: the other is named by
    `check()`, lost during a sync (the rest goes on)."""
    sandbox = harness.sandbox
    sandbox.uninstall(harness.installation.id)
    sandbox.install(APP_ID, "octo", repos=[REPO])
    sandbox.add_repo(OTHER)
    sandbox.add_issue(REPO, "kept", updated_at=T0)
    connector = harness.connector(repos=[OTHER, REPO], installation_id=None)
    try:
        expected = (
            f"not visible to this GitHub App: {OTHER} (the GitHub App is not installed on it)"
        )
        with pytest.raises(FatalError, match=re.escape(expected)):
            await connector.check()
        pages = await collect(connector)
    finally:
        await connector.aclose()
    assert [i.title for i in items_of(pages)] == ["kept"]
    lost = {scope: why for page in pages for scope, why in page.lost.items()}
    assert list(lost) == [OTHER]


async def test_an_owner_without_the_app_is_a_clear_error(harness: AppHarness) -> None:
    harness.sandbox.add_repo("elsewhere/one")
    connector = harness.connector(repos=["elsewhere/*"])
    try:
        with pytest.raises(FatalError) as info:
            await connector.scopes()
    finally:
        await connector.aclose()
    assert str(info.value).startswith(f"GitHub App {APP_ID} is not installed on account")
    assert [r.path for r in harness.sandbox.requests] == [
        "/orgs/elsewhere/installation",
        "/users/elsewhere/installation",
    ]


# ---------------------------------------------------------------------------------------------
# Repository patterns
# ---------------------------------------------------------------------------------------------
async def test_a_pattern_is_listed_again_each_run(harness: AppHarness) -> None:
    """`octo/*` is every repository of the installation, listed by each run's connector: a
    repository added upstream becomes a scope, one removed stops being one; issues come from
    each, each repository its own scope (its pulls scope too)."""
    sandbox = harness.sandbox
    sandbox.add_repo(OTHER)
    sandbox.add_repo("octo/quiet")
    sandbox.issues_disabled.add("octo/quiet")  # issues off: never a scope
    sandbox.add_repo("stranger/repo")  # another owner: not in the installation
    sandbox.add_issue(REPO, "a", updated_at=T0)
    sandbox.add_issue(OTHER, "b", updated_at=T0 + timedelta(minutes=1))

    async def run() -> tuple[list[str], list[Page]]:
        connector = harness.connector(repos=["octo/*"], include_pull_requests=True)
        try:
            return await connector.scopes(), await collect(connector)
        finally:
            await connector.aclose()

    scopes, pages = await run()
    assert scopes == [REPO, f"{REPO}:pulls", OTHER, f"{OTHER}:pulls"]
    assert {(i.title, i.scope) for i in items_of(pages)} == {("a", REPO), ("b", OTHER)}
    assert len(sandbox.requests_to("/installation/repositories")) == 1  # once a run

    sandbox.remove_repo(OTHER)
    sandbox.add_repo("octo/gamma")
    scopes, _ = await run()
    assert scopes == [REPO, f"{REPO}:pulls", "octo/gamma", "octo/gamma:pulls"]


async def test_a_mixed_list_and_a_glob(harness: AppHarness) -> None:
    sandbox = harness.sandbox
    for name in ("octo/svc-api", "octo/svc-web", "octo/docs"):
        sandbox.add_repo(name)
    sandbox.install(APP_ID, "solo", account_type="User")
    sandbox.add_repo("solo/one")
    connector = harness.connector(repos=["octo/svc-*", "solo/one", "octo/SVC-API"])
    try:
        scopes = await connector.scopes()
        await connector.check()
    finally:
        await connector.aclose()
    # Patterns expand in place, sorted; a repository named twice (any case) comes once.
    assert scopes == ["octo/svc-api", "octo/svc-web", "solo/one"]


async def test_a_short_installation_listing_is_retried_not_taken(harness: AppHarness) -> None:
    """A listing cut short would mark repositories out of scope: the installation listing must
    add up to its total_count, else it is read again."""
    sandbox = harness.sandbox
    for n in range(5):
        sandbox.add_repo(f"octo/r{n}")
    connector = harness.connector(repos=["octo/*"])
    try:
        await connector.check()  # the installation and its first token
        sandbox.answer_short(2)
        connector._listings.clear()  # a new run's listing
        scopes = await connector.scopes()
    finally:
        await connector.aclose()
    assert scopes == [REPO, *(f"octo/r{n}" for n in range(5))]
    assert len(sandbox.requests_to("/installation/repositories")) == 3


async def test_patterns_with_a_token_list_the_org_or_the_user(tmp_path: Path) -> None:
    sandbox = GitHubSandbox(token=PLANTED_TOKEN, repos=[REPO, OTHER, "solo/one", "solo/two"])
    sandbox.users.add("solo")
    sandbox.start()
    try:
        harness = GitHubHarness(sandbox, tmp_path)
        connector = harness.connector(repos=["octo/*", "solo/t*"])
        try:
            scopes = await connector.scopes()
            await connector.check()
        finally:
            await connector.aclose()
        missing = harness.connector(repos=["nobody/*"])
        try:
            with pytest.raises(FatalError, match="no organization or user 'nobody'"):
                await missing.scopes()
        finally:
            await missing.aclose()
    finally:
        sandbox.stop()
    assert scopes == [REPO, OTHER, "solo/two"]
    checker.assert_conforms(GITHUB_API, sandbox.requests)
    paths = [r.path for r in sandbox.requests]
    assert "/orgs/octo/repos" in paths and "/users/solo/repos" in paths


# ---------------------------------------------------------------------------------------------
# Personal access tokens: the expiry GitHub announces
# ---------------------------------------------------------------------------------------------
async def test_a_pat_expiry_header_is_reported(tmp_path: Path) -> None:
    sandbox = GitHubSandbox(token=PLANTED_TOKEN, repos=[REPO])
    sandbox.pat_expires_at = datetime(2026, 12, 24, 9, 0, tzinfo=UTC)
    sandbox.add_issue(REPO, "a", updated_at=T0)
    sandbox.start()
    expiries: list[CredentialExpiry] = []
    try:
        harness = GitHubHarness(sandbox, tmp_path)
        connector = harness.connector()
        connector.ctx = replace(connector.ctx, on_credential=expiries.append)
        try:
            await connector.check()
            await collect(connector)
        finally:
            await connector.aclose()
    finally:
        sandbox.stop()
    assert expiries == [CredentialExpiry("pat", datetime(2026, 12, 24, 9, 0, tzinfo=UTC), False)]


# ---------------------------------------------------------------------------------------------
# Bad keys and planted secrets
# ---------------------------------------------------------------------------------------------
def _ec_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _encrypted_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    ).decode()


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (lambda pem: "PLANTED-not-a-key-at-all", "not a readable PEM private key"),
        (lambda pem: pem[: len(pem) // 2], "not a readable PEM private key"),
        (lambda pem: _ec_key(), "not an RSA key"),
        (lambda pem: _encrypted_key(), "encrypted with a passphrase"),
    ],
)
def test_a_malformed_private_key_is_a_config_error_without_its_content(
    harness: AppHarness, make: Any, cause: str
) -> None:
    bad = make(harness.key.pem)
    harness.key = AppKey(bad, b"")
    with pytest.raises(ConfigError) as info:
        harness.connector()
    message = str(info.value)
    assert message.startswith("private_key: ") and cause in message and "\n" not in message
    assert not any(line in message for line in key_lines(bad))
    assert "PLANTED" not in message
    assert harness.sandbox.requests == []


def test_an_unreadable_key_file_names_the_key(harness: AppHarness, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^private_key_file: cannot read"):
        harness.connector(private_key_env=None, private_key_file=tmp_path / "missing.pem")


def test_a_key_given_with_escaped_newlines_works(harness: AppHarness) -> None:
    """An environment variable often carries the PEM on one line with `\\n` escapes."""
    harness.key = AppKey(harness.key.pem.strip().replace("\n", "\\n"), harness.key.public_pem)
    connector = harness.connector()
    assert connector is not None


async def test_no_key_or_token_in_logs_or_errors(
    harness: AppHarness, caplog: pytest.LogCaptureFixture
) -> None:
    """Debug logs of PyGithub and urllib3 included: the private key, the JWTs and every
    installation token stay out of every log line and every error, through renewals,
    refusals and a failed run."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="github")  # PyGithub logs bodies at DEBUG
    harness.seed(harness.page_size + 1, start=T0, step=timedelta(minutes=1))
    harness.sandbox.token_lifetime = 21
    errors: list[str] = []
    connector = harness.connector()
    try:
        await connector.check()
        harness.sandbox.expire_tokens()
        await collect(connector)
        harness.sandbox.suspend(harness.installation.id)
        harness.sandbox.expire_tokens()
        try:
            await collect(connector)
        except FatalError as exc:
            errors.append(f"{exc!s} {exc!r} {exc.__cause__!r} {exc.__context__!r}")
    finally:
        await connector.aclose()
    assert errors, "the suspended installation must fail the run"
    jwts = {_auth(r)[1] for r in harness.sandbox.requests if _auth(r)[0] == "Bearer"}
    secrets = [*key_lines(harness.key.pem), *harness.minted(), *jwts]
    assert len(harness.minted()) >= 2 and jwts
    text = caplog.text + "\n".join(errors)
    assert "access_tokens" in caplog.text, "PyGithub's debug log should have been captured"
    assert "(installation token withheld)" in caplog.text
    leaked = [s[:12] for s in secrets if s in text]
    assert not leaked, leaked


def test_sandbox_app_endpoints_and_refusals(harness: AppHarness) -> None:
    """The sandbox answers as GitHub does: the JWT (Bearer) on app routes, an installation
    token (`token` or `Bearer`) on data routes, 401 to anything else; shapes as published."""
    import urllib.error
    import urllib.request

    sandbox = harness.sandbox
    connector = harness.connector()
    app = connector._app
    assert app is not None
    signed = app.app_auth.create_jwt()

    def get(path: str, auth: str, method: str = "GET") -> tuple[int, Any]:
        request = urllib.request.Request(
            sandbox.url + path, method=method, headers={"Authorization": auth}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    assert get("/app", f"Bearer {signed}")[1]["id"] == APP_ID
    status, installations = get("/app/installations", f"Bearer {signed}")
    assert status == 200 and [i["id"] for i in installations] == [harness.installation.id]
    assert get(f"/app/installations/{harness.installation.id}", f"Bearer {signed}")[0] == 200
    assert get("/orgs/octo/installation", f"Bearer {signed}")[0] == 200
    status, minted = get(
        f"/app/installations/{harness.installation.id}/access_tokens", f"Bearer {signed}", "POST"
    )
    assert status == 201 and minted["token"].startswith("ghs_")
    token = minted["token"]
    assert get(f"/repos/{REPO}", f"token {token}")[0] == 200
    assert get(f"/repos/{REPO}", f"Bearer {token}")[0] == 200  # GitHub takes both schemes
    assert get(f"/repos/{REPO}", f"Bearer {signed}")[1]["message"] == "Bad credentials"
    assert get("/app", f"token {token}")[1]["message"] == "A JSON web token could not be decoded"
    assert get("/app", f"token {signed}")[0] == 401  # a JWT needs Bearer
    status, listing = get("/installation/repositories", f"token {token}")
    assert status == 200 and listing["total_count"] == 1
    assert get("/installation/repositories", f"token {PLANTED_TOKEN}")[0] == 403
    forged = jwt.encode(
        {"iat": int(time.time()) - 60, "exp": int(time.time()) + 60, "iss": str(APP_ID)},
        base64.b64encode(b"not the app key, an HMAC secret of 32+ bytes").decode(),
        algorithm="HS256",
    )
    assert get("/app", f"Bearer {forged}")[0] == 401
    too_long = jwt.encode(
        {"iat": int(time.time()) - 60, "exp": int(time.time()) + 900, "iss": str(APP_ID)},
        harness.key.pem,
        algorithm="RS256",
    )
    assert get("/app", f"Bearer {too_long}")[1]["message"].endswith("too far in the future")
    sandbox.expire_tokens()
    assert get(f"/repos/{REPO}", f"token {token}")[0] == 401

"""Azure DevOps with Microsoft Entra ID, against a local Entra authority (HTTPS, its own CA) and the
Azure DevOps sandbox, through the real azure-identity (MSAL) and azure-devops SDKs: the shared
contract for every credential kind, token expiry and renewal, refusals as one-line errors, secrets
never shown (docs/trackers/azure_devops.md#microsoft-entra-id)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from connectors.azure_devops import AzureDevOpsConfig, AzureDevOpsConnector
from connectors.base import (
    ConfigError,
    ConnectorContext,
    CredentialExpiry,
    FatalError,
    RetriableError,
)
from connectors.sandbox.azure_devops import AzureDevOpsSandbox
from connectors.sandbox.entra import (
    EXCHANGE_AUDIENCE,
    EntraSandbox,
    Federation,
    pem_bundle,
    self_signed,
)
from connectors.sandbox.tls import shared_ca
from tests.conformance import checker
from tests.integration.connectors.contract import (
    PLANTED_TOKEN,
    ConnectorContract,
    collect,
    items_of,
)
from tests.integration.connectors.test_azure_devops import AdoHarness

ADO_API = checker.load("azure_devops")
PAGE, TOP = 5, 7
DAY = datetime(2025, 5, 1, tzinfo=UTC)
KINDS = ["pat", "client_secret", "certificate", "managed_identity", "workload_identity"]
CLUSTER_ISSUER = "https://oidc.prod-aks.azure.com/0000-cluster/"
SERVICE_ACCOUNT = "system:serviceaccount:c9:c9-sync"


@dataclass
class Recorder:
    """What a connector hands its context: secrets to redact, credential expiries."""

    secrets: list[str] = field(default_factory=list)
    expiries: list[CredentialExpiry] = field(default_factory=list)


class EntraHarness(AdoHarness):
    """The contract's Harness for one credential kind: an Entra authority, an Azure DevOps
    organization over HTTPS that takes its tokens, and the credential material on disk (items,
    sprints and moves as the token harness makes them)."""

    def __init__(
        self,
        kind: str,
        entra: EntraSandbox,
        sandbox: AzureDevOpsSandbox,
        tmp: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        super().__init__(sandbox, tmp)
        self.kind, self.entra, self.tmp = kind, entra, tmp
        self.monkeypatch = monkeypatch
        self.record = Recorder()
        self.tenant = entra.add_tenant()
        self.app = entra.add_app(self.tenant)
        self.environ: dict[str, str] = {}
        self.key_pem = ""
        if kind == "certificate":
            key, certificate = self_signed("c9-sync")
            self.app.certificates.append(certificate)
            bundle = pem_bundle(key, certificate)
            self.key_pem = bundle.decode().split("-----END PRIVATE KEY-----")[0]
            (tmp / "sp.pem").write_bytes(bundle)
        if kind == "workload_identity":
            issuer_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.app.federations.append(
                Federation(CLUSTER_ISSUER, SERVICE_ACCOUNT, issuer_key.public_key())
            )
            now = int(time.time())
            service_account_token = jwt.encode(
                {
                    "iss": CLUSTER_ISSUER,
                    "sub": SERVICE_ACCOUNT,
                    "aud": [EXCHANGE_AUDIENCE],
                    "iat": now,
                    "nbf": now,
                    "exp": now + 3600,
                },
                issuer_key,
                algorithm="RS256",
            )
            (tmp / "sa-token").write_text(service_account_token)
            # What the AKS webhook injects into the pod
            self.environ = {
                "AZURE_TENANT_ID": self.tenant,
                "AZURE_CLIENT_ID": self.app.client_id,
                "AZURE_FEDERATED_TOKEN_FILE": str(tmp / "sa-token"),
            }
        self.principal = self.app.client_id
        if kind == "managed_identity":
            for name, value in entra.managed_identity_env().items():
                monkeypatch.setenv(name, value)  # azure-identity reads the process environment
            self.principal = str(entra.system_identity)
        sandbox.add_member(self.principal)

    def entra_config(self, secret: str) -> dict[str, Any] | None:
        common = {"tenant_id": self.tenant, "client_id": self.app.client_id}
        authority = {"authority_host": self.entra.url}
        if self.kind == "client_secret":
            self.app.secrets.append(secret)
            return {**common, **authority, "client_secret_env": "C9_ADO_SECRET"}
        if self.kind == "certificate":
            return {**common, **authority, "certificate_file": str(self.tmp / "sp.pem")}
        if self.kind == "managed_identity":
            return {"managed_identity": True}
        if self.kind == "workload_identity":
            return {"workload_identity": True, **authority}
        return None

    def connector(self, *, token: str = PLANTED_TOKEN, **config: Any) -> AzureDevOpsConnector:
        entra = self.entra_config(token)
        values: dict[str, Any] = {
            "organization_url": self.sandbox.organization_url,
            "project": self.sandbox.project,
            "batch_size": PAGE,
            "wiql_top": TOP,
            "request_timeout": 2.0,
            "ca_bundle": str(shared_ca().ca_file),
            **({"entra": entra} if entra else {}),
            **config,
        }
        parsed = AzureDevOpsConfig.model_validate(values)
        if self.kind == "pat":
            self.sandbox.token = token
        ctx = ConnectorContext(
            integration_id="test",
            token=SecretStr(token) if parsed.uses_token() else None,
            cache_dir=self.tmp,
            max_retries=3,
            sleep_cap=5.0,
            environ={**self.environ, "C9_ADO_SECRET": token},
            on_secret=self.record.secrets.append,
            on_credential=self.record.expiries.append,
        )
        return AzureDevOpsConnector(parsed, ctx)


@pytest.fixture
def entra() -> Iterator[EntraSandbox]:
    with EntraSandbox() as server:
        assert isinstance(server, EntraSandbox)
        yield server


def _ado(entra: EntraSandbox, **kwargs: Any) -> AzureDevOpsSandbox:
    return AzureDevOpsSandbox(token=None, entra=entra, tls=shared_ca(), **kwargs)


@pytest.fixture
def ado(entra: EntraSandbox) -> Iterator[AzureDevOpsSandbox]:
    """An HTTPS organization whose requests and answers must conform to the published API."""
    answers: list[checker.Violation] = []
    with _ado(entra) as server:
        assert isinstance(server, AzureDevOpsSandbox)
        server.response_hook = lambda request, response: answers.extend(
            checker.check_response(ADO_API, request, response.status, response.body)
        )
        yield server
    checker.assert_conforms(ADO_API, server.requests)
    assert not answers, "\n".join(str(v) for v in answers[:20])


def _harness(
    kind: str,
    entra: EntraSandbox,
    ado: AzureDevOpsSandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> EntraHarness:
    return EntraHarness(kind, entra, ado, tmp_path, monkeypatch)


@pytest.fixture(params=KINDS)
def harness(
    request: pytest.FixtureRequest,
    entra: EntraSandbox,
    ado: AzureDevOpsSandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> EntraHarness:
    return _harness(request.param, entra, ado, tmp_path, monkeypatch)


class TestContractForEveryCredentialKind(ConnectorContract):
    """PAT, client secret, certificate, managed identity and workload identity, over HTTPS with
    the organization's CA in ca_bundle (applied to every SDK client)."""


# ---------------------------------------------------------------------------------------------
# Tokens: minted, reported, renewed
# ---------------------------------------------------------------------------------------------
def bearers(sandbox: AzureDevOpsSandbox) -> list[str]:
    return [
        r.headers["authorization"][7:]
        for r in sandbox.requests
        if r.headers.get("authorization", "").startswith("Bearer ")
    ]


@pytest.mark.parametrize("kind", KINDS[1:])
async def test_every_token_is_registered_before_use_and_its_expiry_reported(
    kind: str,
    entra: EntraSandbox,
    ado: AzureDevOpsSandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = _harness(kind, entra, ado, tmp_path, monkeypatch)
    h.seed(3, start=DAY, step=timedelta(minutes=1))
    connector = h.connector()
    try:
        assert len(items_of(await collect(connector))) == 3
    finally:
        await connector.aclose()
    used = set(bearers(ado))
    assert used and used <= set(h.record.secrets), "a token was used before it was registered"
    tokens = [e for e in h.record.expiries if e.kind == "entra_token"]
    assert tokens and all(e.renewable for e in tokens)
    assert abs(tokens[0].expires_at.timestamp() - (time.time() + 3600)) < 120
    if kind == "client_secret":
        assert PLANTED_TOKEN in h.record.secrets
    if kind == "certificate":
        (certificate,) = [e for e in h.record.expiries if e.kind == "certificate"]
        assert not certificate.renewable
        assert certificate.expires_at == h.app.certificates[0].not_valid_after_utc
        assert h.key_pem.strip() and any(h.key_pem.strip() in s for s in h.record.secrets)
    assert not [r for r in ado.requests if r.headers.get("authorization", "") == ""]


async def test_a_sync_across_token_expiry_keeps_going_with_new_tokens(
    entra: EntraSandbox, ado: AzureDevOpsSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tokens live 2 s; the organization answers slowly, so the run outlives several of them.
    # Each request must carry a token the organization still takes (it answers 401 to any
    # other): azure-identity renews ahead of expiry, asked before every request.
    entra.token_lifetime = 2
    h = _harness("client_secret", entra, ado, tmp_path, monkeypatch)
    ids = h.seed(PAGE * 4, start=DAY, step=timedelta(minutes=1))
    ado.response_delay = 0.5
    statuses: list[int] = []
    ado.response_hook = lambda request, response: statuses.append(response.status)
    connector = h.connector(batch_size=PAGE, wiql_top=PAGE * 2)
    started = time.monotonic()
    try:
        got = items_of(await collect(connector))
    finally:
        await connector.aclose()
    assert time.monotonic() - started > 4, "the run must outlive two token lifetimes"
    assert sorted(i.external_id for i in got) == sorted(ids)
    assert 401 not in statuses
    assert len(set(bearers(ado))) >= 3, "tokens must have been renewed during the run"
    assert len({e.expires_at for e in h.record.expiries if e.kind == "entra_token"}) >= 3


async def test_a_token_refused_mid_run_is_replaced_once(
    entra: EntraSandbox, ado: AzureDevOpsSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A token azure-identity still holds as good (an hour left) stops working mid-run (clock
    # skew, revocation): the 401 drops the cached token and the request is retried with a new one.
    h = _harness("certificate", entra, ado, tmp_path, monkeypatch)
    ids = h.seed(PAGE * 3, start=DAY, step=timedelta(minutes=1))
    batches = 0

    def expire_on_second_batch(request: Any) -> None:
        nonlocal batches
        if request.path.endswith("/workItemsBatch"):
            batches += 1
            if batches == 2:
                entra.expire_all()

    ado.between_requests = expire_on_second_batch
    statuses: list[int] = []
    ado.response_hook = lambda request, response: statuses.append(response.status)
    connector = h.connector()
    try:
        got = items_of(await collect(connector))
    finally:
        await connector.aclose()
    assert sorted(i.external_id for i in got) == sorted(ids)
    assert statuses.count(401) == 1
    assert len(set(bearers(ado))) == 2
    assert entra.tokens_issued == 2


async def test_tokens_refused_again_after_renewal_are_fatal(
    entra: EntraSandbox, ado: AzureDevOpsSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = _harness("client_secret", entra, ado, tmp_path, monkeypatch)
    h.seed(2, start=DAY, step=timedelta(minutes=1))
    ado.between_requests = lambda request: entra.expire_all()
    connector = h.connector()
    try:
        with pytest.raises(FatalError) as info:
            await connector.check()
    finally:
        await connector.aclose()
    assert "refused new Entra tokens" in str(info.value)
    assert entra.tokens_issued == 2  # one renewal, not a loop


# ---------------------------------------------------------------------------------------------
# Refusals: one line, what to do, never a secret
# ---------------------------------------------------------------------------------------------
def assert_one_line_without(error: BaseException, *secrets: str) -> str:
    text = str(error)
    assert "\n" not in text
    for secret in secrets:
        assert secret not in text and secret not in repr(error.args)
    assert error.__cause__ is None or all(s not in str(error.__cause__) for s in secrets)
    return text


async def _check_fails(connector: AzureDevOpsConnector) -> FatalError:
    try:
        with pytest.raises(FatalError) as info:
            await connector.check()
    finally:
        await connector.aclose()
    return info.value


async def test_unknown_tenant(
    entra: EntraSandbox, ado: AzureDevOpsSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = _harness("client_secret", entra, ado, tmp_path, monkeypatch)
    stranger = str(uuid.uuid4())
    config = {**(h.entra_config(PLANTED_TOKEN) or {}), "tenant_id": stranger}
    error = await _check_fails(h.connector(entra=config))
    text = assert_one_line_without(error, PLANTED_TOKEN)
    assert f"tenant {stranger!r}" in text and "entra.tenant_id" in text
    assert not ado.requests, "nothing is asked of Azure DevOps without a token"


async def test_bad_client_secret(
    entra: EntraSandbox, ado: AzureDevOpsSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = _harness("client_secret", entra, ado, tmp_path, monkeypatch)
    connector = h.connector()
    h.app.secrets.clear()
    h.app.secrets.append("the-real-secret")
    text = assert_one_line_without(await _check_fails(connector), PLANTED_TOKEN, "the-real-secret")
    assert "AADSTS7000215" in text and "entra.client_secret" in text and h.app.client_id in text


async def test_expired_client_secret(
    entra: EntraSandbox, ado: AzureDevOpsSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = _harness("client_secret", entra, ado, tmp_path, monkeypatch)
    connector = h.connector()
    h.app.secrets.remove(PLANTED_TOKEN)
    h.app.expired_secrets.append(PLANTED_TOKEN)
    text = assert_one_line_without(await _check_fails(connector), PLANTED_TOKEN)
    assert "AADSTS7000222" in text and "expired" in text


async def test_unknown_client(
    entra: EntraSandbox, ado: AzureDevOpsSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = _harness("client_secret", entra, ado, tmp_path, monkeypatch)
    other = str(uuid.uuid4())
    config = {**(h.entra_config(PLANTED_TOKEN) or {}), "client_id": other}
    text = assert_one_line_without(await _check_fails(h.connector(entra=config)), PLANTED_TOKEN)
    assert "AADSTS700016" in text and other in text and "entra.client_id" in text


async def test_service_principal_not_added_to_the_organization(
    entra: EntraSandbox, ado: AzureDevOpsSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = _harness("client_secret", entra, ado, tmp_path, monkeypatch)
    ado.members.clear()
    text = assert_one_line_without(await _check_fails(h.connector()), PLANTED_TOKEN)
    assert "TF400813" in text and "Project Collection Administrator" in text
    assert "add the service principal to the organization" in text and h.app.client_id in text
    assert entra.tokens_issued == 1, "not an expired token: no renewal"


async def test_certificate_not_registered_on_the_app(
    entra: EntraSandbox, ado: AzureDevOpsSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = _harness("certificate", entra, ado, tmp_path, monkeypatch)
    h.app.certificates.clear()
    h.app.certificates.append(self_signed("another")[1])
    text = assert_one_line_without(await _check_fails(h.connector()), h.key_pem.strip())
    assert "AADSTS700027" in text and "upload this certificate" in text


@pytest.mark.parametrize(
    ("content", "cause"),
    [
        (b"not a pem at all", "no PEM certificate"),
        (b"CERT-ONLY", "no PEM private key"),
        (b"TRUNCATED-KEY", "cannot be read"),
        (b"ENCRYPTED", "encrypted: set entra.certificate_password_env"),
        (b"EXPIRED", "expired on"),
    ],
)
def test_malformed_certificate_file_is_a_config_error(
    content: bytes, cause: str, tmp_path: Path, entra: EntraSandbox
) -> None:
    key, certificate = self_signed("c9-sync")
    bundle = pem_bundle(key, certificate)
    key_part, _, cert_part = bundle.partition(b"-----END PRIVATE KEY-----\n")
    if content == b"CERT-ONLY":
        content = cert_part
    elif content == b"TRUNCATED-KEY":
        lines = key_part.splitlines()
        content = b"\n".join(lines[:1] + lines[5:]) + b"\n-----END PRIVATE KEY-----\n" + cert_part
    elif content == b"ENCRYPTED":
        content = pem_bundle(key, certificate, password=b"hunter2-password")
    elif content == b"EXPIRED":
        content = pem_bundle(key, self_signed("old", days=-2, key=key)[1])
    (tmp_path / "bad.pem").write_bytes(content)
    config = AzureDevOpsConfig.model_validate(
        {
            "organization_url": "https://dev.azure.com/acme",
            "project": "Web",
            "entra": {
                "tenant_id": str(uuid.uuid4()),
                "client_id": str(uuid.uuid4()),
                "certificate_file": str(tmp_path / "bad.pem"),
                "authority_host": entra.url,
            },
        }
    )
    ctx = ConnectorContext(integration_id="t", token=None, cache_dir=tmp_path)
    with pytest.raises(ConfigError) as info:
        AzureDevOpsConnector(config, ctx)
    text = assert_one_line_without(info.value, key_part.decode().splitlines()[2])
    assert text.startswith("entra.certificate_file:") and cause in text


async def test_encrypted_certificate_with_its_password(
    entra: EntraSandbox, ado: AzureDevOpsSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = _harness("certificate", entra, ado, tmp_path, monkeypatch)
    key, certificate = self_signed("c9-sync-encrypted")
    h.app.certificates.append(certificate)
    (tmp_path / "enc.pem").write_bytes(pem_bundle(key, certificate, password=b"pfx-passw0rd"))
    h.environ["C9_CERT_PASSWORD"] = "pfx-passw0rd"
    config = {
        **(h.entra_config(PLANTED_TOKEN) or {}),
        "certificate_file": str(tmp_path / "enc.pem"),
        "certificate_password_env": "C9_CERT_PASSWORD",
    }
    connector = h.connector(entra=config)
    try:
        await connector.check()
    finally:
        await connector.aclose()
    assert "pfx-passw0rd" in h.record.secrets


async def test_user_assigned_managed_identity(
    entra: EntraSandbox, ado: AzureDevOpsSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = _harness("managed_identity", entra, ado, tmp_path, monkeypatch)
    assigned = entra.add_user_identity()
    ado.add_member(assigned)
    ado.members.discard(h.principal.casefold())  # only the user-assigned one is a member
    connector = h.connector(entra={"managed_identity": True, "client_id": assigned})
    try:
        await connector.check()
    finally:
        await connector.aclose()
    (request,) = entra.requests_to("/msi/token")
    assert request.query["client_id"] == [assigned]
    assert request.query["resource"] == ["499b84ac-1321-427f-aa17-267ca6975798"]
    unknown = str(uuid.uuid4())
    refused = h.connector(entra={"managed_identity": True, "client_id": unknown})
    text = str(await _check_fails(refused))
    assert "\n" not in text and unknown in text and "entra.client_id" in text


async def test_workload_identity_without_a_matching_federated_credential(
    entra: EntraSandbox, ado: AzureDevOpsSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = _harness("workload_identity", entra, ado, tmp_path, monkeypatch)
    h.app.federations[0].subject = "system:serviceaccount:other:other"
    service_account_token = (tmp_path / "sa-token").read_text()
    text = assert_one_line_without(await _check_fails(h.connector()), service_account_token)
    assert "AADSTS70021" in text and "federated credential" in text
    assert service_account_token in h.record.secrets


async def test_a_rotated_service_account_token_is_registered_too(
    entra: EntraSandbox, ado: AzureDevOpsSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = _harness("workload_identity", entra, ado, tmp_path, monkeypatch)
    connector = h.connector()
    try:
        await connector.check()
        rotated = "rotated." + "x" * 40 + ".sig"
        (tmp_path / "sa-token").write_text(rotated)  # the kubelet's rotation, mid-run
        await connector.check()
    finally:
        await connector.aclose()
    assert rotated in h.record.secrets


async def test_entra_server_errors_are_retriable(
    entra: EntraSandbox, ado: AzureDevOpsSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # azure-core retries a 503 on its own (3 times); past that the run's retries decide
    h = _harness("client_secret", entra, ado, tmp_path, monkeypatch)
    h.seed(1, start=DAY, step=timedelta(minutes=1))
    entra.fail_next("5xx", count=1, path_contains="/token", retry_after=None)
    connector = h.connector()
    try:
        await connector.check()
        assert len(entra.requests_to("/oauth2/v2.0/token")) == 2
    finally:
        await connector.aclose()
    entra.fail_next("5xx", count=4, path_contains="/token", retry_after=None)
    connector = h.connector()
    connector.ctx = replace(connector.ctx, max_retries=0)
    try:
        with pytest.raises(RetriableError, match="answered 503 for a token"):
            await connector.check()
    finally:
        await connector.aclose()


async def test_authority_not_trusted_without_its_ca(
    entra: EntraSandbox, ado: AzureDevOpsSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = _harness("client_secret", entra, ado, tmp_path, monkeypatch)
    text = str(await _check_fails(h.connector(ca_bundle=None)))
    assert "\n" not in text and "TLS verification" in text and "ca_bundle" in text


# ---------------------------------------------------------------------------------------------
# Planted secrets never reach a log line or an error
# ---------------------------------------------------------------------------------------------
async def test_planted_secrets_never_in_logs_or_errors(
    entra: EntraSandbox,
    ado: AzureDevOpsSandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # azure-identity, MSAL, azure-core, msrest, urllib3: all
    errors: list[str] = []
    planted: list[str] = [PLANTED_TOKEN]
    for kind in ("client_secret", "certificate"):
        (tmp_path / kind).mkdir()
        h = _harness(kind, entra, ado, tmp_path / kind, monkeypatch)
        h.seed(2, start=DAY, step=timedelta(minutes=1))
        if h.key_pem:
            planted += [line for line in h.key_pem.splitlines()[1:] if len(line) > 40]
        connector = h.connector()
        try:
            await collect(connector)
        finally:
            await connector.aclose()
        h.app.secrets.clear()
        h.app.certificates.clear()  # now refused: the error paths log too
        ado.members.clear()
        for attempt in (h.connector(), h.connector()):
            try:
                await attempt.check()
            except FatalError as exc:
                errors.append(str(exc) + repr(exc.args))
            finally:
                await attempt.aclose()
        planted += bearers(ado)
    assert len(errors) == 4
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert "oauth2/v2.0/token" in logged or "openid-configuration" in logged, "logs were captured"
    for secret in planted:
        assert secret not in logged
        assert all(secret not in e for e in errors)

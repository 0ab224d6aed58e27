"""Microsoft Entra ID credentials for Azure DevOps: the `entra:` config key, the azure-identity
credential it names, and an msrest `Authentication` that puts a fresh bearer token on every
request (docs/trackers/azure_devops.md#microsoft-entra-id).

One explicit credential per config, never `DefaultAzureCredential` (whose developer chain would
pick up whatever CLI login happens to be on the host):
- service principal with a client secret: `ClientSecretCredential`;
- service principal with a certificate (PEM: private key + certificate): `CertificateCredential`;
- managed identity (system- or user-assigned): `ManagedIdentityCredential`, which finds its
  endpoint in the process environment (IMDS, or App Service's IDENTITY_ENDPOINT/IDENTITY_HEADER);
- workload identity (Kubernetes): `WorkloadIdentityCredential` with the projected token file.

azure-identity keeps the token in memory and asks again when less than 5 minutes remain;
`EntraToken.bearer()` is called before every request (msrest calls `signed_session` each time), so
a long run simply carries on with the next token. Every token is handed to `ctx.on_secret` before
it is used and its expiry to `ctx.on_credential`. Errors name the config key and the AADSTS code,
never a secret.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.identity import (
    CertificateCredential,
    ClientSecretCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from msrest.authentication import Authentication
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator

from connectors.base import (
    ConfigError,
    ConnectorContext,
    ConnectorError,
    CredentialExpiry,
    FatalError,
    RetriableError,
    resolve_secret,
)

#: Azure DevOps' application id: the resource every Entra token for it is issued to.
ADO_RESOURCE = "499b84ac-1321-427f-aa17-267ca6975798"
ADO_SCOPE = f"{ADO_RESOURCE}/.default"
#: Where AKS' workload identity webhook projects the service account token.
FEDERATED_TOKEN_ENV = "AZURE_FEDERATED_TOKEN_FILE"

Kind = Literal["client_secret", "certificate", "managed_identity", "workload_identity"]

_TENANT = re.compile(r"^[0-9A-Za-z.-]+$")  # a GUID or a domain, as azure-identity accepts them


class EntraConfig(BaseModel):
    """The `entra:` key of an azure_devops config: exactly one way to get a token."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: str | None = None
    client_id: str | None = None  # the app registration's (or user-assigned identity's) id
    client_secret: SecretStr | None = None
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    certificate_file: Path | None = None  # PEM with the private key and the certificate
    certificate_password_env: str | None = None
    managed_identity: bool = False
    workload_identity: bool = False
    token_file: Path | None = None  # workload identity; default $AZURE_FEDERATED_TOKEN_FILE
    authority_host: str | None = None  # login.microsoftonline.us, https://127.0.0.1:8443, …

    @field_validator("tenant_id", "client_id")
    @classmethod
    def _plain_id(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value or not _TENANT.match(value):
            raise ValueError("tenant_id and client_id are GUIDs (a tenant may be a domain name)")
        return value

    @field_validator("authority_host")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        if value.startswith("http://"):
            raise ValueError("entra.authority_host must be https (Entra ID refuses plain http)")
        if not value.startswith("https://"):
            value = "https://" + value
        if not re.fullmatch(r"https://[0-9A-Za-z.-]+(:\d+)?", value):
            raise ValueError(
                "entra.authority_host is a host name such as login.microsoftonline.us "
                "(no path, no credentials)"
            )
        return value

    def kind(self) -> Kind:
        kinds = self._kinds()
        assert len(kinds) == 1  # the validator below guarantees it
        return kinds[0]

    def _kinds(self) -> list[Kind]:
        found: list[Kind] = []
        secret = (self.client_secret, self.client_secret_env, self.client_secret_file)
        if any(v is not None for v in secret):
            found.append("client_secret")
        if self.certificate_file is not None:
            found.append("certificate")
        if self.managed_identity:
            found.append("managed_identity")
        if self.workload_identity:
            found.append("workload_identity")
        return found

    @model_validator(mode="after")
    def _exactly_one_way(self) -> EntraConfig:
        kinds = self._kinds()
        if not kinds:
            raise ValueError(
                "entra needs one way to authenticate: client_secret (or client_secret_env, "
                "client_secret_file), certificate_file, managed_identity: true or "
                "workload_identity: true"
            )
        if len(kinds) > 1:
            raise ValueError(f"entra takes one way to authenticate, got {' and '.join(kinds)}")
        secrets = [
            k
            for k in ("client_secret", "client_secret_env", "client_secret_file")
            if getattr(self, k) is not None
        ]
        if len(secrets) > 1:
            raise ValueError(f"entra: give only one of {', '.join(secrets)}")
        kind = kinds[0]
        if kind in ("client_secret", "certificate"):
            missing = [k for k in ("tenant_id", "client_id") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"entra: a service principal needs {' and '.join(missing)}")
        if self.certificate_password_env is not None and kind != "certificate":
            raise ValueError("entra.certificate_password_env goes with certificate_file")
        if self.token_file is not None and kind != "workload_identity":
            raise ValueError("entra.token_file goes with workload_identity: true")
        if kind == "managed_identity" and (self.tenant_id or self.authority_host):
            raise ValueError(
                "entra: a managed identity takes only client_id (user-assigned); its tenant and "
                "token endpoint come from the host"
            )
        return self

    def principal(self) -> str:
        """Who authenticates, for messages (ids only, never a secret)."""
        kind = self.kind()
        if kind == "managed_identity":
            if self.client_id:
                return f"user-assigned managed identity {self.client_id}"
            return "the system-assigned managed identity"
        who = f"app {self.client_id}" if self.client_id else "the workload identity's app"
        return f"{who} in tenant {self.tenant_id}" if self.tenant_id else who


def certificate_expiry(pem: bytes) -> datetime:
    """notAfter of the (first) certificate in a PEM bundle."""
    return x509.load_pem_x509_certificate(pem).not_valid_after_utc


def _load_certificate(path: Path, password: bytes | None) -> tuple[bytes, str, datetime]:
    """The PEM bytes, the private key's PEM text (to be redacted) and the certificate's notAfter;
    ConfigError naming the key and the cause (never the key's content)."""
    shown = repr(str(path))
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"entra.certificate_file: cannot read {shown} ({exc.strerror})") from None
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ConfigError(
            f"entra.certificate_file: {shown} holds no PEM certificate (expected the private key "
            "and the certificate, PEM, in one file)"
        ) from None
    key_block = re.search(
        rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", data, re.S
    )
    if key_block is None:
        raise ConfigError(f"entra.certificate_file: {shown} holds no PEM private key")
    try:
        serialization.load_pem_private_key(key_block.group(0), password=password)
    except TypeError:
        raise ConfigError(
            f"entra.certificate_file: the private key in {shown} is encrypted: set "
            "entra.certificate_password_env"
            if password is None
            else f"entra.certificate_file: the private key in {shown} is not encrypted: drop "
            "entra.certificate_password_env"
        ) from None
    except ValueError:
        raise ConfigError(
            f"entra.certificate_file: the private key in {shown} cannot be read (malformed, or "
            "a wrong password)"
        ) from None
    not_after = certificate.not_valid_after_utc
    if not_after <= datetime.now(UTC):
        raise ConfigError(
            f"entra.certificate_file: the certificate in {shown} expired on "
            f"{not_after:%Y-%m-%d}: create a new one, upload it to the app registration and "
            "replace the file"
        )
    return data, key_block.group(0).decode("ascii", "replace"), not_after


class EntraToken:
    """The azure-identity credential of one connector, and what it learns of its tokens."""

    def __init__(self, config: EntraConfig, ctx: ConnectorContext, verify: bool | str) -> None:
        self.config = config
        self.ctx = ctx
        self.verify = verify
        self._lock = threading.Lock()
        self._last: str | None = None  # the last token seen (its expiry is reported once)
        self._token_file: Path | None = None  # workload identity's service-account token
        self._token_file_stamp: tuple[int, int] | None = None
        self._build: Callable[[], TokenCredential] = self._factory()
        self._credential: TokenCredential = self._build()

    # -- building -----------------------------------------------------------------------------
    def _common(self) -> dict[str, Any]:
        """Keywords every credential but the managed identity takes: a custom authority (no
        instance discovery: it would ask login.microsoftonline.com to vouch for the host) and the
        CA to trust."""
        extra: dict[str, Any] = {"connection_verify": self.verify}
        if self.config.authority_host:
            extra["authority"] = self.config.authority_host
            extra["disable_instance_discovery"] = True
        return extra

    def _factory(self) -> Callable[[], TokenCredential]:
        config, ctx = self.config, self.ctx
        kind = config.kind()
        if kind == "client_secret":
            secret = ctx.secret(
                "entra.client_secret",
                config.client_secret,
                config.client_secret_env,
                config.client_secret_file,
            ).get_secret_value()
            return lambda: ClientSecretCredential(
                str(config.tenant_id), str(config.client_id), secret, **self._common()
            )
        if kind == "certificate":
            assert config.certificate_file is not None
            password: bytes | None = None
            if config.certificate_password_env is not None:
                password = (
                    resolve_secret(
                        "entra.certificate_password",
                        None,
                        config.certificate_password_env,
                        None,
                        ctx.environ,
                    )
                    .get_secret_value()
                    .encode()
                )
                ctx.on_secret(password.decode())
            data, key_text, not_after = _load_certificate(config.certificate_file, password)
            ctx.on_secret(key_text)
            ctx.on_credential(CredentialExpiry("certificate", not_after, renewable=False))
            return lambda: CertificateCredential(
                str(config.tenant_id),
                str(config.client_id),
                certificate_data=data,
                password=password,
                **self._common(),
            )
        if kind == "managed_identity":
            return lambda: ManagedIdentityCredential(
                client_id=config.client_id, connection_verify=self.verify
            )
        tenant = config.tenant_id or ctx.environ.get("AZURE_TENANT_ID")
        client = config.client_id or ctx.environ.get("AZURE_CLIENT_ID")
        token_file = config.token_file or ctx.environ.get(FEDERATED_TOKEN_ENV)
        if not tenant or not client:
            raise ConfigError(
                "entra: workload identity needs tenant_id and client_id (or AZURE_TENANT_ID and "
                "AZURE_CLIENT_ID in the worker's environment)"
            )
        if not token_file:
            raise ConfigError(
                f"entra.token_file: not set and {FEDERATED_TOKEN_ENV} is not in the worker's "
                'environment (is the pod labelled azure.workload.identity/use: "true"?)'
            )
        path = Path(token_file).expanduser()
        self._token_file = path
        try:
            self._register_token_file()
        except OSError as exc:
            raise ConfigError(
                f"entra.token_file: cannot read {str(token_file)!r} ({exc.strerror})"
            ) from None
        return lambda: WorkloadIdentityCredential(
            tenant_id=tenant, client_id=client, token_file_path=str(path), **self._common()
        )

    def _register_token_file(self) -> None:
        """Register the service-account token for redaction, again whenever the kubelet has
        rotated it (azure-identity re-reads the file on its own, every 600 s)."""
        if self._token_file is None:
            return
        status = self._token_file.stat()
        stamp = (status.st_mtime_ns, status.st_size)
        if stamp != self._token_file_stamp:
            self.ctx.on_secret(self._token_file.read_text().strip())
            self._token_file_stamp = stamp

    def renew(self) -> None:
        """Drop the cached token: the next request gets a new one (after a 401 for a token the
        service no longer takes, e.g. one that expired in flight)."""
        with self._lock:
            self._credential = self._build()

    # -- tokens -------------------------------------------------------------------------------
    def bearer(self) -> str:
        """A valid access token for Azure DevOps (cached by azure-identity until 5 minutes before
        it expires), registered for redaction before it is returned."""
        with self._lock:
            credential = self._credential
        try:
            self._register_token_file()
        except OSError:
            pass  # azure-identity keeps the token it read; it says so itself when it cannot
        try:
            token = credential.get_token(ADO_SCOPE)
        except ClientAuthenticationError as exc:
            raise self._refusal(exc) from None
        except ServiceRequestError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise FatalError(
                    "TLS verification of the Entra authority failed: set ca_bundle to the CA "
                    "that signed its certificate"
                ) from None
            raise RetriableError(
                f"could not reach Microsoft Entra ID for a token ({type(exc).__name__}); will retry"
            ) from None
        except ValueError as exc:
            raise self._refusal(exc) from None
        self.ctx.on_secret(token.token)
        with self._lock:
            fresh, self._last = self._last != token.token, token.token
        if fresh:
            expires = datetime.fromtimestamp(token.expires_on, UTC)
            self.ctx.on_credential(CredentialExpiry("entra_token", expires, renewable=True))
        return token.token

    def _refusal(self, exc: Exception) -> ConnectorError:
        """Entra ID's refusal as one line naming the config key to fix (AADSTS codes from
        https://login.microsoftonline.com/error)."""
        text = str(getattr(exc, "message", None) or exc)
        codes = re.findall(r"AADSTS(\d+)", text)
        code = codes[0] if codes else None
        who = self.config.principal()
        kind = self.config.kind()
        status = getattr(getattr(exc, "response", None), "status_code", None)
        server_error = re.search(r"HTTP Error: (5\d\d)", text)
        if code is None and (server_error or (isinstance(status, int) and status >= 500)):
            # azure-core has already retried it three times; the run's retries take over
            shown = server_error.group(1) if server_error else status
            return RetriableError(f"Microsoft Entra ID answered {shown} for a token; will retry")
        if "CERTIFICATE_VERIFY_FAILED" in text:
            return FatalError(
                "TLS verification of the Entra authority failed: set ca_bundle to the CA that "
                "signed its certificate"
            )
        # MSAL words an unknown tenant's failed discovery (400 AADSTS90002) its own way
        if code == "90002" or (code is None and "authority configuration" in text):
            return FatalError(
                f"Microsoft Entra ID does not know tenant {self.config.tenant_id!r} "
                "(AADSTS90002): check entra.tenant_id (the directory the Azure DevOps "
                "organization is connected to) and entra.authority_host"
            )
        if code == "7000215":
            return FatalError(
                f"Microsoft Entra ID refused the client secret of {who} (AADSTS7000215): use "
                "the secret's value (not its id), or create a new client secret and update "
                "entra.client_secret*"
            )
        if code == "7000222":
            return FatalError(
                f"the client secret of {who} has expired (AADSTS7000222): create a new one and "
                "update entra.client_secret*"
            )
        if code == "700016":
            return FatalError(
                f"Microsoft Entra ID has no application {self.config.client_id!r} in tenant "
                f"{self.config.tenant_id!r} (AADSTS700016): check entra.client_id and "
                "entra.tenant_id"
            )
        if code in ("700027", "700023", "50012"):
            return FatalError(
                f"Microsoft Entra ID refused the certificate assertion of {who} (AADSTS{code}): "
                "upload this certificate to the app registration (Certificates & secrets), or "
                "fix entra.certificate_file"
            )
        if code in ("70021", "700211", "700212", "700213", "700221"):
            return FatalError(
                f"Microsoft Entra ID refused the workload identity token of {who} "
                f"(AADSTS{code}): add a federated credential for this service account (issuer, "
                "subject, audience api://AzureADTokenExchange) to the app"
            )
        if kind == "managed_identity":
            return FatalError(
                f"no token from {who}: run the worker where a managed identity is available "
                "(Azure VM, App Service, Container Apps) and, for a user-assigned one, check "
                "entra.client_id"
            )
        if code is not None:
            return FatalError(f"Microsoft Entra ID refused a token for {who} (AADSTS{code})")
        return FatalError(f"Microsoft Entra ID gave no token for {who} ({type(exc).__name__})")


class EntraAuth(Authentication):
    """msrest authentication that asks for a token before every request: msrest's
    RequestsCredentialsPolicy calls `signed_session` each time, so a token about to expire is
    replaced without the SDK knowing."""

    def __init__(self, source: EntraToken) -> None:
        super().__init__()
        self._source = source

    def signed_session(self, session: Any = None) -> Any:
        session = super().signed_session(session)
        session.headers["Authorization"] = f"Bearer {self._source.bearer()}"
        return session

"""A local Microsoft Entra ID authority that azure-identity (MSAL underneath) talks to unmodified,
and the HTTPS every sandbox needs for it.

azure-identity refuses a plain-http authority, so this server speaks HTTPS with a certificate
from a throwaway CA (`TestCA`, made with `cryptography`); clients trust it through
`connection_verify=<ca file>` (the connector's `ca_bundle`). It serves:
- `GET /{tenant}/v2.0/.well-known/openid-configuration` (MSAL's tenant discovery);
- `POST /{tenant}/oauth2/v2.0/token`, the client-credentials grant, with a client secret or a
  `client_assertion` JWT: an app's certificate (signature checked against the registered
  certificate found by its `x5t#S256`/`x5t` thumbprint, `aud` the token endpoint, `iss` = `sub` =
  the client id, unexpired), or a workload identity's service-account token (checked against the
  app's federated credential: key, issuer, subject, audience `api://AzureADTokenExchange`);
- `GET /msi/token`, App Service's managed identity endpoint (api-version 2019-08-01, header
  `X-IDENTITY-HEADER`), which ManagedIdentityCredential uses when IDENTITY_ENDPOINT and
  IDENTITY_HEADER are set.
Refusals carry Entra's AADSTS bodies (`error`, `error_description`, `error_codes`, `timestamp`,
`trace_id`, `correlation_id`, `error_uri`). Access tokens are JWTs signed by the sandbox that expire
after `token_lifetime` seconds; `principal_of(token)` is how a resource sandbox (Azure DevOps)
accepts only the tokens issued here, until they expire.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from connectors.sandbox.base import Request, Response, SandboxServer
from connectors.sandbox.tls import HttpsMixin, TestCA, shared_ca

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"  # workload identity federation's audience


# ---------------------------------------------------------------------------------------------
# Certificates: a throwaway CA for HTTPS, and app certificates for tests
# ---------------------------------------------------------------------------------------------
def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def self_signed(
    common_name: str, *, days: float = 365, key: rsa.RSAPrivateKey | None = None
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """An RSA key and a self-signed certificate valid `days` from now (negative: expired), as an
    app registration's certificate credential."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    start, end = sorted((now - dt.timedelta(minutes=5), now + dt.timedelta(days=days)))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - dt.timedelta(days=1) if days < 0 else start)
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def pem_bundle(
    key: rsa.RSAPrivateKey, certificate: x509.Certificate, password: bytes | None = None
) -> bytes:
    """Private key and certificate in one PEM file, as CertificateCredential reads them."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ) + certificate.public_bytes(serialization.Encoding.PEM)


# ---------------------------------------------------------------------------------------------
# Registrations
# ---------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Federation:
    """A federated identity credential: who may exchange their token for this app's."""

    issuer: str
    subject: str
    public_key: Any  # the issuer's signing key (what its JWKS would publish)
    audience: str = EXCHANGE_AUDIENCE


@dataclass(slots=True)
class App:
    """An app registration (and its service principal) in one tenant."""

    client_id: str
    object_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    secrets: list[str] = field(default_factory=list)
    expired_secrets: list[str] = field(default_factory=list)
    certificates: list[x509.Certificate] = field(default_factory=list)
    federations: list[Federation] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a token was issued to."""

    tenant_id: str
    app_id: str
    object_id: str


@dataclass(frozen=True, slots=True)
class Issued:
    principal: Principal
    audience: str
    expires_at: float


def thumbprint(certificate: x509.Certificate, algorithm: hashes.HashAlgorithm) -> str:
    der = certificate.public_bytes(serialization.Encoding.DER)
    digest = hashlib.new(algorithm.name, der).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------
class EntraSandbox(HttpsMixin, SandboxServer):
    """An Entra ID authority with tenants, app registrations and one managed identity host."""

    def __init__(
        self,
        *,
        token_lifetime: float = 3600.0,
        tls: TestCA | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.tls = tls or shared_ca()
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.tenants: dict[str, dict[str, App]] = {}  # tenant id (lower) -> client id -> app
        self.issued: dict[str, Issued] = {}
        self.tokens_issued = 0
        # Managed identity (App Service style): the header secret the platform injects, the
        # system-assigned identity and any user-assigned ones (client id -> object id).
        self.identity_header = "mi-" + secrets.token_urlsafe(16)
        self.mi_tenant = str(uuid.uuid4())
        self.system_identity: str | None = str(uuid.uuid4())
        self.user_identities: dict[str, str] = {}
        self._signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    # -- registrations ------------------------------------------------------------------------
    def add_tenant(self, tenant_id: str | None = None) -> str:
        tenant_id = tenant_id or str(uuid.uuid4())
        self.tenants.setdefault(tenant_id.casefold(), {})
        return tenant_id

    def add_app(self, tenant_id: str, client_id: str | None = None) -> App:
        app = App(client_id or str(uuid.uuid4()))
        self.tenants.setdefault(tenant_id.casefold(), {})[app.client_id.casefold()] = app
        return app

    def add_user_identity(self, client_id: str | None = None) -> str:
        client_id = client_id or str(uuid.uuid4())
        self.user_identities[client_id.casefold()] = str(uuid.uuid4())
        return client_id

    def managed_identity_env(self) -> dict[str, str]:
        """The environment App Service gives a process with a managed identity."""
        endpoint = f"{self.url}/msi/token"
        return {"IDENTITY_ENDPOINT": endpoint, "IDENTITY_HEADER": self.identity_header}

    def expire_all(self) -> None:
        """Every token issued so far stops working now (as if the clock passed their expiry)."""
        with self._lock:
            self.issued = {
                t: Issued(i.principal, i.audience, min(i.expires_at, self.clock() - 1))
                for t, i in self.issued.items()
            }

    def principal_of(self, token: str, audience: str) -> Principal | None:
        """Whom `token` was issued to, if this authority issued it for `audience` and it has not
        expired; None otherwise."""
        with self._lock:
            issued = self.issued.get(token)
        if issued is None or issued.audience != audience or issued.expires_at <= self.clock():
            return None
        return issued.principal

    # -- answers ------------------------------------------------------------------------------
    def _aadsts(self, status: int, error: str, code: int, description: str) -> Response:
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return Response(
            status,
            {
                "error": error,
                "error_description": f"AADSTS{code}: {description} Trace ID: {trace} "
                f"Correlation ID: {correlation} Timestamp: {stamp}",
                "error_codes": [code],
                "timestamp": stamp,
                "trace_id": trace,
                "correlation_id": correlation,
                "error_uri": f"{self.url}/error?code={code}",
            },
        )

    def _unknown_tenant(self, tenant: str) -> Response:
        return self._aadsts(
            400,
            "invalid_tenant",
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and "
            "are signing into the correct cloud. Check with your subscription administrator, "
            "this may happen if there are no active subscriptions for the tenant.",
        )

    def _mint(self, principal: Principal, resource: str) -> tuple[str, int]:
        now = self.clock()
        lifetime = int(self.token_lifetime) if self.token_lifetime >= 1 else 1
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{principal.tenant_id}/",
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + self.token_lifetime),
            "appid": principal.app_id,
            "oid": principal.object_id,
            "tid": principal.tenant_id,
            "sub": principal.object_id,
            "idtyp": "app",
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        token = jwt.encode(claims, self._signing_key, algorithm="RS256")
        with self._lock:
            self.issued[token] = Issued(principal, resource, now + self.token_lifetime)
            self.tokens_issued += 1
        return token, lifetime

    def handle(self, request: Request) -> Response:
        parts = [unquote(p) for p in request.path.strip("/").split("/")]
        if parts[:2] == ["msi", "token"] and request.method == "GET":
            return self._managed_identity(request)
        if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            return self._discovery(parts[0])
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            if request.method != "POST":
                return self._aadsts(
                    405, "invalid_request", 900561, "The endpoint only accepts POST requests."
                )
            return self._token(parts[0], request)
        return Response(404, {"error": "not_found"})

    def _discovery(self, tenant: str) -> Response:
        if tenant.casefold() not in self.tenants:
            return self._unknown_tenant(tenant)
        base = f"{self.url}/{tenant}"
        return Response(
            200,
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{self.url}/{tenant}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "issuer": f"{self.url}/{tenant}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
            },
        )

    def _token(self, tenant: str, request: Request) -> Response:
        apps = self.tenants.get(tenant.casefold())
        if apps is None:
            return self._unknown_tenant(tenant)
        form = {k: v[0] for k, v in parse_qs(request.body.decode(), keep_blank_values=True).items()}
        if form.get("grant_type") != "client_credentials":
            return self._aadsts(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        client_id = form.get("client_id", "")
        scope = form.get("scope", "")
        resource = scope.split(" ")[0].removesuffix("/.default")
        if not scope.endswith("/.default") or " " in scope.strip():
            return self._aadsts(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope "
                f"{scope} is not valid. Client credential flows must have a scope "
                "value with /.default suffixed to the resource identifier.",
            )
        app = apps.get(client_id.casefold())
        if app is None:
            return self._aadsts(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant}'. This can happen if the application has not been installed by the "
                "administrator of the tenant or consented to by any user in the tenant. You may "
                "have sent your authentication request to the wrong tenant.",
            )
        refusal = self._authenticate(app, tenant, form)
        if refusal is not None:
            return refusal
        token, lifetime = self._mint(Principal(tenant, app.client_id, app.object_id), resource)
        return Response(
            200,
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            },
        )

    def _authenticate(self, app: App, tenant: str, form: dict[str, str]) -> Response | None:
        """None when the client proved it is `app`; else Entra's refusal."""
        secret = form.get("client_secret")
        if secret is not None:
            if any(secrets.compare_digest(secret, s) for s in app.secrets):
                return None
            if any(secrets.compare_digest(secret, s) for s in app.expired_secrets):
                return self._aadsts(
                    401,
                    "invalid_client",
                    7000222,
                    f"The provided client secret keys for app '{app.client_id}' are expired.",
                )
            return self._aadsts(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                f"the client secret value, not the client secret ID, for a secret added to app "
                f"'{app.client_id}'.",
            )
        assertion = form.get("client_assertion")
        if assertion is None or form.get("client_assertion_type") != ASSERTION_TYPE:
            return self._aadsts(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
            )
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            return self._aadsts(401, "invalid_client", 50027, "JWT token is invalid or malformed.")
        if "x5t#S256" in header or "x5t" in header:
            return self._certificate_assertion(app, tenant, assertion, header)
        return self._federated_assertion(app, assertion)

    def _certificate_assertion(
        self, app: App, tenant: str, assertion: str, header: dict[str, Any]
    ) -> Response | None:
        certificate = next(
            (
                c
                for c in app.certificates
                # MSAL pads its base64url thumbprints; RFC 7515 leaves the padding out
                if str(header.get("x5t#S256", "")).rstrip("=") == thumbprint(c, hashes.SHA256())
                or str(header.get("x5t", "")).rstrip("=") == thumbprint(c, hashes.SHA1())
            ),
            None,
        )
        if certificate is None:
            return self._aadsts(
                401,
                "invalid_client",
                700027,
                "The certificate with identifier used to sign the client assertion is not "
                f"registered on application. [Reason - The key was not found., Thumbprint of key "
                f"used by client: '{header.get('x5t#S256') or header.get('x5t')}']",
            )
        endpoint = f"{self.url}/{tenant}/oauth2/v2.0/token"
        try:
            claims = jwt.decode(
                assertion,
                certificate.public_key(),  # type: ignore[arg-type]
                algorithms=["PS256", "RS256"],
                audience=endpoint,
                issuer=app.client_id,
                options={"require": ["exp", "aud", "iss", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            return self._aadsts(
                401,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range.",
            )
        except jwt.PyJWTError:
            return self._aadsts(
                401, "invalid_client", 700027, "Client assertion failed signature validation."
            )
        if claims.get("sub") != app.client_id:
            return self._aadsts(
                401,
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            )
        now = dt.datetime.now(dt.UTC)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            return self._aadsts(
                401,
                "invalid_client",
                700027,
                "Client assertion contains an "
                "invalid signature. [Reason - The key used is expired.]",
            )
        return None

    def _federated_assertion(self, app: App, assertion: str) -> Response | None:
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return self._aadsts(400, "invalid_request", 50027, "JWT token is invalid or malformed.")
        for federation in app.federations:
            if unverified.get("iss") != federation.issuer:
                continue
            try:
                claims = jwt.decode(
                    assertion,
                    federation.public_key,
                    algorithms=["RS256", "ES256"],
                    audience=federation.audience,
                    issuer=federation.issuer,
                    options={"require": ["exp", "aud", "iss", "sub"]},
                )
            except jwt.ExpiredSignatureError:
                return self._aadsts(
                    400,
                    "invalid_client",
                    700024,
                    "Client assertion is not within its valid time range.",
                )
            except jwt.PyJWTError:
                return self._aadsts(
                    400, "invalid_client", 700027, "Client assertion failed signature validation."
                )
            if claims.get("sub") == federation.subject:
                return None
        return self._aadsts(
            400,
            "invalid_request",
            70021,
            "No matching federated identity record found for presented assertion. Assertion "
            f"Issuer: '{unverified.get('iss')}'. Assertion Subject: '{unverified.get('sub')}'. "
            f"Assertion Audience: '{unverified.get('aud')}'.",
        )

    def _managed_identity(self, request: Request) -> Response:
        """App Service's identity endpoint (REST reference: api-version 2019-08-01, `resource`,
        optional `client_id`/`object_id`/`mi_res_id`, header X-IDENTITY-HEADER; answer
        `expires_on` in epoch seconds, as a string)."""
        header = request.headers.get("x-identity-header", "")
        if not secrets.compare_digest(header, self.identity_header):
            return Response(
                401,
                {
                    "statusCode": 401,
                    "message": "Unauthorized: the X-IDENTITY-HEADER is missing or invalid.",
                },
            )
        query = {k: v[0] for k, v in request.query.items()}
        if query.get("api-version") != "2019-08-01" or not query.get("resource"):
            return Response(
                400,
                {"statusCode": 400, "message": "api-version 2019-08-01 and resource are required."},
            )
        client_id = query.get("client_id")
        if client_id:
            object_id = self.user_identities.get(client_id.casefold())
        else:
            object_id, client_id = self.system_identity, self.system_identity
        if object_id is None or client_id is None:
            return Response(
                400,
                {
                    "statusCode": 400,
                    "message": "No User Assigned or Delegated "
                    "Managed Identity found for specified ClientId/ResourceId/"
                    "PrincipalId.",
                },
            )
        resource = query["resource"]
        token, lifetime = self._mint(Principal(self.mi_tenant, client_id, object_id), resource)
        return Response(
            200,
            {
                "access_token": token,
                "expires_on": str(int(self.clock()) + lifetime),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": client_id,
            },
        )

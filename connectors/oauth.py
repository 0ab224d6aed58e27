"""OAuth 2.0 access tokens renewed through the worker's grant vault: the one way every connector
holds an OAuth grant (Linear: connectors.linear_oauth; Jira Cloud 3LO: connectors.jira_oauth).
Each tracker names its token endpoint, how the body is encoded and what an admin must do when the
grant is gone (`Vendor`).

Two kinds of grant (config `oauth.grant`):
- `refresh_token` (default): an admin consented once (authorization code flow); the worker holds
  the refresh token. The tracker rotates it: each refresh answers a new refresh token and kills
  the old one, so the refresh runs inside the vault's lock and its answer is stored before use
  (`connectors.base.GrantVault`). The config's `refresh_token_env`/`refresh_token_file` is only a
  seed, read while no grant is stored; `c9-sync oauth grant` stores one after a new consent.
- `client_credentials`: the app's own token for its workspace (the app must allow this grant);
  no refresh token: a new access token is asked for when the stored one nears its end. Stored in
  the vault too, so replicas share one token instead of minting one each.

The token endpoint takes a POST (form-encoded for Linear, JSON for Atlassian) with `client_id` and
`client_secret` in the body and answers `{access_token, token_type, expires_in, scope,
refresh_token?}`; refusals are `{"error", "error_description"}` (RFC 6749 §5.2). `invalid_grant`
(revoked, expired or already used refresh token) is a FatalError saying what the admin must do.
A refresh is never retried here: a lost answer may have rotated the token, and the next run starts
again from what is stored. httpx exceptions are re-raised `from None`: their context can hold the
request, secrets included.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from connectors import http
from connectors.base import (
    ConfigError,
    ConnectorContext,
    CredentialExpiry,
    FatalError,
    Grant,
    RetriableError,
    http_url,
    resolve_secret,
)

log = logging.getLogger(__name__)

#: How the admin stores a new grant (part of every invalid_grant message).
STORE_GRANT = (
    "store the new refresh token with `c9-sync oauth grant {id} --refresh-token-env VAR`"
    " (or --refresh-token-file FILE)"
)


@dataclass(frozen=True, slots=True)
class Vendor:
    """What differs between trackers' token endpoints."""

    name: str  # "Linear", "Atlassian": in every message
    event: str  # log event prefix, e.g. "linear.oauth"
    body: Literal["form", "json"]  # how the token request is encoded
    reauthorize: str  # what the admin does when the grant is gone ({id}: the integration)


class OAuthClient(BaseModel):
    """`oauth` of a config: the app's client and where its grant starts. Trackers subclass it to
    give `token_url` its default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grant: Literal["refresh_token", "client_credentials"] = "refresh_token"
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    #: the seed of a refresh_token grant, used only while no grant is stored (never inline: it
    #: rotates, so a value written in the config is dead after the first refresh)
    refresh_token_env: str | None = None
    refresh_token_file: Path | None = None
    token_url: str
    #: client_credentials only: the scopes asked for
    scope: str = "read"
    #: renew the access token this long before it expires
    renew_before_seconds: float = Field(default=300.0, ge=0, le=86_400)

    @field_validator("token_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_url(value, "oauth.token_url", "https://auth.example.com/oauth/token")

    @model_validator(mode="after")
    def _one_source_each(self) -> OAuthClient:
        secrets = [
            k
            for k in ("client_secret", "client_secret_env", "client_secret_file")
            if getattr(self, k) is not None
        ]
        if len(secrets) != 1:
            raise ValueError(
                "give exactly one of client_secret, client_secret_env, client_secret_file"
            )
        if self.refresh_token_env is not None and self.refresh_token_file is not None:
            raise ValueError("give refresh_token_env or refresh_token_file, not both")
        if self.grant == "client_credentials" and (
            self.refresh_token_env is not None or self.refresh_token_file is not None
        ):
            raise ValueError("a client_credentials grant has no refresh token")
        return self


class Tokens:
    """The access token of one connector: from its memory while good, else from the vault (which
    refreshes under the integration's lock). Every token is registered with `ctx.on_secret`
    before use, and every expiry reported with `ctx.on_credential`."""

    def __init__(
        self,
        vendor: Vendor,
        oauth: OAuthClient,
        ctx: ConnectorContext,
        client: httpx.AsyncClient,
    ):
        self._vendor = vendor
        self._oauth = oauth
        self._ctx = ctx
        self._client = client  # no Authorization header: the token endpoint gets none
        self._secret = ctx.secret(
            "oauth.client_secret",
            oauth.client_secret,
            oauth.client_secret_env,
            oauth.client_secret_file,
        )
        self._grant: Grant | None = None
        self._lock = asyncio.Lock()
        self.secrets: set[str] = {self._secret.get_secret_value()}  # scrubbed from messages

    def _seed(self) -> SecretStr | None:
        """The config's refresh token; read only when the vault has none stored."""
        if self._oauth.grant == "client_credentials":
            # No refresh token exists: the vault hands this to `_refresh`, which ignores it.
            return self._secret
        if self._oauth.refresh_token_env is None and self._oauth.refresh_token_file is None:
            return None
        try:
            seed = resolve_secret(
                "oauth.refresh_token",
                None,
                self._oauth.refresh_token_env,
                self._oauth.refresh_token_file,
                self._ctx.environ,
            )
        except ConfigError as exc:
            http.log_event(
                log, f"{self._vendor.event}_seed_unavailable", logging.WARNING, why=str(exc)
            )
            return None
        self._note(seed)
        return seed

    async def bearer(self, *, refused: bool = False) -> str:
        """`Bearer <access token>`. `refused`: the tracker refused the current one (revoked, or
        replaced): ask the vault for one newer than it."""
        if self._ctx.vault is None:
            raise ConfigError(
                "oauth: this command has no access to the worker's grant store; an OAuth"
                " integration is checked once saved (`integrations add --no-check`, then"
                " `c9-sync oauth grant ID …`, then `c9-sync integrations test ID`)"
            )
        async with self._lock:
            now = datetime.now(UTC)
            margin = timedelta(seconds=self._oauth.renew_before_seconds)
            held = self._grant
            if refused and held is not None:
                # Only a token that expires later than the refused one will do: one stored by
                # another replica since, or a new refresh.
                margin = held.expires_at - now + timedelta(seconds=1)
            if held is None or refused or held.expires_at - now <= margin:
                vault = self._ctx.vault
                grant = await vault.access(self._refresh, seed=self._seed(), margin=margin)
                self._note(grant.access_token)
                self._grant = grant
                self._ctx.on_credential(
                    CredentialExpiry("oauth_access", grant.expires_at, renewable=True)
                )
            assert self._grant is not None
            return f"Bearer {self._grant.access_token.get_secret_value()}"

    def _note(self, secret: SecretStr | None) -> None:
        if secret is not None:
            value = secret.get_secret_value()
            self._ctx.on_secret(value)
            self.secrets.add(value)

    async def _refresh(self, refresh_token: SecretStr) -> Grant:
        """One POST to the token endpoint: the new grant, or FatalError/RetriableError."""
        form = {
            "client_id": self._oauth.client_id,
            "client_secret": self._secret.get_secret_value(),
        }
        if self._oauth.grant == "client_credentials":
            form.update(grant_type="client_credentials", scope=self._oauth.scope)
        else:
            self._note(refresh_token)
            form.update(grant_type="refresh_token", refresh_token=refresh_token.get_secret_value())
        url = self._oauth.token_url
        name = self._vendor.name
        try:
            if self._vendor.body == "json":
                response = await self._client.post(url, json=form)
            else:
                response = await self._client.post(url, data=form)
        except httpx.TimeoutException:
            raise RetriableError(f"{name}'s token endpoint did not answer ({url})") from None
        except httpx.TransportError as exc:
            raise RetriableError(
                f"cannot reach {name}'s token endpoint at {url} ({type(exc).__name__})"
            ) from None
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        grant = self._grant_from(response.status_code, body, response.headers)
        http.log_event(
            log,
            f"{self._vendor.event}_refreshed",
            grant=self._oauth.grant,
            expires_at=grant.expires_at.isoformat(),
            rotated=grant.refresh_token is not None,
        )
        return grant

    def _grant_from(self, status: int, body: Any, headers: Mapping[str, str]) -> Grant:
        if status == 200 and isinstance(body, Mapping):
            access = body.get("access_token")
            expires_in = body.get("expires_in")
            refresh = body.get("refresh_token")
            if (
                isinstance(access, str)
                and access
                and isinstance(expires_in, int | float)
                and not isinstance(expires_in, bool)
                and math.isfinite(expires_in)
                and expires_in > 0
                and (refresh is None or (isinstance(refresh, str) and refresh))
            ):
                grant = Grant(
                    SecretStr(access),
                    datetime.now(UTC) + timedelta(seconds=float(expires_in)),
                    SecretStr(refresh) if refresh else None,
                )
                self._note(grant.access_token)
                self._note(grant.refresh_token)
                if self._oauth.grant == "refresh_token" and grant.refresh_token is None:
                    # Linear and Atlassian always rotate; the vault keeps the previous one for
                    # a server that does not.
                    http.log_event(log, f"{self._vendor.event}_not_rotated", logging.WARNING)
                return grant
            raise RetriableError(
                f"{self._vendor.name}'s token endpoint answered 200 without a usable"
                " access_token/expires_in"
            )
        error = body.get("error") if isinstance(body, Mapping) else None
        said = body.get("error_description") if isinstance(body, Mapping) else None
        detail = self._scrub(f"{error}: {said}" if said else str(error))[:200]
        name = self._vendor.name
        if status == 429 or status >= 500:
            raise RetriableError(
                f"{name}'s token endpoint answered HTTP {status}",
                retry_after=http.retry_after(headers),
            )
        if error == "invalid_grant":
            raise FatalError(
                f"{name} refused the OAuth grant ({detail}): it was revoked, expired, or its"
                " refresh token was already used; "
                + self._vendor.reauthorize.format(id=self._ctx.integration_id)
            )
        if error in ("invalid_client", "access_denied", "unauthorized") or status == 401:
            raise FatalError(
                f"{name} refused the OAuth client ({detail if error else f'HTTP {status}'}):"
                " check oauth.client_id and the client secret"
            )
        if error == "unauthorized_client" and self._oauth.grant == "client_credentials":
            raise FatalError(
                f"{name} refused the client_credentials grant ({detail}): enable client"
                " credentials in the OAuth app's settings"
            )
        if error:
            raise FatalError(f"{name}'s token endpoint refused the request ({detail})")
        raise FatalError(
            f"{name}'s token endpoint answered HTTP {status} without an OAuth error (is"
            " oauth.token_url right?)"
        )

    def _scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

"""Jira Cloud OAuth 2.0 (3LO): the access token the Jira connector sends as `Bearer …` through
Atlassian's API gateway, renewed through the worker's grant vault (connectors.oauth;
docs/trackers/jira.md#oauth-20-3lo).

- Token endpoint `https://auth.atlassian.com/oauth/token`: a JSON POST (`grant_type`,
  `client_id`, `client_secret`, `refresh_token`) answering `{access_token, expires_in (≈3600),
  refresh_token, scope, token_type}`. Refresh tokens rotate: each refresh kills the one it was
  given (reused outside a 10-minute leeway, the whole grant is revoked), expire after 90 days
  unused and 365 days after the consent: then `invalid_grant` and an admin consents again.
- A 3LO token does not sign in at the site's own URL (401 there): every call goes through
  `https://api.atlassian.com/ex/jira/{cloudId}`. The cloudId is the `id` of the site in
  `GET https://api.atlassian.com/oauth/token/accessible-resources` whose `url` is the config's
  `url` (or the config's `oauth.cloud_id`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import field_validator

from connectors.base import ConnectorContext, FatalError, RetriableError, http_url
from connectors.oauth import STORE_GRANT, OAuthClient, Tokens, Vendor

DEFAULT_TOKEN_URL = "https://auth.atlassian.com/oauth/token"
DEFAULT_API_URL = "https://api.atlassian.com"
REAUTHORIZE = (
    "an admin must consent to the OAuth app again (Atlassian refresh tokens end 90 days unused"
    " and 365 days after consent, and a rotated one reused revokes the grant) and " + STORE_GRANT
)
ATLASSIAN = Vendor(name="Atlassian", event="jira.oauth", body="json", reauthorize=REAUTHORIZE)


class AtlassianOAuth(OAuthClient):
    """`oauth` of a Jira Cloud config: the 3LO app's client, where its grant starts, and the
    gateway the token is good for."""

    token_url: str = DEFAULT_TOKEN_URL
    #: Atlassian's API gateway (tests point it at the sandbox)
    api_url: str = DEFAULT_API_URL
    #: the site's cloudId; found through accessible-resources when not given
    cloud_id: str | None = None

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        return http_url(value, "oauth.api_url", DEFAULT_API_URL)


class AtlassianTokens(Tokens):
    """The Jira connector's 3LO access token (connectors.oauth.Tokens, Atlassian's endpoint)."""

    def __init__(self, oauth: AtlassianOAuth, ctx: ConnectorContext, client: httpx.AsyncClient):
        super().__init__(ATLASSIAN, oauth, ctx, client)


class TokenRefused(FatalError):
    """Atlassian refused the access token itself (401): revoked, or replaced by a refresh
    elsewhere; one newer token may do."""


def gateway_url(oauth: AtlassianOAuth, cloud_id: str) -> str:
    """The base every Jira REST path hangs off for a 3LO token."""
    return f"{oauth.api_url}/ex/jira/{cloud_id}"


def _site(url: str) -> tuple[str, str]:
    parts = urlsplit(url.strip().rstrip("/"))
    return parts.scheme.casefold(), (parts.hostname or "").casefold()


async def find_cloud_id(
    client: httpx.AsyncClient, oauth: AtlassianOAuth, bearer: str, site_url: str
) -> str:
    """The cloudId of `site_url` among the sites the grant reaches; a FatalError saying what to
    do when the consent did not include it."""
    if oauth.cloud_id:
        return oauth.cloud_id
    url = f"{oauth.api_url}/oauth/token/accessible-resources"
    try:
        response = await client.get(url, headers={"Authorization": bearer})
    except httpx.TransportError as exc:
        raise RetriableError(
            f"cannot reach Atlassian's accessible-resources at {url} ({type(exc).__name__})"
        ) from None
    if response.status_code == 401:
        raise TokenRefused("Atlassian refused the OAuth access token listing its sites (401)")
    if response.status_code >= 500 or response.status_code == 429:
        raise RetriableError(f"Atlassian's accessible-resources answered {response.status_code}")
    try:
        sites: Any = response.json()
    except ValueError:
        sites = None
    if response.status_code != 200 or not isinstance(sites, list):
        raise RetriableError("Atlassian's accessible-resources did not answer a list of sites")
    wanted = _site(site_url)
    for site in sites:
        if isinstance(site, Mapping) and isinstance(site.get("url"), str):
            if _site(site["url"]) == wanted and isinstance(site.get("id"), str) and site["id"]:
                return str(site["id"])
    names = ", ".join(str(s.get("url")) for s in sites if isinstance(s, Mapping) and s.get("url"))
    raise FatalError(
        f"the OAuth grant does not reach {site_url} (it reaches: {names or 'no site'}): consent"
        " to the app again choosing that site, or set url to one of those"
    )

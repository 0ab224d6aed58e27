"""Linear OAuth 2.0: the access token the Linear connector sends as `Bearer …`, renewed through the
worker's grant vault (connectors.oauth; docs/trackers/linear.md#oauth). Linear's token endpoint
takes a form-encoded POST."""

from __future__ import annotations

import httpx

from connectors.base import ConnectorContext
from connectors.oauth import STORE_GRANT, OAuthClient, Tokens, Vendor

DEFAULT_TOKEN_URL = "https://api.linear.app/oauth/token"
#: What the admin does when the grant is gone (the message of every invalid_grant).
REAUTHORIZE = "an admin must authorize the OAuth app in Linear again and " + STORE_GRANT
LINEAR = Vendor(name="Linear", event="linear.oauth", body="form", reauthorize=REAUTHORIZE)


class LinearOAuth(OAuthClient):
    """`oauth` of a Linear config: the app's client and where its grant starts."""

    token_url: str = DEFAULT_TOKEN_URL


class LinearTokens(Tokens):
    """The Linear connector's access token (connectors.oauth.Tokens with Linear's endpoint)."""

    def __init__(self, oauth: LinearOAuth, ctx: ConnectorContext, client: httpx.AsyncClient):
        super().__init__(LINEAR, oauth, ctx, client)

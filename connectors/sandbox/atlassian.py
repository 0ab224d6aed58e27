"""A sandbox of Atlassian's OAuth 2.0 (3LO) authorization server and the API gateway's site list,
as the Jira connector meets them (docs/trackers/jira.md#oauth-20-3lo):

- `POST /oauth/token` (auth.atlassian.com): JSON bodies only; client authentication in the body;
  `grant_type=refresh_token` rotates: each refresh answers a new refresh token. The one it was
  given stays usable for `leeway` seconds (Atlassian's 10-minute leeway for a lost answer);
  reused after that, the whole grant (every refresh and access token of that consent) is revoked,
  as Atlassian does. Errors are `{"error", "error_description"}`: `invalid_grant` with 403 for a
  dead refresh token, `access_denied`/`unauthorized_client` 401 for bad client credentials.
- `GET /oauth/token/accessible-resources` (api.atlassian.com): with a valid access token, the
  sites the grant reaches: `[{id, url, name, scopes, avatarUrl}]`.
- `valid(token)`: whether an access token it issued is alive (the Jira sandbox asks it for
  requests under `/ex/jira/{cloudId}`).

`consent()` stands for the admin's consent (the authorization code exchange): a live refresh token.
Used by tests; never by the worker in production.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from connectors.sandbox.base import Request, Response, SandboxServer


@dataclass(slots=True)
class _Grant:
    """One consent: its live refresh token, the ones rotated away (and when), its access tokens."""

    client_id: str
    live: str
    rotated: dict[str, float] = field(default_factory=dict)  # old refresh token -> rotated at
    access: dict[str, float] = field(default_factory=dict)  # access token -> expires (monotonic)
    revoked: bool = False


def _error(status: int, error: str, description: str) -> Response:
    return Response(status, {"error": error, "error_description": description})


class AtlassianAuthSandbox(SandboxServer):
    def __init__(
        self,
        *,
        clients: dict[str, str],
        sites: list[dict[str, Any]],
        access_lifetime: float = 3600.0,
        leeway: float = 600.0,
    ) -> None:
        super().__init__()
        self.clients = dict(clients)  # client_id -> client_secret
        self.sites = list(sites)  # what accessible-resources lists
        self.access_lifetime = access_lifetime
        self.leeway = leeway
        self.refreshes = 0
        self._grants: list[_Grant] = []
        self._data = threading.Lock()

    # -- tests -------------------------------------------------------------------------------
    def consent(self, client_id: str) -> str:
        """The refresh token an admin's consent leaves the app with."""
        with self._data:
            grant = _Grant(client_id, f"atl_rt_{uuid.uuid4().hex}")
            self._grants.append(grant)
            return grant.live

    def revoke_all(self) -> None:
        """The user removed the app's access in their Atlassian account."""
        with self._data:
            for grant in self._grants:
                grant.revoked = True

    def valid(self, token: str) -> bool:
        now = time.monotonic()
        with self._data:
            return any(not g.revoked and g.access.get(token, 0.0) > now for g in self._grants)

    # -- the server --------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        if request.path == "/oauth/token" and request.method == "POST":
            return self._token(request)
        if request.path == "/oauth/token/accessible-resources" and request.method == "GET":
            header = request.headers.get("authorization", "")
            token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
            if not self.valid(token):
                return Response(401, {"code": 401, "message": "Unauthorized"})
            return Response(200, self.sites)
        return Response(404, {"code": 404, "message": "Not Found"})

    def _token(self, request: Request) -> Response:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return _error(400, "invalid_request", "Content-Type must be application/json")
        try:
            body = request.json()
        except ValueError:
            return _error(400, "invalid_request", "Request body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "invalid_request", "Request body must be a JSON object")
        client_id, secret = body.get("client_id"), body.get("client_secret")
        if not client_id or not secret or self.clients.get(client_id) != secret:
            return _error(401, "access_denied", "Unauthorized")
        if body.get("grant_type") != "refresh_token":
            return _error(400, "unsupported_grant_type", "Unsupported grant type")
        given = body.get("refresh_token")
        if not isinstance(given, str) or not given:
            return _error(400, "invalid_request", "Missing refresh_token")
        now = time.monotonic()
        with self._data:
            grant = next((g for g in self._grants if g.live == given or given in g.rotated), None)
            if grant is None or grant.revoked or grant.client_id != client_id:
                return _error(403, "invalid_grant", "Unknown or invalid refresh token.")
            if given != grant.live and now - grant.rotated[given] > self.leeway:
                grant.revoked = True  # reuse after the leeway: the whole family dies
                return _error(403, "invalid_grant", "Unknown or invalid refresh token.")
            if given == grant.live:
                grant.rotated[given] = now
            new_refresh = f"atl_rt_{uuid.uuid4().hex}"
            access = f"atl_at_{uuid.uuid4().hex}"
            grant.live = new_refresh
            grant.access[access] = now + self.access_lifetime
            self.refreshes += 1
        return Response(
            200,
            {
                "access_token": access,
                "expires_in": int(self.access_lifetime) or 1,
                "refresh_token": new_refresh,
                "scope": "read:jira-work offline_access",
                "token_type": "Bearer",
            },
        )

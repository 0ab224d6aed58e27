"""GitHub App installation auth for the GitHub connector (docs/trackers/github.md#github-app).

The app proves who it is with a JWT it signs with its private key (RS256; PyGithub's
`Auth.AppAuth` signs `iat` = now - 60 s, `exp` = now + 5 min, `iss` = the app ID or client ID),
finds the installation of each repository owner (`GET /repos/{o}/{r}/installation`,
`/orgs/{org}/installation`, `/users/{u}/installation`) unless `installation_id` is configured,
and trades the JWT for installation tokens (`POST /app/installations/{id}/access_tokens`, good for
an hour), sent as `Authorization: token …`.

Tokens are minted lazily, on the first request that needs one, and again when the current one is
within PyGithub's margin (20 s) of its `expires_at`, so a run that outlives a token goes on. Every
minted token is registered for redaction (`ctx.on_secret`) before any request carries it, and its
expiry is reported (`ctx.on_credential`). A 401 to an installation token that should still be good
(revoked, or the clocks disagree) drops it: the request is retried with a new one, once; a 401 to
a token minted after such a refusal means the installation itself is gone.

Every refusal of the app's JWT or of the installation is a one-line FatalError saying what to do
(clock off, app not installed, installation suspended or removed); none carries the key or a token.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from github import Auth, Github, GithubException, GithubIntegration
from github.Auth import TOKEN_REFRESH_THRESHOLD_TIMEDELTA
from github.InstallationAuthorization import InstallationAuthorization

from connectors.base import ConfigError, ConnectorError, CredentialExpiry, FatalError

#: The kind reported to `ctx.on_credential` for installation tokens.
TOKEN_KIND = "app_installation_token"


class _WithholdMintedTokens(logging.Filter):
    """PyGithub's Requester logs every response body at DEBUG, and the body of
    `POST /app/installations/{id}/access_tokens` is the new token, logged before anyone could
    register it for redaction. Such records keep their line but lose the body. (The worker keeps
    the `github` logger at WARNING anyway; this holds when someone turns it up.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > 4 and "access_tokens" in str(args[3]):
            record.args = (*args[:-1], "(installation token withheld)")
        return True


logging.getLogger("github.Requester").addFilter(_WithholdMintedTokens())


# ---------------------------------------------------------------------------------------------
# The private key
# ---------------------------------------------------------------------------------------------
def normalised_pem(pem: str) -> str:
    """The PEM text with the `\\n` escapes an environment variable often carries turned back
    into line breaks (a PEM with real line breaks is left as is)."""
    text = pem.strip()
    if "\n" not in text and "\\n" in text:
        text = text.replace("\\n", "\n")
    return text + "\n"


def check_private_key(pem: str) -> str:
    """The PEM, once it is known to be an unencrypted RSA private key (GitHub App keys are RSA;
    the JWT is RS256). ConfigError naming the key and the cause, never its content."""
    text = normalised_pem(pem)
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except TypeError:
        raise ConfigError(
            "private_key: the key is encrypted with a passphrase; use the unencrypted .pem file "
            "GitHub generated for the app"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(
            "private_key: not a readable PEM private key (expected the .pem file GitHub "
            "generated for the app, from '-----BEGIN RSA PRIVATE KEY-----' to its END line)"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(
            "private_key: not an RSA key (GitHub App keys are RSA; the JWT is signed RS256)"
        )
    return text


# ---------------------------------------------------------------------------------------------
# Refusals, as GitHub words them
# ---------------------------------------------------------------------------------------------
def _message(exc: GithubException) -> str:
    data = exc.data
    message = data.get("message") if isinstance(data, dict) else None
    return str(message or "")[:200]


def jwt_refused(message: str) -> FatalError:
    """GitHub's 401 to the app's JWT. Its messages (docs: "Generating a JWT for a GitHub App")
    name the claim: `iat` in the future or `exp` passed/too far means the clocks disagree."""
    lowered = message.casefold()
    detail = f": {message}" if message else ""
    if any(w in lowered for w in ("'iat'", "issued at", "'exp'", "expiration time")):
        return FatalError(
            f"GitHub refused the app's JWT as issued in the future or expired (401{detail}): "
            "this machine's clock may be off; synchronise it (NTP) and retry"
        )
    return FatalError(
        f"GitHub refused the app's JWT (401{detail}): check app_id (the app's ID or client ID) "
        "and that the private key is a current key of that app"
    )


class NotInstalled(FatalError):
    """404 from an installation lookup: the app is not installed there (or cannot see it)."""

    def __init__(self, app_id: str, where: str) -> None:
        super().__init__(
            f"GitHub App {app_id} is not installed on {where} (404): install the app there "
            "(Settings → GitHub Apps) with Issues read access, or remove it from `repos`"
        )


def mint_refused(exc: GithubException, installation_id: int) -> ConnectorError | None:
    """The error for a refused `POST /app/installations/{id}/access_tokens`, or None when it is
    not the installation's fault (5xx, rate limits: the connector's own classification)."""
    message = _message(exc)
    if exc.status == 401:
        return jwt_refused(message)
    if exc.status == 403 and "suspend" in message.casefold():
        return FatalError(
            f"GitHub App installation {installation_id} is suspended (403): an owner of the "
            "account must unsuspend it (Settings → GitHub Apps → Configure)"
        )
    if exc.status == 404:
        return FatalError(
            f"GitHub App installation {installation_id} was not found (404): the app was "
            "uninstalled or installation_id is wrong; install the app again or fix installation_id"
        )
    if exc.status == 403 and "rate limit" not in message.casefold():
        return FatalError(
            f"GitHub refused an installation token for installation {installation_id} (403"
            f"{': ' + message if message else ''})"
        )
    return None


# ---------------------------------------------------------------------------------------------
# Installation tokens
# ---------------------------------------------------------------------------------------------
class InstallationAuth(Auth.AppInstallationAuth):
    """PyGithub's installation auth with one hook: every token it mints goes to `on_minted`
    (redaction, expiry) before any request carries it. Renewal follows PyGithub's rule (a new
    token once `expires_at` - 20 s has passed) and `refused()` (a 401 to the current token)."""

    def __init__(
        self,
        app_auth: Auth.AppAuth,
        installation_id: int,
        on_minted: Callable[[InstallationAuthorization], None],
    ) -> None:
        super().__init__(app_auth, installation_id)
        self._on_minted = on_minted
        self._lock = threading.Lock()  # requests run in worker threads: one mint at a time
        self._current: InstallationAuthorization | None = None
        self._renewing = False  # the next mint replaces a refused token
        self._minted_after_refusal = False

    @property
    def token(self) -> str:
        with self._lock:
            current = self._current
            if current is None or self._due(current):
                current = self._current = self._mint()
            return current.token

    @staticmethod
    def _due(current: InstallationAuthorization) -> bool:
        return current.expires_at - TOKEN_REFRESH_THRESHOLD_TIMEDELTA < datetime.now(UTC)

    def _mint(self) -> InstallationAuthorization:
        try:
            minted = self._get_installation_authorization()
        except GithubException as exc:
            error = mint_refused(exc, self.installation_id)
            if error is None:
                raise
            raise error from None
        self._on_minted(minted)
        self._minted_after_refusal, self._renewing = self._renewing, False
        return minted

    def confirmed(self) -> None:
        """A request with the current token went through: a later 401 is news again."""
        with self._lock:
            self._minted_after_refusal = False

    def refused(self) -> bool:
        """GitHub answered 401 to the current token: drop it, so the next request mints another.
        False when that token was itself minted after a refusal: new tokens are refused too."""
        with self._lock:
            if self._current is None:
                return True  # another thread dropped it already
            if self._minted_after_refusal:
                return False
            self._current = None
            self._renewing = True
            return True


# ---------------------------------------------------------------------------------------------
# The app: its JWT, its installations, a client per installation
# ---------------------------------------------------------------------------------------------
class GitHubApp:
    """One GitHub App credential: `GithubIntegration` (JWT) for installation lookups, and a
    `Github` client per installation (installation tokens). Blocking: call from worker threads."""

    def __init__(
        self,
        app_id: str,
        pem: str,
        *,
        installation_id: int | None,
        client_kwargs: dict[str, Any],
        on_secret: Callable[[str], None],
        on_credential: Callable[[CredentialExpiry], None],
    ) -> None:
        self.app_id = app_id
        self.app_auth = Auth.AppAuth(int(app_id) if app_id.isdigit() else app_id, pem)
        self.integration = GithubIntegration(auth=self.app_auth, **client_kwargs)
        self._client_kwargs = client_kwargs
        self._fixed = installation_id
        self._on_secret = on_secret
        self._on_credential = on_credential
        self._lock = threading.Lock()
        self._by_owner: dict[str, int] = {}  # owner (casefolded) -> installation id
        self._clients: dict[int, tuple[Github, InstallationAuth]] = {}

    def _minted(self, minted: InstallationAuthorization) -> None:
        self._on_secret(minted.token)
        self._on_credential(CredentialExpiry(TOKEN_KIND, minted.expires_at, renewable=True))

    def known(self, owner: str) -> int | None:
        """The installation of `owner` when no lookup is needed (configured or found before)."""
        if self._fixed is not None:
            return self._fixed
        with self._lock:
            return self._by_owner.get(owner.casefold())

    def installation_for(self, owner: str, repo: str | None = None) -> int:
        """The installation holding `owner`'s repositories: the configured one, else looked up
        once per owner (by repository when one is named: that also works for user accounts)."""
        if self._fixed is not None:
            return self._fixed
        key = owner.casefold()
        with self._lock:
            if key in self._by_owner:
                return self._by_owner[key]
        found = self._lookup(owner, repo)
        with self._lock:
            self._by_owner[key] = found
        return found

    def _lookup(self, owner: str, repo: str | None) -> int:
        gi = self.integration
        try:
            if repo is not None:
                return int(gi.get_repo_installation(owner, repo).id)
            try:
                return int(gi.get_org_installation(owner).id)
            except GithubException as exc:
                if exc.status != 404:
                    raise
                return int(gi.get_user_installation(owner).id)  # a personal account
        except GithubException as exc:
            if exc.status == 401:
                raise jwt_refused(_message(exc)) from None
            if exc.status == 404:
                where = f"repository {owner}/{repo}" if repo else f"account {owner!r}"
                raise NotInstalled(self.app_id, where) from None
            raise

    def client(self, installation_id: int) -> tuple[Github, InstallationAuth]:
        """The client (and its auth) of one installation; no request happens here."""
        with self._lock:
            if installation_id not in self._clients:
                auth = InstallationAuth(self.app_auth, installation_id, self._minted)
                self._clients[installation_id] = (
                    Github(auth=auth, **self._client_kwargs),
                    auth,
                )
            return self._clients[installation_id]

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
        for gh, _ in clients:
            gh.close()
        self.integration.close()


# ---------------------------------------------------------------------------------------------
# Personal access tokens: the expiry GitHub announces
# ---------------------------------------------------------------------------------------------
def pat_expiry(value: str | None) -> datetime | None:
    """`GitHub-Authentication-Token-Expiration: 2026-10-12 09:00:00 UTC` (a numeric offset is
    accepted too) as aware UTC; None when absent or unreadable."""
    if not value:
        return None
    text = value.strip().replace(" UTC", " +0000")
    for fmt in ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M %z"):
        try:
            return datetime.strptime(text, fmt).astimezone(UTC)
        except ValueError:
            continue
    return None

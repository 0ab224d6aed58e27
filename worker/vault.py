"""OAuth grants kept encrypted in the database: the keys, and the `GrantVault` connectors use.

Keys. `C9_SYNC_SECRET_KEYS` holds one or more Fernet keys (`cryptography`: AES-128-CBC with an
HMAC-SHA256, 32 url-safe base64 bytes each), comma-separated. The first encrypts; every one
decrypts, so a key is rotated by putting a new one first, running `c9-sync oauth rekey` (every row
re-encrypted with it), then dropping the old one (docs/operations.md#oauth-grants). The keys are
read when a grant is needed, never at start-up: a missing or bad key fails the run (or the
command) that needs it with one line naming the setting, and the daemon goes on with the others.

The vault (`connectors.base.GrantVault`). `access()` answers from the row while its access token is
good for `margin` more. Otherwise, in one transaction holding the row's lock (SELECT … FOR UPDATE),
it reads the row again (another replica may have just refreshed: then its fresh token is used,
and the rotated refresh token is never spent twice), calls `refresh` with the stored refresh token
(or the config's seed when none is stored yet), writes the answer and COMMITs before returning it:
a rotated refresh token is on disk before anyone uses the access token that came with it. When
`refresh` raises (a revoked grant is a FatalError), the transaction rolls back and nothing changes.
Every token decrypted or received is registered for redaction (`on_secret`) before it is used.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta

import asyncpg
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from connectors.base import ConfigError, FatalError, Grant
from worker.store import grants as store

KEYS_SETTING = "C9_SYNC_SECRET_KEYS"
GENERATE = (
    'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)

#: How the vault reaches the database: `pool.acquire` in the worker, a one-off connection in
#: the admin commands. Each refresh holds it for one short transaction.
Connect = Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]


def keyring(keys: SecretStr | None) -> MultiFernet:
    """The keys of `C9_SYNC_SECRET_KEYS`, first one encrypting. ConfigError naming the setting
    and the key's position (never its value) when one is missing or not a Fernet key."""
    text = keys.get_secret_value().strip() if keys is not None else ""
    if not text:
        raise ConfigError(
            f"{KEYS_SETTING} is not set: OAuth grants are stored encrypted with it (generate a key"
            f" with: {GENERATE})"
        )
    parts = [part.strip() for part in text.split(",")]
    fernets = []
    for n, part in enumerate(parts, 1):
        where = f"{KEYS_SETTING}: key {n} of {len(parts)}"
        if not part:
            raise ConfigError(f"{where} is empty")
        try:
            fernets.append(Fernet(part))
        except (ValueError, TypeError):
            raise ConfigError(
                f"{where} is not a Fernet key (32 url-safe base64-encoded bytes; generate one"
                f" with: {GENERATE})"
            ) from None
    return MultiFernet(fernets)


def seal(ring: MultiFernet, secret: str) -> bytes:
    """Encrypted with the first key."""
    return ring.encrypt(secret.encode())


def unseal(ring: MultiFernet, blob: bytes, what: str) -> str:
    """Decrypted with whichever key encrypted it; ConfigError when none of them did."""
    try:
        return ring.decrypt(bytes(blob)).decode()
    except InvalidToken:
        raise ConfigError(
            f"the stored {what} cannot be decrypted with any key of {KEYS_SETTING} (was the key"
            " that encrypted it removed before `c9-sync oauth rekey` ran? Put it back, or store"
            " the grant again with `c9-sync oauth grant`)"
        ) from None


def rekeyed(ring: MultiFernet, blob: bytes | None, what: str) -> bytes | None:
    """The same secret, encrypted again with the first key."""
    if blob is None:
        return None
    try:
        return ring.rotate(bytes(blob))
    except InvalidToken:
        unseal(ring, blob, what)  # raises the ConfigError that says what to do
        raise


class NoGrant(FatalError):
    """No refresh token is stored for the integration and its config gives none to start from."""


class DatabaseVault:
    """`connectors.base.GrantVault` over `oauth_grants`, for one integration."""

    def __init__(
        self,
        connect: Connect,
        integration_id: uuid.UUID,
        keys: SecretStr | None,
        on_secret: Callable[[str], None],
    ) -> None:
        self._connect = connect
        self._id = integration_id
        self._keys = keys
        self._on_secret = on_secret

    def __repr__(self) -> str:
        return f"DatabaseVault(integration_id={self._id})"

    async def access(
        self,
        refresh: Callable[[SecretStr], Awaitable[Grant]],
        *,
        seed: SecretStr | None,
        margin: timedelta,
    ) -> Grant:
        ring = keyring(self._keys)
        async with self._connect() as conn:
            stored = await store.get(conn, self._id)
            if stored is not None and _good_for(stored, margin):
                return self._open(ring, stored)
            async with conn.transaction():
                stored = await store.lock(conn, self._id)
                if _good_for(stored, margin):  # refreshed by someone else while we waited
                    return self._open(ring, stored)
                if stored.refresh_token is not None:
                    token = SecretStr(unseal(ring, stored.refresh_token, "OAuth refresh token"))
                    self._on_secret(token.get_secret_value())
                elif seed is not None:
                    token = seed
                else:
                    raise NoGrant(
                        "no OAuth grant is stored for this integration: after the admin's consent,"
                        f" store its refresh token with `c9-sync oauth grant {self._id}"
                        " --refresh-token-env VAR` (or give oauth.refresh_token_env in the config)"
                    )
                grant = await refresh(token)
                for secret in (grant.access_token, grant.refresh_token):
                    if secret is not None:
                        self._on_secret(secret.get_secret_value())
                await store.save_refreshed(
                    conn,
                    self._id,
                    access_token=seal(ring, grant.access_token.get_secret_value()),
                    access_expires_at=grant.expires_at,
                    refresh_token=(
                        seal(ring, grant.refresh_token.get_secret_value())
                        if grant.refresh_token is not None
                        else None
                    ),
                )
            # The transaction has committed: the rotated refresh token is stored.
            return grant

    def _open(self, ring: MultiFernet, stored: store.StoredGrant) -> Grant:
        assert stored.access_token is not None and stored.access_expires_at is not None
        access = unseal(ring, stored.access_token, "OAuth access token")
        self._on_secret(access)
        return Grant(SecretStr(access), stored.access_expires_at)


def _good_for(stored: store.StoredGrant, margin: timedelta) -> bool:
    """An access token is stored and will still be valid `margin` from now."""
    if stored.access_token is None or stored.access_expires_at is None:
        return False
    return stored.access_expires_at - datetime.now(UTC) > margin


__all__ = ["KEYS_SETTING", "Connect", "DatabaseVault", "NoGrant", "keyring", "seal", "unseal"]

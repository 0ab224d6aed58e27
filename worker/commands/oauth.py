"""`c9-sync oauth …`: the OAuth grants the worker keeps encrypted in `oauth_grants`.

- `grant ID|TEAM/TYPE --refresh-token-env VAR | --refresh-token-file FILE`: store the refresh token
  an admin's consent produced (replacing whatever was stored); the next run refreshes it.
- `rekey`: re-encrypt every stored grant with the first key of C9_SYNC_SECRET_KEYS (key rotation:
  docs/operations.md#oauth-grants).
- `list`: which integrations hold a grant, when its access token expires, how often it was
  refreshed. Never a token.

No secret is ever printed: tokens are read from the environment or a file, never from the command
line (it would land in shell history and `ps`), registered for redaction at once, and only their
ciphertext reaches the database. Exit codes: 0 ok, 1 failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path

from cryptography.fernet import MultiFernet

from connectors.base import ConfigError, resolve_secret
from worker import health, migrate, redact, vault, views
from worker.commands.common import Subparsers
from worker.commands.integrations import resolve
from worker.errors import EXIT_OK, UsageError
from worker.settings import Settings
from worker.store import grants as store


def _keyring(settings: Settings) -> MultiFernet:
    try:
        return vault.keyring(settings.secret_keys)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


async def cmd_grant(args: argparse.Namespace, settings: Settings, url: str) -> int:
    ring = _keyring(settings)
    try:
        token = resolve_secret(
            "--refresh-token",
            None,
            args.refresh_token_env,
            Path(args.refresh_token_file) if args.refresh_token_file else None,
            os.environ,
        )
    except ConfigError as exc:
        raise UsageError(str(exc).replace("--refresh-token_", "--refresh-token-")) from None
    redact.register(token.get_secret_value())
    conn = await migrate.connect_current(url)
    try:
        target = await resolve(conn, args.integration)
        await store.save_consent(conn, target.id, vault.seal(ring, token.get_secret_value()))
    finally:
        await conn.close()
    views.say(
        f"{target.label}: OAuth grant stored (encrypted with the first key of"
        f" {vault.KEYS_SETTING}); its next run refreshes it. Check it now:"
        f" c9-sync integrations test {target.id}"
    )
    if not (isinstance(target.config, dict) and "oauth" in target.config):
        views.say(f"warning: {target.label}'s config has no `oauth` key: it does not use the grant")
    return EXIT_OK


async def cmd_rekey(args: argparse.Namespace, settings: Settings, url: str) -> int:
    ring = _keyring(settings)
    conn = await migrate.connect_current(url)
    try:
        async with conn.transaction():  # all or nothing, refreshes wait on the row locks
            rows = await store.lock_all(conn)
            for row in rows:
                try:
                    access = vault.rekeyed(ring, row.access_token, "OAuth access token")
                    refresh = vault.rekeyed(ring, row.refresh_token, "OAuth refresh token")
                except ConfigError as exc:
                    raise UsageError(
                        f"integration {row.integration_id}: {exc}; nothing was re-encrypted"
                    ) from None
                await store.rewrap(conn, row.integration_id, access, refresh)
    finally:
        await conn.close()
    views.say(
        f"re-encrypted {len(rows)} OAuth grant(s) with the first key of {vault.KEYS_SETTING};"
        " the other keys may now be removed from it"
    )
    return EXIT_OK


async def cmd_list(args: argparse.Namespace, settings: Settings, url: str) -> int:
    conn = await migrate.connect_current(url)
    try:
        rows = await store.summaries(conn)
    finally:
        await conn.close()
    if not rows:
        views.say("no OAuth grants stored")
        return EXIT_OK
    now = datetime.now(UTC)
    views.print_table(
        "OAuth grants",
        ("integration", "id", "refresh", "access expires", "refreshes", "refreshed", "granted"),
        [
            (
                r.label,
                r.integration_id,
                "stored" if r.has_refresh_token else "none",
                r.access_expires_at.isoformat(timespec="seconds") if r.access_expires_at else "",
                r.refreshes,
                health.ago(r.refreshed_at, now) or "never",
                health.ago(r.granted_at, now) or "",
            )
            for r in rows
        ],
    )
    return EXIT_OK


def register(sub: Subparsers) -> None:
    p = sub.add_parser("oauth", help="OAuth grants kept by the worker: store one, re-encrypt, list")
    osub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    q = osub.add_parser(
        "grant",
        help="store the refresh token of an admin's consent for an integration (never printed)",
    )
    q.add_argument("integration", metavar="ID|TEAM/TYPE[/NAME]", help="e.g. Alpha/linear")
    source = q.add_mutually_exclusive_group(required=True)
    source.add_argument("--refresh-token-env", metavar="VAR", help="read it from this variable")
    source.add_argument("--refresh-token-file", metavar="FILE", help="read it from this file")
    q.set_defaults(func=cmd_grant)

    q = osub.add_parser(
        "rekey", help=f"re-encrypt every stored grant with the first key of {vault.KEYS_SETTING}"
    )
    q.set_defaults(func=cmd_rekey)

    q = osub.add_parser("list", help="the stored grants: expiry and refreshes, never a token")
    q.set_defaults(func=cmd_list)

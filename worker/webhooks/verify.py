"""Is this delivery from the tracker? Each tracker's own scheme, on the raw body, compared in
constant time (docs/webhooks.md has the sources):

- GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`; `X-GitHub-Delivery`.
- Linear: `Linear-Signature: <hex HMAC-SHA256(secret, body)>`; the signed body's
  `webhookTimestamp` (ms) within 60 s of now; `Linear-Delivery`.
- Jira (Cloud admin webhooks, Data Center): `X-Hub-Signature: sha256=<hex HMAC-SHA256>`;
  `X-Atlassian-Webhook-Identifier` when sent (stable across Jira's retries).
- Azure DevOps service hooks: no signature; HTTP Basic, the secret as the password.

Pure functions: no I/O, no clock of their own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

#: Linear's window for `webhookTimestamp` (its SDK rejects a larger difference either way).
LINEAR_MAX_SKEW_S = 60.0
MAX_DELIVERY_ID = 200


@dataclass(frozen=True, slots=True)
class Verdict:
    """`reason` is empty for a genuine, fresh delivery; else one of REASONS."""

    reason: str
    delivery_id: str | None = None

    @property
    def ok(self) -> bool:
        return not self.reason


#: reason -> the HTTP status it is answered with
REASONS = {"bad_signature": 401, "stale": 400, "no_delivery_id": 400}


def verify(
    source: str, headers: Mapping[str, str], body: bytes, secret: str, now_s: float
) -> Verdict:
    """`headers` with lower-cased names; `now_s` Unix seconds."""
    if source == "github":
        return _hub(headers, "x-hub-signature-256", body, secret, "x-github-delivery", True)
    if source == "jira":
        ident = "x-atlassian-webhook-identifier"
        return _hub(headers, "x-hub-signature", body, secret, ident, False)
    if source == "linear":
        return _linear(headers, body, secret, now_s)
    if source == "azure_devops":
        return _basic(headers, secret)
    raise ValueError(f"no webhook scheme for {source!r}")


def hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def _delivery(headers: Mapping[str, str], name: str, required: bool) -> Verdict:
    ident = headers.get(name, "").strip()
    if not ident and required:
        return Verdict("no_delivery_id")
    if len(ident) > MAX_DELIVERY_ID:
        return Verdict("no_delivery_id")
    return Verdict("", ident or None)


def _hub(
    headers: Mapping[str, str],
    header: str,
    body: bytes,
    secret: str,
    id_header: str,
    id_required: bool,
) -> Verdict:
    given = headers.get(header, "")
    if not _same(given, "sha256=" + hmac_hex(secret, body)):
        return Verdict("bad_signature")
    return _delivery(headers, id_header, id_required)


def _linear(headers: Mapping[str, str], body: bytes, secret: str, now_s: float) -> Verdict:
    if not _same(headers.get("linear-signature", ""), hmac_hex(secret, body)):
        return Verdict("bad_signature")
    # The one field read from a body, and only once it is known to be Linear's: the signed time.
    stamp: object = None
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict):
            stamp = parsed.get("webhookTimestamp")
    except ValueError:
        pass
    if stamp is None:
        stamp = headers.get("linear-timestamp")  # Linear's SDK falls back to this header
    try:
        at_s = float(stamp) / 1000  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return Verdict("stale")
    if abs(now_s - at_s) > LINEAR_MAX_SKEW_S:
        return Verdict("stale")
    return _delivery(headers, "linear-delivery", True)


def _basic(headers: Mapping[str, str], secret: str) -> Verdict:
    scheme, _, encoded = headers.get("authorization", "").partition(" ")
    password = ""
    if scheme.lower() == "basic":
        try:
            password = base64.b64decode(encoded, validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            password = ""
    if not password or not _same(password, secret):
        return Verdict("bad_signature")
    return Verdict("")

"""worker.webhooks.verify against deliveries signed the way each tracker signs them (the sandbox's
signers, connectors/sandbox/webhooks.py), and the listener's per-integration limits."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from connectors.sandbox import webhooks as sender
from worker.webhooks import limits, verify

SECRET = "whsec-unit-3b9f2e"
NOW = time.time()


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def signed(source: str, body: bytes, secret: str = SECRET, ident: str = "d-1") -> dict[str, str]:
    signer = {
        "github": sender.github_headers,
        "linear": sender.linear_headers,
        "jira": sender.jira_headers,
        "azure_devops": sender.azure_devops_headers,
    }[source]
    return lower(signer(body, secret, ident, "issues"))


def linear_body(at_s: float) -> bytes:
    return json.dumps(
        {"action": "update", "type": "Issue", "webhookTimestamp": int(at_s * 1000)}
    ).encode()


@pytest.mark.parametrize("source", ["github", "jira", "azure_devops"])
def test_a_genuine_delivery_passes_and_another_secret_fails(source: str) -> None:
    body = b'{"action":"edited"}'
    ok = verify.verify(source, signed(source, body), body, SECRET, NOW)
    assert ok.ok
    assert ok.delivery_id == (None if source == "azure_devops" else "d-1")
    forged = verify.verify(source, signed(source, body, secret="other-secret"), body, SECRET, NOW)
    assert forged.reason == "bad_signature"


@pytest.mark.parametrize("source", ["github", "jira", "linear"])
def test_a_changed_body_or_a_missing_signature_fails(source: str) -> None:
    body = linear_body(NOW) if source == "linear" else b'{"action":"edited"}'
    headers = signed(source, body)
    assert verify.verify(source, headers, body, SECRET, NOW).ok
    assert verify.verify(source, headers, body + b" ", SECRET, NOW).reason == "bad_signature"
    bare = {k: v for k, v in headers.items() if "signature" not in k}
    assert verify.verify(source, bare, body, SECRET, NOW).reason == "bad_signature"


def test_github_signature_needs_its_prefix_and_a_delivery_id() -> None:
    body = b"{}"
    headers = signed("github", body)
    bare_hex = dict(headers, **{"x-hub-signature-256": headers["x-hub-signature-256"][7:]})
    assert verify.verify("github", bare_hex, body, SECRET, NOW).reason == "bad_signature"
    no_id = {k: v for k, v in headers.items() if k != "x-github-delivery"}
    assert verify.verify("github", no_id, body, SECRET, NOW).reason == "no_delivery_id"


def test_linear_timestamp_window_is_sixty_seconds_either_way() -> None:
    for skew, reason in ((-59, ""), (59, ""), (-61, "stale"), (61, "stale")):
        body = linear_body(NOW + skew)
        got = verify.verify("linear", signed("linear", body), body, SECRET, NOW)
        assert got.reason == reason, skew
    body = b'{"action":"update"}'  # no webhookTimestamp and no header: refused
    assert verify.verify("linear", signed("linear", body), body, SECRET, NOW).reason == "stale"
    headers = dict(signed("linear", body), **{"linear-timestamp": str(int(NOW * 1000))})
    assert verify.verify("linear", headers, body, SECRET, NOW).ok


def test_azure_devops_basic_auth_checks_the_password() -> None:
    assert (
        verify.verify("azure_devops", {"authorization": "Basic !!"}, b"", SECRET, NOW).reason
        == "bad_signature"
    )
    assert verify.verify("azure_devops", {}, b"", SECRET, NOW).reason == "bad_signature"
    bearer = {"authorization": f"Bearer {SECRET}"}
    assert verify.verify("azure_devops", bearer, b"", SECRET, NOW).reason == "bad_signature"


def test_debounce_turns_a_burst_into_one_request_and_one_trailing() -> None:
    d = limits.Debouncer(5.0)
    key = uuid.uuid4()
    assert d.offer(key, 100.0) == 0.0
    assert d.offer(key, 100.5) == pytest.approx(4.5)
    assert all(d.offer(key, 100.5 + i / 100) is None for i in range(500))
    d.fired(key, 105.0)
    assert d.offer(key, 111.0) == 0.0  # a quiet window later: at once again
    assert d.offer(uuid.uuid4(), 111.0) == 0.0  # per integration


def test_token_bucket_refuses_past_the_burst_and_refills() -> None:
    b = limits.TokenBuckets(rate=10, burst=20)
    key = uuid.uuid4()
    assert sum(b.take(key, 0.0) for _ in range(30)) == 20
    assert b.take(key, 0.05) is False
    assert b.take(key, 0.2) is True  # 0.2 s at 10/s: two tokens back
    assert b.take(uuid.uuid4(), 0.2) is True

"""Webhook deliveries from a sandbox tracker, signed and headed as the real tracker sends them
(docs/webhooks.md has the sources), so the daemon's listener is tested against the real form.

A sandbox holds a `WebhookSender`; a test (or the demo) subscribes a URL with a secret
(`sandbox.hooks.subscribe(url, secret)`), and every change the sandbox makes through its change
methods (`add_issue`, `update`, ...) is then POSTed to each subscription from a background thread,
as trackers deliver asynchronously. `wait()` waits for the deliveries sent so far, `sent` records
each delivery's id and the HTTP status it got (None: no answer).
"""

from __future__ import annotations

import base64
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

#: (body, secret, delivery id, event) -> the delivery's headers
Signer = Callable[[bytes, str, str, str], dict[str, str]]


@dataclass(frozen=True, slots=True)
class Subscription:
    url: str
    secret: str


@dataclass(frozen=True, slots=True)
class Sent:
    delivery_id: str
    status: int | None


def _hex(secret: str, body: bytes, digest: str = "sha256") -> str:
    return hmac.new(secret.encode(), body, digest).hexdigest()


def github_headers(body: bytes, secret: str, delivery_id: str, event: str) -> dict[str, str]:
    """GitHub: X-Hub-Signature-256 (and the legacy SHA-1 X-Hub-Signature), X-GitHub-Delivery."""
    return {
        "User-Agent": "GitHub-Hookshot/sandbox",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id,
        "X-GitHub-Hook-ID": "1",
        "X-GitHub-Hook-Installation-Target-Type": "repository",
        "X-Hub-Signature": "sha1=" + _hex(secret, body, "sha1"),
        "X-Hub-Signature-256": "sha256=" + _hex(secret, body),
    }


def linear_headers(body: bytes, secret: str, delivery_id: str, event: str) -> dict[str, str]:
    """Linear: Linear-Signature (hex, no prefix), Linear-Delivery, Linear-Event; the timestamp
    is `webhookTimestamp` inside the signed body."""
    return {
        "User-Agent": "Linear-Webhook",
        "Linear-Delivery": delivery_id,
        "Linear-Event": event,
        "Linear-Signature": _hex(secret, body),
    }


def jira_headers(body: bytes, secret: str, delivery_id: str, event: str) -> dict[str, str]:
    """Jira admin webhooks with a secret: X-Hub-Signature (WebSub form), the identifier that
    stays the same across Jira's retries."""
    return {
        "User-Agent": "Atlassian Webhook HTTP Client",
        "X-Atlassian-Webhook-Identifier": delivery_id,
        "X-Atlassian-Webhook-Flow": "Primary",
        "X-Hub-Signature": "sha256=" + _hex(secret, body),
    }


def azure_devops_headers(body: bytes, secret: str, delivery_id: str, event: str) -> dict[str, str]:
    """Azure DevOps service hooks: no signature; HTTP Basic with the subscription's password."""
    basic = base64.b64encode(f"c9-sync:{secret}".encode()).decode()
    return {"User-Agent": "VSServices/sandbox", "Authorization": f"Basic {basic}"}


class WebhookSender:
    def __init__(self, signer: Signer) -> None:
        self._signer = signer
        self._subs: list[Subscription] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.sent: list[Sent] = []

    @property
    def subscribed(self) -> bool:
        return bool(self._subs)

    def subscribe(self, url: str, secret: str) -> None:
        with self._lock:
            self._subs.append(Subscription(url, secret))

    def deliver(self, event: str, payload: Mapping[str, Any]) -> None:
        """POST `payload` to every subscription (in the background)."""
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            thread = threading.Thread(
                target=self._post, args=(sub, event, dict(payload)), daemon=True
            )
            with self._lock:
                self._threads.append(thread)
            thread.start()

    def wait(self, timeout: float = 10.0) -> list[Sent]:
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            return list(self.sent)

    def _post(self, sub: Subscription, event: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        delivery_id = str(uuid.uuid4())
        headers = {"Content-Type": "application/json"}
        headers.update(self._signer(body, sub.secret, delivery_id, event))
        status: int | None
        try:
            status = httpx.post(sub.url, content=body, headers=headers, timeout=10).status_code
        except httpx.HTTPError:
            status = None
        with self._lock:
            self.sent.append(Sent(delivery_id, status))

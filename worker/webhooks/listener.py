"""`POST /hooks/<integration id>`: a tracker's delivery, checked and turned into a run request.

Polling stays the truth: a delivery is only a hint that something changed, so its payload is
never parsed for data or stored; a valid one asks every replica, through the `sync-now` NOTIFY,
to run the integration now (debounced per integration). The answer goes back before the run.

Answers: 202 accepted (run requested, or coalesced into one requested); 200 for a delivery id
already served (a tracker's retry: no second run); 401 bad signature or credentials; 400 stale
(Linear's signed timestamp) or no delivery id; 404 unknown, disabled or webhook-less integration;
405 not POST; 413 too large (worker.http); 429 flood; 503 database or secret unavailable.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping

import asyncpg

from connectors import registry
from connectors.base import ConfigError
from worker import connecting, db, redact, telemetry
from worker.http import Reply, Request
from worker.logs import get_logger
from worker.settings import Settings
from worker.store import integrations, notify
from worker.store import sync as sync_store
from worker.store import webhooks as store
from worker.webhooks import limits, setup, verify

log = get_logger(__name__)

PREFIX = "/hooks/"
RATE_PER_S = 100.0  # deliveries a second per integration, past a burst of BURST
BURST = 1000.0
REJECTION_ROW_EVERY_S = 60.0  # at most one webhook_rejected row per integration and reason
PRUNE_EVERY_S = 300.0
ACQUIRE_TIMEOUT_S = 5.0
SECRET_CACHE_S = 60.0  # a secret rotated in its file or variable is read within a minute


class WebhookListener:
    """The route of the webhook server. One per daemon; `close` cancels pending requests."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        environ: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._environ = environ
        self._clock = clock
        self._buckets = limits.TokenBuckets(RATE_PER_S, BURST)
        self._debounce = limits.Debouncer(settings.webhook_debounce_seconds)
        self._trailing: dict[uuid.UUID, asyncio.Task[None]] = {}
        # (integration, reason) -> (last logged, rejected since without a line or row)
        self._rejections: dict[tuple[uuid.UUID, str], tuple[float, int]] = {}
        self._pruned = -PRUNE_EVERY_S
        self._secrets: dict[uuid.UUID, tuple[str, float, str | None]] = {}  # see _secret_of

    def close(self) -> None:
        for task in self._trailing.values():
            task.cancel()

    async def route(self, request: Request) -> Reply:
        if not request.path.startswith(PREFIX):
            return Reply.text(404, "not found")
        if request.method != "POST":
            return Reply.text(405, "method not allowed: POST a delivery", Allow="POST")
        try:
            integration_id = uuid.UUID(request.path[len(PREFIX) :].strip("/"))
        except ValueError:
            return _count("unknown", "rejected", "unknown_integration", 404, "no such integration")
        if not self._buckets.take(integration_id, self._clock()):
            return _count("unknown", "rejected", "rate_limited", 429, "too many deliveries")
        try:
            async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                return await self._serve(conn, integration_id, request)
        except db.FAILURES as exc:
            log.warning("webhook_database_unavailable", error=f"{type(exc).__name__}: {exc}")
            return _count("unknown", "rejected", "unavailable", 503, "try again later")

    async def _serve(
        self, conn: asyncpg.Connection, integration_id: uuid.UUID, request: Request
    ) -> Reply:
        target = await integrations.get_integration(conn, integration_id)
        if target is None or not target.is_active or target.type not in setup.SOURCES:
            return _count("unknown", "rejected", "unknown_integration", 404, "no such integration")
        source = target.type
        try:
            secret = self._secret_of(target)
        except ConfigError as exc:  # names the key and the cause, never the value
            log.error(
                "webhook_secret_unavailable", integration_id=str(integration_id), error=str(exc)
            )
            return _count(source, "rejected", "unavailable", 503, "try again later")
        if secret is None:
            log.info("webhook_not_enabled", integration_id=str(integration_id))
            return _count(source, "rejected", "not_enabled", 404, "no such integration")
        verdict = verify.verify(source, request.headers, request.body, secret, time.time())
        if not verdict.ok:
            await self._reject(conn, target, verdict.reason, request.peer)
            return _count(
                source,
                "rejected",
                verdict.reason,
                verify.REASONS[verdict.reason],
                _WHY[verdict.reason],
            )
        await self._prune(conn)
        async with conn.transaction():  # remembered only with its run request (NOTIFY at commit)
            return await self._hint(conn, integration_id, source, verdict.delivery_id)

    async def _hint(
        self, conn: asyncpg.Connection, integration_id: uuid.UUID, source: str, ident: str | None
    ) -> Reply:
        """A genuine delivery: a duplicate, a run request now, or one coalesced."""
        if ident is not None and not await store.remember_delivery(conn, integration_id, ident):
            log.info("webhook_replayed", integration_id=str(integration_id))
            return _count(source, "rejected", "replayed", 200, "delivery already received")
        delay = self._debounce.offer(integration_id, self._clock())
        if delay is None:
            return _count(source, "coalesced", "debounced", 202, "coalesced into a requested run")
        if delay > 0:
            self._trailing[integration_id] = asyncio.create_task(
                self._request_later(integration_id, delay), name=f"webhook-run-{integration_id}"
            )
            return _count(source, "coalesced", "debounced", 202, "coalesced into a requested run")
        if not await self._request(conn, integration_id):
            return _count(source, "coalesced", "backoff", 202, "coalesced: integration backing off")
        return _count(source, "accepted", "run_requested", 202, "accepted: run requested")

    async def _request(self, conn: asyncpg.Connection, integration_id: uuid.UUID) -> bool:
        """The sync-now request, unless the integration is failing and backing off: a hint must
        not undo a backoff (the tracker may be refusing us); the run after it reads whatever
        changed. False when deferred so."""
        state = await sync_store.get_state(conn, integration_id)
        if state.next_attempt_at is not None:
            if state.next_attempt_at > await sync_store.database_now(conn):
                log.info("webhook_run_deferred", integration_id=str(integration_id))
                return False
        await notify.request_sync_now(conn, integration_id)
        log.info("webhook_run_requested", integration_id=str(integration_id))
        return True

    def _secret_of(self, target: integrations.Integration) -> str | None:
        """The integration's webhook secret (None: it has none), registered for redaction.
        Kept for a minute per config version: a burst validates the config once."""
        now = self._clock()
        cached = self._secrets.get(target.id)
        if cached is not None and cached[0] == target.config_digest and now < cached[1]:
            return cached[2]
        config = connecting.validate_config(registry.load(target.type), target.config)
        secret = None
        if config.has_webhook_secret():
            secret = config.resolve_webhook_secret(self._environ).get_secret_value()
            redact.register(secret)
        self._secrets[target.id] = (target.config_digest, now + SECRET_CACHE_S, secret)
        return secret

    async def _request_later(self, integration_id: uuid.UUID, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                await self._request(conn, integration_id)
        except db.FAILURES as exc:
            # the next poll reads the change anyway
            log.warning("webhook_run_request_failed", error=type(exc).__name__)
        finally:
            self._debounce.fired(integration_id, self._clock())
            self._trailing.pop(integration_id, None)

    async def _reject(
        self, conn: asyncpg.Connection, target: integrations.Integration, reason: str, peer: str
    ) -> None:
        """Log it and keep a `webhook_rejected` row (no payload, no secret), at most once a
        minute per integration and reason (the rest are counted in /metrics and in the next
        line): a flood fills neither the log nor activity_logs."""
        key, now = (target.id, reason), self._clock()
        last, unlogged = self._rejections.get(key, (-REJECTION_ROW_EVERY_S, 0))
        if now - last < REJECTION_ROW_EVERY_S:
            self._rejections[key] = (last, unlogged + 1)
            return
        self._rejections[key] = (now, 0)
        log.warning(
            "webhook_rejected",
            integration_id=str(target.id),
            reason=reason,
            peer=peer,
            also_rejected_since_last=unlogged,
        )
        await store.log_rejection(
            conn,
            target.team_id,
            f"webhook delivery rejected for {target.label}: {_WHY[reason]}",
            {
                "integration_id": str(target.id),
                "source": target.type,
                "reason": reason,
                "peer": peer,
            },
        )

    async def _prune(self, conn: asyncpg.Connection) -> None:
        now = self._clock()
        if now - self._pruned >= PRUNE_EVERY_S:
            self._pruned = now
            await store.forget_old_deliveries(conn)


_WHY = {
    "bad_signature": "signature or credentials do not match the webhook secret",
    "stale": "timestamp missing or more than 60 s from now",
    "no_delivery_id": "no delivery id header",
}


def _count(source: str, outcome: str, reason: str, status: int, text: str) -> Reply:
    telemetry.WEBHOOK_DELIVERIES.labels(source=source, outcome=outcome, reason=reason).inc()
    return Reply.text(status, text)

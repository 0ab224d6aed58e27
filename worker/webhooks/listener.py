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
from worker import connecting, redact, telemetry
from worker.http import Reply, Request
from worker.logs import get_logger
from worker.settings import Settings
from worker.store import integrations, notify
from worker.store import sync as sync_store
from worker.store import webhooks as store
from worker.webhooks import limits, verify

log = get_logger(__name__)

PREFIX = "/hooks/"
SOURCES = ("github", "linear", "jira", "azure_devops")
RATE_PER_S = 100.0  # deliveries a second per integration, past a burst of BURST
BURST = 1000.0
REJECTION_ROW_EVERY_S = 60.0  # at most one webhook_rejected row per integration and reason
PRUNE_EVERY_S = 300.0
ACQUIRE_TIMEOUT_S = 5.0


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
        self._rows_written: dict[tuple[uuid.UUID, str], float] = {}
        self._pruned = -PRUNE_EVERY_S

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
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("webhook_database_unavailable", error=type(exc).__name__)
            return _count("unknown", "rejected", "unavailable", 503, "try again later")

    async def _serve(
        self, conn: asyncpg.Connection, integration_id: uuid.UUID, request: Request
    ) -> Reply:
        target = await integrations.get_integration(conn, integration_id)
        if target is None or not target.is_active or target.type not in SOURCES:
            return _count("unknown", "rejected", "unknown_integration", 404, "no such integration")
        source = target.type
        try:
            config = connecting.validate_config(registry.load(source), target.config)
            if not config.has_webhook_secret():
                log.info("webhook_not_enabled", integration_id=str(integration_id))
                return _count(source, "rejected", "not_enabled", 404, "no such integration")
            secret = config.resolve_webhook_secret(self._environ).get_secret_value()
        except ConfigError as exc:  # names the key and the cause, never the value
            log.error(
                "webhook_secret_unavailable", integration_id=str(integration_id), error=str(exc)
            )
            return _count(source, "rejected", "unavailable", 503, "try again later")
        redact.register(secret)
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
        if verdict.delivery_id is not None:
            await self._prune(conn)
            if not await store.remember_delivery(conn, integration_id, verdict.delivery_id):
                log.info("webhook_replayed", integration_id=str(integration_id))
                return _count(source, "rejected", "replayed", 200, "delivery already received")
        state = await sync_store.get_state(conn, integration_id)
        now_db = await sync_store.database_now(conn)
        if state.next_attempt_at is not None and state.next_attempt_at > now_db:
            # Failing and backing off: a hint must not undo the backoff (the tracker may be
            # refusing us); the run after the backoff reads whatever changed.
            return _count(source, "coalesced", "backoff", 202, "coalesced: integration backing off")
        delay = self._debounce.offer(integration_id, self._clock())
        if delay is None:
            return _count(source, "coalesced", "debounced", 202, "coalesced into a requested run")
        if delay > 0:
            self._trailing[integration_id] = asyncio.create_task(
                self._request_later(integration_id, delay), name=f"webhook-run-{integration_id}"
            )
            return _count(source, "coalesced", "debounced", 202, "coalesced into a requested run")
        await notify.request_sync_now(conn, integration_id)
        log.info("webhook_run_requested", integration_id=str(integration_id), source=source)
        return _count(source, "accepted", "run_requested", 202, "accepted: run requested")

    async def _request_later(self, integration_id: uuid.UUID, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                await notify.request_sync_now(conn, integration_id)
            log.info("webhook_run_requested", integration_id=str(integration_id), coalesced=True)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            # the next poll reads the change anyway
            log.warning("webhook_run_request_failed", error=type(exc).__name__)
        finally:
            self._debounce.fired(integration_id, self._clock())
            self._trailing.pop(integration_id, None)

    async def _reject(
        self, conn: asyncpg.Connection, target: integrations.Integration, reason: str, peer: str
    ) -> None:
        """Log it, and keep a `webhook_rejected` row (no payload, no secret) at most once a
        minute per integration and reason."""
        log.warning("webhook_rejected", integration_id=str(target.id), reason=reason, peer=peer)
        key, now = (target.id, reason), self._clock()
        if now - self._rows_written.get(key, -REJECTION_ROW_EVERY_S) < REJECTION_ROW_EVERY_S:
            return
        self._rows_written[key] = now
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

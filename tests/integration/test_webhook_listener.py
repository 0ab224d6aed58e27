"""The webhook listener as two replicas would run it: two `WebhookListener`s on one database,
each behind its own real HTTP server (worker.http), deliveries signed as the trackers sign them.
The run requests are observed where replicas receive them: the `sync_now` NOTIFYs."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import ValidationError

from connectors import registry
from connectors.base import ConfigError
from connectors.sandbox import webhooks as signers
from connectors.sandbox.azure_devops import AzureDevOpsSandbox
from connectors.sandbox.jira import JiraSandbox
from tests.helpers import make_integration, make_team
from worker.http import serve_routes
from worker.settings import Settings
from worker.store import notify
from worker.webhooks.listener import WebhookListener

SECRET = "whsec-PLANTED-listener-8d2c41"
WINDOW = 3.0  # the debounce window: 40 deliveries fit in it on a busy machine
CONFIGS = {
    "github": {"token": "t0ken-gh", "repos": ["acme/web"]},
    "linear": {"token": "t0ken-lin", "team_keys": ["ENG"]},
    "jira": {
        "url": "https://acme.atlassian.net",
        "email": "a@b.c",
        "token": "t0ken-j",
        "projects": ["PAY"],
    },
    "azure_devops": {
        "organization_url": "https://dev.azure.com/acme",
        "project": "Web",
        "token": "t0ken-a",
    },
}


@pytest.mark.parametrize("source", sorted(CONFIGS))
def test_every_tracker_config_takes_a_webhook_secret_in_one_form(
    source: str, tmp_path: Path
) -> None:
    model = registry.load(source).config_model
    secret_file = tmp_path / "hook"
    secret_file.write_text(SECRET + "\n")
    config = model.model_validate({**CONFIGS[source], "webhook_secret_file": str(secret_file)})
    assert config.resolve_webhook_secret({}).get_secret_value() == SECRET
    env = model.model_validate({**CONFIGS[source], "webhook_secret_env": "HOOK"})
    assert env.resolve_webhook_secret({"HOOK": SECRET}).get_secret_value() == SECRET
    assert not model.model_validate(CONFIGS[source]).has_webhook_secret()
    with pytest.raises(ValidationError) as both:
        model.model_validate(
            {**CONFIGS[source], "webhook_secret": SECRET, "webhook_secret_env": "HOOK"}
        )
    assert "give only one of webhook_secret, webhook_secret_env, webhook_secret_file" in str(
        both.value
    )
    assert SECRET not in repr(config) and SECRET not in str(both.value.errors(include_input=False))
    weak = model.model_validate({**CONFIGS[source], "webhook_secret": "tiny-1"})
    with pytest.raises(ConfigError) as short:
        weak.resolve_webhook_secret({})
    assert str(short.value).startswith("webhook_secret: shorter than 16") and "tiny-1" not in str(
        short.value
    )


class Replica:
    def __init__(self, listener: WebhookListener, server: asyncio.Server) -> None:
        self.listener = listener
        self.server = server
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hooks"


@pytest.fixture
async def replicas(pool: asyncpg.Pool) -> AsyncIterator[list[Replica]]:
    settings = Settings(webhook_debounce_seconds=WINDOW)
    out = []
    for _ in range(2):
        listener = WebhookListener(pool, settings, {"HOOK": SECRET})
        server = await serve_routes("127.0.0.1", 0, listener.route, max_body=65536)
        out.append(Replica(listener, server))
    yield out
    for r in out:
        r.listener.close()
        r.server.close()


@pytest.fixture
async def notices(db_url: str) -> AsyncIterator[list[uuid.UUID]]:
    """The integration ids of every sync_now NOTIFY, as a replica's scheduler hears them."""
    heard: list[uuid.UUID] = []
    conn = await asyncpg.connect(db_url)

    def on_notify(*args: object) -> None:
        notice = notify.parse(str(args[-1]))
        if notice.op == "sync_now" and notice.id is not None:
            heard.append(notice.id)

    await conn.add_listener(notify.CHANNEL, on_notify)
    yield heard
    await conn.close()


async def heard(notices: list[uuid.UUID], count: int) -> list[uuid.UUID]:
    """The notices once `count` have arrived (a NOTIFY reaches other sessions a moment later)."""
    for _ in range(50):
        if len(notices) >= count:
            break
        await asyncio.sleep(0.05)
    return list(notices)


def github(body: bytes, ident: str | None = None) -> dict[str, str]:
    return signers.github_headers(body, SECRET, ident or str(uuid.uuid4()), "issues")


async def hooked(pool: asyncpg.Pool, source: str, **extra: object) -> uuid.UUID:
    team = await make_team(pool)
    config = {**CONFIGS[source], "webhook_secret_env": "HOOK", **extra}
    return await make_integration(pool, team, source, config, interval=3600)


async def test_a_delivery_served_by_one_replica_is_a_duplicate_at_the_other(
    pool: asyncpg.Pool, replicas: list[Replica], notices: list[uuid.UUID]
) -> None:
    integration = await hooked(pool, "github")
    body = b'{"action":"edited"}'
    headers = github(body, "guid-1")
    async with httpx.AsyncClient(timeout=10) as client:
        first = await client.post(f"{replicas[0].url}/{integration}", content=body, headers=headers)
        again = await client.post(f"{replicas[1].url}/{integration}", content=body, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    await asyncio.sleep(WINDOW + 0.5)  # past the debounce window: nothing else is requested
    assert notices == [integration]
    kept = await pool.fetch("SELECT * FROM webhook_deliveries")
    assert [(r["integration_id"], r["delivery_id"]) for r in kept] == [(integration, "guid-1")]


async def test_a_burst_is_one_request_now_and_one_at_the_window_end(
    pool: asyncpg.Pool, replicas: list[Replica], notices: list[uuid.UUID]
) -> None:
    integration = await hooked(pool, "github")
    other = await hooked(pool, "github")
    body = b"{}"
    async with httpx.AsyncClient(base_url=replicas[0].url, timeout=10) as client:
        answers = [
            (await client.post(f"/{integration}", content=body, headers=github(body))).status_code
            for _ in range(40)
        ]
        # the first asked at once, before the window ended
        assert await heard(notices, 1) == [integration]
        solo = await client.post(f"/{other}", content=body, headers=github(body))
    assert answers == [202] * 40 and solo.status_code == 202
    await asyncio.sleep(WINDOW + 0.5)
    assert sorted(map(str, notices)) == sorted(map(str, [integration, other, integration]))


async def test_a_failing_integration_keeps_its_backoff(
    pool: asyncpg.Pool, replicas: list[Replica], notices: list[uuid.UUID]
) -> None:
    integration = await hooked(pool, "github")
    await pool.execute(
        "INSERT INTO integration_sync_state (integration_id, consecutive_failures, next_attempt_at)"
        " VALUES ($1, 3, now() + interval '10 minutes')",
        integration,
    )
    body = b"{}"
    async with httpx.AsyncClient(timeout=10) as client:
        reply = await client.post(
            f"{replicas[0].url}/{integration}", content=body, headers=github(body)
        )
    assert reply.status_code == 202 and "backing off" in reply.text
    await asyncio.sleep(0.3)
    assert notices == []


@pytest.mark.parametrize("source", ["jira", "azure_devops", "linear"])
async def test_each_tracker_scheme_is_checked(
    pool: asyncpg.Pool,
    replicas: list[Replica],
    notices: list[uuid.UUID],
    source: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    integration = await hooked(pool, source)
    signer = {
        "jira": signers.jira_headers,
        "azure_devops": signers.azure_devops_headers,
        "linear": signers.linear_headers,
    }[source]
    body = json.dumps({"webhookTimestamp": int(time.time() * 1000)}).encode()
    async with httpx.AsyncClient(base_url=replicas[0].url, timeout=10) as client:
        good = await client.post(
            f"/{integration}", content=body, headers=signer(body, SECRET, "id-1", "e")
        )
        bad = await client.post(
            f"/{integration}", content=body, headers=signer(body, "wrong-secret", "id-2", "e")
        )
    assert (good.status_code, bad.status_code) == (202, 401)
    assert await heard(notices, 1) == [integration]
    rows = await pool.fetch(
        "SELECT message, metadata FROM activity_logs WHERE event_type = 'webhook_rejected'"
    )
    assert [r["metadata"]["reason"] for r in rows] == ["bad_signature"]
    assert SECRET not in str([dict(r) for r in rows])
    # the raw log records (before the last-line scrubbing): the secret is never handed to a log
    logged = [(r.getMessage(), getattr(r, "fields", {})) for r in caplog.records]
    assert any(m == "webhook_rejected" and f.get("reason") == "bad_signature" for m, f in logged)
    assert SECRET not in repr(logged)


async def test_jira_and_azure_devops_sandboxes_deliver_what_the_listener_accepts(
    pool: asyncpg.Pool, replicas: list[Replica], notices: list[uuid.UUID]
) -> None:
    jira_id = await hooked(pool, "jira")
    ado_id = await hooked(pool, "azure_devops")
    at = datetime.now(UTC)
    with JiraSandbox() as jira, AzureDevOpsSandbox() as ado:
        jira.hooks.subscribe(f"{replicas[0].url}/{jira_id}", SECRET)
        ado.hooks.subscribe(f"{replicas[1].url}/{ado_id}", SECRET)
        issue = jira.add_issue("PAY", "Pay the bill", updated=at)
        jira.update_issue(issue.id, at=at, status="Done")
        item = ado.add_item("A story", changed=at)
        ado.update_item(item, changed=at, state="Active")
        # (in a thread: the listeners answer on this test's event loop)
        assert [s.status for s in await asyncio.to_thread(jira.hooks.wait)] == [202, 202]
        assert [s.status for s in await asyncio.to_thread(ado.hooks.wait)] == [202, 202]
    # each integration asked for a run once at once (the second delivery is in the window)
    assert sorted(map(str, await heard(notices, 2))) == sorted([str(jira_id), str(ado_id)])


async def test_a_client_expecting_100_continue_gets_it_before_sending_the_body(
    pool: asyncpg.Pool, replicas: list[Replica], notices: list[uuid.UUID]
) -> None:
    integration = await hooked(pool, "github")
    body = b'{"action":"edited","pad":"' + b"x" * 2000 + b'"}'
    head = "".join(f"{k}: {v}\r\n" for k, v in github(body).items())
    port = replicas[0].server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /hooks/{integration} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        f"Expect: 100-continue\r\n{head}\r\n".encode()
    )
    assert await asyncio.wait_for(reader.readline(), 5) == b"HTTP/1.1 100 Continue\r\n"
    assert await reader.readline() == b"\r\n"
    writer.write(body)
    assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 202 ")
    writer.close()

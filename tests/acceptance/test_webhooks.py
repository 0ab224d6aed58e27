"""Webhooks as hints: `c9-sync run` with its listener on, the GitHub and Linear sandboxes sending
signed deliveries as the trackers do, real HTTP and real PostgreSQL.

Every integration polls once an hour (3600 s), so after its first run only a delivery can
explain a second one. The webhook secret is planted and searched for in every output."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from connectors.sandbox import webhooks as signers
from connectors.sandbox.github import GitHubSandbox
from connectors.sandbox.linear import LinearSandbox
from tests.acceptance.cli import cli_env, run_cli, start_cli
from tests.acceptance.test_daemon import wait_for
from tests.helpers import make_integration, make_team

SECRET = "whsec-PLANTED-c9hooks-5e1d7a"
T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)
MAX_BYTES = 4096
DEBOUNCE_S = 10.0  # long enough for 500 deliveries on a busy 2-core machine
PAYLOAD_MARKER = "PAYLOAD-MARKER-91c2"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Daemon:
    hooks: str  # http://127.0.0.1:PORT/hooks
    metrics: str
    proc: subprocess.Popen[str]
    outputs: list[str] = field(default_factory=list)

    def stop(self) -> str:
        """Stop it (once); its stderr (the JSON log)."""
        if not self.outputs:
            self.proc.send_signal(signal.SIGTERM)
            out, err = self.proc.communicate(timeout=30)
            self.outputs += [err, out]
        return self.outputs[0]

    async def metric(self, name: str, **labels: str) -> float:
        """The sum of a counter's samples whose labels include `labels`."""
        async with httpx.AsyncClient() as client:
            text = (await client.get(self.metrics, timeout=5)).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{"):
                continue
            have = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(have.get(k) == v for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture
async def daemon(db_url: str) -> AsyncIterator[Daemon]:
    hook_port, http_port = free_port(), free_port()
    env = cli_env(
        db_url,
        C9_SYNC_WEBHOOK_PORT=str(hook_port),
        C9_SYNC_HTTP_PORT=str(http_port),
        C9_SYNC_RECONCILE_SECONDS="30",
        C9_SYNC_WEBHOOK_MAX_BYTES=str(MAX_BYTES),
        C9_SYNC_WEBHOOK_DEBOUNCE_SECONDS=str(DEBOUNCE_S),
        HOOK_SECRET=SECRET,
    )
    proc = start_cli("run", env=env)
    d = Daemon(f"http://127.0.0.1:{hook_port}/hooks", f"http://127.0.0.1:{http_port}/metrics", proc)
    try:
        async with httpx.AsyncClient() as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    await client.get(f"{d.hooks}/", timeout=2)  # 405, counted nowhere
                    break
                except httpx.TransportError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        d.stop()
                        raise AssertionError(f"the listener never answered: {d.outputs}") from None
                    await asyncio.sleep(0.1)
        yield d
    finally:
        try:
            d.stop()
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert SECRET not in "\n".join(d.outputs), "the webhook secret leaked into the daemon's output"


def hooked(config: dict[str, object]) -> dict[str, object]:
    return {**config, "webhook_secret_env": "HOOK_SECRET"}


def github_config(sandbox: GitHubSandbox) -> dict[str, object]:
    return hooked({"token": "sandbox-token", "base_url": sandbox.url, "repos": ["acme/web"]})


@pytest.fixture
def github() -> Iterator[GitHubSandbox]:
    with GitHubSandbox(token="sandbox-token") as sandbox:
        for n in range(3):
            sandbox.add_issue("acme/web", f"Issue {n}", updated_at=T0 + timedelta(minutes=n))
        yield sandbox  # type: ignore[misc]


@pytest.fixture
def linear() -> Iterator[LinearSandbox]:
    with LinearSandbox(token="lin_api_sandbox") as sandbox:
        for n in range(3):
            sandbox.add_issue(title=f"Linear {n}", updated_at=T0 + timedelta(minutes=n))
        yield sandbox  # type: ignore[misc]


async def synced_once(pool: asyncpg.Pool, integration_id: uuid.UUID) -> datetime:
    """Wait for the first (polling) run to end; its start time."""
    await wait_for(
        pool,
        "SELECT last_success_at IS NOT NULL FROM integration_sync_state WHERE integration_id = $1",
        lambda done: done is True,
        30,
        integration_id,
    )
    return await last_started(pool, integration_id)


async def last_started(pool: asyncpg.Pool, integration_id: uuid.UUID) -> datetime:
    return await pool.fetchval(  # type: ignore[no-any-return]
        "SELECT last_started_at FROM integration_sync_state WHERE integration_id = $1",
        integration_id,
    )


def github_delivery(body: bytes, secret: str = SECRET, ident: str | None = None) -> dict[str, str]:
    headers = signers.github_headers(body, secret, ident or str(uuid.uuid4()), "issues")
    return {"Content-Type": "application/json", **headers}


def linear_delivery(at: float, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "action": "update",
            "type": "Issue",
            "webhookTimestamp": int(at * 1000),
            "x": PAYLOAD_MARKER,
        }
    ).encode()
    headers = signers.linear_headers(body, secret, str(uuid.uuid4()), "Issue")
    return body, {"Content-Type": "application/json", **headers}


async def test_a_signed_github_delivery_lands_the_change_within_two_seconds(
    daemon: Daemon, pool: asyncpg.Pool, github: GitHubSandbox
) -> None:
    team = await make_team(pool, "Alpha")
    integration = await make_integration(pool, team, "github", github_config(github), interval=3600)
    await synced_once(pool, integration)
    github.hooks.subscribe(f"{daemon.hooks}/{integration}", SECRET)
    issue = github.issues["acme/web"][1]
    changed = time.monotonic()
    github.update(issue.id, at=datetime.now(UTC), title="Renamed upstream", state="closed")
    try:
        await wait_for(
            pool,
            "SELECT status FROM work_items WHERE title = 'Renamed upstream'",
            lambda status: status == "completed",
            2.0,
        )
    except AssertionError:
        raise AssertionError(f"{github.hooks.wait()} {daemon.stop()[-4000:]}") from None
    assert time.monotonic() - changed < 2.0
    assert [s.status for s in github.hooks.wait()] == [202]
    assert (
        await daemon.metric("c9_sync_webhook_deliveries_total", outcome="accepted", source="github")
        == 1
    )


async def test_a_signed_linear_delivery_lands_the_change_within_two_seconds(
    daemon: Daemon, pool: asyncpg.Pool, linear: LinearSandbox
) -> None:
    team = await make_team(pool, "Alpha")
    config = hooked(linear.demo_config())
    integration = await make_integration(pool, team, "linear", config, interval=3600)
    await synced_once(pool, integration)
    linear.hooks.subscribe(f"{daemon.hooks}/{integration}", SECRET)
    changed = time.monotonic()
    linear.update_issue(
        linear.issue_ids()[0], at=datetime.now(UTC), title="Moved in Linear", state="Done"
    )
    await wait_for(
        pool,
        "SELECT status FROM work_items WHERE title = 'Moved in Linear'",
        lambda status: status == "completed",
        2.0,
    )
    assert time.monotonic() - changed < 2.0
    assert [s.status for s in linear.hooks.wait()] == [202]


async def test_each_bad_delivery_gets_its_answer_and_no_run(
    daemon: Daemon, pool: asyncpg.Pool, github: GitHubSandbox, linear: LinearSandbox
) -> None:
    team = await make_team(pool, "Alpha")
    gh = await make_integration(pool, team, "github", github_config(github), interval=3600)
    lin = await make_integration(pool, team, "linear", hooked(linear.demo_config()), interval=3600)
    plain = await make_integration(
        pool,
        team,
        "github",
        {**github_config(github), "webhook_secret_env": None},
        interval=3600,
        name="plain",
    )
    paused = await make_integration(
        pool, team, "github", github_config(github), interval=3600, name="paused", active=False
    )
    unset = await make_integration(
        pool, team, "github", {**github_config(github), "webhook_secret_env": "NOT_SET_ANYWHERE"},
        interval=3600, name="unset",
    )  # fmt: skip
    started = {i: await synced_once(pool, i) for i in (gh, lin, plain, unset)}
    body = json.dumps({"action": "edited", "x": PAYLOAD_MARKER}).encode()
    answers: list[str] = []
    async with httpx.AsyncClient(base_url=daemon.hooks, timeout=10) as client:

        async def post(path: str, content: bytes, headers: dict[str, str]) -> int:
            reply = await client.post(path, content=content, headers=headers)
            answers.append(reply.text)
            return reply.status_code

        # a wrong signature, twenty times: 401 each, one activity row
        for _ in range(20):
            assert await post(f"/{gh}", body, github_delivery(body, secret="not-the-secret")) == 401
        # a body changed after signing
        assert await post(f"/{gh}", body + b" ", github_delivery(body)) == 401
        # Linear: signed, but its timestamp two minutes old
        stale_body, stale_headers = linear_delivery(time.time() - 120)
        assert await post(f"/{lin}", stale_body, stale_headers) == 400
        # unknown, disabled, webhook-less integrations; not a UUID
        assert await post(f"/{uuid.uuid4()}", body, github_delivery(body)) == 404
        assert await post(f"/{paused}", body, github_delivery(body)) == 404
        assert await post(f"/{plain}", body, github_delivery(body)) == 404
        assert await post("/not-a-uuid", body, github_delivery(body)) == 404
        # the secret's variable is not set in the worker: 503, and the log says which
        assert await post(f"/{unset}", body, github_delivery(body)) == 503
        # too large: refused before it is read
        big = b"x" * (MAX_BYTES + 1)
        assert await post(f"/{gh}", big, github_delivery(big)) == 413
        # not a POST
        got = await client.get(f"/{gh}")
        assert got.status_code == 405 and got.headers["allow"] == "POST"
        await asyncio.sleep(1.5)  # a run asked for by any of them would have started by now
        for i in (gh, lin, plain, unset):
            assert await last_started(pool, i) == started[i], "a rejected delivery started a run"

        # a genuine delivery runs once; the same delivery again is answered 200 and runs nothing
        replayed = github_delivery(body)
        assert await post(f"/{gh}", body, replayed) == 202
        await wait_for(
            pool,
            "SELECT last_started_at > $2 AND last_success_at >= last_started_at"
            " FROM integration_sync_state WHERE integration_id = $1",
            lambda done: done is True,
            5,
            gh,
            started[gh],
        )
        after = await last_started(pool, gh)
        assert await post(f"/{gh}", body, replayed) == 200
        await asyncio.sleep(1.5)
        assert await last_started(pool, gh) == after, "a replayed delivery started a run"

    rows = await pool.fetch(
        "SELECT message, metadata FROM activity_logs WHERE event_type = 'webhook_rejected'"
        " ORDER BY created_at"
    )
    reasons = sorted((r["metadata"]["integration_id"], r["metadata"]["reason"]) for r in rows)
    assert reasons == sorted([(str(gh), "bad_signature"), (str(lin), "stale")])
    stored = json.dumps([dict(r) for r in rows], default=str)
    assert PAYLOAD_MARKER not in stored and SECRET not in stored
    assert all(SECRET not in a and PAYLOAD_MARKER not in a for a in answers)
    rejected = {
        reason: await daemon.metric(
            "c9_sync_webhook_deliveries_total", outcome="rejected", reason=reason
        )
        for reason in (
            "bad_signature",
            "stale",
            "unknown_integration",
            "not_enabled",
            "unavailable",
            "replayed",
        )
    }
    assert rejected == {
        "bad_signature": 21, "stale": 1, "unknown_integration": 3, "not_enabled": 1,
        "unavailable": 1, "replayed": 1,
    }  # fmt: skip
    log = daemon.stop()
    assert "webhook_secret_env: environment variable 'NOT_SET_ANYWHERE' is not set" in log


async def test_a_burst_of_500_deliveries_is_at_most_two_runs(
    daemon: Daemon, pool: asyncpg.Pool, github: GitHubSandbox
) -> None:
    team = await make_team(pool, "Alpha")
    integration = await make_integration(pool, team, "github", github_config(github), interval=3600)
    await synced_once(pool, integration)
    runs_before = await daemon.metric("c9_sync_runs_total", source="github", outcome="succeeded")
    body = b'{"action":"edited"}'
    limit = asyncio.Semaphore(50)
    async with httpx.AsyncClient(
        base_url=daemon.hooks, timeout=30, limits=httpx.Limits(max_connections=50)
    ) as client:

        async def deliver() -> int:
            async with limit:
                reply = await client.post(
                    f"/{integration}", content=body, headers=github_delivery(body)
                )
                return reply.status_code

        started = time.monotonic()
        statuses = await asyncio.gather(*(deliver() for _ in range(500)))
        took = time.monotonic() - started
    assert statuses == [202] * 500
    assert took < DEBOUNCE_S, f"500 deliveries took {took:.1f}s, more than the debounce window"
    await asyncio.sleep(DEBOUNCE_S - took + 1)  # the trailing request at the window's end
    await wait_for(
        pool,
        "SELECT last_success_at >= last_started_at FROM integration_sync_state"
        " WHERE integration_id = $1",
        lambda done: done is True,
        10,
        integration,
    )
    runs = (
        await daemon.metric("c9_sync_runs_total", source="github", outcome="succeeded")
        - runs_before
    )
    assert 1 <= runs <= 2, f"{runs} runs for a burst of 500"
    count = daemon.metric
    assert await count("c9_sync_webhook_deliveries_total", outcome="accepted") == 1
    assert (
        await count("c9_sync_webhook_deliveries_total", outcome="coalesced", reason="debounced")
        == 499
    )


async def test_webhook_command_prints_the_url_and_steps_never_the_secret(
    db_url: str, pool: asyncpg.Pool, github: GitHubSandbox
) -> None:
    team = await make_team(pool, "Alpha")
    config = {**github_config(github), "webhook_secret_env": None, "webhook_secret": SECRET}
    integration = await make_integration(pool, team, "github", config)
    env = cli_env(db_url, C9_SYNC_WEBHOOK_PORT="8099")
    done = run_cli("integrations", "webhook", "Alpha/github", env=env)
    assert done.returncode == 0, done.stderr
    assert f"http://127.0.0.1:8099/hooks/{integration}" in done.stdout
    assert "Settings > Webhooks" in done.stdout and "application/json" in done.stdout
    public = run_cli(
        "integrations",
        "webhook",
        str(integration),
        "--base-url",
        "https://c9.example.com/",
        env=cli_env(db_url),
    )
    assert f"https://c9.example.com/hooks/{integration}" in public.stdout
    assert "listener is off" in public.stdout
    bare = await make_integration(
        pool, team, "github", {**config, "webhook_secret": None}, name="bare"
    )
    unset = run_cli("integrations", "webhook", str(bare), env=env)
    assert unset.returncode == 0 and "No webhook secret yet" in unset.stdout
    both = {**config, "webhook_secret_env": "HOOK_SECRET"}
    broken = await make_integration(pool, team, "github", both, name="broken")
    refused = run_cli("integrations", "webhook", str(broken), env=env)
    assert refused.returncode == 2
    assert (
        "give only one of webhook_secret, webhook_secret_env, webhook_secret_file" in refused.stderr
    )
    for out in (done, public, unset, refused):
        assert SECRET not in out.stdout + out.stderr

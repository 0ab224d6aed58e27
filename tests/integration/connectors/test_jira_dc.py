"""The Jira connector against Jira Data Center / Server (the sandbox's DC mode), with the real
python-jira client: detection, the ways to sign in, the Server search (startAt, the maxResults
clamp, the result window), TLS towards a corporate CA, and the failures an admin must be able to
read. The shared contract and the deployment-neutral Jira tests run in DC mode too
(test_jira.py, `any_harness`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import requests
from pydantic import SecretStr

from connectors.base import ConnectorContext, ConnectorError, FatalError, Page
from connectors.jira import CREDENTIAL_HINTS, JiraConfig, JiraConnector
from connectors.sandbox.base import Request, Response
from connectors.sandbox.jira import JiraDataCenterSandbox, JiraSandbox, server_search_body_problem
from connectors.sandbox.tls import TestCA
from tests.acceptance.cli import cli_env, run_cli
from tests.helpers import make_integration, make_team
from tests.integration.connectors.contract import PLANTED_TOKEN, T0, collect, items_of
from tests.integration.connectors.test_jira import PAGE_SIZE, JiraHarness, checked, searches
from worker import sync
from worker.settings import Settings

MINUTE = dt.timedelta(minutes=1)
CHECKOUT = str(Path(__file__).resolve().parents[3])  # the CLI subprocess runs this code


@pytest.fixture
def dc(tmp_path: Path) -> Iterator[JiraHarness]:
    """Data Center with a personal access token, every request checked against jira_dc.json."""
    server = JiraDataCenterSandbox(token=PLANTED_TOKEN, password="the-password")
    with checked(server) as started:
        yield JiraHarness(started, tmp_path)


@pytest.fixture
def off_spec_dc(tmp_path: Path) -> Iterator[JiraHarness]:
    """Data Center for tests that make it answer what Jira's API never does (HTML, refusals)."""
    with JiraDataCenterSandbox(token=PLANTED_TOKEN, password="the-password") as server:
        server.add_project("ABC", "Alpha")
        yield JiraHarness(server, tmp_path)


async def run(connector: JiraConnector, since: dict[str, dt.datetime] | None = None) -> list[Page]:
    try:
        return await collect(connector, since)
    finally:
        await connector.aclose()


async def failure(connector: JiraConnector) -> ConnectorError:
    """What check() raises (a ConnectorError it must raise)."""
    try:
        with pytest.raises(ConnectorError) as info:
            await connector.check()
    finally:
        await connector.aclose()
    return info.value


def starts(sandbox: JiraSandbox) -> list[tuple[int, int]]:
    """(startAt, maxResults) of each GET search."""
    return [
        (int(r.query["startAt"][0]), int(r.query["maxResults"][0]))
        for r in searches(sandbox, "GET")
    ]


# ---------------------------------------------------------------------------------------------
# Detection and signing in
# ---------------------------------------------------------------------------------------------
async def test_a_pat_is_sent_as_bearer_and_the_deployment_read_from_server_info(
    dc: JiraHarness,
) -> None:
    ids = dc.seed(3, start=T0, step=MINUTE)
    got = items_of(await run(dc.connector()))
    assert [i.external_id for i in got] == ids
    sent = {r.headers.get("authorization") for r in dc.sandbox.requests}
    assert sent == {f"Bearer {PLANTED_TOKEN}"}
    assert all(r.path.startswith("/rest/api/2/") for r in dc.sandbox.requests)
    assert not dc.sandbox.requests_to("/search/jql")


async def test_username_and_password_sign_in_with_basic_auth(dc: JiraHarness) -> None:
    dc.seed(2, start=T0, step=MINUTE)
    basic = JiraHarness(dc.sandbox, dc.tmp_path, basic=True)
    got = items_of(await run(basic.connector(token="the-password")))
    assert len(got) == 2
    assert {r.headers["authorization"].split()[0] for r in dc.sandbox.requests} == {"Basic"}


async def test_a_pat_sent_as_a_basic_password_is_refused_with_a_clear_message(
    off_spec_dc: JiraHarness,
) -> None:
    """Jira DC takes a personal access token only as Bearer: as a basic password it is a 401."""
    basic = JiraHarness(off_spec_dc.sandbox, off_spec_dc.tmp_path, basic=True)
    error = await failure(basic.connector(token=PLANTED_TOKEN))
    assert isinstance(error, FatalError)
    assert str(error) == (
        "Jira rejected the credentials (401): check username and password; a personal access "
        "token is given without username (it is sent as Bearer, and Jira refuses it as a "
        "password)"
    )
    assert PLANTED_TOKEN not in repr(error.args)


async def test_a_wrong_pat_is_fatal_and_says_what_to_check(off_spec_dc: JiraHarness) -> None:
    error = await failure(off_spec_dc.connector(token="revoked-pat-0123"))
    assert isinstance(error, FatalError)
    assert str(error) == f"Jira rejected the credentials (401): {CREDENTIAL_HINTS['pat']}"
    assert "revoked-pat-0123" not in repr(error.args)


async def test_cloud_sign_in_against_data_center_is_refused(off_spec_dc: JiraHarness) -> None:
    """email + API token is Cloud's. With the default v3 the DC server has no such API (404,
    and the message says why); with v2 DC refuses the credentials (401), and the anonymous
    serverInfo says why."""
    dc = off_spec_dc
    error = await failure(dc.connector(email="bot@example.com"))
    assert isinstance(error, FatalError)
    assert "404" in str(error) and "Jira Data Center has no REST API v3" in str(error)
    error = await failure(dc.connector(email="bot@example.com", rest_api_version="2"))
    assert isinstance(error, FatalError)
    assert "is Jira Data Center/Server (deploymentType='Server')" in str(error)
    assert "personal access token" in str(error)


@pytest.mark.parametrize("kind", ["DataCenter", "Server"])
async def test_anything_but_cloud_is_data_center(dc: JiraHarness, kind: str) -> None:
    dc.sandbox.deployment_type = kind
    dc.seed(2, start=T0, step=MINUTE)
    assert len(items_of(await run(dc.connector()))) == 2


@pytest.mark.parametrize("extra", [{}, {"username": "sync-bot"}])
async def test_data_center_sign_in_against_cloud_is_refused(
    tmp_path: Path, extra: dict[str, Any]
) -> None:
    with checked(JiraSandbox(token=PLANTED_TOKEN)) as cloud:
        config = JiraConfig(url=cloud.url, projects=["ABC"], **extra)
        ctx = ConnectorContext("test", SecretStr(PLANTED_TOKEN), tmp_path, max_retries=1)
        error = await failure(JiraConnector(config, ctx))
    assert isinstance(error, FatalError)
    assert "is Jira Cloud: give email with an API token" in str(error)


# ---------------------------------------------------------------------------------------------
# The Server search: startAt inside a minute, keyset across minutes, clamp, window
# ---------------------------------------------------------------------------------------------
async def test_paging_restarts_at_the_newest_minute_with_start_at_zero(dc: JiraHarness) -> None:
    ids = dc.seed(PAGE_SIZE * 3 + 1, start=T0, step=MINUTE)
    pages = await run(dc.connector())
    assert [len(p.items) for p in pages] == [5, 4, 4, 3]
    assert sorted(i.external_id for i in items_of(pages)) == sorted(ids)
    sent = searches(dc.sandbox, "GET")
    literals = [re.findall(r'updated >= "([^"]+)"', s.query["jql"][0]) for s in sent]
    assert literals == [[], ["2025-05-01 08:04"], ["2025-05-01 08:08"], ["2025-05-01 08:12"]]
    assert starts(dc.sandbox) == [(0, PAGE_SIZE)] * 4


async def test_a_minute_group_larger_than_a_page_is_paged_by_start_at(dc: JiraHarness) -> None:
    """JQL cannot name a time finer than a minute: within one, startAt moves; then the minute
    is read again in one larger page (a snapshot) before the keyset moves on."""
    group = dc.seed(PAGE_SIZE * 2 + 2, start=T0, step=dt.timedelta(seconds=2))
    later = dc.seed(2, start=T0 + 3 * MINUTE, step=MINUTE)
    pages = await run(dc.connector())
    seen = [i.external_id for i in items_of(pages)]
    assert sorted(seen) == sorted(group + later) and len(seen) == len(set(seen))
    sent = starts(dc.sandbox)
    assert {(5, 5), (10, 5), (0, 100)} <= set(sent)
    assert sent.index((0, 100)) > sent.index((10, 5))
    yielded: set[str] = set()
    for page in pages:  # the checkpoint leaves the minute only once the group is read whole
        yielded |= {i.external_id for i in page.items}
        mark = page.checkpoint.get("ABC")
        if mark is not None and mark >= T0 + MINUTE:
            assert set(group) <= yielded
    assert pages[-1].checkpoint["ABC"] == T0 + 4 * MINUTE


async def test_deep_paging_past_the_result_window_by_keyset(dc: JiraHarness) -> None:
    """More issues than the result window: keyset paging restarts at every new minute, so
    startAt never nears the window, and the sweep's listing is complete too."""
    sandbox = dc.sandbox
    assert isinstance(sandbox, JiraDataCenterSandbox)
    sandbox.result_window = 20
    ids = dc.seed(57, start=T0, step=MINUTE)
    ids += dc.seed(8, start=T0 + dt.timedelta(hours=2), step=dt.timedelta(seconds=3))  # a group
    connector = dc.connector(max_result_window=20)
    try:
        got = items_of(await collect(connector))
        listed = [i async for part in connector.all_ids() for i in part]
    finally:
        await connector.aclose()
    assert sorted(i.external_id for i in got) == sorted(ids)
    assert sorted(listed) == sorted(ids) and len(listed) == len(set(listed))
    assert len(ids) > 3 * sandbox.result_window
    assert all(start + size <= 20 for start, size in starts(sandbox))
    # The sandbox does refuse what the connector never asks: offset paging past the window.
    deep = await asyncio.to_thread(
        requests.get,
        f"{sandbox.url}/rest/api/2/search",
        params={"jql": "project = ABC ORDER BY key", "startAt": 20, "maxResults": 5},
        headers={"Authorization": f"Bearer {PLANTED_TOKEN}"},
        timeout=5,
    )
    assert deep.status_code == 500 and "Search limit exceeded" in deep.text


async def test_a_minute_with_more_issues_than_the_window_fails_saying_what_to_change(
    dc: JiraHarness,
) -> None:
    sandbox = dc.sandbox
    assert isinstance(sandbox, JiraDataCenterSandbox)
    sandbox.result_window = 10
    dc.seed(12, start=T0, step=dt.timedelta(seconds=4))
    pages: list[Page] = []
    connector = dc.connector(max_result_window=10)
    try:
        with pytest.raises(FatalError, match=r"result window .* max_result_window 10") as info:
            async for page in connector.changes({}):
                pages.append(page)
    finally:
        await connector.aclose()
    assert "jira.search.platform.max.result.window" in str(info.value)
    assert all(start + size <= 10 for start, size in starts(sandbox))
    marks = [p.checkpoint["ABC"] for p in pages if p.checkpoint]
    assert all(m < T0 + MINUTE for m in marks), "no checkpoint past an unread minute"


async def test_the_servers_max_results_clamp_is_followed(dc: JiraHarness) -> None:
    """DC answers at most jira.search.views.default.max issues whatever maxResults asks, and
    echoes the cap: the next startAt counts what came."""
    sandbox = dc.sandbox
    assert isinstance(sandbox, JiraDataCenterSandbox)
    sandbox.max_results_cap = 3
    group = dc.seed(8, start=T0, step=dt.timedelta(seconds=5))
    seen = [i.external_id for i in items_of(await run(dc.connector()))]
    assert sorted(set(seen)) == sorted(group)
    # The first search (no cursor) ends in the group's minute, which is then walked: 3 by 3.
    assert [s for s, _ in starts(sandbox)][1:4] == [0, 3, 6]


async def test_long_jql_goes_in_a_server_search_request_body(dc: JiraHarness) -> None:
    dc.seed(7, start=T0, step=MINUTE)
    long_jql = "project = ABC AND summary !~ " + '"' + "x" * 1600 + '"'
    got = items_of(await run(dc.connector(jql=long_jql)))
    assert len(got) == 7
    posts = searches(dc.sandbox, "POST")
    assert len(posts) == 2 and not searches(dc.sandbox, "GET")
    for post in posts:
        body = post.json()
        assert set(body) == {"jql", "startAt", "maxResults", "fields", "validateQuery", "expand"}
        assert body["expand"] == ["changelog"]  # a list in the Server SearchRequest
        assert server_search_body_problem(body) is None
    assert "updated >=" in posts[1].json()["jql"]


def test_the_sandbox_answers_like_data_center(off_spec_dc: JiraHarness) -> None:
    """No REST v3, no enhanced search; a PAT only as Bearer; the SDK's null `expand` in a POST
    body is not a Server SearchRequest."""
    sandbox = off_spec_dc.sandbox
    bearer = {"Authorization": f"Bearer {PLANTED_TOKEN}"}
    for path in ("/rest/api/3/serverInfo", "/rest/api/2/search/jql", "/rest/api/3/search/jql"):
        answer = requests.get(f"{sandbox.url}{path}", headers=bearer, timeout=5)
        assert answer.status_code == 404 and "null for uri" in answer.json()["message"]
    info = requests.get(f"{sandbox.url}/rest/api/2/serverInfo", headers=bearer, timeout=5)
    assert info.json()["deploymentType"] == "Server" and info.json()["versionNumbers"][0] == 10
    as_basic = requests.get(
        f"{sandbox.url}/rest/api/2/myself", auth=("sync-bot", PLANTED_TOKEN), timeout=5
    )
    assert as_basic.status_code == 401
    assert as_basic.headers["X-Seraph-LoginReason"] == "AUTHENTICATED_FAILED"
    refused = requests.post(
        f"{sandbox.url}/rest/api/2/search",
        json={"jql": "project = ABC", "expand": None},
        headers=bearer,
        timeout=5,
    )
    assert refused.status_code == 400


async def test_a_429_of_the_data_center_rate_limiter_is_waited_out(dc: JiraHarness) -> None:
    sandbox = dc.sandbox
    dc.seed(2, start=T0, step=MINUTE)
    sandbox.fail_next("429", retry_after=1, path_contains="/search")
    limited = await asyncio.to_thread(
        requests.get,
        f"{sandbox.url}/rest/api/2/search",
        params={"jql": "project = ABC"},
        headers={"Authorization": f"Bearer {PLANTED_TOKEN}"},
        timeout=5,
    )
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert {"X-RateLimit-Limit", "X-RateLimit-Interval-Seconds", "X-RateLimit-FillRate"} <= set(
        limited.headers
    )
    sandbox.fail_next("429", retry_after=1, path_contains="/search")
    started = time.monotonic()
    assert len(items_of(await run(dc.connector()))) == 2
    assert time.monotonic() - started >= 0.9, "retry-after must be honoured"


# ---------------------------------------------------------------------------------------------
# What an admin reads when it goes wrong
# ---------------------------------------------------------------------------------------------
def _login_page(sandbox: JiraSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy / SSO in front of Jira: every REST call is redirected to a login page (HTML)."""
    handle = sandbox.handle

    def login(request: Request) -> Response:
        if request.path == "/login.jsp":
            page = b"<!DOCTYPE html><html><head><title>Log in - Jira</title></head></html>"
            return Response(200, page, {"Content-Type": "text/html;charset=UTF-8"})
        if request.path.startswith("/rest/"):
            return Response(302, b"", {"Location": f"{sandbox.url}/login.jsp"})
        return handle(request)

    monkeypatch.setattr(sandbox, "handle", login)


async def test_a_url_that_answers_html_is_a_clear_fatal_error(
    off_spec_dc: JiraHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    _login_page(off_spec_dc.sandbox, monkeypatch)
    error = await failure(off_spec_dc.connector())
    assert isinstance(error, FatalError)
    assert str(error).startswith("url answered an HTML page instead of Jira's REST API")
    assert "\n" not in str(error) and PLANTED_TOKEN not in repr(error.args)


async def test_a_token_without_browse_permission_fails_check_clearly_and_loses_the_scope(
    dc: JiraHarness,
) -> None:
    """Jira answers a project the user cannot browse as one that does not exist (400)."""
    dc.sandbox.add_project("OPS", "Operations")
    dc.sandbox.unbrowsable.add("OPS")
    dc.sandbox.add_issue("OPS", "secret", updated=T0)
    ids = dc.seed(2, start=T0, step=MINUTE)
    connector = dc.connector(projects=["OPS", "ABC"])
    try:
        with pytest.raises(FatalError) as info:
            await connector.check()
        pages = await collect(connector)
        parts = [(p.scope, list(p.ids), p.lost) async for p in connector.all_ids()]
    finally:
        await connector.aclose()
    message = str(info.value)
    assert "'OPS' does not exist for the field 'project'" in message
    assert "no Browse Projects permission" in message
    assert [list(p.lost) for p in pages if p.lost] == [["OPS"]]
    assert sorted(i.external_id for i in items_of(pages)) == ids
    assert parts[0][0] == "OPS" and parts[0][1] == [] and "Browse Projects" in str(parts[0][2])
    assert parts[1:] == [("ABC", ids, None)]


async def test_the_planted_pat_is_never_logged_nor_raised(
    off_spec_dc: JiraHarness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    off_spec_dc.seed(3, start=T0, step=MINUTE)
    raised: list[str] = []
    connector = off_spec_dc.connector()
    try:
        items_of(await collect(connector))
        off_spec_dc.sandbox.fail_next("401", count=20)
        with pytest.raises(FatalError) as info:
            await collect(connector)
        raised.append(repr(info.value.args))
    finally:
        await connector.aclose()
    basic = JiraHarness(off_spec_dc.sandbox, off_spec_dc.tmp_path, basic=True)
    raised.append(repr((await failure(basic.connector())).args))
    _login_page(off_spec_dc.sandbox, monkeypatch)
    raised.append(repr((await failure(off_spec_dc.connector())).args))
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert caplog.records, "the run logs something (urllib3, the connector)"
    assert PLANTED_TOKEN not in logged
    assert not [r for r in raised if PLANTED_TOKEN in r]


# ---------------------------------------------------------------------------------------------
# TLS towards a corporate CA
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corporate_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A CA of our own and a server certificate for 127.0.0.1 it signed: (CA bundle, server
    certificate, server key)."""
    ca = TestCA.create(tmp_path_factory.mktemp("tls"))
    return ca.ca_file, ca.cert_file, ca.key_file


@pytest.fixture
def https_dc(corporate_ca: tuple[Path, Path, Path], tmp_path: Path) -> Iterator[JiraHarness]:
    """Data Center over HTTPS, its certificate signed by the corporate CA."""
    _, cert, key = corporate_ca
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = JiraDataCenterSandbox(token=PLANTED_TOKEN, tls=context)
    with checked(server) as started:
        assert started.url.startswith("https://")
        yield JiraHarness(started, tmp_path)


async def test_https_with_the_corporate_ca_bundle_is_verified(
    https_dc: JiraHarness, corporate_ca: tuple[Path, Path, Path]
) -> None:
    ids = https_dc.seed(3, start=T0, step=MINUTE)
    got = items_of(await run(https_dc.connector(ca_bundle=str(corporate_ca[0]))))
    assert [i.external_id for i in got] == ids


async def test_https_without_the_ca_bundle_is_refused_naming_ca_bundle(
    https_dc: JiraHarness,
) -> None:
    https_dc.seed(1, start=T0, step=MINUTE)
    error = await failure(https_dc.connector())
    assert isinstance(error, FatalError)
    assert "certificate verify failed" in str(error) and "set ca_bundle" in str(error)
    assert not https_dc.sandbox.requests, "nothing was sent over an unverified connection"


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
async def test_https_with_verify_tls_false_is_accepted(https_dc: JiraHarness) -> None:
    # the worker says so at every run, for every tracker (tests/integration/test_credential_health)
    https_dc.seed(2, start=T0, step=MINUTE)
    connector = https_dc.connector(verify_tls=False)
    try:
        assert len(items_of(await collect(connector))) == 2
        assert len(items_of(await collect(connector))) == 2
    finally:
        await connector.aclose()


# ---------------------------------------------------------------------------------------------
# Through the sync run (real PostgreSQL, the connector the registry loads)
# ---------------------------------------------------------------------------------------------
async def test_a_dc_url_turned_login_page_fails_the_run_clearly_and_keeps_what_was_synced(
    pool: asyncpg.Pool,
    off_spec_dc: JiraHarness,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A run against DC with a PAT lands the issues; when the URL starts answering a login page
    (an SSO proxy put in front of Jira), the next run is a clear `sync_failed` row naming url,
    never a crash, and nothing already synced is touched. The PAT is in no row and no log."""
    caplog.set_level(logging.DEBUG)
    ids = off_spec_dc.seed(3, start=T0, step=MINUTE)
    team = await make_team(pool, "Ops")
    config = {"url": off_spec_dc.sandbox.url, "token": PLANTED_TOKEN, "projects": ["ABC"]}
    integration = await make_integration(pool, team, "jira", config, interval=60)
    settings = Settings(home=tmp_path / "home", sweep_every_runs=0)
    options = sync.RunOptions(force=True)
    first = await sync.run_integration(pool, integration, settings, environ={}, options=options)
    assert first.outcome == "succeeded" and first.created == 3
    before = await pool.fetch("SELECT * FROM work_items ORDER BY external_id")
    assert sorted(r["external_id"] for r in before) == sorted(ids)

    _login_page(off_spec_dc.sandbox, monkeypatch)
    failed = await sync.run_integration(pool, integration, settings, environ={}, options=options)
    assert failed.outcome == "failed"
    [row] = await pool.fetch("SELECT * FROM activity_logs WHERE event_type = 'sync_failed'")
    assert row["metadata"]["error_class"] == "FatalError"
    assert "url answered an HTML page instead of Jira's REST API" in row["message"]
    assert [dict(r) for r in await pool.fetch("SELECT * FROM work_items ORDER BY external_id")] == [
        dict(r) for r in before
    ]
    rows = await pool.fetch("SELECT message, metadata::text AS metadata FROM activity_logs")
    assert rows and not [r for r in rows if PLANTED_TOKEN in str(dict(r))]
    assert PLANTED_TOKEN not in caplog.text


async def test_integrations_test_says_the_token_cannot_browse_a_project(
    db_url: str, pool: asyncpg.Pool, off_spec_dc: JiraHarness
) -> None:
    """`c9-sync integrations test` (check()) on DC, the CLI as a subprocess: a PAT whose user
    cannot browse one of the projects fails in one line naming the project and the permission;
    once the user may browse it, ok. The PAT is never printed."""
    sandbox = off_spec_dc.sandbox
    sandbox.add_project("OPS", "Operations")
    sandbox.unbrowsable.add("OPS")
    team = await make_team(pool, "Ops")
    config = {"url": sandbox.url, "token_env": "C9_TEST_JIRA_PAT", "projects": ["ABC", "OPS"]}
    await make_integration(pool, team, "jira", config)
    env = cli_env(
        db_url,
        C9_TEST_JIRA_PAT=PLANTED_TOKEN,
        PYTHONPATH=CHECKOUT,
    )
    refused = await asyncio.to_thread(run_cli, "integrations", "test", "Ops/jira", env=env)
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    said = [line for line in refused.stderr.splitlines() if line and not line.startswith("{")]
    assert "Ops/jira: check FAILED" in said[-1]
    assert "'OPS' does not exist for the field 'project'" in said[-1]
    assert "no Browse Projects permission" in said[-1]
    sandbox.unbrowsable.clear()
    ok = await asyncio.to_thread(run_cli, "integrations", "test", "Ops/jira", env=env)
    assert ok.returncode == 0, (ok.stdout, ok.stderr)
    assert "Ops/jira: ok" in ok.stdout
    shown = refused.stdout + refused.stderr + ok.stdout + ok.stderr
    assert PLANTED_TOKEN not in shown

"""connectors.http, the failure policy all four connectors share: Retry-After, time parsing, the
blocking-SDK guard and structured log fields."""

from __future__ import annotations

import ast
import io
import json
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import urllib3
from pydantic import SecretStr

from connectors import github, jira, linear
from connectors.base import ConnectorContext, ConnectorError, FatalError, RetriableError
from connectors.http import (
    call_sdk,
    header,
    json_body,
    log_event,
    network_error,
    parse_http_date,
    parse_time,
    retry_after,
)
from worker.logs import JsonFormatter

NOW = 1_746_100_800.0  # 2025-05-01T12:00:00Z, epoch seconds
T = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def http_date(at: datetime) -> str:
    return format_datetime(at, usegmt=True)


# ---------------------------------------------------------------------------------------------
# Retry-After
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        ("1.5", 1.5),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("-5", 0.0),  # never negative
        (http_date(T - timedelta(minutes=5)), 0.0),  # a date in the past: go now
        (http_date(T + timedelta(seconds=30)), 30.0),
        ("Thu, 01 May 2025 12:00:05 GMT", 5.0),
    ],
)
def test_retry_after_seconds_and_dates(value: str, expected: float) -> None:
    assert retry_after({"Retry-After": value}, NOW) == expected


@pytest.mark.parametrize("name", ["Retry-After", "retry-after", "RETRY-AFTER", "rEtRy-AfTeR"])
def test_retry_after_any_header_name_case(name: str) -> None:
    assert retry_after({name: "4"}, NOW) == 4.0


@pytest.mark.parametrize("value", ["soon", "", "  ", "nan", "inf", "Thu, 99 Foo 2025", "3 seconds"])
def test_retry_after_unreadable_is_none(value: str) -> None:
    assert retry_after({"Retry-After": value}, NOW) is None


def test_retry_after_absent_is_none() -> None:
    assert retry_after({}, NOW) is None
    assert retry_after(None, NOW) is None
    assert retry_after({"X-RateLimit-Reset": "1746100860"}, NOW) is None


def test_retry_after_from_requests_and_httpx_headers() -> None:
    response = requests.Response()
    response.headers.update({"retry-after": "6"})
    assert retry_after(response.headers, NOW) == 6.0
    assert retry_after(requests.structures.CaseInsensitiveDict({"RETRY-AFTER": "2"}), NOW) == 2.0
    later = http_date(T + timedelta(seconds=12))
    assert retry_after(httpx.Response(429, headers={"Retry-After": later}).headers, NOW) == 12.0
    assert retry_after(httpx.Headers({"retry-after": "9"}), NOW) == 9.0
    assert retry_after(httpx.Headers({}), NOW) is None


def test_retry_after_measures_dates_from_the_clock_by_default() -> None:
    later = http_date(datetime.now(UTC) + timedelta(seconds=30))
    assert 25 <= (retry_after({"Retry-After": later}) or 0) <= 31


def test_header_and_http_date_helpers() -> None:
    assert header({"Link": "<x>"}, "link") == "<x>"
    assert header({"link": "<x>"}, "LINK") == "<x>"
    assert header(None, "link") is None
    assert parse_http_date("Thu, 01 May 2025 12:00:05 GMT") == T + timedelta(seconds=5)
    assert parse_http_date("not a date") is None and parse_http_date(None) is None


def test_every_tracker_reads_retry_after_through_the_kit() -> None:
    """The tracker-specific waits keep their reset headers but take Retry-After (both forms, any
    case) from `retry_after`."""
    date = http_date(T + timedelta(seconds=20))
    assert github.rate_limit_wait(429, {"Retry-After": date}, "", NOW) == 20.0
    assert github.rate_limit_wait(403, {"retry-after": "soon"}, "", NOW) == 60.0  # still a limit
    assert linear.rate_limit_wait({"retry-after": date}, NOW) == 20.0
    assert jira.retry_after_seconds({"retry-after": date}, T) == 20.0
    # Unreadable Retry-After: Jira falls back to its own reset header.
    reset = {"Retry-After": "soon", "X-RateLimit-Reset": "2025-05-01T12:00:09Z"}
    assert jira.retry_after_seconds(reset, T) == 9.0


# ---------------------------------------------------------------------------------------------
# Times
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-05-01T12:00:00Z", T),
        ("2025-05-01T12:00:00z", T),
        ("2025-05-01T12:00:00+00:00", T),
        ("2025-05-01T12:00:00+0000", T),  # Jira
        ("2025-05-01T14:00:00+02:00", T),
        ("2025-05-01T14:00:00+0200", T),
        ("2025-05-01T06:30:00-0530", T),
        ("2025-05-01T12:00:00.1Z", T + timedelta(milliseconds=100)),
        ("2025-05-01T12:00:00.123Z", T + timedelta(milliseconds=123)),
        ("2025-05-01T12:34:56.789+0000", datetime(2025, 5, 1, 12, 34, 56, 789000, tzinfo=UTC)),
        ("2025-05-01T12:00:00.123456Z", T + timedelta(microseconds=123456)),
        ("2025-05-01T12:00:00.1234567Z", T + timedelta(microseconds=123456)),  # ADO: 7 digits
        ("2025-05-01T12:00:00.123456789Z", T + timedelta(microseconds=123456)),  # 9 digits
        (" 2025-05-01T12:00:00Z ", T),
        (datetime(2025, 5, 1, 12, 0), T),  # naive: taken as UTC
        (datetime(2025, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))), T),
    ],
)
def test_parse_time_reads_iso_8601_as_aware_utc(value: object, expected: datetime) -> None:
    parsed = parse_time(value)
    assert parsed == expected
    assert parsed is not None and parsed.tzinfo is UTC


@pytest.mark.parametrize("value", [None, "", "   ", 1_746_100_800, 1.5, b"2025-05-01T12:00:00Z"])
def test_parse_time_absent_or_not_text_is_none(value: object) -> None:
    assert parse_time(value) is None


@pytest.mark.parametrize(
    "value", ["yesterday", "not a date", "2025-13-01T00:00:00Z", "2025-05-01T12:00:00.", "12:00"]
)
def test_parse_time_garbage_is_none(value: str) -> None:
    """The one rule for unreadable text: None (the connector decides what a missing time means)."""
    assert parse_time(value) is None


# ---------------------------------------------------------------------------------------------
# The SDK-call guard
# ---------------------------------------------------------------------------------------------
class Limited(Exception):
    """An SDK's rate-limit exception (the classifier makes it retriable)."""


class Denied(Exception):
    """An SDK's 401 (the classifier makes it fatal)."""


def classify(exc: Exception) -> Exception | None:
    if isinstance(exc, Limited):
        return RetriableError("rate limited", retry_after=0)
    if isinstance(exc, Denied):
        return FatalError("bad token")
    return None


@pytest.fixture
def ctx() -> Iterator[ConnectorContext]:
    yield ConnectorContext(integration_id="t", token=SecretStr("x"), cache_dir=Path("/tmp"))


def failing(*failures: BaseException) -> tuple[Callable[[], str], dict[str, Any]]:
    """A blocking call that raises `failures` one per call, then answers "ok"."""
    pending = list(failures)
    seen: dict[str, Any] = {"calls": 0, "threads": set()}

    def call() -> str:
        seen["calls"] += 1
        seen["threads"].add(threading.get_ident())
        if pending:
            raise pending.pop(0)
        return "ok"

    return call, seen


async def test_guard_retries_what_the_classifier_calls_retriable(ctx: ConnectorContext) -> None:
    call, seen = failing(Limited("429"))
    assert await call_sdk(ctx, "listing", call, classify) == "ok"
    assert seen["calls"] == 2
    assert threading.get_ident() not in seen["threads"]  # never on the event loop's thread


async def test_guard_does_not_retry_fatal(ctx: ConnectorContext) -> None:
    call, seen = failing(Denied("401"), Denied("401"))
    with pytest.raises(FatalError, match="bad token") as info:
        await call_sdk(ctx, "listing", call, classify)
    assert seen["calls"] == 1
    # The SDK's exception (which may carry request headers) is not chained to ours.
    assert info.value.__context__ is None and info.value.__cause__ is None


async def test_guard_propagates_an_unclassified_exception_unchanged(ctx: ConnectorContext) -> None:
    """The one rule: nobody knows it, so it is a bug; no retry, the run fails with it."""
    bug = KeyError("fields")
    call, seen = failing(bug)
    with pytest.raises(KeyError) as info:
        await call_sdk(ctx, "listing", call, classify)
    assert info.value is bug and seen["calls"] == 1


async def test_guard_retries_a_connection_error_nobody_classified(ctx: ConnectorContext) -> None:
    call, seen = failing(requests.exceptions.ConnectionError("connection refused"))
    assert await call_sdk(ctx, "listing", call, classify) == "ok"
    assert seen["calls"] == 2


async def test_guard_lets_connector_errors_through(ctx: ConnectorContext) -> None:
    ours = FatalError("already ours")
    call, seen = failing(ours)

    def must_not_classify(exc: Exception) -> Exception | None:
        raise AssertionError(f"classified {exc!r}")

    with pytest.raises(FatalError) as info:
        await call_sdk(ctx, "listing", call, must_not_classify)
    assert info.value is ours and seen["calls"] == 1


async def test_guard_classifies_in_the_calls_thread(ctx: ConnectorContext) -> None:
    """Azure DevOps reads the failed response from thread-local state in its classifier."""
    call, seen = failing(Limited("429"))
    classified_in: set[int] = set()

    def remember(exc: Exception) -> Exception | None:
        classified_in.add(threading.get_ident())
        return classify(exc)

    await call_sdk(ctx, "listing", call, remember)
    assert classified_in and classified_in <= seen["threads"]


@pytest.mark.parametrize(
    "exc",
    [
        requests.exceptions.ConnectionError("refused"),
        requests.exceptions.ReadTimeout("read timed out"),
        requests.exceptions.ConnectTimeout("connect timed out"),
        requests.exceptions.ChunkedEncodingError("connection broken"),
        urllib3.exceptions.ProtocolError("Connection aborted."),
        urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"),  # type: ignore[arg-type]
        urllib3.exceptions.MaxRetryError(None, "/"),  # type: ignore[arg-type]
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("read timed out"),
        ConnectionResetError("reset by peer"),
        TimeoutError("timed out"),
    ],
)
def test_network_errors_are_retriable(exc: BaseException) -> None:
    error = network_error(exc, "listing")
    assert isinstance(error, RetriableError) and type(exc).__name__ in str(error)


@pytest.mark.parametrize("exc", [KeyError("x"), ValueError("x"), requests.exceptions.InvalidURL()])
def test_other_errors_are_not_network_errors(exc: BaseException) -> None:
    assert network_error(exc, "listing") is None


# ---------------------------------------------------------------------------------------------
# Log fields
# ---------------------------------------------------------------------------------------------
def test_log_event_fields_land_in_the_json_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("connectors.test_http")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        log_event(logger, "linear.order_unexpected", logging.WARNING, team="ENG", pages=3)
        log_event(logger, "plain_event")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["event"] == "linear.order_unexpected" and first["level"] == "warning"
    assert first["team"] == "ENG" and first["pages"] == 3
    assert second["event"] == "plain_event" and second["level"] == "info"


LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def test_connectors_log_only_through_log_event_and_never_import_worker() -> None:
    """`extra=` outside log_event loses its fields in the worker's formatter; and the worker sits
    above the connectors (DESIGN: nothing imports upwards)."""
    root = Path(__file__).resolve().parents[2] / "connectors"
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                names = []
            assert not any(n == "worker" or n.startswith("worker.") for n in names), path
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LOG_METHODS
                and path.name != "http.py"
            ):
                assert not any(k.arg == "extra" for k in node.keywords), (path, node.lineno)


def test_linear_keeps_its_stricter_time_rule_on_top_of_the_kit() -> None:
    assert linear.parse_time("2025-05-01T12:00:00.000Z") == T
    assert linear.parse_time(None) is None
    with pytest.raises(ConnectorError):
        linear.parse_time("2025-13-01T00:00:00Z")


@pytest.mark.parametrize(
    "body",
    [
        '{"value": [{"id": 1, "fields": {"System.Title": "ünïcode 🚀"}}, null]}'.encode(),
        b'{"value": [{"fields": {"System.Title": "half \\ud800 a pair"}}]}',
        '{"count": 1, "value": []}'.encode("utf-16"),  # json reads UTF-16 bytes, orjson not
        '{"n": NaN}',
    ],
)
def test_json_body_reads_bytes_and_text_as_json_does(body: bytes | str) -> None:
    # (NaN is not equal to itself: compare the texts json writes of both)
    assert json.dumps(json_body(body)) == json.dumps(json.loads(body))


@pytest.mark.parametrize("body", [b"<html><body>502 Bad Gateway</body></html>", b'{"value": [1'])
def test_json_body_refuses_what_is_not_json(body: bytes) -> None:
    with pytest.raises(ValueError):
        json_body(body)

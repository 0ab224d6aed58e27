"""The HTTP failure policy every connector shares: `Retry-After`, time parsing, one guard for
blocking SDK calls, structured log lines.

Rules (each pinned by tests/unit/test_connectors_http.py):

* `retry_after`: a `Retry-After` header (any name case) in either of its forms, delta-seconds or
  an HTTP-date, as seconds from `now`; never negative; None when absent or unreadable. Tracker
  reset headers (GitHub `x-ratelimit-reset`, Jira `X-RateLimit-Reset`, Linear's buckets) stay in
  their connectors and call this for the `Retry-After` part.
* `parse_time`: ISO 8601 as an aware UTC datetime ("Z" or "z", offsets with or without a colon,
  any number of fractional digits, truncated to microseconds; a naive value is taken as UTC).
  None for None, "" and non-strings, and None for text that is not ISO 8601: what a missing or
  unreadable time means is the connector's decision (an item without its change time is
  refused; an unreadable completion time is an unknown one).
* `call_sdk`: a blocking SDK call runs in a worker thread with `connectors.retry`'s retries. An
  exception is passed through the connector's classifier (tracker-specific: RetriableError,
  FatalError, an internal signal, or None), then through `network_error` (connection failures and
  timeouts are retriable). An exception nobody classified is NOT retried and propagates
  unchanged: it is a bug in our code or an SDK, so the run fails (`sync_failed`), the worker logs
  its traceback (`sync_crashed`) and the next run starts from the committed cursor.
* `log_event`: fields go under `extra={"fields": …}`, the only place worker/logs.py's
  formatters read them from (any other `extra` key is silently dropped from the line).
* `json_body`: a response body read as `json.loads` reads it, by orjson where orjson can (a
  page in about half json's time, which the fetching thread holds the interpreter for).
  `json_mentions`: whether a decoded value's JSON text holds any of some byte strings, the cheap
  test before walking every field of an item for something most items lack.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import orjson
import requests
import urllib3

from connectors.base import ConnectorContext, ConnectorError, RetriableError, utc
from connectors.retry import in_thread_with_retries

T = TypeVar("T")

#: What the connector makes of an SDK exception: the exception to raise instead (RetriableError,
#: FatalError or an internal signal the connector catches), or None when it does not know it.
Classifier = Callable[[Exception], Exception | None]

#: Failures of the network or the connection, never of the request itself: worth retrying.
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError,  # includes ConnectTimeout, ProxyError, SSLError
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,  # the connection dropped mid-body
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.TimeoutError,
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.MaxRetryError,
    urllib3.exceptions.ProxyError,
    urllib3.exceptions.SSLError,
    httpx.TransportError,
    ConnectionError,  # the builtin: reset, refused, broken pipe
    TimeoutError,
)


# ---------------------------------------------------------------------------------------------
# Headers
# ---------------------------------------------------------------------------------------------
def header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    """The first value of header `name`, whatever the case of its name in `headers` (a dict,
    `requests`' CaseInsensitiveDict or `httpx.Headers`); None when absent."""
    if not headers:
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if str(key).lower() == wanted:
            return str(value)
    return None


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP-date (`Thu, 01 May 2025 12:00:05 GMT`) as aware UTC; None when unreadable."""
    if not value:
        return None
    try:
        return utc(parsedate_to_datetime(value.strip()))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def retry_after(headers: Mapping[str, Any] | None, now: float | None = None) -> float | None:
    """Seconds to wait from `Retry-After` (delta-seconds or HTTP-date, measured from `now`, epoch
    seconds, default the current time); never negative; None when absent or unreadable."""
    value = header(headers, "retry-after")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        when = parse_http_date(value)
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):  # "nan", "inf": no wait can be read from that
        return None
    return max(0.0, seconds)


# ---------------------------------------------------------------------------------------------
# Times
# ---------------------------------------------------------------------------------------------
def parse_time(value: object) -> datetime | None:
    """An ISO 8601 time (or a datetime) as aware UTC; None when absent or not ISO 8601.

    Accepts "Z"/"z", `+00:00` and `+0000` (Jira), and 0-9 (or more) fractional digits (Azure
    DevOps writes 7); naive values are taken as UTC.
    """
    if isinstance(value, datetime):
        return utc(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith("z"):  # fromisoformat knows "Z" only
        text = text[:-1] + "Z"
    if not text:
        return None
    try:
        return utc(datetime.fromisoformat(text))
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# Blocking SDK calls
# ---------------------------------------------------------------------------------------------
def network_error(exc: BaseException, what: str) -> RetriableError | None:
    """A RetriableError for a connection failure or timeout, else None."""
    if isinstance(exc, NETWORK_ERRORS):
        return RetriableError(f"network failure while {what} ({type(exc).__name__}); will retry")
    return None


async def call_sdk(
    ctx: ConnectorContext, what: str, call: Callable[[], T], classify: Classifier
) -> T:
    """Run a blocking SDK call in a worker thread, with retries of RetriableError.

    A ConnectorError raised by `call` goes up as is. Any other exception goes through `classify`
    (in the worker thread, so a classifier may read thread-local response state), then
    `network_error`; the first answer is raised instead of it. An exception neither knows is not
    retried and propagates unchanged (see the module docstring).
    """

    def guarded() -> T:
        try:
            return call()
        except ConnectorError:
            raise
        except Exception as exc:
            error = classify(exc) or network_error(exc, what)
            if error is None:
                raise
        # Raised outside the handler: the SDK's exception (whose text or context may carry
        # request headers) is not chained to ours.
        raise error

    return await in_thread_with_retries(ctx, what, guarded)


# ---------------------------------------------------------------------------------------------
# Logs
# ---------------------------------------------------------------------------------------------
def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """One structured log line: the event name as the message, `fields` where the worker's
    formatters read them (`record.fields`)."""
    logger.log(level, event, extra={"fields": fields})


def json_body(body: bytes | str) -> Any:
    """`body` decoded as `json.loads` decodes it (malformed: its ValueError), by orjson where
    orjson can. What orjson refuses and json takes (a lone surrogate's escape, NaN, a body in
    UTF-16) goes through json; an integer past 64 bits becomes a float (no tracker's ids or
    counts come near 2^63)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def json_mentions(value: Any, *needles: bytes) -> bool:
    """Whether the JSON text of `value` (orjson's: compact, UTF-8, printable ASCII never
    escaped) holds any of `needles`; True as well when orjson cannot encode it (the caller then
    looks the slow way). A key shows as `"key":`, which a string value cannot hold (its quotes
    would be escaped). Encoding an issue costs a tenth to a thirtieth of walking its fields."""
    try:
        text = orjson.dumps(value)
    except TypeError:  # (orjson.JSONEncodeError is one)
        return True
    return any(needle in text for needle in needles)

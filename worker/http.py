"""The daemon's small HTTP servers, on asyncio streams instead of a web framework: the health and
metrics endpoint (`/healthz`: the event loop answers, `/readyz`: the database answers, `/metrics`:
Prometheus) and the webhook listener (`worker.webhooks`) share the request reading here.

One request per connection (`Connection: close`). The head must arrive within 5 s; a body is
read only up to the route's `max_body` (a larger Content-Length is answered 413 unread), and only
with a Content-Length (chunked bodies are answered 411).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.logs import get_logger

log = get_logger(__name__)

ReadyCheck = Callable[[], Awaitable[str | None]]  # None when ready, else why not

_REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
HEAD_TIMEOUT_S = 5.0  # the whole request head, not each line
BODY_TIMEOUT_S = 10.0
MAX_HEADERS = 100
MAX_HEADER_LINE = 8192


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # without the query string
    headers: Mapping[str, str]  # names lower-cased; a repeated header keeps its first value
    body: bytes = b""
    peer: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "text/plain"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def text(cls, status: int, text: str, **headers: str) -> Reply:
        return cls(status, f"{text}\n".encode(), headers=headers)


Route = Callable[[Request], Awaitable[Reply]]


class _Refused(Exception):
    """A request answered before its route runs (bad framing, body too large)."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply


async def serve_routes(
    host: str, port: int, route: Route, *, max_body: int = 0, what: str = ""
) -> asyncio.Server:
    """Serve `route` on host:port (0: any free port; the bound port is logged and in
    `server.sockets`). Bodies above `max_body` bytes are refused with 413."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method = ""
        try:
            try:
                request = await _read_request(reader, writer, max_body)
                method = request.method
                reply = await route(request)
            except _Refused as refused:
                reply = refused.reply
            head = (
                f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, '')}\r\n"
                f"Content-Type: {reply.content_type}\r\nContent-Length: {len(reply.body)}\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
                + "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + (reply.body if method != "HEAD" else b""))
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, host, port, limit=MAX_HEADER_LINE)
    bound = server.sockets[0].getsockname()[1] if server.sockets else port
    log.info("http_listening", host=host, port=bound, paths=what)
    return server


async def _read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_body: int
) -> Request:
    try:
        async with asyncio.timeout(HEAD_TIMEOUT_S):
            request_line = await reader.readline()
            headers: dict[str, str] = {}
            for _ in range(MAX_HEADERS + 1):
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                headers.setdefault(name.strip().lower(), value.strip())
            else:
                raise _Refused(Reply.text(431, "too many headers"))
    except ValueError:  # a line longer than the stream's limit
        raise _Refused(Reply.text(431, "header line too long")) from None
    method, _, rest = request_line.decode("latin-1").partition(" ")
    path = rest.split(" ", 1)[0].split("?", 1)[0]
    peer = writer.get_extra_info("peername")
    request = Request(method, path, headers, b"", str(peer[0]) if peer else "")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise _Refused(Reply.text(411, "send a Content-Length"))
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise _Refused(Reply.text(400, "bad Content-Length")) from None
    if length < 0:
        raise _Refused(Reply.text(400, "bad Content-Length"))
    if length > max_body:
        if max_body == 0:
            return request  # a route without bodies: it answers the method (405)
        raise _Refused(Reply.text(413, f"body larger than {max_body} bytes"))
    if length:
        if headers.get("expect", "").lower() == "100-continue":  # curl does, above 1 KiB
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        async with asyncio.timeout(BODY_TIMEOUT_S):
            body = await reader.readexactly(length)
        request = Request(method, path, headers, body, request.peer)
    return request


async def serve(host: str, port: int, ready: ReadyCheck) -> asyncio.Server:
    """The health and metrics endpoint."""
    return await serve_routes(host, port, health_route(ready), what="/healthz /readyz /metrics")


def health_route(ready: ReadyCheck) -> Route:
    async def route(request: Request) -> Reply:
        if request.method not in ("GET", "HEAD"):
            return Reply.text(405, "method not allowed")
        if request.path == "/healthz":
            return Reply.text(200, "ok")
        if request.path == "/readyz":
            problem = await ready()
            if problem is None:
                return Reply.text(200, "ready")
            return Reply.text(503, f"not ready: {problem}")
        if request.path == "/metrics":
            return Reply(200, generate_latest(), CONTENT_TYPE_LATEST)
        return Reply.text(404, "not found")

    return route

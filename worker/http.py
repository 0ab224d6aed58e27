"""Health and metrics endpoint: `/healthz` (the event loop answers), `/readyz` (the database
answers), `/metrics` (Prometheus). A few lines of asyncio instead of a web framework: three GETs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.logs import get_logger

log = get_logger(__name__)

ReadyCheck = Callable[[], Awaitable[str | None]]  # None when ready, else why not

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


async def serve(host: str, port: int, ready: ReadyCheck) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):  # the whole request head, not each line
                request_line = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # headers are not needed
            method, _, rest = request_line.decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            status, ctype, body = await _route(method, path, ready)
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + (body if method != "HEAD" else b""))
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, host, port)
    bound = server.sockets[0].getsockname()[1] if server.sockets else port
    log.info("http_listening", host=host, port=bound, paths="/healthz /readyz /metrics")
    return server


async def _route(method: str, path: str, ready: ReadyCheck) -> tuple[int, str, bytes]:
    if method not in ("GET", "HEAD"):
        return 405, "text/plain", b"method not allowed\n"
    if path == "/healthz":
        return 200, "text/plain", b"ok\n"
    if path == "/readyz":
        problem = await ready()
        if problem is None:
            return 200, "text/plain", b"ready\n"
        return 503, "text/plain", f"not ready: {problem}\n".encode()
    if path == "/metrics":
        return 200, CONTENT_TYPE_LATEST, generate_latest()
    return 404, "text/plain", b"not found\n"

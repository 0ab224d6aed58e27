"""The common part of the sandbox trackers: a threaded HTTP server on 127.0.0.1 (random port) that
records every request and can inject faults before the tracker-specific handler runs.

`between_requests` (a callable, off unless a test sets it) is called with each request after it is
recorded and before any fault or answer: the place to change the tracker's data while a client is
paging (an edit, a deletion, a move "between two requests"), or to queue a fault for this very
request. It runs on the server's request thread.

A tracker sandbox subclasses `SandboxServer` and implements `handle(request) -> Response`, and for
the demo `seed_demo()` and `demo_config()`.
Used by the tests, the demo and the benchmarks; never by the worker in production.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from connectors.sandbox.webhooks import WebhookSender

FaultKind = Literal[
    "429", "403_rate_limit", "5xx", "401", "malformed", "timeout", "400_json", "reset"
]


#: What a demo team member does, and how often (weights for `demo_action`).
DEMO_ACTIONS = {"create": 2, "move": 5, "reassign": 2, "close": 1}


def demo_action(rng: random.Random) -> str:
    """One of DEMO_ACTIONS, drawn by weight."""
    return rng.choices(list(DEMO_ACTIONS), weights=list(DEMO_ACTIONS.values()))[0]


@dataclass(frozen=True, slots=True)
class DemoChange:
    """One change a `demo_step` made: the item's key as the connector stores it
    (`work_items.external_key`) and a one-line description for people."""

    key: str
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Request:
    """One recorded request, as the server saw it."""

    method: str
    path: str  # without the query string
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # lower-cased names
    body: bytes
    at: float  # time.monotonic()

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    @property
    def url(self) -> str:
        return self.path + (
            "?" + "&".join(f"{k}={v}" for k, vs in self.query.items() for v in vs)
            if self.query
            else ""
        )


@dataclass(slots=True)
class Response:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes sent as is
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if self.body is None:
            return b""
        return json.dumps(self.body).encode()


@dataclass(slots=True)
class Fault:
    """An injected failure for the next matching request(s)."""

    kind: FaultKind
    count: int = 1
    retry_after: float | None = 1.0
    path_contains: str | None = None  # only requests whose path contains this
    body: Any = None  # for kinds that send a body (e.g. a tracker's own rate-limit JSON)
    headers: dict[str, str] = field(default_factory=dict)


class SandboxServer:
    """Base class. Subclasses implement `handle`. Use as a context manager or start()/stop()."""

    #: Seconds a "timeout" fault stalls (longer than the clients' timeouts in tests).
    timeout_stall: float = 5.0
    #: The tracker's signed webhooks, sent after each change once subscribed (set by each sandbox).
    hooks: WebhookSender

    def __init__(self) -> None:
        self.response_delay = 0.0  # seconds every answer waits (a slow tracker, for tests)
        self.requests: list[Request] = []
        # Called with each request before its fault or answer (see the module docstring).
        self.between_requests: Callable[[Request], None] | None = None
        #: Called with each request and the answer `handle` gives it (injected faults aside), before
        #: it is sent: tests check the answer's shape.
        self.response_hook: Callable[[Request, Response], None] | None = None
        self._faults: deque[Fault] = deque()
        self._short: list[list[int]] = []  # [skip, count, keep] of answer_short(), in order
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, port: int = 0) -> SandboxServer:
        """Listen on 127.0.0.1:`port` (0: any free port; a busy fixed port falls back to any)."""
        handler = _make_handler(self)
        try:
            self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError:
            if not port:
                raise
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits up to one interval, and tests stop many servers.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- faults and the request log -----------------------------------------------------------
    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def fail_next(self, kind: FaultKind, count: int = 1, **kw: Any) -> None:
        self.inject(Fault(kind, count, **kw))

    def clear_faults(self) -> None:
        """Drop every injected fault not taken yet (sandboxes add their own knobs)."""
        with self._lock:
            self._faults.clear()
            self._short.clear()

    def answer_short(self, keep: int = 0, *, skip: int = 0, count: int = 1) -> None:
        """Fault knob: after `skip` more list answers, cut the next `count` to their first `keep`
        items while the answer still promises more (the sandbox's paging says how: a `Link`
        header, a `nextPageToken`): an empty or short page mid-listing."""
        with self._lock:
            self._short.append([skip, count, keep])

    def _cut(self) -> int | None:
        """How many items the list answer being built may keep (None: all), per answer_short()."""
        with self._lock:
            if not self._short:
                return None
            fault = self._short[0]
            if fault[0] > 0:
                fault[0] -= 1
                return None
            fault[1] -= 1
            if fault[1] <= 0:
                self._short.pop(0)
            return fault[2]

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def requests_to(self, path_contains: str, method: str | None = None) -> list[Request]:
        with self._lock:
            return [
                r
                for r in self.requests
                if path_contains in r.path and (method is None or r.method == method)
            ]

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path_contains is None or fault.path_contains in path:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # -- to override --------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def seed_demo(self) -> None:
        """Seed realistic demo issues: a few dozen believable items in mixed states over the last
        weeks, anchored to today so that seeding again the same day gives the same data."""
        raise NotImplementedError

    def demo_step(self, rng: random.Random, now: datetime) -> DemoChange:
        """Act out one thing a working team does in this tracker at `now` (create an item, move
        one to its next status, reassign one, close one), through the sandbox's own add/update
        methods so that its API then serves exactly that change; `rng` decides what, so a run
        is reproducible."""
        raise NotImplementedError

    def demo_config(self) -> dict[str, Any]:
        """The `integrations.config` dict of a row pointing at this running sandbox (its URL,
        credentials and scope, as the tracker's connector reads them)."""
        raise NotImplementedError

    def fault_response(self, fault: Fault) -> Response:
        """The tracker-neutral shape of each fault; sandboxes override for their own bodies."""
        headers = dict(fault.headers)
        if fault.retry_after is not None and fault.kind in ("429", "403_rate_limit", "5xx"):
            headers.setdefault("Retry-After", str(int(fault.retry_after)))
        if fault.kind == "429":
            return Response(429, fault.body or {"message": "rate limited"}, headers)
        if fault.kind == "403_rate_limit":
            return Response(403, fault.body or {"message": "API rate limit exceeded"}, headers)
        if fault.kind == "5xx":
            return Response(503, fault.body or {"message": "service unavailable"}, headers)
        if fault.kind == "401":
            return Response(401, fault.body or {"message": "Bad credentials"}, headers)
        if fault.kind == "400_json":
            return Response(400, fault.body or {"message": "bad request"}, headers)
        if fault.kind == "malformed":
            return Response(200, b'{"this is": not json', headers)
        raise AssertionError(fault.kind)


def _make_handler(sandbox: SandboxServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: with Nagle's algorithm the body would wait for
        # the client's delayed ACK of the headers (40 ms a request on Linux keep-alive sockets).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def _serve(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Request(
                method=self.command,
                path=split.path,
                query=parse_qs(split.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                at=time.monotonic(),
            )
            with sandbox._lock:
                sandbox.requests.append(request)
            hook = sandbox.between_requests
            if hook is not None:
                hook(request)
            if sandbox.response_delay:
                time.sleep(sandbox.response_delay)
            fault = sandbox._take_fault(split.path)
            if fault is not None and fault.kind == "reset":
                # The connection is reset before any answer: SO_LINGER 0 makes close() send RST.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                return
            if fault is not None and fault.kind == "timeout":
                time.sleep(sandbox.timeout_stall)
                response = Response(504, {"message": "gateway timeout"})
            elif fault is not None:
                response = sandbox.fault_response(fault)
            else:
                try:
                    response = sandbox.handle(request)
                except Exception as exc:  # a sandbox bug shows as a 500 with the reason
                    response = Response(500, {"message": f"sandbox error: {exc!r}"})
                if sandbox.response_hook is not None:
                    sandbox.response_hook(request, response)
            payload = response.encode()
            self.send_response(response.status)
            headers = {"Content-Type": "application/json", **response.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (its timeout): nobody reads

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve

    return Handler


Handler = Callable[[Request], Response]

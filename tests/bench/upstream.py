"""The benchmarks' upstream: pages rendered once by a tracker's sandbox, replayed as bytes.

A priming run (untimed, into a scratch database) talks to the real sandbox; the sandbox's
`response_hook` hands every answer it renders to `Upstream.record`, which keeps its encoded bytes
under the request's key (method, path, query, body) and the current *phase* ("full", "noop",
"changed", …: the same request may get another answer after the data changed). The timed run then
talks to `Upstream`, a tiny threaded HTTP server that only looks bytes up: its cost is a dict
lookup and a socket write, so the benchmark measures the product, not the sandbox's rendering.

A request the priming run did not make is answered 599 and counted in `misses`: a scenario with
misses is invalid (the worker's requests were not deterministic) and says so.

`python -m tests.bench.upstream URL FILE SECONDS` is the bare client of `capacity()`: it replays
the recorded requests in a loop over one keep-alive connection (in its own process, so the
server's threads do not share a GIL with it) and prints requests/s and MB/s.
"""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from connectors.sandbox.base import Request, Response, SandboxServer

Key = tuple[str, str, bytes]  # method, path?sorted-query, body


def key_of(method: str, path: str, query: Iterable[tuple[str, str]], body: bytes) -> Key:
    return method, path + "?" + urlencode(sorted(query)), body


class Upstream:
    """Record a sandbox's answers per phase; serve them back over HTTP."""

    def __init__(self) -> None:
        self.phases: dict[str, dict[Key, bytes]] = {}
        self.phase = ""
        self.requests = 0
        self.misses: list[str] = []
        self.latency = 0.0  # seconds every answer waits: a tracker across a network (overlap)
        self.lock = threading.Lock()
        self._sandbox_url = ""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Upstream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- recording ------------------------------------------------------------------------------
    def record_from(self, sandbox: SandboxServer, phase: str) -> None:
        """From now on, every answer `sandbox` gives is kept under `phase`."""
        self._sandbox_url = sandbox.url
        self.phases.setdefault(phase, {})
        sandbox.response_hook = lambda request, response: self.record(phase, request, response)

    def record(self, phase: str, request: Request, response: Response) -> None:
        pairs = [(k, v) for k, vs in request.query.items() for v in vs]
        key = key_of(request.method, request.path, pairs, request.body)
        # The sandbox writes absolute URLs (Link headers, `self` links) with its own address.
        here = self.url.encode()
        body = response.encode().replace(self._sandbox_url.encode(), here)
        headers = {"Content-Type": "application/json", **response.headers}
        head = [f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}".encode()]
        head += [
            f"{name}: {value}".replace(self._sandbox_url, self.url).encode()
            for name, value in headers.items()
        ]
        head.append(f"Content-Length: {len(body)}".encode())
        self.phases[phase][key] = b"\r\n".join(head) + b"\r\n\r\n" + body

    # -- the bare client ------------------------------------------------------------------------
    def capacity(self, phase: str, seconds: float = 2.0) -> dict[str, float]:
        """Requests/s and MB/s a bare client gets replaying `phase` (see the module docstring)."""
        rows = [
            {"method": m, "path": p, "body": base64.b64encode(b).decode()}
            for m, p, b in self.phases[phase]
        ]
        self.phase = phase
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(rows, f)
            f.flush()
            out = subprocess.run(
                [sys.executable, "-m", "tests.bench.upstream", self.url, f.name, str(seconds)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        self.requests = 0
        result: dict[str, float] = json.loads(out)
        return result


def _handler(upstream: Upstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # (see connectors.sandbox.base: headers then body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            key = key_of(
                self.command, split.path, parse_qsl(split.query, keep_blank_values=True), body
            )
            with upstream.lock:
                upstream.requests += 1
            answer = upstream.phases.get(upstream.phase, {}).get(key)
            if answer is None:
                upstream.misses.append(f"{self.command} {self.path} {body[:300]!r}")
                answer = b"HTTP/1.1 599 X\r\nContent-Length: 0\r\n\r\n"
            if upstream.latency:
                time.sleep(upstream.latency)  # (a thread per connection: others are not held)
            self.wfile.write(answer)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    return Handler


def _bare_client(url: str, file: str, seconds: float) -> None:
    rows = json.loads(Path(file).read_text())
    split = urlsplit(url)
    conn = http.client.HTTPConnection(split.hostname, split.port)
    count = size = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for row in rows:
            method, target = row["method"], row["path"]
            body = base64.b64decode(row["body"])
            conn.request(method, target, body=body or None)
            size += len(conn.getresponse().read())
            count += 1
    elapsed = time.perf_counter() - started
    print(json.dumps({"rps": round(count / elapsed), "mb_per_s": round(size / elapsed / 1e6, 1)}))


if __name__ == "__main__":
    _bare_client(sys.argv[1], sys.argv[2], float(sys.argv[3]))

"""A database some way off: a TCP proxy in front of PostgreSQL that holds every chunk of bytes,
each way, for a set time before passing it on (a round trip then takes twice that), so a
benchmark can run the worker against a server as far away as a managed one usually is.

`delayed(url, one_way_s)` starts it in its own process (its threads share no interpreter with
the worker or the bench) and yields the URL to give the worker. The server may be reached by a
Unix socket (the embedded one's `?host=/dir`) or by TCP.

`python -m tests.bench.delay_proxy TARGET PORT SECONDS` runs it: TARGET a socket path or
host:port; it prints "ready" once it listens on 127.0.0.1:PORT.
"""

from __future__ import annotations

import collections
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def _connect(target: str) -> socket.socket:
    if target.startswith("/"):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(target)
        return sock
    host, _, port = target.rpartition(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _pipe(source: socket.socket, sink: socket.socket, delay: float) -> None:
    """Bytes from `source` to `sink`, each chunk `delay` seconds after it came (in order)."""
    held: collections.deque[tuple[float, bytes]] = collections.deque()
    ready = threading.Condition()
    ended = False

    def read() -> None:
        nonlocal ended
        try:
            while chunk := source.recv(1 << 18):
                with ready:
                    held.append((time.monotonic() + delay, chunk))
                    ready.notify()
        except OSError:
            pass
        with ready:
            ended = True
            ready.notify()

    def write() -> None:
        try:
            while True:
                with ready:
                    while not held and not ended:
                        ready.wait()
                    if not held:
                        break
                    due, chunk = held.popleft()
                time.sleep(max(0.0, due - time.monotonic()))
                sink.sendall(chunk)
        except OSError:
            pass
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    threading.Thread(target=read, daemon=True).start()
    threading.Thread(target=write, daemon=True).start()


def serve(target: str, port: int, delay: float) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    print("ready", flush=True)
    while True:
        client, _ = listener.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server = _connect(target)
        _pipe(client, server, delay)
        _pipe(server, client, delay)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def delayed(url: str, one_way_s: float) -> Iterator[str]:
    """`url`'s database through the proxy: the URL to connect to it `one_way_s` away."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    socket_dir = query.pop("host", None)
    if socket_dir:
        target = f"{socket_dir}/.s.PGSQL.{query.pop('port', parts.port or 5432)}"
    else:
        target = f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
    port = _free_port()
    command = [sys.executable, "-m", "tests.bench.delay_proxy", target, str(port), str(one_way_s)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proxy:
        try:
            assert proxy.stdout is not None
            if proxy.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the delay proxy did not start (exit {proxy.poll()})")
            user, at, _ = parts.netloc.rpartition("@")  # (as written: still URL-encoded)
            netloc = f"{user}{at}127.0.0.1:{port}"
            yield urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))
        finally:
            proxy.kill()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))

"""systemd's notify protocol (`sd_notify`) in pure Python: READY, STOPPING, STATUS, watchdog.

Under a `Type=notify` unit, systemd passes `NOTIFY_SOCKET` (a Unix datagram socket path, or an
abstract one written `@name`) and, with `WatchdogSec=`, `WATCHDOG_USEC` (and maybe `WATCHDOG_PID`).
Each message is one datagram of `KEY=VALUE` lines. Outside systemd every call is a no-op, and a
failed send is logged, never raised: notifying must not be what takes the worker down.

The environment is read from a mapping handed in by the caller (nothing below the CLI reads
`os.environ`).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping

from worker.logs import get_logger

log = get_logger(__name__)


def _socket_address(raw: str | None) -> str | bytes | None:
    """The address to `sendto`: a path, or bytes starting with NUL for an abstract socket."""
    if not raw:
        return None
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    return None  # vsock:… and other forms are not supported: behave as if not under systemd


class Notifier:
    """Send notifications to the service manager; every method is safe to call anywhere."""

    def __init__(self, address: str | bytes | None, watchdog_usec: int | None = None) -> None:
        self._address = address
        self._sock: socket.socket | None = None
        self._warned = False
        self.watchdog_interval: float | None = (
            watchdog_usec / 2 / 1_000_000 if address is not None and watchdog_usec else None
        )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], pid: int | None = None) -> Notifier:
        """Read `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` (pings are ours only when
        `WATCHDOG_PID` is unset or names this process)."""
        raw = environ.get("NOTIFY_SOCKET")
        address = _socket_address(raw)
        if raw and address is None:
            log.warning("systemd_notify_unsupported", notify_socket=raw)
        usec: int | None = None
        try:
            usec = int(environ.get("WATCHDOG_USEC", "")) or None
        except ValueError:
            usec = None
        watchdog_pid = environ.get("WATCHDOG_PID")
        if watchdog_pid and watchdog_pid.strip() != str(os.getpid() if pid is None else pid):
            usec = None  # the watchdog belongs to another process (e.g. a wrapper)
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=VALUE` lines as one datagram. True when sent, False when not under systemd
        or the send failed (logged once)."""
        if self._address is None or not assignments:
            return False
        message = "\n".join(a.replace("\n", " ") for a in assignments).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self._address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("systemd_notify_failed", error=f"{type(exc).__name__}: {exc}")
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    async def watchdog_loop(self, alive: Callable[[], bool] | None = None) -> None:
        """Ping every `WATCHDOG_USEC / 2` for as long as the event loop runs (and `alive()`, when
        given, says the worker is healthy). A stuck loop stops the pings and systemd restarts
        the service. Without a watchdog it waits forever, so it can sit among side tasks."""
        if self.watchdog_interval is None:
            await asyncio.Event().wait()
            return
        while True:
            if alive is None or alive():
                self.watchdog()
            else:
                log.warning("systemd_watchdog_withheld", reason="worker reports unhealthy")
            await asyncio.sleep(self.watchdog_interval)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

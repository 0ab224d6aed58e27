"""The sd_notify client against a real Unix datagram socket (the way systemd listens)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker import systemd


@pytest.fixture
def listener() -> Iterator[tuple[str, socket.socket]]:
    """A bound datagram socket in a short path (Unix socket paths are limited to ~108 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="c9n-"))
    path = str(folder / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()
    shutil.rmtree(folder, ignore_errors=True)


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_status_stopping_reach_the_socket(listener) -> None:
    path, sock = listener
    notifier = systemd.Notifier.from_environ({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("syncing 3 integrations")
    assert received(sock) == ["READY=1", "STATUS=syncing 3 integrations"]
    assert notifier.status("line one\nline two")
    assert received(sock) == ["STATUS=line one line two"]  # one assignment stays one line
    assert notifier.stopping()
    assert received(sock) == ["STOPPING=1"]
    notifier.close()


def test_abstract_socket_address() -> None:
    name = f"c9-sync-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        notifier = systemd.Notifier.from_environ({"NOTIFY_SOCKET": "@" + name})
        assert notifier.watchdog()
        assert received(sock) == ["WATCHDOG=1"]
        notifier.close()
    finally:
        sock.close()


def test_not_under_systemd_everything_is_a_no_op() -> None:
    notifier = systemd.Notifier.from_environ({})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert notifier.ready() is False
    assert notifier.stopping() is False
    assert notifier.watchdog() is False


def test_unsupported_address_form_is_disabled() -> None:
    notifier = systemd.Notifier.from_environ({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled and notifier.ready() is False


def test_send_failure_is_reported_not_raised(tmp_path) -> None:
    notifier = systemd.Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "missing")})
    assert notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False  # still no exception on a second try
    notifier.close()


def test_watchdog_interval_is_half_of_watchdog_usec(listener) -> None:
    path, _ = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"}
    assert systemd.Notifier.from_environ(env).watchdog_interval == 15.0
    ours = {**env, "WATCHDOG_PID": str(os.getpid())}
    assert systemd.Notifier.from_environ(ours).watchdog_interval == 15.0
    theirs = {**env, "WATCHDOG_PID": str(os.getpid() + 1)}
    assert systemd.Notifier.from_environ(theirs).watchdog_interval is None
    assert systemd.Notifier.from_environ({**env, "WATCHDOG_USEC": "soon"}).watchdog_interval is None
    # A watchdog without a socket to ping is no watchdog.
    assert systemd.Notifier.from_environ({"WATCHDOG_USEC": "30000000"}).watchdog_interval is None


async def test_watchdog_loop_pings_while_alive_and_withholds_when_not(listener) -> None:
    path, sock = listener
    sock.setblocking(False)
    notifier = systemd.Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    assert notifier.watchdog_interval == 0.05
    healthy = True
    task = asyncio.create_task(notifier.watchdog_loop(lambda: healthy))
    await asyncio.sleep(0.3)
    pings = drain(sock)
    assert len(pings) >= 3 and set(pings) == {"WATCHDOG=1"}
    healthy = False
    await asyncio.sleep(0.06)
    drain(sock)
    await asyncio.sleep(0.3)
    assert drain(sock) == []
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    notifier.close()


async def test_watchdog_loop_without_watchdog_waits_forever() -> None:
    task = asyncio.create_task(systemd.Notifier(None).watchdog_loop())
    await asyncio.sleep(0.05)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def drain(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out

"""ldc.sdnotify against real AF_UNIX datagram sockets, as sd_notify(3) describes the protocol."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ldc.sdnotify import MAX_STATUS_CHARS, Notifier


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def _received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready_with_status_is_one_datagram(path_socket: tuple[str, socket.socket]) -> None:
    path, sock = path_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.ready("3 markets syncing")
    assert _received(sock) == "READY=1\nSTATUS=3 markets syncing"
    notifier.close()


def test_watchdog_stopping_and_status(path_socket: tuple[str, socket.socket]) -> None:
    path, sock = path_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    notifier.watchdog()
    notifier.status("line one\nline two")
    notifier.stopping()
    assert [_received(sock) for _ in range(3)] == ["WATCHDOG=1", "STATUS=line one line two", "STOPPING=1"]
    notifier.close()


def test_status_is_cut_to_one_short_line(path_socket: tuple[str, socket.socket]) -> None:
    path, sock = path_socket
    with_long = Notifier({"NOTIFY_SOCKET": path})
    with_long.status("x" * 500)
    assert _received(sock) == "STATUS=" + "x" * MAX_STATUS_CHARS
    with_long.close()


def test_abstract_namespace_socket() -> None:
    name = f"ldc-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert _received(sock) == "READY=1"
        notifier.close()
    finally:
        sock.close()


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert (notifier.ready("x"), notifier.watchdog(), notifier.stopping()) == (False, False, False)
    assert notifier.watchdog_interval_s is None


def test_a_vanished_socket_raises(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with pytest.raises(OSError):
        notifier.ready()
    notifier.close()


def test_quietly_logs_a_vanished_socket_once_and_raises_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with caplog.at_level(logging.ERROR, logger="ldc.sdnotify"):
        notifier.quietly(notifier.ready, "starting")
        notifier.quietly(notifier.watchdog)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["systemd notification failed"]
    notifier.close()


@pytest.mark.parametrize(
    ("env", "interval", "every"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None, None),
        ({"WATCHDOG_USEC": "0"}, None, None),
        ({"WATCHDOG_USEC": "soon"}, None, None),
    ],
)
def test_watchdog_interval_from_the_environment(env: dict[str, str], interval: float | None, every: float | None) -> None:
    notifier = Notifier(env)
    assert (notifier.watchdog_interval_s, notifier.watchdog_ping_every_s) == (interval, every)

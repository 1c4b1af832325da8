"""Issue 16 on real "hosts": the origin (a segment writer, as a feeder), a real nats-server, `ldc relay`,
and two or more `ldc mirror`s each in its own mount namespace with a private /dev/shm and its own NATS
connection. Every in-sync read on a mirror is compared with the origin's book at the same update id
(fanout_truth), and each failure mode of the issue is made for real: a restarted relay, NATS server and
origin feeder, a slow mirror cut by the server, a sequence gap, NATS down at start, bad messages.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fanout_helpers import MirrorHost, Origin, start_relay, stop_process, wait_for
from ldc.fanout.server import NatsServer

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="mount namespaces are Linux")

SYMBOLS = ["AAAUSDT", "BBBUSDT", "CCCUSDT"]


@pytest.fixture
def nats() -> Iterator[NatsServer]:
    with NatsServer() as server:
        yield server


@pytest.fixture
def origin() -> Iterator[Origin]:
    o = Origin(SYMBOLS)
    try:
        yield o.start()
    finally:
        o.close()


@pytest.fixture
def logdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ldc-fanout-") as d:
        yield Path(d)


def now_uid(origin: Origin) -> int:
    return min(origin.uid.values())


def test_mirrors_on_two_hosts_equal_the_origin_and_readers_work_unchanged(nats: NatsServer, origin: Origin, logdir: Path) -> None:
    relay = start_relay(origin.group, nats.url, logdir / "relay.log")
    hosts = [MirrorHost(origin.group, nats.url, name="all"), MirrorHost(origin.group, nats.url, "--symbols", "BBBUSDT", name="one")]
    try:
        hosts[0].probe("sync", SYMBOLS, now_uid(origin) + 20)
        hosts[1].probe("sync", ["BBBUSDT"], now_uid(origin) + 20)
        # the origin's status and message travel with the data
        with origin._lock:
            origin.paused.add("CCCUSDT")
            origin.writer.set_status(origin.writer.slot("CCCUSDT"), 0x04, "origin: gap, fetching a snapshot")
            origin.writer.notify()
        seen = hosts[0].probe("flag", ["CCCUSDT"], "RESYNCING")["states"]["CCCUSDT"]
        assert seen["message"] == "origin: gap, fetching a snapshot"
        # the project's own command-line readers, on the mirror host, unchanged
        status = hosts[1].run(sys.executable, "-m", "ldc.cli", "status", "--json")
        assert status.returncode == 0, status.stderr
        assert "BBBUSDT" in status.stdout and "AAAUSDT" not in status.stdout
        book = hosts[1].run(sys.executable, "-m", "ldc.cli", "book", origin.group, "BBBUSDT", "--json")
        assert book.returncode == 0, book.stderr
    finally:
        for host in hosts:
            assert host.stop() == 0, host.log()[-2000:]
        stop_process(relay)
    assert "undecodable=0, foreign=0" in hosts[0].log()


def test_relay_nats_server_and_origin_restarts_recover_without_an_operator(nats: NatsServer, origin: Origin, logdir: Path) -> None:
    relay = start_relay(origin.group, nats.url, logdir / "relay.log")
    hosts = [MirrorHost(origin.group, nats.url, name=f"r{i}") for i in range(2)]
    try:
        for host in hosts:
            host.probe("sync", SYMBOLS, now_uid(origin) + 10)
        # the relay dies: mirrors flag everything STALE, a new relay (new epoch) brings them back
        relay.send_signal(signal.SIGKILL)
        relay.wait()
        for host in hosts:
            host.probe("flag", SYMBOLS, "STALE")
        relay = start_relay(origin.group, nats.url, logdir / "relay.log")
        for host in hosts:
            host.probe("sync", SYMBOLS, now_uid(origin) + 10)
        # the NATS server restarts: every market STALE on the lost connection, then back on reconnect
        nats.stop()
        for host in hosts:
            host.probe("flag", SYMBOLS, "STALE")
        nats.start()
        for host in hosts:
            host.probe("sync", SYMBOLS, now_uid(origin) + 10)
        # the origin feeder restarts: stopped -> STALE everywhere; the new writer republishes
        origin.restart_writer()
        for host in hosts:
            host.probe("flag", SYMBOLS, "STALE")
        origin.start()
        for host in hosts:
            host.probe("sync", SYMBOLS, now_uid(origin) + 10)
    finally:
        for host in hosts:
            host.stop()
        stop_process(relay)

"""`ldc feed CONFIG --group NAME` as its own process (issue 8, "What to build" 2 and "Bad input and faults"):
a bad config is refused before anything starts, SIGTERM marks the segment stopped and exits 0, SIGHUP adds
and removes markets live, and SIGHUP with a broken file leaves the running set as it was and logs why.
The simulator runs in this process (ldc.sim), the feeder in a child, and this process reads the segment.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from feeder_helpers import (
    Processes,
    check_truth,
    group_table,
    processes,
    unique_group,
    wait_until,
    write_config,
)
from ldc.config import endpoints, load_config
from ldc.io.governor import governor_key
from ldc.shm.layout import State, segment_path
from ldc.shm.reader import Reader
from ldc.sim import Simulator

pytestmark = pytest.mark.timeout(90)

EXIT_TIMEOUT_S = 15.0


@pytest.fixture
def spot(sim_factory: Callable[..., Simulator]) -> Simulator:
    return sim_factory(spot_symbols=("BTCUSDT", "ETHUSDT", "BNBUSDT"), rate=20.0, history_events=5000)


def start_feeder(procs: Processes, config: Path, group: str, log: Path) -> subprocess.Popen[bytes]:
    procs.groups.append(group)
    procs.governors.append(governor_key(endpoints(load_config(config).group(group)).rest_url))
    with log.open("wb") as sink:
        return procs.ldc("feed", str(config), "--group", group, stdout=sink, stderr=subprocess.STDOUT)


def synced(reader: Reader, *symbols: str) -> bool:
    markets = set(reader.markets())
    return all(s in markets and reader.status(s).in_sync for s in symbols)


def test_bad_config_exits_2_naming_the_key_and_starts_nothing(tmp_path: Path, spot: Simulator) -> None:
    group = unique_group("bad")
    config = write_config(tmp_path / "ldc.toml", [group_table(group, "spot", ("BTCUSDT",), spot, depth=0)])
    with processes() as procs:
        procs.groups.append(group)
        proc = procs.ldc("feed", str(config), "--group", group, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate(timeout=EXIT_TIMEOUT_S)
    assert proc.returncode == 2 and out == b""
    assert err.decode().strip() == (
        f"ldc feed: {config}: group '{group}': key 'depth' expected an integer in 1..1000, found 0"
    )
    assert not os.path.exists(segment_path(group))
    assert spot.stats()["counters"].get("rest_requests", 0) == 0 and spot.stats()["connections"] == 0


def test_unknown_group_exits_2_naming_the_known_ones(tmp_path: Path, spot: Simulator) -> None:
    group = unique_group("g")
    config = write_config(tmp_path / "ldc.toml", [group_table(group, "spot", ("BTCUSDT",), spot)])
    with processes() as procs:
        proc = procs.ldc("feed", str(config), "--group", "nosuch", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=EXIT_TIMEOUT_S)
    assert proc.returncode == 2
    assert err.decode().strip() == f"ldc feed: {config}: no group 'nosuch', expected one of '{group}'"


def test_sigterm_marks_the_segment_stopped_and_exits_0(tmp_path: Path, spot: Simulator) -> None:
    group = unique_group("term")
    config = write_config(tmp_path / "ldc.toml", [group_table(group, "spot", ("BTCUSDT", "ETHUSDT"), spot)])
    with processes() as procs:
        proc = start_feeder(procs, config, group, tmp_path / "feed.log")
        with Reader(group, attach_timeout_s=20.0) as reader:
            wait_until(lambda: synced(reader, "BTCUSDT", "ETHUSDT"), what="both markets in sync")
            assert reader.info().state == State.RUNNING and reader.writer_alive()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(EXIT_TIMEOUT_S) == 0
            info = reader.info()
            assert (info.state, info.alive) == (State.STOPPED, False)
            last = reader.snapshot("BTCUSDT", allow_out_of_sync=True)
            assert last.update_id > 0  # the last book stays readable, marked stale
            assert not last.in_sync


def test_sighup_adds_and_removes_markets_live(tmp_path: Path, spot: Simulator) -> None:
    group = unique_group("hup")
    path = tmp_path / "ldc.toml"
    write_config(path, [group_table(group, "spot", ("BTCUSDT", "ETHUSDT"), spot)])
    with processes() as procs:
        proc = start_feeder(procs, path, group, tmp_path / "feed.log")
        with Reader(group, attach_timeout_s=20.0) as reader:
            wait_until(lambda: synced(reader, "BTCUSDT", "ETHUSDT"), what="both markets in sync")
            kept = reader.status("BTCUSDT").counters
            write_config(path, [group_table(group, "spot", ("BTCUSDT", "BNBUSDT"), spot)])
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: synced(reader, "BNBUSDT") and "ETHUSDT" not in reader.markets(), what="the reload")
            assert sorted(reader.markets()) == ["BNBUSDT", "BTCUSDT"]
            assert check_truth(spot, reader, "BNBUSDT", "spot", 10) in (True, None)
            # the market that stayed was never touched: no resync, no new snapshot
            now = reader.status("BTCUSDT")
            assert now.in_sync and (now.counters["snapshots"], now.counters["resyncs"]) == (kept["snapshots"], kept["resyncs"])
            conns: list[dict[str, Any]] = spot.call(lambda state: state.connections_json())
            subscribed = {s for c in conns for s in c["streams"]}
            assert subscribed == {"btcusdt@depth@100ms", "bnbusdt@depth@100ms"}
        assert proc.poll() is None


def test_sighup_with_a_broken_file_keeps_the_running_set_and_logs_the_error(tmp_path: Path, spot: Simulator) -> None:
    group = unique_group("broken")
    path = tmp_path / "ldc.toml"
    log = tmp_path / "feed.log"
    write_config(path, [group_table(group, "spot", ("BTCUSDT", "ETHUSDT"), spot)])
    with processes() as procs:
        proc = start_feeder(procs, path, group, log)
        with Reader(group, attach_timeout_s=20.0) as reader:
            wait_until(lambda: synced(reader, "BTCUSDT", "ETHUSDT"), what="both markets in sync")
            path.write_text(path.read_text().replace('symbols = ["BTCUSDT", "ETHUSDT"]', 'symbols = ["BTCUSDT", "eth usdt"'))
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "reload ignored" in log.read_text(), what="the error in the log")
            updates = reader.status("ETHUSDT").counters["updates"]
            wait_until(lambda: reader.status("ETHUSDT").counters["updates"] > updates, what="ETHUSDT still publishing")
            assert sorted(reader.markets()) == ["BTCUSDT", "ETHUSDT"] and synced(reader, "BTCUSDT", "ETHUSDT")
        assert proc.poll() is None
    line = next(line for line in log.read_text().splitlines() if "reload ignored" in line)
    assert line.split(" ", 2)[2].startswith("ldc.feeder ERROR reload ignored, the running markets stay as they are: ")
    assert "not valid TOML" in line


def test_under_systemd_it_notifies_ready_status_watchdog_and_stopping(tmp_path: Path, spot: Simulator) -> None:
    group = unique_group("sd")
    config = write_config(tmp_path / "ldc.toml", [group_table(group, "spot", ("BTCUSDT", "ETHUSDT"), spot)])
    address = f"@ldc-test-{uuid.uuid4().hex}"  # abstract namespace: no path length limit, nothing to clean
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, processes() as procs:
        sock.bind(b"\0" + address[1:].encode())
        sock.settimeout(20.0)
        procs.groups.append(group)
        procs.governors.append(governor_key(endpoints(load_config(config).group(group)).rest_url))
        env = dict(os.environ, NOTIFY_SOCKET=address, WATCHDOG_USEC="600000")  # ping every 0.3 s
        proc = procs.ldc("feed", str(config), "--group", group, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        messages = [sock.recv(4096).decode()]
        assert messages[0] == "READY=1\nSTATUS=2 markets syncing"
        while "STATUS=2/2 markets in sync" not in messages:
            messages.append(sock.recv(4096).decode())
        watchdog_before_stop = messages.count("WATCHDOG=1")
        while messages.count("WATCHDOG=1") < watchdog_before_stop + 2:
            messages.append(sock.recv(4096).decode())
        proc.send_signal(signal.SIGTERM)
        while messages[-1] != "STOPPING=1":
            messages.append(sock.recv(4096).decode())
        assert proc.wait(EXIT_TIMEOUT_S) == 0
    statuses = [m for m in messages if m.startswith("STATUS=")]
    assert statuses[-1] == "STATUS=2/2 markets in sync" and statuses[0] in ("STATUS=0/2 markets in sync", "STATUS=1/2 markets in sync", "STATUS=2/2 markets in sync")
    assert set(messages[1:-1]) <= {"WATCHDOG=1", *statuses}


def test_feeder_logs_info_through_its_queue_and_errors_at_once() -> None:
    """ldc feed's logging: records below ERROR are written by a listener thread (off the feeder's lock), errors
    directly, so a process that dies before the listener drains still leaves its errors on stderr."""
    script = (
        "import logging, os, sys\n"
        "from ldc.feeder import _log_through_a_queue\n"
        "listener = _log_through_a_queue('INFO')\n"
        "logging.getLogger('ldc.test').info('an info line, queued')\n"
        "listener.stop()  # from here on, a queued record would never be written\n"
        "logging.getLogger('ldc.test').error('an error line, written at once')\n"
        "os._exit(0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=EXIT_TIMEOUT_S)
    lines = done.stderr.splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "ldc.test INFO an info line, queued",
        "ldc.test ERROR an error line, written at once",
    ]

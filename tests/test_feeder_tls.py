"""The feeder over TLS end to end, as against a live exchange: `ldc sim --tls` -> `ldc feed` whose group trusts
the simulator's CA (`ca_file`) -> segment -> Reader, every book read in sync equal to the truth; and a feeder
trusting another CA is refused (the certificate is really verified) and says so in the slot and its log."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import start_sim_process
from feeder_helpers import group_table, processes, snapshot_equals_truth, unique_group, wait_until, write_config
from ldc.errors import LdcError
from ldc.io.governor import governor_key
from ldc.shm.reader import Reader
from ldc.sim import Simulator

pytestmark = pytest.mark.timeout(120)

SYMBOLS = ("BTCUSDT", "ETHUSDT")
DEPTH = 10
CHECKS = 40  # truth comparisons of in-sync reads, spread over both markets
CHECK_EVERY_S = 0.05
WAIT_S = 30.0


def truth(urls: dict[str, Any], symbol: str, update_id: int) -> dict[str, Any] | None:
    """``/_sim/book`` over https, verified against the simulator's CA like the feeder's own requests."""
    params: dict[str, str | int] = {"symbol": symbol, "update_id": update_id, "limit": DEPTH, "family": "spot"}
    response = requests.get(f"{urls['rest']}/_sim/book", params=params, timeout=10, verify=urls["ca_file"])
    body: dict[str, Any] | None = response.json() if response.status_code == 200 else None
    return body


def in_sync(reader: Reader, symbol: str) -> bool:
    try:
        return symbol in reader.markets() and reader.status(symbol).in_sync
    except LdcError:
        return False


def test_ldc_feed_over_tls_with_the_sims_ca_publishes_books_equal_to_the_truth(tmp_path: Path) -> None:
    group = unique_group("tls")
    with processes() as procs:
        sim, urls = start_sim_process("--tls", "--symbols", ",".join(SYMBOLS), "--history", "5000")
        procs.procs.append(sim)
        assert urls["rest"].startswith("https://") and urls["ws"].startswith("wss://")
        config = write_config(tmp_path / "ldc.toml", [group_table(group, "spot", SYMBOLS, urls, depth=DEPTH, ca_file=urls["ca_file"])])
        procs.groups.append(group)
        procs.governors.append(governor_key(urls["rest"]))
        with (tmp_path / "feed.log").open("wb") as sink:
            procs.ldc("feed", str(config), "--group", group, stdout=sink, stderr=subprocess.STDOUT)
        with Reader(group, attach_timeout_s=WAIT_S) as reader:
            wait_until(lambda: all(in_sync(reader, s) for s in SYMBOLS), what="both markets in sync over TLS", timeout_s=WAIT_S)
            checked, mismatches = 0, []
            deadline = time.monotonic() + WAIT_S
            while checked < CHECKS and time.monotonic() < deadline:
                symbol = SYMBOLS[checked % len(SYMBOLS)]
                snap = reader.snapshot(symbol)
                known = truth(urls, symbol, snap.update_id)
                if known is not None:
                    checked += 1
                    if not snapshot_equals_truth(known, snap):
                        mismatches.append((symbol, snap.update_id))
                time.sleep(CHECK_EVERY_S)
        stats = requests.get(f"{urls['rest']}/_sim/stats", timeout=10, verify=urls["ca_file"]).json()
    assert mismatches == [] and checked == CHECKS
    # the books came through the simulator's TLS port: its websocket and its REST snapshots
    assert stats["counters"]["ws_connections"] >= 1 and stats["counters"].get("rest_requests", 0) >= len(SYMBOLS)
    assert "CERTIFICATE_VERIFY_FAILED" not in (tmp_path / "feed.log").read_text()


def test_a_feeder_trusting_another_ca_is_refused_and_says_so_in_the_slot_and_log(tmp_path: Path, sim_factory: Callable[..., Simulator]) -> None:
    sim = sim_factory(tls=True, spot_symbols=("BTCUSDT",))
    stranger = sim_factory(tls=True, spot_symbols=("BTCUSDT",))  # a CA of the same shape with its own key
    assert stranger.ca_file is not None
    group = unique_group("badca")
    config = write_config(tmp_path / "ldc.toml", [group_table(group, "spot", ("BTCUSDT",), sim, ca_file=stranger.ca_file)])
    log = tmp_path / "feed.log"
    with processes() as procs:
        procs.groups.append(group)
        procs.governors.append(governor_key(sim.rest_url))
        with log.open("wb") as sink:
            feeder = procs.ldc("feed", str(config), "--group", group, stdout=sink, stderr=subprocess.STDOUT)
        with Reader(group, attach_timeout_s=WAIT_S) as reader:
            refused = lambda: "CERTIFICATE_VERIFY_FAILED" in reader.status("BTCUSDT").message  # noqa: E731
            wait_until(refused, what="the slot to name the refused certificate", timeout_s=WAIT_S)
            status = reader.status("BTCUSDT")
            assert status.message.startswith("websocket connection failed, retrying: SSLCertVerificationError: "), status.message
            assert not status.in_sync and status.counters["updates"] == status.counters["snapshots"] == 0
            time.sleep(0.5)
            assert not reader.status("BTCUSDT").in_sync
        assert feeder.poll() is None  # it keeps retrying, as for any connection failure
    text = log.read_text()
    assert "certificate verify failed" in text, text[-2000:]
    # nothing got past the handshake: no request reached the simulator, no websocket was opened
    counters = sim.stats()["counters"]
    assert counters.get("rest_requests", 0) == 0 and counters.get("ws_connections", 0) == 0
